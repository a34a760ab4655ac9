"""Model and loss construction from a validated config (``Arch`` and ``Loss`` sections)."""
from __future__ import annotations

import inspect
from typing import Any, Dict, List, Optional

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..utils import state_dict_mismatches
from .config import ConfigError, list_of_single_key_dicts, unknown_key_error

__all__ = ["build_model", "SoftTargetCrossEntropy", "build_loss", "load_model_weights", "model_kwargs"]

# Arch keys the engine consumes itself (everything else goes to the model constructor).
_ENGINE_ARCH_KEYS = ("name", "pretrained", "refocus", "drop_head")


def _constructor_params(name: str) -> Optional[List[str]]:
    """Keyword arguments a registry model accepts: its entry point's plus its class's (for **kwargs)."""
    import paddle_lk.models as models
    from paddle_lk.registry import model_entrypoint

    entry = model_entrypoint(name)
    params = [p for p in inspect.signature(entry).parameters if p not in ("kwargs", "pretrained")]
    # Entry points forward **kwargs to their family class (RepLKNet31B -> RepLKNet, VAN_b0 -> VAN).
    for cls_name in sorted(getattr(models, "__all__", dir(models)), key=len, reverse=True):
        cls = getattr(models, cls_name, None)
        if inspect.isclass(cls) and issubclass(cls, nn.Layer) and name.startswith(cls_name):
            params += [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs")]
            return sorted(set(params))
    return None


def model_kwargs(arch: Dict[str, Any]) -> Dict[str, Any]:
    """The ``Arch`` entries passed to the constructor (``class_num`` included)."""
    return {k: v for k, v in arch.items() if k not in _ENGINE_ARCH_KEYS}


def build_model(cfg: Dict[str, Any], load_pretrained: bool = True) -> nn.Layer:
    """Build ``Arch.name`` (a paddle_lk registry name, or a ``paddle.vision.models`` function) with the
    other ``Arch`` keys as keyword arguments (``Arch.pretrained``: weights to load, ``Arch.drop_head``:
    keep the new classifier when their class count differs); ``Arch.refocus: {map_k, zero_init}`` applies RefConv
    refocusing (after ``pretrained`` is loaded, so the frozen base kernels are the pretrained ones)."""
    import paddle_lk
    from paddle_lk.registry import list_models

    arch = dict(cfg["Arch"])
    name = arch["name"]
    kwargs = model_kwargs(arch)
    pretrained = arch.get("pretrained") if load_pretrained else None
    if name in list_models():
        valid = _constructor_params(name)
        if valid is not None:
            for key in kwargs:
                if key not in valid:
                    raise unknown_key_error("Arch", key, valid + list(_ENGINE_ARCH_KEYS),
                                            where=f"{name} does not take this argument: ")
        try:
            model = paddle_lk.create_model(name, pretrained=pretrained or None,
                                           drop_head=bool(arch.get("drop_head", False)), **kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"Arch ({name}): {exc}") from None
    elif hasattr(paddle.vision.models, name) and callable(getattr(paddle.vision.models, name)):
        fn = getattr(paddle.vision.models, name)
        if "class_num" in kwargs:
            kwargs["num_classes"] = kwargs.pop("class_num")
        valid = list(inspect.signature(fn).parameters)
        for key in kwargs:
            if key not in valid and "kwargs" not in valid:
                raise unknown_key_error("Arch", key, valid, where=f"{name} does not take this argument: ")
        model = fn(**kwargs)
        if pretrained:
            load_model_weights(model, pretrained)
    else:
        import difflib

        choices = list_models() + [n for n in dir(paddle.vision.models) if not n.startswith("_")]
        close = difflib.get_close_matches(name, choices, n=1, cutoff=0.0)
        raise ConfigError(f"Arch.name: unknown model '{name}'" + (f"; did you mean '{close[0]}'?" if close else "")
                          + " (see paddle_lk.list_models())")
    refocus = arch.get("refocus")
    if refocus:
        if not isinstance(refocus, dict):
            raise ConfigError(f"Arch.refocus: expected a mapping like {{map_k: 3}}, got {refocus!r}")
        valid = [p for p in inspect.signature(paddle_lk.refocus).parameters if p != "model"]
        for key in refocus:
            if key not in valid:
                raise unknown_key_error("Arch.refocus", key, valid)
        model = paddle_lk.refocus(model, **refocus)
    return model


def load_model_weights(model: nn.Layer, weights: str, prefer_ema: bool = False) -> str:
    """Load weights: a training checkpoint (its model weights, or its EMA weights with ``prefer_ema``),
    an output dir (its ``best_model.pdparams``, else ``latest``), or ``.pdparams`` (paddle_lk or
    PaddleClas layout) / official ``.pth`` through :mod:`paddle_lk.convert`. Key or shape
    mismatches raise naming the keys. Returns the file read."""
    from .checkpoint import CKPT_EXT, load_checkpoint_file, resolve_weights

    path = resolve_weights(weights)
    if not path.endswith(CKPT_EXT):
        from paddle_lk.convert import load_weights

        load_weights(model, path)
        return path
    state = load_checkpoint_file(path)
    state = state["ema"] if prefer_ema and isinstance(state.get("ema"), dict) else state["model"]
    missing, bad = state_dict_mismatches(model, state)
    unexpected = [k for k in state if k not in model.state_dict()]
    if missing or bad:
        raise ConfigError(f"{path}: does not fit the model built from Arch: missing keys {missing[:5]}, "
                          f"shape mismatches {bad[:5]}, unexpected keys {unexpected[:5]}")
    model.set_state_dict(state)
    return path


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
    return sorted(set(topk)) or [1]


def num_classes_of(cfg: Dict[str, Any]) -> int:
    """``Arch.class_num`` (or ``num_classes``), required by the loss and metrics."""
    arch = cfg["Arch"]
    n = arch.get("class_num", arch.get("num_classes"))
    if not isinstance(n, int) or n < 1:
        raise ConfigError("Arch.class_num: required (number of classes), got " + repr(n))
    return n
