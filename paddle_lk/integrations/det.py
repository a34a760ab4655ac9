"""PaddleDetection: RepLKNet / VAN backbones as ``@register @serializable`` modules with
``out_shape``, training / evaluation through PaddleDetection's ``Trainer`` and paddle_lk's own
export and drawing (``Trainer.export`` fails on Paddle 3.x with ppdet 2.5.0).

CLI (through ``tools/train.py`` / ``eval.py`` / ``infer.py`` / ``export.py``, or :func:`main`)::

    train  -c CFG [-o key=value ...] [--output DIR] [--eval] [--weights RESUME.pdparams]
    eval   -c CFG --weights MODEL.pdparams [-o ...]
    infer  -c CFG --weights MODEL.pdparams --image IMG [IMG ...] [--output DIR] [--threshold 0.5]
    export -c CFG --weights MODEL.pdparams [--output DIR]

``-o`` takes dotted keys (``RepLKNet31B.channels=[8,16,32,64]``, ``TrainReader.batch_size=1``);
values are YAML. ``--output`` is PaddleDetection's ``save_dir`` for train.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import paddle
import paddle.nn as nn

from ..checkpoint import load_checkpoint
from ..io.atomic import atomic_path
from . import compat
from ._common import (BACKBONE_NAMES, LKBackbone, UsageError, check_file, cli_parser, jit_save_portable,
                      parse_override_value, run_cli)

__all__ = ["register", "BACKBONES", "load_det_config", "build_model", "train", "evaluate", "infer",
           "export", "main"]

BACKBONES: Dict[str, type] = {}


class _DetBackbone(LKBackbone):
    """Base of the PaddleDetection backbones: ``forward(inputs)`` reads ``inputs['image']``."""

    def forward(self, inputs) -> List[paddle.Tensor]:  # type: ignore[override]
        x = inputs["image"] if isinstance(inputs, dict) else inputs
        return self.model(x)

    @property
    def out_shape(self):
        from ppdet.modeling.shape_spec import ShapeSpec

        return [ShapeSpec(channels=c, stride=s) for c, s in zip(self.feat_channels, self.feat_strides)]


def _make(name: str) -> type:
    doc = (f"{name} backbone for PaddleDetection.\n\n    Args:\n"
           f"        out_indices (list): stages to return (0-3, strides 4-32).\n"
           f"        pretrained (str): converted .pdparams / official .pth path, or None.\n")
    cls = type(name, (_DetBackbone,), {"arch": name, "__doc__": doc, "__module__": __name__})
    return cls


for _name in BACKBONE_NAMES:
    BACKBONES[_name] = _make(_name)
    globals()[_name] = BACKBONES[_name]


def register() -> List[str]:
    """``@register @serializable`` every backbone into PaddleDetection and install the
    PaddleDetection workarounds of :mod:`.compat` (idempotent)."""
    from ppdet.core.workspace import global_config, register as ppdet_register, serializable

    for name, cls in BACKBONES.items():
        if name not in global_config:
            ppdet_register(serializable(cls))
    compat.install("ppdet")
    return list(BACKBONES)


# ---------------------------------------------------------------------------------------------
# Config

def _reset_global_config() -> None:
    """PaddleDetection merges every loaded YAML into one process-wide dict; drop what an earlier
    config left there (module defaults stay) so configs loaded in one process do not mix."""
    from ppdet.core.config.schema import SchemaDict
    from ppdet.core.workspace import global_config

    for key in list(global_config):
        value = global_config[key]
        if isinstance(value, SchemaDict):
            dict.clear(value)
        else:
            del global_config[key]


def _set_override(cfg, key: str, value: Any) -> None:
    """Set dotted ``key`` in PaddleDetection's config: dict sections (created when missing, as
    PaddleDetection allows), list indices and attributes of YAML-tagged objects such as
    ``TrainDataset: !COCODataSet`` (``TrainDataset.dataset_dir=...``)."""
    parts = key.split(".")
    if not all(parts):
        raise UsageError(f"override key '{key}' has an empty component")
    node = cfg
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[:i + 1])
        if isinstance(node, list):
            try:
                idx = int(part)
                node[idx]  # noqa: B018 -- validates the index
            except (ValueError, IndexError):
                raise UsageError(f"override '{key}': '{where}' is not a valid list index") from None
            if last:
                node[idx] = value
            else:
                node = node[idx]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                try:
                    child = node[part]
                except KeyError:
                    child = None
                if child is None:
                    child = node[part] = {}
                node = child
        else:
            if not hasattr(node, part):
                raise UsageError(f"override '{key}': {type(node).__name__} has no attribute '{part}'")
            if last:
                setattr(node, part, value)
            else:
                node = getattr(node, part)


def load_det_config(path: str, overrides: Sequence[str] = ()):
    """PaddleDetection's ``load_config`` (``_BASE_`` merged) + ``-o`` overrides, CPU defaults set."""
    from ppdet.core.workspace import load_config

    register()
    check_file(path, "config")
    _reset_global_config()
    cfg = load_config(path)
    if "architecture" not in cfg:
        raise UsageError(f"{path}: not a PaddleDetection config (no 'architecture' key)")
    for item in overrides:
        if "=" not in item:
            raise UsageError(f"override '{item}' is not key=value")
        key, text = item.split("=", 1)
        _set_override(cfg, key.strip(), parse_override_value(text))
    # Paddle is whatever was installed: use a GPU only when this build has one.
    use_gpu = bool(cfg.get("use_gpu", False)) and paddle.device.is_compiled_with_cuda() \
        and paddle.device.cuda.device_count() > 0
    cfg["use_gpu"] = use_gpu
    paddle.set_device("gpu" if use_gpu else "cpu")
    return cfg


def build_model(cfg) -> nn.Layer:
    """The config's architecture through PaddleDetection's ``create``."""
    from ppdet.core.workspace import create

    return create(cfg.architecture)


def _check_dataset(cfg, key: str) -> None:
    ds = cfg.get(key)
    if ds is None:
        raise UsageError(f"config has no {key}")
    root = ds.dataset_dir
    anno = ds.get_anno() if hasattr(ds, "get_anno") else None
    if not os.path.isdir(root):
        raise UsageError(f"{key}.dataset_dir '{root}' is not a directory (set -o {key}.dataset_dir=PATH)")
    if anno and not os.path.isfile(anno):
        raise UsageError(f"{key} annotation file '{anno}' not found")


# ---------------------------------------------------------------------------------------------
# Train / eval / infer / export

def train(cfg, output: Optional[str] = None, validate: bool = False, resume: Optional[str] = None) -> Dict[str, Any]:
    """PaddleDetection ``Trainer.train``; checkpoints land in ``output/<config name>/``."""
    from ppdet.engine import Trainer

    _check_dataset(cfg, "TrainDataset")
    if validate:
        _check_dataset(cfg, "EvalDataset")
    if output:
        cfg["save_dir"] = output
    # COCO eval writes bbox.json / mask.json: next to the checkpoints, not in the cwd.
    cfg["output_eval"] = os.path.join(cfg.save_dir, cfg.filename, "eval")
    os.makedirs(cfg["output_eval"], exist_ok=True)
    trainer = Trainer(cfg, mode="train")
    _keep_metric_results(trainer)
    if resume:
        trainer.resume_weights(_weights_file(resume))
    elif cfg.get("pretrain_weights"):
        trainer.load_weights(cfg.pretrain_weights)
    trainer.train(validate)
    save_dir = os.path.join(cfg.save_dir, cfg.filename)
    out: Dict[str, Any] = {"save_dir": save_dir, "final": os.path.join(save_dir, "model_final.pdparams")}
    if validate:
        out.update(_metric_results(trainer))
    return out


def _keep_metric_results(trainer) -> None:
    """The Trainer resets its metrics right after logging them; keep the last non-empty results
    (per metric) so they can be returned."""
    original = trainer._reset_metrics
    trainer._paddle_lk_results = {}  # metric index -> results (metrics may be created later)

    def reset():
        for i, metric in enumerate(trainer._metrics):
            res = metric.get_results() if hasattr(metric, "get_results") else {}
            if res:
                trainer._paddle_lk_results[i] = dict(res)
        original()

    trainer._reset_metrics = reset


def _metric_results(trainer) -> Dict[str, Any]:
    from ppdet.metrics import COCOMetric

    out: Dict[str, Any] = {}
    kept = getattr(trainer, "_paddle_lk_results", {})
    for i, metric in enumerate(getattr(trainer, "_metrics", [])):
        res = kept.get(i) or (metric.get_results() if hasattr(metric, "get_results") else {})
        if not res and isinstance(metric, COCOMetric):
            # PaddleDetection stops COCO eval when the model detected nothing: AP is then 0.
            print("[det eval] no detections above the score threshold: COCO mAP is 0", flush=True)
            out["bbox_mAP"] = 0.0
        for key, values in (res or {}).items():
            values = list(np.asarray(values).reshape(-1))
            if values:
                out[f"{key}_mAP"] = float(values[0])  # COCO AP@[.5:.95]
                if len(values) > 1:
                    out[f"{key}_AP50"] = float(values[1])
    return out


def evaluate(cfg, weights: str, output: Optional[str] = None) -> Dict[str, Any]:
    """PaddleDetection ``Trainer.evaluate`` (COCO mAP through pycocotools); the detections
    (bbox.json / mask.json) go to ``output`` (default ``save_dir/<config name>/eval``)."""
    from ppdet.engine import Trainer

    _check_dataset(cfg, "EvalDataset")
    cfg["output_eval"] = output or os.path.join(cfg.get("save_dir", "output"), cfg.filename, "eval")
    os.makedirs(cfg["output_eval"], exist_ok=True)
    trainer = Trainer(cfg, mode="eval")
    _keep_metric_results(trainer)
    trainer.load_weights(_weights_file(weights))
    trainer.evaluate()
    res = _metric_results(trainer)
    print("[det eval] " + " ".join(f"{k} {v:.4f}" for k, v in res.items()), flush=True)
    return res


def _weights_file(weights: str) -> str:
    """PaddleDetection names checkpoints without the extension (``model_final``): accept both."""
    if weights and not os.path.isfile(weights) and os.path.isfile(weights + ".pdparams"):
        weights += ".pdparams"
    return check_file(weights, "--weights")


def _eval_model(cfg, weights: str) -> nn.Layer:
    model = build_model(cfg)
    load_checkpoint(model, _weights_file(weights))  # the one loader: same formats and messages as cls/seg
    model.eval()
    return model


def _test_transforms(cfg):
    from ppdet.data.reader import Compose

    sample = cfg["TestReader"]["sample_transforms"]
    return Compose(sample, num_classes=cfg.get("num_classes", 80))


def _prepare(cfg, image_path: str, transforms) -> Dict[str, paddle.Tensor]:
    """One image through the TestReader's sample transforms into model inputs (batch of 1)."""
    sample = {"im_file": image_path, "im_id": np.array([0])}
    with open(image_path, "rb") as f:
        sample["image"] = f.read()
    sample = transforms(sample)
    image = sample["image"]
    # Pad to the reader's stride like PadBatch does.
    stride = 1
    for op in cfg["TestReader"].get("batch_transforms", []) or []:
        if "PadBatch" in op:
            stride = int((op["PadBatch"] or {}).get("pad_to_stride", 1))
    if stride > 1:
        c, h, w = image.shape
        ph, pw = int(np.ceil(h / stride) * stride), int(np.ceil(w / stride) * stride)
        padded = np.zeros((c, ph, pw), dtype=np.float32)
        padded[:, :h, :w] = image
        image = padded
    return {"image": paddle.to_tensor(image[None].astype("float32")),
            "im_shape": paddle.to_tensor(np.asarray(sample["im_shape"], "float32")[None]),
            "scale_factor": paddle.to_tensor(np.asarray(sample["scale_factor"], "float32")[None])}


def _class_names(cfg) -> Dict[int, str]:
    """clsid -> name from the COCO annotation file when there is one, else the index."""
    anno = None
    for key in ("TestDataset", "EvalDataset"):
        ds = cfg.get(key)
        if ds is not None and hasattr(ds, "get_anno") and ds.get_anno() and os.path.isfile(ds.get_anno()):
            anno = ds.get_anno()
            break
    num = int(cfg.get("num_classes", 80))
    if anno:
        with open(anno) as f:
            cats = sorted(json.load(f).get("categories", []), key=lambda c: c["id"])
        if cats:
            return {i: c["name"] for i, c in enumerate(cats)}
    return {i: str(i) for i in range(num)}


def infer(cfg, weights: str, images: Sequence[str], output: str, threshold: float = 0.5) -> List[Dict[str, Any]]:
    """Detect, draw boxes (and masks) with PaddleDetection's visualizer, write ``output/<stem>.png``."""
    from PIL import Image

    model = _eval_model(cfg, weights)
    transforms = _test_transforms(cfg)
    names = _class_names(cfg)
    results = []
    for path in images:
        check_file(path, "--image")
        inputs = _prepare(cfg, path, transforms)
        with paddle.no_grad():
            out = model(inputs)
        bbox = out["bbox"].numpy()
        keep = bbox[:, 1] >= threshold if bbox.size else np.zeros([0], bool)
        bbox_res = [{"image_id": 0, "category_id": int(b[0]), "bbox": [float(b[2]), float(b[3]), float(b[4] - b[2]),
                                                        float(b[5] - b[3])], "score": float(b[1])}
                    for b in bbox[keep]]
        mask_res = None
        if "mask" in out and bbox.size:
            from pycocotools import mask as mask_util

            masks = out["mask"].numpy()[keep]
            mask_res = [{"image_id": 0, "category_id": int(b[0]), "score": float(b[1]),
                         "segmentation": mask_util.encode(np.asfortranarray(m.astype(np.uint8)))}
                        for b, m in zip(bbox[keep], masks)]
            for m in mask_res:
                m["segmentation"]["counts"] = m["segmentation"]["counts"].decode("utf8")
        image = Image.open(path).convert("RGB")
        drawn = _draw(image, bbox_res, mask_res, names, threshold)
        dst = os.path.join(output, os.path.splitext(os.path.basename(path))[0] + ".png")
        with atomic_path(dst, suffix=".png") as tmp:
            drawn.save(tmp, format="PNG")
        print(f"[det infer] {path}: {len(bbox_res)} boxes -> {dst}", flush=True)
        results.append({"image": path, "output": dst, "boxes": len(bbox_res)})
    return results


def _draw(image, bbox_res, mask_res, names: Dict[int, str], threshold: float):
    """Boxes and masks through PaddleDetection's visualizer (its ``draw_bbox`` made Pillow-10-safe
    by :mod:`.compat`)."""
    from ppdet.utils.visualizer import visualize_results

    return visualize_results(image, bbox_res, mask_res, None, None, 0, names, threshold)


class _ExportNet(nn.Layer):
    """Inference graph with plain tensor inputs/outputs: (image, im_shape, scale_factor) ->
    (bbox [N, 6] = class, score, x1, y1, x2, y2; bbox_num [B]; mask when the model has one)."""

    def __init__(self, model: nn.Layer) -> None:
        super().__init__()
        self.model = model

    def _outputs(self, image, im_shape, scale_factor):
        out = self.model({"image": image, "im_shape": im_shape, "scale_factor": scale_factor})
        if "mask" in out:
            return out["bbox"], out["bbox_num"], out["mask"]
        return out["bbox"], out["bbox_num"]

    def forward(self, image, im_shape, scale_factor):
        return self._outputs(image, im_shape, scale_factor)


class _ExportNetNoShape(_ExportNet):
    """(image, scale_factor) variant for detectors that never read ``im_shape`` (FCOS): Paddle
    refuses feeds that no output depends on; ``im_shape`` is taken from the image."""

    def forward(self, image, scale_factor):
        hw = paddle.shape(image)[2:].astype("float32").unsqueeze(0)
        return self._outputs(image, hw.tile([paddle.shape(image)[0], 1]), scale_factor)


class ExportError(RuntimeError):
    """The detector cannot be exported with this PaddleDetection / Paddle pair."""


def _ppdet_version() -> str:
    try:
        from importlib.metadata import version

        return version("paddledet")
    except Exception:  # pragma: no cover - metadata missing in a source checkout
        return "?"


def export(cfg, weights: str, output: str) -> str:
    """``paddle.jit.save`` of the detector (post-process and NMS included) to ``output/model``,
    with the native depthwise op so the result loads anywhere, plus ``infer_cfg.yml``."""
    import yaml

    model = _eval_model(cfg, weights)
    os.makedirs(output, exist_ok=True)
    prefix = os.path.join(output, "model")
    image = paddle.static.InputSpec([None, 3, None, None], "float32", "image")
    im_shape = paddle.static.InputSpec([None, 2], "float32", "im_shape")
    scale = paddle.static.InputSpec([None, 2], "float32", "scale_factor")
    inputs = ["image", "im_shape", "scale_factor"]
    try:
        try:
            jit_save_portable(_ExportNet(model), [image, im_shape, scale], prefix)
        except ValueError as e:
            if "not involved in the target_vars" not in str(e):
                raise
            # Paddle refuses unused feeds (FCOS never reads im_shape): export without it.
            jit_save_portable(_ExportNetNoShape(model), [image, scale], prefix)
            inputs = ["image", "scale_factor"]
    except Exception as e:  # any tracing failure: report it as one line, exit 1
        raise ExportError(f"{cfg.architecture}: PaddleDetection {_ppdet_version()} cannot be traced to a "
                          f"Paddle {paddle.__version__} program ({str(e).strip().splitlines()[-1]})") from e
    infer_cfg = {"arch": cfg.architecture, "mode": "paddle", "draw_threshold": 0.5, "inputs": inputs,
                 "Preprocess": [dict(type=list(op)[0], **(list(op.values())[0] or {}))
                                for op in cfg["TestReader"]["sample_transforms"] if "Decode" not in op],
                 "label_list": [n for _, n in sorted(_class_names(cfg).items())]}
    with atomic_path(os.path.join(output, "infer_cfg.yml")) as tmp:
        with open(tmp, "w") as f:
            yaml.safe_dump(infer_cfg, f, sort_keys=False)
    print(f"[det export] {prefix}", flush=True)
    return prefix


# ---------------------------------------------------------------------------------------------
# CLI

def _parser(mode: str) -> argparse.ArgumentParser:
    p = cli_parser(mode, "PaddleDetection")
    if mode == "train":
        p.add_argument("--eval", action="store_true", help="evaluate after each snapshot epoch")
    if mode == "infer":
        p.add_argument("--threshold", type=float, default=0.5)
    return p


def main(mode: str, argv: Sequence[str]) -> int:
    """Entry point used by ``tools/{train,eval,infer,export}.py`` for PaddleDetection configs.

    ``argv`` is the tool's argument list; returns the exit code (2 on bad input, 1 when the
    detector cannot be exported).
    """
    return run_cli(mode, argv, _parser, _run, {ExportError: 1})


def _run(mode: str, args: argparse.Namespace) -> Any:
    cfg = load_det_config(args.config, args.overrides)
    if mode == "train":
        return train(cfg, args.output, validate=args.eval, resume=args.weights)
    if mode == "eval":
        return evaluate(cfg, args.weights, args.output)
    if mode == "infer":
        return infer(cfg, args.weights, args.image, args.output or os.path.join("output", "det_infer"),
                     args.threshold)
    return {"prefix": export(cfg, args.weights, args.output or os.path.join("output", "det_export"))}
