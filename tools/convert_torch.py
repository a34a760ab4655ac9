"""Convert an official PyTorch checkpoint (RepLKNet, VAN, RefConv, mmseg/mmdet backbones) to
``.pdparams`` without PyTorch. The architecture is detected from the keys and shapes.

    python tools/convert_torch.py --src RepLKNet-31B_ImageNet-1K_224.pth --dst RepLKNet-31B.pdparams --verify

Prints what was detected, how many tensors were mapped and what was skipped (and why). Any
failure exits with code 2 and one line on stderr, and leaves no ``--dst`` file behind.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from paddle_lk.convert.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
