"""``paddle_lk erf`` / ``tools/erf.py``: effective receptive field of several models side by side (the RepLKNet paper's method).

    python tools/erf.py --models RepLKNet31B resnet101 --size 1024 --num-images 10 --output erf_out
    python tools/erf.py --models RepLKNet31B resnet101 --weights RepLKNet-31B.pth random --output erf_out

Writes erf.png (heatmaps, weights named on each), erf_ratios.json / .csv (high-contribution area
ratios at 0.2/0.3/0.5/0.99) and erf_<model>.npy (raw averaged gradient maps) to --output. Models:
any paddle_lk model (paddle_lk.list_models()) and the paddle.vision ResNets resnet18..resnet152.
Default images: the photos bundled with scikit-image.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from ..utils.log import safe_print
from .erf import run_erf

__all__ = ["main"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``tools/erf.py`` / ``paddle_lk erf``: returns the exit code."""
    parser = argparse.ArgumentParser(prog="erf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True, metavar="NAME",
                        help="paddle_lk model names and/or resnet101, resnet152 (paddle.vision)")
    parser.add_argument("--weights", nargs="+", metavar="PATH",
                        help="one per model: .pdparams / official .pth, or 'random' (default: all random)")
    parser.add_argument("--size", type=int, default=1024, help="input resolution (paper: 1024)")
    parser.add_argument("--num-images", type=int, default=10, help="number of images to average over")
    parser.add_argument("--images", metavar="DIR", help="image folder (default: scikit-image sample photos)")
    parser.add_argument("--output", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    if args.size < 32:
        print(f"erf: error: --size {args.size} is too small (need >= 32)", file=sys.stderr)
        return 2
    try:
        run_erf(args.models, args.output, weights=args.weights, size=args.size, num_images=args.num_images,
                images_dir=args.images, seed=args.seed, log=safe_print)
    except (KeyError, ValueError, FileNotFoundError) as e:  # bad names, paths, weights or images
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"erf: error: {msg}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # every image gave a non-finite gradient
        print(f"erf: error: {e}", file=sys.stderr)
        return 1
    safe_print(f"wrote {os.path.join(args.output, 'erf.png')}, erf_ratios.json, erf_ratios.csv")
    return 0

