"""Optimizer and learning-rate schedule from the ``Optimizer`` section (Paddle's own classes).

* AdamW (decoupled decay) or Momentum/SGD (L2 decay); no weight decay on norms, biases, layer
  scales and other 1-D parameters (``one_dim_param_no_weight_decay``) nor on names matching
  ``no_weight_decay_name``;
* optional layer-wise lr decay (``layer_decay``, ConvNeXt/BEiT-style, used by the official
  fine-tunes) through each parameter's ``optimize_attr['learning_rate']`` multiplier;
* gradient clipping by global norm (``clip_norm``);
* ``paddle.optimizer.lr.LinearWarmup`` over ``CosineAnnealingDecay``, stepped once per update.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Tuple

import paddle
import paddle.nn as nn

from .config import ConfigError

__all__ = ["build_lr_scheduler", "build_optimizer", "split_decay_params", "layer_ids"]

_DEFAULT_NO_DECAY = ("norm", "bn", "bias", "layer_scale", "gamma", "pos_embed")


def build_lr_scheduler(cfg: Dict[str, Any], updates_per_epoch: int) -> paddle.optimizer.lr.LRScheduler:
    """Warmup (``warmup_epoch``, linear from ``warmup_start_lr``) then cosine to ``eta_min``, per update."""
    lr_cfg = cfg["Optimizer"]["lr"]
    epochs = cfg["Global"]["epochs"]
    base = float(lr_cfg["learning_rate"])
    warmup = int(round(float(lr_cfg["warmup_epoch"]) * updates_per_epoch))
    total = epochs * updates_per_epoch
    if warmup > total:
        raise ConfigError(f"Optimizer.lr.warmup_epoch ({lr_cfg['warmup_epoch']}) exceeds Global.epochs ({epochs})")
    if lr_cfg["name"] == "Constant":
        inner: Any = base
    else:
        inner = paddle.optimizer.lr.CosineAnnealingDecay(base, T_max=max(1, total - warmup),
                                                         eta_min=float(lr_cfg["eta_min"]))
    if warmup > 0:
        return paddle.optimizer.lr.LinearWarmup(inner, warmup_steps=warmup,
                                                start_lr=float(lr_cfg["warmup_start_lr"]), end_lr=base)
    if isinstance(inner, float):
        return paddle.optimizer.lr.LambdaDecay(inner, lambda _: 1.0)
    return inner


def _no_decay_patterns(opt_cfg: Dict[str, Any]) -> List[str]:
    names = opt_cfg.get("no_weight_decay_name")
    if names is None:
        return list(_DEFAULT_NO_DECAY)
    return names.split() if isinstance(names, str) else [str(n) for n in names]


def split_decay_params(model: nn.Layer, opt_cfg: Dict[str, Any]
                       ) -> Tuple[List[paddle.Tensor], List[paddle.Tensor], List[str]]:
    """(decayed params, non-decayed params, non-decayed structured names) of the trainable params."""
    patterns = _no_decay_patterns(opt_cfg)
    one_dim = opt_cfg.get("one_dim_param_no_weight_decay", True)
    decay, no_decay, no_decay_names = [], [], []
    for name, p in model.named_parameters():
        if p.stop_gradient:
            continue
        if (one_dim and len(p.shape) <= 1) or any(pat in name for pat in patterns):
            no_decay.append(p)
            no_decay_names.append(name)
        else:
            decay.append(p)
    return decay, no_decay, no_decay_names


_BLOCK_RE = re.compile(r"(?:_layers\.)?(?:stages\.(\d+)\.blocks\.(\d+)|block(\d+)\.(\d+))\.")
_DOWN_RE = re.compile(r"(?:_layers\.)?(?:transitions\.(\d+)|patch_embed(\d+))\.")
_STEM_RE = re.compile(r"(?:_layers\.)?(?:stem|patch_embed1)\.")


def layer_ids(names: List[str]) -> Dict[str, int]:
    """Depth id per parameter for layer-wise lr decay, ConvNeXt's 12-layer layout for 4 stages.

    Stem 0; stage 0 -> 1, stage 1 -> 2, stage 2 split into 9 groups -> 3..11, stage 3 -> 12;
    a downsampling layer goes with the stage it feeds; norm/head (everything else) on top.
    Other stage counts: stage s -> s + 1.
    """
    blocks: Dict[int, int] = {}
    for n in names:
        m = _BLOCK_RE.match(n)
        if m:
            stage = int(m.group(1)) if m.group(1) is not None else int(m.group(3)) - 1
            block = int(m.group(2)) if m.group(2) is not None else int(m.group(4))
            blocks[stage] = max(blocks.get(stage, 0), block + 1)
    num_stages = len(blocks)

    def stage_first(stage: int) -> int:
        return stage_id(stage, 0)

    def stage_id(stage: int, block: int) -> int:
        if num_stages == 4:
            if stage < 2:
                return stage + 1
            if stage == 2:
                return 3 + block // -(-blocks[2] // 9)
            return 12
        return stage + 1

    top = (12 if num_stages == 4 else num_stages) + 1
    ids = {}
    for n in names:
        m, d = _BLOCK_RE.match(n), _DOWN_RE.match(n)
        if _STEM_RE.match(n):
            ids[n] = 0
        elif m:
            stage = int(m.group(1)) if m.group(1) is not None else int(m.group(3)) - 1
            ids[n] = stage_id(stage, int(m.group(2)) if m.group(2) is not None else int(m.group(4)))
        elif d:
            # transitions.i feeds stage i + 1; patch_embed{k} (1-based) feeds stage k - 1.
            ids[n] = stage_first(int(d.group(1)) + 1 if d.group(1) is not None else int(d.group(2)) - 1)
        else:
            ids[n] = top
    return ids


def _apply_layer_decay(model: nn.Layer, decay_rate: float) -> None:
    """Scale each parameter's lr by ``decay_rate ** (top id - id)`` (ConvNeXt/BEiT fine-tuning)."""
    params = dict(model.named_parameters())
    ids = layer_ids(list(params))
    top = max(ids.values())
    for n, p in params.items():
        p.optimize_attr["learning_rate"] = decay_rate ** (top - ids[n])


def build_optimizer(cfg: Dict[str, Any], model: nn.Layer, scheduler: paddle.optimizer.lr.LRScheduler
                    ) -> paddle.optimizer.Optimizer:
    """AdamW / Momentum / SGD over ``model``'s trainable parameters with the decay split and clipping."""
    opt_cfg = cfg["Optimizer"]
    if opt_cfg.get("layer_decay"):
        rate = float(opt_cfg["layer_decay"])
        if not 0 < rate <= 1:
            raise ConfigError(f"Optimizer.layer_decay: expected a value in (0, 1], got {rate}")
        _apply_layer_decay(model, rate)
    decay, no_decay, _ = split_decay_params(model, opt_cfg)
    if not decay and not no_decay:
        raise ConfigError("Arch: the model has no trainable parameters")
    wd = float(opt_cfg["weight_decay"])
    clip = opt_cfg.get("clip_norm")
    grad_clip = nn.ClipGradByGlobalNorm(float(clip)) if clip else None
    name = opt_cfg["name"]
    if name == "AdamW":
        decay_names = {p.name for p in decay}
        return paddle.optimizer.AdamW(
            learning_rate=scheduler, parameters=decay + no_decay, beta1=float(opt_cfg["beta1"]),
            beta2=float(opt_cfg["beta2"]), epsilon=float(opt_cfg["epsilon"]), weight_decay=wd,
            apply_decay_param_fun=lambda pname: pname in decay_names, grad_clip=grad_clip)
    groups = [g for g in ({"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0})
              if g["params"]]
    momentum = float(opt_cfg["momentum"]) if name == "Momentum" else 0.0
    return paddle.optimizer.Momentum(learning_rate=scheduler, momentum=momentum, parameters=groups,
                                     grad_clip=grad_clip)
