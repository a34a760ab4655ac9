"""Shared test utilities (tiny configs and BN randomization)."""
from __future__ import annotations

import numpy as np
import paddle
import paddle.nn as nn

from paddle_lk.layers.conv_bn import is_bn

TINY_REPLKNET = dict(large_kernel_sizes=[13, 11, 9, 7], layers=[1, 1, 2, 1], channels=[16, 32, 64, 128],
                     drop_path_rate=0.0, small_kernel=5, num_classes=10)
TINY_VAN = dict(embed_dims=[16, 32, 64, 128], depths=[1, 1, 2, 1], mlp_ratios=[8, 8, 4, 4], num_classes=10)


def randomize_bn(model: nn.Layer, seed: int = 0) -> nn.Layer:
    """Give every BN random statistics and affine parameters so a wrongly folded BN shows up."""
    rng = np.random.RandomState(seed)
    for layer in model.sublayers(include_self=True):
        if is_bn(layer):
            c = layer._mean.shape[0]
            layer._mean.set_value(rng.uniform(-0.5, 0.5, c).astype("float32"))
            layer._variance.set_value(rng.uniform(0.5, 2.0, c).astype("float32"))
            layer.weight.set_value(rng.uniform(0.5, 1.5, c).astype("float32"))
            layer.bias.set_value(rng.uniform(-0.5, 0.5, c).astype("float32"))
    return model


def max_rel_diff(a, b) -> float:
    """max |a - b| divided by the output scale max |a|."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))
