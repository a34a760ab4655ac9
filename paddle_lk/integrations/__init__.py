"""Toolkit integrations: PaddleClas, PaddleSeg and PaddleDetection.

Importing this package registers paddle_lk's models into every toolkit that is importable
(PaddleClas's arch namespace, PaddleSeg's ``manager.BACKBONES``, PaddleDetection's workspace);
registering again is a no-op. ``import paddle_lk`` alone never imports the toolkits (slow).
"""
from __future__ import annotations

import importlib
from typing import Dict, List

__all__ = ["register_all", "REGISTERED"]

REGISTERED: Dict[str, List[str]] = {}


def _available(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def register_all() -> Dict[str, List[str]]:
    """Register into each importable toolkit; returns ``{toolkit: [names]}`` (idempotent)."""
    from . import ppcls

    for module, names in ppcls.register().items():
        REGISTERED[f"ppcls:{module}"] = names
    if _available("paddleseg"):
        from . import seg

        REGISTERED["paddleseg"] = seg.register()
    if _available("ppdet"):
        from . import det

        REGISTERED["ppdet"] = det.register()
    return dict(REGISTERED)


register_all()
