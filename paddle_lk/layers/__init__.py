"""Reusable layers: conv-BN units, the large-kernel depthwise conv, drop path and RefConv."""
from .lk_conv import DepthwiseConv2D
from .conv_bn import ConvBN, make_bn, fuse_conv_bn
from .drop_path import DropPath
from .refconv import RefConv, refocus
from .reparam import Reparameterizable, reparameterize

__all__ = ["DepthwiseConv2D", "ConvBN", "make_bn", "fuse_conv_bn", "DropPath", "RefConv", "refocus",
           "Reparameterizable", "reparameterize"]
