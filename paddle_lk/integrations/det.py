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
import contextlib
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import paddle
import paddle.nn as nn

from ._common import BACKBONE_NAMES, LKBackbone, UsageError, check_file, parse_override_value

__all__ = ["register", "BACKBONES", "load_det_config", "build_model", "train", "evaluate", "infer",
           "export", "main"]

_STRIDES = (4, 8, 16, 32)
BACKBONES: Dict[str, type] = {}


class _DetBackbone(LKBackbone):
    """Base of the PaddleDetection backbones: ``forward(inputs)`` reads ``inputs['image']``."""

    def forward(self, inputs) -> List[paddle.Tensor]:  # type: ignore[override]
        x = inputs["image"] if isinstance(inputs, dict) else inputs
        return self.model(x)

    @property
    def out_shape(self):
        from ppdet.modeling.shape_spec import ShapeSpec

        return [ShapeSpec(channels=c, stride=_STRIDES[i]) for c, i in zip(self.feat_channels, self.out_indices)]


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
    """``@register @serializable`` every backbone into PaddleDetection (idempotent)."""
    from ppdet.core.workspace import global_config, register as ppdet_register, serializable

    for name, cls in BACKBONES.items():
        if name not in global_config:
            ppdet_register(serializable(cls))
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


def _nested(key: str, value: Any) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    node = out
    parts = key.split(".")
    if not all(parts):
        raise UsageError(f"override key '{key}' has an empty component")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def load_det_config(path: str, overrides: Sequence[str] = ()):
    """PaddleDetection's ``load_config`` (``_BASE_`` merged) + ``-o`` overrides, CPU defaults set."""
    from ppdet.core.workspace import load_config, merge_config

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
        merge_config(_nested(key.strip(), parse_override_value(text)))
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
    trainer = Trainer(cfg, mode="train")
    if resume:
        trainer.resume_weights(check_file(resume, "--weights"))
    elif cfg.get("pretrain_weights"):
        trainer.load_weights(cfg.pretrain_weights)
    trainer.train(validate)
    save_dir = os.path.join(cfg.save_dir, cfg.filename)
    out: Dict[str, Any] = {"save_dir": save_dir, "final": os.path.join(save_dir, "model_final.pdparams")}
    if validate:
        out.update(_metric_results(trainer))
    return out


def _metric_results(trainer) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for metric in getattr(trainer, "_metrics", []):
        res = metric.get_results() if hasattr(metric, "get_results") else {}
        for key, values in (res or {}).items():
            values = list(np.asarray(values).reshape(-1))
            if values:
                out[f"{key}_mAP"] = float(values[0])  # COCO AP@[.5:.95]
                if len(values) > 1:
                    out[f"{key}_AP50"] = float(values[1])
    return out


def evaluate(cfg, weights: str) -> Dict[str, Any]:
    """PaddleDetection ``Trainer.evaluate`` (COCO mAP through pycocotools)."""
    from ppdet.engine import Trainer

    _check_dataset(cfg, "EvalDataset")
    cfg["save_dir"] = cfg.get("save_dir", "output")
    trainer = Trainer(cfg, mode="eval")
    trainer.load_weights(check_file(weights, "--weights"))
    trainer.evaluate()
    res = _metric_results(trainer)
    print("[det eval] " + " ".join(f"{k} {v:.4f}" for k, v in res.items()), flush=True)
    return res


def _eval_model(cfg, weights: str) -> nn.Layer:
    from ppdet.utils.checkpoint import load_weight

    model = build_model(cfg)
    load_weight(model, check_file(weights, "--weights"))
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

    from ppdet.utils.visualizer import visualize_results

    from ..utils import atomic_path

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
        bbox_res = [{"category_id": int(b[0]), "bbox": [float(b[2]), float(b[3]), float(b[4] - b[2]),
                                                        float(b[5] - b[3])], "score": float(b[1])}
                    for b in bbox[keep]]
        mask_res = None
        if "mask" in out and bbox.size:
            from pycocotools import mask as mask_util

            masks = out["mask"].numpy()[keep]
            mask_res = [{"category_id": int(b[0]), "score": float(b[1]),
                         "segmentation": mask_util.encode(np.asfortranarray(m.astype(np.uint8)))}
                        for b, m in zip(bbox[keep], masks)]
            for m in mask_res:
                m["segmentation"]["counts"] = m["segmentation"]["counts"].decode("utf8")
        image = Image.open(path).convert("RGB")
        drawn = visualize_results(image, bbox_res, mask_res, None, None, 0, names, threshold)
        dst = os.path.join(output, os.path.splitext(os.path.basename(path))[0] + ".png")
        with atomic_path(dst, suffix=".png") as tmp:
            drawn.save(tmp, format="PNG")
        print(f"[det infer] {path}: {len(bbox_res)} boxes -> {dst}", flush=True)
        results.append({"image": path, "output": dst, "boxes": len(bbox_res)})
    return results


class _ExportNet(nn.Layer):
    """Inference graph with plain tensor inputs/outputs: (image, im_shape, scale_factor) ->
    (bbox [N, 6] = class, score, x1, y1, x2, y2; bbox_num [B]; mask when the model has one)."""

    def __init__(self, model: nn.Layer) -> None:
        super().__init__()
        self.model = model

    def forward(self, image, im_shape, scale_factor):
        out = self.model({"image": image, "im_shape": im_shape, "scale_factor": scale_factor})
        if "mask" in out:
            return out["bbox"], out["bbox_num"], out["mask"]
        return out["bbox"], out["bbox_num"]


def export(cfg, weights: str, output: str) -> str:
    """``paddle.jit.save`` of the detector (post-process and NMS included) to ``output/model``,
    with the native depthwise op so the result loads anywhere, plus ``infer_cfg.yml``."""
    import yaml

    from .. import ops
    from ..utils import atomic_path

    model = _eval_model(cfg, weights)
    os.makedirs(output, exist_ok=True)
    prefix = os.path.join(output, "model")
    spec = [paddle.static.InputSpec([None, 3, None, None], "float32", "image"),
            paddle.static.InputSpec([None, 2], "float32", "im_shape"),
            paddle.static.InputSpec([None, 2], "float32", "scale_factor")]
    with ops.op_path("native"):
        net = paddle.jit.to_static(_ExportNet(model), input_spec=spec, full_graph=True)
        paddle.jit.save(net, prefix)
    infer_cfg = {"arch": cfg.architecture, "mode": "paddle", "draw_threshold": 0.5,
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

class _ArgError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise _ArgError(message)


def _parser(mode: str) -> argparse.ArgumentParser:
    p = _Parser(prog=f"tools/{mode}.py (PaddleDetection config)")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("-o", "--opt", "--override", dest="overrides", nargs="+", action="extend", default=[],
                   help="config overrides key.sub=value (YAML values)")
    p.add_argument("--weights", default=None, help="model .pdparams (eval/infer/export; resume for train)")
    p.add_argument("--output", default=None)
    if mode == "train":
        p.add_argument("--eval", action="store_true", help="evaluate after each snapshot epoch")
    if mode == "infer":
        p.add_argument("--image", nargs="+", required=True)
        p.add_argument("--threshold", type=float, default=0.5)
    return p


def main(mode: str, argv: Sequence[str]) -> int:
    """Entry point used by ``tools/{train,eval,infer,export}.py`` for PaddleDetection configs.

    ``argv`` is the tool's argument list; returns the exit code (2 on bad input).
    """
    modes = ("train", "eval", "infer", "export")
    if mode not in modes:
        print(f"error: mode must be one of {modes}, got '{mode}'", file=sys.stderr)
        return 2
    try:
        args = _parser(mode).parse_args(list(argv))
    except _ArgError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        cfg = load_det_config(args.config, args.overrides)
        if mode != "train" and not args.weights:
            raise UsageError(f"--weights is required for {mode}")
        if mode == "train":
            res: Any = train(cfg, args.output, validate=args.eval, resume=args.weights)
        elif mode == "eval":
            res = evaluate(cfg, args.weights)
        elif mode == "infer":
            res = infer(cfg, args.weights, args.image, args.output or os.path.join("output", "det_infer"),
                        args.threshold)
        else:
            res = {"prefix": export(cfg, args.weights, args.output or os.path.join("output", "det_export"))}
    except (UsageError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res), flush=True)
    return 0
