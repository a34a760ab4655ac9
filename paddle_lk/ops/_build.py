"""Build and load the large-kernel depthwise conv op (``paddle.utils.cpp_extension``).

Order of preference:

1. an installed build (``python custom_ops/setup.py install`` provides the module ``paddle_lk_dwconv_ops``);
2. a cached JIT build under ``$PADDLE_LK_OP_CACHE`` (default ``~/.cache/paddle_lk/ops``), keyed by a hash
   of the sources, the compiler flags, the Paddle version and the Python version;
3. a JIT build into that cache, under a file lock so concurrent processes compile once.

The sources are package data (``paddle_lk/ops/csrc``), so the same code path works from a checkout and
from an installed wheel.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import pathlib
import shutil
import sys
import tempfile
from types import ModuleType
from typing import Dict, Iterator, List
try:
    from ..errors import OpBuildError  # noqa: F401 - defined in paddle_lk.errors
except ImportError:  # loaded as a lone file by custom_ops/setup.py, outside the package
    class OpBuildError(RuntimeError):  # type: ignore[no-redef]
        """The custom op cannot be built or loaded here; the message says why."""

__all__ = ["OpBuildError", "CSRC_DIR", "OP_NAME", "INSTALLED_MODULE", "source_files", "build_config",
           "cache_root", "build_and_load"]

CSRC_DIR = pathlib.Path(__file__).resolve().parent / "csrc"
OP_NAME = "lk_dwconv_ops"                 # name of the JIT-built shared library / module
INSTALLED_MODULE = "paddle_lk_dwconv_ops"  # name used by custom_ops/setup.py
CPU_SOURCES = ("lk_dwconv_op.cc", "lk_dwconv_cpu.cc")
CUDA_SOURCES = ("lk_dwconv_cuda.cu",)
HEADERS = ("lk_dwconv_cpu.h", "lk_dwconv_cuda.h")
CXX_FLAGS = ["-O3", "-fopenmp"]
LD_FLAGS = ["-fopenmp"]
CUDA_FLAGS = ["-O3"]
# Architectures compiled into CUDA builds (``PADDLE_LK_CUDA_ARCHS="80;90"`` to narrow); the newest also
# ships as PTX so later GPUs can JIT it.
DEFAULT_CUDA_ARCHS = "70;75;80;86;89;90"


def cuda_arch_flags() -> List[str]:
    """nvcc ``-gencode`` flags for ``$PADDLE_LK_CUDA_ARCHS`` (default :data:`DEFAULT_CUDA_ARCHS`)."""
    archs = [a.strip() for a in os.environ.get("PADDLE_LK_CUDA_ARCHS", DEFAULT_CUDA_ARCHS).split(";") if a.strip()]
    if not archs or not all(a.isdigit() for a in archs):
        raise OpBuildError(f"PADDLE_LK_CUDA_ARCHS={os.environ.get('PADDLE_LK_CUDA_ARCHS')!r}: expected e.g. '80;90'")
    flags = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    return flags + [f"-gencode=arch=compute_{archs[-1]},code=compute_{archs[-1]}"]


def _with_cuda() -> bool:
    import paddle

    return bool(paddle.is_compiled_with_cuda()) and not paddle.is_compiled_with_rocm()


def source_files(with_cuda: bool) -> List[str]:
    """Absolute paths of the sources to compile (the CUDA file only for a CUDA build of Paddle)."""
    names = list(CPU_SOURCES) + (list(CUDA_SOURCES) if with_cuda else [])
    missing = [n for n in names + list(HEADERS) if not (CSRC_DIR / n).is_file()]
    if missing:
        raise OpBuildError(f"op sources missing from {CSRC_DIR}: {', '.join(missing)} "
                           "(was paddle_lk installed without its package data?)")
    return [str(CSRC_DIR / n) for n in names]


def build_config(force_cuda: bool = False) -> Dict[str, object]:
    """Everything that determines the binary: used for the cache key and by ``custom_ops/setup.py``.

    ``force_cuda`` builds the CUDA kernels even against a CPU Paddle (CI's compile-and-link check).
    """
    import paddle

    with_cuda = force_cuda or _with_cuda()
    cuda_flags = list(CUDA_FLAGS) + (cuda_arch_flags() if with_cuda else [])
    return {"sources": source_files(with_cuda), "with_cuda": with_cuda, "cxx_flags": list(CXX_FLAGS),
            "ld_flags": list(LD_FLAGS), "cuda_flags": cuda_flags, "paddle": paddle.__version__,
            "python": sys.version.split()[0]}


def cache_root() -> pathlib.Path:
    """Root of the JIT build cache: ``$PADDLE_LK_OP_CACHE`` or ``~/.cache/paddle_lk/ops``."""
    env = os.environ.get("PADDLE_LK_OP_CACHE", "").strip()
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "paddle_lk" / "ops"


def _cache_key(cfg: Dict[str, object]) -> str:
    h = hashlib.sha256()
    for name in list(CPU_SOURCES) + list(CUDA_SOURCES) + list(HEADERS):
        path = CSRC_DIR / name
        if path.is_file():
            h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(repr({k: v for k, v in cfg.items() if k != "sources"}).encode())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _file_lock(path: pathlib.Path) -> Iterator[None]:
    """Exclusive inter-process lock (POSIX); a no-op where ``fcntl`` does not exist."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _capture_fds(log_path: str) -> Iterator[None]:
    """Send fd 1 and 2 (also of the compiler subprocesses) to ``log_path`` for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log_path, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _log_tail(path: str, lines: int = 25) -> str:
    try:
        with open(path, errors="replace") as fh:
            text = fh.read().splitlines()
    except OSError:
        return ""
    keep = [ln for ln in text if "error" in ln.lower()] or text
    return "\n".join(keep[-lines:])


def _load_installed() -> ModuleType | None:
    try:
        mod = importlib.import_module(INSTALLED_MODULE)
    except ImportError:
        return None
    return mod if hasattr(mod, "lk_dwconv2d") and hasattr(mod, "lk_dwconv2d_bias") else None


@contextlib.contextmanager
def _quiet_cpp_extension() -> Iterator[None]:
    """Silence cpp_extension's import-time chatter (ccache warning, INFO 'using custom operator only')."""
    import logging
    import warnings

    logger = logging.getLogger("utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No ccache found")
            yield
    finally:
        logger.setLevel(level)


def _import_built(build_dir: pathlib.Path) -> ModuleType:
    with _quiet_cpp_extension():
        from paddle.utils.cpp_extension import extension_utils

        return extension_utils._import_module_from_library(OP_NAME, str(build_dir / OP_NAME), False)


def _check_toolchain(with_cuda: bool) -> None:
    if sys.platform != "linux":
        raise OpBuildError(f"the op is built with paddle.utils.cpp_extension, which supports Linux only "
                           f"(this is {sys.platform})")
    try:
        with _quiet_cpp_extension():
            import paddle.utils.cpp_extension  # noqa: F401
    except ImportError as exc:  # pragma: no cover - every Paddle 3 wheel has it
        raise OpBuildError(f"paddle.utils.cpp_extension is unavailable: {exc}") from exc
    cxx = os.environ.get("CXX") or "c++"
    if shutil.which(cxx) is None and shutil.which("g++") is None:
        raise OpBuildError("no C++ compiler found (looked for $CXX, c++, g++); install g++ to build the op")
    if with_cuda and shutil.which("nvcc") is None and not os.environ.get("CUDA_HOME"):
        raise OpBuildError("Paddle is compiled with CUDA but nvcc was not found (set CUDA_HOME or PATH)")


def build_and_load(verbose: bool = False) -> ModuleType:
    """Return the op module, building it first if needed. Raises :class:`OpBuildError` with the reason.

    ``verbose`` shows the compiler output instead of writing it to the build log.
    """
    installed = _load_installed()
    if installed is not None:
        return installed
    cfg = build_config()
    with_cuda = bool(cfg["with_cuda"])
    root = cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OpBuildError(f"cannot create the op build cache {root}: {exc} (set PADDLE_LK_OP_CACHE)") from exc
    build_dir = root / f"{OP_NAME}_{_cache_key(cfg)}"
    so_path = build_dir / OP_NAME / f"{OP_NAME}.so"
    with _file_lock(root / f"{build_dir.name}.lock"):
        if so_path.is_file():
            try:
                return _import_built(build_dir)
            except Exception as exc:  # a corrupt cache entry: rebuild below
                print(f"paddle_lk: cached op {so_path} failed to load ({exc}); rebuilding", file=sys.stderr)
                shutil.rmtree(build_dir, ignore_errors=True)
        _check_toolchain(with_cuda)
        with _quiet_cpp_extension():
            from paddle.utils.cpp_extension import load

        # Build in a fresh temporary directory, then move it into place: an interrupted build never
        # leaves a half-written cache entry behind.
        tmp_dir = pathlib.Path(tempfile.mkdtemp(prefix=f".{build_dir.name}.", dir=root))
        log_path = str(root / f"{build_dir.name}.log")
        kind = "CPU+CUDA" if with_cuda else "CPU"
        print(f"paddle_lk: compiling the large-kernel depthwise conv op ({kind}) into {build_dir} "
              f"(first use only, about a minute; log: {log_path}) ...", file=sys.stderr, flush=True)
        try:
            # verbose: compiler output goes to the terminal; else to the log (quoted on failure).
            with (contextlib.nullcontext() if verbose else _capture_fds(log_path)):
                module = load(name=OP_NAME, sources=list(cfg["sources"]), extra_cxx_cflags=list(cfg["cxx_flags"]),
                              extra_cuda_cflags=list(cfg["cuda_flags"]), extra_ldflags=list(cfg["ld_flags"]),
                     build_directory=str(tmp_dir), verbose=True)
            if not (tmp_dir / OP_NAME / f"{OP_NAME}.so").is_file():
                raise OpBuildError("the compiler produced no shared library")
        except Exception as exc:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            tail = _log_tail(log_path)
            raise OpBuildError(f"building the op failed: {exc}\n--- compiler output ({log_path}) ---\n{tail}") from exc
        # `load` already registered the ops in this process; moving the directory (the library is
        # mapped, not re-opened) publishes it for later processes.
        shutil.rmtree(build_dir, ignore_errors=True)
        os.replace(tmp_dir, build_dir)
        print("paddle_lk: op compiled.", file=sys.stderr, flush=True)
        return module
