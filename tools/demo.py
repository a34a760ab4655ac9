"""Build one model of each family, re-parameterize it, print parameter counts and the
train/deploy output difference. ``python tools/demo.py [--size 64]``"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paddle  # noqa: E402

import paddle_lk  # noqa: E402
from paddle_lk.models import RepLKNet, VAN  # noqa: E402
from paddle_lk.utils import count_params  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=64, help="input resolution")
    args = parser.parse_args(argv)
    paddle.seed(0)
    x = paddle.randn([2, 3, args.size, args.size])
    models = {
        "RepLKNet (31B layout, narrow)": RepLKNet([31, 29, 27, 13], [2, 2, 2, 2], [16, 32, 64, 128], 0.0, 5,
                                                  num_classes=10),
        "VAN (b0 layout, narrow)": VAN(embed_dims=[16, 32, 64, 128], depths=[2, 2, 2, 2], mlp_ratios=[8, 8, 4, 4],
                                       num_classes=10),
        "RefConv (refocused MobileNetV2)": paddle_lk.refocus(
            paddle.vision.models.mobilenet_v2(scale=0.35, num_classes=10), zero_init=False),
    }
    for name, model in models.items():
        # A few train-mode passes give the BNs real running statistics, so the parity check is meaningful.
        model.train()
        with paddle.no_grad():
            for _ in range(3):
                model(paddle.randn([4, 3, args.size, args.size]))
        model.eval()
        before = count_params(model)
        y_train = model(x)
        deploy = paddle_lk.reparameterize(model, fuse_bn=True)
        y_deploy = deploy(x)
        diff = float((y_train - y_deploy).abs().max())
        scale = float(y_train.abs().max())
        print(f"{name:34s} params train {before:>10,d}  deploy {count_params(deploy):>10,d}  "
              f"max |train - deploy| = {diff:.2e} (output scale {scale:.2e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
