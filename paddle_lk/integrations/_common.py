"""What the PaddleSeg and PaddleDetection integrations share: the multi-scale backbone wrapper."""
from __future__ import annotations

from typing import Any, List, Optional, Sequence

import inspect

import paddle
import paddle.nn as nn

from ..models import LKNetBase, constructor_params, create_model
from ..registry import PretrainedSpec, get_family, list_models, model_cfg

__all__ = ["BACKBONE_NAMES", "LKBackbone", "backbone_names", "backbone_params"]


def backbone_names() -> List[str]:
    """Registered variants usable as multi-scale backbones (every family whose model has features mode)."""
    return [n for n in list_models() if issubclass(get_family(model_cfg(n).family).model_cls or object, LKNetBase)]


# The backbones exported to PaddleSeg and PaddleDetection.
BACKBONE_NAMES: List[str] = backbone_names()


def backbone_params(arch: str) -> List[str]:
    """The config keys a backbone section takes: the wrapper's (``out_indices``, ``pretrained``,
    ``in_channels``) and the model constructor's (``channels``, ``drop_path_rate`` ...)."""
    own = [p for p in inspect.signature(LKBackbone.__init__).parameters if p not in ("self", "kwargs", "arch")]
    return own + [p for p in constructor_params(arch) if p not in own + ["num_classes", "class_num", "in_chans"]]


class LKBackbone(nn.Layer):
    """A paddle_lk model in feature mode, shaped like a toolkit backbone.

    ``forward(x)`` returns the feature maps of ``out_indices`` (NCHW, strides 4/8/16/32), always in stage
    order: ``out_indices`` is normalised (sorted) once, so ``out_indices``, ``feat_channels``,
    ``feat_strides`` and the toolkits' shape specs describe exactly what is returned. ``pretrained`` is a path to ``.pdparams`` saved from a
    paddle_lk model or an official ``.pth`` (both through :mod:`paddle_lk.convert`), or True for the
    hosted weights. The wrapped model is ``self.model``, so its keys are the paddle_lk keys prefixed
    with ``model.``.
    """

    arch: str = ""

    def __init__(self, out_indices: Sequence[int] = (0, 1, 2, 3), pretrained: PretrainedSpec = None,
                 in_channels: int = 3, arch: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__()
        arch = arch or self.arch
        if arch not in BACKBONE_NAMES:
            raise ValueError(f"unknown backbone '{arch}'; choose one of {BACKBONE_NAMES}")
        if isinstance(pretrained, str) and not pretrained:
            pretrained = None
        # Toolkits (PaddleSeg's builder) pass in_channels; every paddle_lk constructor takes in_chans.
        kwargs["in_chans"] = in_channels
        self.arch = arch
        self.model = create_model(arch, pretrained=pretrained, out_indices=out_indices, **kwargs)
        self.out_indices = tuple(self.model.out_indices)
        self.feat_channels: List[int] = list(self.model.feat_channels)
        self.feat_strides: List[int] = [info["reduction"] for info in self.model.feature_info]

    def forward(self, x: paddle.Tensor) -> List[paddle.Tensor]:
        return self.model(x)
