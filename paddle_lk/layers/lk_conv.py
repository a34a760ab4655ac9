"""Depthwise conv layer that routes through the large-kernel dispatcher (:mod:`paddle_lk.ops`)."""
from __future__ import annotations

import paddle
import paddle.nn as nn

from ..ops import depthwise_conv2d

__all__ = ["DepthwiseConv2D"]


class DepthwiseConv2D(nn.Conv2D):
    """``nn.Conv2D`` with ``groups == in == out`` whose forward uses the large-kernel dispatcher.

    Parameter names and shapes are exactly ``nn.Conv2D``'s, so checkpoints are unaffected; the
    dispatcher picks the custom op when it is built and the call fits its constraints, else
    ``F.conv2d``.
    """

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return depthwise_conv2d(x, self.weight, self.bias, stride=self._stride,
                                padding=self._padding, dilation=self._dilation)
