"""``paddle_lk convert`` / ``tools/convert_torch.py``: convert an official PyTorch checkpoint (RepLKNet,
VAN, RefConv, UniRepLKNet, mmseg/mmdet backbones) to ``.pdparams`` without PyTorch. The architecture is detected from the keys and shapes.

    python tools/convert_torch.py --src RepLKNet-31B_ImageNet-1K_224.pth --dst RepLKNet-31B.pdparams --verify

Prints what was detected, how many tensors were mapped and what was skipped (and why). Any
failure exits with code 2 and one line on stderr, and leaves no ``--dst`` file behind.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from ..utils.log import safe_print
from .api import convert_checkpoint

__all__ = ["main"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``tools/convert_torch.py`` / ``paddle_lk convert``: returns the exit code (2 on any failure)."""
    parser = argparse.ArgumentParser(prog="convert_torch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="PyTorch checkpoint (.pth/.pth.tar/.pt) or PaddleClas .pdparams")
    parser.add_argument("--dst", required=True, help="output .pdparams (written atomically)")
    parser.add_argument("--arch", help="registered model name to check against (e.g. RepLKNet31B); default: detected")
    parser.add_argument("--reparam", action="store_true", help="write deploy-form (merged large-kernel) weights")
    parser.add_argument("--num-classes", type=int, help="target classes; a checkpoint head of another size is dropped")
    parser.add_argument("--verify", action="store_true", help="build the model, load --dst back, run a forward pass")
    parser.add_argument("--keymap", help="force a key map (replknet, van, van_paddleclas, torch_generic, paddle)")
    parser.add_argument("--allow-unknown-globals", action="store_true",
                        help="skip pickled non-tensor objects of unknown type (inert placeholders, never executed)")
    args = parser.parse_args(argv)
    try:
        if args.num_classes is not None and args.num_classes <= 0:
            raise ValueError(f"--num-classes must be positive, got {args.num_classes}")
        if os.path.abspath(args.src) == os.path.abspath(args.dst):
            raise ValueError("--dst must differ from --src")
        convert_checkpoint(args.src, args.dst, arch=args.arch, reparam=args.reparam, num_classes=args.num_classes,
                           verify=args.verify, keymap=args.keymap, allow_unknown=args.allow_unknown_globals,
                           log=safe_print)
    except Exception as e:  # noqa: BLE001 - any failure is a one-line error and exit code 2
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        known = isinstance(e, (ValueError, KeyError, OSError))
        text = str(msg).strip().splitlines()[0] if str(msg).strip() else "failed"
        print(f"convert_torch: error: {text if known else f'{type(e).__name__}: {text}'}", file=sys.stderr)
        return 2
    return 0

