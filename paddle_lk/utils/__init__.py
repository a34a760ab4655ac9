"""Small shared helpers: parameter and FLOP counting (atomic file writing lives in :mod:`paddle_lk.io`)."""
import numpy as np

from ..io.atomic import atomic_path, atomic_save
from .complexity import count_flops

__all__ = ["atomic_path", "atomic_save", "count_params", "count_flops"]


def count_params(model) -> int:
    """Learnable parameters (Paddle stores BN running statistics as non-trainable parameters)."""
    # Product of the static shape, so it also works on lazily built (unallocated) models.
    return sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient)
