"""Checkpoint loading and conversion (PyTorch -> paddle_lk)."""
from __future__ import annotations

import paddle
import paddle.nn as nn

__all__ = ["load_weights"]


def load_weights(model: nn.Layer, path: str) -> None:
    """Load ``.pdparams`` into ``model``; missing keys or shape mismatches raise with the key names."""
    state = paddle.load(path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    bad = [f"{k}: checkpoint {list(state[k].shape)} vs model {list(own[k].shape)}"
           for k in own if k in state and list(state[k].shape) != list(own[k].shape)]
    if missing or bad:
        raise ValueError(f"{path}: missing keys {missing[:10]} shape mismatches {bad[:10]}")
    model.set_state_dict(state)
