"""Exponential moving average of a model's weights (timm ``ModelEmaV2`` semantics, with
PaddleDetection's ``ema_decay_type`` warm-ups)."""
from __future__ import annotations

import math
from typing import Dict, Sequence

import paddle
import paddle.nn as nn

__all__ = ["ModelEMA"]


class ModelEMA:
    """``ema = decay * ema + (1 - decay) * weights`` after every optimizer update.

    Floating-point entries of the state dict (parameters and BN statistics) are averaged, integer
    buffers copied. The average is a plain ``{name: tensor}`` dict, saved in checkpoints as is and
    loaded into a model for evaluation or export with ``set_state_dict``.

    Args:
        decay: the decay once warmed up, in (0, 1).
        warmup: ``"none"``; ``"threshold"``: ``min(decay, (1 + t) / (10 + t))``; ``"exponential"``:
            ``decay * (1 - exp(-(t + 1) / 2000))`` at update ``t`` (PaddleDetection's ``ema_decay_type``).
        skip: state-dict names copied from the model rather than averaged (``ema_black_list``).

    Raises:
        ValueError: ``decay`` outside (0, 1) or an unknown ``warmup``.
    """

    WARMUPS = ("none", "threshold", "exponential")

    def __init__(self, model: nn.Layer, decay: float = 0.9999, warmup: str = "none", skip: Sequence[str] = ()) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA.decay must be in (0, 1), got {decay}")
        if warmup not in self.WARMUPS:
            raise ValueError(f"EMA decay type must be one of {self.WARMUPS}, got '{warmup}'")
        self.decay, self.warmup, self.skip = float(decay), warmup, set(skip)
        self.updates = 0  # updates averaged so far (the training loop restores it on resume)
        with paddle.no_grad():
            self.state: Dict[str, paddle.Tensor] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        """The decay the next update uses."""
        t = self.updates
        if self.warmup == "threshold":
            return min(self.decay, (1 + t) / (10 + t))
        if self.warmup == "exponential":
            return self.decay * (1 - math.exp(-(t + 1) / 2000))
        return self.decay

    @paddle.no_grad()
    def update(self, model: nn.Layer) -> None:
        decay = self.current_decay()
        self.updates += 1
        for name, value in model.state_dict().items():
            avg = self.state[name]
            if paddle.is_floating_point(value) and name not in self.skip:
                avg.scale_(decay)
                avg.add_(value.detach().astype(avg.dtype) * (1.0 - decay))
            else:
                paddle.assign(value.detach(), output=avg)

    def state_dict(self) -> Dict[str, paddle.Tensor]:
        return self.state

    def set_state_dict(self, state: Dict[str, paddle.Tensor]) -> None:
        missing = [k for k in self.state if k not in state]
        if missing:
            raise ValueError(f"EMA state lacks {missing[:5]}")
        with paddle.no_grad():
            for k in self.state:
                paddle.assign(paddle.to_tensor(state[k]).astype(self.state[k].dtype), output=self.state[k])
