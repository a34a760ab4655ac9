"""Optimizer and learning-rate schedule from the ``Optimizer`` section (Paddle's own classes).

* AdamW (decoupled decay) or Momentum/SGD (L2 decay); the parameters without weight decay are the
  model's own ``no_weight_decay()`` (norms, biases, layer scales: the official recipes' rule; other
  models: every 1-D parameter and bias) while ``one_dim_param_no_weight_decay`` is on, plus names
  containing an entry of ``no_weight_decay_name``;
* optional layer-wise lr decay (``layer_decay``, ConvNeXt/BEiT-style, used by the official
  fine-tunes) through each parameter's ``optimize_attr['learning_rate']`` multiplier, with the layer
  of each parameter taken from the model's ``group_matcher()``;
* gradient clipping by global norm (``clip_norm``);
* ``paddle.optimizer.lr.LinearWarmup`` over ``CosineAnnealingDecay``, stepped once per update.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Set, Tuple

import paddle
import paddle.nn as nn

from .config import ConfigError

__all__ = ["build_lr_scheduler", "build_optimizer", "split_decay_params", "layer_ids"]



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
    if not names:
        return []
    return names.split() if isinstance(names, str) else [str(n) for n in names]


def split_decay_params(model: nn.Layer, opt_cfg: Dict[str, Any]
                       ) -> Tuple[List[paddle.Tensor], List[paddle.Tensor], List[str]]:
    """(decayed params, non-decayed params, non-decayed structured names) of the trainable params."""
    patterns = _no_decay_patterns(opt_cfg)
    skip: Set[str] = set()
    if opt_cfg.get("one_dim_param_no_weight_decay", True):
        if hasattr(model, "no_weight_decay"):
            skip = set(model.no_weight_decay())
        else:
            skip = {n for n, p in model.named_parameters() if len(p.shape) <= 1 or n.endswith(".bias")}
    decay, no_decay, no_decay_names = [], [], []
    for name, p in model.named_parameters():
        if p.stop_gradient:
            continue
        if name in skip or any(pat in name for pat in patterns):
            no_decay.append(p)
            no_decay_names.append(name)
        else:
            decay.append(p)
    return decay, no_decay, no_decay_names


_LAST = 99999  # group_matcher's "last group of its stage"


def _positions(model: nn.Layer, names: List[str]) -> Dict[str, Any]:
    """Per parameter: "stem", (stage, block) from the model's ``group_matcher()``, or "top"."""
    if not hasattr(model, "group_matcher"):
        raise ConfigError(f"Optimizer.layer_decay: {type(model).__name__} has no group_matcher() to assign "
                          f"parameters to layers; remove layer_decay for this model")
    matcher = model.group_matcher()
    stem = re.compile(matcher["stem"])
    entries = [(re.compile(rx), tuple(suffix or ())) for rx, suffix in matcher["blocks"]]
    base = int(matcher.get("stage_base", 0))
    out: Dict[str, Any] = {}
    for name in names:
        if stem.match(name):
            out[name] = "stem"
            continue
        for rx, suffix in entries:
            m = rx.match(name)
            if m:
                ints = tuple(int(g) for g in m.groups()) + suffix
                out[name] = (ints[0] - base, ints[1] if len(ints) > 1 else 0)
                break
        else:
            out[name] = "top"
    return out


def layer_ids(model: nn.Layer) -> Dict[str, int]:
    """Depth id per parameter for layer-wise lr decay: ConvNeXt/BEiT's 12-layer layout for 4 stages.

    Stem 0; stage 0 -> 1, stage 1 -> 2, stage 2 split into 9 groups -> 3..11, stage 3 -> 12; a layer that
    ``group_matcher`` puts at the start (block -1) or end (block 99999) of a stage takes that stage's
    first or last id; norm/head (everything else) on top. Other stage counts: stage s -> s + 1.
    """
    names = [n for n, _ in model.named_parameters()]
    pos = _positions(model, names)
    blocks: Dict[int, int] = {}
    for p in pos.values():
        if isinstance(p, tuple) and 0 <= p[1] < _LAST:
            blocks[p[0]] = max(blocks.get(p[0], 0), p[1] + 1)
    num_stages = getattr(model, "num_stages", len(blocks))

    def stage_id(stage: int, block: int) -> int:
        if num_stages != 4:
            return stage + 1
        if stage < 2:
            return stage + 1
        if stage == 2:
            n = max(blocks.get(2, 1), 1)
            block = 0 if block < 0 else min(block, n - 1)
            return 3 + block // -(-n // 9)
        return 12

    top = (12 if num_stages == 4 else num_stages) + 1
    return {n: 0 if p == "stem" else top if p == "top" else stage_id(*p) for n, p in pos.items()}


def _apply_layer_decay(model: nn.Layer, decay_rate: float) -> None:
    """Scale each parameter's lr by ``decay_rate ** (top id - id)`` (ConvNeXt/BEiT fine-tuning)."""
    ids = layer_ids(model)
    top = max(ids.values())
    for n, p in model.named_parameters():
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
