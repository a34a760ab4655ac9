"""Training checkpoints: one self-contained file per checkpoint, written atomically.

A checkpoint (``*.pdckpt``) holds ``model``, ``optimizer`` (with its LR scheduler), ``scheduler``,
``ema``, ``scaler`` and ``meta`` (epoch and batch to continue from, update count, best metric, the
config). RNG state needs no storage: every step reseeds from (seed, epoch, batch) (see
:mod:`paddle_lk.engine.trainer`). ``output_dir`` layout::

    epoch_<n>.pdckpt (iter_<n>: iteration-based runs)   latest.pdckpt   best.pdckpt   best_model.pdparams (weights of the best eval)
"""
from __future__ import annotations

import glob
import os
import re
from typing import Any, Dict, Optional

import paddle

from ..checkpoint import BEST, BEST_WEIGHTS, CKPT_EXT, LATEST
from ..io.atomic import atomic_save

__all__ = ["save_checkpoint", "load_checkpoint_file", "resolve_resume", "prune_numbered",
           "CKPT_EXT", "LATEST", "BEST", "BEST_WEIGHTS", "optimizer_state_to_structured",
           "optimizer_state_from_structured"]


def save_checkpoint(state: Dict[str, Any], path: str) -> str:
    """Write ``state`` to ``path`` atomically (a crash mid-write keeps the previous file)."""
    atomic_save(state, path)
    return path


def load_checkpoint_file(path: str) -> Dict[str, Any]:
    """A whole training checkpoint (model, optimizer, scheduler, EMA, meta) for resuming; weights alone
    load through :func:`paddle_lk.load_checkpoint`. A clear error for missing or unreadable files."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint '{path}' not found")
    try:
        state = paddle.load(path)
    except Exception as exc:  # paddle raises assorted types for corrupt files
        raise ValueError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict / checkpoint")
    return state


def resolve_resume(path: Optional[str], output_dir: str) -> Optional[str]:
    """Checkpoint to resume from: ``path`` (file or dir -> its latest), or None when absent."""
    if not path:
        return None
    if os.path.isdir(path):
        candidate = os.path.join(path, LATEST)
        if not os.path.isfile(candidate):
            raise FileNotFoundError(f"{path}: no {LATEST} to resume from")
        return candidate
    if not os.path.isfile(path):
        raise FileNotFoundError(f"resume checkpoint '{path}' not found")
    return path


def prune_numbered(output_dir: str, keep: int) -> None:
    """Delete all but the newest ``keep`` numbered checkpoints, ``epoch_<n>`` (epoch-based runs) or
    ``iter_<n>`` (iteration-based runs) (``keep <= 0`` keeps all)."""
    if keep <= 0:
        return
    for prefix in ("epoch", "iter"):
        found = []
        for path in glob.glob(os.path.join(output_dir, f"{prefix}_*{CKPT_EXT}")):
            m = re.search(rf"{prefix}_(\d+){re.escape(CKPT_EXT)}$", path)
            if m:
                found.append((int(m.group(1)), path))
        for _, path in sorted(found)[:-keep]:
            os.remove(path)


def _rename_keys(state: Dict[str, Any], mapping: Dict[str, str]) -> Dict[str, Any]:
    """Rename ``<old><suffix>`` keys to ``<new><suffix>`` (longest matching ``old`` prefix wins)."""
    olds = sorted(mapping, key=len, reverse=True)
    out: Dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, dict) and key == "master_weights":
            out[key] = _rename_keys(value, mapping)
            continue
        new_key = key
        for old in olds:
            if key == old or key.startswith(old + "_"):
                new_key = mapping[old] + key[len(old):]
                break
        out[new_key] = value
    return out


def optimizer_state_to_structured(opt_state: Dict[str, Any], model: paddle.nn.Layer) -> Dict[str, Any]:
    """Key optimizer accumulators by structured parameter names (``stages.0...weight_moment1_0``).

    Paddle keys them by the parameters' unique names (``conv2d_114.w_0``), which depend on how many
    layers the process built before; structured names make checkpoints portable between processes.
    """
    mapping = {p.name: "@" + n for n, p in model.named_parameters()}
    return _rename_keys(opt_state, mapping)


def optimizer_state_from_structured(opt_state: Dict[str, Any], model: paddle.nn.Layer) -> Dict[str, Any]:
    """Inverse of :func:`optimizer_state_to_structured` for the parameters of ``model``."""
    mapping = {"@" + n: p.name for n, p in model.named_parameters()}
    return _rename_keys(opt_state, mapping)
