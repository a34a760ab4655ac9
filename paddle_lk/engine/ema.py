"""Exponential moving average of a model's weights (timm ``ModelEmaV2`` semantics)."""
from __future__ import annotations

from typing import Dict

import paddle
import paddle.nn as nn

__all__ = ["ModelEMA"]


class ModelEMA:
    """``ema = decay * ema + (1 - decay) * weights`` after every optimizer update.

    Floating-point entries of the state dict (parameters and BN statistics) are averaged, integer
    buffers copied. The average is a plain ``{name: tensor}`` dict, saved in checkpoints as is and
    loaded into a model for evaluation or export with ``set_state_dict``.
    """

    def __init__(self, model: nn.Layer, decay: float = 0.9999) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA.decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        with paddle.no_grad():
            self.state: Dict[str, paddle.Tensor] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @paddle.no_grad()
    def update(self, model: nn.Layer) -> None:
        for name, value in model.state_dict().items():
            avg = self.state[name]
            if paddle.is_floating_point(value):
                avg.scale_(self.decay)
                avg.add_(value.detach().astype(avg.dtype) * (1.0 - self.decay))
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
