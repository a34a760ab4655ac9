"""Model families; importing registers every variant with :mod:`paddle_lk.registry`."""
from .replknet import (RepLKNet, RepLKNet3, RepLKNet7, RepLKNet13, RepLKNet25, RepLKNet31B, RepLKNet31L,
                       RepLKNetXL)
from .van import VAN, VAN_b0, VAN_b1, VAN_b2, VAN_b3, VAN_b4, VAN_b5, VAN_b6

__all__ = ["RepLKNet", "RepLKNet3", "RepLKNet7", "RepLKNet13", "RepLKNet25", "RepLKNet31B", "RepLKNet31L",
           "RepLKNetXL", "VAN"] + [f"VAN_b{i}" for i in range(7)]
