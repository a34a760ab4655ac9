"""How closely paddle_lk reproduces the official PyTorch code: the reference fixtures in
``../shared/fixtures/torch_reference`` (checkpoints, inputs and outputs written by the official RepLKNet, VAN
and UniRepLKNet code) loaded with ``paddle_lk.load_checkpoint`` into the detected architecture.

    python benchmarks/fixture_agreement.py [--fixtures DIR]

One row per fixture: max |ours - official| (fp32) and the output scale, for the model as loaded and after
``paddle_lk.reparameterize(model, fuse_bn=True)`` (the deploy form). The tests require both below 1e-4.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
from typing import List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import paddle  # noqa: E402

import paddle_lk  # noqa: E402
from paddle_lk.checkpoint import read_state  # noqa: E402

DEFAULT = pathlib.Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "torch_reference"
FIXTURES = ("replknet_tiny", "replknet_tiny_merged", "van_tiny", "unireplknet_tiny", "unireplknet_tiny_deploy")


def agreement(folder: pathlib.Path, stem: str) -> Tuple[float, float, float]:
    """(max |ours - official|, after reparameterize + BN fusion, official output scale) of one fixture."""
    checkpoint = str(folder / f"{stem}.pth")
    arch = paddle_lk.detect_architecture(read_state(checkpoint).tensors)
    model = arch.adapter.build(arch.config)
    paddle_lk.load_checkpoint(model, checkpoint)
    model.eval()
    x = paddle.to_tensor(np.load(folder / f"{stem}_input.npy"))
    ref = np.load(folder / f"{stem}_out.npy")
    with paddle.no_grad():
        loaded = float(np.abs(model(x).numpy() - ref).max())
        deploy = float(np.abs(paddle_lk.reparameterize(model, fuse_bn=True)(x).numpy() - ref).max())
    return loaded, deploy, float(np.abs(ref).max())


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", default=str(DEFAULT), help="the torch_reference fixtures folder")
    args = ap.parse_args(argv)
    folder = pathlib.Path(args.fixtures)
    if not folder.is_dir():
        print(f"error: fixtures folder '{folder}' not found", file=sys.stderr)
        return 2
    rows: List[Tuple[str, float, float, float]] = [(s, *agreement(folder, s)) for s in FIXTURES]
    print("| fixture | max abs diff, as loaded | after reparameterize + fuse_bn | output scale |\n|---|---|---|---|")
    for stem, loaded, deploy, scale in rows:
        print(f"| {stem} | {loaded:.1e} | {deploy:.1e} | {scale:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
