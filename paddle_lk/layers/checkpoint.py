"""Activation checkpointing (``paddle.distributed.fleet.utils.recompute``) that leaves the model unchanged.

Recompute runs a block's forward a second time during backward. A training-mode BatchNorm updates its
running statistics on every forward, so a plain ``recompute`` updates them twice per step and the
memory switch changes the model (measured: 33 of 51 BN layers of a tiny RepLKNet differed after one
step). :func:`checkpoint` restores the statistics after the recomputation, so a run with checkpointing
produces the same weights and statistics as one without.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import paddle
import paddle.nn as nn
from paddle.distributed.fleet.utils import recompute

__all__ = ["checkpoint", "uses_checkpoint"]


def _running_stats(layer: nn.Layer) -> List[Tuple[Dict[str, paddle.Tensor], str]]:
    """(owner dict, name) of every non-trainable floating-point state tensor: BN running mean/variance
    and the like (Paddle keeps them in ``_parameters`` with ``stop_gradient``, or in ``_buffers``)."""
    found = []
    for sub in layer.sublayers(include_self=True):
        for table in (sub._parameters, sub._buffers):
            for name, t in table.items():
                if t is not None and t.stop_gradient and paddle.is_floating_point(t):
                    found.append((table, name))
    return found


def uses_checkpoint(enabled: bool, layer: nn.Layer, x: paddle.Tensor) -> bool:
    """Whether to checkpoint ``layer`` on ``x``: enabled, training, and something needs gradients."""
    return enabled and layer.training and paddle.in_dynamic_mode() and not x.stop_gradient


def checkpoint(layer: Callable[[paddle.Tensor], paddle.Tensor], x: paddle.Tensor) -> paddle.Tensor:
    """``layer(x)`` without keeping its activations; recomputed in backward with the same RNG state.

    Args:
        layer: an ``nn.Layer`` (or a callable over layers) mapping one tensor to one tensor.
        x: its input, any shape.

    Returns:
        ``layer(x)``, bit-identical to the plain call; BN running statistics are updated once.
    """
    stats = _running_stats(layer) if isinstance(layer, nn.Layer) else []
    calls = [0]

    def run(inp: paddle.Tensor) -> paddle.Tensor:
        calls[0] += 1
        if calls[0] == 1 or not stats:
            return layer(inp)
        # The recomputation in backward normalises with the same batch statistics; its running-statistics
        # update goes to throwaway copies (not in place: the graph keeps the tensors it read).
        originals = [table[name] for table, name in stats]
        for table, name in stats:
            table[name] = table[name].detach().clone()
        try:
            return layer(inp)
        finally:
            for (table, name), t in zip(stats, originals):
                table[name] = t

    return recompute(run, x)
