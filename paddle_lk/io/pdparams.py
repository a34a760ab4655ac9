"""Writing ``.pdparams`` files that ``paddle.load`` reads, with one copy of the weights in memory."""
from __future__ import annotations

import pickle
from typing import Any, Mapping

import paddle

from .atomic import atomic_path

__all__ = ["save_pdparams", "write_pdparams"]


class _PdparamsPickler(pickle.Pickler):
    """Pickles Paddle tensors as numpy arrays one at a time (what ``paddle.load`` expects)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, paddle.Tensor):
            return obj.numpy().__reduce_ex__(4)
        return NotImplemented


def write_pdparams(state: Mapping[str, Any], path: str) -> None:
    """Write ``{name: ndarray | Tensor}`` to ``path`` (not atomic: see :func:`save_pdparams`)."""
    with open(path, "wb") as f:
        pickler = _PdparamsPickler(f, protocol=4)
        pickler.fast = True  # no memo: each array's bytes are freed once written (no shared objects here)
        pickler.dump(dict(state))


def save_pdparams(state: Mapping[str, Any], path: str) -> None:
    """Write ``{name: ndarray | Tensor}`` as a ``.pdparams`` that ``paddle.load`` reads, atomically.

    Same pickle as ``paddle.save`` writes for a dict of arrays, but without the pickle memo:
    ``paddle.save`` memoizes every array's byte copy until the end, doubling peak memory.
    """
    with atomic_path(path) as tmp:
        write_pdparams(state, tmp)
