"""paddle_lk: large-kernel CNNs (RepLKNet, VAN, RefConv) for PaddlePaddle."""
__version__ = "0.1.0"

from .registry import create_model, list_models, register_model
from .reparam import Reparameterizable, reparameterize
from .layers.refconv import RefConv, refocus
from . import layers, models, ops

__all__ = ["create_model", "list_models", "register_model", "reparameterize", "Reparameterizable",
           "RefConv", "refocus", "layers", "models", "ops", "__version__"]
