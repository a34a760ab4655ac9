"""Key maps: the framework that maps checkpoint keys, and the two family-independent maps.

Each model family registers its own rule table next to its model (``paddle_lk/models/<family>.py``).

A :class:`KeyMap` is an ordered list of :class:`Rule` s (regex -> new name, or drop with a
reason, plus an optional tensor transform). The framework (:meth:`KeyMap.convert`) first
normalises the container (``module.``/``_orig_mod.`` wrappers, downstream ``backbone.``
checkpoints whose other parts are reported as skipped), then maps every key. The same rules map
bare ``{key: shape}`` manifests (:meth:`KeyMap.convert_shapes`), so shape checks need no weights.
"""
from __future__ import annotations

import collections
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__all__ = ["Rule", "KeyMap", "ConvertedState", "KEYMAPS", "get_keymap", "guess_keymap", "prepare_keys",
           "register_keymap", "DOWNSTREAM_PREFIX", "TORCH_BN_RULES", "TORCH_BN_KEY", "GENERIC_KEYMAPS"]

Shape = Tuple[int, ...]
DOWNSTREAM_PREFIX = "backbone."
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")


@dataclass(frozen=True)
class Rule:
    """``pattern`` (regex, full match) -> ``replacement`` (``re`` template); ``replacement=None``
    drops the key with ``reason``. ``transform``: ``"linear"`` (transpose a 2-D torch Linear weight
    to Paddle's [in, out]), ``"flatten"`` (squeeze to 1-D) or ``None``."""

    pattern: str
    replacement: Optional[str] = r"\g<0>"
    transform: Optional[str] = None
    reason: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_re", re.compile(self.pattern))

    def match(self, key: str) -> Optional["re.Match[str]"]:
        return self._re.fullmatch(key)  # type: ignore[attr-defined]


def _transform_shape(shape: Shape, transform: Optional[str]) -> Shape:
    if transform == "linear" and len(shape) == 2:
        return (shape[1], shape[0])
    if transform == "flatten":
        return (int(np.prod(shape, dtype=np.int64)),)
    return tuple(shape)


def _transform_array(arr: np.ndarray, transform: Optional[str]) -> np.ndarray:
    if transform == "linear" and arr.ndim == 2:
        return np.ascontiguousarray(arr.T)
    if transform == "flatten":
        return arr.reshape(-1)
    return arr


@dataclass
class ConvertedState:
    """Result of a key-map conversion.

    ``tensors``: Paddle-named arrays (or shapes, for manifests); ``origin``: Paddle key -> source
    key; ``skipped``: (source key, reason) for everything not carried over.
    """

    keymap: str
    tensors: "collections.OrderedDict[str, object]" = field(default_factory=collections.OrderedDict)
    origin: Dict[str, str] = field(default_factory=dict)
    skipped: List[Tuple[str, str]] = field(default_factory=list)

    def skipped_summary(self) -> List[str]:
        """Skipped keys grouped by reason: ``"<reason>: N keys (e.g. a, b)"``."""
        groups: Dict[str, List[str]] = collections.OrderedDict()
        for key, reason in self.skipped:
            groups.setdefault(reason, []).append(key)
        return [f"{reason}: {len(keys)} key{'s' if len(keys) != 1 else ''} (e.g. {', '.join(keys[:2])})"
                for reason, keys in groups.items()]


def prepare_keys(keys: Iterable[str], downstream: bool = True) -> Tuple[Dict[str, str], List[Tuple[str, str]]]:
    """Container normalisation shared by every family.

    Returns ``(kept, skipped)``: ``kept`` maps normalised key -> original key. Wrapper prefixes
    carried by every key (``module.`` of DataParallel, ``_orig_mod.`` of torch.compile) are
    stripped; in a downstream checkpoint (mmseg/mmdet: ``backbone.*`` next to ``decode_head.*``,
    ``neck.*``, ...) the backbone is kept and everything else is skipped with its part's name.
    """
    keys = list(keys)
    names = {k: k for k in keys}
    for prefix in _WRAPPER_PREFIXES:
        if names and all(k.startswith(prefix) for k in names):
            names = {k[len(prefix):]: orig for k, orig in names.items()}
    skipped: List[Tuple[str, str]] = []
    if downstream and any(k.startswith(DOWNSTREAM_PREFIX) for k in names):
        kept = {}
        for k, orig in names.items():
            if k.startswith(DOWNSTREAM_PREFIX):
                kept[k[len(DOWNSTREAM_PREFIX):]] = orig
            else:
                skipped.append((orig, f"downstream '{k.split('.')[0]}' (not part of the backbone)"))
        names = kept
    return names, skipped


class KeyMap:
    """One family's key map: name, rules, and a key-based test of whether a checkpoint is one.

    Args:
        name: registry name of the map (``replknet``, ``van``, ...).
        description: one line for reports.
        rules: tried in order, first full match wins; unmatched keys keep their name.
        signature: regexes that must all match some key for :func:`guess_keymap` to pick this map.
        forbidden: regexes none of which may match (e.g. torch BN names in a Paddle layout).
        rank: ``(regex, ndim)``: keys matching the regex must have that many dims (needs shapes).
        layout: ``torch`` for maps of PyTorch files, ``paddle`` for maps of Paddle files (``.pdparams``):
            :func:`guess_keymap` only tries maps of the file's layout.
    """

    def __init__(self, name: str, description: str, rules: Sequence[Rule], signature: Sequence[str] = (),
                 forbidden: Sequence[str] = (), rank: Optional[Tuple[str, int]] = None,
                 layout: str = "torch") -> None:
        self.name, self.description = name, description
        self.rules = list(rules)
        self.signature = [re.compile(p) for p in signature]
        self.forbidden = [re.compile(p) for p in forbidden]
        self.rank = (re.compile(rank[0]), rank[1]) if rank else None
        self.layout = layout

    def __repr__(self) -> str:
        return f"KeyMap({self.name!r})"

    def matches(self, keys: Sequence[str], shapes: Optional[Mapping[str, Shape]] = None) -> bool:
        """True if every signature regex matches some key, no forbidden one does, and (given
        ``shapes``, normalised key -> shape) the rank condition holds."""
        if not (all(any(p.fullmatch(k) for k in keys) for p in self.signature)
                and not any(p.fullmatch(k) for p in self.forbidden for k in keys)):
            return False
        if self.rank is not None and shapes is not None:
            pattern, ndim = self.rank
            return all(len(shapes[k]) == ndim for k in keys if pattern.fullmatch(k))
        return True

    def map_key(self, key: str) -> Tuple[Optional[str], Optional[str], str]:
        """``(new_key or None, transform, drop_reason)`` for one normalised key."""
        for rule in self.rules:
            m = rule.match(key)
            if m is not None:
                if rule.replacement is None:
                    return None, None, rule.reason
                return m.expand(rule.replacement), rule.transform, ""
        return key, None, ""

    def _convert(self, items: Mapping[str, object], is_shape: bool, downstream: bool = True) -> ConvertedState:
        kept, skipped = prepare_keys(items.keys(), downstream)
        out = ConvertedState(self.name, skipped=list(skipped))
        for key, orig in kept.items():
            new, transform, reason = self.map_key(key)
            if new is None:
                out.skipped.append((orig, reason))
                continue
            if new in out.tensors:
                raise ValueError(f"checkpoint keys '{out.origin[new]}' and '{orig}' both map to '{new}'")
            value = items[orig]
            out.tensors[new] = (_transform_shape(tuple(value), transform) if is_shape  # type: ignore[arg-type]
                                else _transform_array(value, transform))  # type: ignore[arg-type]
            out.origin[new] = orig
        return out

    def convert(self, state: Mapping[str, np.ndarray], downstream: bool = True) -> ConvertedState:
        """Map a source state dict (numpy arrays) to Paddle names and layouts (no weight copies
        except the transposed Linear weights). ``downstream=False`` keeps ``backbone.*`` keys and the
        rest as they are (for a whole downstream model, not a bare backbone)."""
        return self._convert(state, is_shape=False, downstream=downstream)

    def convert_shapes(self, shapes: Mapping[str, Sequence[int]]) -> ConvertedState:
        """Map a ``{key: shape}`` manifest; ``tensors`` then holds shapes (tuples)."""
        return self._convert(shapes, is_shape=True)


# Rules every PyTorch checkpoint needs: BN statistics renamed, the BN step counter dropped.
TORCH_BN_RULES = [
    Rule(r".*\.num_batches_tracked", None, reason="BatchNorm step counter (Paddle has none)"),
    Rule(r"(.*)\.running_mean", r"\1._mean"),
    Rule(r"(.*)\.running_var", r"\1._variance"),
]
TORCH_BN_KEY = r".*\.running_(mean|var)"

KEYMAPS: Dict[str, KeyMap] = collections.OrderedDict()


def register_keymap(km: KeyMap) -> KeyMap:
    """Add a key map (families register theirs in their own module); the name must be new."""
    if km.name in KEYMAPS and KEYMAPS[km.name] is not km:
        raise ValueError(f"key map '{km.name}' is already registered")
    KEYMAPS[km.name] = km
    return km


register_keymap(KeyMap(
    "torch_generic", "any PyTorch model whose module tree matches the Paddle one (RefConv layers and "
                     "refocused models included): BN renamed, 2-D Linear weights transposed",
    TORCH_BN_RULES + [Rule(r"(.*\.)?weight", transform="linear")],
    signature=[], forbidden=[r".*\._mean"]))
register_keymap(KeyMap(
    "paddle", "Paddle state dict already in paddle_lk layout (e.g. a converted .pdparams)", [],
    signature=[], forbidden=[TORCH_BN_KEY], layout="paddle"))


def get_keymap(name: str) -> KeyMap:
    """The key map registered as ``name``; a KeyError lists the known ones."""
    if name not in KEYMAPS:
        raise KeyError(f"unknown key map '{name}' (known: {', '.join(KEYMAPS)})")
    return KEYMAPS[name]


def guess_keymap(shapes: Mapping[str, Sequence[int]], paddle_layout: bool = False) -> KeyMap:
    """The key map for a source ``{key: shape}``: the first family map of the source's layout whose
    signature matches, else the generic Torch map (or the identity ``paddle`` map for a Paddle file)."""
    kept, _ = prepare_keys(shapes.keys())
    names = list(kept)
    norm_shapes = {k: tuple(shapes[orig]) for k, orig in kept.items()}
    layout = "paddle" if paddle_layout else "torch"
    for km in KEYMAPS.values():
        if km.signature and km.layout == layout and km.matches(names, norm_shapes):
            return km
    return KEYMAPS["paddle" if paddle_layout else "torch_generic"]


GENERIC_KEYMAPS = ("torch_generic", "paddle")
