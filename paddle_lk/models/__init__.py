"""Model families; importing registers every family and variant with :mod:`paddle_lk.registry`.

Each family is one file (blocks, model, variant table, checkpoint adapter, constructors):
:mod:`.replknet`, :mod:`.van`, :mod:`.unireplknet` (and RefConv's :mod:`paddle_lk.layers.refconv`). ``create_model`` and
the constructors share one builder (:mod:`._builder`); every model follows :class:`._base.LKNetBase`.
"""
from ._base import LKNetBase, normalize_out_indices, resolve_num_classes
from ._builder import build_model_with_cfg, constructor_params, create_model, load_pretrained
from .replknet import (RepLKNet, RepLKNet3, RepLKNet7, RepLKNet13, RepLKNet25, RepLKNet31B, RepLKNet31L,
                       RepLKNetXL)
from .unireplknet import (UniRepLKNet, UniRepLKNet_A, UniRepLKNet_B, UniRepLKNet_F, UniRepLKNet_L, UniRepLKNet_N,
                          UniRepLKNet_P, UniRepLKNet_S, UniRepLKNet_T, UniRepLKNet_XL)
from .van import VAN, VAN_b0, VAN_b1, VAN_b2, VAN_b3, VAN_b4, VAN_b5, VAN_b6

__all__ = ["constructor_params", "LKNetBase", "normalize_out_indices", "resolve_num_classes", "create_model", "build_model_with_cfg",
           "load_pretrained", "RepLKNet", "RepLKNet3", "RepLKNet7", "RepLKNet13", "RepLKNet25", "RepLKNet31B",
           "RepLKNet31L", "RepLKNetXL", "VAN", "UniRepLKNet"] + [f"VAN_b{i}" for i in range(7)] + [
               f"UniRepLKNet_{v}" for v in ("A", "F", "P", "N", "T", "S", "B", "L", "XL")]
