"""Command-line entry for ``tools/{train,eval,infer,export}.py``.

``main(mode, argv)`` reads ``-c CONFIG``; a PaddleDetection config (top-level ``architecture``)
goes to :func:`paddle_lk.integrations.det.main`, a PaddleSeg config (top-level ``model`` plus
``train_dataset`` or ``val_dataset``) to :func:`paddle_lk.integrations.seg.main`, both with the
tool's full argument list; anything else is a classification config handled here. Bad input
(config, data, weights) prints one ``error:`` line and exits 2; a NaN/inf loss or a failed export
verification exits 1.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

from ..errors import ExportVerificationError, OpBuildError
from .config import ConfigError, DataError, load_config, load_yaml
from .export import export_model
from .infer import predict
from .logger import setup_logger
from .trainer import NonFiniteLossError, Trainer

__all__ = ["main", "detect_kind"]

MODES = ("train", "eval", "infer", "export")


def detect_kind(raw: Dict[str, Any]) -> str:
    """``det``, ``seg`` or ``cls`` from a config's top-level keys."""
    if "architecture" in raw:
        return "det"
    if "model" in raw and ("train_dataset" in raw or "val_dataset" in raw):
        return "seg"
    return "cls"


def _parser(mode: str) -> argparse.ArgumentParser:
    desc = {"train": "Train a classification model from a PaddleClas-style config.",
            "eval": "Top-1/top-k accuracy of weights on the config's Eval set.",
            "infer": "Top-k classes for an image, an image list file or a folder.",
            "export": "Re-parameterize and export a deploy model (Paddle Inference, optionally ONNX), verified."}[mode]
    p = argparse.ArgumentParser(prog=f"tools/{mode}.py", description=desc)
    p.add_argument("-c", "--config", required=True, help="YAML config")
    p.add_argument("-o", "--override", action="append", nargs="+", default=[], metavar="Section.key=value",
                   help="override a config value (repeatable)")
    if mode == "train":
        p.add_argument("--resume", nargs="?", const="", default=None, metavar="CKPT",
                       help="continue from a checkpoint (file or dir; no value: Global.output_dir's latest)")
    else:
        p.add_argument("-w", "--weights", default=None,
                       help="training checkpoint (.pdckpt), training output dir, .pdparams or official .pth "
                            "(default: Arch.pretrained / Global.pretrained_model)")
        p.add_argument("--ema", action="store_true", help="use the EMA weights of a training checkpoint")
    if mode in ("eval", "infer"):
        p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    if mode == "infer":
        p.add_argument("-i", "--input", default=None, help="image, list file or folder (default Infer.infer_imgs)")
        p.add_argument("--topk", type=int, default=None, help="classes per image (default Infer.PostProcess.topk)")
    if mode == "export":
        p.add_argument("--output", default=None, help="output dir (default Global.save_inference_dir)")
        p.add_argument("--with-custom-op", action="store_true",
                       help="keep the large-kernel custom op (load it with paddle_lk before loading the model)")
        p.add_argument("--onnx", action="store_true", help="also export inference.onnx via paddle2onnx")
        p.add_argument("--opset", type=int, default=13, help="ONNX opset")
        p.add_argument("--no-verify", action="store_true", help="skip the Paddle Inference / onnxruntime check")
    return p


def _fail(msg: str, code: int = 2) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return code


def _pre_config(argv: Sequence[str]) -> Optional[str]:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("-c", "--config")
    known, _ = pre.parse_known_args(list(argv))
    return known.config


def _delegate(kind: str, mode: str, argv: List[str]) -> int:
    import importlib

    try:
        module = importlib.import_module(f"paddle_lk.integrations.{kind}")
    except ImportError as exc:
        return _fail(f"{'PaddleDetection' if kind == 'det' else 'PaddleSeg'} config, but "
                     f"paddle_lk.integrations.{kind} cannot be imported: {exc}")
    entry = getattr(module, "main", None)
    if entry is None:
        return _fail(f"paddle_lk.integrations.{kind} has no main(mode, argv)")
    return int(entry(mode, argv) or 0)


def main(mode: str, argv: Optional[Sequence[str]] = None) -> int:
    """Run ``mode`` (train/eval/infer/export) with command-line ``argv``; returns the exit code."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    argv = list(sys.argv[1:] if argv is None else argv)
    config_path = _pre_config(argv)
    if config_path and os.path.isfile(config_path):
        try:
            kind = detect_kind(load_yaml(config_path))
        except ConfigError as exc:
            return _fail(str(exc))
        if kind != "cls":
            return _delegate(kind, mode, argv)
    args = _parser(mode).parse_args(argv)
    overrides = [o for group in args.override for o in group]
    try:
        cfg = load_config(args.config, overrides)
        if mode == "train":
            summary = Trainer(cfg).train(resume=(cfg["Global"]["output_dir"] if args.resume == "" else args.resume))
            best = summary.get("best") or {}
            if best.get("top1", -1) >= 0:
                print(f"best top1 {best['top1']:.4f} (epoch {best['epoch']}, {best['source']} weights); "
                      f"checkpoints in {summary['output_dir']}")
            if summary.get("export"):
                print(f"deploy model: {summary['export']['out_dir']}")
            return 0
        if mode == "eval":
            weights = args.weights or cfg["Global"].get("pretrained_model")
            result = Trainer(cfg).evaluate(weights, use_ema=args.ema)
            print(json.dumps(result) if args.json else
                  " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))
            return 0
        if mode == "infer":
            results = predict(cfg, args.weights or cfg["Global"].get("pretrained_model"), args.input, args.topk,
                              use_ema=args.ema)
            if args.json:
                print(json.dumps(results))
            else:
                for r in results:
                    tops = ", ".join(f"{n or i} {s:.3f}" for i, s, n in
                                     zip(r["class_ids"], r["scores"], r["label_names"] or [None] * len(r["scores"])))
                    print(f"{r['file']}: {tops}")
            return 0
        out = args.output or cfg["Global"]["save_inference_dir"]
        summary = export_model(cfg, args.weights or cfg["Global"].get("pretrained_model"), out,
                               with_custom_op=args.with_custom_op, onnx=args.onnx, verify=not args.no_verify,
                               opset=args.opset, logger=setup_logger(None), use_ema=args.ema)
        print(json.dumps({k: v for k, v in summary.items() if k != "files"}))
        return 0
    except (ConfigError, DataError, FileNotFoundError) as exc:
        return _fail(str(exc))
    except (NonFiniteLossError, ExportVerificationError) as exc:
        return _fail(str(exc), 1)
    except ValueError as exc:
        return _fail(str(exc))
    except RuntimeError as exc:
        # The custom op cannot be built/loaded here (--with-custom-op): a one-line reason, exit 2.
        if isinstance(exc, OpBuildError):
            return _fail(str(exc))
        raise
