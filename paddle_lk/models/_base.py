"""The model contract every paddle_lk family follows (timm / PaddleClas conventions).

A family's model subclasses :class:`LKNetBase` and sets, in ``__init__``:

* ``num_stages``, ``stage_channels`` (per stage), ``stage_strides`` (default 4, 8, 16, 32) and
  ``stage_modules`` (per stage, the module whose output is the feature map, for ``feature_info``);
* ``out_indices`` through :func:`normalize_out_indices` (features mode when not None);
* ``num_classes`` (0 = pooled features) and ``num_features`` (channels of the pooled features);
* ``grad_checkpointing`` (:meth:`set_grad_checkpointing`).

and implements ``forward_features`` (stages; in features mode the list of maps), ``forward_head``
(pooling, final norm, classifier; ``pre_logits`` stops before the classifier), ``_make_head`` and
``group_matcher``. The base supplies ``forward``, ``feature_info``, ``feat_channels``,
``get_classifier``, ``reset_classifier``, ``no_weight_decay`` and ``set_grad_checkpointing``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Set, Tuple, Union

import paddle
import paddle.nn as nn

__all__ = ["LKNetBase", "normalize_out_indices", "resolve_num_classes", "classifier_classes", "DEFAULT_STRIDES"]

DEFAULT_STRIDES = (4, 8, 16, 32)


def normalize_out_indices(out_indices: Optional[Union[int, Sequence[int]]], num_stages: int
                          ) -> Optional[Tuple[int, ...]]:
    """``out_indices`` as a sorted tuple of stage indices, or None (classification).

    Negative indices count from the last stage (``-1`` = last). The maps are always returned in
    stage order (shallow to deep), so ``feat_channels``, ``feature_info`` and the toolkits' shape
    specs describe exactly what ``forward`` returns.

    Raises:
        ValueError: an index out of range, a repeated stage, an empty list or a non-int.
    """
    if out_indices is None:
        return None
    items = [out_indices] if isinstance(out_indices, int) else list(out_indices)
    if not items:
        raise ValueError("out_indices: empty; give the stages to return (e.g. (0, 1, 2, 3)) or None")
    normalized = []
    for i in items:
        if isinstance(i, bool) or not isinstance(i, int):
            raise ValueError(f"out_indices {items}: {i!r} is not a stage index (int)")
        if not -num_stages <= i < num_stages:
            raise ValueError(f"out_indices {items}: {i} is out of range for {num_stages} stages "
                             f"(0..{num_stages - 1}, or negative from the end)")
        normalized.append(i % num_stages)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"out_indices {items}: a stage is listed twice")
    return tuple(sorted(normalized))


def resolve_num_classes(num_classes: Optional[int], class_num: Optional[int], default: int = 1000) -> int:
    """PaddleClas spells it ``class_num``; both are accepted, conflicting values are an error.

    ``None`` for both gives ``default``; 0 means no classifier (pooled features).
    """
    if class_num is not None and num_classes is not None and class_num != num_classes:
        raise ValueError(f"class_num={class_num} and num_classes={num_classes} disagree")
    value = class_num if class_num is not None else num_classes
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"num_classes={value!r}: expected an int >= 0 (0 = pooled features, no classifier)")
    return value


def classifier_classes(num_classes: Optional[int], out_indices: Optional[Tuple[int, ...]]) -> int:
    """The class count a model builds its classifier for: 0 in features mode (no classifier); else
    ``num_classes``, which must be an int >= 0 (0 = pooled features).

    Raises:
        ValueError: ``num_classes`` None or negative outside features mode.
    """
    if out_indices is not None:
        return 0
    if num_classes is None or isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes={num_classes!r}: give the number of classes, 0 for pooled features, "
                         f"or out_indices for feature maps")
    return num_classes


class LKNetBase(nn.Layer):
    """Shared part of the model contract; see the module docstring for what a family provides."""

    num_stages: int = 4
    stage_channels: List[int]
    stage_strides: Sequence[int] = DEFAULT_STRIDES
    stage_modules: List[str]
    out_indices: Optional[Tuple[int, ...]] = None
    num_classes: int = 0
    num_features: int = 0
    grad_checkpointing: bool = False

    # ------------------------------------------------------------------ to implement
    def forward_features(self, x: paddle.Tensor) -> Union[paddle.Tensor, List[paddle.Tensor]]:
        raise NotImplementedError

    def forward_head(self, x: paddle.Tensor, pre_logits: bool = False) -> paddle.Tensor:
        raise NotImplementedError

    def _make_head(self, num_classes: int) -> nn.Layer:
        """The classifier for ``num_classes`` (``nn.Identity`` for 0)."""
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        """Parameter groups for layer-wise lr decay (timm's format, read by the training engine).

        ``{"stem": regex, "blocks": [(regex, suffix) ...], "stage_base": 0}``: a parameter matching
        ``stem`` is layer 0; for the first ``blocks`` regex that matches, its integer groups followed by
        ``suffix`` (a tuple, or None) give ``(stage, block)``: block ``-1`` means the first group of that
        stage (a downsampling layer that starts it), ``99999`` its last group (a layer that ends it);
        ``stage_base`` is the number of the first stage in parameter names (VAN counts from 1).
        Anything unmatched (final norm, head) is on top. ``coarse=True`` groups by stage only.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ provided
    def forward(self, x: paddle.Tensor) -> Union[paddle.Tensor, List[paddle.Tensor]]:
        """Logits ``[N, num_classes]`` (pooled features ``[N, num_features]`` when ``num_classes=0``);
        in features mode the list of NCHW maps of ``out_indices``, in stage order."""
        feats = self.forward_features(x)
        return feats if self.out_indices is not None else self.forward_head(feats)

    @property
    def feature_info(self) -> List[Dict[str, Any]]:
        """Per returned map (all stages in classification mode): ``num_chs``, ``reduction`` (stride
        w.r.t. the input) and ``module`` (the sub-layer whose output it is), as in timm."""
        stages = self.out_indices if self.out_indices is not None else range(self.num_stages)
        return [dict(num_chs=self.stage_channels[i], reduction=self.stage_strides[i], module=self.stage_modules[i],
                     stage=i) for i in stages]

    @property
    def feat_channels(self) -> List[int]:
        """Channels of the maps ``forward`` returns in features mode (all stages otherwise)."""
        return [info["num_chs"] for info in self.feature_info]

    def get_classifier(self) -> nn.Layer:
        """The classifier layer (``head``)."""
        return self.head

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a new one for ``num_classes`` (0: pooled features)."""
        if self.out_indices is not None:
            raise ValueError("reset_classifier: the model is in features mode (out_indices set), it has no head")
        self.num_classes = resolve_num_classes(num_classes, None)
        self.head = self._make_head(self.num_classes)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in backward instead of storing its activations (less memory,
        ~30 % more compute); the model's outputs, gradients and BN statistics are unchanged."""
        self.grad_checkpointing = bool(enable)

    def no_weight_decay(self) -> Set[str]:
        """Names of the parameters trained without weight decay: norms, biases, layer scales and every
        other parameter of one dimension (the official recipes' rule)."""
        return {name for name, p in self.named_parameters()
                if not p.stop_gradient and (len(p.shape) <= 1 or name.endswith(".bias"))}
