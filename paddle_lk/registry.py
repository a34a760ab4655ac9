"""Model registry: ``list_models``, ``create_model`` and the ``pretrained`` loading hook."""
from __future__ import annotations

import difflib
import fnmatch
import os
from typing import Callable, Dict, List, Optional, Union

import paddle.nn as nn

__all__ = ["register_model", "list_models", "create_model", "load_pretrained", "PretrainedSpec"]

_MODEL_ENTRYPOINTS: Dict[str, Callable[..., nn.Layer]] = {}
PretrainedSpec = Union[bool, str, None]


def register_model(fn: Callable[..., nn.Layer]) -> Callable[..., nn.Layer]:
    """Decorator: register a constructor under its function name."""
    _MODEL_ENTRYPOINTS[fn.__name__] = fn
    return fn


def list_models(pattern: Optional[str] = None) -> List[str]:
    """Registered model names, optionally filtered by a shell-style pattern (case-insensitive)."""
    names = sorted(_MODEL_ENTRYPOINTS)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n.lower(), pattern.lower())]
    return names


def model_entrypoint(name: str) -> Callable[..., nn.Layer]:
    """The constructor registered as ``name``; a KeyError suggests the closest names."""
    if name not in _MODEL_ENTRYPOINTS:
        close = difflib.get_close_matches(name, list(_MODEL_ENTRYPOINTS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown model '{name}'{hint} (see paddle_lk.list_models())")
    return _MODEL_ENTRYPOINTS[name]


def create_model(name: str, pretrained: PretrainedSpec = None, **kwargs) -> nn.Layer:
    """Build a registered model; ``pretrained`` is False/None, True (hosted weights) or a path
    to ``.pdparams`` or an official PyTorch ``.pth``. ``class_num`` is accepted for ``num_classes``.

    ``drop_head=True`` loads everything but a classifier whose class count differs from the
    model's (fine-tuning on a new label set); without it such a mismatch is an error.
    """
    return model_entrypoint(name)(pretrained=pretrained or False, **kwargs)


def resolve_num_classes(num_classes: Optional[int], class_num: Optional[int]) -> Optional[int]:
    """PaddleClas spells it ``class_num``; both are accepted, conflicting values are an error."""
    if class_num is not None and num_classes is not None and class_num != num_classes:
        raise ValueError(f"class_num={class_num} and num_classes={num_classes} disagree")
    return class_num if class_num is not None else num_classes


def load_pretrained(model: nn.Layer, pretrained: PretrainedSpec, model_name: str,
                    url: Optional[str] = None, drop_head: bool = False) -> None:
    """PaddleClas-style ``pretrained`` handling: False -> nothing, True -> ``url``, str -> path.

    ``.pdparams`` and official ``.pth``/``.pth.tar``/``.pt`` files, in paddle_lk, PaddleClas or
    PyTorch key layout, all go through :func:`paddle_lk.convert.load_weights` (torch-free, no
    pickled code runs). ``drop_head`` keeps the model's classifier when the class counts differ.
    """
    if not pretrained:
        return
    if pretrained is True:
        if not url:
            raise ValueError(
                f"{model_name}: no hosted Paddle weights; convert an official checkpoint with "
                f"'python tools/convert_torch.py --src X.pth --dst X.pdparams' and pass pretrained='X.pdparams'")
        from paddle.utils.download import get_weights_path_from_url

        pretrained = get_weights_path_from_url(url)
    path = os.fspath(pretrained)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{model_name}: pretrained weights '{path}' not found")
    from .convert import load_weights

    load_weights(model, path, drop_head=drop_head)
