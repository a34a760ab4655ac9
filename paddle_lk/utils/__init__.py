"""Small shared helpers."""
import numpy as np

from .io import atomic_path, atomic_save

__all__ = ["atomic_path", "atomic_save"]


def count_params(model) -> int:
    """Learnable parameters (Paddle stores BN running statistics as non-trainable parameters)."""
    # Product of the static shape, so it also works on lazily built (unallocated) models.
    return sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient)


__all__.append("count_params")


def count_flops(model, input_size=(1, 3, 224, 224)) -> int:
    """See :func:`paddle_lk.utils.complexity.count_flops` (imported lazily: it needs paddle.hapi)."""
    from .complexity import count_flops as _count_flops

    return _count_flops(model, input_size)


__all__.append("count_flops")


def state_dict_mismatches(model, state) -> tuple:
    """(missing keys, shape mismatches as "key: file [..] vs model [..]") of ``state`` against ``model``."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    bad = [f"{k}: file {list(state[k].shape)} vs model {list(own[k].shape)}"
           for k in own if k in state and list(state[k].shape) != list(own[k].shape)]
    return missing, bad


__all__.append("state_dict_mismatches")
