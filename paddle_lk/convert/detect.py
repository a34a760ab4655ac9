"""Architecture auto-detection from checkpoint keys and shapes.

Works on shapes only (a manifest, a memory-mapped checkpoint or a state dict): the family's key
map renames the keys, the full constructor config is read off the Paddle-named shapes, and the
registered variant is the one whose (lazily built, weight-free) model has the same config.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

import paddle
import paddle.nn as nn

from .keymaps import KeyMap, get_keymap, guess_keymap
from ..errors import DetectionError  # noqa: F401 - defined in paddle_lk.errors

__all__ = ["DetectionError", "DetectedArch", "detect_architecture", "config_from_shapes", "shapes_of",
           "lazy_state_shapes"]

Shape = Tuple[int, ...]
_CONVMAP = ".convmap.weight"


def shapes_of(state: Mapping[str, Any]) -> Dict[str, Shape]:
    """``{key: shape}`` from arrays, tensors or shape lists (a manifest)."""
    out = {}
    for k, v in state.items():
        shape = getattr(v, "shape", v)
        out[k] = tuple(int(s) for s in shape)
    return out


def _ratio(a: int, b: int) -> float:
    r = a / b
    return int(r) if float(r).is_integer() else r


def _indices(shapes: Mapping[str, Shape], pattern: str) -> List[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in shapes for m in [rx.match(k)] if m})


def _replknet_config(p: Mapping[str, Shape]) -> Dict[str, Any]:
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
    cfg: Dict[str, Any] = dict(
        large_kernel_sizes=kernels, layers=layers, channels=channels, drop_path_rate=0.0,
        small_kernel=None if merged else smalls[0], dw_ratio=dw_ratios[0], ffn_ratio=ffn_ratios[0],
        in_channels=p["stem.0.conv.weight"][1], num_classes=head[1] if head else None,
        out_indices=None if head else list(stages), small_kernel_merged=merged,
        norm_intermediate_features="stages.0.norm.weight" in p)
    return cfg


def _van_config(p: Mapping[str, Shape]) -> Dict[str, Any]:
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
        ratios.append(_ratio(p[f"block{i}.0.mlp.fc1.weight"][0], dim))
    head = p.get("head.weight")
    return dict(embed_dims=dims, depths=depths, mlp_ratios=ratios, num_stages=len(stages),
                in_chans=p["patch_embed1.proj.weight"][1], num_classes=head[1] if head else None,
                out_indices=None if head else list(range(len(stages))))


def _refconv_config(p: Mapping[str, Shape]) -> Dict[str, Any]:
    w, cm = p["weight"], p["convmap.weight"]
    groups = cm[1]  # convmap has num_2d_kernels / (in*out/groups^2) = groups input channels per group
    return dict(in_channels=w[1] * groups, out_channels=w[0], kernel_size=w[-1], groups=groups,
                map_k=cm[-1], bias="bias" in p)


def family_of(p: Mapping[str, Shape]) -> Optional[str]:
    """``replknet``, ``van`` or ``refconv`` from Paddle-named keys (convmap keys ignored), else None."""
    base = {k for k in p if not k.endswith(_CONVMAP)}
    if "stem.0.conv.weight" in base and any(k.startswith("stages.") for k in base):
        return "replknet"
    if "patch_embed1.proj.weight" in base and any(k.startswith("block1.") for k in base):
        return "van"
    if "convmap.weight" in p and set(p) <= {"weight", "convmap.weight", "bias"}:
        return "refconv"
    return None


def config_from_shapes(p: Mapping[str, Shape]) -> Tuple[str, Dict[str, Any], Optional[Dict[str, int]]]:
    """``(family, constructor config, refocus)`` from Paddle-named shapes.

    ``refocus`` is ``{"map_k", "min_kernel"}`` when convs were replaced by RefConv layers (a
    ``.convmap.weight`` next to their kernel), else None.
    """
    family = family_of(p)
    if family is None:
        sample = ", ".join(list(p)[:4])
        raise DetectionError(f"cannot recognise the architecture from keys like {sample} "
                             f"(neither RepLKNet, VAN nor a RefConv layer); pass the architecture explicitly")
    if family == "refconv":
        return family, _refconv_config(p), None
    base = {k: v for k, v in p.items() if not k.endswith(_CONVMAP)}
    refocus = None
    maps = [k for k in p if k.endswith(_CONVMAP)]
    if maps:
        kernels = [p[k[: -len(_CONVMAP)] + ".weight"][-1] for k in maps]
        refocus = dict(map_k=p[maps[0]][-1], min_kernel=min(kernels))
    cfg = _replknet_config(base) if family == "replknet" else _van_config(base)
    return family, cfg, refocus


_COMPARE = {"replknet": ("large_kernel_sizes", "layers", "channels", "dw_ratio", "ffn_ratio", "in_channels"),
            "van": ("embed_dims", "depths", "mlp_ratios", "num_stages", "in_chans")}
_VARIANT_GLOB = {"replknet": "RepLKNet*", "van": "VAN_b*"}


def lazy_state_shapes(model_fn: Any, **kwargs: Any) -> Dict[str, Shape]:
    """State-dict shapes of ``model_fn(**kwargs)`` built under ``paddle.LazyGuard`` (no weights)."""
    with paddle.LazyGuard():
        model = model_fn(**kwargs)
    return {k: tuple(int(s) for s in v.shape) for k, v in model.state_dict().items()}


_DEPTH_ARG = {"replknet": ("layers", "RepLKNet"), "van": ("depths", "VAN")}


@functools.lru_cache(maxsize=None)
def _variant_signature(name: str, shallow: bool) -> Optional[Tuple[str, Dict[str, Any]]]:
    """(family, config) of a registered variant, from a lazily built model; ``shallow`` builds it
    with one block per stage (10x cheaper) to compare everything but the depths first."""
    from ..registry import model_entrypoint

    fn = model_entrypoint(name)
    kwargs = {}
    if shallow:
        family = next((f for f, (_, prefix) in _DEPTH_ARG.items() if name.startswith(prefix)), None)
        if family is None:
            return None
        kwargs = {_DEPTH_ARG[family][0]: [1, 1, 1, 1]}
    try:
        family, cfg, _ = config_from_shapes(lazy_state_shapes(fn, **kwargs))
    except (TypeError, ValueError):  # e.g. a variant with another stage count: no shallow form
        return None
    return family, cfg


def _match_variant(family: str, cfg: Mapping[str, Any]) -> Optional[str]:
    from ..registry import list_models

    depth = _DEPTH_ARG[family][0]
    for name in list_models(_VARIANT_GLOB[family]):
        for shallow in (True, False):
            sig = _variant_signature(name, shallow)
            if sig is None:
                if shallow:
                    continue  # no shallow form: decide on the full build
                break
            fam, got = sig
            fields = [f for f in _COMPARE[family] if not (shallow and f == depth)]
            # The small-kernel branch is visible only in the train form.
            if family == "replknet" and not cfg["small_kernel_merged"]:
                fields.append("small_kernel")
            if fam != family or any(got[f] != cfg[f] for f in fields):
                break
        else:
            return name
    return None


@dataclass
class DetectedArch:
    """What a checkpoint holds: family, registered variant (or None), full config, form.

    ``config`` holds the constructor arguments of :class:`~paddle_lk.models.RepLKNet`,
    :class:`~paddle_lk.models.VAN` or :class:`~paddle_lk.RefConv`; ``refocus`` says the model's
    convs were refocused (RefConv) with ``map_k`` from ``min_kernel`` up.
    """

    family: str
    variant: Optional[str]
    config: Dict[str, Any]
    keymap: str
    refocus: Optional[Dict[str, int]] = None
    skipped: List[Tuple[str, str]] = field(default_factory=list)

    @property
    def form(self) -> str:
        """``merged`` (deploy-form RepLKNet) or ``train``."""
        return "merged" if self.config.get("small_kernel_merged") else "train"

    @property
    def num_classes(self) -> Optional[int]:
        return self.config.get("num_classes")

    def describe(self) -> str:
        """One line: variant, family, form, classes and the config."""
        name = self.variant or f"custom {self.family}"
        extra = {k: v for k, v in self.config.items() if k not in ("drop_path_rate", "num_classes")}
        head = (f"{self.num_classes} classes" if self.num_classes is not None
                else ("features" if self.family != "refconv" else "single layer"))
        ref = f", refocused (map_k={self.refocus['map_k']}, kernels >= {self.refocus['min_kernel']})" \
            if self.refocus else ""
        return (f"{name} [{self.family}, {self.form} form, {head}{ref}] keymap={self.keymap} "
                + " ".join(f"{k}={v}" for k, v in extra.items()))

    def target_shapes(self, num_classes: Optional[int] = None) -> Dict[str, Shape]:
        """State-dict shapes of :meth:`build`'s model, without allocating any weights."""
        if not self.refocus:
            return lazy_state_shapes(self.build, num_classes=num_classes)
        # refocus() copies kernels (impossible on lazy parameters): add the convmap shapes by hand.
        from ..layers.refconv import _refocusable

        with paddle.LazyGuard():
            base = self.build(num_classes=num_classes, refocused=False)
        shapes = {k: tuple(int(s) for s in v.shape) for k, v in base.state_dict().items()}
        for name, layer in base.named_sublayers():
            stride = layer._stride if _refocusable(layer, self.refocus["min_kernel"]) else None
            if stride is None or (isinstance(stride, (list, tuple)) and stride[0] != stride[1]):
                continue
            k, groups = layer._kernel_size[0], layer._groups
            n2d = layer._out_channels * layer._in_channels // groups
            mk = min(self.refocus["map_k"], k)
            shapes[f"{name}.convmap.weight"] = (n2d, groups, mk, mk)
        return shapes

    def build(self, num_classes: Optional[int] = None, refocused: bool = True) -> nn.Layer:
        """Build the detected model (random weights; load the checkpoint into it next).

        ``num_classes`` replaces the checkpoint's class count (e.g. for a new head);
        ``refocused=False`` skips the RefConv replacement of a refocused model.
        """
        from ..layers.refconv import RefConv, refocus
        from ..models import VAN, RepLKNet
        from ..registry import create_model

        cfg = dict(self.config)
        if num_classes is not None:
            if cfg.get("num_classes") is None and self.family != "refconv":
                cfg["out_indices"] = None
            cfg["num_classes"] = num_classes
        if self.family == "refconv":
            return RefConv(**{k: v for k, v in cfg.items() if k != "num_classes"})
        if self.variant:
            keep = ("num_classes", "out_indices") + (
                ("small_kernel_merged", "norm_intermediate_features") if self.family == "replknet" else ())
            model = create_model(self.variant, **{k: cfg[k] for k in keep})
        else:
            model = (RepLKNet if self.family == "replknet" else VAN)(**cfg)
        if self.refocus and refocused:
            model = refocus(model, map_k=self.refocus["map_k"], zero_init=True,
                            min_kernel=self.refocus["min_kernel"])
        return model


def detect_architecture(state: Mapping[str, Any], keymap: Optional[str] = None,
                        paddle_layout: bool = False) -> DetectedArch:
    """Detect the architecture of a state dict or manifest (``{key: array | shape}``).

    Args:
        state: source keys (PyTorch or Paddle names) with arrays, tensors or shapes.
        keymap: force a key map (see :data:`paddle_lk.convert.keymaps.KEYMAPS`); default: guessed.
        paddle_layout: the keys come from a Paddle file (picks the identity map as fallback).
    """
    shapes = shapes_of(state)
    km: KeyMap = get_keymap(keymap) if keymap else guess_keymap(shapes, paddle_layout)
    converted = km.convert_shapes(shapes)
    family, cfg, refocus = config_from_shapes(converted.tensors)  # type: ignore[arg-type]
    variant = _match_variant(family, cfg) if family in _COMPARE else None
    return DetectedArch(family, variant, cfg, km.name, refocus, converted.skipped)
