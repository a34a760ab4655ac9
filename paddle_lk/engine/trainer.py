"""Classification training and evaluation: the model, data, loss and metrics of a PaddleClas-style
config, run by the shared :class:`~paddle_lk.engine.loop.TrainLoop` (exact resume, NaN stop, Ctrl-C,
logging -- the same as segmentation and detection)."""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

import numpy as np
import paddle
import paddle.distributed as dist
import paddle.nn as nn
import yaml

from ..checkpoint import load_checkpoint
from .builder import build_loss, build_model, num_classes_of, parse_topk
from .checkpoint import load_checkpoint_file, resolve_resume
from .config import ConfigError
from .data import build_loader, build_mixup, check_data_exists, class_names_for
from .ema import ModelEMA
from .export import export_model
from ..utils.log import setup_logger
from .loop import LoopConfig, NonFiniteLossError, TrainLoop, check_resume_record, claim_output_dir, \
    cleanup_failed_start, previous_run_files, write_resolved_config
from .optim import build_lr_scheduler, build_optimizer
from .runtime import progress_enabled

__all__ = ["Trainer", "NonFiniteLossError", "setup_device", "evaluate", "dist_info", "check_resume_compatible",
           "ARCH_ENGINE_KEYS"]


def dist_info() -> tuple:
    """(rank, world size) from the launcher's environment (1 process: (0, 1))."""
    return int(os.environ.get("PADDLE_TRAINER_ID", 0)), int(os.environ.get("PADDLE_TRAINERS_NUM", 1))


def setup_device(device: str) -> str:
    """``auto`` -> ``gpu`` when Paddle has CUDA and a GPU is visible, else ``cpu``; sets it."""
    has_gpu = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0
    if device == "auto":
        device = "gpu" if has_gpu else "cpu"
    if device == "gpu" and not has_gpu:
        raise ConfigError("Global.device: 'gpu' requested but this Paddle has no CUDA GPU (use cpu or auto)")
    if device == "gpu":
        from paddle.distributed import ParallelEnv

        paddle.set_device(f"gpu:{ParallelEnv().dev_id}")
    else:
        paddle.set_device("cpu")
    return device


def topk_reported(num_classes: int) -> List[int]:
    """Training top-k logged: top-1, and top-5 when there are more than 5 classes to choose from."""
    return [1, 5] if num_classes > 5 else [1]


@paddle.no_grad()
def evaluate(model: nn.Layer, loader: paddle.io.DataLoader, loss_fn: nn.Layer, topk: List[int],
             world_size: int = 1, amp: Optional[Dict[str, Any]] = None, progress: bool = False
             ) -> Dict[str, float]:
    """Loss and top-k accuracies (``paddle.metric.accuracy``) over ``loader``, summed over ranks."""
    model.eval()
    n_classes = None
    sums = {f"top{k}": 0.0 for k in topk}
    loss_sum, count = 0.0, 0
    iterator = loader
    if progress_enabled(progress):
        from tqdm import tqdm

        iterator = tqdm(loader, desc="eval", leave=False, dynamic_ncols=True)
    for x, y in iterator:
        amp = amp or {}
        with paddle.amp.auto_cast(enable=bool(amp.get("enable") and amp.get("use_fp16_test")),
                                  level=amp.get("level", "O1"), use_promote=amp.get("use_promote", True)):
            logits = model(x)
        logits = logits.astype("float32")
        n_classes = logits.shape[-1]
        label = y.reshape([-1, 1]).astype("int64")
        b = int(x.shape[0])
        loss_sum += float(loss_fn(logits, label.reshape([-1]))) * b
        for k in topk:
            sums[f"top{k}"] += float(paddle.metric.accuracy(logits, label, k=min(k, n_classes))) * b
        count += b
    totals = np.array([loss_sum, count] + [sums[f"top{k}"] for k in topk], dtype="float64")
    if world_size > 1:
        t = paddle.to_tensor(totals)
        dist.all_reduce(t)
        totals = t.numpy()
    if totals[1] == 0:
        raise ValueError("evaluation set is empty")
    out = {"loss": float(totals[0] / totals[1]), "samples": int(totals[1])}
    for i, k in enumerate(topk):
        out[f"top{k}"] = float(totals[2 + i] / totals[1])
    return out


# Arch keys that do not change the model's structure (a resumed run may differ in them).
ARCH_ENGINE_KEYS = ("pretrained", "drop_head", "drop_path_rate", "use_checkpoint", "with_cp", "use_sync_bn")


def _arch_args(cfg: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in cfg["Arch"].items() if k not in ARCH_ENGINE_KEYS}


def check_resume_compatible(path: str, state: Dict[str, Any], cfg: Dict[str, Any]) -> None:
    """A resume checkpoint must be a training checkpoint of this config's ``Arch`` (see
    :func:`~paddle_lk.engine.loop.check_resume_record`)."""
    meta = state.get("meta") or {}
    recorded = meta.get("arch_args")
    if recorded is None and meta.get("config") and meta.get("task") == "cls":
        recorded = _arch_args(yaml.safe_load(meta["config"]))
    check_resume_record(path, state, recorded, _arch_args(cfg), "Arch", "Global.pretrained_model or -w/--weights",
                        task="cls")


class Trainer:
    """Train / evaluate a classification model from a validated config (see :mod:`.config`)."""

    def __init__(self, cfg: Dict[str, Any]) -> None:
        self.cfg = cfg
        self.g = cfg["Global"]
        self.rank, self.world_size = dist_info()
        self.device = setup_device(self.g["device"])
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_parallel_env()
        self.output_dir = self.g["output_dir"]
        self.log = setup_logger(None, self.rank)  # console only: train() adds its log file once the dir is claimed
        amp = cfg["AMP"]
        self.amp_enabled = bool(amp["use_amp"]) and self.device == "gpu"
        if amp["use_amp"] and not self.amp_enabled:
            self.log.warning("AMP.use_amp ignored: automatic mixed precision runs on GPU only")
        self.amp = {"enable": self.amp_enabled, "level": amp["level"], "use_promote": amp.get("use_promote", True),
                    "use_fp16_test": amp.get("use_fp16_test", True)}
        if self.g.get("use_dali"):
            self.log.warning("Global.use_dali ignored: paddle_lk reads data with paddle.io.DataLoader")

    # ------------------------------------------------------------------ helpers
    def _barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def _build(self) -> None:
        cfg, g = self.cfg, self.g
        paddle.seed(g["seed"])  # identical initial weights in every run and on every rank
        np.random.seed(g["seed"])
        self.num_classes = num_classes_of(cfg)
        self.net = build_model(cfg)
        if g.get("pretrained_model"):
            self._load_init_weights(g["pretrained_model"])
        if g.get("to_static"):
            # PaddleClas's Global.to_static: the forward runs as a static graph (the large-kernel op included).
            spec = [paddle.static.InputSpec([None] + list(g["image_shape"]), "float32", "x")]
            self.net = paddle.jit.to_static(self.net, input_spec=spec, full_graph=True)
        if g["sync_bn"] and self.world_size > 1:
            if self.device == "gpu":
                self.net = nn.SyncBatchNorm.convert_sync_batchnorm(self.net)
            else:
                self.log.warning("Global.sync_bn ignored on CPU: SyncBatchNorm needs GPUs")

    def _load_init_weights(self, path: str) -> None:
        """Fine-tuning init: every tensor loads (EMA weights of a training checkpoint when it has them);
        a classifier of another size (22K -> 1K, a new label set) is dropped, with a log line."""
        report = load_checkpoint(self.net, path, use_ema=None, log=self.log.info)
        self.log.info(f"initialised from {report.source}: {report}")

    # ------------------------------------------------------------------ train
    def train(self, resume: Optional[str] = None, overwrite: bool = False,
              output_setting: str = "Global.output_dir") -> Dict[str, Any]:
        """Run ``Global.epochs`` epochs (continuing from ``resume`` / ``Global.checkpoints`` if given);
        ``output_setting`` is how the user set the output dir (named in errors).

        A fresh run refuses an ``output_dir`` that holds another run's checkpoints unless ``overwrite``
        (then those files are removed first); resuming checks the checkpoint's recorded ``Arch`` against
        the config before anything is built. The loop itself is :class:`~paddle_lk.engine.loop.TrainLoop`
        (exact resume, NaN stop, Ctrl-C, logging), shared with segmentation and detection.

        Raises:
            ConfigError (bad config, output dir in use, resume checkpoint of another model),
            DataError, :class:`NonFiniteLossError` (NaN/inf training or evaluation loss), Interrupted.
        """
        cfg, g = self.cfg, self.g
        if cfg["DataLoader"].get("Train") is None:
            raise ConfigError("DataLoader.Train: required for training")
        do_eval = g["eval_during_train"] and cfg["DataLoader"].get("Eval") is not None
        check_data_exists(cfg, "Train")
        if do_eval:
            check_data_exists(cfg, "Eval")
        resume_path = resolve_resume(resume or g.get("checkpoints"), self.output_dir)
        resume_state = None
        if resume_path:
            resume_state = load_checkpoint_file(resume_path)
            check_resume_compatible(resume_path, resume_state, cfg)
        elif self.rank == 0 and previous_run_files(self.output_dir):
            claim_output_dir(self.output_dir, overwrite, output_setting)
        with cleanup_failed_start(self.output_dir):  # refused on bad input: nothing left behind
            return self._train(cfg, g, do_eval, resume_path, resume_state)

    def _train(self, cfg: Dict[str, Any], g: Dict[str, Any], do_eval: bool, resume_path: Optional[str],
               resume_state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        self.log = setup_logger(self.output_dir, self.rank)
        self._barrier()
        if self.rank == 0:
            write_resolved_config(self.output_dir, cfg)
        self.class_names = class_names_for(cfg)
        loader, sampler = build_loader(cfg, "Train", self.rank, self.world_size)
        eval_loader = build_loader(cfg, "Eval", self.rank, self.world_size)[0] if do_eval else None
        mixup = build_mixup(cfg["DataLoader"]["Train"]["dataset"].get("batch_transform_ops"),
                            "DataLoader.Train.dataset.batch_transform_ops")
        self._build()
        loss_fn = build_loss(cfg, "Train", self.num_classes)
        eval_loss_fn = build_loss(cfg, "Eval", self.num_classes)
        topk = parse_topk(cfg, "Eval")
        accum = g["accum_steps"]
        full_steps = sampler.batches_per_epoch()
        if full_steps == 0:
            raise ConfigError("DataLoader.Train: fewer samples than one batch with drop_last=True")
        steps = min(full_steps, g["max_steps_per_epoch"]) if g["max_steps_per_epoch"] else full_steps
        scheduler = build_lr_scheduler(cfg, -(-steps // accum))
        optimizer = build_optimizer(cfg, self.net, scheduler)
        ema = ModelEMA(self.net, cfg["EMA"]["decay"]) if cfg.get("EMA") else None
        scaler = None
        if self.amp_enabled:
            amp = cfg["AMP"]
            scaler = paddle.amp.GradScaler(init_loss_scaling=amp["scale_loss"],
                                           use_dynamic_loss_scaling=amp["use_dynamic_loss_scaling"])
            if amp["level"] == "O2":
                self.net, optimizer = paddle.amp.decorate(self.net, optimizer, level="O2")
        num_classes, amp_cfg = self.num_classes, self.amp

        def step(model: nn.Layer, data: Any, rng: np.random.RandomState):
            x, y = data
            target = y.astype("int64")
            if mixup is not None:
                soft = nn.functional.one_hot(target.reshape([-1]), num_classes).astype("float32")
                x, target = mixup(x, soft, rng)
            with paddle.amp.auto_cast(enable=amp_cfg["enable"], level=amp_cfg["level"],
                                      use_promote=amp_cfg["use_promote"]):
                logits = model(x)
            logits = logits.astype("float32")
            loss = loss_fn(logits, target)
            metrics = {}
            if mixup is None:  # accuracy of mixed targets means nothing
                lbl = y.reshape([-1, 1]).astype("int64")
                for k in topk_reported(num_classes):
                    metrics[f"top{k}"] = float(paddle.metric.accuracy(logits, lbl, k=k))
            return loss, int(x.shape[0]), metrics

        def evaluate_net(net: nn.Layer) -> Dict[str, float]:
            return evaluate(net, eval_loader, eval_loss_fn, topk, self.world_size, amp_cfg,
                            g["use_tqdm"] and self.rank == 0)

        loop_cfg = LoopConfig(
            output_dir=self.output_dir, epochs=g["epochs"], steps_per_epoch=steps, accum_steps=accum,
            save_epochs=g["save_interval"], save_updates=g["save_step_interval"],
            eval_epochs=g["eval_interval"], keep_checkpoint_max=g["keep_checkpoint_max"],
            print_every=g["print_batch_step"], seed=g["seed"], progress=g["use_tqdm"],
            use_visualdl=g["use_visualdl"], unit="images",
            meta={"arch": cfg["Arch"]["name"], "arch_args": _arch_args(cfg), "class_names": self.class_names,
                  "task": "cls", "config": yaml.safe_dump(cfg, sort_keys=False)})
        loop = TrainLoop(self.net, optimizer, scheduler, sampler, loader, step, loop_cfg,
                         evaluate=evaluate_net if eval_loader is not None else None, primary="top1", ema=ema,
                         scaler=scaler, log=self.log, rank=self.rank, world_size=self.world_size,
                         ema_net=lambda: build_model(self.cfg, load_pretrained=False))
        n_params = sum(int(p.numel()) for p in self.net.parameters() if not p.stop_gradient)
        self.log.info(f"{cfg['Arch']['name']}: {n_params:,} trainable parameters; {len(loader.dataset)} train "
                      f"images, {steps} steps/epoch x {self.world_size} process(es), device {self.device}, "
                      f"output {self.output_dir}")
        summary = loop.run((resume_path, resume_state) if resume_path else None)
        del resume_state
        if g["export_after_train"] and self.rank == 0:
            # The output dir resolves to best_model.pdparams (best evaluated weights), else latest.
            summary["export"] = export_model(cfg, self.output_dir, g["save_inference_dir"], onnx=g["export_onnx"],
                                             logger=self.log)
        return summary

    # ------------------------------------------------------------------ eval
    def evaluate(self, weights: Optional[str], use_ema: bool = False) -> Dict[str, float]:
        """Top-k accuracy and loss of ``weights`` (checkpoint -- its EMA weights with ``use_ema`` --,
        output dir, .pdparams or .pth) on the Eval set."""
        cfg = self.cfg
        if cfg["DataLoader"].get("Eval") is None:
            raise ConfigError("DataLoader.Eval: required for evaluation")
        check_data_exists(cfg, "Eval")
        loader = build_loader(cfg, "Eval", self.rank, self.world_size)[0]
        self.num_classes = num_classes_of(cfg)
        net = build_model(cfg, load_pretrained=not weights)
        if weights:
            report = load_checkpoint(net, weights, use_ema=use_ema, log=self.log.info)
            self.log.info(f"evaluating {report.source}")
        loss_fn = build_loss(cfg, "Eval", self.num_classes)
        return evaluate(net, loader, loss_fn, parse_topk(cfg, "Eval"), self.world_size, self.amp,
                        self.g["use_tqdm"] and self.rank == 0)

