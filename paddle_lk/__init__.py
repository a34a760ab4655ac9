"""paddle_lk: large-kernel CNNs (RepLKNet, VAN, RefConv, UniRepLKNet) for PaddlePaddle."""
import warnings

# Known-harmless Paddle notices, printed on import and on every training step: not ours to repeat.
warnings.filterwarnings("ignore", message="No ccache found", category=UserWarning)
warnings.filterwarnings("ignore", message="When training, we now always track global mean and variance",
                        category=UserWarning)
# LinearWarmup.set_state_dict hands its own nested state to the base class, which warns about that key.
warnings.filterwarnings("ignore", message="There are some unused values in state_dict", category=UserWarning)

__version__ = "0.1.0"

from . import layers, models, ops
from .checkpoint import detect_architecture, load_checkpoint
from .engine.predictor import Predictor
from .errors import PaddleLKError
from .layers.refconv import RefConv, refocus
from .models import create_model
from .registry import list_models, model_info, register_model
from .layers.reparam import Reparameterizable, reparameterize
from . import reparam

__all__ = ["Predictor", "create_model", "list_models", "model_info", "register_model", "load_checkpoint", "detect_architecture",
           "reparameterize", "Reparameterizable", "RefConv", "refocus", "PaddleLKError", "layers", "models", "ops",
           "__version__"]
