"""Parameter and FLOP counting that knows paddle_lk's layers."""
from __future__ import annotations

import contextlib
import io
from typing import Sequence

import paddle
import paddle.nn as nn
from paddle.hapi.dynamic_flops import count_convNd

from ..layers import DepthwiseConv2D, RefConv

__all__ = ["count_flops"]


def _count_refconv(layer, inputs, output) -> None:
    # At inference RefConv is a plain conv with its refocused kernel: count it as such.
    kernel_ops = layer.kernel_size ** 2 * (layer.in_channels // layer.groups)
    layer.total_ops += abs(int(kernel_ops * output.numel())) + (int(output.numel()) if layer.bias is not None else 0)


def count_flops(model: nn.Layer, input_size: Sequence[int] = (1, 3, 224, 224)) -> int:
    """Multiply-accumulates of one forward pass (the "FLOPs" the papers quote), via ``paddle.flops``.

    ``paddle.flops`` matches layers by exact type, so the subclasses paddle_lk uses
    (``DepthwiseConv2D``, ``RefConv``) are registered explicitly.
    """
    custom = {DepthwiseConv2D: count_convNd, RefConv: _count_refconv}
    was_training = model.training
    model.eval()
    with contextlib.redirect_stdout(io.StringIO()), paddle.no_grad():  # paddle.flops prints per-type lines
        flops = paddle.flops(model, list(input_size), custom_ops=custom, print_detail=False)
    # paddle.flops leaves its counter buffers on layers it has no rule for; they would end up in
    # state_dict() and in saved checkpoints.
    for layer in model.sublayers(include_self=True):
        for name in ("total_ops", "total_params", "input_shape", "output_shape"):
            layer._buffers.pop(name, None)
    if was_training:
        model.train()
    return int(flops)
