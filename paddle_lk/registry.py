"""Model registry: the tables every family fills from its own module, and nothing else.

* ``register_model`` records a variant's constructor with its :class:`ModelCfg` (the family, the
  constructor arguments that define the variant, input size, mean/std, classifier name, published
  numbers and the official checkpoints), as timm's ``default_cfgs`` do;
* ``register_family`` records a family's checkpoint adapter (:class:`Family`): its key maps, how to
  read a constructor config off checkpoint shapes, and its train/deploy forms.

This module imports no paddle_lk model code: families register themselves when
:mod:`paddle_lk.models` (and :mod:`paddle_lk.layers.refconv`) are imported, so the code that reads
these tables (:mod:`paddle_lk.builder`, :mod:`paddle_lk.checkpoint`) never imports a family.
"""
from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import paddle.nn as nn

from .errors import DetectionError, closest
from .io.keymap import KeyMap

__all__ = ["Checkpoint", "ModelCfg", "Family", "register_model", "register_family", "list_models", "model_entrypoint",
           "model_cfg", "model_info", "get_family", "families", "family_of_model", "family_of_shapes",
           "require_family_of_shapes", "match_variant", "PretrainedSpec",
           "IMAGENET_MEAN", "IMAGENET_STD", "INCEPTION_MEAN", "INCEPTION_STD"]

PretrainedSpec = Union[bool, str, None]
Shape = Tuple[int, ...]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """An official release of weights for a variant (facts from the authors' repository).

    ``file``: the released file name; ``dataset``: what it was trained on (``ImageNet-1K``,
    ``ImageNet-22K``, ``ImageNet-22K -> 1K``, ...); ``resolution``: input side in pixels;
    ``top1``: the published ImageNet-1K top-1 (%) of these weights, None for pretraining-only
    weights; ``num_classes``: size of its classifier.
    """

    file: str
    dataset: str
    resolution: int
    top1: Optional[float]
    num_classes: int = 1000


@dataclasses.dataclass
class ModelCfg:
    """What a registered variant is: family, defining constructor arguments, data and published facts.

    ``arch`` holds the constructor arguments that make this variant (e.g. kernel sizes, depths,
    widths); ``input_size`` is ``(C, H, W)``; ``mean``/``std`` are per-channel on the 0-1 scale;
    ``params_m``/``flops_g`` are the paper's figures (millions, GMACs at ``input_size``);
    ``paddle_url`` hosts Paddle weights for ``pretrained=True``.
    """

    family: str
    arch: Dict[str, Any]
    input_size: Tuple[int, int, int] = (3, 224, 224)
    mean: Tuple[float, ...] = IMAGENET_MEAN
    std: Tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    num_classes: int = 1000
    classifier: str = "head"
    feature_strides: Tuple[int, ...] = (4, 8, 16, 32)
    params_m: Optional[float] = None
    flops_g: Optional[float] = None
    checkpoints: Tuple[Checkpoint, ...] = ()
    paddle_url: Optional[str] = None
    description: str = ""
    name: str = ""

    @property
    def top1(self) -> Optional[float]:
        """Best published ImageNet-1K top-1 (%) among the official checkpoints, None if there is none."""
        scores = [c.top1 for c in self.checkpoints if c.top1 is not None]
        return max(scores) if scores else None

    @property
    def top1_resolution(self) -> Optional[int]:
        """Input side (pixels) of the checkpoint :attr:`top1` was published for (it may differ from
        ``input_size``: e.g. a 384 fine-tune of a 224 model)."""
        scored = [c for c in self.checkpoints if c.top1 is not None]
        return max(scored, key=lambda c: c.top1).resolution if scored else None

    @property
    def has_weights(self) -> bool:
        """Whether an official checkpoint (to convert) or hosted Paddle weights exist."""
        return bool(self.checkpoints) or bool(self.paddle_url)

    def to_dict(self) -> Dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(top1=self.top1, top1_resolution=self.top1_resolution, has_weights=self.has_weights)
        return out


class Family:
    """A model family's checkpoint adapter; each family subclasses it in its own module.

    Attributes to set: ``name`` (e.g. ``replknet``), ``display_name`` (``RepLKNet``), ``model_cls``,
    ``keymaps`` (the family's official key maps, most specific first), ``variant_fields`` (the config
    fields that tell registered variants apart), ``head_keys``. Methods to implement:
    :meth:`claims` and :meth:`config_from_shapes`; override :meth:`form`, :meth:`train_twin_config`
    and :meth:`build` where the family has forms or needs more than ``model_cls(**config)``.
    """

    name: str = ""
    display_name: str = ""
    model_cls: Optional[type] = None
    keymaps: Tuple[KeyMap, ...] = ()
    variant_fields: Tuple[str, ...] = ()
    head_keys: Tuple[str, ...] = ("head.weight", "head.bias")
    #: Model keys (regular expressions, full match) a checkpoint of the family may lack: they keep their
    #: initial values, with a log line, instead of failing a strict load (e.g. UniRepLKNet's features-mode
    #: ``norm{i}``, which ImageNet classification checkpoints have no counterpart for).
    optional_keys: Tuple[str, ...] = ()
    #: Constructor argument holding the input channels (families differ: in_chans / in_channels).
    in_chans_arg: str = "in_chans"
    #: What the family's own docs call its deploy form (RepLKNet: "merged").
    deploy_form_name: str = "deploy"

    def claims(self, shapes: Mapping[str, Shape]) -> bool:
        """Whether Paddle-named ``{key: shape}`` (after a key map) is a checkpoint of this family."""
        raise NotImplementedError

    def config_from_shapes(self, shapes: Mapping[str, Shape]) -> Dict[str, Any]:
        """The full constructor config read off Paddle-named shapes; :class:`DetectionError` if it
        cannot be read (the message says which key is missing or inconsistent)."""
        raise NotImplementedError

    def form(self, config: Mapping[str, Any]) -> str:
        """``train`` or ``deploy`` (re-parameterized) for a config of this family."""
        return "train"

    def train_twin_config(self, config: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
        """For a deploy-form config, the train-form config whose re-parameterization it is (used to
        load train-form checkpoints into deploy-form models); None for families without forms."""
        return None

    def build(self, config: Mapping[str, Any]) -> nn.Layer:
        """A model (random weights) for ``config``."""
        assert self.model_cls is not None
        return self.model_cls(**config)

    def probe_shape(self, config: Mapping[str, Any]) -> Tuple[int, int, int]:
        """``(C, H, W)`` of a small input that runs a model of ``config`` (converter checks)."""
        return (int(config.get(self.in_chans_arg, 3)), 64, 64)

    def is_instance(self, model: nn.Layer) -> bool:
        return self.model_cls is not None and isinstance(model, self.model_cls)

    def variant_matches(self, arch: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
        """Whether a detected ``config`` is the registered variant defined by ``arch``."""
        return all(_same(arch[f], config.get(f)) for f in self.variant_fields if f in arch)

    def describe_config(self, config: Mapping[str, Any]) -> str:
        """The fields that define a variant, for messages (``depths=[3, 3, 5, 2] ...``)."""
        return " ".join(f"{f}={_plain(config.get(f))}" for f in self.variant_fields if f in config)

    def variants(self) -> List[str]:
        """Registered variant names of this family."""
        return [n for n in list_models() if _CFGS[n].family == self.name]

    def __repr__(self) -> str:
        return f"Family({self.name!r})"


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _same(a: Any, b: Any) -> bool:
    norm = (lambda v: [_plain(x) for x in v] if isinstance(v, (list, tuple)) else v)
    return norm(a) == norm(b)


_MODEL_ENTRYPOINTS: Dict[str, Callable[..., nn.Layer]] = {}
_CFGS: Dict[str, ModelCfg] = {}
_FAMILIES: Dict[str, Family] = {}


def register_model(fn: Optional[Callable[..., nn.Layer]] = None, *, cfg: Optional[ModelCfg] = None):
    """Decorator: register a constructor under its function name, with its :class:`ModelCfg`.

    ``@register_model`` alone registers a constructor without a table entry (its cfg is then a bare
    ``ModelCfg(family="")``); families use ``@register_model(cfg=ModelCfg(...))``.
    """
    def wrap(f: Callable[..., nn.Layer]) -> Callable[..., nn.Layer]:
        entry = cfg if cfg is not None else ModelCfg(family="", arch={})
        entry.name = f.__name__
        _MODEL_ENTRYPOINTS[f.__name__] = f
        _CFGS[f.__name__] = entry
        return f

    return wrap(fn) if fn is not None else wrap


def register_family(family: Family) -> Family:
    """Add a family's checkpoint adapter (idempotent for the same object)."""
    if family.name in _FAMILIES and _FAMILIES[family.name] is not family:
        raise ValueError(f"model family '{family.name}' is already registered")
    _FAMILIES[family.name] = family
    return family


def list_models(pattern: Optional[str] = None, pretrained: bool = False, family: Optional[str] = None
                ) -> List[str]:
    """Registered model names, sorted.

    Args:
        pattern: shell-style filter, case-insensitive (``"van_*"``, ``"*31*"``).
        pretrained: only variants with official weights (a checkpoint to convert, or hosted weights).
        family: only this family (``replknet``, ``van``, ``unireplknet``...).
    """
    names = sorted(_MODEL_ENTRYPOINTS)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n.lower(), pattern.lower())]
    if pretrained:
        names = [n for n in names if _CFGS[n].has_weights]
    if family:
        names = [n for n in names if _CFGS[n].family == family]
    return names


def _unknown(name: str) -> KeyError:
    close = closest(name, list(_MODEL_ENTRYPOINTS))
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return KeyError(f"unknown model '{name}'{hint} (see paddle_lk.list_models())")


def model_entrypoint(name: str) -> Callable[..., nn.Layer]:
    """The constructor registered as ``name``; a KeyError suggests the closest names."""
    if name not in _MODEL_ENTRYPOINTS:
        raise _unknown(name)
    return _MODEL_ENTRYPOINTS[name]


def model_cfg(name: str) -> ModelCfg:
    """The :class:`ModelCfg` of a registered model (KeyError with suggestions if unknown)."""
    if name not in _CFGS:
        raise _unknown(name)
    return _CFGS[name]


def model_info(name: str) -> Dict[str, Any]:
    """A registered model's table entry as a plain dict: family, arch, input size, mean/std,
    published params/FLOPs/top-1, official checkpoints and whether weights are known."""
    return model_cfg(name).to_dict()


def get_family(name: str) -> Family:
    """The registered family ``name`` (``replknet``, ``van``, ``refconv``, ``unireplknet``...)."""
    if name not in _FAMILIES:
        raise KeyError(f"unknown model family '{name}' (known: {', '.join(_FAMILIES)})")
    return _FAMILIES[name]


def families() -> List[Family]:
    """Every registered family, in registration order."""
    return list(_FAMILIES.values())


def family_of_model(model: nn.Layer) -> Optional[Family]:
    """The family whose model class ``model`` is an instance of, else None."""
    return next((f for f in _FAMILIES.values() if f.is_instance(model)), None)


def family_of_shapes(shapes: Mapping[str, Shape]) -> Optional[Family]:
    """The family that claims Paddle-named ``{key: shape}``, else None."""
    return next((f for f in _FAMILIES.values() if f.claims(shapes)), None)


def require_family_of_shapes(shapes: Mapping[str, Shape]) -> Family:
    """:func:`family_of_shapes`, raising a :class:`DetectionError` that lists the known families."""
    family = family_of_shapes(shapes)
    if family is None:
        sample = ", ".join(list(shapes)[:4])
        raise DetectionError(f"cannot recognise the architecture from keys like {sample} (not one of "
                             f"{', '.join(f.display_name for f in _FAMILIES.values())}); pass the architecture "
                             f"explicitly")
    return family


def match_variant(family: Family, config: Mapping[str, Any]) -> Optional[str]:
    """The registered variant of ``family`` whose defining arguments equal ``config``'s, else None."""
    return next((n for n in family.variants() if family.variant_matches(_CFGS[n].arch, config)), None)

