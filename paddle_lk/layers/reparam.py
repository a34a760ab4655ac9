"""One structural re-parameterization protocol for every family.

A re-parameterizable layer subclasses :class:`Reparameterizable` and implements
``reparameterize()``: it converts itself to its deploy form and returns the layer to use from
then on -- itself (converted in place) or an equivalent plain layer (e.g. RefConv -> Conv2D)
that :func:`reparameterize` installs in the parent. Layers that can fold BatchNorm statistics
expose ``fuse_bn()`` (in place), used when ``fuse_bn=True``.
"""
from __future__ import annotations

import paddle.nn as nn

from .conv_bn import conv2d_with_params, fuse_conv_bn, is_bn

__all__ = ["Reparameterizable", "reparameterize"]


class Reparameterizable:
    """Mixin marking a layer with a train-time form and an equivalent deploy form."""

    def reparameterize(self) -> nn.Layer:  # pragma: no cover - interface
        """Switch to the deploy form; return the layer to use in place of ``self``."""
        raise NotImplementedError


def _fuse_sequential_conv_bn(layer: nn.Layer) -> None:
    """Fold Conv2D -> BatchNorm pairs that follow each other inside an ``nn.Sequential``.

    This is what makes ``fuse_bn=True`` useful on arbitrary Paddle models (e.g. MobileNetV2's
    ConvBNReLU blocks), whose forward order is only known for sequential containers.
    """
    if not isinstance(layer, nn.Sequential):
        return
    names = list(layer._sub_layers.keys())
    for first, second in zip(names, names[1:]):
        conv, bn = layer._sub_layers[first], layer._sub_layers[second]
        if isinstance(conv, nn.Conv2D) and is_bn(bn) and conv._out_channels == bn._mean.shape[0]:
            w, b = fuse_conv_bn(conv.weight, conv.bias, bn)
            layer._sub_layers[first] = conv2d_with_params(conv, w, b)
            layer._sub_layers[second] = nn.Identity()


def _convert(layer: nn.Layer, fuse_bn: bool) -> nn.Layer:
    # Children first, so a parent's fuse_bn() sees its children in deploy form.
    for name, child in list(layer._sub_layers.items()):
        if child is None:
            continue
        new_child = _convert(child, fuse_bn)
        if new_child is not child:
            layer._sub_layers[name] = new_child
    result = layer
    if isinstance(layer, Reparameterizable):
        result = layer.reparameterize() or layer
    if fuse_bn:
        if hasattr(result, "fuse_bn") and callable(result.fuse_bn):
            result.fuse_bn()
        _fuse_sequential_conv_bn(result)
    return result


def reparameterize(model: nn.Layer, fuse_bn: bool = False) -> nn.Layer:
    """Convert every re-parameterizable layer of ``model`` to its deploy form.

    RepLKNet's large + small kernel branches with their BNs become one biased large kernel,
    RefConv becomes a plain ``nn.Conv2D``; with ``fuse_bn=True`` conv-BN pairs are folded too.
    Works on any Paddle model, is idempotent, keeps ``train()``/``eval()`` usable and returns
    the model (use the return value: a bare re-parameterizable layer is replaced, not mutated).
    Call it on a model in eval mode: folding uses the BN running statistics.
    """
    was_training = model.training
    model.eval()
    result = _convert(model, fuse_bn)
    if was_training:
        result.train()
    return result
