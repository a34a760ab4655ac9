"""`python tools/convert_torch.py --src OFFICIAL.pth --dst OUT.pdparams [--verify]` -- official PyTorch weights
to Paddle without PyTorch.

Thin wrapper over :func:`paddle_lk.convert.cli.main` (see `--help` and README, Model zoo).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from paddle_lk.convert.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
