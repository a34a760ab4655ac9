"""VAN: Visual Attention Network (Guo et al., 2022) with Large Kernel Attention, in Paddle.

LKA = DW 5x5 -> DW 7x7 dilation 3 -> 1x1, multiplied with its input. Sublayer names follow the
official ``van.py`` so official checkpoints map by renaming BN statistics and transposing Linear.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import numpy as np
import paddle
import paddle.nn as nn

from ..layers.conv_bn import fold_bn_into_pointwise, fuse_conv_bn, conv2d_with_params, is_bn
from ..layers.drop_path import DropPath
from ..layers.lk_conv import DepthwiseConv2D
from ..registry import load_pretrained, register_model, resolve_num_classes

__all__ = ["VAN", "LKA", "MODEL_URLS"] + [f"VAN_b{i}" for i in range(7)]

# PaddleClas hosts ImageNet weights for b0-b3 in its own key layout; paddle_lk.convert maps them.
_PPCLS = "https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/{}_pretrained.pdparams"
MODEL_URLS = {f"VAN_b{i}": _PPCLS.format(f"VAN_B{i}") for i in range(4)}


class DWConv(nn.Layer):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = DepthwiseConv2D(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.dwconv(x)


class Mlp(nn.Layer):
    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Conv2D(in_features, hidden_features, 1)
        self.dwconv = DWConv(hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2D(hidden_features, in_features, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.drop(self.act(self.dwconv(self.fc1(x))))
        return self.drop(self.fc2(x))


class LKA(nn.Layer):
    """Large Kernel Attention: a 21x21 receptive field from DW5x5 + DW7x7(d=3) + 1x1."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv0 = DepthwiseConv2D(dim, dim, 5, padding=2, groups=dim)
        self.conv_spatial = DepthwiseConv2D(dim, dim, 7, stride=1, padding=9, groups=dim, dilation=3)
        self.conv1 = nn.Conv2D(dim, dim, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x * self.conv1(self.conv_spatial(self.conv0(x)))


class Attention(nn.Layer):
    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.proj_1 = nn.Conv2D(d_model, d_model, 1)
        self.activation = nn.GELU()
        self.spatial_gating_unit = LKA(d_model)
        self.proj_2 = nn.Conv2D(d_model, d_model, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        shortcut = x
        x = self.proj_2(self.spatial_gating_unit(self.activation(self.proj_1(x))))
        return x + shortcut


class Block(nn.Layer):
    def __init__(self, dim: int, mlp_ratio: float = 4.0, drop: float = 0.0, drop_path: float = 0.0,
                 layer_scale_init_value: float = 1e-2) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2D(dim)
        self.attn = Attention(dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.BatchNorm2D(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        init = nn.initializer.Constant(layer_scale_init_value)
        self.layer_scale_1 = self.create_parameter([dim], default_initializer=init)
        self.layer_scale_2 = self.create_parameter([dim], default_initializer=init)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = x + self.drop_path(self.layer_scale_1.reshape([-1, 1, 1]) * self.attn(self.norm1(x)))
        x = x + self.drop_path(self.layer_scale_2.reshape([-1, 1, 1]) * self.mlp(self.norm2(x)))
        return x

    def fuse_bn(self) -> None:
        """Fold the pre-norms into the 1x1 convs they feed (attn residual keeps the raw input)."""
        if is_bn(self.norm2):
            self.mlp.fc1 = fold_bn_into_pointwise(self.norm2, self.mlp.fc1)
            self.norm2 = nn.Identity()
        # norm1 cannot be folded: Attention adds its (normalised) input back as the shortcut.


class OverlapPatchEmbed(nn.Layer):
    def __init__(self, patch_size: int = 7, stride: int = 4, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        self.proj = nn.Conv2D(in_chans, embed_dim, patch_size, stride=stride, padding=patch_size // 2)
        self.norm = nn.BatchNorm2D(embed_dim)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.norm(self.proj(x))

    def fuse_bn(self) -> None:
        if is_bn(self.norm):
            w, b = fuse_conv_bn(self.proj.weight, self.proj.bias, self.norm)
            self.proj = conv2d_with_params(self.proj, w, b)
            self.norm = nn.Identity()


class VAN(nn.Layer):
    """Visual Attention Network backbone / classifier (official arguments by name).

    With ``out_indices`` the forward returns those stages' NCHW feature maps (after ``norm{i}``)
    and no head is built.
    """

    def __init__(self, img_size: int = 224, in_chans: int = 3, num_classes: Optional[int] = 1000,
                 embed_dims: Sequence[int] = (64, 128, 256, 512), mlp_ratios: Sequence[float] = (4, 4, 4, 4),
                 drop_rate: float = 0.0, drop_path_rate: float = 0.0, depths: Sequence[int] = (3, 4, 6, 3),
                 num_stages: int = 4, norm_eps: float = 1e-6, out_indices: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        self.num_stages = num_stages
        self.embed_dims = list(embed_dims)
        self.out_indices = tuple(out_indices) if out_indices is not None else None
        if self.out_indices is not None and any(not 0 <= i < num_stages for i in self.out_indices):
            raise ValueError(f"out_indices {list(self.out_indices)} out of range for {num_stages} stages")
        self.num_classes = None if self.out_indices is not None else num_classes
        dpr = np.linspace(0, drop_path_rate, sum(depths)).tolist()
        cur = 0
        for i in range(num_stages):
            setattr(self, f"patch_embed{i + 1}", OverlapPatchEmbed(
                patch_size=7 if i == 0 else 3, stride=4 if i == 0 else 2,
                in_chans=in_chans if i == 0 else embed_dims[i - 1], embed_dim=embed_dims[i]))
            setattr(self, f"block{i + 1}", nn.LayerList([
                Block(embed_dims[i], mlp_ratios[i], drop_rate, dpr[cur + j]) for j in range(depths[i])]))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(embed_dims[i], epsilon=norm_eps))
            cur += depths[i]
        if self.num_classes is not None:
            self.head = nn.Linear(embed_dims[num_stages - 1], num_classes) if num_classes > 0 else nn.Identity()

    @property
    def feat_channels(self) -> List[int]:
        return [self.embed_dims[i] for i in (self.out_indices or range(self.num_stages))]

    def forward_features(self, x: paddle.Tensor) -> Union[paddle.Tensor, List[paddle.Tensor]]:
        outs = []
        for i in range(self.num_stages):
            x = getattr(self, f"patch_embed{i + 1}")(x)
            for blk in getattr(self, f"block{i + 1}"):
                x = blk(x)
            # LayerNorm over channels: NCHW -> NHWC -> norm -> NCHW
            x = getattr(self, f"norm{i + 1}")(x.transpose([0, 2, 3, 1])).transpose([0, 3, 1, 2])
            if self.out_indices is not None and i in self.out_indices:
                outs.append(x)
        return outs if self.out_indices is not None else x

    def forward_head(self, x: paddle.Tensor, pre_logits: bool = False) -> paddle.Tensor:
        x = x.mean(axis=[2, 3])
        return x if pre_logits else self.head(x)

    def forward(self, x: paddle.Tensor):
        x = self.forward_features(x)
        return x if self.out_indices is not None else self.forward_head(x)


_VAN_CFGS = {
    0: dict(embed_dims=[32, 64, 160, 256], depths=[3, 3, 5, 2]),
    1: dict(embed_dims=[64, 128, 320, 512], depths=[2, 2, 4, 2]),
    2: dict(embed_dims=[64, 128, 320, 512], depths=[3, 3, 12, 3]),
    3: dict(embed_dims=[64, 128, 320, 512], depths=[3, 5, 27, 3]),
    4: dict(embed_dims=[64, 128, 320, 512], depths=[3, 6, 40, 3]),
    5: dict(embed_dims=[96, 192, 480, 768], depths=[3, 3, 24, 3]),
    6: dict(embed_dims=[96, 192, 384, 768], depths=[6, 6, 90, 6]),
}


def _van(idx: int, pretrained, num_classes, class_num, kwargs) -> VAN:
    drop_head = kwargs.pop("drop_head", False)
    cfg = dict(mlp_ratios=[8, 8, 4, 4], norm_eps=1e-6, **_VAN_CFGS[idx])
    cfg.update(kwargs)
    n = resolve_num_classes(num_classes, class_num)
    cfg["num_classes"] = 1000 if n is None else n
    model = VAN(**cfg)
    load_pretrained(model, pretrained, f"VAN_b{idx}", MODEL_URLS.get(f"VAN_b{idx}"), drop_head=drop_head)
    return model


@register_model
def VAN_b0(pretrained=False, num_classes=None, class_num=None, **kwargs) -> VAN:
    """VAN-b0: 4.1M params, 0.9 GFLOPs."""
    return _van(0, pretrained, num_classes, class_num, kwargs)


@register_model
def VAN_b1(pretrained=False, num_classes=None, class_num=None, **kwargs) -> VAN:
    """VAN-b1: 13.9M params, 2.5 GFLOPs."""
    return _van(1, pretrained, num_classes, class_num, kwargs)


@register_model
def VAN_b2(pretrained=False, num_classes=None, class_num=None, **kwargs) -> VAN:
    """VAN-b2: 26.6M params, 5.0 GFLOPs."""
    return _van(2, pretrained, num_classes, class_num, kwargs)


@register_model
def VAN_b3(pretrained=False, num_classes=None, class_num=None, **kwargs) -> VAN:
    """VAN-b3: 44.8M params, 9.0 GFLOPs."""
    return _van(3, pretrained, num_classes, class_num, kwargs)


@register_model
def VAN_b4(pretrained=False, num_classes=None, class_num=None, **kwargs) -> VAN:
    """VAN-b4: 60.3M params, 12.2 GFLOPs."""
    return _van(4, pretrained, num_classes, class_num, kwargs)


@register_model
def VAN_b5(pretrained=False, num_classes=None, class_num=None, **kwargs) -> VAN:
    """VAN-b5: embed dims [96,192,480,768], depths [3,3,24,3]."""
    return _van(5, pretrained, num_classes, class_num, kwargs)


@register_model
def VAN_b6(pretrained=False, num_classes=None, class_num=None, **kwargs) -> VAN:
    """VAN-b6: embed dims [96,192,384,768], depths [6,6,90,6]."""
    return _van(6, pretrained, num_classes, class_num, kwargs)
