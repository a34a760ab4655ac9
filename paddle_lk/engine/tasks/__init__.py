"""The tasks behind ``tools/{train,eval,infer,export}.py``: one :class:`Task` per kind of config.

The toolkit tasks (segmentation, detection) import their toolkit only when used.
"""
from __future__ import annotations

import importlib

from .base import Task

__all__ = ["Task", "get_task", "KINDS"]

# kind -> (module, class); a config's kind comes from :func:`paddle_lk.engine.cli.detect_kind`.
KINDS = {"cls": (".cls", "ClassificationTask"), "seg": (".seg", "SegmentationTask"), "det": (".det", "DetectionTask")}


def get_task(kind: str) -> Task:
    """The task for ``kind`` (``cls``, ``seg`` or ``det``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown task kind '{kind}'; one of {sorted(KINDS)}")
    module, name = KINDS[kind]
    return getattr(importlib.import_module(module, __name__), name)()
