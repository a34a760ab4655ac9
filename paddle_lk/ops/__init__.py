"""Large-kernel depthwise conv: the custom op (CPU AVX2/FMA + CUDA) and the one dispatcher in front of it.

* :func:`depthwise_conv2d_lk` calls the custom op directly (errors on calls it cannot serve).
* :func:`depthwise_conv2d` is the dispatcher every :class:`paddle_lk.layers.DepthwiseConv2D` uses: the
  custom op when the path allows it, the op is built and the call fits its constraints, else ``F.conv2d``.

The path is chosen by ``PADDLE_LK_OP=auto|custom|native`` (default ``auto``) or, in code, by
:func:`set_op_path` / the :func:`op_path` context manager (used by export to force the native conv):

* ``auto``: use the op where it fits; if it cannot be built, warn once and use ``F.conv2d``.
* ``custom``: the op must be buildable (else :class:`OpBuildError` saying why); calls that fit use it.
  Calls it cannot express (stride 2 stems, dilation, ...) still use ``F.conv2d``, so whole models run.
* ``native``: always ``F.conv2d`` (portable for ONNX / Paddle Inference without the op library).

The op library is JIT-built on first use (:func:`load_op`). A model saved with the op in it must be
loaded after the op is registered: use :func:`jit_load` and :func:`create_predictor`.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from types import ModuleType
from typing import Any, Iterator, Optional, Sequence, Union

import paddle
import paddle.nn.functional as F

from . import _build
from ._build import OpBuildError

__all__ = ["depthwise_conv2d", "get_op_path", "set_op_path", "op_path", "depthwise_conv2d_lk",
           "is_available", "load_op", "jit_load", "create_predictor", "op_applicable", "OpBuildError",
           "MIN_KERNEL", "MAX_KERNEL"]

_VALID_PATHS = ("auto", "custom", "native")
_path_override: Optional[str] = None

MIN_KERNEL = 3    # the dispatcher leaves 1x1 depthwise convs to Paddle
MAX_KERNEL = 63   # shared-memory tiles of the CUDA kernel are sized for this
_OP_TYPES = ("lk_dwconv2d", "lk_dwconv2d_bias")

_op_module: Optional[ModuleType] = None
_op_error: Optional[str] = None
_warned = False


def get_op_path() -> str:
    """Current dispatch mode: the in-code override, else ``$PADDLE_LK_OP``, else ``auto``."""
    mode = _path_override or os.environ.get("PADDLE_LK_OP", "auto").strip().lower() or "auto"
    if mode not in _VALID_PATHS:
        raise ValueError(f"PADDLE_LK_OP={mode!r}: expected one of {', '.join(_VALID_PATHS)}")
    return mode


def set_op_path(mode: Optional[str]) -> None:
    """Force ``auto``/``custom``/``native`` for this process; ``None`` returns to ``$PADDLE_LK_OP``."""
    global _path_override
    if mode is not None and mode not in _VALID_PATHS:
        raise ValueError(f"op path {mode!r}: expected one of {', '.join(_VALID_PATHS)}")
    _path_override = mode


@contextlib.contextmanager
def op_path(mode: str) -> Iterator[None]:
    """Context manager form of :func:`set_op_path`."""
    global _path_override
    previous = _path_override
    set_op_path(mode)
    try:
        yield
    finally:
        _path_override = previous


# ---------------------------------------------------------------------------------------------------
# Building / loading
# ---------------------------------------------------------------------------------------------------
def load_op(verbose: bool = False) -> ModuleType:
    """Return the op module (``lk_dwconv2d``, ``lk_dwconv2d_bias``), JIT-building it on first use.

    The build is cached (``$PADDLE_LK_OP_CACHE``, default ``~/.cache/paddle_lk/ops``) and prints a
    message while it compiles (``verbose=True`` also shows the compiler output). Raises :class:`OpBuildError` saying why when the op cannot be built; the
    failure is remembered, so later calls fail fast instead of recompiling.
    """
    global _op_module, _op_error
    if _op_module is not None:
        return _op_module
    if _op_error is not None:
        raise OpBuildError(_op_error)
    try:
        _op_module = _build.build_and_load(verbose=verbose)
    except OpBuildError as exc:
        _op_error = str(exc)
        raise
    except Exception as exc:  # anything else from the toolchain: same contract, a reason
        _op_error = f"loading the op failed: {type(exc).__name__}: {exc}"
        raise OpBuildError(_op_error) from exc
    return _op_module


def is_available() -> bool:
    """True when the op is (or can be) built and loaded here. May trigger the first-use build."""
    try:
        load_op()
    except OpBuildError:
        return False
    return True


def _op_has_cuda() -> bool:
    return _build._with_cuda()


# ---------------------------------------------------------------------------------------------------
# Applicability
# ---------------------------------------------------------------------------------------------------
def _pair(v: Union[int, Sequence[int]]) -> Optional[tuple]:
    """(h, w) of an int / [h, w] / [t, b, l, r] (symmetric) argument; None for anything else."""
    if isinstance(v, int):
        return (v, v)
    if isinstance(v, (list, tuple)) and all(isinstance(i, int) for i in v):
        if len(v) == 2:
            return tuple(v)
        if len(v) == 4 and v[0] == v[1] and v[2] == v[3]:  # [top, bottom, left, right]
            return (v[0], v[2])
        if len(v) == 1:
            return (v[0], v[0])
    return None


def _in_dynamic() -> bool:
    return paddle.in_dynamic_mode()


def _device_kind(x: paddle.Tensor) -> str:
    """'cpu' / 'gpu' / 'other' for the tensor (static graphs: the current expected place)."""
    if _in_dynamic():
        place = x.place
        if place.is_cpu_place():
            return "cpu"
        if place.is_gpu_place():
            return "gpu"
        return "other"
    dev = paddle.get_device()
    return "cpu" if dev == "cpu" else ("gpu" if dev.startswith("gpu") else "other")


def _dtype_name(t: paddle.Tensor) -> str:
    return str(t.dtype).replace("paddle.", "").replace("DataType.", "").lower()


def op_applicable(x: paddle.Tensor, weight: paddle.Tensor, bias: Optional[paddle.Tensor] = None,
                  stride: Any = 1, padding: Any = 0, dilation: Any = 1) -> Optional[str]:
    """``None`` when the custom op can compute this depthwise conv, else the reason it cannot.

    Constraints: NCHW rank 4, ``groups == C`` with multiplier 1, square odd kernel in 3..63, stride 1,
    dilation 1, padding ``k // 2``, float32 on CPU / float32 or float16 on a CUDA build, contiguous.
    """
    return (_layout_reason(x, weight, bias, stride, padding, dilation)
            or _type_reason(x, weight, bias))


def _layout_reason(x: paddle.Tensor, weight: paddle.Tensor, bias: Optional[paddle.Tensor],
                   stride: Any, padding: Any, dilation: Any) -> Optional[str]:
    """Why the shapes / conv arguments / memory layout do not fit the op, or None."""
    if len(x.shape) != 4:
        return f"x must be 4-D NCHW, got shape {list(x.shape)}"
    if len(weight.shape) != 4:
        return f"weight must be 4-D [C, 1, k, k], got shape {list(weight.shape)}"
    c, m, kh, kw = weight.shape
    if m != 1:
        return f"weight shape {list(weight.shape)}: the op needs one input channel per group (dim 1 == 1)"
    if x.shape[1] not in (-1, None) and x.shape[1] != c:
        return (f"weight has {c} output channels but x has {x.shape[1]} channels: "
                "the op needs groups == channels and channel multiplier 1")
    if kh != kw:
        return f"kernel must be square, got {kh}x{kw}"
    if kh % 2 == 0:
        return f"kernel size must be odd, got {kh}"
    if not MIN_KERNEL <= kh <= MAX_KERNEL:
        return f"kernel size must be in {MIN_KERNEL}..{MAX_KERNEL}, got {kh}"
    if isinstance(padding, str):
        if padding.lower() != "same":
            return f"padding {padding!r} is not 'same'"
        padding = kh // 2
    if _pair(stride) != (1, 1):
        return f"stride must be 1, got {stride}"
    if _pair(dilation) != (1, 1):
        return f"dilation must be 1, got {dilation}"
    if _pair(padding) != (kh // 2, kh // 2):
        return f"padding must be k // 2 = {kh // 2}, got {padding}"
    if bias is not None and (len(bias.shape) != 1 or bias.shape[0] != c):
        return f"bias must have shape [{c}], got {list(bias.shape)}"
    if _in_dynamic():
        for name, t in (("x", x), ("weight", weight), ("bias", bias)):
            if t is not None and not t.is_contiguous():
                return f"{name} is not contiguous (call .contiguous() first)"
    return None


def _type_reason(x: paddle.Tensor, weight: paddle.Tensor, bias: Optional[paddle.Tensor]) -> Optional[str]:
    """Why the op's kernels cannot take these dtypes / this device, or None."""
    dtypes = {_dtype_name(t) for t in (x, weight) + ((bias,) if bias is not None else ())}
    kind = _device_kind(x)
    if kind == "cpu":
        if dtypes != {"float32"}:
            return f"the CPU kernel supports float32 only, got {sorted(dtypes)}"
    elif kind == "gpu":
        if not _op_has_cuda():
            return "the op was built without CUDA kernels (Paddle without CUDA)"
        if len(dtypes) != 1 or not dtypes <= {"float32", "float16"}:
            return f"the CUDA kernel supports float32 or float16 (all tensors alike), got {sorted(dtypes)}"
    else:
        return "the op runs on CPU and CUDA devices only"
    return None


def _check_call(x: paddle.Tensor, weight: paddle.Tensor, bias: Optional[paddle.Tensor]) -> None:
    tensor_types = tuple(t for t in (paddle.Tensor, getattr(getattr(paddle, "pir", None), "Value", None)) if t)
    if not isinstance(x, tensor_types) or not isinstance(weight, tensor_types):
        raise TypeError(f"depthwise_conv2d_lk: x and weight must be paddle Tensors, got "
                        f"{type(x).__name__} and {type(weight).__name__}")
    pad = weight.shape[2] // 2 if len(weight.shape) == 4 else 0
    reason = _layout_reason(x, weight, bias, 1, pad, 1)
    if reason:
        raise ValueError(f"depthwise_conv2d_lk: {reason}")
    reason = _type_reason(x, weight, bias)
    if reason:
        raise TypeError(f"depthwise_conv2d_lk: {reason}")


@paddle.jit.not_to_static
def depthwise_conv2d_lk(x: paddle.Tensor, weight: paddle.Tensor,
                        bias: Optional[paddle.Tensor] = None) -> paddle.Tensor:
    """The custom op: depthwise conv, stride 1, "same" padding ``k // 2``, NCHW.

    Args:
        x: ``[N, C, H, W]``, float32 (CPU) or float32/float16 (CUDA build), contiguous.
        weight: ``[C, 1, k, k]`` with ``k`` odd in 3..63.
        bias: optional ``[C]``.

    Raises:
        TypeError / ValueError naming the problem for inputs the op cannot take;
        :class:`OpBuildError` when the op cannot be built here.
    """
    _check_call(x, weight, bias)
    op = load_op()
    if bias is None:
        return op.lk_dwconv2d(x, weight)
    return op.lk_dwconv2d_bias(x, weight, bias)


# ---------------------------------------------------------------------------------------------------
# Dispatcher
# ---------------------------------------------------------------------------------------------------
def _warn_fallback_once() -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(f"paddle_lk: large-kernel op unavailable, using F.conv2d ({_op_error})",
                      RuntimeWarning, stacklevel=3)


# Dispatch is plain Python over static shape/dtype information: dy2static must call it as is (not
# rewrite its control flow), so the path is fixed when a program is traced.
@paddle.jit.not_to_static
def depthwise_conv2d(x: paddle.Tensor, weight: paddle.Tensor, bias: Optional[paddle.Tensor] = None,
                     stride=1, padding=0, dilation=1) -> paddle.Tensor:
    """Depthwise conv2d (``groups == channels``), NCHW: the custom op where it applies, else ``F.conv2d``.

    Works in dygraph and under ``paddle.jit.to_static`` (the path is fixed when the program is traced).
    """
    mode = get_op_path()
    if mode != "native" and op_applicable(x, weight, bias, stride, padding, dilation) is None:
        if mode == "custom":
            load_op()  # raises OpBuildError with the reason
            return depthwise_conv2d_lk(x, weight, bias)
        if is_available():
            return depthwise_conv2d_lk(x, weight, bias)
        _warn_fallback_once()
    return F.conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation,
                    groups=weight.shape[0])


# ---------------------------------------------------------------------------------------------------
# Loading saved models that contain the op
# ---------------------------------------------------------------------------------------------------
def _model_files(path_prefix: str) -> list:
    return [path_prefix + ext for ext in (".json", ".pdmodel") if os.path.isfile(path_prefix + ext)]


def _uses_op(path_prefix: str) -> bool:
    """Whether the saved program (PIR ``.json`` or legacy ``.pdmodel``) references the custom op."""
    for f in _model_files(path_prefix):
        with open(f, "rb") as fh:
            data = fh.read()
        if any(name.encode() in data for name in _OP_TYPES):
            return True
    return False


def _ensure_op_for(path_prefix: str) -> None:
    """Register the op before a program that references it is deserialized (else Paddle segfaults)."""
    if not _model_files(path_prefix):
        raise FileNotFoundError(f"no saved program at {path_prefix}(.json|.pdmodel)")
    if _uses_op(path_prefix):
        try:
            load_op()
        except OpBuildError as exc:
            raise OpBuildError(f"{path_prefix} contains the paddle_lk custom op, which cannot be loaded here: "
                               f"{exc}. Re-export it with the native conv (paddle_lk.ops.op_path('native')).") from exc


def jit_load(path: str, **configs: Any) -> paddle.jit.TranslatedLayer:
    """``paddle.jit.load`` that first registers the custom op when the saved program uses it.

    A bare ``paddle.jit.load`` of such a model in a fresh process crashes inside Paddle; this
    raises :class:`OpBuildError` instead when the op cannot be loaded.
    """
    path = os.fspath(path)
    _ensure_op_for(path)
    return paddle.jit.load(path, **configs)


def create_predictor(model: Union[str, "paddle.inference.Config"], params_file: Optional[str] = None):
    """A ``paddle.inference`` predictor for a saved model, registering the custom op first if it is used.

    Programs that use the op run with oneDNN off: oneDNN hands the op tensors in its blocked layouts
    (measured: wrong outputs, max error ~5 on the quickstart model, exact with oneDNN off).

    Args:
        model: the ``paddle.jit.save`` path prefix (``<prefix>.json``/``.pdmodel`` + ``.pdiparams``) or a
            ready ``paddle.inference.Config`` (then ``params_file`` is ignored).
        params_file: explicit parameters file (default ``<prefix>.pdiparams``).
    """
    from paddle import inference

    if isinstance(model, inference.Config):
        config = model
        prog = config.prog_file()
        prefix = os.path.splitext(prog)[0] if prog else ""
    else:
        prefix = os.fspath(model)
        files = _model_files(prefix)
        if not files:
            raise FileNotFoundError(f"no saved program at {prefix}(.json|.pdmodel)")
        config = inference.Config(files[0], params_file or prefix + ".pdiparams")
        config.disable_glog_info()
    if prefix and _model_files(prefix):
        _ensure_op_for(prefix)
        uses_op = _uses_op(prefix)
    else:  # a program given from memory: assume it may use the op
        load_op()
        uses_op = True
    if uses_op:
        config.disable_mkldnn()
    return inference.create_predictor(config)
