"""Conv + BatchNorm building blocks and the BN-folding arithmetic shared by every family."""
from __future__ import annotations

from typing import Optional, Tuple

import paddle
import paddle.distributed as dist
import paddle.nn as nn
import paddle.nn.functional as F

from .lk_conv import DepthwiseConv2D

__all__ = ["make_bn", "SyncBatchNorm2D", "ConvBN", "fuse_conv_bn", "fold_bn_into_pointwise",
           "fold_bn_into_linear", "conv2d_with_params", "is_bn", "check_kernel_size"]

_BN_TYPES = (nn.BatchNorm2D, nn.BatchNorm, nn.SyncBatchNorm)


def is_bn(layer: nn.Layer) -> bool:
    """True for the BatchNorm layers whose statistics can be folded into a neighbouring conv."""
    return isinstance(layer, _BN_TYPES)


def check_kernel_size(name: str, value: object, allow_none: bool = False, minimum: int = 1) -> None:
    """Refuse a kernel size a "same"-padded (``k // 2``) conv cannot use: only odd ints >= ``minimum``
    keep the map size, so anything else is a ``ValueError`` naming the argument, at construction."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or value % 2 == 0:
        raise ValueError(f"{name}={value!r}: expected an odd int >= {minimum} (a 'same'-padded conv pads "
                         f"k // 2 on each side, which keeps the map size only for odd k)")


class SyncBatchNorm2D(nn.SyncBatchNorm):
    """``nn.SyncBatchNorm`` that is a plain ``BatchNorm2D`` wherever there is nothing to synchronise.

    Paddle's ``sync_batch_norm`` kernel exists for GPUs only, so a model built with
    ``use_sync_bn=True`` for multi-GPU training could not evaluate, export or fine-tune on a CPU
    (``The kernel sync_batch_norm is not registered``). This layer synchronises statistics only in
    dygraph training on a GPU with more than one process, and otherwise computes exactly what
    ``BatchNorm2D`` does with the same parameters (``weight``, ``bias``, ``_mean``, ``_variance``), as
    PyTorch's ``SyncBatchNorm`` does in eval mode.
    """

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if (self.training and paddle.in_dynamic_mode() and x.place.is_gpu_place()
                and dist.get_world_size() > 1):
            return super().forward(x)
        return F.batch_norm(x, self._mean, self._variance, weight=self.weight, bias=self.bias,
                            training=self.training, momentum=self._momentum, epsilon=self._epsilon,
                            data_format=self._data_format)


def make_bn(channels: int, use_sync_bn: bool = False) -> nn.Layer:
    """``BatchNorm2D``, or :class:`SyncBatchNorm2D` (same parameter names: weight, bias, _mean, _variance)."""
    return SyncBatchNorm2D(channels) if use_sync_bn else nn.BatchNorm2D(channels)


def _bn_scale_shift(bn: nn.Layer) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """Per-channel (scale, shift) such that bn(x) == scale * x + shift in eval mode."""
    std = paddle.sqrt(bn._variance + bn._epsilon)
    scale = bn.weight / std if bn.weight is not None else 1.0 / std
    beta = bn.bias if bn.bias is not None else paddle.zeros_like(bn._mean)
    return scale, beta - bn._mean * scale


def fuse_conv_bn(weight: paddle.Tensor, bias: Optional[paddle.Tensor], bn: nn.Layer
                 ) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """Kernel and bias of conv(x) followed by an eval-mode BN, as one biased conv."""
    scale, shift = _bn_scale_shift(bn)
    fused_w = weight * scale.reshape([-1, 1, 1, 1])
    fused_b = shift if bias is None else bias * scale + shift
    return fused_w, fused_b


def conv2d_with_params(template: nn.Conv2D, weight: paddle.Tensor, bias: Optional[paddle.Tensor]
                       ) -> nn.Conv2D:
    """A conv of the template's class and geometry holding the given weight and (optional) bias."""
    cls = type(template) if isinstance(template, nn.Conv2D) else nn.Conv2D
    conv = cls(template._in_channels, template._out_channels, template._kernel_size,
               stride=template._stride, padding=template._padding, dilation=template._dilation,
               groups=template._groups, bias_attr=None if bias is not None else False)
    conv.weight.set_value(weight.detach())
    if bias is not None:
        conv.bias.set_value(bias.detach())
    return conv


def fold_bn_into_pointwise(bn: nn.Layer, conv: nn.Conv2D) -> nn.Conv2D:
    """Fold a BN that *precedes* a dense 1x1 conv (no padding) into that conv.

    conv(scale * x + shift) = (W * scale) x + (b + W @ shift); exact because a 1x1 conv
    without padding never sees the zero border that would break the shift term.
    """
    if conv._kernel_size != [1, 1] or conv._groups != 1 or any(p != 0 for p in _flat(conv._padding)):
        raise ValueError("fold_bn_into_pointwise needs a dense 1x1 conv without padding")
    scale, shift = _bn_scale_shift(bn)
    w = conv.weight
    new_w = w * scale.reshape([1, -1, 1, 1])
    new_b = paddle.matmul(w.reshape([w.shape[0], -1]), shift.reshape([-1, 1])).reshape([-1])
    if conv.bias is not None:
        new_b = new_b + conv.bias
    return conv2d_with_params(conv, new_w, new_b)


def fold_bn_into_linear(bn: nn.Layer, linear: nn.Linear) -> nn.Linear:
    """Fold a BN applied before global pooling + Linear into the Linear (pooling is linear)."""
    scale, shift = _bn_scale_shift(bn)
    w = linear.weight  # Paddle Linear: [in, out]
    new = nn.Linear(w.shape[0], w.shape[1])
    new.weight.set_value((w * scale.reshape([-1, 1])).detach())
    b = paddle.matmul(shift.reshape([1, -1]), w).reshape([-1])
    if linear.bias is not None:
        b = b + linear.bias
    new.bias.set_value(b.detach())
    return new


def _flat(padding):
    if isinstance(padding, int):
        return [padding]
    out = []
    for p in padding:
        out.extend(_flat(p) if isinstance(p, (list, tuple)) else [p])
    return out


class ConvBN(nn.Layer):
    """conv (no bias) -> BN [-> ReLU], named like the official ``conv_bn``/``conv_bn_relu``.

    Depthwise convs go through :class:`DepthwiseConv2D` so large kernels reach the fast op.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, groups: int = 1, dilation: int = 1, relu: bool = False,
                 use_sync_bn: bool = False) -> None:
        super().__init__()
        conv_cls = DepthwiseConv2D if (groups == in_channels == out_channels and groups > 1) else nn.Conv2D
        self.conv = conv_cls(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                             dilation=dilation, groups=groups, bias_attr=False)
        self.bn = make_bn(out_channels, use_sync_bn)
        self.nonlinear = nn.ReLU() if relu else nn.Identity()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.nonlinear(self.bn(self.conv(x)))

    def equivalent_kernel_bias(self) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """(kernel, bias) of conv+BN as one biased conv, whether or not the BN is folded yet."""
        if is_bn(self.bn):
            return fuse_conv_bn(self.conv.weight, self.conv.bias, self.bn)
        bias = self.conv.bias if self.conv.bias is not None else paddle.zeros([self.conv._out_channels])
        return self.conv.weight, bias

    def fuse_bn(self) -> None:
        """Fold the BN into the conv (called by ``paddle_lk.reparameterize(fuse_bn=True)``)."""
        if is_bn(self.bn):
            w, b = self.equivalent_kernel_bias()
            self.conv = conv2d_with_params(self.conv, w, b)
            self.bn = nn.Identity()
