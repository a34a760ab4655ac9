"""Toolkit integrations: PaddleClas, PaddleSeg and PaddleDetection.

Importing a toolkit's module registers paddle_lk's models into that toolkit, as PaddleSeg's and
PaddleDetection's own components register on import::

    import paddle_lk.integrations.ppcls  # PaddleClas arch namespace: RepLKNet31B, VAN_b2, ...
    import paddle_lk.integrations.seg    # PaddleSeg manager.BACKBONES (+ its compat fixes)
    import paddle_lk.integrations.det    # PaddleDetection workspace (+ its compat fixes)

:func:`register_all` registers into every toolkit that is installed. Registering again is a no-op.
Importing this package alone imports no toolkit (they are slow to import); ``tools/*.py`` register the
toolkit a config needs.
"""
from __future__ import annotations

import importlib.util
from typing import Dict, List

__all__ = ["register_all", "REGISTERED"]

REGISTERED: Dict[str, List[str]] = {}


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def register_all() -> Dict[str, List[str]]:
    """Register into each installed toolkit; returns ``{toolkit: [names]}`` (idempotent)."""
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
