"""``paddle_lk.Predictor``: predictions from an exported model directory, without the training config.

An export directory (``tools/export.py``) holds the program, its parameters, ``export_info.json`` (the
task) and the deploy files the toolkits' own deploy code reads: PaddleClas's ``inference.yml`` and
``label_list.txt`` for classification (PaddleSeg's ``deploy.yaml`` and PaddleDetection's
``infer_cfg.yml`` for the other tasks). The predictor reads the same files, so what it computes is what
those tools compute.

Backends: Paddle Inference (default) with the fastest correct settings for the machine -- oneDNN on
CPU for programs of the native conv, the custom op registered (and oneDNN off) for programs that use
it, the GPU when Paddle has one -- or ONNX Runtime (``backend="onnx"``, needs ``inference.onnx``).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import yaml
from PIL import Image

from .. import ops
from ..errors import ConfigError, DataError
from .data import IMG_EXTENSIONS, image_paths, read_class_names
from .export import CLS_DEPLOY_CONFIG, MODEL_PREFIX, model_file
from .transforms import build_transforms, to_chw_float

__all__ = ["Predictor"]

ImageInput = Union[str, "os.PathLike[str]", np.ndarray, Image.Image]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class Predictor:
    """Run an exported model on images.

    Args:
        model_dir: an export directory (``inference.json``/``.pdmodel`` + ``.pdiparams`` + deploy files).
        backend: ``paddle`` (Paddle Inference) or ``onnx`` (ONNX Runtime, ``inference.onnx``).
        device: ``cpu``, ``gpu`` or None (the GPU when this Paddle has one).
        threads: CPU threads (default: all cores).
        topk: classes per image (default: the export's ``PostProcess.Topk.topk``).

    Raises:
        FileNotFoundError / ConfigError: not an export directory, a missing deploy file, an unknown backend.
    """

    def __init__(self, model_dir: Union[str, "os.PathLike[str]"], backend: str = "paddle",
                 device: Optional[str] = None, threads: Optional[int] = None, topk: Optional[int] = None) -> None:
        self.model_dir = os.fspath(model_dir)
        if not os.path.isdir(self.model_dir):
            raise FileNotFoundError(f"{self.model_dir}: not a directory (an export directory from tools/export.py)")
        info_path = os.path.join(self.model_dir, "export_info.json")
        self.info: Dict[str, Any] = json.load(open(info_path, encoding="utf-8")) if os.path.isfile(info_path) else {}
        self.task = self.info.get("task", "cls")
        if self.task != "cls":
            raise ConfigError(f"{self.model_dir}: a {self.task} export; paddle_lk.Predictor reads classification "
                              f"exports (segmentation/detection: PaddleSeg's / PaddleDetection's deploy tools)")
        deploy = os.path.join(self.model_dir, CLS_DEPLOY_CONFIG)
        if not os.path.isfile(deploy):
            raise FileNotFoundError(f"{self.model_dir}: no {CLS_DEPLOY_CONFIG} (export the model again with this "
                                    f"paddle_lk version)")
        with open(deploy, encoding="utf-8") as f:
            self.deploy = yaml.safe_load(f)
        self.preprocess = build_transforms(self.deploy["PreProcess"]["transform_ops"], f"{deploy}: PreProcess")
        self.channels = int(self.deploy["Global"].get("image_channels", 3))
        post = self.deploy["PostProcess"]["Topk"]
        self.topk = int(topk or post["topk"])
        names_file = post.get("class_id_map_file")
        if names_file and not os.path.isfile(names_file):  # the directory moved: the copy next to the model
            names_file = os.path.join(self.model_dir, os.path.basename(names_file))
        self.class_names = read_class_names(names_file) if names_file and os.path.isfile(names_file) else None
        if backend not in ("paddle", "onnx"):
            raise ConfigError(f"backend '{backend}': expected 'paddle' or 'onnx'")
        self.backend = backend
        self._run = self._paddle_runner(device, threads) if backend == "paddle" else self._onnx_runner(threads)

    # ------------------------------------------------------------------ backends
    def _paddle_runner(self, device: Optional[str], threads: Optional[int]):
        import paddle
        import paddle.inference as pi

        config = pi.Config(model_file(self.model_dir), os.path.join(self.model_dir, MODEL_PREFIX + ".pdiparams"))
        config.disable_glog_info()
        use_gpu = (device == "gpu") or (device is None and paddle.device.is_compiled_with_cuda()
                                        and paddle.device.cuda.device_count() > 0)
        if use_gpu:
            config.enable_use_gpu(1000, 0)
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(int(threads or os.cpu_count() or 1))
            config.enable_mkldnn()  # the fastest CPU path; ops.create_predictor turns it off for the custom op
        predictor = ops.create_predictor(config)
        name = predictor.get_input_names()[0]

        def run(batch: np.ndarray) -> np.ndarray:
            handle = predictor.get_input_handle(name)
            handle.reshape(list(batch.shape))
            handle.copy_from_cpu(np.ascontiguousarray(batch, dtype="float32"))
            predictor.run()
            return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()

        return run

    def _onnx_runner(self, threads: Optional[int]):
        import onnxruntime as ort

        path = os.path.join(self.model_dir, MODEL_PREFIX + ".onnx")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: not found (export with --onnx for the onnx backend)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or os.cpu_count() or 1)
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda batch: session.run(None, {name: np.ascontiguousarray(batch, dtype="float32")})[0]

    # ------------------------------------------------------------------ inputs
    def _load(self, item: ImageInput) -> Any:
        if isinstance(item, np.ndarray):  # RGB HWC uint8, as PaddleClas's predictor takes arrays
            return item
        if isinstance(item, Image.Image):
            return np.asarray(item.convert("RGB" if self.channels == 3 else "L"))
        try:
            with Image.open(item) as img:
                return np.asarray(img.convert("RGB" if self.channels == 3 else "L"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{item}: cannot read image ({exc})") from None

    @staticmethod
    def expand(inputs: Union[ImageInput, Sequence[ImageInput]]) -> List[ImageInput]:
        """Paths (image files, folders, image-list files), arrays or PIL images, as a flat list."""
        items = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        out: List[ImageInput] = []
        for item in items:
            if isinstance(item, (str, os.PathLike)):
                path = os.fspath(item)
                out.extend(image_paths(path) if (os.path.isdir(path) or not path.lower().endswith(IMG_EXTENSIONS))
                           else [path])
            else:
                out.append(item)
        return out

    # ------------------------------------------------------------------ predict
    def predict(self, inputs: Union[ImageInput, Sequence[ImageInput]], batch_size: Optional[int] = None
                ) -> List[Dict[str, Any]]:
        """Top-k classes per image: ``[{"file", "class_ids", "scores", "label_names"}]``, best first
        (``file`` is None for arrays and PIL images)."""
        items = self.expand(inputs)
        bs = int(batch_size or self.deploy["Global"].get("batch_size", 1) or 1)
        results: List[Dict[str, Any]] = []
        for start in range(0, len(items), bs):
            chunk = items[start:start + bs]
            batch = np.stack([to_chw_float(self.preprocess(self._load(item)), self.channels) for item in chunk])
            probs = _softmax(np.asarray(self._run(batch), dtype="float64"))
            k = min(self.topk, probs.shape[-1])
            for item, p in zip(chunk, probs):
                ids = np.argsort(-p, kind="stable")[:k].tolist()
                results.append({"file": os.fspath(item) if isinstance(item, (str, os.PathLike)) else None,
                                "class_ids": ids, "scores": [round(float(p[i]), 6) for i in ids],
                                "label_names": [self.class_names.get(i, str(i)) for i in ids]
                                if self.class_names else []})
        return results
