"""UniRepLKNet in Paddle.

Paper: "UniRepLKNet: A Universal Perception Large-Kernel ConvNet for Audio, Video, Point Cloud,
Time-Series and Image Recognition" (Ding et al., CVPR 2024); official PyTorch code:
https://github.com/AILab-CVC/UniRepLKNet (AILab-CVC/UniRepLKNet).

Layout of the network (sublayer names are the official module tree, so an official state dict
loads after the generic renames only: BN ``running_mean``/``running_var`` -> ``_mean``/``_variance``,
``num_batches_tracked`` dropped, 2-D Linear weights transposed):

* ``downsample_layers.0``: conv3x3/2 -> LN -> GELU -> conv3x3/2 -> LN (stride 4);
  ``downsample_layers.i`` (i = 1..3): conv3x3/2 -> LN. The LNs normalise over channels of an NCHW map.
* ``stages.i.j``: :class:`UniRepLKNetBlock`: depthwise mixer (``dwconv``: identity for kernel 0, a
  plain depthwise conv for 3 and 5, a :class:`DilatedReparamBlock` for 7..17) -> BN (``norm``) ->
  SE (``se``) -> channels-last Linear (``pwconv1``) -> GELU + GRN (``act``) -> Linear -> BN
  (``pwconv2``) -> layer scale (``gamma``) -> drop path, plus the identity shortcut.
* classification: global average pool -> ``norm`` (LayerNorm) -> ``head`` (Linear);
  features mode (``out_indices``): the stage maps through ``norm{i}`` (channel LayerNorm).

Structural re-parameterization goes through :func:`paddle_lk.reparameterize`: every dilated branch
and its BN merge into the large kernel, the mixer BN folds into the depthwise conv, and the layer
scale, the GRN bias and the last BN fold into ``pwconv2``'s Linear; the result has exactly the keys
of an official deploy checkpoint and equals ``UniRepLKNet(..., deploy=True)``.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..errors import DetectionError
from ..layers.checkpoint import checkpoint, uses_checkpoint
from ..layers.conv_bn import conv2d_with_params, fuse_conv_bn, is_bn, make_bn
from ..layers.drop_path import DropPath
from ..layers.lk_conv import DepthwiseConv2D
from ..io.keymap import TORCH_BN_RULES, KeyMap, Rule, register_keymap
from ..layers.reparam import Reparameterizable, reparameterize
from ..registry import Checkpoint, Family, ModelCfg, register_family, register_model
from ._base import LKNetBase, classifier_classes, normalize_out_indices, resolve_num_classes
from ._builder import build_model_with_cfg

__all__ = ["UniRepLKNet", "UniRepLKNetBlock", "DilatedReparamBlock", "GRNwithNHWC", "SEBlock", "LayerNorm",
           "NCHWtoNHWC", "NHWCtoNCHW", "DILATED_BRANCHES", "BLOCK_KERNEL_SIZES", "DEFAULT_KERNEL_SIZES",
           "VARIANT_CONFIGS", "UniRepLKNetFamily", "dilate_kernel", "variant_config_from_shapes",
           "UniRepLKNet_A", "UniRepLKNet_F", "UniRepLKNet_P", "UniRepLKNet_N", "UniRepLKNet_T",
           "UniRepLKNet_S", "UniRepLKNet_B", "UniRepLKNet_L", "UniRepLKNet_XL"]

# Parallel dilated branches of a Dilated Reparam Block, per large kernel size: (branch kernel sizes,
# dilation rates). From the official DilatedReparamBlock (unireplknet.py); the first branch is always
# undilated. A k x k branch with rate r covers r (k - 1) + 1 pixels, never more than the large kernel.
DILATED_BRANCHES: Dict[int, Tuple[Tuple[int, ...], Tuple[int, ...]]] = {
    5: ((3, 3), (1, 2)),
    7: ((5, 3, 3), (1, 2, 3)),
    9: ((5, 5, 3, 3), (1, 2, 3, 4)),
    11: ((5, 5, 3, 3, 3), (1, 2, 3, 4, 5)),
    13: ((5, 7, 3, 3, 3), (1, 2, 3, 4, 5)),
    15: ((5, 7, 3, 3, 3), (1, 2, 3, 5, 7)),
    17: ((5, 9, 3, 3, 3), (1, 2, 4, 5, 7)),
}
# What a block builds for its kernel size (official UniRepLKNetBlock): 0 -> identity mixer (no BN),
# 3 and 5 -> a plain depthwise conv, 7..17 -> a DilatedReparamBlock (the table above; its 5x5 entry
# is reachable through DilatedReparamBlock only, a block with kernel 5 uses the plain conv).
PLAIN_DW_KERNELS = (3, 5)
BLOCK_KERNEL_SIZES: Tuple[int, ...] = (0,) + PLAIN_DW_KERNELS + tuple(k for k in sorted(DILATED_BRANCHES) if k >= 7)

# Default kernel sizes per depth setting (official default_depths_to_kernel_sizes).
_K_AFP = ((3, 3), (13, 13), (13,) * 6, (13, 13))
_K_N = ((3, 3), (13, 13), (13,) * 8, (13, 13))
_K_T = ((3, 3, 3), (13, 13, 13), (13, 3) * 9, (13, 13, 13))
_K_SBLXL = ((3, 3, 3), (13, 13, 13), (13, 3, 3) * 9, (13, 13, 13))
DEFAULT_KERNEL_SIZES: Dict[Tuple[int, ...], Tuple[Tuple[int, ...], ...]] = {
    (2, 2, 6, 2): _K_AFP,
    (2, 2, 8, 2): _K_N,
    (3, 3, 18, 3): _K_T,
    (3, 3, 27, 3): _K_SBLXL,
}

# Registered variants: depths and widths as released.
VARIANT_CONFIGS: Dict[str, Dict[str, Tuple[int, ...]]] = {
    "UniRepLKNet_A": dict(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320)),
    "UniRepLKNet_F": dict(depths=(2, 2, 6, 2), dims=(48, 96, 192, 384)),
    "UniRepLKNet_P": dict(depths=(2, 2, 6, 2), dims=(64, 128, 256, 512)),
    "UniRepLKNet_N": dict(depths=(2, 2, 8, 2), dims=(80, 160, 320, 640)),
    "UniRepLKNet_T": dict(depths=(3, 3, 18, 3), dims=(80, 160, 320, 640)),
    "UniRepLKNet_S": dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768)),
    "UniRepLKNet_B": dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024)),
    "UniRepLKNet_L": dict(depths=(3, 3, 27, 3), dims=(192, 384, 768, 1536)),
    "UniRepLKNet_XL": dict(depths=(3, 3, 27, 3), dims=(256, 512, 1024, 2048)),
}

NUM_STAGES = 4
_LN_EPS = 1e-6


def _init_attr(std: float = 0.02) -> paddle.ParamAttr:
    return paddle.ParamAttr(initializer=nn.initializer.TruncatedNormal(mean=0.0, std=std))


def _zero_attr() -> paddle.ParamAttr:
    return paddle.ParamAttr(initializer=nn.initializer.Constant(0.0))


def _dw_conv(channels: int, kernel_size: int, dilation: int = 1, bias: bool = False) -> DepthwiseConv2D:
    """Depthwise "same" conv (stride 1) through the large-kernel dispatcher; official init (trunc-normal .02)."""
    pad = (dilation * (kernel_size - 1) + 1) // 2
    return DepthwiseConv2D(channels, channels, kernel_size, stride=1, padding=pad, dilation=dilation,
                           groups=channels, weight_attr=_init_attr(), bias_attr=_zero_attr() if bias else False)


def dilate_kernel(kernel: paddle.Tensor, rate: int) -> paddle.Tensor:
    """The dense kernel equal to ``kernel`` ([C, M, k, k]) applied with dilation ``rate``:
    [C, M, r (k - 1) + 1, r (k - 1) + 1], the taps ``rate`` apart and zeros between them."""
    if rate == 1:
        return kernel
    c, m, k, _ = kernel.shape
    size = rate * (k - 1) + 1
    w = kernel.reshape([c, m, k, 1, k, 1])
    w = paddle.concat([w, paddle.zeros([c, m, k, rate - 1, k, 1], kernel.dtype)], axis=3)
    w = paddle.concat([w, paddle.zeros([c, m, k, rate, k, rate - 1], kernel.dtype)], axis=5)
    return w.reshape([c, m, k * rate, k * rate])[:, :, :size, :size]


def _pad_kernel_to(kernel: paddle.Tensor, size: int) -> paddle.Tensor:
    """Zero-pad a centred odd kernel to ``size`` x ``size``."""
    p = (size - kernel.shape[-1]) // 2
    return F.pad(kernel, [p, p, p, p]) if p > 0 else kernel


# ---------------------------------------------------------------------------------------------------
# Small layers
# ---------------------------------------------------------------------------------------------------
class NCHWtoNHWC(nn.Layer):
    """[N, C, H, W] -> [N, H, W, C]."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x.transpose([0, 2, 3, 1])


class NHWCtoNCHW(nn.Layer):
    """[N, H, W, C] -> [N, C, H, W]."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x.transpose([0, 3, 1, 2])


class LayerNorm(nn.Layer):
    """LayerNorm over the channels of an NCHW map (ConvNeXt's ``channels_first`` LayerNorm);
    ``weight``/``bias`` are [C]."""

    def __init__(self, normalized_shape: int, eps: float = _LN_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = self.create_parameter([normalized_shape], default_initializer=nn.initializer.Constant(1.0))
        self.bias = self.create_parameter([normalized_shape], is_bias=True,
                                          default_initializer=nn.initializer.Constant(0.0))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        mean = x.mean(axis=1, keepdim=True)
        centred = x - mean
        var = (centred * centred).mean(axis=1, keepdim=True)
        x = centred / paddle.sqrt(var + self.eps)
        return self.weight.reshape([1, -1, 1, 1]) * x + self.bias.reshape([1, -1, 1, 1])

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}, data_format=NCHW"


class GRNwithNHWC(nn.Layer):
    """Global Response Normalization (ConvNeXt V2) on NHWC input: ``(gamma * N(x) + 1) * x + beta``,
    N(x) = per-channel spatial L2 norm divided by its channel mean. ``gamma``/``beta`` are [1, 1, 1, C];
    ``use_bias=False`` (deploy form, the bias folded downstream) drops ``beta``."""

    def __init__(self, dim: int, use_bias: bool = True) -> None:
        super().__init__()
        self.use_bias = use_bias
        zeros = nn.initializer.Constant(0.0)
        self.gamma = self.create_parameter([1, 1, 1, dim], default_initializer=zeros)
        self.beta = self.create_parameter([1, 1, 1, dim], default_initializer=zeros) if use_bias else None

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        gx = paddle.linalg.vector_norm(x, p=2, axis=[1, 2], keepdim=True)
        nx = gx / (gx.mean(axis=-1, keepdim=True) + 1e-6)
        out = (self.gamma * nx + 1.0) * x
        if self.beta is not None:
            out = out + self.beta
        return out


class SEBlock(nn.Layer):
    """Squeeze-and-Excitation on NCHW: avg pool -> 1x1 ``down`` -> ReLU -> 1x1 ``up`` -> sigmoid gate."""

    def __init__(self, input_channels: int, internal_neurons: int) -> None:
        super().__init__()
        self.down = nn.Conv2D(input_channels, internal_neurons, 1, weight_attr=_init_attr(), bias_attr=_zero_attr())
        self.up = nn.Conv2D(internal_neurons, input_channels, 1, weight_attr=_init_attr(), bias_attr=_zero_attr())

    def forward(self, inputs: paddle.Tensor) -> paddle.Tensor:
        x = inputs.mean(axis=[2, 3], keepdim=True)
        x = F.sigmoid(self.up(F.relu(self.down(x))))
        return inputs * x


# ---------------------------------------------------------------------------------------------------
# Dilated Reparam Block
# ---------------------------------------------------------------------------------------------------
class DilatedReparamBlock(nn.Layer, Reparameterizable):
    """Depthwise k x k conv + BN in parallel with dilated depthwise conv + BN branches (NCHW, stride 1).

    Train form: ``lk_origin`` (no bias), ``origin_bn``, and per branch ``dil_conv_k{k}_{r}`` /
    ``dil_bn_k{k}_{r}`` from :data:`DILATED_BRANCHES`. Deploy form (``deploy=True`` or after
    :meth:`reparameterize`): ``lk_origin`` alone, with bias. Every conv is a :class:`DepthwiseConv2D`.
    """

    def __init__(self, channels: int, kernel_size: int, deploy: bool = False, use_sync_bn: bool = False) -> None:
        super().__init__()
        if kernel_size not in DILATED_BRANCHES:
            raise ValueError(f"kernel_size={kernel_size!r}: a Dilated Reparam Block needs one of "
                             f"{sorted(DILATED_BRANCHES)} (the official branch table)")
        self.channels, self.kernel_size = channels, kernel_size
        self.kernel_sizes, self.dilates = (list(v) for v in DILATED_BRANCHES[kernel_size])
        self.lk_origin = _dw_conv(channels, kernel_size, bias=deploy)
        if not deploy:
            self.origin_bn = make_bn(channels, use_sync_bn)
            for k, r in self.branches:
                setattr(self, f"dil_conv_k{k}_{r}", _dw_conv(channels, k, dilation=r))
                setattr(self, f"dil_bn_k{k}_{r}", make_bn(channels, use_sync_bn))

    @property
    def branches(self) -> List[Tuple[int, int]]:
        """(kernel size, dilation rate) of each dilated branch."""
        return list(zip(self.kernel_sizes, self.dilates))

    @property
    def deploy(self) -> bool:
        return "origin_bn" not in self._sub_layers

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """[N, C, H, W] -> [N, C, H, W]."""
        if self.deploy:
            return self.lk_origin(x)
        out = self.origin_bn(self.lk_origin(x))
        for k, r in self.branches:
            out = out + getattr(self, f"dil_bn_k{k}_{r}")(getattr(self, f"dil_conv_k{k}_{r}")(x))
        return out

    def equivalent_kernel_bias(self) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """(kernel [C, 1, K, K], bias [C]) of the single conv this block equals in eval mode."""
        if self.deploy:
            return self.lk_origin.weight, self.lk_origin.bias
        kernel, bias = fuse_conv_bn(self.lk_origin.weight, self.lk_origin.bias, self.origin_bn)
        for k, r in self.branches:
            bk, bb = fuse_conv_bn(getattr(self, f"dil_conv_k{k}_{r}").weight, None,
                                  getattr(self, f"dil_bn_k{k}_{r}"))
            kernel = kernel + _pad_kernel_to(dilate_kernel(bk, r), self.kernel_size)
            bias = bias + bb
        return kernel, bias

    def reparameterize(self) -> "DilatedReparamBlock":
        """Merge every branch and BN into one biased ``lk_origin`` (in place; uses BN running statistics)."""
        if self.deploy:
            return self
        with paddle.no_grad():
            kernel, bias = self.equivalent_kernel_bias()
        self.lk_origin = conv2d_with_params(self.lk_origin, kernel, bias)
        delattr(self, "origin_bn")
        for k, r in self.branches:
            delattr(self, f"dil_conv_k{k}_{r}")
            delattr(self, f"dil_bn_k{k}_{r}")
        return self

    # Official method name.
    merge_dilated_branches = reparameterize

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}, branches={self.branches}, deploy={self.deploy}"


# ---------------------------------------------------------------------------------------------------
# Block
# ---------------------------------------------------------------------------------------------------
class UniRepLKNetBlock(nn.Layer, Reparameterizable):
    """One UniRepLKNet block on NCHW maps, ``x + drop_path(gamma * FFN(SE(BN(mixer(x)))))``.

    Args:
        dim: channels.
        kernel_size: 0 (identity mixer), 3 or 5 (plain depthwise conv) or 7..17 odd (Dilated Reparam Block).
        drop_path: stochastic depth rate of the residual branch.
        layer_scale_init_value: initial layer scale ``gamma``; None or <= 0 builds no layer scale.
        deploy: build the re-parameterized (inference) form directly.
        use_sync_bn: SyncBatchNorm (CPU-safe :class:`~paddle_lk.layers.conv_bn.SyncBatchNorm2D`).
        ffn_factor: hidden width of the channels-last FFN as a multiple of ``dim``.
    """

    def __init__(self, dim: int, kernel_size: int, drop_path: float = 0.0,
                 layer_scale_init_value: Optional[float] = 1e-6, deploy: bool = False,
                 use_sync_bn: bool = False, ffn_factor: int = 4) -> None:
        super().__init__()
        _check_block_kernel("kernel_size", kernel_size)
        self.dim, self.kernel_size = dim, kernel_size
        if kernel_size == 0:
            self.dwconv = nn.Identity()
        elif kernel_size in PLAIN_DW_KERNELS:
            self.dwconv = _dw_conv(dim, kernel_size, bias=deploy)
        else:
            self.dwconv = DilatedReparamBlock(dim, kernel_size, deploy=deploy, use_sync_bn=use_sync_bn)
        self.norm = nn.Identity() if (deploy or kernel_size == 0) else make_bn(dim, use_sync_bn)
        self.se = SEBlock(dim, dim // 4)
        ffn_dim = int(ffn_factor * dim)
        self.pwconv1 = nn.Sequential(NCHWtoNHWC(), nn.Linear(dim, ffn_dim, weight_attr=_init_attr(),
                                                             bias_attr=_zero_attr()))
        self.act = nn.Sequential(nn.GELU(), GRNwithNHWC(ffn_dim, use_bias=not deploy))
        if deploy:
            self.pwconv2 = nn.Sequential(nn.Linear(ffn_dim, dim, weight_attr=_init_attr(), bias_attr=_zero_attr()),
                                         NHWCtoNCHW())
        else:
            self.pwconv2 = nn.Sequential(nn.Linear(ffn_dim, dim, weight_attr=_init_attr(), bias_attr=False),
                                         NHWCtoNCHW(), make_bn(dim, use_sync_bn))
        if not deploy and layer_scale_init_value is not None and layer_scale_init_value > 0:
            self.gamma = self.create_parameter(
                [dim], default_initializer=nn.initializer.Constant(float(layer_scale_init_value)))
        else:
            self.gamma = None
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    @property
    def deploy(self) -> bool:
        """True in the re-parameterized form (no BN, no GRN bias, no layer scale)."""
        return len(self.pwconv2) == 2

    def compute_residual(self, x: paddle.Tensor) -> paddle.Tensor:
        """The residual branch: [N, C, H, W] -> [N, C, H, W]."""
        y = self.se(self.norm(self.dwconv(x)))
        y = self.pwconv2(self.act(self.pwconv1(y)))
        if self.gamma is not None:
            y = self.gamma.reshape([1, -1, 1, 1]) * y
        return self.drop_path(y)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """[N, C, H, W] -> [N, C, H, W]."""
        return x + self.compute_residual(x)

    def reparameterize(self) -> "UniRepLKNetBlock":
        """Convert to the deploy form in place (eval-mode equivalent; uses BN running statistics)."""
        with paddle.no_grad():
            if isinstance(self.dwconv, DilatedReparamBlock):
                self.dwconv.reparameterize()
            if is_bn(self.norm):
                conv = self.dwconv.lk_origin if isinstance(self.dwconv, DilatedReparamBlock) else self.dwconv
                weight, bias = fuse_conv_bn(conv.weight, conv.bias, self.norm)
                merged = conv2d_with_params(conv, weight, bias)
                if isinstance(self.dwconv, DilatedReparamBlock):
                    self.dwconv.lk_origin = merged
                else:
                    self.dwconv = merged
                self.norm = nn.Identity()
            if not self.deploy:
                linear, bn, grn = self.pwconv2[0], self.pwconv2[2], self.act[1]
                scale = self.gamma if self.gamma is not None else paddle.ones_like(bn.weight)
                std = paddle.sqrt(bn._variance + bn._epsilon)
                bn_scale = bn.weight / std
                w = linear.weight  # Paddle Linear: [in, out]
                b = linear.bias if linear.bias is not None else paddle.zeros_like(bn.bias)
                if grn.beta is not None:  # the GRN bias passes through the Linear unchanged by x
                    b = b + paddle.matmul(grn.beta.reshape([1, -1]), w).reshape([-1])
                new = nn.Linear(w.shape[0], w.shape[1])
                new.weight.set_value(w * (bn_scale * scale).reshape([1, -1]))
                new.bias.set_value((bn.bias + (b - bn._mean) * bn_scale) * scale)
                self.pwconv2 = nn.Sequential(new, NHWCtoNCHW())
                grn.beta = None
                grn.use_bias = False
                self.gamma = None
        return self

    def extra_repr(self) -> str:
        return f"dim={self.dim}, kernel_size={self.kernel_size}, deploy={self.deploy}"


# ---------------------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------------------
def _check_block_kernel(name: str, k: object) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"{name}={k!r}: a kernel size must be an int, one of {list(BLOCK_KERNEL_SIZES)}")
    k = int(k)
    if k != 0 and k % 2 == 0:
        raise ValueError(f"{name}={k}: even kernel sizes cannot keep the map size ('same' padding needs an odd "
                         f"kernel); use one of {list(BLOCK_KERNEL_SIZES)}")
    if k not in BLOCK_KERNEL_SIZES:
        raise ValueError(f"{name}={k}: not a UniRepLKNet block kernel size; use 0 (identity), 3 or 5 (plain "
                         f"depthwise conv) or one of {[s for s in BLOCK_KERNEL_SIZES if s >= 7]} (Dilated "
                         f"Reparam Block branch table)")


def _int_tuple(name: str, value: object, length: int, minimum: int) -> Tuple[int, ...]:
    try:
        items = list(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name}={value!r}: expected {length} ints") from None
    if len(items) != length:
        raise ValueError(f"{name}={items}: expected {length} values, one per stage, got {len(items)}")
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
            raise ValueError(f"{name}={items}: {v!r} is not an int >= {minimum}")
    return tuple(int(v) for v in items)


def _resolve_kernel_sizes(kernel_sizes: Optional[Sequence[Sequence[int]]], depths: Tuple[int, ...]
                          ) -> Tuple[Tuple[int, ...], ...]:
    if kernel_sizes is None:
        if depths not in DEFAULT_KERNEL_SIZES:
            raise ValueError(f"kernel_sizes=None: there are default kernel sizes only for depths "
                             f"{[list(d) for d in DEFAULT_KERNEL_SIZES]}, not for depths={list(depths)}; "
                             f"pass kernel_sizes, one tuple per stage with one kernel size per block")
        return DEFAULT_KERNEL_SIZES[depths]
    try:
        stages = [list(s) for s in kernel_sizes]
    except TypeError:
        raise ValueError(f"kernel_sizes={kernel_sizes!r}: expected one sequence of kernel sizes per stage") from None
    if len(stages) != NUM_STAGES:
        raise ValueError(f"kernel_sizes: {len(stages)} stages given, UniRepLKNet has {NUM_STAGES}")
    for i, (ks, d) in enumerate(zip(stages, depths)):
        if len(ks) != d:
            raise ValueError(f"kernel_sizes[{i}] has {len(ks)} entries but depths[{i}]={d}: kernel_sizes must "
                             f"give one kernel size per block (kernel sizes do not match the depths)")
        for j, k in enumerate(ks):
            _check_block_kernel(f"kernel_sizes[{i}][{j}]", k)
    return tuple(tuple(int(k) for k in ks) for ks in stages)


class UniRepLKNet(LKNetBase):
    """UniRepLKNet classifier / backbone (official arguments by name).

    Args:
        in_chans: input channels.
        num_classes: classes of ``head`` (0: no classifier, the forward returns pooled normed features).
        depths: blocks per stage (4 stages).
        dims: channels per stage.
        drop_path_rate: stochastic depth, linearly increasing over all blocks.
        layer_scale_init_value: initial layer scale; None or <= 0 builds no ``gamma``.
        head_init_scale: scales the classifier's initial weights.
        kernel_sizes: per stage, one kernel size per block (see :data:`BLOCK_KERNEL_SIZES`); None takes
            the official default for ``depths`` (:data:`DEFAULT_KERNEL_SIZES`).
        deploy: build the re-parameterized (inference) structure.
        with_cp: activation checkpointing per block (alias of :meth:`set_grad_checkpointing`).
        use_sync_bn: SyncBatchNorm (a plain BN wherever there is nothing to synchronise, e.g. on CPU).
        out_indices: features mode (segmentation / detection): return these stages' maps, each through
            ``norm{i}``; no ``norm``/``head`` is built.
        class_num: PaddleClas spelling of ``num_classes``.
        attempt_use_lk_impl: accepted for config compatibility; every depthwise conv already goes through
            the large-kernel dispatcher (``PADDLE_LK_OP=native`` forces ``F.conv2d``).

    Raises:
        ValueError naming the argument: depths/dims not 4 ints, a kernel size outside the branch table,
        an even kernel size, kernel sizes that do not match the depths, bad ``out_indices``.
    """

    def __init__(self, in_chans: int = 3, num_classes: Optional[int] = 1000,
                 depths: Sequence[int] = (3, 3, 27, 3), dims: Sequence[int] = (96, 192, 384, 768),
                 drop_path_rate: float = 0.0, layer_scale_init_value: Optional[float] = 1e-6,
                 head_init_scale: float = 1.0, kernel_sizes: Optional[Sequence[Sequence[int]]] = None,
                 deploy: bool = False, with_cp: bool = False, use_sync_bn: bool = False,
                 out_indices: Optional[Union[int, Sequence[int]]] = None, class_num: Optional[int] = None,
                 attempt_use_lk_impl: bool = True) -> None:
        super().__init__()
        depths = _int_tuple("depths", depths, NUM_STAGES, 0)
        dims = _int_tuple("dims", dims, NUM_STAGES, 4)  # SE squeezes to dim // 4 channels
        kernel_sizes = _resolve_kernel_sizes(kernel_sizes, depths)
        if isinstance(in_chans, bool) or not isinstance(in_chans, (int, np.integer)) or in_chans < 1:
            raise ValueError(f"in_chans={in_chans!r}: expected an int >= 1")
        if not 0.0 <= float(drop_path_rate) < 1.0:
            raise ValueError(f"drop_path_rate={drop_path_rate!r}: expected a float in [0, 1)")
        self.num_stages = NUM_STAGES
        self.depths, self.dims, self.kernel_sizes = depths, dims, kernel_sizes
        self.out_indices = normalize_out_indices(out_indices, NUM_STAGES)
        self.stage_channels = list(dims)
        self.num_features = dims[-1]
        self.grad_checkpointing = bool(with_cp)

        self.downsample_layers = nn.LayerList([nn.Sequential(
            nn.Conv2D(in_chans, dims[0] // 2, 3, stride=2, padding=1, weight_attr=_init_attr(),
                      bias_attr=_zero_attr()),
            LayerNorm(dims[0] // 2),
            nn.GELU(),
            nn.Conv2D(dims[0] // 2, dims[0], 3, stride=2, padding=1, weight_attr=_init_attr(),
                      bias_attr=_zero_attr()),
            LayerNorm(dims[0]))])
        for i in range(NUM_STAGES - 1):
            self.downsample_layers.append(nn.Sequential(
                nn.Conv2D(dims[i], dims[i + 1], 3, stride=2, padding=1, weight_attr=_init_attr(),
                          bias_attr=_zero_attr()),
                LayerNorm(dims[i + 1])))

        rates = np.linspace(0, float(drop_path_rate), sum(depths)).tolist()
        self.stages = nn.LayerList()
        cur = 0
        for i in range(NUM_STAGES):
            self.stages.append(nn.Sequential(*[
                UniRepLKNetBlock(dims[i], kernel_sizes[i][j], drop_path=rates[cur + j],
                                 layer_scale_init_value=layer_scale_init_value, deploy=deploy,
                                 use_sync_bn=use_sync_bn) for j in range(depths[i])]))
            cur += depths[i]

        if class_num is not None:
            num_classes = resolve_num_classes(num_classes, class_num)
        if self.out_indices is None:
            self.num_classes = classifier_classes(num_classes, None)
            self.head_init_scale = float(head_init_scale)
            self.norm = nn.LayerNorm(dims[-1], epsilon=_LN_EPS)
            self.head = self._make_head(self.num_classes)
            self.stage_modules = [f"stages.{i}" for i in range(NUM_STAGES)]
        else:
            self.num_classes = 0
            self.head_init_scale = float(head_init_scale)
            for i in self.out_indices:
                setattr(self, f"norm{i}", LayerNorm(dims[i]))
            self.stage_modules = [f"norm{i}" for i in range(NUM_STAGES)]

    # ------------------------------------------------------------------ contract
    def _make_head(self, num_classes: int) -> nn.Layer:
        if num_classes <= 0:
            return nn.Identity()
        scale = getattr(self, "head_init_scale", 1.0)
        # Official init: trunc-normal(.02) weights and zero bias, both multiplied by head_init_scale.
        weight_attr = _init_attr(0.02 * abs(scale)) if scale != 0 else _zero_attr()
        return nn.Linear(self.num_features, num_classes, weight_attr=weight_attr, bias_attr=_zero_attr())

    @property
    def with_cp(self) -> bool:
        """Official name of the activation-checkpointing switch (same as ``grad_checkpointing``)."""
        return self.grad_checkpointing

    @with_cp.setter
    def with_cp(self, enable: bool) -> None:
        self.set_grad_checkpointing(enable)

    @property
    def deploy(self) -> bool:
        """True when every block is in its re-parameterized form."""
        return all(blk.deploy for stage in self.stages for blk in stage)

    def _run_stage(self, i: int, x: paddle.Tensor) -> paddle.Tensor:
        for blk in self.stages[i]:
            x = checkpoint(blk, x) if uses_checkpoint(self.grad_checkpointing, blk, x) else blk(x)
        return x

    def forward_features(self, x: paddle.Tensor) -> Union[paddle.Tensor, List[paddle.Tensor]]:
        """Stem and stages.

        Args:
            x: images ``[N, in_chans, H, W]``, any H, W (each stride-2 conv gives ceil(size / 2)).

        Returns:
            classification: the last stage's map ``[N, dims[3], H/32, W/32]`` (stride 32, before pooling);
            features mode: the maps of ``out_indices`` in stage order, each through ``norm{i}``:
            ``[N, dims[i], H/s_i, W/s_i]`` with strides s = 4, 8, 16, 32.
        """
        outs = []
        for i in range(NUM_STAGES):
            x = self.downsample_layers[i](x)
            x = self._run_stage(i, x)
            if self.out_indices is not None and i in self.out_indices:
                outs.append(getattr(self, f"norm{i}")(x))
        return outs if self.out_indices is not None else x

    def forward_head(self, x: paddle.Tensor, pre_logits: bool = False) -> paddle.Tensor:
        """Global average pool -> ``norm`` (LayerNorm) -> ``head``.

        Args:
            x: the last stage's map ``[N, dims[3], h, w]`` (stride 32).
            pre_logits: stop before the classifier.

        Returns:
            logits ``[N, num_classes]``, or the pooled normed features ``[N, dims[3]]`` with
            ``pre_logits=True`` or ``num_classes=0``.
        """
        if self.out_indices is not None:
            raise ValueError("forward_head: the model is in features mode (out_indices set), it has no head")
        x = self.norm(x.mean(axis=[2, 3]))
        return x if pre_logits else self.head(x)

    def forward(self, x: paddle.Tensor) -> Union[paddle.Tensor, List[paddle.Tensor]]:
        """Images ``[N, in_chans, H, W]`` -> logits ``[N, num_classes]`` (pooled normed features
        ``[N, dims[3]]`` when ``num_classes=0``); in features mode the list of NCHW maps of
        ``out_indices`` in stage order (strides 4, 8, 16, 32)."""
        return super().forward(x)

    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        """timm-style groups: stem = ``downsample_layers.0``; ``downsample_layers.i`` (i >= 1) -> (i, -1),
        i.e. with the stage it feeds; ``stages.i.j`` -> (i, j); ``coarse``: by stage only. The final
        ``norm``/``head`` (or ``norm{i}``) match nothing: they are on top."""
        if coarse:
            blocks: Any = [(r"^downsample_layers\.([1-9]\d*)\.", None), (r"^stages\.(\d+)\.", None)]
        else:
            blocks = [(r"^downsample_layers\.([1-9]\d*)\.", (-1,)), (r"^stages\.(\d+)\.(\d+)\.", None)]
        return dict(stem=r"^downsample_layers\.0\.", blocks=blocks)

    def reparameterize_unireplknet(self) -> "UniRepLKNet":
        """Official method name: convert every block to its deploy form in place (eval-mode equivalent)."""
        return reparameterize(self)


# ---------------------------------------------------------------------------------------------------
# Config from checkpoint shapes
# ---------------------------------------------------------------------------------------------------
_BLOCK_KEY = re.compile(r"^stages\.(\d+)\.(\d+)\.")
_NORM_KEY = re.compile(r"^norm(\d+)\.weight$")


def _lazy_shapes(**cfg: Any) -> Dict[str, Tuple[int, ...]]:
    with paddle.LazyGuard():
        model = UniRepLKNet(**cfg)
    return {k: tuple(int(s) for s in v.shape) for k, v in model.state_dict().items()}


def variant_config_from_shapes(shapes: Mapping[str, Sequence[int]]) -> Dict[str, Any]:
    """The :class:`UniRepLKNet` constructor config of a Paddle-named ``{key: shape}`` dict.

    The keys are paddle_lk's (BN statistics ``_mean``/``_variance``, Linear weights ``[in, out]``);
    ``num_batches_tracked`` entries are ignored. Returns ``depths``, ``dims``, ``kernel_sizes``,
    ``deploy``, ``in_chans`` and ``num_classes`` (classification; 0 when there is a ``norm`` but no
    ``head``) or ``out_indices`` (features mode: ``norm{i}`` and no ``head``), plus
    ``layer_scale_init_value=0`` when a train-form checkpoint has no layer scale.
    ``UniRepLKNet(**config)`` has exactly the given keys and shapes.

    Raises:
        DetectionError (a ValueError) saying why when the keys are not a UniRepLKNet's.
    """
    shapes = {k: tuple(int(s) for s in v) for k, v in shapes.items() if not k.endswith("num_batches_tracked")}
    required = [f"downsample_layers.{i}.0.weight" for i in range(NUM_STAGES)] + ["downsample_layers.0.3.weight"]
    missing = [k for k in required if k not in shapes]
    if missing:
        raise DetectionError(f"not a UniRepLKNet state dict: no {', '.join(missing[:3])} (the stem and "
                             f"downsampling convs). Keys given: {sorted(shapes)[:5]}...")
    for k in required:
        if len(shapes[k]) != 4:
            raise DetectionError(f"not a UniRepLKNet state dict: {k} has shape {list(shapes[k])}, expected a "
                                 f"4-D conv weight")
    dims = tuple(shapes[f"downsample_layers.{i}.0.weight"][0] for i in range(1, NUM_STAGES))
    dims = (shapes["downsample_layers.0.3.weight"][0],) + dims
    in_chans = shapes["downsample_layers.0.0.weight"][1]

    blocks: Dict[Tuple[int, int], List[str]] = {}
    for k in shapes:
        m = _BLOCK_KEY.match(k)
        if m:
            blocks.setdefault((int(m.group(1)), int(m.group(2))), []).append(k)
    depths = []
    for i in range(NUM_STAGES):
        idx = sorted(j for s, j in blocks if s == i)
        if idx != list(range(len(idx))):
            raise DetectionError(f"not a UniRepLKNet state dict: stage {i} has blocks {idx}, not 0..n-1")
        depths.append(len(idx))
    if any(s >= NUM_STAGES for s, _ in blocks):
        raise DetectionError(f"not a UniRepLKNet state dict: more than {NUM_STAGES} stages")

    kernel_sizes: List[List[int]] = []
    forms, scales = set(), set()
    for i in range(NUM_STAGES):
        row = []
        for j in range(depths[i]):
            p = f"stages.{i}.{j}."
            if p + "dwconv.lk_origin.weight" in shapes:
                k = shapes[p + "dwconv.lk_origin.weight"][-1]
            elif p + "dwconv.weight" in shapes:
                k = shapes[p + "dwconv.weight"][-1]
            else:
                k = 0
            if k not in BLOCK_KERNEL_SIZES:
                raise DetectionError(f"stages.{i}.{j}: depthwise kernel {k} is not a UniRepLKNet kernel size "
                                     f"{list(BLOCK_KERNEL_SIZES)}")
            row.append(k)
            if p + "pwconv2.0.weight" not in shapes:
                raise DetectionError(f"not a UniRepLKNet state dict: no {p}pwconv2.0.weight")
            forms.add(p + "act.1.beta" not in shapes)
            if p + "act.1.beta" in shapes:
                scales.add(p + "gamma" in shapes)
        kernel_sizes.append(row)
    if len(forms) > 1:
        raise DetectionError("UniRepLKNet state dict mixes train-form blocks (GRN 'beta', BN after pwconv2) and "
                             "deploy-form blocks; re-parameterize the whole model")
    if len(scales) > 1:
        raise DetectionError("UniRepLKNet state dict: some train-form blocks have a layer scale 'gamma', others not")
    deploy = forms == {True}

    cfg: Dict[str, Any] = dict(depths=tuple(depths), dims=dims,
                               kernel_sizes=tuple(tuple(r) for r in kernel_sizes), deploy=deploy,
                               in_chans=in_chans)
    if scales == {False}:
        cfg["layer_scale_init_value"] = 0.0
    feature_norms = sorted(int(m.group(1)) for m in map(_NORM_KEY.match, shapes) if m)
    if "head.weight" in shapes or "head.bias" in shapes:
        if feature_norms:
            raise DetectionError("UniRepLKNet state dict has both a classifier 'head' and features-mode norms "
                                 f"norm{feature_norms}")
        if "head.bias" not in shapes:
            raise DetectionError("UniRepLKNet state dict: 'head.weight' without 'head.bias'")
        cfg["num_classes"] = shapes["head.bias"][0]
    elif feature_norms:
        cfg["out_indices"] = tuple(feature_norms)
    elif "norm.weight" in shapes:
        cfg["num_classes"] = 0
    else:
        raise DetectionError("UniRepLKNet state dict has neither 'norm'/'head' (classification) nor "
                             "'norm{i}' (features mode)")
    try:
        expected = _lazy_shapes(**cfg)
    except ValueError as exc:
        raise DetectionError(f"UniRepLKNet state dict describes an invalid config {cfg}: {exc}") from exc
    extra = sorted(set(shapes) - set(expected))
    absent = sorted(set(expected) - set(shapes))
    wrong = [f"{k}: {list(shapes[k])} vs {list(expected[k])}" for k in expected
             if k in shapes and shapes[k] != expected[k]]
    if extra or absent or wrong:
        parts = [f"unexpected keys {extra[:4]}" if extra else "", f"missing keys {absent[:4]}" if absent else "",
                 f"shapes differ (given vs UniRepLKNet) {wrong[:4]}" if wrong else ""]
        hint = " (torch-layout Linear weights? map the keys first)" if any("pwconv" in w for w in wrong) else ""
        raise DetectionError(f"not a UniRepLKNet {cfg}: " + "; ".join(p for p in parts if p) + hint)
    return cfg


# ---------------------------------------------------------------------------------------------------
# Checkpoint adapter
# ---------------------------------------------------------------------------------------------------
class UniRepLKNetFamily(Family):
    """UniRepLKNet checkpoints: official train form (Dilated Reparam Blocks with BNs, GRN bias, layer
    scale), official deploy form (after ``reparameterize_unireplknet``), ``{"model": ...}`` wrappers,
    features-mode (``norm{i}``) and downstream ``backbone.*`` checkpoints, paddle_lk ``.pdparams``."""

    name = "unireplknet"
    display_name = "UniRepLKNet"
    model_cls = UniRepLKNet
    variant_fields = ("depths", "dims", "kernel_sizes")
    # Features-mode norms: ImageNet checkpoints have none (the official backbone loads them with strict=False
    # and keeps these LayerNorms at their init, weight 1 and bias 0).
    optional_keys = (r"norm[0-3]\.(weight|bias)",)
    keymaps = (register_keymap(KeyMap(
        "unireplknet", "official UniRepLKNet (train or deploy form, {'model': ...}, features mode, downstream backbone)",
        TORCH_BN_RULES + [Rule(r"(.*\.)?(pwconv1\.1|pwconv2\.0|head)\.weight", transform="linear")],
        signature=[r"downsample_layers\.0\.0\.weight", r"stages\.\d+\.\d+\.pwconv1\.1\.weight"],
        forbidden=[r".*\._mean"])),)

    def claims(self, shapes: Mapping[str, Tuple[int, ...]]) -> bool:
        return "downsample_layers.0.0.weight" in shapes and any(_BLOCK_KEY.match(k) for k in shapes)

    def config_from_shapes(self, shapes: Mapping[str, Tuple[int, ...]]) -> Dict[str, Any]:
        return variant_config_from_shapes(shapes)

    def form(self, config: Mapping[str, Any]) -> str:
        return "deploy" if config.get("deploy") else "train"

    def variant_matches(self, arch: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
        depths, dims = tuple(arch["depths"]), tuple(arch["dims"])
        kernels = config.get("kernel_sizes")
        return (tuple(config.get("depths", ())) == depths and tuple(config.get("dims", ())) == dims
                and (kernels is None or tuple(tuple(r) for r in kernels) == DEFAULT_KERNEL_SIZES[depths]))


register_family(UniRepLKNetFamily())


# ---------------------------------------------------------------------------------------------------
# Registered variants
# ---------------------------------------------------------------------------------------------------
_PAPER = "UniRepLKNet (CVPR 2024)"
# Published ImageNet-1K results and the official release files (AILab-CVC/UniRepLKNet README and
# unireplknet.py): (params M, GFLOPs at 224, [(file, dataset, resolution, top-1, classes)]).
_FACTS: Dict[str, Tuple[float, float, Tuple[Checkpoint, ...]]] = {
    "A": (4.4, 0.6, (Checkpoint("unireplknet_a_in1k_224_acc77.03.pth", "ImageNet-1K", 224, 77.0),)),
    "F": (6.2, 0.9, (Checkpoint("unireplknet_f_in1k_224_acc78.58.pth", "ImageNet-1K", 224, 78.6),)),
    "P": (10.7, 1.6, (Checkpoint("unireplknet_p_in1k_224_acc80.23.pth", "ImageNet-1K", 224, 80.2),)),
    "N": (18.3, 2.8, (Checkpoint("unireplknet_n_in1k_224_acc81.64.pth", "ImageNet-1K", 224, 81.6),)),
    "T": (31.0, 4.9, (Checkpoint("unireplknet_t_in1k_224_acc83.21.pth", "ImageNet-1K", 224, 83.2),)),
    "S": (56.0, 9.1, (Checkpoint("unireplknet_s_in1k_224_acc83.91.pth", "ImageNet-1K", 224, 83.9),
                      Checkpoint("unireplknet_s_in22k_pretrain.pth", "ImageNet-22K", 224, None, 21841),
                      Checkpoint("unireplknet_s_in22k_to_in1k_384_acc86.44.pth", "ImageNet-22K -> 1K", 384, 86.4))),
    "B": (98.0, None, (Checkpoint("unireplknet_b_in22k_pretrain.pth", "ImageNet-22K", 224, None, 21841),
                       Checkpoint("unireplknet_b_in22k_to_in1k_384_acc87.40.pth", "ImageNet-22K -> 1K", 384, 87.4))),
    "L": (218.0, None, (Checkpoint("unireplknet_l_in22k_pretrain.pth", "ImageNet-22K", 192, None, 21841),
                        Checkpoint("unireplknet_l_in22k_to_in1k_384_acc87.88.pth", "ImageNet-22K -> 1K", 384, 87.9))),
    "XL": (386.0, None, (Checkpoint("unireplknet_xl_in22k_pretrain.pth", "ImageNet-22K", 192, None, 21841),
                         Checkpoint("unireplknet_xl_in22k_to_in1k_384_acc87.96.pth", "ImageNet-22K -> 1K", 384, 88.0))),
}


def _cfg(letter: str) -> ModelCfg:
    params, flops, checkpoints = _FACTS[letter]
    size = 224 if letter in "AFPNTS" else 384
    return ModelCfg(family="unireplknet", arch=dict(VARIANT_CONFIGS[f"UniRepLKNet_{letter}"]),
                    input_size=(3, size, size), crop_pct=0.875 if size == 224 else 1.0, params_m=params,
                    flops_g=flops, checkpoints=checkpoints, description=f"UniRepLKNet-{letter}, {_PAPER}")


@register_model(cfg=_cfg("A"))
def UniRepLKNet_A(pretrained=False, num_classes=None, class_num=None, **kwargs) -> UniRepLKNet:
    """UniRepLKNet-A: dims (40,80,160,320), depths (2,2,6,2); 4.4M params, 0.6 GFLOPs, 77.0 % top-1 (224)."""
    return build_model_with_cfg("UniRepLKNet_A", pretrained, num_classes, class_num, **kwargs)


@register_model(cfg=_cfg("F"))
def UniRepLKNet_F(pretrained=False, num_classes=None, class_num=None, **kwargs) -> UniRepLKNet:
    """UniRepLKNet-F: dims (48,96,192,384), depths (2,2,6,2); 6.2M params, 0.9 GFLOPs, 78.6 % top-1 (224)."""
    return build_model_with_cfg("UniRepLKNet_F", pretrained, num_classes, class_num, **kwargs)


@register_model(cfg=_cfg("P"))
def UniRepLKNet_P(pretrained=False, num_classes=None, class_num=None, **kwargs) -> UniRepLKNet:
    """UniRepLKNet-P: dims (64,128,256,512), depths (2,2,6,2); 10.7M params, 1.6 GFLOPs, 80.2 % top-1 (224)."""
    return build_model_with_cfg("UniRepLKNet_P", pretrained, num_classes, class_num, **kwargs)


@register_model(cfg=_cfg("N"))
def UniRepLKNet_N(pretrained=False, num_classes=None, class_num=None, **kwargs) -> UniRepLKNet:
    """UniRepLKNet-N: dims (80,160,320,640), depths (2,2,8,2); 18.3M params, 2.8 GFLOPs, 81.6 % top-1 (224)."""
    return build_model_with_cfg("UniRepLKNet_N", pretrained, num_classes, class_num, **kwargs)


@register_model(cfg=_cfg("T"))
def UniRepLKNet_T(pretrained=False, num_classes=None, class_num=None, **kwargs) -> UniRepLKNet:
    """UniRepLKNet-T: dims (80,160,320,640), depths (3,3,18,3); 31M params, 4.9 GFLOPs, 83.2 % top-1 (224)."""
    return build_model_with_cfg("UniRepLKNet_T", pretrained, num_classes, class_num, **kwargs)


@register_model(cfg=_cfg("S"))
def UniRepLKNet_S(pretrained=False, num_classes=None, class_num=None, **kwargs) -> UniRepLKNet:
    """UniRepLKNet-S: dims (96,192,384,768), depths (3,3,27,3); 56M params, 9.1 GFLOPs, 83.9 % top-1 (224)."""
    return build_model_with_cfg("UniRepLKNet_S", pretrained, num_classes, class_num, **kwargs)


@register_model(cfg=_cfg("B"))
def UniRepLKNet_B(pretrained=False, num_classes=None, class_num=None, **kwargs) -> UniRepLKNet:
    """UniRepLKNet-B: dims (128,256,512,1024), depths (3,3,27,3); 98M params; 87.4 % top-1 (22K -> 1K, 384)."""
    return build_model_with_cfg("UniRepLKNet_B", pretrained, num_classes, class_num, **kwargs)


@register_model(cfg=_cfg("L"))
def UniRepLKNet_L(pretrained=False, num_classes=None, class_num=None, **kwargs) -> UniRepLKNet:
    """UniRepLKNet-L: dims (192,384,768,1536), depths (3,3,27,3); 218M params; 87.9 % top-1 (22K -> 1K, 384)."""
    return build_model_with_cfg("UniRepLKNet_L", pretrained, num_classes, class_num, **kwargs)


@register_model(cfg=_cfg("XL"))
def UniRepLKNet_XL(pretrained=False, num_classes=None, class_num=None, **kwargs) -> UniRepLKNet:
    """UniRepLKNet-XL: dims (256,512,1024,2048), depths (3,3,27,3); 386M params; 88.0 % top-1 (22K -> 1K, 384)."""
    return build_model_with_cfg("UniRepLKNet_XL", pretrained, num_classes, class_num, **kwargs)
