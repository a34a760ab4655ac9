"""Classification (PaddleClas-style configs) behind the one front end."""
from __future__ import annotations

import argparse
import logging
import os
from typing import Any, Dict, List, Optional

from ..builder import resolve_arch
from ..config import load_config
from ..data import prepare_bundled_data
from ..export import export_model
from ..infer import predict
from ..trainer import Trainer
from .base import Task, require_weights

__all__ = ["ClassificationTask"]


class ClassificationTask(Task):
    """PaddleClas-style configs (``Global``/``Arch``/``DataLoader``/... sections)."""

    kind = "cls"

    def _config(self, args: argparse.Namespace, overrides: List[str], train: bool = False) -> Dict[str, Any]:
        extra = []
        if train:  # the training flags, as the config's own settings
            if args.output:  # the run, and the deploy model exported after it, go there
                extra += [f"Global.output_dir={args.output}",
                          f"Global.save_inference_dir={os.path.join(args.output, 'inference')}"]
            if args.eval is not None:
                extra.append(f"Global.eval_during_train={args.eval}")
            if args.weights:  # fine-tuning init
                extra.append(f"Global.pretrained_model={args.weights}")
        cfg = load_config(args.config, overrides + extra)
        resolve_arch(cfg)  # every Arch key checked before anything is written
        return cfg

    def _weights(self, cfg: Dict[str, Any], args: argparse.Namespace) -> Optional[str]:
        pretrained = cfg["Arch"].get("pretrained")
        weights = require_weights(args.weights, cfg["Global"].get("pretrained_model"),
                                  pretrained if isinstance(pretrained, str) else None)
        if weights is None and pretrained:  # -w random: do not load Arch.pretrained either
            cfg["Arch"]["pretrained"] = None
        return weights

    def train(self, args: argparse.Namespace, overrides: List[str]) -> Dict[str, Any]:
        cfg = self._config(args, overrides, train=True)
        prepare_bundled_data(cfg)
        resume = cfg["Global"]["output_dir"] if args.resume == "" else args.resume
        summary = Trainer(cfg).train(resume=resume, overwrite=args.overwrite,
                                     output_setting="--output" if args.output else "Global.output_dir")
        if summary.get("export"):
            summary["export"] = summary["export"]["out_dir"]
        return summary

    def evaluate(self, args: argparse.Namespace, overrides: List[str]) -> Dict[str, Any]:
        cfg = self._config(args, overrides)
        weights = self._weights(cfg, args)  # before anything is written
        prepare_bundled_data(cfg)
        return Trainer(cfg).evaluate(weights, use_ema=args.ema)

    def infer(self, args: argparse.Namespace, overrides: List[str]) -> List[Dict[str, Any]]:
        cfg = self._config(args, overrides)
        weights = self._weights(cfg, args)
        prepare_bundled_data(cfg)
        return predict(cfg, weights, args.input, args.topk, use_ema=args.ema)

    def export(self, args: argparse.Namespace, overrides: List[str]) -> Dict[str, Any]:
        cfg = self._config(args, overrides)
        out = args.output or cfg["Global"]["save_inference_dir"]
        summary = export_model(cfg, self._weights(cfg, args), out, with_custom_op=args.with_custom_op, onnx=args.onnx,
                               verify=not args.no_verify, opset=args.opset,
                               logger=logging.getLogger("paddle_lk.engine"), use_ema=args.ema)
        return {k: v for k, v in summary.items() if k != "files"}

    def human(self, mode: str, result: Any) -> Optional[List[str]]:
        if mode == "train":
            best = result.get("best") or {}
            lines = [f"checkpoints in {result['output_dir']}"]
            if best.get("top1", -1) >= 0:
                lines = [f"best top1 {best['top1']:.4f} (epoch {best['epoch']}, {best['source']} weights); "
                         + lines[0]]
            if result.get("export"):
                lines.append(f"deploy model: {result['export']}")
            return lines
        if mode == "eval":
            return [" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items())]
        if mode == "infer":
            lines = []
            for r in result:
                names = r["label_names"] or [None] * len(r["scores"])
                lines.append(f"{r['file']}: " + ", ".join(f"{n or i} {s:.3f}" for i, s, n in
                                                          zip(r["class_ids"], r["scores"], names)))
            return lines
        return None
