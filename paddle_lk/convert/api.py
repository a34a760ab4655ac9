"""Public conversion API: read any supported checkpoint, map it, load it, convert files."""
from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import paddle
import paddle.nn as nn

from ..utils.io import atomic_path
from .detect import DetectedArch, DetectionError, detect_architecture, family_of, lazy_state_shapes, shapes_of
from .keymaps import ConvertedState, KeyMap, get_keymap, guess_keymap
from .torch_reader import read_checkpoint_file, unwrap_state_dict
from ..errors import WeightMismatchError  # noqa: F401 - defined in paddle_lk.errors

__all__ = ["WeightMismatchError", "LoadReport", "read_checkpoint", "convert_state_dict", "map_shapes",
           "check_shapes", "load_torch_weights", "load_weights", "convert_checkpoint", "save_pdparams",
           "ConvertSummary", "HEAD_KEYS"]

HEAD_KEYS = ("head.weight", "head.bias")
StateSource = Union[str, "os.PathLike[str]", Mapping[str, Any]]


@dataclass
class LoadReport:
    """What :func:`load_torch_weights` did: the key map, how many tensors were loaded, and every
    checkpoint key that was not (with the reason)."""

    keymap: str
    loaded: int
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    head_dropped: bool = False


def _family_of_model(model: nn.Layer) -> Optional[str]:
    from ..layers.refconv import RefConv
    from ..models import VAN, RepLKNet

    if isinstance(model, RepLKNet):
        return "replknet"
    if isinstance(model, VAN):
        return "van"
    if isinstance(model, RefConv):
        return "refconv"
    return None


_FAMILY_NAMES = {"replknet": "RepLKNet", "van": "VAN", "refconv": "RefConv"}


def read_checkpoint(path: str, mmap: bool = False, allow_unknown: bool = False) -> Tuple[Dict[str, np.ndarray], str]:
    """``(flat state dict of numpy arrays, format)`` of a ``.pth``/``.pth.tar``/``.pt`` (zip or legacy
    torch format) or a ``.pdparams`` (plain pickle), read without torch and without executing
    pickled code. Format is ``torch-zip``, ``torch-legacy`` or ``pickle``."""
    obj, fmt = read_checkpoint_file(path, mmap=mmap, allow_unknown=allow_unknown)
    state = unwrap_state_dict(obj, os.fspath(path))
    state.pop("StructuredToParameterName@@", None)
    return state, fmt


def _as_numpy_state(state: Mapping[str, Any]) -> Dict[str, np.ndarray]:
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


def _resolve(source: StateSource, allow_unknown: bool = False, mmap: bool = False
             ) -> Tuple[Dict[str, np.ndarray], bool, str]:
    """(state, paddle_layout, label)."""
    if isinstance(source, Mapping):
        state = _as_numpy_state(source)
        paddle_layout = any(k.endswith("._mean") for k in state) or any(
            isinstance(v, paddle.Tensor) for v in source.values())
        return state, paddle_layout, "state dict"
    path = os.fspath(source)
    state, fmt = read_checkpoint(path, mmap=mmap, allow_unknown=allow_unknown)
    return state, fmt == "pickle", path


def _pick_keymap(state: Mapping[str, Any], keymap: Optional[str], paddle_layout: bool) -> KeyMap:
    return get_keymap(keymap) if keymap else guess_keymap(shapes_of(state), paddle_layout)


def convert_state_dict(state: Mapping[str, Any], keymap: Optional[str] = None,
                       paddle_layout: bool = False) -> ConvertedState:
    """Map a PyTorch (or PaddleClas) state dict to paddle_lk names and layouts.

    Returns a :class:`~paddle_lk.convert.keymaps.ConvertedState` (``tensors``, ``origin``,
    ``skipped``). The key map is guessed from the keys unless ``keymap`` names one.
    """
    arrays = _as_numpy_state(state)
    return _pick_keymap(arrays, keymap, paddle_layout).convert(arrays)


def map_shapes(shapes: Union[str, Mapping[str, Sequence[int]]], keymap: Optional[str] = None
               ) -> ConvertedState:
    """Map a manifest (``{key: shape}`` or a path to one as JSON, optionally under ``"keys"``)
    to paddle_lk names and shapes without touching any weights."""
    if isinstance(shapes, (str, os.PathLike)):
        with open(shapes) as f:
            shapes = json.load(f)
    if isinstance(shapes.get("keys"), dict):  # type: ignore[union-attr]
        shapes = shapes["keys"]  # type: ignore[index]
    norm = shapes_of(shapes)  # type: ignore[arg-type]
    return _pick_keymap(norm, keymap, False).convert_shapes(norm)


def check_shapes(mapped: Mapping[str, Sequence[int]], target: Mapping[str, Sequence[int]]
                 ) -> Tuple[List[str], List[str], List[str]]:
    """``(missing, unexpected, mismatched)`` between mapped checkpoint shapes and a model's."""
    missing = [k for k in target if k not in mapped]
    unexpected = [k for k in mapped if k not in target]
    mismatched = [f"{k}: checkpoint {list(mapped[k])} vs model {list(target[k])}"
                  for k in target if k in mapped and tuple(mapped[k]) != tuple(target[k])]
    return missing, unexpected, mismatched


def _hint(missing: Sequence[str], present: Sequence[str]) -> str:
    if any(".lkb_reparam." in k for k in missing) and any(".lkb_origin." in k for k in present):
        return (" (the checkpoint is in train form but the model is merged: build it with "
                "small_kernel_merged=False and call paddle_lk.reparameterize(model) after loading)")
    if any(".lkb_origin." in k for k in missing) and any(".lkb_reparam." in k for k in present):
        return " (the checkpoint is merged (lkb_reparam): build the model with small_kernel_merged=True)"
    return ""


def _match(mapped: ConvertedState, own: Mapping[str, Sequence[int]], drop_head: bool, label: str
           ) -> Tuple[List[Tuple[str, str]], bool]:
    """Check mapped shapes against the model's; returns (extra skipped, head dropped) or raises."""
    shapes = {k: tuple(getattr(v, "shape", v)) for k, v in mapped.tensors.items()}
    missing, unexpected, bad = check_shapes(shapes, own)
    skipped: List[Tuple[str, str]] = []
    head_dropped = False
    head_bad = [k for k in HEAD_KEYS if k in own and k in shapes and tuple(own[k]) != shapes[k]]
    head_missing = [k for k in HEAD_KEYS if k in missing]
    if drop_head and (head_bad or head_missing):
        head_dropped = True
        for k in head_bad:
            skipped.append((mapped.origin[k], f"classifier dropped (checkpoint {list(shapes[k])}, "
                                              f"model {list(own[k])})"))
        missing = [k for k in missing if k not in HEAD_KEYS]
        bad = [b for b in bad if b.split(":")[0] not in HEAD_KEYS]
    for k in unexpected:
        skipped.append((mapped.origin[k], "not in the model"))
    if missing or bad:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) {missing[:6]}{_hint(missing, list(shapes))}")
        if bad:
            parts.append(f"{len(bad)} shape mismatch(es) {bad[:6]}")
        msg = f"{label}: " + "; ".join(parts)
        if (head_bad or head_missing) and not drop_head:
            ck = f"checkpoint {shapes['head.weight'][-1]}" if "head.weight" in shapes else "checkpoint without head"
            msg += (f". The classifier differs ({ck}, model {tuple(own['head.weight'])[-1]} classes): pass "
                    f"drop_head=True (create_model(..., pretrained=..., drop_head=True), or --num-classes N in "
                    f"tools/convert_torch.py) to load everything but the classifier")
        raise WeightMismatchError(msg)
    return skipped, head_dropped


def load_torch_weights(model: nn.Layer, source: StateSource, keymap: Optional[str] = None,
                       drop_head: bool = False, allow_unknown: bool = False) -> LoadReport:
    """Load an official PyTorch checkpoint (path or state dict) into a paddle_lk model.

    Also accepts ``.pdparams`` files and Paddle state dicts (paddle_lk or PaddleClas layout).
    Keys the model does not have (``num_batches_tracked``, downstream heads, a classifier
    absent from a features-mode model) are skipped and reported.

    Args:
        model: the Paddle model to fill (e.g. ``create_model("RepLKNet31B")``).
        source: checkpoint path or ``{name: array | tensor}``.
        keymap: force a key map (default: guessed from the keys).
        drop_head: on a class-count mismatch keep the model's own classifier instead of raising.
        allow_unknown: treat pickled non-tensor objects of unknown type as inert placeholders.

    Returns:
        :class:`LoadReport`. Raises :class:`WeightMismatchError` on missing keys, shape mismatches
        (with the key names and both shapes) or a checkpoint of another family, and
        :class:`~paddle_lk.convert.CheckpointError` on unreadable files.
    """
    state, paddle_layout, label = _resolve(source, allow_unknown=allow_unknown)
    km = _pick_keymap(state, keymap, paddle_layout)
    mapped = km.convert(state)
    ck_family = family_of({k: tuple(v.shape) for k, v in mapped.tensors.items()})  # type: ignore[union-attr]
    md_family = _family_of_model(model)
    if ck_family and md_family and ck_family != md_family:
        raise WeightMismatchError(
            f"{label}: the checkpoint holds {_FAMILY_NAMES[ck_family]} weights (key map '{km.name}') "
            f"but the model is a {type(model).__name__}")
    own = model.state_dict()
    skipped, head_dropped = _match(mapped, {k: tuple(v.shape) for k, v in own.items()}, drop_head, label)
    skip_keys = {src for src, _ in skipped}
    n = 0
    with paddle.no_grad():
        for key, arr in mapped.tensors.items():
            if key not in own or mapped.origin[key] in skip_keys:
                continue
            target = own[key]
            value = np.asarray(arr)
            want = str(target.dtype).split(".")[-1]  # paddle.float32 -> float32
            if str(value.dtype) != want:
                value = value.astype(want)
            target.set_value(value)
            n += 1
    return LoadReport(km.name, n, list(mapped.skipped) + skipped, head_dropped)


def load_weights(model: nn.Layer, path: str, drop_head: bool = False) -> LoadReport:
    """Load ``.pdparams`` or an official ``.pth`` into ``model`` (the registry's ``pretrained`` hook).

    Both go through the safe reader (no pickled code runs) and the key maps, so PaddleClas VAN
    weights and PyTorch checkpoints load alike. Raises with key names on missing keys or shape
    mismatches; see :func:`load_torch_weights`.
    """
    return load_torch_weights(model, path, drop_head=drop_head)


def save_pdparams(state: Mapping[str, Any], path: str) -> None:
    """Write ``{name: ndarray | Tensor}`` as a ``.pdparams`` that ``paddle.load`` reads, atomically.

    Same pickle as ``paddle.save`` writes for a dict of arrays, but without the pickle memo:
    ``paddle.save`` memoizes every array's byte copy until the end, doubling peak memory.
    """
    with atomic_path(path) as tmp:
        _write_pdparams(state, tmp)


class _PdparamsPickler(pickle.Pickler):
    """Pickles Paddle tensors as numpy arrays one at a time (what ``paddle.load`` expects)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, paddle.Tensor):
            return obj.numpy().__reduce_ex__(4)
        return NotImplemented


def _write_pdparams(state: Mapping[str, Any], path: str) -> None:
    with open(path, "wb") as f:
        pickler = _PdparamsPickler(f, protocol=4)
        pickler.fast = True  # no memo: each array's bytes are freed once written (no shared objects here)
        pickler.dump(dict(state))


def _log_default(msg: str) -> None:
    print(msg, flush=True)


@dataclass
class ConvertSummary:
    """Outcome of :func:`convert_checkpoint`."""

    detected: Optional[DetectedArch]
    keymap: str
    mapped: int
    skipped: List[Tuple[str, str]]
    written: str
    verify_max_diff: Optional[float] = None


def convert_checkpoint(src: str, dst: str, arch: Optional[str] = None, reparam: bool = False,
                       num_classes: Optional[int] = None, verify: bool = False, keymap: Optional[str] = None,
                       allow_unknown: bool = False, log: Callable[[str], None] = _log_default) -> ConvertSummary:
    """Convert a checkpoint file to ``.pdparams`` (atomically: nothing is left at ``dst`` on error).

    Args:
        src: ``.pth``/``.pth.tar``/``.pt`` (or a PaddleClas ``.pdparams``).
        dst: output ``.pdparams``.
        arch: registered model name; must agree with the detected architecture.
        reparam: write deploy-form (merged) weights.
        num_classes: target class count; a checkpoint head of another size is dropped (the
            output then has no ``head.*``: load it with ``drop_head=True``).
        verify: build the model, load ``dst`` back and run a forward pass (after ``reparam``,
            also compare with the train-form model).
        keymap: force a key map.
        allow_unknown: unknown pickled globals become inert placeholders instead of errors.
        log: receives the progress lines.
    """
    from ..registry import create_model, model_entrypoint
    from ..reparam import reparameterize

    state, paddle_layout, _ = _resolve(src, allow_unknown=allow_unknown)
    km = _pick_keymap(state, keymap, paddle_layout)
    try:
        det: Optional[DetectedArch] = detect_architecture(state, km.name, paddle_layout)
        log(f"detected: {det.describe()}")
    except DetectionError:
        if arch is None:
            raise
        det = None
    if arch is not None:
        arch_family = family_of(lazy_state_shapes(model_entrypoint(arch)))
        if det is not None and (det.family != arch_family or det.variant not in (None, arch)):
            found = det.variant or f"a custom {_FAMILY_NAMES.get(det.family, det.family)}"
            raise WeightMismatchError(f"{src}: the checkpoint is {found}, not --arch {arch}")
    drop_head = num_classes is not None and det is not None and det.num_classes not in (None, num_classes)

    def build() -> nn.Layer:
        if arch is None:
            assert det is not None
            return det.build(num_classes=num_classes)
        kwargs: Dict[str, Any] = {}
        nc = num_classes if num_classes is not None else (det.num_classes if det else None)
        if det is not None and det.family == "replknet":
            kwargs.update(small_kernel_merged=det.config["small_kernel_merged"],
                          norm_intermediate_features=det.config["norm_intermediate_features"])
        if det is not None and nc is None:
            kwargs["out_indices"] = det.config["out_indices"]
        return create_model(arch, num_classes=nc, **kwargs)

    mapped = km.convert(state)
    del state
    target = det.target_shapes(num_classes) if arch is None and det is not None else lazy_state_shapes(build)
    skipped, head_dropped = _match(mapped, target, drop_head, src)
    if head_dropped:
        log(f"head: the checkpoint's {det.num_classes if det else '?'}-class classifier is dropped for "
            f"num_classes={num_classes}; load the output with drop_head=True")
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
            ref_out = _probe(model, det, features=head_dropped)
        model = reparameterize(model)
        out = {k: v for k, v in model.state_dict().items() if not (head_dropped and k in HEAD_KEYS)}
        del model
        log(f"reparam: deploy-form weights ({len(out)} tensors)")
    max_diff = None
    with atomic_path(dst) as tmp:
        _write_pdparams(out, tmp)
        if verify:
            max_diff = _verify(tmp, det, build, reparam, head_dropped, ref_out, log)
    log(f"wrote {dst}")
    return ConvertSummary(det, km.name, len(out), all_skipped, dst, max_diff)


def _probe(model: nn.Layer, det: Optional[DetectedArch], features: bool) -> List[paddle.Tensor]:
    """Outputs of ``model`` (eval mode) on a fixed random input; ``features``: skip the classifier
    (a dropped head is re-initialised randomly, so only the features are comparable)."""
    model.eval()
    x = _probe_input(det, model)
    with paddle.no_grad():
        y = model.forward_features(x) if features and hasattr(model, "forward_features") else model(x)
    return list(y) if isinstance(y, (list, tuple)) else [y]


def _probe_input(det: Optional[DetectedArch], model: nn.Layer) -> paddle.Tensor:
    from ..layers.refconv import RefConv

    if isinstance(model, RefConv):
        shape = [1, model.in_channels, 16, 16]
    else:
        in_ch = det.config.get("in_channels", det.config.get("in_chans", 3)) if det else 3
        shape = [1, in_ch, 64, 64]
    return paddle.to_tensor(np.random.RandomState(0).standard_normal(shape).astype("float32"))


def _verify(path: str, det: Optional[DetectedArch], build: Callable[[], nn.Layer], reparam: bool,
            drop_head: bool, ref_out: Any, log: Callable[[str], None]) -> float:
    """Rebuild the model (merged form after ``reparam``), load ``path`` back, run a forward pass;
    with a train-form reference output, the merged output must match it."""
    from ..reparam import reparameterize

    model = build()
    model.eval()
    if reparam:
        model = reparameterize(model)
    report = load_torch_weights(model, path, drop_head=drop_head)
    outs = _probe(model, det, features=drop_head)
    if not all(bool(paddle.isfinite(o).all()) for o in outs):
        raise WeightMismatchError("verify: the converted model produced non-finite outputs")
    diff = 0.0
    if ref_out is not None:
        refs = ref_out
        diff = max(float((a - b).abs().max()) for a, b in zip(outs, refs))
        scale = max(float(r.abs().max()) for r in refs)
        if diff > 1e-3 * max(scale, 1.0):
            raise WeightMismatchError(f"verify: merged model differs from the train-form model by {diff:.3g}")
    shapes = ", ".join(str(list(o.shape)) for o in outs)
    log(f"verify: rebuilt {type(model).__name__}, loaded {report.loaded} tensors, forward -> "
        f"{shapes}{' (features: head dropped)' if drop_head else ''}, finite" + (f"; merged vs train-form max |diff| {diff:.3g}" if ref_out is not None else ""))
    return diff
