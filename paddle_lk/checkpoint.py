"""The one weights loader, and architecture detection from checkpoint keys and shapes.

:func:`load_checkpoint` is what ``create_model(pretrained=...)``, the training engine, the tools,
the PaddleSeg / PaddleDetection integrations and the ERF analysis call. It reads every format a
user has (``.pdparams`` in paddle_lk or PaddleClas layout, a training checkpoint ``.pdckpt`` or a
training output folder, an official PyTorch ``.pth`` / ``.pth.tar``) through the torch-free safe
reader (no pickled code runs), maps the keys with the checkpoint family's key map, and fills the
model. The classifier is dropped, with a log line, exactly when its shape differs from the model's.

Family knowledge (key maps, config-from-shapes, train/deploy forms) is looked up in
:mod:`paddle_lk.registry`, filled by each family's own module; this module knows no family.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import paddle
import paddle.nn as nn

from .errors import CheckpointError, DetectionError, WeightMismatchError
from .io.keymap import ConvertedState, KeyMap, get_keymap, guess_keymap
from .io.torch_reader import read_checkpoint_file, unwrap_state_dict
from .layers.refconv import refocus, refocus_shapes, split_refocused
from .registry import Family, family_of_model, family_of_shapes, get_family, match_variant, model_cfg, \
    model_entrypoint, require_family_of_shapes
from .layers.reparam import reparameterize

__all__ = ["load_checkpoint", "read_state", "resolve_weights", "LoadReport", "LoadedState", "DetectedArch",
           "detect_architecture", "match_state", "lazy_state_shapes", "shapes_of", "state_shapes", "CKPT_EXT", "LATEST", "BEST",
           "BEST_WEIGHTS"]

logger = logging.getLogger("paddle_lk")

Shape = Tuple[int, ...]
StateSource = Union[str, "os.PathLike[str]", Mapping[str, Any]]

# Training output layout (written by paddle_lk.engine): resolved here so every loader accepts it.
CKPT_EXT = ".pdckpt"
LATEST = "latest" + CKPT_EXT
BEST = "best" + CKPT_EXT
BEST_WEIGHTS = "best_model.pdparams"


# ------------------------------------------------------------------------------------------ reading
def shapes_of(state: Mapping[str, Any]) -> Dict[str, Shape]:
    """``{key: shape}`` from arrays, tensors or shape lists (a manifest)."""
    return {k: tuple(int(s) for s in getattr(v, "shape", v)) for k, v in state.items()}


def state_shapes(model: nn.Layer) -> Dict[str, Shape]:
    """``{key: shape}`` of a model's state dict (works on lazily built, unallocated models)."""
    return {k: tuple(int(s) for s in v.shape) for k, v in model.state_dict().items()}


def lazy_state_shapes(model_fn: Callable[..., nn.Layer], **kwargs: Any) -> Dict[str, Shape]:
    """State-dict shapes of ``model_fn(**kwargs)`` built under ``paddle.LazyGuard`` (no weights)."""
    with paddle.LazyGuard():
        model = model_fn(**kwargs)
    return state_shapes(model)


def resolve_weights(path: Union[str, "os.PathLike[str]"]) -> str:
    """The weights file ``path`` stands for.

    A training output folder gives its ``best_model.pdparams`` (best evaluated weights), else its
    ``latest.pdckpt``; a path without suffix gives ``path.pdparams`` when only that exists (how
    PaddleClas and PaddleDetection name weights). Raises FileNotFoundError naming what was tried.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        for name in (BEST_WEIGHTS, LATEST):
            candidate = os.path.join(path, name)
            if os.path.isfile(candidate):
                return candidate
        raise FileNotFoundError(f"{path}: a folder without {BEST_WEIGHTS} or {LATEST} (not a training output dir)")
    if os.path.isfile(path):
        return path
    if os.path.isfile(path + ".pdparams"):
        return path + ".pdparams"
    raise FileNotFoundError(f"weights '{path}' not found")


@dataclasses.dataclass
class LoadedState:
    """A state dict read from any source: numpy arrays under their source names, and where from."""

    tensors: Dict[str, np.ndarray]
    paddle_layout: bool
    label: str
    meta: Optional[Dict[str, Any]] = None


def _as_numpy(state: Mapping[str, Any]) -> Dict[str, np.ndarray]:
    out = {}
    for k, v in state.items():
        if isinstance(v, np.ndarray):
            out[k] = v
        elif isinstance(v, paddle.Tensor):
            out[k] = v.numpy()
        elif hasattr(v, "detach") and hasattr(v, "cpu"):  # a torch tensor, when torch happens to be there
            out[k] = v.detach().cpu().numpy()
        else:
            raise TypeError(f"state dict value for '{k}' is a {type(v).__name__}, not an array")
    return out


def _training_checkpoint_state(obj: Dict[str, Any], path: str, use_ema: Optional[bool]
                               ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    has_ema = isinstance(obj.get("ema"), dict) and bool(obj["ema"])
    if use_ema and not has_ema:
        raise CheckpointError(f"{path}: EMA weights requested, but this training checkpoint has none "
                              f"(trained without an EMA section); drop --ema / use_ema to use the model weights")
    key = "ema" if (use_ema or (use_ema is None and has_ema)) else "model"
    return unwrap_state_dict(obj[key], f"{path} ['{key}']"), dict(obj.get("meta") or {}, weights=key)


def read_state(source: StateSource, use_ema: Optional[bool] = False, allow_unknown: bool = False,
               mmap: bool = False) -> LoadedState:
    """Read weights from a path (see :func:`resolve_weights`) or a ``{name: array | Tensor}`` mapping.

    Args:
        use_ema: True takes the EMA weights of a training checkpoint (an error if it has none);
            None takes them when present; False the model weights.
        allow_unknown: unknown pickled globals become inert placeholders instead of errors.
        mmap: memory-map uncompressed torch storages.

    Raises:
        FileNotFoundError, :class:`CheckpointError` (unreadable), :class:`UnsafeCheckpointError`.
    """
    if isinstance(source, Mapping):
        tensors = _as_numpy(source)
        paddle_layout = any(k.endswith("._mean") for k in tensors) or any(
            isinstance(v, paddle.Tensor) for v in source.values())
        return LoadedState(tensors, paddle_layout, "state dict")
    path = resolve_weights(source)
    obj, fmt = read_checkpoint_file(path, mmap=mmap, allow_unknown=allow_unknown)
    meta = None
    if fmt == "pickle" and isinstance(obj, dict) and "model" in obj and "meta" in obj:
        tensors, meta = _training_checkpoint_state(obj, path, use_ema)
    else:
        if use_ema:
            ema = next((obj[k] for k in ("state_dict_ema", "model_ema", "ema") if isinstance(obj, dict)
                        and isinstance(obj.get(k), dict) and obj[k]), None)
            if ema is None:
                raise CheckpointError(f"{path}: EMA weights requested, but the file holds no EMA state dict")
            obj = ema
        tensors = unwrap_state_dict(obj, path)
    tensors.pop("StructuredToParameterName@@", None)
    return LoadedState(tensors, fmt == "pickle", path, meta)


# ------------------------------------------------------------------------------------------ detection
@dataclasses.dataclass
class DetectedArch:
    """What a checkpoint holds: family, registered variant (or None), full config, form.

    ``config`` holds the constructor arguments of the family's model class; ``refocus`` says the
    model's convs were refocused (RefConv) with ``map_k`` from ``min_kernel`` up.
    """

    family: str
    variant: Optional[str]
    config: Dict[str, Any]
    keymap: str
    refocus: Optional[Dict[str, int]] = None
    skipped: List[Tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def adapter(self) -> Family:
        return get_family(self.family)

    @property
    def form(self) -> str:
        """``train``, or the family's name for its re-parameterized deploy form (``deploy``; RepLKNet: ``merged``)."""
        form = self.adapter.form(self.config)
        return self.adapter.deploy_form_name if form == "deploy" else form

    @property
    def num_classes(self) -> Optional[int]:
        """Classes of the checkpoint's classifier (0: pooled features, no classifier); None in features mode."""
        if self.config.get("out_indices") is not None:
            return None
        return self.config.get("num_classes")

    def describe(self) -> str:
        """One line: variant, family, form, classes and the config."""
        name = self.variant or f"custom {self.adapter.display_name}"
        extra = {k: v for k, v in self.config.items() if k not in ("drop_path_rate", "num_classes")}
        head = (f"{self.num_classes} classes" if self.num_classes else
                ("features" if self.num_classes is None else "no classifier"))
        ref = f", refocused (map_k={self.refocus['map_k']}, kernels >= {self.refocus['min_kernel']})" \
            if self.refocus else ""
        return (f"{name} [{self.family}, {self.form} form, {head}{ref}] keymap={self.keymap} "
                + " ".join(f"{k}={v}" for k, v in extra.items()))

    def build(self, num_classes: Optional[int] = None, refocused: bool = True) -> nn.Layer:
        """Build the detected model (random weights; load the checkpoint into it next).

        ``num_classes`` replaces the checkpoint's class count (a features-mode checkpoint then gets a
        head); ``refocused=False`` skips the RefConv replacement of a refocused model.
        """
        cfg = dict(self.config)
        if num_classes is not None and "num_classes" in cfg:
            cfg["num_classes"] = num_classes
            cfg.pop("out_indices", None)
        if self.variant:
            arch = set(model_cfg(self.variant).arch)
            model = model_entrypoint(self.variant)(**{k: v for k, v in cfg.items() if k not in arch})
        else:
            model = self.adapter.build(cfg)
        if self.refocus and refocused:
            model = refocus(model, map_k=self.refocus["map_k"], zero_init=True, min_kernel=self.refocus["min_kernel"])
        return model

    def target_shapes(self, num_classes: Optional[int] = None) -> Dict[str, Shape]:
        """State-dict shapes of :meth:`build`'s model, without allocating any weights."""
        with paddle.LazyGuard():
            base = self.build(num_classes=num_classes, refocused=False)
        shapes = state_shapes(base)
        if self.refocus:  # refocus() copies kernels (impossible on lazy parameters): add the refocusing convs
            shapes.update(refocus_shapes(base, self.refocus["map_k"], self.refocus["min_kernel"]))
        return shapes


def detect_architecture(state: Mapping[str, Any], keymap: Optional[str] = None,
                        paddle_layout: bool = False) -> DetectedArch:
    """Detect the architecture of a state dict or manifest (``{key: array | shape}``).

    Args:
        state: source keys (PyTorch or Paddle names) with arrays, tensors or shapes.
        keymap: force a key map (see :data:`paddle_lk.io.keymap.KEYMAPS`); default: guessed.
        paddle_layout: the keys come from a Paddle file (picks the identity map as fallback).

    Raises:
        :class:`DetectionError` when no registered family recognises the keys.
    """
    shapes = shapes_of(state)
    km: KeyMap = get_keymap(keymap) if keymap else guess_keymap(shapes, paddle_layout)
    converted = km.convert_shapes(shapes)
    base, refocus_cfg = split_refocused(converted.tensors)  # type: ignore[arg-type]
    family = require_family_of_shapes(base)
    cfg = family.config_from_shapes(base)
    return DetectedArch(family.name, match_variant(family, cfg), cfg, km.name, refocus_cfg, converted.skipped)


# ------------------------------------------------------------------------------------------ loading
@dataclasses.dataclass
class LoadReport:
    """What :func:`load_checkpoint` did: the key map, how many tensors were loaded, every source key
    that was not (with the reason), whether the classifier was dropped, and the model keys left as
    they were (``strict=False`` only)."""

    keymap: str
    loaded: int
    skipped: List[Tuple[str, str]] = dataclasses.field(default_factory=list)
    head_dropped: bool = False
    missing: List[str] = dataclasses.field(default_factory=list)
    source: str = ""
    meta: Optional[Dict[str, Any]] = None

    def __str__(self) -> str:
        parts = [f"loaded {self.loaded} tensors from {self.source} (key map '{self.keymap}')"]
        if self.head_dropped:
            parts.append("classifier kept from the model (its shape differs from the checkpoint's)")
        if self.missing:
            parts.append(f"{len(self.missing)} model tensors not in the checkpoint (kept): {self.missing[:4]}")
        return "; ".join(parts)


def _form_hint(family: Optional[Family], missing: Sequence[str], present: Mapping[str, Shape],
               own: Mapping[str, Shape]) -> str:
    if family is None:
        return ""
    try:
        ck_form = family.form(family.config_from_shapes(present))
        md_form = family.form(family.config_from_shapes(own))
    except (DetectionError, KeyError, ValueError):
        return ""
    if ck_form == "deploy" and md_form == "train":
        return (" (the checkpoint is in deploy form but the model is in train form: build the model in "
                "deploy form, or call paddle_lk.reparameterize(model) first)")
    return ""


def _variant_hint(family: Optional[Family], present: Mapping[str, Shape], own: Mapping[str, Shape],
                  model_name: Optional[str]) -> str:
    """Say which variant the checkpoint is when it is the model's family but not its variant."""
    if family is None:
        return ""
    try:
        ck_cfg = family.config_from_shapes(present)
        md_cfg = family.config_from_shapes(own)
    except (DetectionError, KeyError, ValueError):
        return ""
    fields = [f for f in family.variant_fields if f in ck_cfg and f in md_cfg]
    if all(str(ck_cfg[f]) == str(md_cfg[f]) for f in fields):
        return ""
    ck_name = match_variant(family, ck_cfg) or f"a custom {family.display_name}"
    md_name = model_name or match_variant(family, md_cfg) or f"a custom {family.display_name}"
    diff = " ".join(f"{f}={ck_cfg[f]} (model {md_cfg[f]})" for f in fields if str(ck_cfg[f]) != str(md_cfg[f]))
    return f". The checkpoint is {ck_name}, not {md_name}: {diff}"


def match_state(mapped: ConvertedState, own: Mapping[str, Shape], label: str, strict: bool = True,
                family: Optional[Family] = None, model_name: Optional[str] = None,
                log: Callable[[str], None] = logger.info) -> Tuple[List[Tuple[str, str]], bool, List[str]]:
    """Check mapped checkpoint tensors (or shapes) against a model's ``{key: shape}``.

    The classifier (``family.head_keys``) is dropped, with a ``log`` line, exactly when its shape
    differs; a checkpoint without one leaves the model's. Returns ``(skipped source keys with reasons,
    head dropped, model keys left unloaded)``; model keys matching ``family.optional_keys`` may be absent
    (they keep their initial values, with a ``log`` line); with ``strict`` any other missing or mismatched
    key is a :class:`WeightMismatchError` naming keys, both shapes, and the variants when they differ.
    """
    head_keys = family.head_keys if family is not None else ("head.weight", "head.bias")
    shapes = {k: tuple(getattr(v, "shape", v)) for k, v in mapped.tensors.items()}
    missing = [k for k in own if k not in shapes]
    unexpected = [k for k in shapes if k not in own]
    bad = [k for k in own if k in shapes and tuple(own[k]) != shapes[k]]
    skipped: List[Tuple[str, str]] = []
    head_dropped = False
    heads_in_model = [k for k in head_keys if k in own]
    head_bad = [k for k in bad if k in head_keys]
    if head_bad:
        head_dropped = True
        for k in head_bad:
            skipped.append((mapped.origin[k], f"classifier dropped (checkpoint {list(shapes[k])}, model {list(own[k])})"))
        ours, theirs = list(own[head_bad[0]]), list(shapes[head_bad[0]])
        what = (f"({theirs[-1]} classes) differs from the model's ({ours[-1]})" if theirs[-1] != ours[-1]
                else f"({theirs}) does not fit the model's ({ours}: other feature widths)")
        log(f"{label}: the checkpoint's classifier {what}: it is not loaded, the model keeps its own")
    head_missing = [k for k in heads_in_model if k not in shapes]
    if head_missing and len(head_missing) == len(heads_in_model) and not head_bad:
        log(f"{label}: the checkpoint has no classifier: the model keeps its own (randomly initialised)")
    for k in unexpected:
        reason = "classifier not in the model (no head: features mode or num_classes=0)" if k in head_keys \
            else "not in the model"
        skipped.append((mapped.origin[k], reason))
    missing = [k for k in missing if k not in head_keys]
    optional = [k for k in missing if family is not None and any(re.fullmatch(p, k) for p in family.optional_keys)]
    if optional:
        log(f"{label}: {len(optional)} model tensors the checkpoint does not have keep their initial values "
            f"({', '.join(optional[:4])}{', ...' if len(optional) > 4 else ''})")
    missing = [k for k in missing if k not in optional]
    bad = [k for k in bad if k not in head_keys]
    if (missing or bad) and strict:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) {missing[:6]}{_form_hint(family, missing, shapes, own)}")
        if bad:
            parts.append(f"{len(bad)} shape mismatch(es) "
                         f"{[f'{k}: checkpoint {list(shapes[k])} vs model {list(own[k])}' for k in bad[:6]]}")
        raise WeightMismatchError(f"{label}: " + "; ".join(parts) + _variant_hint(family, shapes, own, model_name))
    for k in bad:
        skipped.append((mapped.origin[k], f"shape mismatch (checkpoint {list(shapes[k])}, model {list(own[k])})"))
    return skipped, head_dropped, optional + missing + bad


def _load_train_form_into_deploy(model: nn.Layer, family: Family, mapped: ConvertedState,
                                 own: Mapping[str, Shape]) -> Optional[ConvertedState]:
    """A train-form checkpoint for a deploy-form model: load it into a train-form twin, re-parameterize
    the twin and return its (deploy-form) state, mapped; None when that does not apply."""
    shapes = {k: tuple(getattr(v, "shape", v)) for k, v in mapped.tensors.items()}
    try:
        ck_cfg = family.config_from_shapes(shapes)
        md_cfg = family.config_from_shapes(own)
    except (DetectionError, KeyError, ValueError):
        return None
    if not (family.form(ck_cfg) == "train" and family.form(md_cfg) == "deploy"):
        return None
    twin = family.build(ck_cfg)
    own_twin = state_shapes(twin)
    if any(k not in shapes or tuple(own_twin[k]) != shapes[k] for k in own_twin):
        return None
    _assign(twin, mapped.tensors, own_twin)
    twin.eval()
    twin = reparameterize(twin)
    state = {k: v.numpy() for k, v in twin.state_dict().items()}
    out = ConvertedState(mapped.keymap, skipped=list(mapped.skipped))
    for k, v in state.items():
        out.tensors[k] = v
        out.origin[k] = f"{k} (re-parameterized from the train form)"
    return out


def _assign(model: nn.Layer, tensors: Mapping[str, Any], keys: Mapping[str, Shape], skip=()) -> int:
    own = model.state_dict()
    n = 0
    with paddle.no_grad():
        for key in keys:
            if key not in tensors or key in skip:
                continue
            target = own[key]
            value = np.asarray(tensors[key])
            want = str(target.dtype).split(".")[-1]  # paddle.float32 -> float32
            if str(value.dtype) != want:
                value = value.astype(want)
            target.set_value(value)
            n += 1
    return n


def load_checkpoint(model: nn.Layer, source: StateSource, use_ema: Optional[bool] = False, strict: bool = True,
                    keymap: Optional[str] = None, allow_unknown: bool = False,
                    log: Optional[Callable[[str], None]] = None) -> LoadReport:
    """Load weights into ``model`` from any source paddle_lk knows; the one loader of the project.

    Args:
        model: the model to fill (any ``nn.Layer``; paddle_lk families get family-aware checks).
        source: ``.pdparams`` (paddle_lk or PaddleClas layout), a training checkpoint ``.pdckpt``, a
            training output folder (its best, else latest weights), an official PyTorch ``.pth`` /
            ``.pth.tar`` / ``.pt``, a path without its ``.pdparams`` suffix, or a ``{name: array}`` dict.
        use_ema: the EMA weights of a training checkpoint (True: required; None: when present).
        strict: raise on model keys missing from the checkpoint or of another shape (the classifier
            excepted); ``False`` loads what fits and reports the rest in ``LoadReport.missing``.
        keymap: force a key map (default: guessed from the keys).
        allow_unknown: unknown pickled globals become inert placeholders instead of errors.
        log: receives one-line notes (dropped classifier, form conversion); default ``logging``.

    Returns:
        :class:`LoadReport`.

    Raises:
        FileNotFoundError; :class:`CheckpointError` (unreadable file, missing EMA);
        :class:`WeightMismatchError` (another family or variant, missing keys, shape mismatches,
        naming keys and both shapes).
    """
    log = log or logger.info
    st = read_state(source, use_ema=use_ema, allow_unknown=allow_unknown)
    km = get_keymap(keymap) if keymap else guess_keymap(shapes_of(st.tensors), st.paddle_layout)
    own = state_shapes(model)
    md_family = family_of_model(model)
    # A bare backbone takes the backbone part of a downstream (mmseg/mmdet) checkpoint; any other model
    # (a whole segmentation or detection model) keeps every key as it is.
    mapped = km.convert(st.tensors, downstream=md_family is not None)
    ck_shapes, _ = split_refocused(shapes_of(mapped.tensors))
    ck_family = family_of_shapes(ck_shapes)
    if ck_family is not None and md_family is not None and ck_family is not md_family:
        raise WeightMismatchError(
            f"{st.label}: the checkpoint holds {ck_family.display_name} weights (key map '{km.name}') but the "
            f"model is a {md_family.display_name} ({type(model).__name__})")
    if md_family is not None and any(k not in mapped.tensors for k in own if k not in md_family.head_keys):
        converted = _load_train_form_into_deploy(model, md_family, mapped, own)
        if converted is not None:
            log(f"{st.label}: train-form weights re-parameterized into the deploy-form model")
            mapped = converted
    skipped, head_dropped, left = match_state(mapped, own, st.label, strict, md_family,
                                              getattr(model, "variant_name", None), log)
    skip_src = {src for src, _ in skipped}
    n = _assign(model, mapped.tensors, own, skip={k for k in mapped.tensors if mapped.origin[k] in skip_src})
    return LoadReport(km.name, n, list(mapped.skipped) + skipped, head_dropped, left, st.label, st.meta)
