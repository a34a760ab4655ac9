"""What every tool run shares: Ctrl-C handling, progress bars only on terminals, and exit codes.

Ctrl-C: Paddle's C++ calls swallow the ``KeyboardInterrupt`` that Python's default handler raises
(measured on Paddle 3.3: a training loop keeps running after SIGINT), so :func:`handle_interrupts`
installs a handler that only records the request; loops call :func:`check_interrupt` at safe points
(after each batch and each update), which raises :class:`Interrupted` from Python code. A second
Ctrl-C exits at once with code 130.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Iterator, Optional

__all__ = ["Interrupted", "handle_interrupts", "stdout_to_stderr", "check_interrupt", "interrupt_requested", "progress_enabled",
           "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_INTERRUPTED"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

_requested = False


class Interrupted(KeyboardInterrupt):
    """The user pressed Ctrl-C; raised at a safe point of a loop."""


def interrupt_requested() -> bool:
    """Whether Ctrl-C was pressed since :func:`handle_interrupts` started."""
    return _requested


def check_interrupt() -> None:
    """Raise :class:`Interrupted` if Ctrl-C was pressed (call it where stopping leaves a consistent state)."""
    if _requested:
        raise Interrupted("interrupted by Ctrl-C")


def _on_sigint(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    global _requested
    if _requested:
        sys.stderr.write("\ninterrupted (second Ctrl-C): exiting now\n")
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
    _requested = True
    sys.stderr.write("\nCtrl-C: stopping at the next safe point (Ctrl-C again to quit at once)\n")
    sys.stderr.flush()


@contextlib.contextmanager
def handle_interrupts() -> Iterator[None]:
    """Install the two-stage Ctrl-C handler for the duration of a tool run (main thread only)."""
    global _requested
    _requested = False
    try:
        previous = signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested = False


def progress_enabled(requested: bool = True, stream=None) -> bool:
    """Progress bars only when asked for and the stream is a terminal (never glued into logs or pipes);
    ``PADDLE_LK_PROGRESS=1`` forces them on, ``0`` off."""
    forced: Optional[str] = os.environ.get("PADDLE_LK_PROGRESS")
    if forced in ("0", "1"):
        return forced == "1"
    stream = stream or sys.stderr
    return bool(requested) and hasattr(stream, "isatty") and stream.isatty()


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout -- by Python or by C/C++ libraries (paddle2onnx prints its
    progress there) -- to stderr for the duration, so stdout carries only the tool's data."""
    sys.stdout.flush()
    try:
        out_fd, err_fd = sys.stdout.fileno(), sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # captured streams (tests, notebooks): Python level only
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    saved = os.dup(out_fd)
    try:
        os.dup2(err_fd, out_fd)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, out_fd)
        os.close(saved)
