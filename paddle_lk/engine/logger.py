"""Logging: a log file plus console lines (on stderr) that cooperate with tqdm bars, and VisualDL scalars."""
from __future__ import annotations

import logging
import os
import sys
from typing import Optional

from tqdm import tqdm

__all__ = ["setup_logger", "ScalarWriter"]


class _TqdmHandler(logging.StreamHandler):
    """Console output on stderr through ``tqdm.write``, so log lines do not break progress bars and
    stdout stays free for data (results, ``--json``)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def setup_logger(output_dir: Optional[str], rank: int = 0, name: str = "paddle_lk.engine",
                 filename: str = "train.log") -> logging.Logger:
    """Rank 0 logs INFO to the console and ``output_dir/filename``; other ranks only warnings."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    fmt = logging.Formatter("[%(asctime)s] %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    console = _TqdmHandler()
    console.setFormatter(fmt)
    logger.addHandler(console)
    if output_dir and rank == 0:
        os.makedirs(output_dir, exist_ok=True)
        fh = logging.FileHandler(os.path.join(output_dir, filename), encoding="utf-8")
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    return logger


class ScalarWriter:
    """VisualDL ``LogWriter`` under ``output_dir/vdl`` on rank 0 (a no-op elsewhere or when disabled)."""

    def __init__(self, output_dir: str, enabled: bool = True, rank: int = 0) -> None:
        self.writer = None
        self.logdir = os.path.join(output_dir, "vdl")
        if enabled and rank == 0:
            from visualdl import LogWriter

            self.writer = LogWriter(logdir=self.logdir)

    def add(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag=tag, step=int(step), value=float(value))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
