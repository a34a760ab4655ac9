"""The exception hierarchy: every error paddle_lk raises on purpose derives from :class:`PaddleLKError`.

The specific errors also derive from the builtin a caller would catch without knowing paddle_lk
(``ValueError`` for bad input, ``RuntimeError`` for environment problems), so ``except ValueError``
keeps working while ``except paddle_lk.PaddleLKError`` catches everything of ours.
"""
from __future__ import annotations

__all__ = ["PaddleLKError", "ConfigError", "DataError", "CheckpointError", "UnsafeCheckpointError",
           "WeightMismatchError", "DetectionError", "OpBuildError", "ExportError", "ExportVerificationError", "closest"]


class PaddleLKError(Exception):
    """Base class of paddle_lk's own errors."""


class ConfigError(PaddleLKError, ValueError):
    """A config problem: the message names the key path (e.g. ``Optimizer.lr.learning_rate``)."""


class DataError(PaddleLKError, ValueError):
    """A data problem: the message names the file (and line) at fault."""


class CheckpointError(PaddleLKError, ValueError):
    """A checkpoint file cannot be read (corrupt, truncated, unsupported format)."""


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint's pickle references code that the safe reader refuses to run."""


class WeightMismatchError(PaddleLKError, ValueError):
    """Checkpoint and model disagree: missing keys, shape mismatches, wrong family or variant."""


class DetectionError(PaddleLKError, ValueError):
    """Checkpoint keys do not describe an architecture paddle_lk can build."""


class OpBuildError(PaddleLKError, RuntimeError):
    """The custom op cannot be built or loaded here; the message says why."""


class ExportError(PaddleLKError, RuntimeError):
    """The model cannot be exported: it does not trace to a static program with this Paddle/toolkit."""


class ExportVerificationError(ExportError):
    """An exported model's output differs from the dygraph model's."""


def closest(name: str, choices, n: int = 3):
    """The choices closest to ``name``, best first: case-insensitive equal ones, then case-insensitive
    prefixes, then ``difflib`` similarity (so ``RepLKNet31b`` suggests ``RepLKNet31B`` first and
    ``to_static`` suggests nothing unrelated before a real match)."""
    import difflib

    choices = [str(c) for c in choices]
    low = name.lower()
    exact = [c for c in choices if c.lower() == low]
    prefix = [c for c in choices if c not in exact and c.lower().startswith(low)
              and len(name) >= 3]
    lowered = {c.lower(): c for c in choices}
    fuzzy = [lowered[c] for c in difflib.get_close_matches(low, list(lowered), n=n, cutoff=0.6)]
    out = []
    for c in exact + prefix + fuzzy:
        if c not in out:
            out.append(c)
    return out[:n]
