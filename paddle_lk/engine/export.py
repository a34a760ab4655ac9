"""Deploy export: re-parameterize, ``paddle.jit.save``, optional ONNX, and self-verification.

The exported model uses Paddle's native conv by default (portable: any Paddle Inference build,
paddle2onnx, onnxruntime); ``with_custom_op=True`` keeps the large-kernel custom op (the op library
must be loaded, through :func:`paddle_lk.ops.load_op`, before the model is loaded). Every export is
run with ``paddle.inference`` (and onnxruntime for ONNX) on a fixed random batch and compared with
the dygraph train-form model; the files are published (renamed into ``out_dir``) only if they match.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from typing import Any, Dict, Optional

import numpy as np
import paddle

from paddle_lk.utils import atomic_path

from .builder import build_model, load_model_weights
from ..errors import ExportVerificationError  # noqa: F401 - defined in paddle_lk.errors

__all__ = ["export_model", "ExportVerificationError", "run_paddle_inference", "run_onnxruntime",
           "MODEL_PREFIX"]

MODEL_PREFIX = "inference"


def _model_file(directory: str, prefix: str = MODEL_PREFIX) -> str:
    for ext in (".json", ".pdmodel"):
        path = os.path.join(directory, prefix + ext)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{directory}: no {prefix}.json / {prefix}.pdmodel (not an exported model dir)")


def run_paddle_inference(directory: str, x: np.ndarray, prefix: str = MODEL_PREFIX) -> np.ndarray:
    """Run an exported model with ``paddle.inference`` on CPU."""
    import paddle.inference as pi

    model_file = _model_file(directory, prefix)
    config = pi.Config(model_file, os.path.join(directory, prefix + ".pdiparams"))
    config.disable_gpu()
    config.disable_glog_info()
    # Registers the custom op first when the program uses it (oneDNN stays on: the op reads its layouts).
    from ..ops import create_predictor

    predictor = create_predictor(config)
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(x.shape))
    handle.copy_from_cpu(np.ascontiguousarray(x, dtype="float32"))
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()


def run_onnxruntime(path: str, x: np.ndarray) -> np.ndarray:
    """Run an ONNX file with onnxruntime's CPU provider."""
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x, dtype="float32")})[0]


def _check(name: str, got: np.ndarray, ref: np.ndarray, tol: float) -> float:
    if got.shape != ref.shape:
        raise ExportVerificationError(f"{name}: output shape {got.shape} != dygraph {ref.shape}")
    diff = float(np.abs(got - ref).max())
    if not diff <= tol:
        raise ExportVerificationError(f"{name}: max |exported - dygraph| = {diff:.3e} exceeds {tol:.3e}")
    return diff


def export_model(cfg: Dict[str, Any], weights: Optional[str], out_dir: str, with_custom_op: bool = False,
                 onnx: bool = False, verify: bool = True, opset: int = 13, batch: int = 2,
                 logger: Optional[logging.Logger] = None, use_ema: bool = False) -> Dict[str, Any]:
    """Export ``Arch`` with ``weights`` to ``out_dir/inference.{json|pdmodel,pdiparams}`` (+ ``.onnx``).

    Returns a summary with the files and the measured max output differences.
    """
    from paddle_lk import ops, reparameterize

    log = logger or logging.getLogger("paddle_lk.engine")
    if with_custom_op and onnx:
        raise ValueError("--onnx with --with-custom-op: ONNX has no large-kernel custom op; export ONNX without it")
    if with_custom_op:
        ops.load_op()  # raises OpBuildError with the reason when the op cannot be built here
    paddle.set_device("cpu")
    model = build_model(cfg, load_pretrained=not weights)
    used = load_model_weights(model, weights, prefer_ema=use_ema) if weights else "Arch.pretrained / random init"
    model.eval()
    shape = list(cfg["Global"]["image_shape"])
    x = np.random.RandomState(0).standard_normal([batch] + shape).astype("float32")
    with paddle.no_grad(), ops.op_path("native"):
        ref = model(paddle.to_tensor(x)).numpy()
    deploy = reparameterize(model, fuse_bn=True)
    deploy.eval()
    tol = 1e-3 * max(1.0, float(np.abs(ref).max()))
    with paddle.no_grad(), ops.op_path("native"):
        reparam_diff = _check("re-parameterized model", deploy(paddle.to_tensor(x)).numpy(), ref, tol)
    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export.", dir=out_dir)
    summary: Dict[str, Any] = {"weights": used, "out_dir": out_dir, "op": "custom" if with_custom_op else "native",
                               "input_shape": [None] + shape, "reparam_max_diff": reparam_diff, "tolerance": tol}
    try:
        spec = [paddle.static.InputSpec([None] + shape, "float32", "x")]
        # Native conv unless the custom op was asked for: the op is then used where it applies.
        with ops.op_path("auto" if with_custom_op else "native"):
            paddle.jit.save(deploy, os.path.join(tmp, MODEL_PREFIX), input_spec=spec)
        if verify:
            summary["paddle_inference_max_diff"] = _check("paddle.inference", run_paddle_inference(tmp, x), ref, tol)
        if onnx:
            import paddle2onnx

            onnx_tmp = os.path.join(tmp, MODEL_PREFIX + ".onnx")
            # optimize_tool="onnxoptimizer": the default one pip-installs packages at run time.
            paddle2onnx.export(_model_file(tmp), os.path.join(tmp, MODEL_PREFIX + ".pdiparams"), onnx_tmp,
                               opset_version=opset, enable_onnx_checker=True, optimize_tool="onnxoptimizer")
            if verify:
                summary["onnxruntime_max_diff"] = _check("onnxruntime", run_onnxruntime(onnx_tmp, x), ref, tol)
        files = []
        for name in sorted(os.listdir(tmp)):
            os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
            files.append(os.path.join(out_dir, name))
        summary["files"] = files
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    info = dict(summary, arch=cfg["Arch"]["name"], class_num=cfg["Arch"].get("class_num"))
    with atomic_path(os.path.join(out_dir, "export_info.json")) as path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2)
    log.info(f"exported {cfg['Arch']['name']} ({summary['op']} conv) to {out_dir}: "
             + ", ".join(f"{k} {summary[k]:.2e}" for k in summary if k.endswith("max_diff")))
    return summary
