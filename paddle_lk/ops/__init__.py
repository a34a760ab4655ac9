"""Large-kernel depthwise conv dispatcher: the custom op when built and applicable, else F.conv2d.

The path is chosen by ``PADDLE_LK_OP=auto|custom|native`` (default ``auto``) or, in code, by
:func:`set_op_path` / the :func:`op_path` context manager (used by export to force the native conv).
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional

import paddle
import paddle.nn.functional as F

__all__ = ["depthwise_conv2d", "get_op_path", "set_op_path", "op_path"]

_VALID_PATHS = ("auto", "custom", "native")
_path_override: Optional[str] = None


def get_op_path() -> str:
    """Current dispatch mode: the in-code override, else ``$PADDLE_LK_OP``, else ``auto``."""
    mode = _path_override or os.environ.get("PADDLE_LK_OP", "auto").strip().lower() or "auto"
    if mode not in _VALID_PATHS:
        raise ValueError(f"PADDLE_LK_OP={mode!r}: expected one of {', '.join(_VALID_PATHS)}")
    return mode


def set_op_path(mode: Optional[str]) -> None:
    """Force ``auto``/``custom``/``native`` for this process; ``None`` returns to ``$PADDLE_LK_OP``."""
    global _path_override
    if mode is not None and mode not in _VALID_PATHS:
        raise ValueError(f"op path {mode!r}: expected one of {', '.join(_VALID_PATHS)}")
    _path_override = mode


@contextlib.contextmanager
def op_path(mode: str) -> Iterator[None]:
    """Context manager form of :func:`set_op_path`."""
    global _path_override
    previous = _path_override
    set_op_path(mode)
    try:
        yield
    finally:
        _path_override = previous


def depthwise_conv2d(x: paddle.Tensor, weight: paddle.Tensor, bias: Optional[paddle.Tensor] = None,
                     stride=1, padding=0, dilation=1) -> paddle.Tensor:
    """Depthwise conv2d (``groups == channels``), NCHW."""
    return F.conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation,
                    groups=weight.shape[0])
