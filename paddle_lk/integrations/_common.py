"""Shared pieces of the toolkit integrations: the multi-scale backbone wrapper and override parsing."""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Type

import paddle
import paddle.nn as nn
import yaml

from .. import ops
from ..models import LKNetBase, create_model
from ..registry import PretrainedSpec, get_family, list_models, model_cfg
from .compat import onednn_safe_resize

__all__ = ["BACKBONE_NAMES", "LKBackbone", "apply_overrides", "parse_override_value", "UsageError",
           "jit_save_portable", "MODES", "cli_parser", "run_cli"]

MODES = ("train", "eval", "infer", "export")


def backbone_names() -> List[str]:
    """Registered variants usable as multi-scale backbones (every family whose model has features mode)."""
    return [n for n in list_models() if issubclass(get_family(model_cfg(n).family).model_cls or object, LKNetBase)]


# The backbones exported to PaddleSeg and PaddleDetection.
BACKBONE_NAMES: List[str] = backbone_names()


class UsageError(ValueError):
    """Bad command-line input: the CLIs print it as one line and exit 2."""


class LKBackbone(nn.Layer):
    """A paddle_lk model in feature mode, shaped like a toolkit backbone.

    ``forward(x)`` returns the feature maps of ``out_indices`` (NCHW, strides 4/8/16/32), always in stage
    order: ``out_indices`` is normalised (sorted) once, so ``out_indices``, ``feat_channels``,
    ``feat_strides`` and the toolkits' shape specs describe exactly what is returned. ``pretrained`` is a path to ``.pdparams`` saved from a
    paddle_lk model or an official ``.pth`` (both through :mod:`paddle_lk.convert`), or True for the
    hosted weights. The wrapped model is ``self.model``, so its keys are the paddle_lk keys prefixed
    with ``model.``.
    """

    arch: str = ""

    def __init__(self, out_indices: Sequence[int] = (0, 1, 2, 3), pretrained: PretrainedSpec = None,
                 in_channels: int = 3, arch: Optional[str] = None, **kwargs: Any) -> None:
        super().__init__()
        arch = arch or self.arch
        if arch not in BACKBONE_NAMES:
            raise ValueError(f"unknown backbone '{arch}'; choose one of {BACKBONE_NAMES}")
        if isinstance(pretrained, str) and not pretrained:
            pretrained = None
        # Toolkits (PaddleSeg's builder) pass in_channels; every paddle_lk constructor takes in_chans.
        kwargs["in_chans"] = in_channels
        self.arch = arch
        self.model = create_model(arch, pretrained=pretrained, out_indices=out_indices, **kwargs)
        self.out_indices = tuple(self.model.out_indices)
        self.feat_channels: List[int] = list(self.model.feat_channels)
        self.feat_strides: List[int] = [info["reduction"] for info in self.model.feature_info]

    def forward(self, x: paddle.Tensor) -> List[paddle.Tensor]:
        return self.model(x)


def parse_override_value(text: str) -> Any:
    """YAML-typed value of ``key=value`` overrides: ``3`` -> int, ``[8,16]`` -> list, ``a`` -> str."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(cfg: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """Return a copy of ``cfg`` with dotted ``key.sub.0.leaf=value`` overrides applied.

    Integer path components index lists; the last component may create a new key; every other
    component must exist (a typo is an error naming the key).
    """
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        if "=" not in item:
            raise UsageError(f"override '{item}' is not key=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise UsageError(f"override '{item}' has an empty key component")
        node: Any = cfg
        for i, part in enumerate(parts[:-1]):
            node = _child(node, part, ".".join(parts[:i + 1]))
        last = parts[-1]
        if isinstance(node, list):
            idx = _index(node, last, key)
            node[idx] = parse_override_value(text)
        elif isinstance(node, dict):
            node[last] = parse_override_value(text)
        else:
            raise UsageError(f"override '{key}': '{'.'.join(parts[:-1])}' is not a mapping or list")
    return cfg


def _index(node: list, part: str, key: str) -> int:
    try:
        idx = int(part)
    except ValueError:
        raise UsageError(f"override '{key}': '{part}' must be a list index") from None
    if not -len(node) <= idx < len(node):
        raise UsageError(f"override '{key}': index {idx} out of range (list of {len(node)})")
    return idx


def _child(node: Any, part: str, key: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, key)]
    if isinstance(node, dict):
        if part not in node:
            raise UsageError(f"override '{key}': no key '{part}' in the config")
        return node[part]
    raise UsageError(f"override '{key}': cannot descend into a {type(node).__name__}")


def check_file(path: Optional[str], what: str) -> str:
    """``path`` if it is an existing file, else a UsageError naming ``what``."""
    if not path:
        raise UsageError(f"{what} is required")
    if not os.path.isfile(path):
        raise UsageError(f"{what} '{path}' not found")
    return path


def jit_save_portable(layer: nn.Layer, input_spec: list, prefix: str) -> None:
    """``paddle.jit.to_static`` + ``paddle.jit.save`` with the native depthwise op (the exported
    graph needs no custom op to load) and resize ops a default CPU predictor (oneDNN on) can run
    (:func:`.compat.onednn_safe_resize`)."""
    with ops.op_path("native"), onednn_safe_resize():
        static = paddle.jit.to_static(layer, input_spec=input_spec, full_graph=True)
        paddle.jit.save(static, prefix)


class _ArgError(Exception):
    pass


class _QuietParser(argparse.ArgumentParser):
    def error(self, message):  # one line on stderr and exit 2, decided by run_cli
        raise _ArgError(message)


def cli_parser(mode: str, toolkit: str) -> argparse.ArgumentParser:
    """The arguments every toolkit CLI shares: ``-c``, ``-o``, ``-w/--weights``, ``--output``,
    and ``-i/--image`` for infer (aliases match the classification tools)."""
    p = _QuietParser(prog=f"tools/{mode}.py ({toolkit} config)")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("-o", "--opt", "--override", dest="overrides", nargs="+", action="extend", default=[],
                   help="config overrides key.sub=value (YAML values; integer parts index lists)")
    p.add_argument("-w", "--weights", "--resume", dest="weights", default=None,
                   help="model .pdparams (eval/infer/export; initial weights for train)")
    p.add_argument("--output", default=None)
    if mode == "infer":
        p.add_argument("-i", "--image", "--input", dest="image", nargs="+", required=True)
    return p


def run_cli(mode: str, argv: Sequence[str], make_parser: Callable[[str], argparse.ArgumentParser],
            run: Callable[[str, argparse.Namespace], Any],
            exit_codes: Optional[Dict[Type[BaseException], int]] = None) -> int:
    """Parse ``argv``, call ``run(mode, args)`` and print its result as one JSON line.

    Bad input (arguments, :class:`UsageError`, missing files) prints one ``error:`` line and
    returns 2; exceptions in ``exit_codes`` print one line and return their code.
    """
    if mode not in MODES:
        print(f"error: mode must be one of {MODES}, got '{mode}'", file=sys.stderr)
        return 2
    try:
        args = make_parser(mode).parse_args(list(argv))
    except _ArgError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if mode != "train" and not args.weights:
        print(f"error: --weights is required for {mode}", file=sys.stderr)
        return 2
    handled = tuple(exit_codes or ())
    try:
        result = run(mode, args)
    except (UsageError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except handled as e:  # type: ignore[misc]
        print(f"error: {e}", file=sys.stderr)
        return next(code for cls, code in exit_codes.items() if isinstance(e, cls))
    print(json.dumps(result), flush=True)
    return 0
