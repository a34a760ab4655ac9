"""The one deploy export: re-parameterize, fold BN, ``paddle.jit.save``, optional ONNX, and verify.

:func:`export_program` serves classification, segmentation and detection alike: the model (train
form) is re-parameterized into its deploy form (large + small kernels merged, BN folded), saved as a
Paddle Inference program with dynamic batch and spatial size, optionally converted to ONNX (dynamic
too), and every artefact is run -- Paddle Inference in its default configuration (oneDNN on, as users
run it) and onnxruntime -- on inputs of two different sizes and compared with the dygraph train-form
model, relative to the output's scale. The files are published (renamed into ``out_dir``) only if
they match. The native conv is used unless ``with_custom_op`` (then the op library must be loaded,
through :func:`paddle_lk.ops.load_op`, before the model is loaded).
"""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.nn as nn
import yaml

from .. import ops
from ..checkpoint import load_checkpoint
from ..errors import ConfigError, ExportError, ExportVerificationError
from ..io.atomic import atomic_path
from ..layers.conv_bn import is_bn
from ..layers.reparam import reparameterize
from ..utils.log import native_stderr_to_log
from .builder import build_model
from .config import list_of_single_key_dicts
from .data import class_names_for
from .runtime import check_interrupt
from .transforms import deploy_preprocess

__all__ = ["export_program", "export_model", "on_cpu", "model_file", "classification_deploy_files", "CLS_DEPLOY_CONFIG", "LABEL_LIST", "run_paddle_inference", "run_onnxruntime", "bn_params_left",
           "MODEL_PREFIX", "RTOL"]

MODEL_PREFIX = "inference"
# Files an export writes besides <prefix>.*: a re-export into the same dir removes the ones it does not rewrite.
EXPORT_FILES = ("export_info.json", "inference.yml", "label_list.txt", "deploy.yaml", "infer_cfg.yml")
PROGRAM_FILES = tuple(f"{p}.{ext}" for p in ("inference", "model")
                      for ext in ("json", "pdmodel", "pdiparams", "pdiparams.info", "onnx"))
RTOL = 1e-4  # max |exported - dygraph| / max |dygraph output| (fp32 kernels differ in summation order)
ONNX_PASSES = ["eliminate_deadend", "extract_constant_to_initializer", "eliminate_unused_initializer",
               "eliminate_duplicate_initializer", "eliminate_nop_cast"]


def model_file(directory: str, prefix: str = MODEL_PREFIX) -> str:
    for ext in (".json", ".pdmodel"):
        path = os.path.join(directory, prefix + ext)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{directory}: no {prefix}.json / {prefix}.pdmodel (not an exported model dir)")


def _as_list(x: Any) -> List[np.ndarray]:
    if isinstance(x, (list, tuple)):
        return [a for item in x for a in _as_list(item)]
    if isinstance(x, dict):
        return [a for k in sorted(x) for a in _as_list(x[k])]
    return [x.numpy() if hasattr(x, "numpy") else np.asarray(x)]


def run_paddle_inference(directory: str, inputs: Any, prefix: str = MODEL_PREFIX) -> Any:
    """Run an exported model with ``paddle.inference`` on CPU in its default configuration (oneDNN as
    Paddle enables it); ``inputs`` is one array or a list (in the program's input order). Returns one
    array for a single-output program, else the list of outputs."""
    import paddle.inference as pi

    config = pi.Config(model_file(directory, prefix), os.path.join(directory, prefix + ".pdiparams"))
    config.disable_gpu()
    config.disable_glog_info()
    # registers the custom op first when the program uses it (oneDNN stays on: the op reads its layouts)
    predictor = ops.create_predictor(config)
    arrays = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    names = predictor.get_input_names()
    if len(names) != len(arrays):
        raise ExportVerificationError(f"the program takes inputs {names}, {len(arrays)} given")
    for name, arr in zip(names, arrays):
        handle = predictor.get_input_handle(name)
        handle.reshape(list(arr.shape))
        handle.copy_from_cpu(np.ascontiguousarray(arr))
    predictor.run()
    outs = [predictor.get_output_handle(n).copy_to_cpu() for n in predictor.get_output_names()]
    return outs[0] if len(outs) == 1 else outs


def run_onnxruntime(path: str, inputs: Any) -> Any:
    """Run an ONNX file with onnxruntime's CPU provider (one array or a list of inputs)."""
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    arrays = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    outs = session.run(None, {i.name: np.ascontiguousarray(a) for i, a in zip(session.get_inputs(), arrays)})
    return outs[0] if len(outs) == 1 else outs


def _compare(name: str, got: Any, ref: List[np.ndarray]) -> float:
    """Max |got - ref| / scale over every output; raises when above :data:`RTOL` (integer outputs, e.g. a
    segmentation label map, must agree on all but 0.1 % of the values)."""
    got = _as_list(got)
    if len(got) != len(ref):
        raise ExportVerificationError(f"{name}: {len(got)} outputs, dygraph has {len(ref)}")
    worst = 0.0
    for i, (g, r) in enumerate(zip(got, ref)):
        if g.shape != r.shape:
            raise ExportVerificationError(f"{name}: output {i} has shape {g.shape}, dygraph {r.shape}")
        if r.size == 0:
            continue
        if np.issubdtype(r.dtype, np.integer) or r.dtype == np.bool_:
            frac = float(np.mean(g != r))
            if frac > 1e-3:
                raise ExportVerificationError(f"{name}: output {i} differs from dygraph in {frac:.2%} of its values")
            worst = max(worst, frac)
            continue
        scale = float(np.abs(r).max())
        rel = float(np.abs(g.astype(np.float64) - r).max()) / max(scale, 1e-30)
        if not rel <= RTOL and not float(np.abs(g - r).max()) <= 1e-7:
            raise ExportVerificationError(f"{name}: output {i} differs from dygraph by {rel:.3e} of its scale "
                                          f"{scale:.3e} (allowed {RTOL:.0e})")
        worst = max(worst, rel)
    return worst


def bn_params_left(layer: nn.Layer) -> int:
    """Parameters of the BatchNorm layers a deploy model still has (those a residual add or a shortcut
    keeps from being folded)."""
    return sum(int(np.prod(p.shape)) for sub in layer.sublayers(include_self=True) if is_bn(sub)
               for p in sub.parameters(include_sublayers=False))


def _export_onnx(tmp: str, opset: int, log: logging.Logger, prefix: str = MODEL_PREFIX) -> Tuple[str, int]:
    import onnx
    import onnxoptimizer
    import paddle2onnx

    onnx_path = os.path.join(tmp, prefix + ".onnx")
    # paddle2onnx 2.1's own onnxoptimizer step misnames a pass ("eliminate_nop_cast ") and always skips:
    # export plain, then run the same passes here. It aborts the process on an operator it cannot
    # convert, so it runs in a child process and its [ERROR] lines become the error.
    args = [model_file(tmp, prefix), os.path.join(tmp, prefix + ".pdiparams"), onnx_path, opset]
    code = ("import sys, paddle2onnx; m, p, o, v = sys.argv[1:]; "
            "paddle2onnx.export(m, p, o, opset_version=int(v), enable_onnx_checker=True, optimize_tool='None')")
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True)
    for line in (proc.stdout + proc.stderr).splitlines():
        if line.strip():
            log.debug(f"paddle2onnx: {line}")
    if proc.returncode != 0 or not os.path.isfile(onnx_path):
        errors = [ln.split("]", 2)[-1].strip() for ln in (proc.stdout + proc.stderr).splitlines() if "[ERROR]" in ln]
        raise ExportError(f"paddle2onnx {paddle2onnx.__version__} cannot convert this model to ONNX: "
                          + ("; ".join(errors) if errors else f"exit code {proc.returncode}")
                          + " (the Paddle Inference model is fine; export without --onnx)")
    model = onnx.load(onnx_path)
    actual = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if actual != opset:
        raise ConfigError(f"--opset {opset}: paddle2onnx exported opset {actual} (this model needs it); "
                          f"pass --opset {actual} or newer")
    try:
        model = onnxoptimizer.optimize(model, ONNX_PASSES)
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001 - onnxoptimizer / the checker on a graph they cannot handle
        last = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        raise ExportError(f"the ONNX file paddle2onnx wrote for opset {actual} does not pass onnxoptimizer / the "
                          f"ONNX checker ({type(exc).__name__}: {last}); export without --onnx") from exc
    onnx.save(model, onnx_path)
    log.info(f"onnx: opset {actual}, optimized with onnxoptimizer ({', '.join(ONNX_PASSES)})")
    return onnx_path, actual


def export_program(layer: nn.Layer, input_spec: Sequence[paddle.static.InputSpec], samples: Sequence[Any],
                   out_dir: str, with_custom_op: bool = False, onnx: bool = False, opset: int = 13,
                   verify: bool = True, extra_files: Optional[Dict[str, str]] = None,
                   info: Optional[Dict[str, Any]] = None, log: Optional[logging.Logger] = None,
                   prefix: str = MODEL_PREFIX, trace_context: Optional[Callable[[], Any]] = None) -> Dict[str, Any]:
    """Re-parameterize ``layer`` (train form, eval mode), save it to ``out_dir`` and verify it.

    Args:
        layer: takes the ``input_spec`` tensors positionally, returns a tensor or a list of tensors.
        input_spec: with ``None`` for the dynamic batch and spatial dimensions.
        samples: inputs to verify with (each an array or a list of arrays); give two spatial sizes.
        extra_files: ``{file name: text}`` written next to the model (deploy configs, label lists).
        info: recorded in ``export_info.json`` with the measured differences.
        prefix: file name of the program and parameters (``inference``: PaddleClas; ``model``: PaddleSeg
            and PaddleDetection's deploy tools).
        trace_context: a context manager factory active while the program is traced (toolkit shims).

    Returns:
        The summary written to ``export_info.json`` (``files``, ``*_max_rel_diff``, ``opset``, ...).

    Raises:
        :class:`ExportVerificationError` when an artefact does not reproduce the dygraph model;
        :class:`ExportError` when the layer does not trace to a static program;
        ConfigError for an unusable ``opset``; :class:`OpBuildError` when ``with_custom_op`` cannot load the op.
    """
    log = log or logging.getLogger("paddle_lk.engine")
    if with_custom_op:
        ops.load_op()
    layer.eval()

    def run(model: nn.Layer, sample: Any) -> List[np.ndarray]:
        arrays = sample if isinstance(sample, (list, tuple)) else [sample]
        with paddle.no_grad(), ops.op_path("native"):
            return _as_list(model(*[paddle.to_tensor(a) for a in arrays]))

    refs = [run(layer, s) for s in samples]
    check_interrupt()  # Ctrl-C: stop between the stages (nothing is published before the end)
    deploy = reparameterize(layer, fuse_bn=True)
    deploy.eval()
    summary: Dict[str, Any] = dict(info or {})
    summary.update(out_dir=out_dir, op="custom" if with_custom_op else "native", rtol=RTOL,
                   input_spec=[[d if d is not None else None for d in s.shape] for s in input_spec],
                   verified_input_shapes=[[list(a.shape) for a in (s if isinstance(s, (list, tuple)) else [s])]
                                          for s in samples],
                   bn_params_left=bn_params_left(deploy))
    summary["reparam_max_rel_diff"] = max(_compare("re-parameterized model", run(deploy, s), r)
                                          for s, r in zip(samples, refs))
    created = not os.path.isdir(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    for stale in glob.glob(os.path.join(out_dir, ".export.*")):  # left by a killed export
        shutil.rmtree(stale, ignore_errors=True)
    tmp = tempfile.mkdtemp(prefix=".export.", dir=out_dir)
    published = False
    try:
        with ops.op_path("auto" if with_custom_op else "native"), (trace_context or contextlib.nullcontext)():
            try:
                with native_stderr_to_log():  # Paddle's notices while tracing: the log file
                    paddle.jit.save(deploy, os.path.join(tmp, prefix), input_spec=list(input_spec))
            except Exception as exc:  # noqa: BLE001 - any tracing failure is one error line (exit 1)
                last = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
                raise ExportError(f"cannot trace {type(layer).__name__} to a static program with Paddle "
                                  f"{paddle.__version__} ({last})") from exc
        check_interrupt()
        if verify:
            summary["paddle_inference_max_rel_diff"] = max(
                _compare("paddle.inference", run_paddle_inference(tmp, s, prefix), r) for s, r in zip(samples, refs))
        check_interrupt()
        if onnx:
            onnx_path, summary["opset"] = _export_onnx(tmp, opset, log, prefix)
            if verify:
                summary["onnxruntime_max_rel_diff"] = max(
                    _compare("onnxruntime", run_onnxruntime(onnx_path, s), r) for s, r in zip(samples, refs))
        for name, text in (extra_files or {}).items():
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                f.write(text)
        check_interrupt()
        new = set(os.listdir(tmp))
        for name in os.listdir(out_dir):  # a previous export's files this one does not replace (its .onnx ...)
            path = os.path.join(out_dir, name)
            if (name in EXPORT_FILES or name in PROGRAM_FILES) and name not in new and os.path.isfile(path):
                os.remove(path)
        files = []
        for name in sorted(new):
            os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
            files.append(os.path.join(out_dir, name))
        summary["files"] = files
        published = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not published and created and not os.listdir(out_dir):  # a failed export leaves nothing behind
            os.rmdir(out_dir)
    with atomic_path(os.path.join(out_dir, "export_info.json")) as path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2, default=str)
    log.info(f"exported ({summary['op']} conv) to {out_dir}: "
             + ", ".join(f"{k} {summary[k]:.2e}" for k in summary if k.endswith("max_rel_diff")))
    return summary


@contextlib.contextmanager
def on_cpu() -> Iterator[None]:
    """Build, trace and verify an export on the CPU (what the CPU predictor check compares with), then
    give the process its device back."""
    previous = paddle.get_device()
    paddle.set_device("cpu")
    try:
        yield
    finally:
        paddle.set_device(previous)


def export_model(cfg: Dict[str, Any], weights: Optional[str], out_dir: str, with_custom_op: bool = False,
                 onnx: bool = False, verify: bool = True, opset: int = 13, batch: int = 2,
                 logger: Optional[logging.Logger] = None, use_ema: bool = False) -> Dict[str, Any]:
    """Export the classification model ``Arch`` with ``weights`` to ``out_dir/inference.*`` (+ ``.onnx``):
    input ``[N, C, H, W]`` float32 with N, H and W dynamic, output class probabilities ``[N, class_num]``
    (softmax appended as PaddleClas's export does; logits with ``Arch.infer_add_softmax: false``); verified
    at ``Global.image_shape`` and at a larger size. Runs on the CPU; the process keeps its device."""
    with on_cpu():
        return _export_classifier(cfg, weights, out_dir, with_custom_op, onnx, verify, opset, batch,
                                  logger or logging.getLogger("paddle_lk.engine"), use_ema)


def _export_classifier(cfg: Dict[str, Any], weights: Optional[str], out_dir: str, with_custom_op: bool, onnx: bool,
                       verify: bool, opset: int, batch: int, log: logging.Logger, use_ema: bool) -> Dict[str, Any]:
    model = build_model(cfg, load_pretrained=not weights)
    used = load_checkpoint(model, weights, use_ema=use_ema, log=log.info).source if weights \
        else "Arch.pretrained / random init"
    c, h, w = cfg["Global"]["image_shape"]
    rng = np.random.RandomState(0)
    samples = [rng.standard_normal([batch, c, h, w]).astype("float32"),
               rng.standard_normal([1, c, h + 32, w + 16]).astype("float32")]
    spec = [paddle.static.InputSpec([None, c, None, None], "float32", "x")]
    # PaddleClas's ExportModel appends a softmax unless Arch.infer_add_softmax is false; its deploy
    # post-processing (Topk) reads probabilities.
    softmax = bool(cfg["Arch"].get("infer_add_softmax", True))
    info = dict(task="cls", weights=used, arch=cfg["Arch"]["name"], class_num=cfg["Arch"].get("class_num"),
                image_shape=[c, h, w], output="probabilities" if softmax else "logits")
    files = classification_deploy_files(cfg, out_dir, with_custom_op, log)
    layer = nn.Sequential(model, nn.Softmax(axis=-1)) if softmax else model
    return export_program(layer, spec, samples, out_dir, with_custom_op=with_custom_op, onnx=onnx, opset=opset,
                          verify=verify, info=info, log=log, extra_files=files)


CLS_DEPLOY_CONFIG = "inference.yml"
LABEL_LIST = "label_list.txt"


def classification_deploy_files(cfg: Dict[str, Any], out_dir: str, with_custom_op: bool,
                                log: logging.Logger) -> Dict[str, str]:
    """``inference.yml`` in PaddleClas's deploy format (``Global``, ``PreProcess``, ``PostProcess``: what
    ``deploy/python/predict_cls.py``, the ``paddleclas`` wheel and :class:`paddle_lk.Predictor` read) and
    ``label_list.txt`` (``<id> <name>`` lines) when the class names are known."""
    names = class_names_for(cfg)
    infer = cfg["Infer"]
    ops, where = infer.get("transforms"), "Infer.transforms"
    if ops is None and cfg["DataLoader"].get("Eval") is not None:
        ops, where = cfg["DataLoader"]["Eval"]["dataset"]["transform_ops"], "DataLoader.Eval.dataset.transform_ops"
    if ops is None:
        raise ConfigError("Infer.transforms: required to export (the deploy preprocessing), or a DataLoader.Eval")
    try:
        preprocess, paddle_lk_ops = deploy_preprocess(ops, where), False
    except ConfigError as exc:
        log.warning(f"deploy preprocessing kept in paddle_lk's own op names ({exc}); PaddleClas's predictor "
                    f"cannot read it, paddle_lk.Predictor can")
        preprocess, paddle_lk_ops = [dict([item]) for item in list_of_single_key_dicts(ops, where)], True
    label_file = os.path.join(os.path.abspath(out_dir), LABEL_LIST)
    doc = {
        "Global": {"inference_model_dir": os.path.abspath(out_dir), "batch_size": int(infer["batch_size"]),
                   "use_gpu": False, "enable_mkldnn": not with_custom_op, "cpu_num_threads": os.cpu_count() or 1,
                   "enable_benchmark": False, "use_fp16": False, "ir_optim": True, "use_tensorrt": False,
                   "gpu_mem": 8000, "enable_profile": False, "paddle_lk_ops": paddle_lk_ops,
                   "image_channels": int(cfg["Global"]["image_shape"][0])},
        "PreProcess": {"transform_ops": preprocess},
        "PostProcess": {"main_indicator": "Topk",
                        "Topk": {"topk": int(infer["PostProcess"]["topk"]),
                                 "class_id_map_file": label_file if names else None}},
    }
    files = {CLS_DEPLOY_CONFIG: yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)}
    if names:
        files[LABEL_LIST] = "".join(f"{i} {names[i]}\n" for i in sorted(names))
    return files
