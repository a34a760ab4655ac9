"""PaddleClas: paddle_lk models in PaddleClas's arch namespace, so ``build_model`` builds
``Arch: {name: RepLKNet31B, class_num: 1000}``.

PaddleClas's ``build_model`` looks the class up with ``getattr(ppcls.arch, name)`` and
``RecModel`` with ``eval`` in the same module, so registering means setting module attributes on
``paddleclas.ppcls.arch`` (pip) and ``ppcls.arch`` (a PaddleClas checkout), plus their
``backbone`` subpackages. PaddleClas's own names (e.g. its ``VAN_B0``) are never replaced.
"""
from __future__ import annotations

import functools
import importlib
import os
from typing import Callable, Dict, List

import paddle.nn as nn

from ..registry import list_models, model_entrypoint
from . import compat

__all__ = ["register", "registered_modules", "ARCH_MODULES"]

ARCH_MODULES = ("paddleclas.ppcls.arch", "ppcls.arch")
_MARK = "_paddle_lk_entry"


def _ppcls_constructor(name: str) -> Callable[..., nn.Layer]:
    fn = model_entrypoint(name)

    @functools.wraps(fn)
    def build(pretrained=False, use_ssld=False, class_num=1000, **kwargs) -> nn.Layer:
        """PaddleClas-style constructor: ``class_num``, ``pretrained`` (bool or path, '.pdparams'
        optional as in PaddleClas); ``use_ssld`` has no SSLD weights here and must stay False."""
        if use_ssld:
            raise ValueError(f"{name}: no SSLD weights exist; set use_ssld: False")
        if isinstance(pretrained, str) and not os.path.isfile(pretrained) \
                and os.path.isfile(pretrained + ".pdparams"):
            pretrained += ".pdparams"
        return fn(pretrained=pretrained, class_num=class_num, **kwargs)

    setattr(build, _MARK, True)
    return build


def _register_into(module_name: str) -> List[str]:
    try:
        arch = importlib.import_module(module_name)
    except ImportError:
        return []
    targets = [arch]
    backbone = getattr(arch, "backbone", None)
    if backbone is not None:
        targets.append(backbone)
    added = []
    for name in list_models():
        existing = getattr(arch, name, None)
        if existing is not None and not getattr(existing, _MARK, False):
            continue  # PaddleClas's own model of that name wins
        ctor = existing if existing is not None else _ppcls_constructor(name)
        for mod in targets:
            setattr(mod, name, ctor)
        added.append(name)
    return added


_REGISTERED: Dict[str, List[str]] = {}


def register() -> Dict[str, List[str]]:
    """Register every paddle_lk model into each importable PaddleClas arch module and install the
    PaddleClas workarounds of :mod:`.compat` (idempotent).

    Returns ``{module: [names]}`` for the modules that were found.
    """
    for module_name in ARCH_MODULES:
        names = _register_into(module_name)
        if names:
            _REGISTERED[module_name] = names
    compat.install("paddleclas")  # PaddleClas's deploy predictor on Paddle 3.3 (a no-op without the wheel)
    return dict(_REGISTERED)


def registered_modules() -> List[str]:
    """PaddleClas arch modules that hold paddle_lk models."""
    return sorted(_REGISTERED)


register()  # on import, as the toolkit's own components register
