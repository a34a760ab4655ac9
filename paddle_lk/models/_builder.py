"""The one model builder: ``create_model`` and what every registered constructor calls.

Like timm's ``_builder.build_model_with_cfg``: a constructor names its variant, the builder merges the
variant's table entry (:class:`paddle_lk.registry.ModelCfg`) with the caller's keyword arguments,
builds the family's model and loads ``pretrained`` through the one loader
(:func:`paddle_lk.checkpoint.load_checkpoint`).
"""
from __future__ import annotations

import inspect
import logging
import os
import warnings
from typing import Any, Dict, List, Optional

import paddle.nn as nn

from ..checkpoint import load_checkpoint
from ..registry import PretrainedSpec, get_family, model_cfg, model_entrypoint
from ._base import resolve_num_classes

__all__ = ["create_model", "build_model_with_cfg", "load_pretrained", "constructor_params"]

logger = logging.getLogger("paddle_lk")


def create_model(name: str, pretrained: PretrainedSpec = None, **kwargs: Any) -> nn.Layer:
    """Build a registered model.

    Args:
        name: a registered name (``paddle_lk.list_models()``), e.g. ``RepLKNet31B``, ``VAN_b2``.
        pretrained: False/None, True (hosted Paddle weights, where they exist), or a path to weights in any
            format :func:`paddle_lk.load_checkpoint` reads (``.pdparams``, ``.pdckpt``, training output
            folder, official ``.pth``). A classifier of another class count is dropped, with a log line.
        **kwargs: constructor arguments: ``num_classes`` (or PaddleClas's ``class_num``; 0 = pooled
            features), ``in_chans``, ``out_indices`` (features mode), ``drop_path_rate``, ...

    Raises:
        KeyError: unknown name (with the closest registered names).
    """
    return model_entrypoint(name)(pretrained=pretrained or False, **kwargs)


def build_model_with_cfg(variant: str, pretrained: PretrainedSpec = False, num_classes: Optional[int] = None,
                         class_num: Optional[int] = None, **kwargs: Any) -> nn.Layer:
    """Build ``variant`` from its table entry: its ``arch`` arguments, overridden by ``kwargs``.

    ``num_classes``/``class_num`` default to the entry's class count; in features mode
    (``out_indices`` given) no classifier is built. ``in_chans`` is accepted by every family (mapped
    to the family's own argument name). ``drop_head`` (from older releases) is accepted and ignored:
    a classifier of another size is always dropped.
    """
    cfg = model_cfg(variant)
    family = get_family(cfg.family)
    if kwargs.pop("drop_head", None) is not None:
        warnings.warn("drop_head is no longer needed: a classifier whose shape differs from the model's is "
                      "always dropped (with a log line)", DeprecationWarning, stacklevel=3)
    if "in_chans" in kwargs and family.in_chans_arg != "in_chans":
        kwargs[family.in_chans_arg] = kwargs.pop("in_chans")
    args: Dict[str, Any] = dict(cfg.arch)
    args.update(kwargs)
    args["num_classes"] = resolve_num_classes(num_classes, class_num, default=cfg.num_classes)
    assert family.model_cls is not None
    model = family.model_cls(**args)
    model.default_cfg = cfg
    model.variant_name = variant
    load_pretrained(model, pretrained, variant)
    return model


def load_pretrained(model: nn.Layer, pretrained: PretrainedSpec, variant: str) -> None:
    """PaddleClas-style ``pretrained``: False/None -> nothing, True -> the hosted Paddle weights of
    ``variant`` (downloaded once), a path -> :func:`paddle_lk.load_checkpoint` (a missing
    ``.pdparams`` suffix is added, as PaddleClas does).

    Raises:
        ValueError: ``True`` for a variant without hosted weights (the message says how to convert
        the official release); FileNotFoundError: a path that does not exist.
    """
    if not pretrained:
        return
    if pretrained is True:
        url = model_cfg(variant).paddle_url
        if not url:
            files = ", ".join(c.file for c in model_cfg(variant).checkpoints) or "none published"
            raise ValueError(
                f"{variant}: no hosted Paddle weights; convert an official checkpoint ({files}) with "
                f"'python tools/convert_torch.py --src X.pth --dst X.pdparams' and pass pretrained='X.pdparams'")
        from paddle.utils.download import get_weights_path_from_url

        pretrained = get_weights_path_from_url(url)
    path = os.fspath(pretrained)
    report = load_checkpoint(model, path)
    logger.info(f"{variant}: {report}")


def constructor_params(name: str) -> List[str]:
    """Keyword arguments a registered model accepts: its constructor's and its family class's."""
    params = [p for p in inspect.signature(model_entrypoint(name)).parameters if p not in ("kwargs", "pretrained")]
    model_cls = get_family(model_cfg(name).family).model_cls
    params += [p for p in inspect.signature(model_cls.__init__).parameters if p not in ("self", "kwargs")]
    return sorted(set(params) | {"in_chans"})
