"""The classification training / evaluation loop.

Determinism (exact resume on CPU): the data order is a function of (seed, epoch), each sample's
augmentation RNG of (seed, epoch, index) and each step's Paddle/NumPy RNG (drop path, Mixup) of
(seed, epoch, batch, rank). A checkpoint therefore only needs the model, optimizer, scheduler,
EMA and scaler states plus the (epoch, batch) position to continue bit-for-bit.
"""
from __future__ import annotations

import contextlib
import glob
import math
import os
import shutil
import time
from typing import Any, Dict, List, Optional

import numpy as np
import paddle
import paddle.distributed as dist
import paddle.nn as nn
import yaml

from ..checkpoint import load_checkpoint
from .builder import build_loss, build_model, num_classes_of, parse_topk
from .checkpoint import BEST, BEST_WEIGHTS, CKPT_EXT, LATEST, load_checkpoint_file, \
    optimizer_state_from_structured, optimizer_state_to_structured, prune_epochs, resolve_resume, save_checkpoint
from .config import ConfigError
from .data import build_loader, build_mixup, check_data_exists, class_names_for
from .ema import ModelEMA
from .export import export_model
from .logger import ScalarWriter, setup_logger
from .optim import build_lr_scheduler, build_optimizer
from .runtime import Interrupted, check_interrupt, progress_enabled

__all__ = ["Trainer", "NonFiniteLossError", "setup_device", "evaluate", "dist_info", "check_resume_compatible",
           "previous_run_files", "ARCH_ENGINE_KEYS"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN/inf; raised before the bad gradients touch the weights."""


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


def _fmt(metrics: Dict[str, Any]) -> str:
    return " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())


def _step_seed(seed: int, epoch: int, batch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 100_003 + batch * 101 + rank * 7) % (2 ** 31)


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
        with paddle.amp.auto_cast(enable=bool(amp and amp.get("enable")), level=(amp or {}).get("level", "O1")):
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
    """A resume checkpoint must be a training checkpoint of the model the config builds; compared on the
    recorded ``Arch`` before anything is built. Raises ConfigError (one line) otherwise."""
    missing = [k for k in ("model", "optimizer", "meta") if k not in state]
    if missing:
        raise ConfigError(f"{path}: not a training checkpoint (no '{missing[0]}'); to start from its weights "
                          f"use Global.pretrained_model or -w/--weights")
    meta = state["meta"]
    recorded = meta.get("arch_args")
    if recorded is None and meta.get("config"):
        recorded = _arch_args(yaml.safe_load(meta["config"]))
    current = _arch_args(cfg)
    if recorded is not None and recorded != current:
        keys = sorted(set(recorded) | set(current), key=lambda k: (k != "name", k))
        diff = [f"{k}: checkpoint {recorded.get(k)!r}, config {current.get(k)!r}"
                for k in keys if recorded.get(k) != current.get(k)]
        raise ConfigError(f"{path}: --resume needs a checkpoint of this config's model, but it was trained with "
                          f"another Arch ({'; '.join(diff[:4])}); resume it with its own config, or start from its "
                          f"weights with Global.pretrained_model")


def previous_run_files(output_dir: str) -> List[str]:
    """Checkpoints and best weights of an earlier training run in ``output_dir``."""
    return sorted(glob.glob(os.path.join(output_dir, f"*{CKPT_EXT}"))
                  + glob.glob(os.path.join(output_dir, BEST_WEIGHTS)))


def _claim_output_dir(output_dir: str, overwrite: bool) -> None:
    """A new run needs an ``output_dir`` without another run's files (they would mix with this run's),
    unless ``overwrite`` removes them first."""
    previous = previous_run_files(output_dir)
    if not previous:
        return
    if not overwrite:
        names = ", ".join(os.path.basename(p) for p in previous[:4]) + (", ..." if len(previous) > 4 else "")
        raise ConfigError(f"Global.output_dir '{output_dir}' holds a previous run ({names}): continue it with "
                          f"--resume, start over with --overwrite (removes those files), or set another "
                          f"-o Global.output_dir=...")
    for path in previous + [os.path.join(output_dir, "vdl"), os.path.join(output_dir, "train.log")]:
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def _check_finite_eval(result: Dict[str, Any], epoch: int, which: str) -> None:
    if not math.isfinite(result["loss"]):
        raise NonFiniteLossError(f"evaluation loss ({which} weights) is {result['loss']} after epoch {epoch + 1}: "
                                 f"the run diverged. Lower Optimizer.lr.learning_rate or set Optimizer.clip_norm")


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
        self.log = setup_logger(self.output_dir, self.rank)
        amp = cfg["AMP"]
        self.amp_enabled = bool(amp["use_amp"]) and self.device == "gpu"
        if amp["use_amp"] and not self.amp_enabled:
            self.log.warning("AMP.use_amp ignored: automatic mixed precision runs on GPU only")
        self.amp = {"enable": self.amp_enabled, "level": amp["level"]}

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

    def _state(self, epoch: int, batch: int) -> Dict[str, Any]:
        return {
            "model": self.net.state_dict(),
            "optimizer": optimizer_state_to_structured(self.optimizer.state_dict(), self.net),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "meta": {"epoch": epoch, "batch": batch, "updates": self.updates, "best": self.best,
                     "world_size": self.world_size, "arch": self.cfg["Arch"]["name"],
                     "arch_args": _arch_args(self.cfg), "class_names": self.class_names,
                     "config": yaml.safe_dump(self.cfg, sort_keys=False)},
        }

    def _save(self, name: str, epoch: int, batch: int) -> Optional[str]:
        if self.rank != 0:
            return None
        return save_checkpoint(self._state(epoch, batch), os.path.join(self.output_dir, name))

    def _resume(self, path: str, state: Dict[str, Any]) -> tuple:
        meta = state["meta"]
        if meta.get("world_size", 1) != self.world_size:
            self.log.warning(f"{path} was written by {meta.get('world_size')} processes, resuming with "
                             f"{self.world_size}: the data order differs from an uninterrupted run")
        self.net.set_state_dict(state["model"])
        self.optimizer.set_state_dict(optimizer_state_from_structured(state["optimizer"], self.net))
        if state.get("scheduler"):
            self.scheduler.set_state_dict(state["scheduler"])
        if self.ema is not None and state.get("ema"):
            self.ema.set_state_dict(state["ema"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.updates = int(meta["updates"])
        self.best = meta.get("best") or self.best
        self.log.info(f"resumed from {path}: epoch {meta['epoch'] + 1}, batch {meta['batch']}, "
                      f"{self.updates} updates done")
        return int(meta["epoch"]), int(meta["batch"])

    # ------------------------------------------------------------------ train
    def train(self, resume: Optional[str] = None, overwrite: bool = False) -> Dict[str, Any]:
        """Run ``Global.epochs`` epochs (continuing from ``resume`` / ``Global.checkpoints`` if given).

        A fresh run refuses an ``output_dir`` that holds another run's checkpoints unless ``overwrite``
        (then those files are removed first); resuming checks the checkpoint's recorded ``Arch`` against
        the config before anything is built. Ctrl-C stops after the current update, saves ``latest``
        and raises :class:`~paddle_lk.engine.runtime.Interrupted`.

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
            _claim_output_dir(self.output_dir, overwrite)
            self.log = setup_logger(self.output_dir, self.rank)  # a fresh train.log
        self._barrier()
        self.class_names = class_names_for(cfg)
        loader, sampler = build_loader(cfg, "Train", self.rank, self.world_size)
        eval_loader = build_loader(cfg, "Eval", self.rank, self.world_size)[0] if do_eval else None
        mixup = build_mixup(cfg["DataLoader"]["Train"]["dataset"].get("batch_transform_ops"),
                            "DataLoader.Train.dataset.batch_transform_ops")
        self._build()
        self.loss_fn = build_loss(cfg, "Train", self.num_classes)
        self.eval_loss_fn = build_loss(cfg, "Eval", self.num_classes)
        topk = parse_topk(cfg, "Eval")
        accum = g["accum_steps"]
        full_steps = sampler.batches_per_epoch()
        if full_steps == 0:
            raise ConfigError("DataLoader.Train: fewer samples than one batch with drop_last=True")
        steps = min(full_steps, g["max_steps_per_epoch"]) if g["max_steps_per_epoch"] else full_steps
        updates_per_epoch = -(-steps // accum)
        self.scheduler = build_lr_scheduler(cfg, updates_per_epoch)
        self.optimizer = build_optimizer(cfg, self.net, self.scheduler)
        self.ema = ModelEMA(self.net, cfg["EMA"]["decay"]) if cfg.get("EMA") else None
        self.scaler = None
        if self.amp_enabled:
            amp = cfg["AMP"]
            self.scaler = paddle.amp.GradScaler(init_loss_scaling=amp["scale_loss"],
                                                use_dynamic_loss_scaling=amp["use_dynamic_loss_scaling"])
            if amp["level"] == "O2":
                self.net, self.optimizer = paddle.amp.decorate(self.net, self.optimizer, level="O2")
        self.updates = 0
        self.best = {"top1": -1.0, "epoch": 0, "source": None}
        start_epoch, start_batch = 0, 0
        if resume_path:
            start_epoch, start_batch = self._resume(resume_path, resume_state)
            del resume_state
        model = paddle.DataParallel(self.net) if self.world_size > 1 else self.net
        vdl = ScalarWriter(self.output_dir, g["use_visualdl"], self.rank)
        n_params = sum(int(p.numel()) for p in self.net.parameters() if not p.stop_gradient)
        self.log.info(f"{cfg['Arch']['name']}: {n_params:,} trainable parameters; {len(loader.dataset)} train "
                      f"images, {steps} steps/epoch x {self.world_size} process(es), device {self.device}, "
                      f"output {self.output_dir}")
        summary: Dict[str, Any] = {"output_dir": self.output_dir}
        last_eval: Dict[str, float] = {}
        t_train = time.time()
        self._resume_point = (start_epoch, start_batch)
        try:
            for epoch in range(start_epoch, g["epochs"]):
                first = start_batch if epoch == start_epoch else 0
                if first < steps:  # (an interrupt right after the epoch's last update leaves only its tail)
                    self._train_epoch(model, loader, sampler, mixup, epoch, first, steps, accum, vdl)
                if self.world_size > 1:
                    self._average_buffers()
                is_last = epoch + 1 == g["epochs"]
                if eval_loader is not None and ((epoch + 1) % g["eval_interval"] == 0 or is_last):
                    last_eval = self._eval_and_track(eval_loader, topk, epoch, vdl)
                if (epoch + 1) % g["save_interval"] == 0 or is_last:
                    self._save(f"epoch_{epoch + 1}{CKPT_EXT}", epoch + 1, 0)
                    if self.rank == 0:
                        prune_epochs(self.output_dir, g["keep_checkpoint_max"])
                self._save(LATEST, epoch + 1, 0)
                self._resume_point = (epoch + 1, 0)
                self._barrier()
        except Interrupted:
            # The last completed update is a consistent point: keep it, so --resume continues from there.
            epoch, batch = self._resume_point
            path = self._save(LATEST, epoch, batch)
            raise Interrupted(f"interrupted at epoch {epoch + 1}, batch {batch}: saved {path}; continue with "
                              f"--resume") from None
        finally:
            vdl.close()
        if self.world_size > 1:
            self._check_sync()
        summary.update({"eval": last_eval, "best": self.best, "train_seconds": time.time() - t_train,
                        "latest": os.path.join(self.output_dir, LATEST)})
        if eval_loader is None and self.rank == 0:
            # No eval: the final weights are what export/eval should use.
            save_checkpoint(self.net.state_dict(), os.path.join(self.output_dir, BEST_WEIGHTS))
        if g["export_after_train"] and self.rank == 0:
            # The output dir resolves to best_model.pdparams (best evaluated weights), else latest.
            summary["export"] = export_model(cfg, self.output_dir, g["save_inference_dir"], onnx=g["export_onnx"],
                                             logger=self.log)
        return summary

    def _train_epoch(self, model, loader, sampler, mixup, epoch: int, first: int, steps: int, accum: int,
                     vdl: ScalarWriter) -> None:
        g = self.g
        model.train()
        sampler.set_epoch(epoch, first)
        bar = None
        if progress_enabled(g["use_tqdm"] and self.rank == 0):
            from tqdm import tqdm

            bar = tqdm(total=steps, initial=first, desc=f"epoch {epoch + 1}/{g['epochs']}", dynamic_ncols=True,
                       leave=False)
        t0, seen, loss_acc, loss_n = time.time(), 0, 0.0, 0
        batch = first
        for batch, (x, y) in enumerate(loader, start=first):
            if batch >= steps:
                break
            seed = _step_seed(g["seed"], epoch, batch, self.rank)
            paddle.seed(seed)  # drop path etc.: a function of the position, not of history
            target = y.astype("int64")
            if mixup is not None:
                soft = paddle.nn.functional.one_hot(target.reshape([-1]), self.num_classes).astype("float32")
                x, target = mixup(x, soft, np.random.RandomState(seed))
            is_update = (batch + 1) % accum == 0 or batch + 1 == steps
            sync_ctx = model.no_sync() if (self.world_size > 1 and not is_update) else contextlib.nullcontext()
            with sync_ctx:
                with paddle.amp.auto_cast(enable=self.amp_enabled, level=self.amp["level"]):
                    logits = model(x)
                loss = self.loss_fn(logits.astype("float32"), target)
                value = float(loss)
                bad = not math.isfinite(value)
                if self.world_size > 1:
                    flag = paddle.to_tensor([1.0 if bad else 0.0])
                    dist.all_reduce(flag)
                    bad = float(flag) > 0
                if bad:
                    raise NonFiniteLossError(
                        f"loss is {value} at epoch {epoch + 1}, batch {batch} (update {self.updates}): training "
                        f"stopped before the update; the last good checkpoint is "
                        f"{os.path.join(self.output_dir, LATEST) if os.path.isfile(os.path.join(self.output_dir, LATEST)) else 'none (none written yet)'}"
                        f". Lower Optimizer.lr.learning_rate or set Optimizer.clip_norm")
                scaled = loss / accum if accum > 1 else loss
                if self.scaler is not None:
                    self.scaler.scale(scaled).backward()
                else:
                    scaled.backward()
            if is_update:
                if self.scaler is not None:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                self.optimizer.clear_grad()
                self.scheduler.step()
                self.updates += 1
                if self.ema is not None:
                    self.ema.update(self.net)
                if g["save_step_interval"] and self.updates % g["save_step_interval"] == 0 and batch + 1 < steps:
                    self._save(LATEST, epoch, batch + 1)
                self._resume_point = (epoch, batch + 1)  # a consistent point: the update is complete
                check_interrupt()
            seen += int(x.shape[0])
            loss_acc += value
            loss_n += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}", lr=f"{self.optimizer.get_lr():.2e}")
            if (batch + 1) % g["print_batch_step"] == 0 or batch + 1 == steps:
                elapsed = max(time.time() - t0, 1e-9)
                ips = seen * self.world_size / elapsed
                msg = {"loss": loss_acc / loss_n, "lr": self.optimizer.get_lr(), "ips": ips}
                if mixup is None:
                    lbl = y.reshape([-1, 1]).astype("int64")
                    for k in (1, 5):
                        msg[f"top{k}"] = float(paddle.metric.accuracy(logits.astype("float32"), lbl,
                                                                      k=min(k, self.num_classes)))
                for tag, v in msg.items():
                    vdl.add(f"train/{tag}", v, self.updates)
                self.log.info(f"epoch {epoch + 1}/{g['epochs']} batch {batch + 1}/{steps} "
                              + " ".join(f"{k} {v:.4g}" for k, v in msg.items() if k != "ips")
                              + f" | {ips:.4g} images/s")
                t0, seen, loss_acc, loss_n = time.time(), 0, 0.0, 0
        if bar is not None:
            bar.close()

    @paddle.no_grad()
    def _average_buffers(self) -> None:
        """Average BN running statistics over ranks (timm's ``dist_bn=reduce``): DataParallel syncs
        gradients only, so without this every rank would evaluate and save different statistics."""
        trainable = {id(p) for p in self.net.parameters() if not p.stop_gradient}
        for tensor in self.net.state_dict().values():
            if id(tensor) not in trainable and paddle.is_floating_point(tensor):
                dist.all_reduce(tensor)
                tensor.scale_(1.0 / self.world_size)

    def _check_sync(self) -> None:
        """DataParallel keeps replicas identical; verify it (a cheap checksum per rank) at the end."""
        checksum = paddle.to_tensor([sum(float(p.astype("float64").abs().sum()) for p in self.net.parameters())],
                                    dtype="float64")
        gathered: List[paddle.Tensor] = []
        dist.all_gather(gathered, checksum)
        values = [float(t) for t in gathered]
        if max(values) - min(values) > 1e-9 * max(1.0, abs(values[0])):
            raise RuntimeError(f"replicas diverged: parameter checksums per rank {values}")
        self.log.info(f"parameters identical on all {self.world_size} ranks (checksum {values[0]:.10g})")

    def _eval_and_track(self, eval_loader, topk: List[int], epoch: int, vdl: ScalarWriter) -> Dict[str, float]:
        show = progress_enabled(self.g["use_tqdm"] and self.rank == 0)
        result = evaluate(self.net, eval_loader, self.eval_loss_fn, topk, self.world_size, self.amp, show)
        for k, v in result.items():
            vdl.add(f"eval/{k}", v, epoch + 1)
        self.log.info(f"epoch {epoch + 1} eval: " + _fmt(result))
        _check_finite_eval(result, epoch, "model")
        candidates = [("model", result, self.net.state_dict())]
        if self.ema is not None and self.cfg["EMA"]["eval"]:
            ema_net = self._ema_model()
            ema_result = evaluate(ema_net, eval_loader, self.eval_loss_fn, topk, self.world_size, self.amp, show)
            for k, v in ema_result.items():
                vdl.add(f"eval_ema/{k}", v, epoch + 1)
            self.log.info(f"epoch {epoch + 1} eval (EMA): " + _fmt(ema_result))
            _check_finite_eval(ema_result, epoch, "EMA")
            candidates.append(("ema", ema_result, self.ema.state_dict()))
            result = dict(result, **{f"ema_{k}": v for k, v in ema_result.items()})
        self.net.train()
        source, res, weights = max(candidates, key=lambda c: c[1]["top1"])
        if res["top1"] > self.best["top1"]:
            self.best = {"top1": res["top1"], "epoch": epoch + 1, "source": source}
            if self.rank == 0:
                save_checkpoint(self._state(epoch + 1, 0), os.path.join(self.output_dir, BEST))
                save_checkpoint(weights, os.path.join(self.output_dir, BEST_WEIGHTS))
            self.log.info(f"new best top1 {res['top1']:.4f} ({source} weights) -> "
                          f"{os.path.join(self.output_dir, BEST_WEIGHTS)}")
        return result

    def _ema_model(self) -> nn.Layer:
        if getattr(self, "_ema_net", None) is None:
            self._ema_net = build_model(self.cfg, load_pretrained=False)
        self._ema_net.set_state_dict(self.ema.state_dict())
        return self._ema_net

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

