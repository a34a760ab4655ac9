"""One command line for ``tools/{train,eval,infer,export}.py`` and classification, PaddleSeg and
PaddleDetection configs alike.

The same flags mean the same thing for every kind of config (see :func:`build_parser`); the kind is
read off the config (:func:`detect_kind`) and its :class:`Task` does the work. The contract:

* data (results, JSON with ``--json``) goes to stdout; logs and progress go to stderr, progress bars
  only on a terminal;
* bad input (config, data, weights, arguments) prints one ``error:`` line and exits 2; a run that
  fails (NaN/inf loss, an export that does not reproduce the model) exits 1; Ctrl-C stops at the next
  safe point, keeps a resumable checkpoint when training, prints one line and exits 130.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from typing import Any, Dict, List, Optional, Sequence

from ..errors import ConfigError, DataError, ExportError, OpBuildError, PaddleLKError
from .config import load_yaml
from ..utils.log import safe_print, setup_logger
from .loop import NonFiniteLossError
from .predictor import Predictor
from .runtime import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Interrupted, handle_interrupts, \
    stdout_to_stderr
from .tasks import get_task
from .tasks.base import RANDOM_WEIGHTS

__all__ = ["main", "predict_main", "detect_kind", "build_parser", "MODES"]

MODES = ("train", "eval", "infer", "export")
_METHODS = {"train": "train", "eval": "evaluate", "infer": "infer", "export": "export"}
MAX_OPSET = 19  # the newest opset paddle2onnx 2.1 converts to

_DESCRIPTIONS = {
    "train": "Train a model from a config (PaddleClas-style classification, PaddleSeg or PaddleDetection).",
    "eval": "Evaluate weights on the config's evaluation set (top-k accuracy, mIoU or COCO mAP).",
    "infer": "Predict images: top-k classes, segmentation masks or detected boxes.",
    "export": "Re-parameterize, fold BN and export a deploy model (Paddle Inference, optionally ONNX), verified.",
}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a score in [0, 1], got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser(mode: str) -> argparse.ArgumentParser:
    """The flags of ``tools/<mode>.py``; identical for every kind of config."""
    p = _Parser(prog=f"tools/{mode}.py", description=_DESCRIPTIONS[mode])
    p.add_argument("-c", "--config", required=True, help="YAML config (classification, PaddleSeg or PaddleDetection)")
    p.add_argument("-o", "--override", "--opt", dest="override", action="append", nargs="+", default=[],
                   metavar="key.path=value", help="override a config value; values are typed (1e-3 is a float, "
                   "[8,16] a list), an integer part indexes a list (repeatable)")
    p.add_argument("-w", "--weights", default=None,
                   help=("initial weights to fine-tune from" if mode == "train" else "weights to use") +
                   ": .pdparams, training checkpoint .pdckpt, training output dir or official .pth" +
                   ("" if mode == "train" else f" ('{RANDOM_WEIGHTS}': an untrained model, on purpose)"))
    p.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    if mode == "train":
        p.add_argument("--resume", nargs="?", const="", default=None, metavar="CKPT",
                       help="continue a run exactly (model, optimizer, schedule, data order): a checkpoint or an "
                            "output dir; no value: the config's output dir")
        p.add_argument("--overwrite", action="store_true",
                       help="start a new run in an output dir that holds a previous run (its checkpoints are removed)")
        p.add_argument("--eval", dest="eval", action="store_true", default=None,
                       help="evaluate during training (at each save point)")
        p.add_argument("--no-eval", dest="eval", action="store_false", help="do not evaluate during training")
        p.add_argument("--output", default=None, help="output dir (default: the config's)")
    else:
        p.add_argument("--ema", action="store_true", help="use the EMA weights of a training checkpoint")
    if mode == "infer":
        p.add_argument("-i", "--input", nargs="+", default=None, metavar="PATH",
                       help="images, folders or image-list files (default: the config's)")
        p.add_argument("--topk", type=_positive_int, default=None, help="classification: classes per image")
        p.add_argument("--threshold", type=_probability, default=None, help="detection: minimum box score")
        p.add_argument("--output", default=None, help="segmentation/detection: folder for the drawn results")
    if mode == "export":
        p.add_argument("--output", default=None, help="output dir (default: the config's)")
        p.add_argument("--with-custom-op", action="store_true",
                       help="keep the large-kernel custom op (load it with paddle_lk before loading the model)")
        p.add_argument("--onnx", action="store_true", help="also export inference.onnx via paddle2onnx")
        p.add_argument("--opset", type=int, default=13, help="ONNX opset (>= 11)")
        p.add_argument("--no-verify", action="store_true", help="skip the Paddle Inference / onnxruntime check")
    return p


def detect_kind(raw: Dict[str, Any]) -> str:
    """``det``, ``seg`` or ``cls`` from a config's top-level keys."""
    if "architecture" in raw:
        return "det"
    if "model" in raw and ("train_dataset" in raw or "val_dataset" in raw):
        return "seg"
    return "cls"


def _print_data(args: argparse.Namespace, data: Any, human: Optional[List[str]] = None) -> None:
    if args.json or human is None:
        safe_print(json.dumps(data))
    else:
        for line in human:
            safe_print(line)


def _check_flags_for(kind: str, mode: str, args: argparse.Namespace) -> None:
    """Flags that mean nothing for this kind of config, or contradict each other, are refused (not ignored)."""
    if mode == "train" and args.resume is not None and args.overwrite:
        raise ConfigError("--resume continues the run in the output dir, --overwrite removes it: pass one of them")
    if mode == "infer" and args.topk is not None and kind != "cls":
        raise ConfigError(f"--topk applies to classification configs, not to this {kind} config")
    if mode == "infer" and args.threshold is not None and kind != "det":
        raise ConfigError(f"--threshold applies to detection configs, not to this {kind} config")


def _configure_logging() -> None:
    """paddle_lk's log lines on stderr (progress-bar friendly); stdout carries data only."""
    setup_logger(None, name="paddle_lk")
    setup_logger(None, name="paddle_lk.engine")


def _describe(exc: BaseException) -> Any:
    """Our KeyErrors carry a sentence; a bare key from inside a toolkit gets its type and place."""
    if not isinstance(exc, KeyError) or not exc.args:
        return exc
    if isinstance(exc.args[0], str) and " " in exc.args[0]:
        return exc.args[0]
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" at {os.path.relpath(frame.filename)}:{frame.lineno}" if frame else ""
    return f"KeyError {exc.args[0]!r}{where}"


def _fail(msg: Any, code: int) -> int:
    text = str(msg).strip().splitlines()[0] if str(msg).strip() else type(msg).__name__
    print(f"error: {text}", file=sys.stderr, flush=True)
    return code


def main(mode: str, argv: Optional[Sequence[str]] = None) -> int:
    """Run ``mode`` (train/eval/infer/export) with command-line ``argv``; returns the exit code."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(mode).parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad flag (2, already printed)
        return int(exc.code or 0)
    overrides = [o for group in args.override for o in group]
    if mode == "export" and args.with_custom_op and args.onnx:
        return _fail("--onnx with --with-custom-op: ONNX has no large-kernel custom op; export ONNX without it",
                     EXIT_USAGE)
    if mode == "export" and args.onnx and args.opset < 11:
        return _fail(f"--opset {args.opset}: the exported model needs opset 11 or newer", EXIT_USAGE)
    if mode == "export" and args.onnx and args.opset > MAX_OPSET:
        return _fail(f"--opset {args.opset}: paddle2onnx writes opsets 11 to {MAX_OPSET}", EXIT_USAGE)
    _configure_logging()
    with handle_interrupts():
        try:
            kind = detect_kind(load_yaml(args.config, any_tags=True))
            _check_flags_for(kind, mode, args)
            task = get_task(kind)
            with stdout_to_stderr():  # stdout carries the result only, whatever the toolkits print
                result = getattr(task, _METHODS[mode])(args, overrides)
        except Interrupted as exc:
            return _fail(exc, EXIT_INTERRUPTED)
        except KeyboardInterrupt:
            return _fail("interrupted by Ctrl-C", EXIT_INTERRUPTED)
        except (NonFiniteLossError, ExportError) as exc:
            return _fail(exc, EXIT_FAILED)
        except (PaddleLKError, FileNotFoundError, ValueError, KeyError) as exc:
            return _fail(_describe(exc), EXIT_USAGE)
        except OSError as exc:  # an output path that is a file, a folder without permission ...
            return _fail(f"{exc.filename}: {exc.strerror}" if exc.filename else exc, EXIT_USAGE)
    _print_data(args, result, None if args.json else task.human(mode, result))
    return EXIT_OK


def predict_main(argv: Optional[Sequence[str]] = None) -> int:
    """``tools/predict.py``: predictions from an exported model directory (no training config needed):
    top-k classes, segmentation masks (pseudo-colour PNGs under ``--output``) or detected boxes (drawn
    under ``--output``), the task read off the export. Returns the exit code (2: bad input)."""
    p = _Parser(prog="tools/predict.py", description="Predict images with an exported model (tools/export.py): "
                "top-k classes with their names, segmentation masks or detected boxes.")
    p.add_argument("-m", "--model-dir", required=True, help="export directory")
    p.add_argument("-i", "--input", nargs="+", required=True, metavar="PATH", help="images, folders or image lists")
    p.add_argument("--topk", type=_positive_int, default=None,
                   help="classification: classes per image (default: the export's)")
    p.add_argument("--threshold", type=_probability, default=None,
                   help="detection: minimum box score (default: the export's draw_threshold)")
    p.add_argument("--output", default=os.path.join("output", "predict"),
                   help="segmentation/detection: folder for the masks / drawn boxes, <image stem>.png "
                        "(default: output/predict)")
    p.add_argument("--backend", choices=("paddle", "onnx"), default="paddle",
                   help="Paddle Inference (default) or ONNX Runtime (needs the export's .onnx)")
    p.add_argument("--device", choices=("cpu", "gpu"), default=None, help="default: the GPU when Paddle has one")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="classification: images per run")
    p.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    try:
        args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    _configure_logging()
    with handle_interrupts():
        try:
            with stdout_to_stderr():  # stdout carries the result only, whatever the toolkits print
                predictor = Predictor(args.model_dir, backend=args.backend, device=args.device, topk=args.topk,
                                      threshold=args.threshold)
                results = [Predictor.json_result(r) for r in
                           predictor.predict(args.input, args.batch_size, output_dir=args.output)]
        except KeyboardInterrupt:
            return _fail("interrupted by Ctrl-C", EXIT_INTERRUPTED)
        except (ConfigError, DataError, FileNotFoundError, OpBuildError, ValueError) as exc:
            return _fail(exc, EXIT_USAGE)
        except OSError as exc:
            return _fail(f"{exc.filename}: {exc.strerror}" if exc.filename else exc, EXIT_USAGE)
    human = []
    for r in results:
        name = r["file"] or "<array>"
        if predictor.task == "seg":
            human.append(f"{name} -> {r['mask']} (classes {r['classes']})")
        elif predictor.task == "det":
            human.append(f"{name}: {len(r['boxes'])} boxes -> {r['image']}")
        else:
            names = r["label_names"] or [None] * len(r["scores"])
            human.append(f"{name}: " + ", ".join(f"{n or i} {s:.3f}" for i, s, n in
                                                 zip(r["class_ids"], r["scores"], names)))
    _print_data(args, results, human)
    return EXIT_OK