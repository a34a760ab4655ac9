"""PaddleSeg: RepLKNet / VAN backbones as ``manager.BACKBONES`` components and a train / eval /
infer / export loop that runs on Paddle 3.

The loop uses PaddleSeg's own pieces -- ``Config`` and ``SegBuilder`` (models, losses, datasets,
transforms, optimizers), ``core.infer.inference``, ``utils.metrics`` (mIoU) and
``utils.visualize`` -- and replaces only ``core.train``, which fails on Paddle 3.x
(PaddleSeg 2.8.0 indexes 0-d loss tensors, ``loss.numpy()[0]``). The PaddleSeg bugs it works
around otherwise are in :mod:`.compat`.

CLI (through ``tools/train.py`` / ``eval.py`` / ``infer.py`` / ``export.py``, or :func:`main`)::

    train  -c CFG [-o key=value ...] [--output DIR] [--iters N] [--log-every N] [--resume PDPARAMS]
           [--eval]   (evaluate at the end) [--num-workers N]
    eval   -c CFG --weights MODEL.pdparams [-o ...]
    infer  -c CFG --weights MODEL.pdparams --image IMG [IMG ...] [--output DIR]
    export -c CFG --weights MODEL.pdparams [--output DIR] [--input-shape 1 3 512 512]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import paddle
import paddle.nn as nn
import yaml

from ..checkpoint import load_checkpoint
from ..io.atomic import atomic_path, atomic_save
from . import compat
from ._common import (BACKBONE_NAMES, LKBackbone, UsageError, apply_overrides, check_file, cli_parser,
                      jit_save_portable, run_cli)

__all__ = ["register", "BACKBONES", "build_config", "train", "evaluate", "infer", "export", "main"]

BACKBONES: Dict[str, type] = {}


def _make_backbone_class(name: str) -> type:
    doc = (f"{name} for PaddleSeg: multi-scale features of ``out_indices`` (strides 4-32), "
           f"``feat_channels``, ``pretrained`` = converted ``.pdparams`` / official ``.pth`` path.")
    return type(name, (LKBackbone,), {"arch": name, "__doc__": doc, "__module__": __name__})


for _name in BACKBONE_NAMES:
    BACKBONES[_name] = _make_backbone_class(_name)
    globals()[_name] = BACKBONES[_name]


def register() -> List[str]:
    """Add the backbones to PaddleSeg's ``manager.BACKBONES`` and install the PaddleSeg
    workarounds of :mod:`.compat` (the Paddle-3-safe loss among them); idempotent."""
    from paddleseg.cvlibs import manager

    for cls in BACKBONES.values():
        if manager.BACKBONES._components_dict.get(cls.__name__) is not cls:
            manager.BACKBONES.add_component(cls)
    compat.install("paddleseg")
    return list(BACKBONES)


# ---------------------------------------------------------------------------------------------
# Config

def build_config(path: str, overrides: Sequence[str] = (), datasets: Sequence[str] = ()) -> "Any":
    """PaddleSeg ``Config`` from ``path`` (``_base_`` merged) with ``key.sub.0=value`` overrides.

    ``CrossEntropyLoss`` entries become ``Float32LabelCE`` (same arguments) where PaddleSeg's
    fails on this Paddle, with one log line saying so (:func:`.compat.rewrite_ce_losses`). The roots of
    ``datasets`` (e.g. ``["train_dataset"]``) must exist: PaddleSeg would otherwise start a download.
    """
    from paddleseg.cvlibs import Config
    from paddleseg.cvlibs.config import parse_from_yaml

    register()
    check_file(path, "config")
    dic = apply_overrides(parse_from_yaml(path), overrides)
    if "model" not in dic:
        raise UsageError(f"{path}: not a PaddleSeg config (no 'model' key)")
    compat.rewrite_ce_losses(dic)
    for key in datasets:
        ds = dic.get(key)
        if not isinstance(ds, dict):
            raise UsageError(f"{path}: '{key}' is missing")
        root = ds.get("dataset_root")
        if not root or not os.path.isdir(str(root)):
            raise UsageError(f"{key}.dataset_root '{root}' is not a directory (set it with "
                             f"-o {key}.dataset_root=PATH; nothing is downloaded)")
    fd, tmp = tempfile.mkstemp(suffix=".yml", prefix="paddle_lk_seg_")
    try:
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(dic, f, sort_keys=False)
        return Config(tmp)
    finally:
        os.remove(tmp)


def _builder(cfg):
    from paddleseg.cvlibs import SegBuilder

    return SegBuilder(cfg)


def _load_model_weights(model: nn.Layer, path: str) -> None:
    """The one loader (any weights format, the one mismatch message); a missing file is a usage error."""
    try:
        load_checkpoint(model, path)
    except FileNotFoundError as exc:
        raise UsageError(f"--weights: {exc}") from None


def _save_state(model: nn.Layer, path: str) -> None:
    atomic_save(model.state_dict(), path)


# ---------------------------------------------------------------------------------------------
# Train / eval / infer / export

def _loss(logits_list, label, edges, losses) -> paddle.Tensor:
    from paddleseg.core.train import loss_computation

    return paddle.add_n(loss_computation(logits_list, label, edges, losses))


def train(cfg, output: str, iters: Optional[int] = None, log_every: int = 10, resume: Optional[str] = None,
          do_eval: bool = False, num_workers: int = 0, save_every: Optional[int] = None) -> Dict[str, Any]:
    """Iteration-based training with PaddleSeg's model, losses, dataset, optimizer and schedule.

    Writes ``output/model.pdparams`` (and ``latest.pdparams`` every ``save_every`` iterations);
    returns ``{"iters", "loss", "miou"?}``.
    """
    builder = _builder(cfg)
    model = builder.model
    dataset = builder.train_dataset
    losses = builder.loss
    optimizer = builder.optimizer
    total = int(iters or cfg.iters)
    if total < 1:
        raise UsageError(f"iters must be >= 1, got {total}")
    if resume:
        _load_model_weights(model, resume)
    batch_size = int(cfg.batch_size)
    if len(dataset) < batch_size:
        raise UsageError(f"train_dataset has {len(dataset)} samples, fewer than batch_size {batch_size}")
    loader = paddle.io.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                                  num_workers=num_workers, return_list=True)
    lr_sched = optimizer._learning_rate
    os.makedirs(output, exist_ok=True)
    model.train()
    it, last_loss, start = 0, float("nan"), time.time()
    while it < total:
        for data in loader:
            it += 1
            images, labels = data["img"], data["label"].astype("int64")
            edges = data.get("edge")
            logits_list = model(images)
            loss = _loss(logits_list, labels, edges, losses)
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
            if isinstance(lr_sched, paddle.optimizer.lr.LRScheduler):
                lr_sched.step()
            last_loss = float(loss)  # 0-d tensor on Paddle 3: float(), never loss.numpy()[0]
            if not np.isfinite(last_loss):
                raise FloatingPointError(f"loss is {last_loss} at iteration {it}")
            if it % max(1, log_every) == 0 or it == total:
                lr = lr_sched.get_lr() if hasattr(lr_sched, "get_lr") else float(lr_sched)
                print(f"[seg train] iter {it}/{total} loss {last_loss:.4f} lr {lr:.3e} "
                      f"elapsed {time.time() - start:.1f}s", flush=True)
            if save_every and it % save_every == 0:
                _save_state(model, os.path.join(output, "latest.pdparams"))
            if it >= total:
                break
    _save_state(model, os.path.join(output, "model.pdparams"))
    result: Dict[str, Any] = {"iters": total, "loss": last_loss}
    if do_eval:
        result.update(evaluate(cfg, model=model, num_workers=num_workers))
    return result


def evaluate(cfg, model: Optional[nn.Layer] = None, weights: Optional[str] = None,
             num_workers: int = 0) -> Dict[str, Any]:
    """mIoU / pixel accuracy / kappa on ``val_dataset``: PaddleSeg's ``core.infer`` (whole,
    sliding-window or multi-scale/flip per ``test_config``) and ``utils.metrics``."""
    from paddleseg.core import infer as seg_infer
    from paddleseg.utils import metrics

    builder = _builder(cfg)
    if model is None:
        model = builder.model
        if weights:
            _load_model_weights(model, weights)
    dataset = builder.val_dataset
    if len(dataset) == 0:
        raise UsageError("val_dataset is empty")
    test_cfg = dict(cfg.test_config)
    aug = bool(test_cfg.pop("aug_eval", False))
    keys = ("is_slide", "crop_size", "stride") + (("scales", "flip_horizontal", "flip_vertical") if aug else ())
    kwargs = {k: test_cfg[k] for k in keys if k in test_cfg}
    loader = paddle.io.DataLoader(dataset, batch_size=1, shuffle=False, num_workers=num_workers,
                                  return_list=True)
    n = int(dataset.num_classes)
    inter = np.zeros(n, np.int64)
    pred_a = np.zeros(n, np.int64)
    label_a = np.zeros(n, np.int64)
    model.eval()
    with paddle.no_grad():
        for data in loader:
            fn = seg_infer.aug_inference if aug else seg_infer.inference
            pred, _ = fn(model, data["img"], trans_info=data["trans_info"], **kwargs)
            i, p, l = metrics.calculate_area(pred, data["label"], n, int(dataset.ignore_index))
            inter += i.numpy()
            pred_a += p.numpy()
            label_a += l.numpy()
    model.train()
    t = [paddle.to_tensor(a) for a in (inter, pred_a, label_a)]
    class_iou, miou = metrics.mean_iou(*t)
    _, acc = metrics.accuracy(t[0], t[1])
    kappa = metrics.kappa(*t)
    out = {"mIoU": float(miou), "acc": float(acc), "kappa": float(kappa),
           "class_iou": [round(float(v), 6) for v in class_iou]}
    print(f"[seg eval] mIoU {out['mIoU']:.4f} acc {out['acc']:.4f} kappa {out['kappa']:.4f} "
          f"({len(dataset)} images)", flush=True)
    return out


def _color_mask(pred: np.ndarray, num_classes: int) -> "Any":
    from paddleseg.utils import visualize

    color_map = visualize.get_color_map_list(max(256, num_classes))
    return visualize.get_pseudo_color_map(pred.astype(np.uint8), color_map)


def infer(cfg, weights: str, images: Sequence[str], output: str) -> List[str]:
    """Predict each image with the config's val transforms; writes ``output/<stem>.png`` colour masks."""
    from paddleseg.core import infer as seg_infer
    from paddleseg.transforms import Compose

    builder = _builder(cfg)
    model = builder.model
    _load_model_weights(model, weights)
    model.eval()
    transforms = Compose(builder.val_transforms)
    num_classes = int(cfg.model_cfg.get("num_classes") or getattr(builder.val_dataset_class, "NUM_CLASSES", 256))
    test_cfg = dict(cfg.test_config)
    kwargs = {k: test_cfg[k] for k in ("is_slide", "crop_size", "stride") if k in test_cfg}
    written = []
    for path in images:
        check_file(path, "--image")
        data = transforms({"img": path})
        img = paddle.to_tensor(data["img"][np.newaxis])
        with paddle.no_grad():
            pred, _ = seg_infer.inference(model, img, trans_info=data["trans_info"], **kwargs)
        mask = _color_mask(pred.numpy().squeeze().astype(np.int64), num_classes)
        dst = os.path.join(output, os.path.splitext(os.path.basename(path))[0] + ".png")
        with atomic_path(dst, suffix=".png") as tmp:
            mask.save(tmp, format="PNG")
        print(f"[seg infer] {path} -> {dst}", flush=True)
        written.append(dst)
    return written


class _ArgmaxNet(nn.Layer):
    """Inference graph: image -> int32 label map (PaddleSeg's ``output_op: argmax``)."""

    def __init__(self, model: nn.Layer) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return paddle.argmax(self.model(x)[0], axis=1, keepdim=True, dtype="int32")


def export(cfg, weights: str, output: str, input_shape: Optional[Sequence[int]] = None) -> str:
    """``paddle.jit.save`` of model + argmax to ``output/model`` (portable: native depthwise op)
    and a PaddleSeg-style ``deploy.yaml``; returns the path prefix."""
    builder = _builder(cfg)
    model = builder.model
    _load_model_weights(model, weights)
    model.eval()
    shape = list(input_shape) if input_shape else [None, 3, None, None]
    os.makedirs(output, exist_ok=True)
    prefix = os.path.join(output, "model")
    jit_save_portable(_ArgmaxNet(model), [paddle.static.InputSpec(shape, "float32", "x")], prefix)
    deploy = {"Deploy": {"model": "model" + _model_suffix(prefix), "params": "model.pdiparams",
                         "transforms": cfg.val_dataset_cfg.get("transforms", []), "input_shape": shape,
                         "output_op": "argmax"}}
    with atomic_path(os.path.join(output, "deploy.yaml")) as tmp:
        with open(tmp, "w") as f:
            yaml.safe_dump(deploy, f, sort_keys=False)
    print(f"[seg export] {prefix}", flush=True)
    return prefix


def _model_suffix(prefix: str) -> str:
    for ext in (".json", ".pdmodel"):
        if os.path.exists(prefix + ext):
            return ext
    return ".json"


# ---------------------------------------------------------------------------------------------
# CLI

def _parser(mode: str) -> argparse.ArgumentParser:
    p = cli_parser(mode, "PaddleSeg")
    p.add_argument("--num-workers", type=int, default=0)
    if mode == "train":
        p.add_argument("--iters", type=int, default=None)
        p.add_argument("--log-every", type=int, default=10)
        p.add_argument("--save-every", type=int, default=None)
        p.add_argument("--eval", action="store_true", help="evaluate on val_dataset after training")
    if mode == "export":
        p.add_argument("--input-shape", type=int, nargs=4, default=None)
    return p


def _run(mode: str, args: argparse.Namespace) -> Dict[str, Any]:
    needed = {"train": ["train_dataset"] + (["val_dataset"] if args.eval else []) if mode == "train" else [],
              "eval": ["val_dataset"]}.get(mode, [])
    cfg = build_config(args.config, args.overrides, needed)
    if mode == "train":
        return train(cfg, args.output or os.path.join("output", "seg"), iters=args.iters,
                     log_every=args.log_every, resume=args.weights, do_eval=args.eval,
                     num_workers=args.num_workers, save_every=args.save_every)
    if mode == "eval":
        return evaluate(cfg, weights=args.weights, num_workers=args.num_workers)
    if mode == "infer":
        return {"written": infer(cfg, args.weights, args.image, args.output or os.path.join("output", "seg_infer"))}
    return {"prefix": export(cfg, args.weights, args.output or os.path.join("output", "seg_export"),
                             args.input_shape)}


def main(mode: str, argv: Sequence[str]) -> int:
    """Entry point used by ``tools/{train,eval,infer,export}.py`` for PaddleSeg configs.

    ``argv`` is the tool's argument list; returns the exit code (2 on bad input).
    """
    return run_cli(mode, argv, _parser, _run)
