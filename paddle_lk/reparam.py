"""``paddle_lk.reparam``: the one re-parameterization protocol (defined in :mod:`paddle_lk.layers.reparam`)."""
from .layers.reparam import Reparameterizable, reparameterize

__all__ = ["Reparameterizable", "reparameterize"]
