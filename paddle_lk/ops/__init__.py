"""Large-kernel depthwise conv: the custom op (CPU AVX2/FMA + CUDA) and the one dispatcher in front of it.

* :func:`depthwise_conv2d_lk` calls the custom op directly (errors on calls it cannot serve).
* :func:`depthwise_conv2d` is the dispatcher every :class:`paddle_lk.layers.DepthwiseConv2D` uses: the
  custom op when the path allows it, the op is built and the call fits its constraints, else ``F.conv2d``.

The path is chosen by ``PADDLE_LK_OP=auto|custom|native`` (default ``auto``) or, in code, by
:func:`set_op_path` / the :func:`op_path` context manager (used by export to force the native conv):

* ``auto``: use the op where it fits; if it cannot be built, warn once and use ``F.conv2d``.
* ``custom``: the op must be buildable (else :class:`OpBuildError` saying why); calls that fit use it.
  Calls it cannot express (stride-2 stems, padding other than "same", ...) still use ``F.conv2d``, so
  whole models run.
* ``native``: always ``F.conv2d`` (portable for ONNX / Paddle Inference without the op library).

The op library is JIT-built on first use (:func:`load_op`). A model saved with the op in it must be
loaded after the op is registered: use :func:`jit_load` and :func:`create_predictor`.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Iterator, Optional, Sequence, Tuple, Union

import paddle
import paddle.nn.functional as F

from . import _build
from ._build import OpBuildError

__all__ = ["depthwise_conv2d", "get_op_path", "set_op_path", "op_path", "depthwise_conv2d_lk",
           "is_available", "load_op", "jit_load", "create_predictor", "op_applicable", "OpBuildError",
           "MIN_KERNEL", "MAX_KERNEL", "MAX_DILATION", "DispatchPlan", "dispatch_plan", "amp_state"]

_VALID_PATHS = ("auto", "custom", "native")
_path_override: Optional[str] = None

MIN_KERNEL = 3    # the dispatcher leaves 1x1 depthwise convs to Paddle
MAX_KERNEL = 63   # shared-memory tiles of the CUDA kernel are sized for this
MAX_DILATION = 64
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


_DTYPE_NAMES: dict = {}


def _dtype_name(t: paddle.Tensor) -> str:
    # Memoized per dtype object: str() of a Paddle dtype costs microseconds, and the dispatcher asks
    # several times per call.
    dtype = t.dtype
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).replace("paddle.", "").replace("DataType.", "").lower()
    return name


def op_applicable(x: paddle.Tensor, weight: paddle.Tensor, bias: Optional[paddle.Tensor] = None,
                  stride: Any = 1, padding: Any = 0, dilation: Any = 1) -> Optional[str]:
    """``None`` when the custom op can compute this depthwise conv as given, else the reason it cannot.

    Constraints: NCHW rank 4, ``groups == C`` with multiplier 1, square odd kernel ``k`` in 3..63, stride 1,
    square dilation ``d`` in 1..64 with "same" padding ``d * (k // 2)``, contiguous; all tensors float32 on
    CPU, or all float32 / float16 / bfloat16 on a CUDA build. (The dispatcher may still use the op for
    mixed dtypes under AMP, after casting: see :func:`dispatch_plan`.)
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
    if _pair(stride) != (1, 1):
        return f"stride must be 1, got {stride}"
    dil = _pair(dilation)
    if dil is None or dil[0] != dil[1]:
        return f"dilation must be the same along H and W, got {dilation}"
    d = dil[0]
    if not 1 <= d <= MAX_DILATION:
        return f"dilation must be in 1..{MAX_DILATION}, got {d}"
    same = d * (kh // 2)
    if isinstance(padding, str):
        if padding.lower() != "same":
            return f"padding {padding!r} is not 'same'"
        if d != 1:  # Paddle's padding="same" resets dilation to 1: keep F.conv2d's exact meaning
            return "padding='same' with dilation > 1: F.conv2d then ignores the dilation"
        padding = same
    if _pair(padding) != (same, same):
        return f"padding must be dilation * (k // 2) = {same} (\"same\"), got {padding}"
    if bias is not None and (len(bias.shape) != 1 or bias.shape[0] != c):
        return f"bias must have shape [{c}], got {list(bias.shape)}"
    if _in_dynamic():
        for name, t in (("x", x), ("weight", weight), ("bias", bias)):
            if t is not None and not t.is_contiguous():
                return f"{name} is not contiguous (call .contiguous() first)"
    return None


_DEVICE_DTYPES = {"cpu": ("float32",), "gpu": ("float32", "float16", "bfloat16")}


def _dtype_reason(kind: str, dtypes: set, has_cuda: bool) -> Optional[str]:
    """Why the op's kernels on ``kind`` cannot compute in ``dtypes`` (all tensors), or None."""
    if kind == "cpu":
        if dtypes != {"float32"}:
            return f"the CPU kernel supports float32 only, got {sorted(dtypes)}"
    elif kind == "gpu":
        if not has_cuda:
            return "the op was built without CUDA kernels (Paddle without CUDA)"
        if len(dtypes) != 1 or not dtypes <= set(_DEVICE_DTYPES["gpu"]):
            return (f"the CUDA kernel supports float32, float16 or bfloat16 (all tensors alike), "
                    f"got {sorted(dtypes)}")
    else:
        return "the op runs on CPU and CUDA devices only"
    return None


def _type_reason(x: paddle.Tensor, weight: paddle.Tensor, bias: Optional[paddle.Tensor]) -> Optional[str]:
    """Why the op's kernels cannot take these dtypes / this device, or None."""
    dtypes = {_dtype_name(t) for t in (x, weight) + ((bias,) if bias is not None else ())}
    kind = _device_kind(x)
    return _dtype_reason(kind, dtypes, kind == "gpu" and _op_has_cuda())


def _check_call(x: paddle.Tensor, weight: paddle.Tensor, bias: Optional[paddle.Tensor], dilation: Any) -> None:
    tensor_types = tuple(t for t in (paddle.Tensor, getattr(getattr(paddle, "pir", None), "Value", None)) if t)
    if not isinstance(x, tensor_types) or not isinstance(weight, tensor_types):
        raise TypeError(f"depthwise_conv2d_lk: x and weight must be paddle Tensors, got "
                        f"{type(x).__name__} and {type(weight).__name__}")
    if not isinstance(dilation, int) or isinstance(dilation, bool):
        raise TypeError(f"depthwise_conv2d_lk: dilation must be an int, got {dilation!r}")
    pad = dilation * (weight.shape[2] // 2) if len(weight.shape) == 4 else 0
    reason = _layout_reason(x, weight, bias, 1, pad, dilation)
    if reason:
        raise ValueError(f"depthwise_conv2d_lk: {reason}")
    reason = _type_reason(x, weight, bias)
    if reason:
        raise TypeError(f"depthwise_conv2d_lk: {reason}")


def _call_op(x: paddle.Tensor, weight: paddle.Tensor, bias: Optional[paddle.Tensor], dilation: int) -> paddle.Tensor:
    op = load_op()
    if bias is None:
        return op.lk_dwconv2d(x, weight, dilation)
    return op.lk_dwconv2d_bias(x, weight, bias, dilation)


@paddle.jit.not_to_static
def depthwise_conv2d_lk(x: paddle.Tensor, weight: paddle.Tensor, bias: Optional[paddle.Tensor] = None,
                        dilation: int = 1) -> paddle.Tensor:
    """The custom op: depthwise conv, stride 1, "same" padding ``dilation * (k // 2)``, NCHW.

    Args:
        x: ``[N, C, H, W]``, float32 (CPU) or float32/float16/bfloat16 (CUDA build), contiguous.
        weight: ``[C, 1, k, k]`` with ``k`` odd in 3..63, same dtype as ``x``.
        bias: optional ``[C]``, same dtype as ``x``.
        dilation: spacing of the kernel taps in pixels, 1..64 (tap ``(i, j)`` of output ``(h, w)`` reads
            ``x[h + dilation*(i - k//2), w + dilation*(j - k//2)]``, zero outside the map).

    Returns:
        ``[N, C, H, W]``, dtype of ``x``.

    Raises:
        TypeError / ValueError naming the problem for inputs the op cannot take;
        :class:`OpBuildError` when the op cannot be built here.
    """
    _check_call(x, weight, bias, dilation)
    return _call_op(x, weight, bias, dilation)


# ---------------------------------------------------------------------------------------------------
# AMP and the dispatch decision
# ---------------------------------------------------------------------------------------------------
def amp_state() -> Tuple[str, str]:
    """``(level, dtype)`` of Paddle's auto-cast in the current context: level ``"O0"`` (off), ``"O1"``,
    ``"O2"`` or ``"OD"``; dtype ``"float16"`` / ``"bfloat16"``. Dygraph reads the tracer, static graphs
    (``to_static``, PIR) the program's AMP attributes. Note that Paddle 3.3's ``auto_cast`` does
    nothing on a CPU place (it warns and stays O0)."""
    from paddle.base import core, framework

    if _in_dynamic():
        tracer = framework._dygraph_tracer()
        if tracer is None:
            return "O0", "float32"
        level, dtype = tracer._amp_level, tracer._amp_dtype
    else:
        attrs = core._get_amp_attrs()
        level, dtype = attrs._amp_level, attrs._amp_dtype
    name = str(level).rsplit(".", 1)[-1]
    return (name, str(dtype)) if name != "O0" else ("O0", "float32")


@dataclass(frozen=True)
class DispatchPlan:
    """What :func:`depthwise_conv2d` does with one call.

    Attributes:
        kernel: ``"custom"`` (the op) or ``"native"`` (``F.conv2d`` on the tensors as given, so Paddle's
            own AMP rules apply to it).
        compute_dtype: dtype the op computes in (x, weight and bias are cast to it first); None for native.
        out_dtype: dtype of the result (the op's output is cast to it when it differs); None for native.
        reason: why, in words.
    """

    kernel: str
    compute_dtype: Optional[str]
    out_dtype: Optional[str]
    reason: str


def _native(reason: str) -> DispatchPlan:
    return DispatchPlan("native", None, None, reason)


def dispatch_plan(x: paddle.Tensor, weight: paddle.Tensor, bias: Optional[paddle.Tensor] = None,
                  stride: Any = 1, padding: Any = 0, dilation: Any = 1, *, mode: Optional[str] = None,
                  device: Optional[str] = None, amp: Optional[Tuple[str, str]] = None,
                  has_cuda: Optional[bool] = None) -> DispatchPlan:
    """The dispatcher's decision for one depthwise conv, as a pure function of its inputs.

    ``mode``, ``device`` (``"cpu"``/``"gpu"``), ``amp`` (``(level, dtype)`` as :func:`amp_state`) and
    ``has_cuda`` (the op was built with CUDA kernels) default to the current state; tests pass them to
    check GPU / AMP decisions on a CPU machine. Whether the op library can be built is not part of the
    plan (the dispatcher handles that: ``auto`` falls back to ``F.conv2d``, ``custom`` raises).

    Rules, in order:

    1. ``mode == "native"``, or shapes / stride / padding / dilation / contiguity the op cannot express:
       native.
    2. The compute dtype is what a white-listed Paddle conv would compute in: AMP O1 / OD -> the
       autocast dtype (float16 / bfloat16) for float32 / float16 / bfloat16 inputs; AMP O2 -> the
       weight's (parameters') dtype; no AMP -> the inputs' common dtype (mixed dtypes: native, as
       without the op). float64 anywhere: native.
    3. CUDA: the op computes in that dtype (float32, float16 or bfloat16); the result has that dtype.
       CPU: the op computes float32 only. A float32 compute dtype runs as is; a float16 / bfloat16 one
       (only reachable with half-precision tensors: Paddle's ``auto_cast`` has no effect on CPU) runs the
       op in float32 and casts the result back, which is at least as accurate as a half-precision conv.
    """
    mode = mode or get_op_path()
    if mode == "native":
        return _native("op path 'native'")
    reason = _layout_reason(x, weight, bias, stride, padding, dilation)
    if reason:
        return _native(reason)
    kind = device or _device_kind(x)
    level, amp_dtype = amp if amp is not None else amp_state()
    dtypes = {_dtype_name(t) for t in (x, weight) + ((bias,) if bias is not None else ())}
    halves = {"float16", "bfloat16"}
    if "float64" in dtypes or not dtypes <= {"float32"} | halves:
        return _native(f"dtypes {sorted(dtypes)}: the op computes float32 / float16 / bfloat16 only")
    if level in ("O1", "OD"):
        want, why = amp_dtype, f"AMP {level}: a white-listed conv computes in {amp_dtype}"
    elif level == "O2":
        want, why = _dtype_name(weight), f"AMP O2: the parameters' dtype {_dtype_name(weight)}"
    elif len(dtypes) == 1:
        want, why = next(iter(dtypes)), "no AMP: the inputs' dtype"
    else:
        return _native(f"mixed dtypes {sorted(dtypes)} without AMP: F.conv2d applies Paddle's rules")
    if kind == "cpu" and want in halves:
        return DispatchPlan("custom", "float32", want,
                            f"{why}; the CPU kernel computes float32, the result is cast to {want}")
    if has_cuda is None:
        has_cuda = kind == "gpu" and _op_has_cuda()
    reason = _dtype_reason(kind, {want}, has_cuda)
    if reason:
        return _native(reason)
    return DispatchPlan("custom", want, want, why)


# ---------------------------------------------------------------------------------------------------
# Dispatcher
# ---------------------------------------------------------------------------------------------------
def _warn_fallback_once() -> None:
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(f"paddle_lk: large-kernel op unavailable, using F.conv2d ({_op_error})",
                      RuntimeWarning, stacklevel=3)


def _cast(t: Optional[paddle.Tensor], dtype: str) -> Optional[paddle.Tensor]:
    return t if t is None or _dtype_name(t) == dtype else t.astype(dtype)


# Dispatch is plain Python over static shape/dtype information: dy2static must call it as is (not
# rewrite its control flow), so the path is fixed when a program is traced.
@paddle.jit.not_to_static
def depthwise_conv2d(x: paddle.Tensor, weight: paddle.Tensor, bias: Optional[paddle.Tensor] = None,
                     stride=1, padding=0, dilation=1) -> paddle.Tensor:
    """Depthwise conv2d (``groups == channels``), NCHW: the custom op where it applies, else ``F.conv2d``.

    ``x``: ``[N, C, H, W]``; ``weight``: ``[C, 1, kh, kw]``; ``bias``: ``[C]`` or None; ``stride``,
    ``padding``, ``dilation`` as ``F.conv2d`` (pixels). The decision (and the dtype under AMP) is
    :func:`dispatch_plan`'s. Works in dygraph and under ``paddle.jit.to_static`` (the path is fixed when
    the program is traced). Raises :class:`OpBuildError` when the path is ``custom`` and the op cannot
    be built, and ``ValueError`` for an invalid ``PADDLE_LK_OP``.
    """
    mode = get_op_path()
    plan = dispatch_plan(x, weight, bias, stride, padding, dilation, mode=mode)
    if plan.kernel == "custom":
        if mode == "custom":
            load_op()  # raises OpBuildError with the reason
        elif not is_available():
            _warn_fallback_once()
            plan = None
    if plan is None or plan.kernel == "native":
        return F.conv2d(x, weight, bias, stride=stride, padding=padding, dilation=dilation,
                        groups=weight.shape[0])
    dt = plan.compute_dtype
    # dispatch_plan has validated the call: skip depthwise_conv2d_lk's second check (per-call Python
    # overhead matters for the sub-millisecond convs of small maps).
    y = _call_op(_cast(x, dt), _cast(weight, dt), _cast(bias, dt), _pair(dilation)[0])
    return _cast(y, plan.out_dtype)


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

    oneDNN stays as the config has it (on by default on CPU): tensors that oneDNN kernels hand to the op
    in their blocked layouts are converted to NCHW inside the op (one reorder per input), so programs
    with the op are exact with oneDNN on, and every other op keeps oneDNN's speed. A plain
    ``paddle.inference.create_predictor`` works the same once the op is loaded (:func:`load_op`); this
    function only makes sure it is.

    Args:
        model: the ``paddle.jit.save`` path prefix (``<prefix>.json``/``.pdmodel`` + ``.pdiparams``) or a
            ready ``paddle.inference.Config`` (then ``params_file`` is ignored).
        params_file: explicit parameters file (default ``<prefix>.pdiparams``).

    Raises:
        FileNotFoundError: no saved program at the prefix.
        OpBuildError: the program uses the op and the op cannot be built / loaded here.
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
    else:  # a program given from memory: it may use the op
        load_op()
    return inference.create_predictor(config)
