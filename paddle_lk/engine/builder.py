"""Model and loss construction from a validated config (``Arch`` and ``Loss`` sections)."""
from __future__ import annotations

import importlib
import inspect
import logging
from typing import Any, Dict, List, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..checkpoint import load_checkpoint
from ..errors import closest
from ..layers.refconv import refocus
from ..models import constructor_params, create_model
from ..registry import list_models
from .config import ConfigError, list_of_single_key_dicts, unknown_key_error

__all__ = ["build_model", "resolve_arch", "SoftTargetCrossEntropy", "build_loss", "model_kwargs"]

logger = logging.getLogger("paddle_lk.engine")

# Arch keys the engine consumes itself (everything else goes to the model constructor).
_ENGINE_ARCH_KEYS = ("name", "pretrained", "refocus", "drop_head", "infer_add_softmax")


def _ppcls_backbone(name: str) -> Any:
    """A backbone constructor of the installed PaddleClas (``ppcls.arch.backbone``), if it has ``name``."""
    for module in ("ppcls.arch.backbone", "paddleclas.ppcls.arch.backbone"):
        try:
            backbone = importlib.import_module(module)
        except Exception:  # noqa: BLE001 - an optional toolkit that may fail to import in many ways
            continue
        fn = getattr(backbone, name, None)
        if callable(fn):
            return fn
    return None


def model_kwargs(arch: Dict[str, Any]) -> Dict[str, Any]:
    """The ``Arch`` entries passed to the constructor (``class_num`` included)."""
    return {k: v for k, v in arch.items() if k not in _ENGINE_ARCH_KEYS}


def resolve_arch(cfg: Dict[str, Any]) -> Tuple[str, str, Dict[str, Any]]:
    """``(source, model name, keyword arguments)`` of ``Arch``, every key checked without building
    anything: ``source`` is ``paddle_lk``, ``vision`` (``paddle.vision.models``) or ``ppcls`` (a PaddleClas
    backbone).

    Raises:
        ConfigError naming the unknown model or the key (with the nearest valid one).
    """
    arch = dict(cfg["Arch"])
    name = arch["name"]
    kwargs = model_kwargs(arch)
    same = [n for n in list_models() if n.lower() == name.lower()]
    if name not in list_models() and len(same) == 1:
        # PaddleClas spells VAN's variants VAN_B0...: the same model (its weights load too).
        logger.info(f"Arch.name {name}: paddle_lk's {same[0]}")
        name = same[0]
    if name in list_models():
        source, valid = "paddle_lk", constructor_params(name) + list(_ENGINE_ARCH_KEYS)
    elif hasattr(paddle.vision.models, name) and callable(getattr(paddle.vision.models, name)):
        if "class_num" in kwargs:
            kwargs["num_classes"] = kwargs.pop("class_num")
        params = list(inspect.signature(getattr(paddle.vision.models, name)).parameters)
        source, valid = "vision", None if "kwargs" in params else params
    elif _ppcls_backbone(name) is not None:
        source, valid = "ppcls", None
    else:
        choices = list_models() + [n for n in dir(paddle.vision.models) if not n.startswith("_")]
        close = closest(name, choices, n=1)
        raise ConfigError(f"Arch.name: unknown model '{name}'" + (f"; did you mean '{close[0]}'?" if close else "")
                          + " (see paddle_lk.list_models())")
    for key in kwargs if valid is not None else ():
        if key not in valid:
            raise unknown_key_error("Arch", key, valid, where=f"{name} does not take this argument: ")
    spec = arch.get("refocus")
    if spec:
        if not isinstance(spec, dict):
            raise ConfigError(f"Arch.refocus: expected a mapping like {{map_k: 3}}, got {spec!r}")
        valid = [p for p in inspect.signature(refocus).parameters if p != "model"]
        for key in spec:
            if key not in valid:
                raise unknown_key_error("Arch.refocus", key, valid)
    return source, name, kwargs


def build_model(cfg: Dict[str, Any], load_pretrained: bool = True) -> nn.Layer:
    """Build ``Arch.name`` (a paddle_lk registry name, a ``paddle.vision.models`` function or a PaddleClas
    backbone) with the other ``Arch`` keys as keyword arguments (``Arch.pretrained``: weights to load
    through :func:`paddle_lk.load_checkpoint`, a classifier of another size is dropped); ``Arch.refocus:
    {map_k, zero_init}`` applies RefConv refocusing (after ``pretrained`` is loaded, so the frozen base
    kernels are the pretrained ones).

    Raises:
        ConfigError: see :func:`resolve_arch`; arguments the constructor refuses.
    """
    source, name, kwargs = resolve_arch(cfg)
    pretrained = cfg["Arch"].get("pretrained") if load_pretrained else None
    if source == "paddle_lk":
        try:
            model = create_model(name, pretrained=pretrained or None, **kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"Arch ({name}): {exc}") from None
    elif source == "vision":
        model = getattr(paddle.vision.models, name)(**kwargs)
        if pretrained:
            load_checkpoint(model, pretrained)
    else:
        model = _ppcls_backbone(name)(pretrained=pretrained or False, **kwargs)
    spec = cfg["Arch"].get("refocus")
    if spec:
        model = refocus(model, **spec)
    return model


class SoftTargetCrossEntropy(nn.Layer):
    """Cross-entropy against soft targets with label smoothing (``epsilon``): the Mixup/CutMix loss.

    Hard int labels are one-hot encoded first, so one loss serves every recipe.
    """

    def __init__(self, num_classes: int, epsilon: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
        self.num_classes, self.epsilon = num_classes, float(epsilon)

    def soft_targets(self, target: paddle.Tensor) -> paddle.Tensor:
        if target.ndim == 1 or (target.ndim == 2 and target.shape[-1] == 1):
            target = F.one_hot(target.reshape([-1]).astype("int64"), self.num_classes).astype("float32")
        if self.epsilon > 0:
            target = target * (1.0 - self.epsilon) + self.epsilon / self.num_classes
        return target

    def forward(self, logits: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        soft = self.soft_targets(target)
        return F.cross_entropy(logits.astype("float32"), soft, soft_label=True, reduction="mean")


class WeightedLoss(nn.Layer):
    """Sum of configured losses, each scaled by its ``weight``."""

    def __init__(self, parts: List[tuple]) -> None:
        super().__init__()
        self.parts = nn.LayerList([p for p, _ in parts])
        self.weights = [w for _, w in parts]

    def forward(self, logits: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        total = None
        for loss, w in zip(self.parts, self.weights):
            value = loss(logits, target) * w
            total = value if total is None else total + value
        return total


def build_loss(cfg: Dict[str, Any], split: str, num_classes: int) -> WeightedLoss:
    """``Loss.<split>: [- CELoss: {weight, epsilon}]``."""
    path = f"Loss.{split}"
    items = list_of_single_key_dicts(cfg["Loss"][split], path)
    if not items:
        raise ConfigError(f"{path}: at least one loss is required")
    parts = []
    for i, (name, kwargs) in enumerate(items):
        if name not in ("CELoss", "SoftTargetCELoss"):
            raise unknown_key_error(f"{path}[{i}]", name, ["CELoss", "SoftTargetCELoss"], where="loss: ")
        for key in kwargs:
            if key not in ("weight", "epsilon"):
                raise unknown_key_error(f"{path}[{i}].{name}", key, ["weight", "epsilon"])
        try:
            parts.append((SoftTargetCrossEntropy(num_classes, kwargs.get("epsilon", 0.0) or 0.0),
                          float(kwargs.get("weight", 1.0))))
        except ValueError as exc:
            raise ConfigError(f"{path}[{i}].{name}: {exc}") from None
    return WeightedLoss(parts)


def parse_topk(cfg: Dict[str, Any], split: str) -> List[int]:
    """``Metric.<split>: [- TopkAcc: {topk: [1, 5]}]`` -> [1, 5]."""
    path = f"Metric.{split}"
    items = list_of_single_key_dicts(cfg["Metric"][split], path)
    topk: List[int] = []
    for i, (name, kwargs) in enumerate(items):
        if name != "TopkAcc":
            raise unknown_key_error(f"{path}[{i}]", name, ["TopkAcc"], where="metric: ")
        for key in kwargs:
            if key != "topk":
                raise unknown_key_error(f"{path}[{i}].TopkAcc", key, ["topk"])
        ks = kwargs.get("topk", [1, 5])
        ks = [ks] if isinstance(ks, int) else ks
        if not all(isinstance(k, int) and k >= 1 for k in ks):
            raise ConfigError(f"{path}[{i}].TopkAcc.topk: expected positive ints, got {ks!r}")
        topk.extend(ks)
    topk = sorted(set(topk)) or [1]
    # A top-k over k >= the number of classes is always 1: report it only where it says something.
    n = (cfg.get("Arch") or {}).get("class_num")
    return [k for k in topk if not isinstance(n, int) or k == 1 or k < n]


def num_classes_of(cfg: Dict[str, Any]) -> int:
    """``Arch.class_num`` (or ``num_classes``), required by the loss and metrics."""
    arch = cfg["Arch"]
    n = arch.get("class_num", arch.get("num_classes"))
    if not isinstance(n, int) or n < 1:
        raise ConfigError("Arch.class_num: required (number of classes), got " + repr(n))
    return n
