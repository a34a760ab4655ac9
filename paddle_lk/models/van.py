"""VAN in Paddle: the family's blocks, model, variant table, checkpoint adapter and constructors.

Architecture from "Visual Attention Network" (Guo et al., 2022, arXiv:2202.09741); official repository
Visual-Attention-Network/VAN-Classification (``models/van.py``). Large Kernel Attention = DW 5x5 ->
DW 7x7 dilation 3 -> 1x1, multiplied with its input. Sublayer names follow the official module tree
so official checkpoints map by renaming BN statistics and transposing the Linear weight; PaddleClas's
own VAN_B0-B3 ``.pdparams`` map too (their layer scales are stored as ``[C, 1, 1]``).
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import paddle
import paddle.nn as nn

from ..errors import DetectionError
from ..io.keymap import TORCH_BN_KEY, TORCH_BN_RULES, KeyMap, Rule, register_keymap
from ..layers.checkpoint import checkpoint, uses_checkpoint
from ..layers.conv_bn import conv2d_with_params, fold_bn_into_pointwise, fuse_conv_bn, is_bn, make_bn
from ..layers.drop_path import DropPath
from ..layers.lk_conv import DepthwiseConv2D
from ..registry import Checkpoint, Family, ModelCfg, register_family, register_model
from ._base import LKNetBase, classifier_classes, normalize_out_indices
from ._builder import build_model_with_cfg

__all__ = ["VAN", "LKA", "VANFamily"] + [f"VAN_b{i}" for i in range(7)]

# PaddleClas hosts ImageNet weights for b0-b3 in its own key layout; the van_paddleclas key map reads them.
_PPCLS = "https://paddle-imagenet-models-name.bj.bcebos.com/dygraph/{}_pretrained.pdparams"


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
                 layer_scale_init_value: float = 1e-2, use_sync_bn: bool = False) -> None:
        super().__init__()
        self.norm1 = make_bn(dim, use_sync_bn)
        self.attn = Attention(dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = make_bn(dim, use_sync_bn)
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
    def __init__(self, patch_size: int = 7, stride: int = 4, in_chans: int = 3, embed_dim: int = 768,
                 use_sync_bn: bool = False) -> None:
        super().__init__()
        self.proj = nn.Conv2D(in_chans, embed_dim, patch_size, stride=stride, padding=patch_size // 2)
        self.norm = make_bn(embed_dim, use_sync_bn)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.norm(self.proj(x))

    def fuse_bn(self) -> None:
        if is_bn(self.norm):
            w, b = fuse_conv_bn(self.proj.weight, self.proj.bias, self.norm)
            self.proj = conv2d_with_params(self.proj, w, b)
            self.norm = nn.Identity()


class VAN(LKNetBase):
    """Visual Attention Network backbone / classifier (official arguments by name).

    Classification (``out_indices=None``): four stages (strides 4, 8, 16, 32), each patch embedding
    -> blocks -> LayerNorm ``norm{i}``; mean pool; ``head`` Linear (``num_classes=0``: the pooled
    features). Features mode (``out_indices``): the listed stages' maps after ``norm{i}``, NCHW.

    Raises:
        ValueError: ``embed_dims``/``depths``/``mlp_ratios`` shorter than ``num_stages``, ``out_indices``
        out of range.
    """

    def __init__(self, img_size: int = 224, in_chans: int = 3, num_classes: Optional[int] = 1000,
                 embed_dims: Sequence[int] = (64, 128, 256, 512), mlp_ratios: Sequence[float] = (4, 4, 4, 4),
                 drop_rate: float = 0.0, drop_path_rate: float = 0.0, depths: Sequence[int] = (3, 4, 6, 3),
                 num_stages: int = 4, norm_eps: float = 1e-6, out_indices: Optional[Sequence[int]] = None,
                 use_sync_bn: bool = False) -> None:
        super().__init__()
        for name, values in (("embed_dims", embed_dims), ("depths", depths), ("mlp_ratios", mlp_ratios)):
            if len(values) < num_stages:
                raise ValueError(f"{name} {list(values)} has fewer than num_stages={num_stages} entries")
        self.num_stages = num_stages
        self.embed_dims = list(embed_dims)
        self.stage_channels = list(embed_dims[:num_stages])
        self.stage_modules = [f"norm{i + 1}" for i in range(num_stages)]
        self.out_indices = normalize_out_indices(out_indices, num_stages)
        self.num_classes = classifier_classes(num_classes, self.out_indices)
        self.num_features = embed_dims[num_stages - 1]
        dpr = np.linspace(0, drop_path_rate, sum(depths)).tolist()
        cur = 0
        for i in range(num_stages):
            setattr(self, f"patch_embed{i + 1}", OverlapPatchEmbed(
                patch_size=7 if i == 0 else 3, stride=4 if i == 0 else 2,
                in_chans=in_chans if i == 0 else embed_dims[i - 1], embed_dim=embed_dims[i], use_sync_bn=use_sync_bn))
            setattr(self, f"block{i + 1}", nn.LayerList([
                Block(embed_dims[i], mlp_ratios[i], drop_rate, dpr[cur + j], use_sync_bn=use_sync_bn)
                for j in range(depths[i])]))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(embed_dims[i], epsilon=norm_eps))
            cur += depths[i]
        if self.out_indices is None:
            self.head = self._make_head(self.num_classes)

    def forward_features(self, x: paddle.Tensor) -> Union[paddle.Tensor, List[paddle.Tensor]]:
        """``x``: ``[N, in_chans, H, W]`` -> the last stage's normalised map ``[N, embed_dims[-1], H/32, W/32]``;
        in features mode the list of ``out_indices`` maps ``[N, embed_dims[i], H/s, W/s]``, s = 4, 8, 16, 32."""
        outs = []
        for i in range(self.num_stages):
            x = getattr(self, f"patch_embed{i + 1}")(x)
            for blk in getattr(self, f"block{i + 1}"):
                x = checkpoint(blk, x) if uses_checkpoint(self.grad_checkpointing, blk, x) else blk(x)
            # LayerNorm over channels: NCHW -> NHWC -> norm -> NCHW
            x = getattr(self, f"norm{i + 1}")(x.transpose([0, 2, 3, 1])).transpose([0, 3, 1, 2])
            if self.out_indices is not None and i in self.out_indices:
                outs.append(x)
        return outs if self.out_indices is not None else x

    def forward_head(self, x: paddle.Tensor, pre_logits: bool = False) -> paddle.Tensor:
        """``[N, C, h, w]`` -> mean over h, w -> ``[N, C]`` (``pre_logits``) -> logits ``[N, num_classes]``."""
        x = x.mean(axis=[2, 3])
        return x if pre_logits else self.head(x)

    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        # ConvNeXt/BEiT-style: a patch embedding belongs to the stage it starts (patch_embed1 is the stem).
        return dict(stem=r"^patch_embed1\.",
                    blocks=[(r"^block(\d+)\.", None) if coarse else (r"^block(\d+)\.(\d+)\.", None),
                            (r"^patch_embed(\d+)\.", (-1,)), (r"^norm(\d+)\.", (99999,))],
                    stage_base=1)


# ------------------------------------------------------------------------------- checkpoint adapter
def _indices(shapes: Mapping[str, Tuple[int, ...]], pattern: str) -> List[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in shapes for m in [rx.match(k)] if m})


class VANFamily(Family):
    """VAN checkpoints: the official release (optionally under ``state_dict``), PaddleClas's VAN_B0-B3
    ``.pdparams``, downstream ``backbone.*`` and paddle_lk ``.pdparams``."""

    name = "van"
    display_name = "VAN"
    model_cls = VAN
    variant_fields = ("embed_dims", "depths", "mlp_ratios", "num_stages")
    _SIGNATURE = [r"patch_embed1\.proj\.weight", r"block1\.0\.attn\.spatial_gating_unit\.conv0\.weight"]
    keymaps = (
        register_keymap(KeyMap(
            "van", "official VAN (VAN-Classification, optionally wrapped in 'state_dict')",
            TORCH_BN_RULES + [Rule(r"head\.weight", transform="linear")],
            signature=_SIGNATURE + [TORCH_BN_KEY])),
        register_keymap(KeyMap(
            "van_paddleclas", "PaddleClas VAN_B0-B3 .pdparams (layer scales stored as [C, 1, 1])",
            [Rule(r"(.*\.layer_scale_[12])", transform="flatten")],
            signature=_SIGNATURE + [r".*\._mean"], forbidden=[TORCH_BN_KEY],
            rank=(r".*\.layer_scale_[12]", 3), layout="paddle")),
    )

    def claims(self, shapes: Mapping[str, Tuple[int, ...]]) -> bool:
        return "patch_embed1.proj.weight" in shapes and any(k.startswith("block1.") for k in shapes)

    def config_from_shapes(self, p: Mapping[str, Tuple[int, ...]]) -> Dict[str, Any]:
        stages = _indices(p, r"patch_embed(\d+)\.proj\.weight")
        if stages != list(range(1, len(stages) + 1)):
            raise DetectionError(f"VAN patch embeddings {stages} are not numbered 1..N")
        dims, depths, ratios = [], [], []
        for i in stages:
            dim = p[f"patch_embed{i}.proj.weight"][0]
            blocks = _indices(p, rf"block{i}\.(\d+)\.")
            if not blocks:
                raise DetectionError(f"VAN stage {i} has no blocks")
            dims.append(dim)
            depths.append(len(blocks))
            r = p[f"block{i}.0.mlp.fc1.weight"][0] / dim
            ratios.append(int(r) if float(r).is_integer() else r)
        head = p.get("head.weight")
        return dict(embed_dims=dims, depths=depths, mlp_ratios=ratios, num_stages=len(stages),
                    in_chans=p["patch_embed1.proj.weight"][1], num_classes=head[1] if head else 0,
                    out_indices=None if head else list(range(len(stages))))


register_family(VANFamily())

# ------------------------------------------------------------------------------- variants
_VAN_ARCHS = {
    0: dict(embed_dims=[32, 64, 160, 256], depths=[3, 3, 5, 2]),
    1: dict(embed_dims=[64, 128, 320, 512], depths=[2, 2, 4, 2]),
    2: dict(embed_dims=[64, 128, 320, 512], depths=[3, 3, 12, 3]),
    3: dict(embed_dims=[64, 128, 320, 512], depths=[3, 5, 27, 3]),
    4: dict(embed_dims=[64, 128, 320, 512], depths=[3, 6, 40, 3]),
    5: dict(embed_dims=[96, 192, 480, 768], depths=[3, 3, 24, 3]),
    6: dict(embed_dims=[96, 192, 384, 768], depths=[6, 6, 90, 6]),
}
# Published ImageNet-1K results (224) and the official release files (VAN-Classification).
_VAN_FACTS = {
    0: (4.1, 0.9, ("van_tiny_754.pth.tar", 75.4)), 1: (13.9, 2.5, ("van_small_811.pth.tar", 81.1)),
    2: (26.6, 5.0, ("van_base_828.pth.tar", 82.8)), 3: (44.8, 9.0, ("van_large_839.pth.tar", 83.9)),
    4: (60.3, 12.2, ("van_b4.pth", 84.2)), 5: (None, None, None), 6: (None, None, None),
}


def _van_cfg(i: int) -> ModelCfg:
    params, flops, release = _VAN_FACTS[i]
    return ModelCfg(family="van", arch=dict(mlp_ratios=[8, 8, 4, 4], num_stages=4, **_VAN_ARCHS[i]), crop_pct=0.9,
                    params_m=params, flops_g=flops, paddle_url=_PPCLS.format(f"VAN_B{i}") if i < 4 else None,
                    checkpoints=(Checkpoint(release[0], "ImageNet-1K", 224, release[1]),) if release else (),
                    description=f"VAN-b{i}, Visual Attention Network (2022)")


@register_model(cfg=_van_cfg(0))
def VAN_b0(pretrained=False, num_classes=None, class_num=None, **kwargs) -> VAN:
    """VAN-b0: embed dims [32,64,160,256], depths [3,3,5,2]; 4.1M params, 0.9 GFLOPs."""
    return build_model_with_cfg("VAN_b0", pretrained, num_classes, class_num, **kwargs)


@register_model(cfg=_van_cfg(1))
def VAN_b1(pretrained=False, num_classes=None, class_num=None, **kwargs) -> VAN:
    """VAN-b1: embed dims [64,128,320,512], depths [2,2,4,2]; 13.9M params, 2.5 GFLOPs."""
    return build_model_with_cfg("VAN_b1", pretrained, num_classes, class_num, **kwargs)


@register_model(cfg=_van_cfg(2))
def VAN_b2(pretrained=False, num_classes=None, class_num=None, **kwargs) -> VAN:
    """VAN-b2: embed dims [64,128,320,512], depths [3,3,12,3]; 26.6M params, 5.0 GFLOPs."""
    return build_model_with_cfg("VAN_b2", pretrained, num_classes, class_num, **kwargs)


@register_model(cfg=_van_cfg(3))
def VAN_b3(pretrained=False, num_classes=None, class_num=None, **kwargs) -> VAN:
    """VAN-b3: embed dims [64,128,320,512], depths [3,5,27,3]; 44.8M params, 9.0 GFLOPs."""
    return build_model_with_cfg("VAN_b3", pretrained, num_classes, class_num, **kwargs)


@register_model(cfg=_van_cfg(4))
def VAN_b4(pretrained=False, num_classes=None, class_num=None, **kwargs) -> VAN:
    """VAN-b4: embed dims [64,128,320,512], depths [3,6,40,3]; 60.3M params, 12.2 GFLOPs."""
    return build_model_with_cfg("VAN_b4", pretrained, num_classes, class_num, **kwargs)


@register_model(cfg=_van_cfg(5))
def VAN_b5(pretrained=False, num_classes=None, class_num=None, **kwargs) -> VAN:
    """VAN-b5: embed dims [96,192,480,768], depths [3,3,24,3]."""
    return build_model_with_cfg("VAN_b5", pretrained, num_classes, class_num, **kwargs)


@register_model(cfg=_van_cfg(6))
def VAN_b6(pretrained=False, num_classes=None, class_num=None, **kwargs) -> VAN:
    """VAN-b6: embed dims [96,192,384,768], depths [6,6,90,6]."""
    return build_model_with_cfg("VAN_b6", pretrained, num_classes, class_num, **kwargs)
