"""Atomic file writing: a temp file in the target directory, renamed over the target on success."""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success it is renamed to ``path``, on error removed.

    ``suffix`` keeps an extension on the temp name for writers that insist on one.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=f".tmp{suffix}", dir=directory)
    os.close(fd)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_save(obj: Any, path: str) -> None:
    """``paddle.save`` that never leaves a half-written file at ``path``."""
    import paddle

    with atomic_path(path) as tmp:
        paddle.save(obj, tmp)
