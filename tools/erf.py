"""`python tools/erf.py --models NAME [NAME ...] --output DIR [...]` -- effective receptive fields side by side.

Thin wrapper over :func:`paddle_lk.analysis.cli.main` (see `--help` and README, ERF section).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from paddle_lk.analysis.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
