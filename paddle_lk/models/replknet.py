"""RepLKNet in Paddle: the family's blocks, model, variant table, checkpoint adapter and constructors.

Architecture from "Scaling Up Your Kernels to 31x31: Revisiting Large Kernel Design in CNNs" (Ding et
al., CVPR 2022); official repository DingXiaoH/RepLKNet-pytorch (``replknet.py``). Sublayer names
follow the official module tree, so an official state dict maps onto this one by renaming BN statistics
and transposing the Linear weight only.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..errors import DetectionError
from ..io.keymap import TORCH_BN_RULES, KeyMap, Rule, register_keymap
from ..layers.checkpoint import checkpoint, uses_checkpoint
from ..layers.conv_bn import ConvBN, check_kernel_size, conv2d_with_params, fold_bn_into_linear, \
    fold_bn_into_pointwise, is_bn, make_bn
from ..layers.drop_path import DropPath
from ..layers.lk_conv import DepthwiseConv2D
from ..registry import Checkpoint, Family, ModelCfg, INCEPTION_MEAN, INCEPTION_STD, register_family, register_model
from ..layers.reparam import Reparameterizable, reparameterize
from ._base import LKNetBase, classifier_classes, normalize_out_indices
from ._builder import build_model_with_cfg

__all__ = ["ReparamLargeKernelConv", "RepLKBlock", "ConvFFN", "RepLKNetStage", "RepLKNet", "RepLKNetFamily",
           "RepLKNet31B", "RepLKNet31L", "RepLKNetXL", "RepLKNet3", "RepLKNet7", "RepLKNet13", "RepLKNet25"]


class ReparamLargeKernelConv(nn.Layer, Reparameterizable):
    """Depthwise KxK conv-BN with a parallel small-kernel conv-BN, mergeable into one biased KxK conv.

    ``x``: ``[N, C, H, W]`` -> ``[N, C, H / stride, W / stride]``. Both kernels must be odd ("same"
    padding ``k // 2``) and the small one no larger than the large one.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int,
                 small_kernel: Optional[int], small_kernel_merged: bool = False,
                 use_sync_bn: bool = False) -> None:
        super().__init__()
        check_kernel_size("kernel_size", kernel_size)
        check_kernel_size("small_kernel", small_kernel, allow_none=True)
        if small_kernel is not None and small_kernel > kernel_size:
            raise ValueError(f"small_kernel={small_kernel} is larger than kernel_size={kernel_size}")
        self.kernel_size, self.small_kernel = kernel_size, small_kernel
        padding = kernel_size // 2
        if small_kernel_merged:
            self.lkb_reparam = DepthwiseConv2D(in_channels, out_channels, kernel_size, stride=stride,
                                               padding=padding, groups=groups)
        else:
            self.lkb_origin = ConvBN(in_channels, out_channels, kernel_size, stride, padding, groups,
                                     use_sync_bn=use_sync_bn)
            if small_kernel is not None:
                self.small_conv = ConvBN(in_channels, out_channels, small_kernel, stride, small_kernel // 2,
                                         groups, use_sync_bn=use_sync_bn)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if hasattr(self, "lkb_reparam"):
            return self.lkb_reparam(x)
        out = self.lkb_origin(x)
        if hasattr(self, "small_conv"):
            out = out + self.small_conv(x)
        return out

    def get_equivalent_kernel_bias(self) -> Tuple[paddle.Tensor, paddle.Tensor]:
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
    """pre-BN -> 1x1 conv-BN -> GELU -> 1x1 conv-BN, residual with drop path (shape-preserving)."""

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
            x = checkpoint(blk, x) if uses_checkpoint(self.use_checkpoint, blk, x) else blk(x)
        return x


class RepLKNet(LKNetBase):
    """RepLKNet backbone / classifier (official constructor arguments by name).

    Classification (``out_indices=None``): stem (stride 4), four stages with transitions (strides 4, 8,
    16, 32), ``norm`` BN, average pool, ``head`` Linear; ``num_classes=0`` returns the pooled
    features. Features mode (``out_indices``): the listed stages' maps, each through
    ``stages[i].norm`` (BN with ``norm_intermediate_features``, else identity), no head.

    Raises:
        ValueError: lists of different lengths, an even or non-positive kernel size, a small kernel
        larger than the large one, ``out_indices`` out of range.
    """

    def __init__(self, large_kernel_sizes: Sequence[int], layers: Sequence[int], channels: Sequence[int],
                 drop_path_rate: float, small_kernel: Optional[int], dw_ratio: float = 1, ffn_ratio: float = 4,
                 in_channels: int = 3, num_classes: Optional[int] = 1000, out_indices: Optional[Sequence[int]] = None,
                 use_checkpoint: bool = False, small_kernel_merged: bool = False, use_sync_bn: bool = False,
                 norm_intermediate_features: bool = False) -> None:
        super().__init__()
        if not (len(large_kernel_sizes) == len(layers) == len(channels)):
            raise ValueError(f"large_kernel_sizes {list(large_kernel_sizes)}, layers {list(layers)} and "
                             f"channels {list(channels)} must have the same length")
        for i, k in enumerate(large_kernel_sizes):
            check_kernel_size(f"large_kernel_sizes[{i}]", k)
        check_kernel_size("small_kernel", small_kernel, allow_none=True)
        self.num_stages = len(layers)
        self.stage_channels = list(channels)
        self.stage_modules = [f"stages.{i}" for i in range(self.num_stages)]
        self.out_indices = normalize_out_indices(out_indices, self.num_stages)
        self.num_classes = classifier_classes(num_classes, self.out_indices)
        self.num_features = channels[-1]
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
                small_kernel, dw_ratio, ffn_ratio, False, small_kernel_merged, norm_intermediate_features,
                use_sync_bn))
            if i < self.num_stages - 1:
                self.transitions.append(nn.Sequential(
                    ConvBN(channels[i], channels[i + 1], 1, 1, 0, relu=True, use_sync_bn=use_sync_bn),
                    ConvBN(channels[i + 1], channels[i + 1], 3, 2, 1, groups=channels[i + 1], relu=True,
                           use_sync_bn=use_sync_bn)))
        if self.out_indices is None:
            self.norm = make_bn(channels[-1], use_sync_bn)
            self.avgpool = nn.AdaptiveAvgPool2D(1)
            self.head = self._make_head(self.num_classes)
        self.set_grad_checkpointing(use_checkpoint)

    @property
    def use_checkpoint(self) -> bool:
        """Official name of :attr:`grad_checkpointing`."""
        return self.grad_checkpointing

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        super().set_grad_checkpointing(enable)
        for stage in self.stages:
            stage.use_checkpoint = self.grad_checkpointing

    def forward_features(self, x: paddle.Tensor) -> Union[paddle.Tensor, List[paddle.Tensor]]:
        """``x``: ``[N, in_channels, H, W]`` -> the last stage's map ``[N, channels[-1], H/32, W/32]``
        (rounded up); in features mode the list of ``out_indices`` maps ``[N, channels[i], H/s, W/s]``,
        ``s`` = 4, 8, 16, 32."""
        x = self.stem[0](x)
        for stem_layer in self.stem[1:]:
            x = checkpoint(stem_layer, x) if uses_checkpoint(self.grad_checkpointing, stem_layer, x) else stem_layer(x)
        outs = []
        for i in range(self.num_stages):
            x = self.stages[i](x)
            if self.out_indices is not None and i in self.out_indices:
                outs.append(self.stages[i].norm(x))
            if i < self.num_stages - 1:
                x = self.transitions[i](x)
        return outs if self.out_indices is not None else x

    def forward_head(self, x: paddle.Tensor, pre_logits: bool = False) -> paddle.Tensor:
        """``[N, C, h, w]`` -> BN -> global average pool -> ``[N, C]`` (``pre_logits``) -> logits ``[N, num_classes]``."""
        x = paddle.flatten(self.avgpool(self.norm(x)), 1)
        return x if pre_logits else self.head(x)

    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        # Official RepLKNet layer decay: a transition belongs to the stage before it (its last group).
        if coarse:
            return dict(stem=r"^stem\.", blocks=[(r"^stages\.(\d+)\.", None), (r"^transitions\.(\d+)\.", (99999,))])
        return dict(stem=r"^stem\.", blocks=[(r"^stages\.(\d+)\.blocks\.(\d+)\.", None),
                                            (r"^transitions\.(\d+)\.", (99999,))])

    def fuse_bn(self) -> None:
        """Fold the head BN into the classifier (BN -> avgpool -> Linear are all linear)."""
        if self.out_indices is None and self.num_classes > 0 and is_bn(self.norm):
            self.head = fold_bn_into_linear(self.norm, self.head)
            self.norm = nn.Identity()

    def structural_reparam(self) -> "RepLKNet":
        """Official method name: merge every large-kernel block in place."""
        return reparameterize(self)


# ------------------------------------------------------------------------------- checkpoint adapter
def _indices(shapes: Mapping[str, Tuple[int, ...]], pattern: str) -> List[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in shapes for m in [rx.match(k)] if m})


def _ratio(a: int, b: int) -> Union[int, float]:
    r = a / b
    return int(r) if float(r).is_integer() else r


class RepLKNetFamily(Family):
    """RepLKNet checkpoints: official train form (``lkb_origin`` + ``small_conv``), merged deploy form
    (``lkb_reparam``), SyncBN, downstream ``backbone.*`` and paddle_lk ``.pdparams``."""

    name = "replknet"
    display_name = "RepLKNet"
    model_cls = RepLKNet
    in_chans_arg = "in_channels"
    deploy_form_name = "merged"
    variant_fields = ("large_kernel_sizes", "layers", "channels", "dw_ratio", "ffn_ratio", "small_kernel")
    keymaps = (register_keymap(KeyMap(
        "replknet", "official RepLKNet (train form, merged lkb_reparam form, SyncBN, downstream backbone)",
        TORCH_BN_RULES + [Rule(r"head\.weight", transform="linear")],
        signature=[r"stem\.0\.conv\.weight", r"stages\.0\.blocks\.0\.large_kernel\..*"],
        forbidden=[r".*\._mean"])),)

    def claims(self, shapes: Mapping[str, Tuple[int, ...]]) -> bool:
        return "stem.0.conv.weight" in shapes and any(k.startswith("stages.") for k in shapes)

    def config_from_shapes(self, p: Mapping[str, Tuple[int, ...]]) -> Dict[str, Any]:
        stages = _indices(p, r"stages\.(\d+)\.")
        if stages != list(range(len(stages))) or not stages:
            raise DetectionError(f"RepLKNet stages {stages} are not numbered 0..N-1")
        kernels, layers, channels, dw_ratios, ffn_ratios, smalls = [], [], [], [], [], []
        merged = any(".lkb_reparam." in k for k in p)
        for i in stages:
            blocks = _indices(p, rf"stages\.{i}\.blocks\.(\d+)\.")
            if not blocks or len(blocks) % 2:
                raise DetectionError(f"RepLKNet stage {i} has {len(blocks)} blocks; expected RepLK/FFN pairs")
            pre = f"stages.{i}.blocks.0."
            try:
                c = p[pre + "pw2.conv.weight"][0]
                dw = p[pre + "pw1.conv.weight"][0]
                lk = p[pre + ("large_kernel.lkb_reparam.weight" if merged else "large_kernel.lkb_origin.conv.weight")]
                ffn = p[f"stages.{i}.blocks.1.pw1.conv.weight"][0]
            except KeyError as e:
                raise DetectionError(f"RepLKNet stage {i}: key {e} missing") from None
            kernels.append(lk[-1])
            layers.append(len(blocks) // 2)
            channels.append(c)
            dw_ratios.append(_ratio(dw, c))
            ffn_ratios.append(_ratio(ffn, c))
            small = p.get(pre + "large_kernel.small_conv.conv.weight")
            smalls.append(small[-1] if small else None)
        if len(set(dw_ratios)) > 1 or len(set(ffn_ratios)) > 1 or len(set(smalls)) > 1:
            raise DetectionError(f"RepLKNet stages disagree: dw ratios {dw_ratios}, ffn ratios {ffn_ratios}, "
                                 f"small kernels {smalls}")
        head = p.get("head.weight")
        features = head is None and "norm.weight" not in p
        return dict(
            large_kernel_sizes=kernels, layers=layers, channels=channels, drop_path_rate=0.0,
            small_kernel=None if merged else smalls[0], dw_ratio=dw_ratios[0], ffn_ratio=ffn_ratios[0],
            in_channels=p["stem.0.conv.weight"][1], num_classes=head[1] if head else 0,
            out_indices=list(stages) if features else None, small_kernel_merged=merged,
            norm_intermediate_features="stages.0.norm.weight" in p)

    def form(self, config: Mapping[str, Any]) -> str:
        return "deploy" if config.get("small_kernel_merged") else "train"

    def variant_matches(self, arch: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
        # The small-kernel branch is visible only in the train form.
        fields = [f for f in self.variant_fields if f in arch and not (f == "small_kernel" and
                                                                           config.get("small_kernel_merged"))]
        return all(str(_listed(arch[f])) == str(_listed(config.get(f))) for f in fields)


def _listed(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


register_family(RepLKNetFamily())

# ------------------------------------------------------------------------------- variants
_31B = dict(large_kernel_sizes=[31, 29, 27, 13], layers=[2, 2, 18, 2], channels=[128, 256, 512, 1024],
            drop_path_rate=0.3, small_kernel=5, dw_ratio=1, ffn_ratio=4)
_PAPER = "Scaling Up Your Kernels to 31x31 (CVPR 2022)"


def _ablation(kernels: List[int]) -> dict:
    # A 5x5 re-param branch only makes sense next to a larger kernel.
    return dict(_31B, large_kernel_sizes=kernels, small_kernel=5 if min(kernels) > 5 else None)


@register_model(cfg=ModelCfg(
    family="replknet", arch=_31B, params_m=79.0, flops_g=15.3, description=f"RepLKNet-31B, {_PAPER}",
    checkpoints=(Checkpoint("RepLKNet-31B_ImageNet-1K_224.pth", "ImageNet-1K", 224, 83.5),
                 Checkpoint("RepLKNet-31B_ImageNet-1K_384.pth", "ImageNet-1K", 384, 84.8),
                 Checkpoint("RepLKNet-31B_ImageNet-22K-to-1K_224.pth", "ImageNet-22K -> 1K", 224, 85.2),
                 Checkpoint("RepLKNet-31B_ImageNet-22K-to-1K_384.pth", "ImageNet-22K -> 1K", 384, 86.0),
                 Checkpoint("RepLKNet-31B_ImageNet-22K.pth", "ImageNet-22K", 224, None, 21841))))
def RepLKNet31B(pretrained=False, num_classes=None, class_num=None, **kwargs) -> RepLKNet:
    """RepLKNet-31B: kernels [31,29,27,13], channels [128,256,512,1024], 79M params, 15.3 GFLOPs at 224."""
    return build_model_with_cfg("RepLKNet31B", pretrained, num_classes, class_num, **kwargs)


@register_model(cfg=ModelCfg(
    family="replknet", arch=dict(_31B, channels=[192, 384, 768, 1536]), input_size=(3, 384, 384), params_m=172.0,
    flops_g=96.0, description=f"RepLKNet-31L, {_PAPER}",
    checkpoints=(Checkpoint("RepLKNet-31L_ImageNet-22K-to-1K_384.pth", "ImageNet-22K -> 1K", 384, 86.6),
                 Checkpoint("RepLKNet-31L_ImageNet-22K.pth", "ImageNet-22K", 384, None, 21841))))
def RepLKNet31L(pretrained=False, num_classes=None, class_num=None, **kwargs) -> RepLKNet:
    """RepLKNet-31L: 31B with channels [192,384,768,1536], 172M params, 96.0 GFLOPs at 384."""
    return build_model_with_cfg("RepLKNet31L", pretrained, num_classes, class_num, **kwargs)


@register_model(cfg=ModelCfg(
    family="replknet", arch=dict(_31B, large_kernel_sizes=[27, 27, 27, 13], channels=[256, 512, 1024, 2048],
                                 small_kernel=None, dw_ratio=1.5),
    input_size=(3, 320, 320), mean=INCEPTION_MEAN, std=INCEPTION_STD, params_m=335.0, flops_g=128.7,
    description=f"RepLKNet-XL (MegData-73M pretraining, mean/std 0.5), {_PAPER}",
    checkpoints=(Checkpoint("RepLKNet-XL_MegData73M_ImageNet1K.pth", "MegData-73M -> ImageNet-1K", 320, 87.8),)))
def RepLKNetXL(pretrained=False, num_classes=None, class_num=None, **kwargs) -> RepLKNet:
    """RepLKNet-XL: kernels [27,27,27,13], channels [256,512,1024,2048], no small kernel, dw_ratio 1.5."""
    return build_model_with_cfg("RepLKNetXL", pretrained, num_classes, class_num, **kwargs)


@register_model(cfg=ModelCfg(family="replknet", arch=_ablation([3] * 4), description=f"kernel ablation, {_PAPER}"))
def RepLKNet3(pretrained=False, num_classes=None, class_num=None, **kwargs) -> RepLKNet:
    """Paper ablation: 31B widths with 3x3 kernels in every stage (no small-kernel branch)."""
    return build_model_with_cfg("RepLKNet3", pretrained, num_classes, class_num, **kwargs)


@register_model(cfg=ModelCfg(family="replknet", arch=_ablation([7] * 4), description=f"kernel ablation, {_PAPER}"))
def RepLKNet7(pretrained=False, num_classes=None, class_num=None, **kwargs) -> RepLKNet:
    """Paper ablation: 31B widths with 7x7 kernels."""
    return build_model_with_cfg("RepLKNet7", pretrained, num_classes, class_num, **kwargs)


@register_model(cfg=ModelCfg(family="replknet", arch=_ablation([13] * 4), description=f"kernel ablation, {_PAPER}"))
def RepLKNet13(pretrained=False, num_classes=None, class_num=None, **kwargs) -> RepLKNet:
    """Paper ablation: 31B widths with 13x13 kernels."""
    return build_model_with_cfg("RepLKNet13", pretrained, num_classes, class_num, **kwargs)


@register_model(cfg=ModelCfg(family="replknet", arch=_ablation([25, 25, 25, 13]),
                             description=f"kernel ablation, {_PAPER}"))
def RepLKNet25(pretrained=False, num_classes=None, class_num=None, **kwargs) -> RepLKNet:
    """Paper ablation: 31B widths with kernels [25,25,25,13]."""
    return build_model_with_cfg("RepLKNet25", pretrained, num_classes, class_num, **kwargs)
