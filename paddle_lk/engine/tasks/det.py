"""Object detection and instance segmentation (PaddleDetection configs) behind the one front end.

PaddleDetection builds the architecture, datasets, transforms, ``LearningRate`` schedule and
``OptimizerBuilder`` optimizer; the training loop is the shared :class:`~paddle_lk.engine.loop.TrainLoop`,
so a detection run resumes exactly, stops on NaN, logs to VisualDL and stops on Ctrl-C as the other
tasks do. Evaluation uses PaddleDetection's metrics (COCO mAP through pycocotools, VOC ...), inference
its ``TestReader`` and visualizer, export the one export path (re-parameterized, BN folded, verified
in a default Paddle Inference predictor) plus PaddleDetection's ``infer_cfg.yml``.
"""
from __future__ import annotations

import argparse
import logging
import os
import random
from typing import Any, Dict, List, Optional

import numpy as np
import paddle
import paddle.nn as nn
import yaml

from ...checkpoint import load_checkpoint
from ...errors import ConfigError, ExportError
from ...integrations import compat
from ...integrations import det as ppdet
from ...integrations import det_infer
from ...io.atomic import atomic_path
from ..data import ResumableBatchSampler, SafeDataLoader, image_paths
from ..ema import ModelEMA
from ..export import export_program, on_cpu
from ...utils.log import prints_to_log, setup_logger
from ..loop import LoopConfig, TrainLoop, cleanup_failed_start, write_resolved_config
from ..trainer import dist_info
from ..runtime import check_interrupt
from .base import Task, int_setting, require_weights, start_run

__all__ = ["DetectionTask", "evaluate_model"]

EXPORT_PREFIX = "model"  # PaddleDetection's deploy tools read model.* next to infer_cfg.yml
PRIMARY = "bbox_mAP"


def evaluate_model(model: nn.Layer, cfg: Any, output_eval: str, num_workers: int = 0,
                   _setup: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """COCO (or the config's ``metric``) results on ``EvalDataset``: ``bbox_mAP`` (AP@[.5:.95]),
    ``bbox_AP50``, ``mask_mAP``/``mask_AP50`` for instance segmentation, and ``images``.

    ``_setup`` caches the evaluation pipeline between calls of one training run."""
    setup = _setup if _setup is not None else {}
    if "metrics" not in setup:
        dataset, collate, batch_size, metrics = ppdet.evaluator(cfg, model, output_eval)
        if len(dataset) == 0:
            raise ConfigError("EvalDataset is empty")
        sampler = ResumableBatchSampler(len(dataset), batch_size, shuffle=False, drop_last=False)
        loader = SafeDataLoader(dataset, sampler, num_workers=num_workers, collate_fn=collate,
                                describe=lambda i: ppdet.sample_file(dataset, i))
        setup.update(metrics=metrics, loader=loader, images=len(dataset))
    metrics, loader = setup["metrics"], setup["loader"]
    was_training = model.training
    model.eval()
    with paddle.no_grad():
        for data in loader:
            outs = model(data)
            for metric in metrics:
                metric.update(data, outs)
    if was_training:
        model.train()
    out: Dict[str, Any] = {}
    for metric in metrics:
        with prints_to_log():  # pycocotools' AP tables: the log file
            metric.accumulate()
        results = metric.get_results() if hasattr(metric, "get_results") else {}
        metric.reset()
        for key, values in (results or {}).items():
            values = list(np.asarray(values).reshape(-1))
            if values:
                out[f"{key}_mAP"] = float(values[0])  # COCO AP@[.5:.95] (VOC: mAP)
                if len(values) > 1:
                    out[f"{key}_AP50"] = float(values[1])
    # PaddleDetection skips COCO evaluation when nothing was detected above the score threshold: AP 0.
    out.setdefault(PRIMARY, 0.0)
    out["images"] = setup["images"]
    return out


class _ExportNet(nn.Layer):
    """Inference graph with plain tensors: (image ``[N, 3, H, W]``, im_shape ``[N, 2]``, scale_factor
    ``[N, 2]``) -> (bbox ``[M, 6]`` = class, score, x1, y1, x2, y2 in original-image pixels; bbox_num
    ``[N]``; mask ``[M, H0, W0]`` for instance segmentation)."""

    def __init__(self, model: nn.Layer) -> None:
        super().__init__()
        self.model = model

    def _outputs(self, image: paddle.Tensor, im_shape: paddle.Tensor, scale_factor: paddle.Tensor):
        out = self.model({"image": image, "im_shape": im_shape, "scale_factor": scale_factor})
        if "mask" in out:
            return out["bbox"], out["bbox_num"], out["mask"]
        return out["bbox"], out["bbox_num"]

    def forward(self, image: paddle.Tensor, im_shape: paddle.Tensor, scale_factor: paddle.Tensor):
        return self._outputs(image, im_shape, scale_factor)


class _ExportNetNoShape(_ExportNet):
    """(image, scale_factor) for detectors that never read ``im_shape`` (FCOS): Paddle refuses a feed
    no output depends on; ``im_shape`` is taken from the image."""

    def forward(self, image: paddle.Tensor, scale_factor: paddle.Tensor):  # type: ignore[override]
        hw = paddle.shape(image)[2:].astype("float32").unsqueeze(0)
        return self._outputs(image, hw.tile([paddle.shape(image)[0], 1]), scale_factor)


def _pad_stride(cfg: Any) -> int:
    for op in cfg["TestReader"].get("batch_transforms", []) or []:
        if "PadBatch" in op:
            return int((op["PadBatch"] or {}).get("pad_to_stride", 1))
    return 1


def run_settings(cfg: Any) -> Dict[str, int]:
    """The integer run settings of a PaddleDetection config, checked (ConfigError naming the key)."""
    return {"epoch": int_setting(cfg.get("epoch"), "epoch", 1),
            "snapshot_epoch": int_setting(cfg.get("snapshot_epoch", 1), "snapshot_epoch", 1),
            "log_iter": int_setting(cfg.get("log_iter", 20), "log_iter", 1),
            "worker_num": int_setting(cfg.get("worker_num", 0), "worker_num", 0),
            "seed": int_setting(cfg.get("seed", 0), "seed"),
            "keep_checkpoint_max": int_setting(cfg.get("keep_checkpoint_max", 3), "keep_checkpoint_max"),
            "train_batch_size": int_setting(cfg["TrainReader"].get("batch_size", 1), "TrainReader.batch_size", 1),
            "eval_batch_size": int_setting(cfg["EvalReader"].get("batch_size", 1), "EvalReader.batch_size", 1)}


class DetectionTask(Task):
    """PaddleDetection configs (``architecture``, module sections, ``TrainDataset``/``EvalDataset``,
    ``TrainReader``/``EvalReader``/``TestReader``, ``LearningRate``, ``OptimizerBuilder``, ``epoch``,
    ``snapshot_epoch``, ``use_ema``, ``seed`` ...)."""

    kind = "det"

    @staticmethod
    def _load(args: argparse.Namespace, overrides: List[str]) -> Any:
        return ppdet.load_det_config(args.config, overrides)

    @staticmethod
    def _output_dir(cfg: Any, args: argparse.Namespace) -> str:
        return args.output or os.path.join(cfg.get("save_dir", "output"), cfg.filename)

    def train(self, args: argparse.Namespace, overrides: List[str]) -> Dict[str, Any]:
        cfg = self._load(args, overrides)
        settings = run_settings(cfg)
        do_eval = bool(args.eval)
        output_dir = self._output_dir(cfg, args)
        rank, world_size = dist_info()
        record = ppdet.model_record(cfg)
        resume_path, resume_state = start_run(output_dir, args.resume, args.overwrite, record, "architecture", "det",
                                              rank)
        with cleanup_failed_start(output_dir):  # refused on bad input: nothing left behind
            return self._train(args, cfg, settings, output_dir, rank, world_size, record, resume_path, resume_state,
                               do_eval)

    def _train(self, args: argparse.Namespace, cfg: Any, settings: Dict[str, int], output_dir: str, rank: int,
               world_size: int, record: Any, resume_path: Optional[str], resume_state: Any,
               do_eval: bool) -> Dict[str, Any]:
        ppdet.check_dataset(cfg, "TrainDataset")
        if do_eval:
            ppdet.check_dataset(cfg, "EvalDataset")
        log = setup_logger(output_dir, rank)
        if rank == 0:
            write_resolved_config(output_dir, ppdet.config_dict(cfg))
        seed = settings["seed"]
        paddle.seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        model = ppdet.build_model(cfg)
        init = args.weights or cfg.get("pretrain_weights")
        if init:
            if str(init).startswith(("http://", "https://")):
                raise ConfigError(f"pretrain_weights: '{init}' is a URL and nothing is downloaded; download it "
                                  f"and pass the file with -w/--weights")
            log.info(f"initialised from {load_checkpoint(model, init, strict=False, log=log.info)}")
        dataset, collate, reader = ppdet.train_reader(cfg)
        batch_size = settings["train_batch_size"]
        sampler = ResumableBatchSampler(len(dataset), batch_size, shuffle=bool(reader.shuffle),
                                        drop_last=bool(reader.drop_last), seed=seed, rank=rank, world_size=world_size)
        steps = sampler.batches_per_epoch()
        if steps == 0:
            raise ConfigError(f"TrainDataset has {len(dataset)} images, fewer than TrainReader.batch_size "
                              f"{batch_size} (drop_last)")
        workers = settings["worker_num"]
        loader = SafeDataLoader(dataset, sampler, num_workers=workers, seed=seed, collate_fn=collate,
                                use_shared_memory=bool(reader.use_shared_memory),
                                describe=lambda i: ppdet.sample_file(dataset, i))
        scheduler = ppdet.create("LearningRate", steps)
        optimizer = ppdet.create("OptimizerBuilder", scheduler, model)
        use_amp = bool(cfg.get("amp", False)) and bool(cfg.use_gpu)
        scaler = paddle.amp.GradScaler(init_loss_scaling=cfg.get("init_loss_scaling", 1024)) if use_amp else None
        ema = None
        if cfg.get("use_ema", False):
            ema = ModelEMA(model, float(cfg.get("ema_decay", 0.9998)), cfg.get("ema_decay_type", "threshold"),
                           skip=cfg.get("ema_black_list") or ())
        state = {"epoch": 0}

        def on_epoch_start(epoch: int) -> None:  # mixup/cutmix epochs of PaddleDetection's datasets
            state["epoch"] = epoch
            dataset.set_epoch(epoch)

        def step(net: nn.Layer, data: Any, rng: np.random.RandomState):
            data["epoch_id"] = state["epoch"]
            with paddle.amp.auto_cast(enable=use_amp, level=cfg.get("amp_level", "O1")):
                outputs = net(data)
            extra = {k: float(v) for k, v in outputs.items() if k != "loss" and k.startswith("loss")}
            return outputs["loss"], int(data["image"].shape[0]), extra

        epochs, snapshot = settings["epoch"], settings["snapshot_epoch"]
        output_eval = os.path.join(output_dir, "eval")
        eval_setup: Dict[str, Any] = {}
        loop_cfg = LoopConfig(
            output_dir=output_dir, epochs=epochs, steps_per_epoch=steps, save_epochs=snapshot,
            eval_epochs=snapshot if do_eval else 0, keep_checkpoint_max=settings["keep_checkpoint_max"],
            print_every=settings["log_iter"], seed=seed, progress=True,
            use_visualdl=bool(cfg.get("use_vdl", True)), unit="images",
            meta={"task": "det", "model_record": record, "architecture": cfg.architecture})
        loop = TrainLoop(model, optimizer, scheduler, sampler, loader, step, loop_cfg,
                         evaluate=(lambda net: evaluate_model(net, cfg, output_eval, workers, eval_setup))
                         if do_eval else None,
                         primary=PRIMARY, ema=ema, scaler=scaler, log=log, rank=rank, world_size=world_size,
                         ema_net=lambda: ppdet.build_model(cfg), on_epoch_start=on_epoch_start)
        log.info(f"{cfg.architecture}: {len(dataset)} train images, {steps} steps/epoch, {epochs} epochs, "
                 f"output {output_dir}")
        return loop.run((resume_path, resume_state) if resume_path else None)

    def _model(self, args: argparse.Namespace, overrides: List[str]):
        cfg = self._load(args, overrides)
        model = ppdet.build_model(cfg)
        weights = require_weights(args.weights, cfg.get("weights"))
        if weights:
            load_checkpoint(model, weights, use_ema=getattr(args, "ema", False),
                            log=logging.getLogger("paddle_lk.engine").info)
        model.eval()
        return cfg, model

    def evaluate(self, args: argparse.Namespace, overrides: List[str]) -> Dict[str, Any]:
        cfg, model = self._model(args, overrides)
        # the detections (bbox.json) go next to the weights of a run dir, else to the config's output dir
        run_dir = args.weights if args.weights and os.path.isdir(args.weights) else \
            os.path.join(cfg.get("save_dir", "output"), cfg.filename)
        output_eval = os.path.join(run_dir, "eval")
        return evaluate_model(model, cfg, output_eval, run_settings(cfg)["worker_num"])

    def infer(self, args: argparse.Namespace, overrides: List[str]) -> List[Dict[str, Any]]:
        from PIL import Image

        if not args.input:
            raise ConfigError("-i/--input: the images to detect on (files, folders or image lists)")
        files = [f for src in args.input for f in image_paths(src)]
        cfg, model = self._model(args, overrides)
        threshold = 0.5 if args.threshold is None else float(args.threshold)
        transforms = det_infer.test_transforms(cfg)
        names = ppdet.class_names(cfg)
        output = args.output or self.default_output(args.config, "infer")
        results = []
        for path in files:
            check_interrupt()
            with paddle.no_grad():
                out = model(det_infer.prepare_inputs(cfg, path, transforms))
            boxes, masks = det_infer.detections(out, threshold)
            drawn = det_infer.draw(Image.open(path).convert("RGB"), boxes, masks, names, threshold)
            dst = os.path.join(output, os.path.splitext(os.path.basename(path))[0] + ".png")
            with atomic_path(dst, suffix=".png") as tmp:
                drawn.save(tmp, format="PNG")
            results.append({"file": path, "image": dst, "boxes": [
                {"class_id": b["category_id"], "label_name": names.get(b["category_id"]), "score": b["score"],
                 "bbox_xywh": b["bbox"]} for b in boxes]})
        return results

    def export(self, args: argparse.Namespace, overrides: List[str]) -> Dict[str, Any]:
        with on_cpu():  # the process keeps its device
            return self._export(args, overrides)

    def _export(self, args: argparse.Namespace, overrides: List[str]) -> Dict[str, Any]:
        cfg, model = self._model(args, overrides)
        out = args.output or self.default_output(args.config, "export")
        stride = max(_pad_stride(cfg), 32)
        rng = np.random.RandomState(0)
        samples = []
        for h, w in ((2 * stride, 3 * stride) if stride >= 64 else (256, 320),
                     (3 * stride, 2 * stride) if stride >= 64 else (320, 256)):
            image = rng.standard_normal([1, 3, h, w]).astype("float32")
            samples.append([image, np.array([[h, w]], "float32"), np.array([[1.0, 1.0]], "float32")])
        spec = [paddle.static.InputSpec([None, 3, None, None], "float32", "image"),
                paddle.static.InputSpec([None, 2], "float32", "im_shape"),
                paddle.static.InputSpec([None, 2], "float32", "scale_factor")]
        # Boxes the verification compares: with untrained weights (or a high score threshold) a detector may
        # find none, and then only the empty outputs are compared -- said in the log and export_info.
        with paddle.no_grad():
            boxes = sum(int(_ExportNet(model)(*[paddle.to_tensor(a) for a in sample])[1].sum()) for sample in samples)
        info = {"task": "det", "architecture": cfg.architecture, "ppdet": ppdet.ppdet_version(),
                "verified_boxes": boxes}
        if boxes == 0 and not args.no_verify:
            logging.getLogger("paddle_lk.engine").warning(
                "the model finds no box above its score threshold on the verification inputs: the export check "
                "compares empty outputs only (train the model first, or lower the NMS score_threshold to check)")
        names = ppdet.class_names(cfg)

        def files(inputs: List[str]) -> Dict[str, str]:
            infer_cfg = {"mode": "paddle", "draw_threshold": 0.5, "metric": cfg.get("metric", "COCO"),
                         "use_dynamic_shape": False, "arch": cfg.architecture, "min_subgraph_size": 3,
                         "inputs": inputs,
                         "Preprocess": [dict(type=list(op)[0], **(list(op.values())[0] or {}))
                                        for op in cfg["TestReader"]["sample_transforms"] if "Decode" not in op]
                         + ([{"type": "PadStride", "stride": _pad_stride(cfg)}] if _pad_stride(cfg) > 1 else []),
                         "label_list": [names[i] for i in sorted(names)]}
            return {"infer_cfg.yml": yaml.safe_dump(infer_cfg, sort_keys=False, allow_unicode=True)}

        kwargs = dict(with_custom_op=args.with_custom_op, onnx=args.onnx, opset=args.opset, verify=not args.no_verify,
                      info=info, prefix=EXPORT_PREFIX, trace_context=compat.onednn_safe_resize,
                      log=logging.getLogger("paddle_lk.engine"))
        try:
            summary = export_program(_ExportNet(model), spec, samples, out,
                                     extra_files=files(["image", "im_shape", "scale_factor"]), **kwargs)
        except ExportError as exc:
            if "not involved in the target_vars" not in str(exc.__cause__):
                raise
            # Paddle refuses unused feeds (FCOS never reads im_shape): export without it.
            summary = export_program(_ExportNetNoShape(model), [spec[0], spec[2]], [[s[0], s[2]] for s in samples],
                                     out, extra_files=files(["image", "scale_factor"]), **kwargs)
        return {k: v for k, v in summary.items() if k != "files"}

    def human(self, mode: str, result: Any) -> Optional[List[str]]:
        if mode == "eval":
            return [" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items())]
        if mode == "infer":
            return [f"{r['file']}: {len(r['boxes'])} boxes -> {r['image']}" for r in result]
        if mode == "train":
            best = result.get("best") or {}
            line = f"checkpoints in {result['output_dir']}"
            if best.get(PRIMARY, -1) >= 0:
                line = f"best {PRIMARY} {best[PRIMARY]:.4f} (epoch {best['epoch']}); " + line
            return [line]
        return None
