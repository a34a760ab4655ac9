"""RepLKNet (Ding et al., CVPR 2022, "Scaling Up Your Kernels to 31x31") in Paddle.

Sublayer names follow the official module tree so an official state dict maps onto this one by
renaming BN statistics and transposing Linear weights only (see :mod:`paddle_lk.convert`).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.distributed.fleet.utils import recompute

from ..layers.conv_bn import ConvBN, conv2d_with_params, fold_bn_into_linear, fold_bn_into_pointwise, \
    is_bn, make_bn
from ..layers.drop_path import DropPath
from ..layers.lk_conv import DepthwiseConv2D
from ..registry import load_pretrained, register_model, resolve_num_classes
from ..reparam import Reparameterizable, reparameterize

__all__ = ["ReparamLargeKernelConv", "RepLKBlock", "ConvFFN", "RepLKNetStage", "RepLKNet", "MODEL_URLS",
           "RepLKNet31B", "RepLKNet31L", "RepLKNetXL", "RepLKNet3", "RepLKNet7", "RepLKNet13", "RepLKNet25"]

# No Paddle-hosted weights exist for RepLKNet: convert the official releases (tools/convert_torch.py).
MODEL_URLS = {name: None for name in ["RepLKNet31B", "RepLKNet31L", "RepLKNetXL"]}


class ReparamLargeKernelConv(nn.Layer, Reparameterizable):
    """Depthwise KxK conv-BN with a parallel small-kernel conv-BN, mergeable into one biased KxK conv."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int,
                 small_kernel: Optional[int], small_kernel_merged: bool = False,
                 use_sync_bn: bool = False) -> None:
        super().__init__()
        self.kernel_size, self.small_kernel = kernel_size, small_kernel
        padding = kernel_size // 2
        if small_kernel_merged:
            self.lkb_reparam = DepthwiseConv2D(in_channels, out_channels, kernel_size, stride=stride,
                                               padding=padding, groups=groups)
        else:
            self.lkb_origin = ConvBN(in_channels, out_channels, kernel_size, stride, padding, groups,
                                     use_sync_bn=use_sync_bn)
            if small_kernel is not None:
                if small_kernel > kernel_size:
                    raise ValueError(f"small_kernel={small_kernel} larger than kernel_size={kernel_size}")
                self.small_conv = ConvBN(in_channels, out_channels, small_kernel, stride, small_kernel // 2,
                                         groups, use_sync_bn=use_sync_bn)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if hasattr(self, "lkb_reparam"):
            return self.lkb_reparam(x)
        out = self.lkb_origin(x)
        if hasattr(self, "small_conv"):
            out = out + self.small_conv(x)
        return out

    def get_equivalent_kernel_bias(self):
        """(kernel, bias) of the merged large conv: each branch's BN fused, the small kernel zero-padded."""
        eq_k, eq_b = self.lkb_origin.equivalent_kernel_bias()
        if hasattr(self, "small_conv"):
            small_k, small_b = self.small_conv.equivalent_kernel_bias()
            pad = (self.kernel_size - self.small_kernel) // 2
            eq_k = eq_k + F.pad(small_k, [pad, pad, pad, pad])
            eq_b = eq_b + small_b
        return eq_k, eq_b

    def reparameterize(self) -> "ReparamLargeKernelConv":
        if hasattr(self, "lkb_reparam"):
            return self
        with paddle.no_grad():
            k, b = self.get_equivalent_kernel_bias()
        self.lkb_reparam = conv2d_with_params(self.lkb_origin.conv, k, b)
        del self.lkb_origin
        if hasattr(self, "small_conv"):
            del self.small_conv
        return self

    # Official name, kept for users porting scripts.
    merge_kernel = reparameterize


class ConvFFN(nn.Layer):
    """pre-BN -> 1x1 conv-BN -> GELU -> 1x1 conv-BN, residual with drop path."""

    def __init__(self, in_channels: int, internal_channels: int, out_channels: int, drop_path: float,
                 use_sync_bn: bool = False) -> None:
        super().__init__()
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.preffn_bn = make_bn(in_channels, use_sync_bn)
        self.pw1 = ConvBN(in_channels, internal_channels, 1, use_sync_bn=use_sync_bn)
        self.pw2 = ConvBN(internal_channels, out_channels, 1, use_sync_bn=use_sync_bn)
        self.nonlinear = nn.GELU()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = self.pw2(self.nonlinear(self.pw1(self.preffn_bn(x))))
        return x + self.drop_path(out)

    def fuse_bn(self) -> None:
        if is_bn(self.preffn_bn) and isinstance(self.pw1.bn, nn.Identity):
            self.pw1.conv = fold_bn_into_pointwise(self.preffn_bn, self.pw1.conv)
            self.preffn_bn = nn.Identity()


class RepLKBlock(nn.Layer):
    """pre-BN -> 1x1 conv-BN-ReLU -> large DW conv (+ small branch) -> ReLU -> 1x1 conv-BN, residual."""

    def __init__(self, in_channels: int, dw_channels: int, block_lk_size: int, small_kernel: Optional[int],
                 drop_path: float, small_kernel_merged: bool = False, use_sync_bn: bool = False) -> None:
        super().__init__()
        self.pw1 = ConvBN(in_channels, dw_channels, 1, relu=True, use_sync_bn=use_sync_bn)
        self.pw2 = ConvBN(dw_channels, in_channels, 1, use_sync_bn=use_sync_bn)
        self.large_kernel = ReparamLargeKernelConv(dw_channels, dw_channels, block_lk_size, stride=1,
                                                   groups=dw_channels, small_kernel=small_kernel,
                                                   small_kernel_merged=small_kernel_merged,
                                                   use_sync_bn=use_sync_bn)
        self.lk_nonlinear = nn.ReLU()
        self.prelkb_bn = make_bn(in_channels, use_sync_bn)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = self.pw1(self.prelkb_bn(x))
        out = self.pw2(self.lk_nonlinear(self.large_kernel(out)))
        return x + self.drop_path(out)

    def fuse_bn(self) -> None:
        if is_bn(self.prelkb_bn) and isinstance(self.pw1.bn, nn.Identity):
            self.pw1.conv = fold_bn_into_pointwise(self.prelkb_bn, self.pw1.conv)
            self.prelkb_bn = nn.Identity()


class RepLKNetStage(nn.Layer):
    """Alternating RepLK blocks and ConvFFNs; ``norm`` is BN on intermediate features or Identity."""

    def __init__(self, channels: int, num_blocks: int, stage_lk_size: int, drop_path: Union[float, List[float]],
                 small_kernel: Optional[int], dw_ratio: float = 1, ffn_ratio: float = 4,
                 use_checkpoint: bool = False, small_kernel_merged: bool = False,
                 norm_intermediate_features: bool = False, use_sync_bn: bool = False) -> None:
        super().__init__()
        self.use_checkpoint = use_checkpoint
        blocks = []
        for i in range(num_blocks):
            dp = drop_path[i] if isinstance(drop_path, (list, tuple)) else drop_path
            blocks.append(RepLKBlock(channels, int(channels * dw_ratio), stage_lk_size, small_kernel, dp,
                                     small_kernel_merged, use_sync_bn))
            blocks.append(ConvFFN(channels, int(channels * ffn_ratio), channels, dp, use_sync_bn))
        self.blocks = nn.LayerList(blocks)
        self.norm = make_bn(channels, use_sync_bn) if norm_intermediate_features else nn.Identity()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        for blk in self.blocks:
            if self.use_checkpoint and self.training and not x.stop_gradient:
                x = recompute(blk, x)
            else:
                x = blk(x)
        return x


class RepLKNet(nn.Layer):
    """RepLKNet backbone / classifier.

    Arguments are the official ones. Classification when ``out_indices`` is None (stem, stages,
    ``norm`` BN, average pool, ``head`` Linear); with ``out_indices`` the forward returns the
    listed stages' feature maps (each through ``stages[i].norm``) and no head is built.
    """

    def __init__(self, large_kernel_sizes: Sequence[int], layers: Sequence[int], channels: Sequence[int],
                 drop_path_rate: float, small_kernel: Optional[int], dw_ratio: float = 1, ffn_ratio: float = 4,
                 in_channels: int = 3, num_classes: Optional[int] = 1000,
                 out_indices: Optional[Sequence[int]] = None, use_checkpoint: bool = False,
                 small_kernel_merged: bool = False, use_sync_bn: bool = False,
                 norm_intermediate_features: bool = False) -> None:
        super().__init__()
        if not (len(large_kernel_sizes) == len(layers) == len(channels)):
            raise ValueError(f"large_kernel_sizes {list(large_kernel_sizes)}, layers {list(layers)} and "
                             f"channels {list(channels)} must have the same length")
        if out_indices is None and not num_classes:
            raise ValueError("RepLKNet needs num_classes (classification) or out_indices (features)")
        self.out_indices = tuple(out_indices) if out_indices is not None else None
        if self.out_indices is not None and any(not 0 <= i < len(layers) for i in self.out_indices):
            raise ValueError(f"out_indices {list(self.out_indices)} out of range for {len(layers)} stages")
        self.num_classes = None if self.out_indices is not None else num_classes
        self.use_checkpoint = use_checkpoint
        self.num_stages = len(layers)
        self.channels = list(channels)
        base_width = channels[0]
        self.stem = nn.LayerList([
            ConvBN(in_channels, base_width, 3, 2, 1, relu=True, use_sync_bn=use_sync_bn),
            ConvBN(base_width, base_width, 3, 1, 1, groups=base_width, relu=True, use_sync_bn=use_sync_bn),
            ConvBN(base_width, base_width, 1, 1, 0, relu=True, use_sync_bn=use_sync_bn),
            ConvBN(base_width, base_width, 3, 2, 1, groups=base_width, relu=True, use_sync_bn=use_sync_bn),
        ])
        dpr = np.linspace(0, drop_path_rate, sum(layers)).tolist()
        self.stages = nn.LayerList()
        self.transitions = nn.LayerList()
        for i in range(self.num_stages):
            self.stages.append(RepLKNetStage(
                channels[i], layers[i], large_kernel_sizes[i], dpr[sum(layers[:i]):sum(layers[:i + 1])],
                small_kernel, dw_ratio, ffn_ratio, use_checkpoint, small_kernel_merged,
                norm_intermediate_features, use_sync_bn))
            if i < self.num_stages - 1:
                self.transitions.append(nn.Sequential(
                    ConvBN(channels[i], channels[i + 1], 1, 1, 0, relu=True, use_sync_bn=use_sync_bn),
                    ConvBN(channels[i + 1], channels[i + 1], 3, 2, 1, groups=channels[i + 1], relu=True,
                           use_sync_bn=use_sync_bn)))
        if self.num_classes is not None:
            self.norm = make_bn(channels[-1], use_sync_bn)
            self.avgpool = nn.AdaptiveAvgPool2D(1)
            self.head = nn.Linear(channels[-1], num_classes)

    @property
    def feat_channels(self) -> List[int]:
        """Channels of the feature maps returned in features mode."""
        return [self.channels[i] for i in (self.out_indices or range(self.num_stages))]

    def forward_features(self, x: paddle.Tensor) -> Union[paddle.Tensor, List[paddle.Tensor]]:
        x = self.stem[0](x)
        for stem_layer in self.stem[1:]:
            if self.use_checkpoint and self.training and not x.stop_gradient:
                x = recompute(stem_layer, x)
            else:
                x = stem_layer(x)
        outs = []
        for i in range(self.num_stages):
            x = self.stages[i](x)
            if self.out_indices is not None and i in self.out_indices:
                outs.append(self.stages[i].norm(x))
            if i < self.num_stages - 1:
                x = self.transitions[i](x)
        return outs if self.out_indices is not None else x

    def forward_head(self, x: paddle.Tensor, pre_logits: bool = False) -> paddle.Tensor:
        x = paddle.flatten(self.avgpool(self.norm(x)), 1)
        return x if pre_logits else self.head(x)

    def forward(self, x: paddle.Tensor):
        x = self.forward_features(x)
        return x if self.out_indices is not None else self.forward_head(x)

    def fuse_bn(self) -> None:
        """Fold the head BN into the classifier (BN -> avgpool -> Linear are all linear)."""
        if self.num_classes is not None and is_bn(self.norm):
            self.head = fold_bn_into_linear(self.norm, self.head)
            self.norm = nn.Identity()

    def structural_reparam(self) -> "RepLKNet":
        """Official method name: merge every large-kernel block in place."""
        return reparameterize(self)


def _build(name: str, pretrained, num_classes, class_num, defaults: dict, kwargs: dict) -> RepLKNet:
    drop_head = kwargs.pop("drop_head", False)
    cfg = dict(defaults)
    cfg.update(kwargs)
    n = resolve_num_classes(num_classes, class_num)
    cfg["num_classes"] = 1000 if n is None and cfg.get("out_indices") is None else n
    model = RepLKNet(**cfg)
    load_pretrained(model, pretrained, name, MODEL_URLS.get(name), drop_head=drop_head)
    return model


_31B = dict(large_kernel_sizes=[31, 29, 27, 13], layers=[2, 2, 18, 2], channels=[128, 256, 512, 1024],
            drop_path_rate=0.3, small_kernel=5)


@register_model
def RepLKNet31B(pretrained=False, num_classes=None, class_num=None, **kwargs) -> RepLKNet:
    """RepLKNet-31B: kernels [31,29,27,13], 79M params, 15.3 GFLOPs at 224."""
    return _build("RepLKNet31B", pretrained, num_classes, class_num, _31B, kwargs)


@register_model
def RepLKNet31L(pretrained=False, num_classes=None, class_num=None, **kwargs) -> RepLKNet:
    """RepLKNet-31L: 31B with channels [192,384,768,1536]."""
    return _build("RepLKNet31L", pretrained, num_classes, class_num,
                  dict(_31B, channels=[192, 384, 768, 1536]), kwargs)


@register_model
def RepLKNetXL(pretrained=False, num_classes=None, class_num=None, **kwargs) -> RepLKNet:
    """RepLKNet-XL: kernels [27,27,27,13], channels [256,512,1024,2048], no small kernel, dw_ratio 1.5."""
    return _build("RepLKNetXL", pretrained, num_classes, class_num,
                  dict(_31B, large_kernel_sizes=[27, 27, 27, 13], channels=[256, 512, 1024, 2048],
                       small_kernel=None, dw_ratio=1.5), kwargs)


def _ablation(kernels: List[int]) -> dict:
    # A 5x5 re-param branch only makes sense next to a larger kernel.
    return dict(_31B, large_kernel_sizes=kernels, small_kernel=5 if min(kernels) > 5 else None)


@register_model
def RepLKNet3(pretrained=False, num_classes=None, class_num=None, **kwargs) -> RepLKNet:
    """Paper ablation: 31B widths with 3x3 kernels in every stage (no small-kernel branch)."""
    return _build("RepLKNet3", pretrained, num_classes, class_num, _ablation([3] * 4), kwargs)


@register_model
def RepLKNet7(pretrained=False, num_classes=None, class_num=None, **kwargs) -> RepLKNet:
    """Paper ablation: 31B widths with 7x7 kernels."""
    return _build("RepLKNet7", pretrained, num_classes, class_num, _ablation([7] * 4), kwargs)


@register_model
def RepLKNet13(pretrained=False, num_classes=None, class_num=None, **kwargs) -> RepLKNet:
    """Paper ablation: 31B widths with 13x13 kernels."""
    return _build("RepLKNet13", pretrained, num_classes, class_num, _ablation([13] * 4), kwargs)


@register_model
def RepLKNet25(pretrained=False, num_classes=None, class_num=None, **kwargs) -> RepLKNet:
    """Paper ablation: 31B widths with kernels [25,25,25,13]."""
    return _build("RepLKNet25", pretrained, num_classes, class_num, _ablation([25, 25, 25, 13]), kwargs)
