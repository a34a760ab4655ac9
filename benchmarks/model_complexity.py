"""Parameters and FLOPs (multiply-accumulates) per variant at 224x224, next to the papers' figures.

    python benchmarks/model_complexity.py [--size 224] [--models RepLKNet31B VAN_b0 ...]
    python benchmarks/model_complexity.py --size 384 --models UniRepLKNet_S UniRepLKNet_B UniRepLKNet_L UniRepLKNet_XL

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
    # UniRepLKNet (AILab-CVC/UniRepLKNet README, ImageNet-1K table; B/L/XL: FLOPs published at 384 only).
    "UniRepLKNet_A": (4.4, 0.6), "UniRepLKNet_F": (6.2, 0.9), "UniRepLKNet_P": (10.7, 1.6),
    "UniRepLKNet_N": (18.3, 2.8), "UniRepLKNet_T": (31, 4.9), "UniRepLKNet_S": (56, 9.1),
    "UniRepLKNet_B": (98, None), "UniRepLKNet_L": (218, None), "UniRepLKNet_XL": (386, None),
}
# Figures published at 384x384 (--size 384): the UniRepLKNet README's 22K -> 1K table, RepLKNet-31L's paper row.
PAPER_384 = {
    "RepLKNet31L": (172, 96.0),
    "UniRepLKNet_S": (56, 26.7), "UniRepLKNet_B": (98, 47.2), "UniRepLKNet_L": (218, 105.4),
    "UniRepLKNet_XL": (386, 187.0),
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
        p_params, p_flops = (PAPER_384 if args.size == 384 else PAPER).get(name, (None, None))
        print(f"| {name} | {train_params / 1e6:.2f} | {count_params(deploy) / 1e6:.2f} | {_fmt(p_params, '')} | "
              f"{flops / 1e9:.2f} | {_fmt(p_flops, '')} |", flush=True)
        del model, deploy
        print(f"<!-- {name}: {time.time() - t0:.0f}s -->", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
