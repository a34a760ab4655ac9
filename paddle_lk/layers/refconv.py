"""RefConv: refocusing learning over a frozen pretrained kernel (W + convmap(W)).

The base kernel ``weight`` is a persistable buffer (frozen, saved in the state dict); the
refocusing conv ``convmap`` treats each 2-D slice of the kernel as a channel of an image of
size k x k and transforms it. ``convmap`` connects the slices that belong to one output group,
exactly as the official ``RepConv`` does for depthwise, group-wise and dense convs.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..reparam import Reparameterizable

__all__ = ["RefConv", "refocus"]


class RefConv(nn.Layer, Reparameterizable):
    """Conv whose kernel is ``weight + convmap(weight)`` with ``weight`` frozen.

    Args:
        in_channels, out_channels, kernel_size, stride, groups: as ``nn.Conv2D``.
        padding: int (or per-side spec accepted by ``F.conv2d``); ``None`` means ``kernel_size // 2``.
        map_k: kernel size of the refocusing conv (``<= kernel_size``).
        bias: add a trainable output bias.
        zero_init: zero-initialise ``convmap`` so the layer starts out equal to a plain conv
            with kernel ``weight``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: Optional[Union[int, Sequence[int]]] = None, groups: int = 1, map_k: int = 3,
                 bias: bool = False, zero_init: bool = False) -> None:
        super().__init__()
        if map_k > kernel_size:
            raise ValueError(f"RefConv: map_k={map_k} must not exceed kernel_size={kernel_size}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"RefConv: channels ({in_channels}, {out_channels}) not divisible by groups={groups}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.groups = kernel_size, stride, groups
        self.padding = kernel_size // 2 if padding is None else padding
        self.origin_kernel_shape = [out_channels, in_channels // groups, kernel_size, kernel_size]
        self.num_2d_kernels = out_channels * in_channels // groups
        self.register_buffer("weight", paddle.zeros(self.origin_kernel_shape), persistable=True)
        # One convmap group per pair of (input, output) channel groups' worth of slices.
        map_groups = in_channels * out_channels // (groups ** 2)
        self.convmap = nn.Conv2D(self.num_2d_kernels, self.num_2d_kernels, map_k, stride=1,
                                 padding=map_k // 2, groups=map_groups, bias_attr=False,
                                 weight_attr=nn.initializer.Constant(0.0) if zero_init else None)
        self.bias = self.create_parameter([out_channels], is_bias=True) if bias else None

    def refocused_kernel(self) -> paddle.Tensor:
        """The effective kernel ``W + convmap(W)``."""
        k = self.kernel_size
        base = self.weight.reshape([1, self.num_2d_kernels, k, k])
        return self.weight + self.convmap(base).reshape(self.origin_kernel_shape)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.conv2d(x, self.refocused_kernel(), self.bias, stride=self.stride,
                        padding=self.padding, groups=self.groups)

    def reparameterize(self) -> nn.Conv2D:
        """An ``nn.Conv2D`` with the refocused kernel baked in (trainable again, as any conv)."""
        with paddle.no_grad():
            kernel = self.refocused_kernel()
        conv = nn.Conv2D(self.in_channels, self.out_channels, self.kernel_size, stride=self.stride,
                         padding=self.padding, groups=self.groups,
                         bias_attr=None if self.bias is not None else False)
        conv.weight.set_value(kernel.detach())
        if self.bias is not None:
            conv.bias.set_value(self.bias.detach())
        return conv

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, groups={self.groups}")


def _refocusable(conv: nn.Layer, min_kernel: int) -> bool:
    if not isinstance(conv, nn.Conv2D):
        return False
    k = conv._kernel_size
    return (k[0] == k[1] and k[0] >= min_kernel and list(conv._dilation) == [1, 1]
            and conv._padding_mode == "zeros" and conv._data_format == "NCHW")


def refocus(model: nn.Layer, map_k: int = 3, zero_init: bool = True, min_kernel: int = 2) -> nn.Layer:
    """Replace every spatial ``nn.Conv2D`` (kernel >= ``min_kernel``) of any model by a RefConv.

    The pretrained kernel is copied into the frozen base; a conv bias becomes RefConv's trainable
    bias. With ``zero_init`` (default) ``convmap`` starts at zero, so the refocused model computes
    exactly what the original did. Returns the model (a bare Conv2D is returned replaced).
    """
    def convert(layer: nn.Layer) -> nn.Layer:
        for name, child in list(layer._sub_layers.items()):
            if child is not None:
                new_child = convert(child)
                if new_child is not child:
                    layer._sub_layers[name] = new_child
        if not _refocusable(layer, min_kernel):
            return layer
        k = layer._kernel_size[0]
        stride = layer._stride
        if isinstance(stride, (list, tuple)):
            if stride[0] != stride[1]:
                return layer
            stride = stride[0]
        ref = RefConv(layer._in_channels, layer._out_channels, k, stride=stride,
                      padding=layer._padding, groups=layer._groups, map_k=min(map_k, k),
                      bias=layer.bias is not None, zero_init=zero_init)
        ref.weight.set_value(layer.weight.detach())
        if layer.bias is not None:
            ref.bias.set_value(layer.bias.detach())
        ref.train() if layer.training else ref.eval()
        return ref

    return convert(model)
