"""Semantic segmentation (PaddleSeg configs) behind the one front end.

PaddleSeg builds the model, losses, datasets, transforms, optimizer and schedule (``SegBuilder``); the
training loop is the shared :class:`~paddle_lk.engine.loop.TrainLoop` (PaddleSeg 2.8's ``core.train``
fails on Paddle 3), so a segmentation run resumes exactly, stops on NaN, logs to VisualDL and stops on
Ctrl-C as a classification run does. Evaluation is PaddleSeg's ``core.infer`` (whole image, sliding
window or multi-scale per ``test_config``) and its mIoU metrics; export is the one export path
(re-parameterized, BN folded, verified in a default Paddle Inference predictor) plus PaddleSeg's
``deploy.yaml``.
"""
from __future__ import annotations

import argparse
import logging
import os
from typing import Any, Dict, List, Optional

import numpy as np
import paddle
import paddle.nn as nn
import yaml

from ...checkpoint import load_checkpoint
from ...errors import ConfigError, DataError
from ...integrations import compat
from ...integrations import seg as paddleseg
from ...io.atomic import atomic_path
from ..data import ResumableBatchSampler, SafeDataLoader, image_paths
from ..export import export_program, on_cpu
from ...utils.log import setup_logger
from ..loop import LoopConfig, TrainLoop, cleanup_failed_start, write_resolved_config
from ..trainer import dist_info, setup_device
from ..runtime import check_interrupt
from .base import Task, int_setting, require_weights, start_run

__all__ = ["SegmentationTask", "evaluate_model"]

EXPORT_PREFIX = "model"  # PaddleSeg's deploy tools read model.* next to deploy.yaml


def _without_pretrained(node: Any) -> Any:
    """A model config without ``pretrained`` paths (which may differ between a run and its resume)."""
    if isinstance(node, dict):
        return {k: _without_pretrained(v) for k, v in node.items() if k != "pretrained"}
    if isinstance(node, list):
        return [_without_pretrained(v) for v in node]
    return node


def evaluate_model(model: nn.Layer, cfg: Any, builder: Any, num_workers: int = 0) -> Dict[str, Any]:
    """mIoU, pixel accuracy, kappa and per-class IoU on ``val_dataset`` (PaddleSeg's inference and
    metrics, one image at a time as PaddleSeg evaluates)."""
    from paddleseg.core import infer as seg_infer
    from paddleseg.utils import metrics

    dataset = builder.val_dataset
    if len(dataset) == 0:
        raise ConfigError("val_dataset is empty")
    test_cfg = dict(cfg.test_config)
    aug = bool(test_cfg.pop("aug_eval", False))
    keys = ("is_slide", "crop_size", "stride") + (("scales", "flip_horizontal", "flip_vertical") if aug else ())
    kwargs = {k: test_cfg[k] for k in keys if k in test_cfg}
    sampler = ResumableBatchSampler(len(dataset), 1, shuffle=False, drop_last=False)
    loader = SafeDataLoader(dataset, sampler, num_workers=num_workers,
                            describe=lambda i: paddleseg.sample_file(dataset, i))
    n = int(dataset.num_classes)
    inter, pred_a, label_a = (np.zeros(n, np.int64) for _ in range(3))
    was_training = model.training
    model.eval()
    with paddle.no_grad():
        for data in loader:
            fn = seg_infer.aug_inference if aug else seg_infer.inference
            pred, _ = fn(model, data["img"], trans_info=data["trans_info"], **kwargs)
            i, p, lab = metrics.calculate_area(pred, data["label"], n, int(dataset.ignore_index))
            inter += i.numpy()
            pred_a += p.numpy()
            label_a += lab.numpy()
    if was_training:
        model.train()
    t = [paddle.to_tensor(a) for a in (inter, pred_a, label_a)]
    class_iou, miou = metrics.mean_iou(*t)
    _, acc = metrics.accuracy(t[0], t[1])
    kappa = metrics.kappa(*t)
    return {"mIoU": float(miou), "acc": float(acc), "kappa": float(kappa), "images": len(dataset),
            "class_iou": [round(float(v), 6) for v in class_iou]}


class _ArgmaxNet(nn.Layer):
    """Inference graph: image ``[N, 3, H, W]`` -> int32 label map ``[N, 1, H, W]`` (PaddleSeg's
    ``output_op: argmax``)."""

    def __init__(self, model: nn.Layer) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return paddle.argmax(self.model(x)[0], axis=1, keepdim=True, dtype="int32")


def run_settings(cfg: Any) -> Dict[str, int]:
    """``batch_size``, ``iters`` and the run settings of a PaddleSeg config, checked (ConfigError naming the key)."""
    get = lambda key: paddleseg.run_setting(cfg, key)  # noqa: E731
    return {"batch_size": int_setting(cfg.dic.get("batch_size", 1), "batch_size", 1),
            "iters": int_setting(cfg.dic.get("iters"), "iters", 1),
            "save_interval": int_setting(get("save_interval"), "save_interval", 1),
            "log_iters": int_setting(get("log_iters"), "log_iters", 1),
            "num_workers": int_setting(get("num_workers"), "num_workers", 0),
            "seed": int_setting(get("seed"), "seed"),
            "keep_checkpoint_max": int_setting(get("keep_checkpoint_max"), "keep_checkpoint_max")}


class SegmentationTask(Task):
    """PaddleSeg configs (``model``, ``train_dataset``/``val_dataset``, ``optimizer``, ``lr_scheduler``,
    ``loss``, ``iters``, ``batch_size``, ``test_config``; plus :data:`~paddle_lk.integrations.seg.RUN_SETTINGS`)."""

    kind = "seg"

    def _load(self, args: argparse.Namespace, overrides: List[str], datasets: List[str]) -> Any:
        setup_device("auto")
        return paddleseg.load_config(args.config, overrides, datasets)

    def train(self, args: argparse.Namespace, overrides: List[str]) -> Dict[str, Any]:
        do_eval = bool(args.eval)
        cfg = self._load(args, overrides, ["train_dataset"] + (["val_dataset"] if do_eval else []))
        settings = run_settings(cfg)
        output_dir = args.output or self.default_output(args.config)
        rank, world_size = dist_info()
        model_record = _without_pretrained(cfg.dic["model"])
        resume_path, resume_state = start_run(output_dir, args.resume, args.overwrite, model_record, "model", "seg",
                                              rank)
        with cleanup_failed_start(output_dir):  # refused on bad input: nothing left behind
            return self._train(args, cfg, settings, output_dir, rank, world_size, model_record, resume_path,
                               resume_state, do_eval)

    def _train(self, args: argparse.Namespace, cfg: Any, settings: Dict[str, int], output_dir: str, rank: int,
               world_size: int, model_record: Any, resume_path: Optional[str], resume_state: Any,
               do_eval: bool) -> Dict[str, Any]:
        log = setup_logger(output_dir, rank)
        if rank == 0:
            write_resolved_config(output_dir, cfg.dic)
        seed = settings["seed"]
        paddle.seed(seed)
        np.random.seed(seed)
        builder = paddleseg.builder(cfg)
        model = paddleseg.build(builder, "model")
        if args.weights:
            report = load_checkpoint(model, args.weights, strict=False, log=log.info)
            log.info(f"initialised from {report}")
        dataset, losses, optimizer = (paddleseg.build(builder, p) for p in ("train_dataset", "loss", "optimizer"))
        batch_size, iters = settings["batch_size"], settings["iters"]
        sampler = ResumableBatchSampler(len(dataset), batch_size, shuffle=True, drop_last=True, seed=seed, rank=rank,
                                        world_size=world_size)
        steps = sampler.batches_per_epoch()
        if steps == 0:
            raise ConfigError(f"train_dataset has {len(dataset)} samples, fewer than batch_size {batch_size}")
        workers = settings["num_workers"]
        loader = SafeDataLoader(dataset, sampler, num_workers=workers, seed=seed,
                                describe=lambda i: paddleseg.sample_file(dataset, i))
        from paddleseg.core.train import loss_computation

        num_classes = int(dataset.num_classes)

        def step(net: nn.Layer, data: Any, rng: np.random.RandomState):
            images, labels = data["img"], data["label"].astype("int64")
            try:
                loss = paddle.add_n(loss_computation(net(images), labels, data.get("edge"), losses))
            except (IndexError, ValueError) as exc:
                if "label value" not in str(exc):
                    raise
                raise DataError(f"train_dataset: a label map holds a value >= num_classes ({num_classes}) that is not "
                                f"the ignore index {int(dataset.ignore_index)}: check the label PNGs or num_classes "
                                f"(labels seen in this batch: {sorted(set(np.unique(labels.numpy()).tolist()))})") \
                    from None
            return loss, int(images.shape[0]), {}

        save = settings["save_interval"]
        loop_cfg = LoopConfig(
            output_dir=output_dir, epochs=-(-iters // steps), steps_per_epoch=steps, max_updates=iters,
            save_epochs=0, save_updates=save, eval_epochs=0, eval_updates=save if do_eval else 0,
            keep_checkpoint_max=settings["keep_checkpoint_max"], print_every=settings["log_iters"], seed=seed,
            progress=True,
            use_visualdl=bool(paddleseg.run_setting(cfg, "use_visualdl")), unit="images",
            meta={"task": "seg", "model_record": model_record, "config": yaml.safe_dump(cfg.dic, sort_keys=False)})
        loop = TrainLoop(model, optimizer, optimizer._learning_rate, sampler, loader, step, loop_cfg,
                         evaluate=(lambda net: evaluate_model(net, cfg, builder, workers)) if do_eval else None,
                         primary="mIoU", log=log, rank=rank, world_size=world_size)
        log.info(f"{cfg.dic['model'].get('type')}: {len(dataset)} train images, {steps} steps/epoch, {iters} iters, "
                 f"output {output_dir}")
        return loop.run((resume_path, resume_state) if resume_path else None)

    def _model(self, args: argparse.Namespace, overrides: List[str], datasets: List[str]):
        weights = require_weights(args.weights)
        cfg = self._load(args, overrides, datasets)
        builder = paddleseg.builder(cfg)
        model = paddleseg.build(builder, "model")
        if weights:
            load_checkpoint(model, weights, use_ema=getattr(args, "ema", False),
                            log=logging.getLogger("paddle_lk.engine").info)
        model.eval()
        return cfg, builder, model

    def evaluate(self, args: argparse.Namespace, overrides: List[str]) -> Dict[str, Any]:
        cfg, builder, model = self._model(args, overrides, ["val_dataset"])
        return evaluate_model(model, cfg, builder, run_settings(cfg)["num_workers"])

    def infer(self, args: argparse.Namespace, overrides: List[str]) -> List[Dict[str, Any]]:
        from paddleseg.core import infer as seg_infer
        from paddleseg.transforms import Compose
        from paddleseg.utils import visualize

        if not args.input:
            raise ConfigError("-i/--input: the images to segment (files, folders or image lists)")
        files = [f for src in args.input for f in image_paths(src)]
        cfg, builder, model = self._model(args, overrides, [])
        transforms = Compose(builder.val_transforms)
        num_classes = int(cfg.model_cfg.get("num_classes") or getattr(builder.val_dataset_class, "NUM_CLASSES", 256))
        kwargs = {k: v for k, v in dict(cfg.test_config).items() if k in ("is_slide", "crop_size", "stride")}
        output = args.output or self.default_output(args.config, "infer")
        colors = visualize.get_color_map_list(max(256, num_classes))
        results = []
        for path in files:
            check_interrupt()
            data = transforms({"img": path})
            with paddle.no_grad():
                pred, _ = seg_infer.inference(model, paddle.to_tensor(data["img"][np.newaxis]),
                                              trans_info=data["trans_info"], **kwargs)
            labels = pred.numpy().squeeze().astype(np.int64)
            dst = os.path.join(output, os.path.splitext(os.path.basename(path))[0] + ".png")
            with atomic_path(dst, suffix=".png") as tmp:
                visualize.get_pseudo_color_map(labels.astype(np.uint8), colors).save(tmp, format="PNG")
            results.append({"file": path, "mask": dst, "classes": sorted(int(c) for c in np.unique(labels))})
        return results

    def export(self, args: argparse.Namespace, overrides: List[str]) -> Dict[str, Any]:
        with on_cpu():  # the process keeps its device
            return self._export(args, overrides)

    def _export(self, args: argparse.Namespace, overrides: List[str]) -> Dict[str, Any]:
        cfg, builder, model = self._model(args, overrides, [])
        out = args.output or self.default_output(args.config, "export")
        rng = np.random.RandomState(0)
        samples = [rng.standard_normal([1, 3, 64, 64]).astype("float32"),
                   rng.standard_normal([2, 3, 96, 128]).astype("float32")]
        spec = [paddle.static.InputSpec([None, 3, None, None], "float32", "x")]
        deploy = {"Deploy": {"model": EXPORT_PREFIX + ".json", "params": EXPORT_PREFIX + ".pdiparams",
                             "transforms": cfg.val_dataset_cfg.get("transforms", []),
                             "input_shape": [-1, 3, -1, -1], "output_op": "argmax", "output_dtype": "int32"}}
        info = {"task": "seg", "model": cfg.dic["model"].get("type"),
                "backbone": (cfg.dic["model"].get("backbone") or {}).get("type"),
                "num_classes": cfg.model_cfg.get("num_classes")}
        summary = export_program(_ArgmaxNet(model), spec, samples, out, with_custom_op=args.with_custom_op,
                                 onnx=args.onnx, opset=args.opset, verify=not args.no_verify, info=info,
                                 extra_files={"deploy.yaml": yaml.safe_dump(deploy, sort_keys=False)},
                                 prefix=EXPORT_PREFIX, trace_context=compat.onednn_safe_resize,
                                 log=logging.getLogger("paddle_lk.engine"))
        return {k: v for k, v in summary.items() if k != "files"}

    def human(self, mode: str, result: Any) -> Optional[List[str]]:
        if mode == "eval":
            return [f"mIoU {result['mIoU']:.4f} acc {result['acc']:.4f} kappa {result['kappa']:.4f} "
                    f"({result['images']} images)"]
        if mode == "infer":
            return [f"{r['file']} -> {r['mask']} (classes {r['classes']})" for r in result]
        if mode == "train":
            best = result.get("best") or {}
            line = f"checkpoints in {result['output_dir']}"
            if best.get("mIoU", -1) >= 0:
                line = f"best mIoU {best['mIoU']:.4f} (iter {best['updates']}); " + line
            return [line]
        return None

