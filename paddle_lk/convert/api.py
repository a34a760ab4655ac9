"""Converting checkpoint files: the library behind ``tools/convert_torch.py``, plus key-map helpers.

Reading, key mapping, family detection and loading are :mod:`paddle_lk.checkpoint`'s; this module
writes converted ``.pdparams`` files (optionally re-parameterized) and checks them.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import paddle
import paddle.nn as nn

from ..checkpoint import (DetectedArch, LoadReport, StateSource, detect_architecture, lazy_state_shapes,
                          load_checkpoint, match_state, read_state, shapes_of)
from ..errors import DetectionError, WeightMismatchError
from ..io.atomic import atomic_path
from ..io.keymap import ConvertedState, get_keymap, guess_keymap
from ..io.pdparams import write_pdparams
from ..io.torch_reader import read_checkpoint_file, unwrap_state_dict
from ..models import create_model
from ..registry import get_family, model_cfg
from ..layers.reparam import reparameterize

__all__ = ["read_checkpoint", "convert_state_dict", "map_shapes", "check_shapes", "load_torch_weights",
           "convert_checkpoint", "ConvertSummary"]

logger = logging.getLogger("paddle_lk")


def read_checkpoint(path: str, mmap: bool = False, allow_unknown: bool = False) -> Tuple[Dict[str, np.ndarray], str]:
    """``(flat state dict of numpy arrays, format)`` of a ``.pth``/``.pth.tar``/``.pt`` (zip or legacy
    torch format) or a ``.pdparams`` (plain pickle), read without torch and without executing pickled
    code. Format is ``torch-zip``, ``torch-legacy`` or ``pickle``."""
    obj, fmt = read_checkpoint_file(path, mmap=mmap, allow_unknown=allow_unknown)
    state = unwrap_state_dict(obj, os.fspath(path))
    state.pop("StructuredToParameterName@@", None)
    return state, fmt


def convert_state_dict(state: Mapping[str, Any], keymap: Optional[str] = None,
                       paddle_layout: bool = False) -> ConvertedState:
    """Map a PyTorch (or PaddleClas) state dict to paddle_lk names and layouts.

    Returns a :class:`~paddle_lk.io.keymap.ConvertedState` (``tensors``, ``origin``, ``skipped``).
    The key map is guessed from the keys unless ``keymap`` names one.
    """
    st = read_state(state)
    km = get_keymap(keymap) if keymap else guess_keymap(shapes_of(st.tensors), paddle_layout or st.paddle_layout)
    return km.convert(st.tensors)


def map_shapes(shapes: Union[str, Mapping[str, Sequence[int]]], keymap: Optional[str] = None) -> ConvertedState:
    """Map a manifest (``{key: shape}`` or a path to one as JSON, optionally under ``"keys"``)
    to paddle_lk names and shapes without touching any weights."""
    if isinstance(shapes, (str, os.PathLike)):
        with open(shapes) as f:
            shapes = json.load(f)
    if isinstance(shapes.get("keys"), dict):  # type: ignore[union-attr]
        shapes = shapes["keys"]  # type: ignore[index]
    norm = shapes_of(shapes)  # type: ignore[arg-type]
    km = get_keymap(keymap) if keymap else guess_keymap(norm, False)
    return km.convert_shapes(norm)


def check_shapes(mapped: Mapping[str, Sequence[int]], target: Mapping[str, Sequence[int]]
                 ) -> Tuple[List[str], List[str], List[str]]:
    """``(missing, unexpected, mismatched)`` between mapped checkpoint shapes and a model's."""
    missing = [k for k in target if k not in mapped]
    unexpected = [k for k in mapped if k not in target]
    mismatched = [f"{k}: checkpoint {list(mapped[k])} vs model {list(target[k])}"
                  for k in target if k in mapped and tuple(mapped[k]) != tuple(target[k])]
    return missing, unexpected, mismatched


def load_torch_weights(model: nn.Layer, source: StateSource, keymap: Optional[str] = None,
                       allow_unknown: bool = False, **_ignored: Any) -> LoadReport:
    """Name kept from paddle_lk 0.1 for :func:`paddle_lk.load_checkpoint` (the one loader); its old
    ``drop_head`` flag is accepted and ignored (a differing classifier is always dropped)."""
    return load_checkpoint(model, source, keymap=keymap, allow_unknown=allow_unknown)


def _log_default(msg: str) -> None:
    logger.info(msg)


@dataclass
class ConvertSummary:
    """Outcome of :func:`convert_checkpoint`."""

    detected: Optional[DetectedArch]
    keymap: str
    mapped: int
    skipped: List[Tuple[str, str]]
    written: str
    verify_max_diff: Optional[float] = None


def _nested_list(value: Any) -> Any:
    """Tuples and lists, at any depth, as lists: configs read off shapes hold tuples, tables lists."""
    return [_nested_list(v) for v in value] if isinstance(value, (list, tuple)) else value


def _field_diff(field: str, found: Any, expected: Any) -> List[str]:
    """``field=checkpoint (--arch: expected)``; for per-stage tables of the same length, only the
    stages that differ (``kernel_sizes[2]=...``), so that a 27-block stage stays readable."""
    found, expected = _nested_list(found), _nested_list(expected)
    if (isinstance(found, list) and isinstance(expected, list) and len(found) == len(expected)
            and any(isinstance(v, list) for v in found + expected)):
        return [f"{field}[{i}]={a} (--arch: {b})" for i, (a, b) in enumerate(zip(found, expected)) if a != b]
    return [f"{field}={found} (--arch: {expected})"]


def _arch_fields(family, arch: str) -> Dict[str, Any]:
    """The defining fields of ``arch``: its table entry, completed with what the table leaves to the
    constructor's defaults (UniRepLKNet's per-depth kernel sizes), read off a lazily built model."""
    fields = dict(model_cfg(arch).arch)
    implied = [f for f in family.variant_fields if f not in fields]
    if implied:
        try:
            built = family.config_from_shapes(lazy_state_shapes(create_model, name=arch))
        except (DetectionError, KeyError, ValueError):
            built = {}
        fields.update({f: built[f] for f in implied if f in built})
    return fields


def _check_arch(src: str, arch: str, det: Optional[DetectedArch]) -> None:
    """The checkpoint must be ``arch`` (its family and its defining arguments), said in one line that
    names the fields (or stages) that differ."""
    cfg = model_cfg(arch)
    if det is None:
        return
    family = get_family(det.family)
    if det.family != cfg.family:
        found = det.variant or f"a custom {family.display_name}"
        raise WeightMismatchError(f"{src}: the checkpoint is {found}, not --arch {arch} "
                                  f"(a {get_family(cfg.family).display_name})")
    if not family.variant_matches(cfg.arch, det.config):
        found = det.variant or f"a custom {family.display_name}"
        expected = _arch_fields(family, arch)
        diff = [d for f in family.variant_fields if f in expected and det.config.get(f) is not None
                and _nested_list(det.config.get(f)) != _nested_list(expected[f])
                for d in _field_diff(f, det.config.get(f), expected[f])]
        raise WeightMismatchError(f"{src}: the checkpoint is {found}, not --arch {arch}: "
                                  + (" ".join(diff) or family.describe_config(det.config)))


def convert_checkpoint(src: str, dst: str, arch: Optional[str] = None, reparam: bool = False,
                       num_classes: Optional[int] = None, verify: bool = False, keymap: Optional[str] = None,
                       allow_unknown: bool = False, log: Callable[[str], None] = _log_default) -> ConvertSummary:
    """Convert a checkpoint file to ``.pdparams`` (atomically: nothing is left at ``dst`` on error).

    Args:
        src: ``.pth``/``.pth.tar``/``.pt`` (or a PaddleClas ``.pdparams``).
        dst: output ``.pdparams``.
        arch: registered model name; must agree with the detected architecture (family and variant).
        reparam: write deploy-form (re-parameterized) weights.
        num_classes: target class count; a checkpoint classifier of another size is not written
            (loading the result keeps the model's own classifier).
        verify: build the model, load ``dst`` back and run a forward pass (after ``reparam``,
            also compare with the train-form model).
        keymap: force a key map.
        allow_unknown: unknown pickled globals become inert placeholders instead of errors.
        log: receives the progress lines.

    Raises:
        :class:`WeightMismatchError` / :class:`DetectionError` / :class:`CheckpointError` naming the
        problem; KeyError for an unknown ``arch``.
    """
    st = read_state(src, allow_unknown=allow_unknown)
    km = get_keymap(keymap) if keymap else guess_keymap(shapes_of(st.tensors), st.paddle_layout)
    try:
        det: Optional[DetectedArch] = detect_architecture(st.tensors, km.name, st.paddle_layout)
        log(f"detected: {det.describe()}")
    except DetectionError:
        if arch is None:
            raise
        det = None
    if arch is not None:
        _check_arch(src, arch, det)
    family = get_family(det.family) if det is not None else get_family(model_cfg(arch).family)  # type: ignore[arg-type]

    def build() -> nn.Layer:
        if det is not None:
            return det.build(num_classes=num_classes)
        return create_model(arch, num_classes=num_classes)  # type: ignore[arg-type]

    mapped = km.convert(st.tensors)
    del st
    target = det.target_shapes(num_classes) if det is not None else lazy_state_shapes(build)
    skipped, head_dropped, _ = match_state(mapped, target, src, strict=True, family=family, log=log)
    drop = {src_key for src_key, _ in skipped}
    out: Dict[str, Any] = {k: np.asarray(v) for k, v in mapped.tensors.items()
                           if k in target and mapped.origin[k] not in drop}
    all_skipped = list(mapped.skipped) + skipped
    mapped.tensors.clear()  # `out` holds the only references now: memory stays at one copy
    log(f"mapped {len(out)} tensors with key map '{km.name}' ({km.description})")
    for line in ConvertedState(km.name, skipped=all_skipped).skipped_summary():
        log(f"skipped {line}")

    ref_out = None
    if reparam:
        model = build()
        own = model.state_dict()
        with paddle.no_grad():
            for key in list(out):  # pop as we go: checkpoint arrays are freed while the model fills
                own[key].set_value(out.pop(key).astype(str(own[key].dtype).split(".")[-1], copy=False))
        del own
        model.eval()
        if verify:
            ref_out = _probe(model, family, det, features=head_dropped)
        model = reparameterize(model)
        out = {k: v for k, v in model.state_dict().items() if not (head_dropped and k in family.head_keys)}
        del model
        log(f"reparam: deploy-form weights ({len(out)} tensors)")
    max_diff = None
    with atomic_path(dst) as tmp:
        write_pdparams(out, tmp)
        if verify:
            max_diff = _verify(tmp, family, det, build, reparam, head_dropped, ref_out, log)
    log(f"wrote {dst}")
    return ConvertSummary(det, km.name, len(out), all_skipped, dst, max_diff)


def _probe(model: nn.Layer, family, det: Optional[DetectedArch], features: bool) -> List[paddle.Tensor]:
    """Outputs of ``model`` (eval mode) on a fixed random input; ``features``: skip the classifier
    (a dropped head is re-initialised randomly, so only the features are comparable)."""
    model.eval()
    shape = [1] + list(family.probe_shape(det.config if det is not None else {}))
    x = paddle.to_tensor(np.random.RandomState(0).standard_normal(shape).astype("float32"))
    with paddle.no_grad():
        y = model.forward_features(x) if features and hasattr(model, "forward_features") else model(x)
    return list(y) if isinstance(y, (list, tuple)) else [y]


def _verify(path: str, family, det: Optional[DetectedArch], build: Callable[[], nn.Layer], reparam: bool,
            head_dropped: bool, ref_out: Any, log: Callable[[str], None]) -> float:
    """Rebuild the model (deploy form after ``reparam``), load ``path`` back through the one loader,
    run a forward pass; with a train-form reference output, the deploy output must match it
    (relative to the output's scale)."""
    model = build()
    model.eval()
    if reparam:
        model = reparameterize(model)
    report = load_checkpoint(model, path, log=lambda _msg: None)
    outs = _probe(model, family, det, features=head_dropped)
    if not all(bool(paddle.isfinite(o).all()) for o in outs):
        raise WeightMismatchError("verify: the converted model produced non-finite outputs")
    diff = 0.0
    if ref_out is not None:
        diff = max(float((a - b).abs().max()) for a, b in zip(outs, ref_out))
        scale = max(float(r.abs().max()) for r in ref_out)
        if not diff <= 1e-4 * scale + 1e-6:
            raise WeightMismatchError(f"verify: the re-parameterized model differs from the train-form model by "
                                      f"{diff:.3g} (output scale {scale:.3g})")
    shapes = ", ".join(str(list(o.shape)) for o in outs)
    log(f"verify: rebuilt {type(model).__name__}, loaded {report.loaded} tensors, forward -> "
        f"{shapes}{' (features: head dropped)' if head_dropped else ''}, finite"
        + (f"; re-parameterized vs train-form max |diff| {diff:.3g}" if ref_out is not None else ""))
    return diff
