"""`python tools/eval.py -c CONFIG [-o Section.key=value ...]` -- see `--help` and README (Training).

Thin wrapper over :func:`paddle_lk.engine.cli.main`; PaddleSeg / PaddleDetection configs are
handed to `paddle_lk.integrations`.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from paddle_lk.engine.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main("eval", sys.argv[1:]))
