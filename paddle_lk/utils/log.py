"""Logging: a log file plus console lines (on stderr) that cooperate with tqdm bars, and VisualDL scalars."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
from typing import Iterator, Optional

from tqdm import tqdm

__all__ = ["setup_logger", "ScalarWriter", "TOOLKIT_LOGGER", "ForwardHandler", "prints_to_log", "native_stderr_to_log",
           "safe_print"]

# PaddleSeg's and PaddleDetection's own log lines (config dumps, parameter groups ...) are forwarded
# here: the log file gets them all, the console their warnings and errors only.
TOOLKIT_LOGGER = "paddle_lk.toolkit"


class ForwardHandler(logging.Handler):
    """Hands a third-party logger's records to :data:`TOOLKIT_LOGGER`."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger(TOOLKIT_LOGGER).handle(record)


class _TqdmHandler(logging.StreamHandler):
    """Console output on stderr through ``tqdm.write``, so log lines do not break progress bars and
    stdout stays free for data (results, ``--json``)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def safe_print(*args: object, **kwargs: object) -> None:
    """``print`` to stdout that survives a closed pipe (``tool | head -1``): once the reader is gone, further
    output is dropped instead of raising, and the work the tool is doing goes on."""
    try:
        print(*args, **kwargs, flush=True)  # type: ignore[call-overload]
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        except (AttributeError, OSError, ValueError):
            pass
        finally:
            os.close(devnull)


class _LineLogger(io.TextIOBase):
    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger, self.buffer_ = logger, ""

    def write(self, text: str) -> int:
        self.buffer_ += text
        *lines, self.buffer_ = self.buffer_.split("\n")
        for line in lines:
            if line.strip():
                self.logger.info(line.rstrip())
        return len(text)

    def flush(self) -> None:
        if self.buffer_.strip():
            self.logger.info(self.buffer_.rstrip())
        self.buffer_ = ""


@contextlib.contextmanager
def prints_to_log() -> Iterator[None]:
    """Python ``print`` output of a third-party call (pycocotools' AP tables) goes to the toolkit log
    (the run's log file) instead of the console."""
    writer = _LineLogger(logging.getLogger(TOOLKIT_LOGGER))
    with contextlib.redirect_stdout(writer):
        try:
            yield
        finally:
            writer.flush()


@contextlib.contextmanager
def native_stderr_to_log() -> Iterator[None]:
    """What C++ code writes to stderr meanwhile (Paddle's glog notices while tracing a program, e.g. "PIR not
    support input out tensor") goes to the toolkit log (the log file) instead of the console; if the block
    fails, those lines are printed after all, they may explain why."""
    try:
        err_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # captured streams (tests, notebooks): nothing to redirect
        yield
        return
    sys.stderr.flush()
    saved = os.dup(err_fd)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), err_fd)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, err_fd)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            if failed and text.strip():
                sys.stderr.write(text)
            else:
                for line in text.splitlines():
                    if line.strip():
                        logging.getLogger(TOOLKIT_LOGGER).info(f"[paddle] {line.rstrip()}")


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
    toolkit = logging.getLogger(TOOLKIT_LOGGER)
    if name == "paddle_lk.engine":  # the toolkits log next to the run's own lines
        toolkit.setLevel(logging.INFO)
        toolkit.propagate = False
        for h in list(toolkit.handlers):
            toolkit.removeHandler(h)
        quiet = _TqdmHandler()
        quiet.setLevel(logging.WARNING)
        quiet.setFormatter(fmt)
        toolkit.addHandler(quiet)
    if output_dir and rank == 0:
        os.makedirs(output_dir, exist_ok=True)
        fh = logging.FileHandler(os.path.join(output_dir, filename), encoding="utf-8")
        fh.setFormatter(fmt)
        logger.addHandler(fh)
        if name == "paddle_lk.engine":
            toolkit.addHandler(fh)
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
