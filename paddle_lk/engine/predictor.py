"""``paddle_lk.Predictor``: predictions from an exported model directory, without the training config.

An export directory (``tools/export.py``) holds the program, its parameters, ``export_info.json`` (the
task) and the deploy files the toolkits' own deploy code reads: PaddleClas's ``inference.yml`` and
``label_list.txt`` for classification, PaddleSeg's ``deploy.yaml`` for segmentation, PaddleDetection's
``infer_cfg.yml`` for detection. The predictor reads the same files and preprocesses with the same code
(PaddleSeg's ``transforms.Compose``, PaddleDetection's ``ppdet.data.transform`` operators), so what it
computes is what those tools compute. The toolkits are imported only when a segmentation or detection
export is opened: importing paddle_lk stays toolkit-free.

Results, one JSON-serialisable dict per image (``file`` is None for arrays and PIL images):

* cls: ``{"file", "class_ids", "scores", "label_names"}``, the top-k classes, best first;
* seg: ``{"file", "mask", "classes", "label_map"}``: ``label_map`` the int32 ``[H, W]`` class map at the
  image's own size (a numpy array: not JSON, see :meth:`Predictor.json_result`), ``classes`` the sorted
  class ids in it, ``mask`` the written pseudo-colour PNG (None without an output dir);
* det: ``{"file", "boxes", "image"}``: ``boxes`` ``[{"class_id", "label_name", "score", "bbox_xywh"}]``
  (x, y, width, height in the image's pixels) with ``score >= threshold``, ``image`` the written drawing
  (None without an output dir); instance segmentation adds ``masks``, uint8 ``[K, H, W]`` (a numpy array),
  one per box.

Backends: Paddle Inference (default) with the fastest correct settings for the machine -- oneDNN on
CPU for programs of the native conv, the custom op registered (and oneDNN off) for programs that use
it, the GPU when Paddle has one -- or ONNX Runtime (``backend="onnx"``, needs the export's ``.onnx``).
"""
from __future__ import annotations

import importlib
import json
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import yaml
from PIL import Image

from .. import ops
from ..errors import ConfigError, DataError
from ..integrations import det_infer
from ..io.atomic import atomic_path
from ..utils.log import native_stderr_to_log
from .data import IMG_EXTENSIONS, image_paths, read_class_names
from .export import CLS_DEPLOY_CONFIG, MODEL_PREFIX, model_file
from .runtime import check_interrupt
from .transforms import build_transforms, to_chw_float

__all__ = ["Predictor", "DEPLOY_FILES"]

ImageInput = Union[str, "os.PathLike[str]", np.ndarray, Image.Image]
Session = Callable[[Dict[str, np.ndarray]], List[np.ndarray]]

# task -> the deploy file its toolkit's deploy code reads (also how an export without export_info.json is told)
DEPLOY_FILES = {"cls": CLS_DEPLOY_CONFIG, "seg": "deploy.yaml", "det": "infer_cfg.yml"}
TOOLKIT_PREFIX = "model"  # PaddleSeg's and PaddleDetection's deploy tools read model.* (tasks/seg.py, tasks/det.py)
_TOOLKIT_NAMES = {"seg": ("PaddleSeg", "paddleseg"), "det": ("PaddleDetection", "paddledet")}


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _read_yaml(path: str) -> Dict[str, Any]:
    """A deploy file as a dict; ConfigError naming the file when it is not a YAML mapping."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a YAML mapping, got {type(doc).__name__}")
    return doc


def _toolkit(task: str) -> Any:
    """``paddle_lk.integrations.seg`` / ``.det``, registered: PaddleSeg / PaddleDetection set up as
    paddle_lk's tools use them (workarounds installed, their stdout logging routed to the log). Imported
    by name on first use, as :func:`paddle_lk.engine.tasks.get_task` does: ``integrations.det``
    imports PaddleDetection on import, which ``import paddle_lk`` must not."""
    name, dist = _TOOLKIT_NAMES[task]
    try:
        module = importlib.import_module(f"..integrations.{task}", __package__)
        module.register()
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("paddleseg", "ppdet"):
            raise ConfigError(f"a {task} export needs {name} (pip install {dist})") from None
        raise
    return module


def _output_path(output_dir: Optional[str], item: ImageInput, index: int) -> Optional[str]:
    """``<output_dir>/<image stem>.png`` (``image_<index>.png`` for arrays), or None without a dir."""
    if output_dir is None:
        return None
    stem = (os.path.splitext(os.path.basename(os.fspath(item)))[0] if isinstance(item, (str, os.PathLike))
            else f"image_{index}")
    return os.path.join(os.fspath(output_dir), stem + ".png")


def _file_of(item: ImageInput) -> Optional[str]:
    return os.fspath(item) if isinstance(item, (str, os.PathLike)) else None


def _eight_bit(img: Image.Image) -> Image.Image:
    """16-bit images (PIL modes I;16 / I) scaled to 8 bits as OpenCV's imread does (>> 8), not clipped."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.uint32)
        return Image.fromarray((arr >> 8).clip(0, 255).astype(np.uint8), mode="L")
    return img


class Predictor:
    """Run an exported model (classification, segmentation or detection) on images.

    The task comes from ``export_info.json`` (or, without one, from the deploy file present:
    ``inference.yml``, ``deploy.yaml`` or ``infer_cfg.yml``).

    Args:
        model_dir: an export directory from ``tools/export.py``.
        backend: ``paddle`` (Paddle Inference) or ``onnx`` (ONNX Runtime: ``inference.onnx`` for
            classification, ``model.onnx`` for segmentation / detection; export with ``--onnx``).
        device: ``cpu``, ``gpu`` or None (the GPU when this Paddle has one); Paddle Inference only.
        threads: CPU threads (default: all cores).
        topk: classification: classes per image (default: the export's ``PostProcess.Topk.topk``).
        threshold: detection: the minimum box score kept (default: ``infer_cfg.yml``'s
            ``draw_threshold``).

    Raises:
        FileNotFoundError: not a directory, not an export directory, a missing deploy or model file, a
            classification export without ``inference.onnx`` for the onnx backend.
        ConfigError: an unreadable ``export_info.json`` or deploy file, an unknown task or backend, a
            segmentation / detection export without an ``.onnx`` file for the onnx backend, the
            export's toolkit not installed.
    """

    def __init__(self, model_dir: Union[str, "os.PathLike[str]"], backend: str = "paddle",
                 device: Optional[str] = None, threads: Optional[int] = None, topk: Optional[int] = None,
                 threshold: Optional[float] = None) -> None:
        self.model_dir = os.fspath(model_dir)
        if not os.path.isdir(self.model_dir):
            raise FileNotFoundError(f"{self.model_dir}: not a directory (an export directory from tools/export.py)")
        if backend not in ("paddle", "onnx"):
            raise ConfigError(f"backend '{backend}': expected 'paddle' or 'onnx'")
        self.info: Dict[str, Any] = self._read_info()
        self.task: str = self.info.get("task") or self._task_from_files()
        if self.task not in DEPLOY_FILES:
            raise ConfigError(f"{os.path.join(self.model_dir, 'export_info.json')}: task '{self.task}', expected "
                              f"one of {sorted(DEPLOY_FILES)}")
        self.topk: Optional[int] = None
        self.threshold: Optional[float] = None
        self.class_names: Optional[Dict[int, str]] = None
        self.stride = 1  # det: images padded to a multiple of it (infer_cfg.yml's PadStride)
        self._prefix = MODEL_PREFIX  # the program's file name: <prefix>.json / .pdmodel / .pdiparams / .onnx
        self._files: Optional[Tuple[str, str]] = None  # seg: the files deploy.yaml names
        self._program = ""  # the program file the backend runs (named in errors)
        {"cls": self._init_cls, "seg": self._init_seg, "det": self._init_det}[self.task](topk, threshold)
        self.backend = backend
        self._session, self.input_names = (self._paddle_session(device, threads) if backend == "paddle"
                                           else self._onnx_session(threads))

    # ------------------------------------------------------------------ deploy files
    def _read_info(self) -> Dict[str, Any]:
        path = os.path.join(self.model_dir, "export_info.json")
        if not os.path.isfile(path):
            return {}
        try:
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(info, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        return info

    def _task_from_files(self) -> str:
        """An export without export_info.json (copied by hand): the task whose deploy file is there."""
        for task, name in DEPLOY_FILES.items():
            if os.path.isfile(os.path.join(self.model_dir, name)):
                return task
        raise FileNotFoundError(f"{self.model_dir}: not an export directory (no export_info.json, "
                                f"{', '.join(DEPLOY_FILES.values())}; see tools/export.py)")

    def _deploy_file(self) -> str:
        path = os.path.join(self.model_dir, DEPLOY_FILES[self.task])
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: not found (a {self.task} export has it; export the model again with "
                                    f"this paddle_lk version)")
        return path

    def _init_cls(self, topk: Optional[int], threshold: Optional[float]) -> None:
        deploy = self._deploy_file()
        self.deploy = _read_yaml(deploy)
        self.preprocess = build_transforms(self.deploy["PreProcess"]["transform_ops"], f"{deploy}: PreProcess")
        self.channels = int(self.deploy["Global"].get("image_channels", 3))
        post = self.deploy["PostProcess"]["Topk"]
        if topk is not None and (isinstance(topk, bool) or not isinstance(topk, int) or topk < 1):
            raise ConfigError(f"topk must be a positive integer, got {topk!r}")
        self.topk = int(topk or post["topk"])
        names_file = post.get("class_id_map_file")
        if names_file and not os.path.isfile(names_file):  # the directory moved: the copy next to the model
            names_file = os.path.join(self.model_dir, os.path.basename(names_file))
        self.class_names = read_class_names(names_file) if names_file and os.path.isfile(names_file) else None
        self._prefix = MODEL_PREFIX

    def _init_seg(self, topk: Optional[int], threshold: Optional[float]) -> None:
        """PaddleSeg's deploy config: ``Deploy.transforms`` built into ``paddleseg.transforms.Compose`` by
        type name through ``manager.TRANSFORMS``, as PaddleSeg's ``deploy/python/infer.py`` does."""
        path = self._deploy_file()
        self.deploy = _read_yaml(path)
        dep = self.deploy.get("Deploy")
        if not isinstance(dep, dict):
            raise ConfigError(f"{path}: no Deploy section (PaddleSeg's deploy.yaml)")
        _toolkit("seg")
        from paddleseg.cvlibs import manager
        from paddleseg.transforms import Compose

        transforms = []
        for i, op in enumerate(dep.get("transforms") or []):
            args = dict(op or {})
            name = args.pop("type", None)
            where = f"{path}: Deploy.transforms.{i}"
            if name not in manager.TRANSFORMS.components_dict:
                raise ConfigError(f"{where}.type: '{name}' is not a PaddleSeg transform")
            try:
                transforms.append(manager.TRANSFORMS[name](**args))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: {name}({exc})") from None
        self.preprocess = Compose(transforms)
        self._prefix = TOOLKIT_PREFIX
        # the files PaddleSeg's DeployConfig reads (Deploy.model / Deploy.params)
        self._files = (os.path.join(self.model_dir, dep.get("model") or TOOLKIT_PREFIX + ".json"),
                       os.path.join(self.model_dir, dep.get("params") or TOOLKIT_PREFIX + ".pdiparams"))

    def _init_det(self, topk: Optional[int], threshold: Optional[float]) -> None:
        """PaddleDetection's deploy config: ``Preprocess`` as ``ppdet.data.transform`` operators by name
        (plus ``PadStride``), ``label_list``, ``draw_threshold``."""
        path = self._deploy_file()
        self.deploy = _read_yaml(path)
        _toolkit("det")
        self.preprocess, self.stride = det_infer.deploy_transforms(self.deploy.get("Preprocess") or [],
                                                                   f"{path}: Preprocess")
        self.class_names = {i: str(n) for i, n in enumerate(self.deploy.get("label_list") or [])}
        self.threshold = float(threshold if threshold is not None else self.deploy.get("draw_threshold", 0.5))
        self._prefix = TOOLKIT_PREFIX

    # ------------------------------------------------------------------ backends
    def _program_files(self) -> Tuple[str, str]:
        """(program, parameters) for Paddle Inference. Raises FileNotFoundError naming the missing file."""
        if self._files is None:
            return model_file(self.model_dir, self._prefix), os.path.join(self.model_dir, self._prefix + ".pdiparams")
        if not os.path.isfile(self._files[0]):
            raise FileNotFoundError(f"{self._files[0]}: not found (named by "
                                    f"{os.path.join(self.model_dir, DEPLOY_FILES['seg'])}: Deploy.model)")
        return self._files

    def _paddle_session(self, device: Optional[str], threads: Optional[int]) -> Tuple[Session, List[str]]:
        import paddle
        import paddle.inference as pi

        program, params = self._program_files()
        self._program = program
        config = pi.Config(program, params)
        config.disable_glog_info()
        has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
        if device == "gpu" and not has_gpu:
            raise ConfigError("device gpu: this Paddle has no CUDA GPU (install paddlepaddle-gpu, or use the CPU)")
        use_gpu = device == "gpu" or (device is None and has_gpu)
        if use_gpu:
            config.enable_use_gpu(1000, 0)
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(int(threads or os.cpu_count() or 1))
            config.enable_mkldnn()  # the fastest CPU path; ops.create_predictor turns it off for the custom op
        try:
            with native_stderr_to_log():  # Paddle Inference's pass notices: the log, not the console
                predictor = ops.create_predictor(config)
        except Exception as exc:  # noqa: BLE001 - a corrupt or truncated program / parameter file
            last = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
            raise ConfigError(f"{self.model_dir}: cannot load the exported model ({os.path.basename(program)}, "
                              f"{os.path.basename(params)}): {last}") from None
        names = list(predictor.get_input_names())

        def run(feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
            for name in names:
                handle = predictor.get_input_handle(name)
                array = np.ascontiguousarray(feeds[name], dtype="float32")
                handle.reshape(list(array.shape))
                handle.copy_from_cpu(array)
            predictor.run()
            return [predictor.get_output_handle(n).copy_to_cpu() for n in predictor.get_output_names()]

        return run, names

    def _onnx_session(self, threads: Optional[int]) -> Tuple[Session, List[str]]:
        import onnxruntime as ort

        path = self._program = os.path.join(self.model_dir, self._prefix + ".onnx")
        if not os.path.isfile(path):
            if self.task == "cls":
                raise FileNotFoundError(f"{path}: not found (export with --onnx for the onnx backend)")
            raise ConfigError(f"{self.model_dir}: the export has no ONNX file ({os.path.basename(path)}); export "
                              f"with --onnx for the onnx backend, or use the paddle backend")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or os.cpu_count() or 1)
        try:
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - a corrupt or truncated .onnx file
            last = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
            raise ConfigError(f"{path}: cannot load the ONNX model: {last}") from None
        names = [i.name for i in session.get_inputs()]

        def run(feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
            return session.run(None, {n: np.ascontiguousarray(feeds[n], dtype="float32") for n in names})

        return run, names

    def _run(self, batch: np.ndarray) -> np.ndarray:
        """The program's first output for ``batch`` fed to its first input (classification: logits
        ``[N, class_num]`` of ``[N, C, H, W]`` float32)."""
        return self._session({self.input_names[0]: batch})[0]

    # ------------------------------------------------------------------ inputs
    def _load(self, item: ImageInput) -> Any:
        if isinstance(item, np.ndarray):  # RGB HWC uint8, as PaddleClas's predictor takes arrays
            if self.channels == 3:
                return self._rgb(item)
            return item
        if isinstance(item, Image.Image):
            return np.asarray(_eight_bit(item).convert("RGB" if self.channels == 3 else "L"))
        try:
            with Image.open(item) as img:
                return np.asarray(_eight_bit(img).convert("RGB" if self.channels == 3 else "L"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{item}: cannot read image ({exc})") from None

    @staticmethod
    def _rgb(item: Union[np.ndarray, Image.Image]) -> np.ndarray:
        """An in-memory image as RGB ``[H, W, 3]`` uint8 (arrays are taken as RGB HWC already)."""
        if isinstance(item, Image.Image):
            return np.asarray(item.convert("RGB"))
        arr = np.asarray(item)
        if arr.ndim == 2:  # grayscale
            arr = np.repeat(arr[..., None], 3, axis=-1)
        if arr.ndim != 3 or arr.shape[-1] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
            raise DataError(f"image array of shape {arr.shape}: expected RGB [H, W, 3] (or grayscale [H, W])")
        return arr

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
            elif isinstance(item, (np.ndarray, Image.Image)):
                out.append(item)
            else:
                raise DataError(f"cannot predict on a {type(item).__name__}: give image paths, folders, image-list "
                                f"files, RGB arrays [H, W, 3] or PIL images")
        return out

    # ------------------------------------------------------------------ predict
    def predict(self, inputs: Union[ImageInput, Sequence[ImageInput]], batch_size: Optional[int] = None,
                output_dir: Optional[str] = None) -> List[Dict[str, Any]]:
        """One result per image (see the module docstring for each task's dict).

        Args:
            inputs: image files, folders, image-list files, RGB ``[H, W, 3]`` uint8 arrays or PIL images.
            batch_size: classification: images per run (default: the export's ``Global.batch_size``);
                segmentation and detection run one image at a time (their images differ in size).
            output_dir: segmentation / detection: write ``<output_dir>/<image stem>.png`` (a pseudo-colour
                mask / the image with its boxes drawn), atomically; None: write nothing.

        Raises:
            DataError: an image that cannot be read (the message names the file), an empty folder.
        """
        items = self.expand(inputs)
        if self.task == "cls":
            return self._predict_cls(items, batch_size)
        step = self._predict_seg if self.task == "seg" else self._predict_det
        results = []
        for i, item in enumerate(items):
            check_interrupt()
            results.append(step(item, _output_path(output_dir, item, i)))
        return results

    def _predict_cls(self, items: List[ImageInput], batch_size: Optional[int]) -> List[Dict[str, Any]]:
        bs = int(batch_size or self.deploy["Global"].get("batch_size", 1) or 1)
        results: List[Dict[str, Any]] = []
        for start in range(0, len(items), bs):
            check_interrupt()
            chunk = items[start:start + bs]
            batch = np.stack([to_chw_float(self.preprocess(self._load(item)), self.channels) for item in chunk])
            out = np.asarray(self._run(batch), dtype="float64")
            # exports carry PaddleClas's softmax (export_info "output"); older ones give logits
            probs = out if self.info.get("output") == "probabilities" else _softmax(out)
            k = min(self.topk, probs.shape[-1])
            for item, p in zip(chunk, probs):
                ids = np.argsort(-p, kind="stable")[:k].tolist()
                results.append({"file": _file_of(item), "class_ids": ids,
                                "scores": [round(float(p[i]), 6) for i in ids],
                                "label_names": [self.class_names.get(i, str(i)) for i in ids]
                                if self.class_names else []})
        return results

    def _predict_seg(self, item: ImageInput, dst: Optional[str]) -> Dict[str, Any]:
        """PaddleSeg's deploy path: Compose -> program (``x`` ``[1, 3, h, w]`` float32 -> int32 label map
        ``[1, 1, h, w]``), then the map resized back to the image (nearest) by PaddleSeg's own
        ``reverse_transform`` of the transforms' ``trans_info``."""
        import cv2
        import paddle
        from paddleseg.core.infer import reverse_transform
        from paddleseg.utils import visualize

        if isinstance(item, (str, os.PathLike)):
            img = cv2.imread(os.fspath(item), cv2.IMREAD_COLOR)  # what Compose reads from a path: BGR
            if img is None:
                raise DataError(f"{os.fspath(item)}: cannot read image (missing, or not an image OpenCV decodes)")
        else:
            img = np.ascontiguousarray(self._rgb(item)[..., ::-1])  # Compose turns BGR into RGB
        data = self.preprocess({"img": img.astype("float32")})
        label = self._session({self.input_names[0]: data["img"][None]})[0]
        # float for the resize: PaddleSeg casts int maps the same way on CPU (nearest keeps labels exact)
        label = reverse_transform(paddle.to_tensor(label.astype("float32")), data["trans_info"], mode="nearest")
        label_map = label.numpy()[0, 0].astype(np.int32)
        if dst is not None:
            with atomic_path(dst, suffix=".png") as tmp:
                colors = visualize.get_color_map_list(256)
                visualize.get_pseudo_color_map(label_map.astype(np.uint8), colors).save(tmp, format="PNG")
        return {"file": _file_of(item), "mask": dst, "classes": sorted(int(c) for c in np.unique(label_map)),
                "label_map": label_map}

    def _predict_det(self, item: ImageInput, dst: Optional[str]) -> Dict[str, Any]:
        """PaddleDetection's deploy path: Decode + ``Preprocess`` + PadStride -> program (``image``
        ``[1, 3, H, W]``, ``im_shape`` / ``scale_factor`` ``[1, 2]`` float32 -> ``bbox`` ``[M, 6]`` =
        class, score, x1, y1, x2, y2 in the image's pixels, ``bbox_num`` ``[1]``, ``mask``
        ``[M, H0, W0]`` for instance segmentation); boxes kept when ``class >= 0`` (-1 marks an empty box)
        and ``score >= threshold``."""
        source = os.fspath(item) if isinstance(item, (str, os.PathLike)) else self._rgb(item)
        try:
            original, feeds = det_infer.deploy_inputs(source, self.preprocess, self.stride)
        except OSError as exc:  # a missing / unreadable file
            raise DataError(f"{source}: cannot read image ({exc.strerror or exc})") from None
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ConfigError(f"{self._program}: program inputs {missing} are not PaddleDetection's "
                              f"(image, im_shape, scale_factor)")
        outs = self._session({n: feeds[n] for n in self.input_names})
        bbox, num = np.asarray(outs[0], np.float32).reshape(-1, 6), np.asarray(outs[1]).reshape(-1)
        n = int(num[0]) if num.size else len(bbox)
        bbox = bbox[:n]
        mask = np.asarray(outs[2])[:n] if len(outs) > 2 else None
        keep = (bbox[:, 0] >= 0) & (bbox[:, 1] >= self.threshold)
        boxes, rles = det_infer.detection_records(bbox[keep], mask[keep] if mask is not None else None,
                                                  self.threshold)
        names = self.class_names or {}
        if dst is not None:
            # every drawn class needs a name in PaddleDetection's visualizer
            catid2name = {**{b["category_id"]: str(b["category_id"]) for b in boxes}, **names}
            drawn = det_infer.draw(Image.fromarray(original), boxes, rles, catid2name, self.threshold)
            with atomic_path(dst, suffix=".png") as tmp:
                drawn.save(tmp, format="PNG")
        result: Dict[str, Any] = {"file": _file_of(item), "boxes": [
            {"class_id": b["category_id"], "label_name": names.get(b["category_id"]), "score": b["score"],
             "bbox_xywh": b["bbox"]} for b in boxes], "image": dst}
        if mask is not None:
            result["masks"] = mask[keep].astype(np.uint8)
        return result

    @staticmethod
    def json_result(result: Dict[str, Any]) -> Dict[str, Any]:
        """A result without its arrays (seg ``label_map``, det ``masks``): what ``tools/predict.py`` prints."""
        return {k: v for k, v in result.items() if not isinstance(v, np.ndarray)}
