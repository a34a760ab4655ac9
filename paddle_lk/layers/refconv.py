"""RefConv: refocusing learning over a frozen pretrained kernel (W + convmap(W)).

Follows "RefConv: Re-parameterized Refocusing Convolution for Powerful ConvNets" (Cai, Ding et al.,
2023; official code: Aiyuan-Cai/RefConv, ``RepConv``). This module is also RefConv's family file:
the layer, :func:`refocus`, and the checkpoint adapter for single-layer RefConv checkpoints.

The base kernel ``weight`` is a persistable buffer (frozen, saved in the state dict); the
refocusing conv ``convmap`` treats each 2-D slice of the kernel as a channel of an image of
size k x k and transforms it. ``convmap`` connects the slices that belong to one output group,
exactly as the official ``RepConv`` does for depthwise, group-wise and dense convs.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..ops import depthwise_conv2d
from ..registry import Family, register_family
from .reparam import Reparameterizable
from .lk_conv import DepthwiseConv2D

__all__ = ["RefConv", "refocus", "refocus_shapes", "split_refocused", "RefConvFamily"]


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

    @property
    def is_depthwise(self) -> bool:
        return self.groups == self.in_channels == self.out_channels and self.groups > 1

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """``x``: ``[N, in_channels, H, W]`` -> ``[N, out_channels, H', W']`` (stride and padding as set)."""
        kernel = self.refocused_kernel()
        if self.is_depthwise:  # the large-kernel dispatcher: the fast op where it applies
            return depthwise_conv2d(x, kernel, self.bias, stride=self.stride, padding=self.padding)
        return F.conv2d(x, kernel, self.bias, stride=self.stride, padding=self.padding, groups=self.groups)

    def reparameterize(self) -> nn.Conv2D:
        """A conv with the refocused kernel baked in (trainable again, as any conv): a
        :class:`DepthwiseConv2D` (through the dispatcher) for a depthwise RefConv, else ``nn.Conv2D``."""
        with paddle.no_grad():
            kernel = self.refocused_kernel()
        cls = DepthwiseConv2D if self.is_depthwise else nn.Conv2D
        conv = cls(self.in_channels, self.out_channels, self.kernel_size, stride=self.stride, padding=self.padding,
                   groups=self.groups, bias_attr=None if self.bias is not None else False)
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


_CONVMAP = ".convmap.weight"


def split_refocused(shapes: Mapping[str, Tuple[int, ...]]
                    ) -> Tuple[Dict[str, Tuple[int, ...]], Optional[Dict[str, int]]]:
    """``(shapes without the refocusing convs, {"map_k", "min_kernel"} or None)`` of a model's
    ``{key: shape}``: a refocused model is its base model plus a ``<conv>.convmap.weight`` per conv."""
    maps = [k for k in shapes if k.endswith(_CONVMAP)]
    if not maps or set(shapes) <= {"weight", "convmap.weight", "bias"}:  # none, or a bare RefConv layer
        return dict(shapes), None
    base = {k: v for k, v in shapes.items() if not k.endswith(_CONVMAP)}
    kernels = [shapes[k[: -len(_CONVMAP)] + ".weight"][-1] for k in maps]
    return base, dict(map_k=shapes[maps[0]][-1], min_kernel=min(kernels))


def refocus_shapes(model: nn.Layer, map_k: int, min_kernel: int) -> Dict[str, Tuple[int, ...]]:
    """``{"<conv>.convmap.weight": shape}`` that :func:`refocus` would add to ``model`` (works on a lazily
    built model, whose kernels cannot be copied)."""
    shapes = {}
    for name, layer in model.named_sublayers():
        if not _refocusable(layer, min_kernel):
            continue
        stride = layer._stride
        if isinstance(stride, (list, tuple)) and stride[0] != stride[1]:
            continue
        k, groups = layer._kernel_size[0], layer._groups
        n2d = layer._out_channels * layer._in_channels // groups
        mk = min(map_k, k)
        shapes[f"{name}.convmap.weight"] = (n2d, groups, mk, mk)
    return shapes


class RefConvFamily(Family):
    """Checkpoint adapter of single-layer RefConv checkpoints (the official ``RepConv``: ``weight``,
    ``convmap.weight``, optional ``bias``); refocused whole models are detected as their own family."""

    name = "refconv"
    display_name = "RefConv"
    model_cls = RefConv
    head_keys = ()
    in_chans_arg = "in_channels"
    variant_fields = ("in_channels", "out_channels", "kernel_size", "groups", "map_k")

    def claims(self, shapes: Mapping[str, Tuple[int, ...]]) -> bool:
        return "convmap.weight" in shapes and "weight" in shapes and set(shapes) <= {"weight", "convmap.weight", "bias"}

    def config_from_shapes(self, shapes: Mapping[str, Tuple[int, ...]]) -> Dict[str, Any]:
        w, cm = shapes["weight"], shapes["convmap.weight"]
        groups = cm[1]  # convmap has num_2d_kernels / (in*out/groups^2) = groups input channels per group
        return dict(in_channels=w[1] * groups, out_channels=w[0], kernel_size=w[-1], groups=groups,
                    map_k=cm[-1], bias="bias" in shapes)

    def probe_shape(self, config: Mapping[str, Any]) -> Tuple[int, int, int]:
        return (int(config["in_channels"]), 16, 16)


register_family(RefConvFamily())
