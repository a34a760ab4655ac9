"""The one training loop: classification, PaddleSeg and PaddleDetection runs train, save, resume,
stop on NaN, log and stop on Ctrl-C the same way.

A task hands the loop its network, optimizer, per-update LR schedule, resumable sampler and loader,
and a ``step`` function (one batch -> loss); the loop does the rest:

* determinism: the data order is a function of (seed, epoch), each sample's augmentation of (seed,
  epoch, index) (see :mod:`.data`), each step's RNG (drop path, Mixup) of (seed, epoch, batch, rank);
  so a checkpoint holding model, optimizer, scheduler, EMA, scaler and the (epoch, batch) position
  continues bit for bit (``--resume``), whatever killed the run;
* a NaN/inf loss stops the run *before* the bad update (:class:`NonFiniteLossError`), the last
  checkpoint intact; a NaN/inf evaluation fails the run too;
* Ctrl-C stops after the current update, saves ``latest`` at that point and raises
  :class:`~paddle_lk.engine.runtime.Interrupted`;
* logs carry loss, lr, images/s and an ETA; the same scalars go to VisualDL (``output_dir/vdl``).
"""
from __future__ import annotations

import contextlib
import glob
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np
import paddle
import paddle.distributed as dist
import paddle.nn as nn
import yaml

from ..checkpoint import BEST, BEST_WEIGHTS, CKPT_EXT, LATEST
from ..errors import ConfigError, PaddleLKError
from ..io.atomic import atomic_path
from .checkpoint import optimizer_state_from_structured, optimizer_state_to_structured, prune_numbered, \
    save_checkpoint
from .ema import ModelEMA
from ..utils.log import ScalarWriter
from .runtime import Interrupted, check_interrupt, progress_enabled

__all__ = ["TrainLoop", "LoopConfig", "NonFiniteLossError", "step_seed", "format_eta", "claim_output_dir",
           "cleanup_failed_start",
           "previous_run_files", "check_resume_record", "write_resolved_config"]


class NonFiniteLossError(PaddleLKError, FloatingPointError):
    """The loss became NaN/inf; raised before the bad gradients touch the weights."""


def previous_run_files(output_dir: str) -> List[str]:
    """Checkpoints and best weights of an earlier training run in ``output_dir``."""
    return sorted(glob.glob(os.path.join(output_dir, f"*{CKPT_EXT}"))
                  + glob.glob(os.path.join(output_dir, BEST_WEIGHTS)))


def claim_output_dir(output_dir: str, overwrite: bool, setting: str = "--output") -> None:
    """A new run needs an ``output_dir`` without another run's files (they would mix with this run's),
    unless ``overwrite`` removes them first (with its log and VisualDL records).

    Raises:
        ConfigError naming the folder, what it holds and the three ways on.
    """
    previous = previous_run_files(output_dir)
    if not previous:
        return
    if not overwrite:
        names = ", ".join(os.path.basename(p) for p in previous[:4]) + (", ..." if len(previous) > 4 else "")
        raise ConfigError(f"{setting} '{output_dir}' holds a previous run ({names}): continue it with --resume, "
                          f"start over with --overwrite (removes those files), or choose another {setting}")
    for path in previous + [os.path.join(output_dir, "vdl"), os.path.join(output_dir, "train.log")]:
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


TASK_NAMES = {"cls": "classification", "seg": "segmentation (PaddleSeg)", "det": "detection (PaddleDetection)"}


def check_resume_record(path: str, state: Dict[str, Any], recorded: Any, current: Any, what: str,
                        weights_hint: str, task: str) -> None:
    """A resume checkpoint must be a training checkpoint of ``task`` (``cls``/``seg``/``det``) whose recorded
    model description (``recorded``, e.g. the ``Arch`` section or PaddleSeg's ``model``) equals the config's
    (``current``): checked before anything is built. Raises ConfigError (one line) naming what differs."""
    missing = [k for k in ("model", "optimizer", "meta") if k not in state]
    if missing:
        raise ConfigError(f"{path}: not a training checkpoint (no '{missing[0]}'); to start from its weights "
                          f"use {weights_hint}")
    other = (state.get("meta") or {}).get("task")
    if other != task:
        raise ConfigError(f"{path}: a {TASK_NAMES.get(other, 'checkpoint of another kind of')} training checkpoint; "
                          f"--resume needs one of this {TASK_NAMES[task]} config's own runs")
    if recorded is None or recorded == current:
        return
    if isinstance(recorded, dict) and isinstance(current, dict):
        keys = sorted(set(recorded) | set(current), key=lambda k: (k not in ("name", "type"), str(k)))
        diff = [f"{k}: checkpoint {recorded.get(k)!r}, config {current.get(k)!r}"
                for k in keys if recorded.get(k) != current.get(k)]
    else:
        diff = [f"checkpoint {recorded!r}, config {current!r}"]
    raise ConfigError(f"{path}: --resume needs a checkpoint of this config's model, but it was trained with "
                      f"another {what} ({'; '.join(diff[:4])}); resume it with its own config, or start from its "
                      f"weights with {weights_hint}")


@contextlib.contextmanager
def cleanup_failed_start(output_dir: str) -> Iterator[None]:
    """Around a run's start-up (after :func:`claim_output_dir`): if it fails on bad input before the first
    checkpoint, remove what it wrote (``config.yaml``, ``train.log``, ``vdl/``; the dir if it made it) --
    a refused run leaves nothing behind. A NaN stop or Ctrl-C keeps its log."""
    existed = os.path.isdir(output_dir)
    try:
        yield
    except PaddleLKError as exc:
        if not isinstance(exc, NonFiniteLossError) and not os.path.exists(os.path.join(output_dir, LATEST)):
            for name in ("config.yaml", "train.log", "vdl"):
                path = os.path.join(output_dir, name)
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                elif os.path.exists(path):
                    os.remove(path)
            if not existed and os.path.isdir(output_dir) and not os.listdir(output_dir):
                os.rmdir(output_dir)
        raise


def write_resolved_config(output_dir: str, cfg: Any) -> str:
    """``output_dir/config.yaml``: the config as the run used it (defaults and ``-o`` applied)."""
    path = os.path.join(output_dir, "config.yaml")
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            yaml.safe_dump(cfg, f, sort_keys=False, allow_unicode=True, default_flow_style=None)
    return path


def step_seed(seed: int, epoch: int, batch: int, rank: int) -> int:
    """The RNG seed of one training step: a function of the position, not of history."""
    return (seed * 1_000_003 + epoch * 100_003 + batch * 101 + rank * 7) % (2 ** 31)


def format_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass
class LoopConfig:
    """When the loop trains, evaluates and saves.

    ``epochs`` passes of ``steps_per_epoch`` batches (``max_updates`` stops earlier: PaddleSeg's
    ``iters``); saves at the end of every ``save_epochs``-th epoch and/or every ``save_updates``
    updates (``latest``; iteration-based runs also a numbered ``iter_<n>``), evaluates every ``eval_epochs``-th epoch and/or every ``eval_updates`` updates (and at
    the end); keeps the newest ``keep_checkpoint_max`` numbered checkpoints.
    """

    output_dir: str
    epochs: int
    steps_per_epoch: int
    max_updates: Optional[int] = None
    accum_steps: int = 1
    save_epochs: int = 1
    save_updates: int = 0
    eval_epochs: int = 1
    eval_updates: int = 0
    keep_checkpoint_max: int = 3
    print_every: int = 10
    seed: int = 0
    progress: bool = True
    use_visualdl: bool = True
    unit: str = "images"
    meta: Dict[str, Any] = field(default_factory=dict)


class TrainLoop:
    """Run one task's training (see the module docstring).

    Args:
        net: the network (unwrapped; DataParallel is applied here for several processes).
        optimizer: a Paddle optimizer over ``net``'s parameters.
        scheduler: a ``paddle.optimizer.lr.LRScheduler`` stepped once per update (or None).
        sampler: a :class:`~paddle_lk.engine.data.ResumableBatchSampler`; ``loader`` iterates its batches.
        step: ``step(model, batch, rng) -> (loss, samples, metrics)``: forward one batch in train mode
            (``model`` may be the DataParallel wrapper), return the scalar loss tensor, the batch size
            and extra float metrics to log; ``rng`` is this step's NumPy generator.
        evaluate: ``evaluate(net) -> metrics`` on the evaluation set (None: no evaluation).
        primary: the metric that picks the best weights (higher is better), e.g. ``top1``, ``mIoU``.
        ema: a :class:`ModelEMA` updated after each update (evaluated too), or None.
        scaler: a ``paddle.amp.GradScaler`` or None.
        log: a logger; ``cfg``: a :class:`LoopConfig`; ``rank``/``world_size``: distributed position.
        ema_net: builds a second network to evaluate the EMA weights in.
        on_epoch_start: called with the epoch index before its first batch (e.g. a dataset's own epoch
            schedule, as PaddleDetection's mixup epochs).
    """

    def __init__(self, net: nn.Layer, optimizer: Any, scheduler: Any, sampler: Any, loader: Iterable,
                 step: Callable[..., Tuple[paddle.Tensor, int, Dict[str, float]]], cfg: LoopConfig,
                 evaluate: Optional[Callable[[nn.Layer], Dict[str, float]]] = None, primary: str = "loss",
                 ema: Optional[ModelEMA] = None, scaler: Any = None, log: Any = None, rank: int = 0,
                 world_size: int = 1, ema_net: Optional[Callable[[], nn.Layer]] = None,
                 on_epoch_start: Optional[Callable[[int], None]] = None) -> None:
        self.net, self.optimizer, self.scheduler = net, optimizer, scheduler
        self.sampler, self.loader, self.step, self.cfg = sampler, loader, step, cfg
        self.evaluate, self.primary, self.ema, self.scaler = evaluate, primary, ema, scaler
        self.log, self.rank, self.world_size, self._ema_net_factory = log, rank, world_size, ema_net
        self.on_epoch_start = on_epoch_start
        self.updates = 0
        self.last_loss: Optional[float] = None  # mean loss of the last logged interval
        self.best: Dict[str, Any] = {primary: -math.inf, "epoch": 0, "updates": 0, "source": None}
        self._resume_point = (0, 0)
        self._ema_net: Optional[nn.Layer] = None

    # ------------------------------------------------------------------ state
    def state(self, epoch: int, batch: int) -> Dict[str, Any]:
        """Everything a bit-exact continuation needs (plus ``cfg.meta``: arch, config, class names ...)."""
        return {
            "model": self.net.state_dict(),
            "optimizer": optimizer_state_to_structured(self.optimizer.state_dict(), self.net),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "ema": self.ema.state_dict() if self.ema else None,
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "meta": dict(self.cfg.meta, epoch=epoch, batch=batch, updates=self.updates, best=self.best,
                         world_size=self.world_size),
        }

    def save(self, name: str, epoch: int, batch: int) -> Optional[str]:
        """Write checkpoint ``name``; weights that turned NaN/inf (an update with a finite loss can do that)
        stop the run instead, so every checkpoint on disk is a good one."""
        self._check_weights_finite(epoch, batch)
        if self.rank != 0:
            return None
        return save_checkpoint(self.state(epoch, batch), os.path.join(self.cfg.output_dir, name))

    @paddle.no_grad()
    def _check_weights_finite(self, epoch: int, batch: int) -> None:
        bad = [n for n, p in self.net.named_parameters() if not bool(paddle.isfinite(p).all())]
        if bad:
            latest = os.path.join(self.cfg.output_dir, LATEST)
            kept = latest if os.path.isfile(latest) else "none (none written yet)"
            raise NonFiniteLossError(f"weights are not finite after update {self.updates} (epoch {epoch + 1}, "
                                     f"batch {batch}; {len(bad)} parameters, e.g. {bad[0]}) though the loss was: "
                                     f"training stopped without saving them; the last good checkpoint is {kept}. "
                                     f"Check the optimizer settings (weight decay, learning rate)")

    def load_state(self, path: str, state: Dict[str, Any]) -> Tuple[int, int]:
        """Restore a checkpoint written by :meth:`state`; returns the (epoch, batch) to continue from."""
        meta = state["meta"]
        if meta.get("world_size", 1) != self.world_size:
            self.log.warning(f"{path} was written by {meta.get('world_size')} processes, resuming with "
                             f"{self.world_size}: the data order differs from an uninterrupted run")
        self.net.set_state_dict(state["model"])
        self.optimizer.set_state_dict(optimizer_state_from_structured(state["optimizer"], self.net))
        if state.get("scheduler") and self.scheduler is not None:
            self.scheduler.set_state_dict(state["scheduler"])
        if self.ema is not None and state.get("ema"):
            self.ema.set_state_dict(state["ema"])
            self.ema.updates = int(meta["updates"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.updates = int(meta["updates"])
        best = meta.get("best") or {}
        if self.primary in best:
            self.best = best
        self.log.info(f"resumed from {path}: epoch {meta['epoch'] + 1}, batch {meta['batch']}, "
                      f"{self.updates} updates done")
        return int(meta["epoch"]), int(meta["batch"])

    # ------------------------------------------------------------------ run
    def _total_updates(self) -> int:
        c = self.cfg
        per_epoch = -(-c.steps_per_epoch // c.accum_steps)
        total = c.epochs * per_epoch
        return min(total, c.max_updates) if c.max_updates else total

    def _done(self) -> bool:
        return bool(self.cfg.max_updates) and self.updates >= self.cfg.max_updates

    def run(self, resume: Optional[Tuple[str, Dict[str, Any]]] = None) -> Dict[str, Any]:
        """Train to the end (or from a checkpoint ``(path, state)``); returns a summary."""
        c = self.cfg
        start_epoch, start_batch = self.load_state(*resume) if resume else (0, 0)
        model = paddle.DataParallel(self.net) if self.world_size > 1 else self.net
        vdl = ScalarWriter(c.output_dir, c.use_visualdl, self.rank)
        self._resume_point = (start_epoch, start_batch)
        self._t_start, self._u_start = time.time(), self.updates
        last_eval: Dict[str, float] = {}
        try:
            for epoch in range(start_epoch, c.epochs):
                if self._done():
                    break
                first = start_batch if epoch == start_epoch else 0
                if first < c.steps_per_epoch:  # (an interrupt after the epoch's last update leaves its tail)
                    last_eval = self._train_epoch(model, epoch, first, vdl) or last_eval
                if self.world_size > 1:
                    self._average_buffers()
                is_last = epoch + 1 == c.epochs or self._done()
                if self.evaluate is not None and ((c.eval_epochs and (epoch + 1) % c.eval_epochs == 0) or is_last
                                                  or self._at_interval(c.eval_updates)):
                    last_eval = self._eval_and_track(epoch + 1, 0, vdl)
                if (c.save_epochs and (epoch + 1) % c.save_epochs == 0) or is_last \
                        or (c.max_updates and self._at_interval(c.save_updates)):
                    self._save_numbered(epoch + 1, 0)
                self.save(LATEST, epoch + 1, 0)
                self._resume_point = (epoch + 1, 0)
                self._barrier()
        except Interrupted:
            epoch, batch = self._resume_point
            path = self.save(LATEST, epoch, batch)
            where = f"iter {self.updates}" if self.cfg.max_updates else f"epoch {epoch + 1}, batch {batch}"
            raise Interrupted(f"interrupted at {where}: saved {path}; continue with --resume") from None
        finally:
            vdl.close()
        if self.world_size > 1:
            self._check_sync()
        if self.evaluate is None and self.rank == 0:
            # No evaluation: the final weights are what export/eval should use.
            save_checkpoint(self.net.state_dict(), os.path.join(c.output_dir, BEST_WEIGHTS))
        return {"output_dir": c.output_dir, "loss": self.last_loss, "eval": last_eval, "best": self.best,
                "updates": self.updates,
                "train_seconds": time.time() - self._t_start, "latest": os.path.join(c.output_dir, LATEST)}

    def _at_interval(self, every: int) -> bool:
        return bool(every) and self.updates % every == 0

    def _save_numbered(self, epoch: int, batch: int) -> None:
        """``epoch_<n>`` after an epoch; ``iter_<n>`` in iteration-based runs (PaddleSeg's ``iters``), where a
        save interval need not end an epoch. Keeps the newest ``keep_checkpoint_max``."""
        name = f"iter_{self.updates}{CKPT_EXT}" if self.cfg.max_updates else f"epoch_{epoch}{CKPT_EXT}"
        self.save(name, epoch, batch)
        if self.rank == 0:
            prune_numbered(self.cfg.output_dir, self.cfg.keep_checkpoint_max)

    def _barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def _where(self, epoch: int, batch: int) -> str:
        """A position as the logs name it: ``iter n`` (iteration-based runs) or ``epoch e, batch b`` (1-based)."""
        if self.cfg.max_updates:
            return f"iter {self.updates + 1}"
        return f"epoch {epoch + 1}, batch {batch + 1}"

    def _nonfinite(self, value: float, epoch: int, batch: int) -> NonFiniteLossError:
        latest = os.path.join(self.cfg.output_dir, LATEST)
        kept = latest if os.path.isfile(latest) else "none (none written yet)"
        return NonFiniteLossError(f"loss is {value} at {self._where(epoch, batch)} (after {self.updates} updates): "
                                  f"training stopped before the update; the last good checkpoint is {kept}. "
                                  f"Lower the learning rate or clip the gradients")

    def _train_epoch(self, model: nn.Layer, epoch: int, first: int, vdl: ScalarWriter) -> Optional[Dict[str, float]]:
        c = self.cfg
        model.train()
        self.sampler.set_epoch(epoch, first)
        if self.on_epoch_start is not None:
            self.on_epoch_start(epoch)
        steps, accum = c.steps_per_epoch, c.accum_steps
        bar = None
        if progress_enabled(c.progress and self.rank == 0):
            from tqdm import tqdm

            bar = tqdm(total=steps, initial=first, desc=f"epoch {epoch + 1}/{c.epochs}", dynamic_ncols=True,
                       leave=False)
        t0, seen, loss_acc, loss_n, extra_acc = time.time(), 0, 0.0, 0, {}
        last_eval = None
        for batch, data in enumerate(self.loader, start=first):
            if batch >= steps or self._done():
                break
            seed = step_seed(c.seed, epoch, batch, self.rank)
            paddle.seed(seed)  # drop path etc.: a function of the position, not of history
            is_update = (batch + 1) % accum == 0 or batch + 1 == steps
            sync_ctx = model.no_sync() if (self.world_size > 1 and not is_update) else contextlib.nullcontext()
            with sync_ctx:
                loss, n, extra = self.step(model, data, np.random.RandomState(seed))
                value = float(loss)
                bad = not math.isfinite(value)
                if self.world_size > 1:
                    flag = paddle.to_tensor([1.0 if bad else 0.0])
                    dist.all_reduce(flag)
                    bad = float(flag) > 0
                if bad:
                    raise self._nonfinite(value, epoch, batch)
                scaled = loss / accum if accum > 1 else loss
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            if is_update:
                if self.scaler is not None:
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    self.optimizer.step()
                self.optimizer.clear_grad()
                if self.scheduler is not None:
                    self.scheduler.step()
                self.updates += 1
                if self.ema is not None:
                    self.ema.update(self.net)
                self._resume_point = (epoch, batch + 1)  # a consistent point: the update is complete
                if self._at_interval(c.save_updates) and batch + 1 < steps:
                    if c.max_updates:  # iteration-based: a numbered checkpoint per save interval
                        self._save_numbered(epoch, batch + 1)
                    self.save(LATEST, epoch, batch + 1)
                if self.evaluate is not None and self._at_interval(c.eval_updates) and batch + 1 < steps:
                    last_eval = self._eval_and_track(epoch, batch + 1, vdl)
                    model.train()
                check_interrupt()
            seen += int(n)
            loss_acc += value
            loss_n += 1
            for k, v in extra.items():
                extra_acc[k] = extra_acc.get(k, 0.0) + float(v)
            lr = self.optimizer.get_lr()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}", lr=f"{lr:.2e}")
            if (batch + 1) % c.print_every == 0 or batch + 1 == steps or self._done():
                elapsed = max(time.time() - t0, 1e-9)
                ips = seen * self.world_size / elapsed
                msg = {"loss": loss_acc / loss_n, "lr": lr, **{k: v / loss_n for k, v in extra_acc.items()}}
                self.last_loss = msg["loss"]
                for tag, v in dict(msg, ips=ips).items():
                    vdl.add(f"train/{tag}", v, self.updates)
                done = self.updates - self._u_start
                rate = (time.time() - self._t_start) / max(done, 1)
                eta = format_eta(rate * (self._total_updates() - self.updates)) if done else "?"
                where = (f"iter {self.updates}/{c.max_updates} " if c.max_updates  # iteration-based (PaddleSeg)
                         else f"epoch {epoch + 1}/{c.epochs} batch {batch + 1}/{steps} ")
                self.log.info(where + " ".join(f"{k} {v:.4g}" for k, v in msg.items())
                              + f" | {ips:.4g} {c.unit}/s | eta {eta}")
                t0, seen, loss_acc, loss_n, extra_acc = time.time(), 0, 0.0, 0, {}
        if bar is not None:
            bar.close()
        return last_eval

    # ------------------------------------------------------------------ evaluation
    def _eval_and_track(self, epoch: int, batch: int, vdl: ScalarWriter) -> Dict[str, float]:
        where = f"iter {self.updates}" if self.cfg.max_updates else f"epoch {epoch}" + (
            f" update {self.updates}" if batch else "")
        result = self.evaluate(self.net)
        self._check_finite(result, where, "model")
        for k, v in result.items():
            if isinstance(v, (int, float)):
                vdl.add(f"eval/{k}", v, self.updates)
        self.log.info(f"{where} eval: " + _fmt(result))
        candidates = [("model", result, self.net.state_dict())]
        if self.ema is not None:
            ema_net = self._ema_model()
            ema_result = self.evaluate(ema_net)
            self._check_finite(ema_result, where, "EMA")
            for k, v in ema_result.items():
                if isinstance(v, (int, float)):
                    vdl.add(f"eval_ema/{k}", v, self.updates)
            self.log.info(f"{where} eval (EMA): " + _fmt(ema_result))
            candidates.append(("ema", ema_result, self.ema.state_dict()))
            result = dict(result, **{f"ema_{k}": v for k, v in ema_result.items()})
        self.net.train()
        source, res, weights = max(candidates, key=lambda cand: cand[1][self.primary])
        if res[self.primary] > self.best[self.primary]:
            self.best = {self.primary: res[self.primary], "epoch": epoch, "updates": self.updates, "source": source}
            if self.rank == 0:
                save_checkpoint(self.state(epoch, batch), os.path.join(self.cfg.output_dir, BEST))
                save_checkpoint(weights, os.path.join(self.cfg.output_dir, BEST_WEIGHTS))
            self.log.info(f"new best {self.primary} {res[self.primary]:.4f} ({source} weights) -> "
                          f"{os.path.join(self.cfg.output_dir, BEST_WEIGHTS)}")
        return result

    def _check_finite(self, result: Dict[str, Any], where: str, which: str) -> None:
        bad = {k: v for k, v in result.items() if isinstance(v, float) and not math.isfinite(v)}
        if bad:
            raise NonFiniteLossError(f"evaluation loss/metrics ({which} weights) after {where} are not finite {bad}: "
                                     f"the run diverged. "
                                     f"Lower the learning rate or clip the gradients")

    def _ema_model(self) -> nn.Layer:
        if self._ema_net is None:
            self._ema_net = self._ema_net_factory()
        self._ema_net.set_state_dict(self.ema.state_dict())
        return self._ema_net

    # ------------------------------------------------------------------ several processes
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


def _fmt(metrics: Dict[str, Any]) -> str:
    return " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
                    if not isinstance(v, (list, dict)))
