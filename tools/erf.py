"""Effective receptive field of several models side by side (the RepLKNet paper's method).

    python tools/erf.py --models RepLKNet31B resnet101 --size 1024 --num-images 10 --output erf_out
    python tools/erf.py --models RepLKNet31B resnet101 --weights RepLKNet-31B.pth random --output erf_out

Writes erf.png (heatmaps, weights named on each), erf_ratios.json / .csv (high-contribution area
ratios at 0.2/0.3/0.5/0.99) and erf_<model>.npy (raw averaged gradient maps) to --output. Models:
any paddle_lk model (paddle_lk.list_models()) and the paddle.vision ResNets resnet18..resnet152.
Default images: the photos bundled with scikit-image.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from paddle_lk.analysis.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
