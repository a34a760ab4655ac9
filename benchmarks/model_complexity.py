"""Parameters and FLOPs (multiply-accumulates) per variant at 224x224, next to the papers' figures.

    python benchmarks/model_complexity.py [--size 224] [--models RepLKNet31B VAN_b0 ...]

Parameters are counted on the train form and on the deploy (re-parameterized) form; FLOPs on the
deploy form, which is what runs at inference.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paddle  # noqa: E402

import paddle_lk  # noqa: E402
from paddle_lk.utils import count_flops, count_params  # noqa: E402

# (params M, GFLOPs at 224) from the RepLKNet and VAN papers; None = not published at 224
# (the paper gives 31L 96.0G at 384 and XL 128.7G at 320, i.e. ~32.7G / ~63.1G scaled to 224).
PAPER = {
    "RepLKNet31B": (79, 15.3), "RepLKNet31L": (172, None), "RepLKNetXL": (335, None),
    "VAN_b0": (4.1, 0.9), "VAN_b1": (13.9, 2.5), "VAN_b2": (26.6, 5.0), "VAN_b3": (44.8, 9.0),
    "VAN_b4": (60.3, 12.2),
}


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--models", nargs="+", default=paddle_lk.list_models())
    args = parser.parse_args(argv)
    print(f"| model | params train (M) | params deploy (M) | paper params (M) | GFLOPs @{args.size} | paper GFLOPs |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        t0 = time.time()
        model = paddle_lk.create_model(name).eval()
        train_params = count_params(model)
        deploy = paddle_lk.reparameterize(model)
        flops = count_flops(deploy, (1, 3, args.size, args.size))
        p_params, p_flops = PAPER.get(name, (None, None))
        print(f"| {name} | {train_params / 1e6:.2f} | {count_params(deploy) / 1e6:.2f} | {_fmt(p_params, '')} | "
              f"{flops / 1e9:.2f} | {_fmt(p_flops, '')} |", flush=True)
        del model, deploy
        print(f"<!-- {name}: {time.time() - t0:.0f}s -->", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
