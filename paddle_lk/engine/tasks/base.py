"""What a task (classification, segmentation, detection) gives the one front end."""
from __future__ import annotations

import argparse
import os
from typing import Any, Dict, List, Optional, Tuple

from ...errors import ConfigError
from ..checkpoint import load_checkpoint_file, resolve_resume
from ..loop import check_resume_record, claim_output_dir

__all__ = ["Task", "RANDOM_WEIGHTS", "require_weights", "check_resume_arg", "int_setting", "start_run"]

RANDOM_WEIGHTS = "random"


def require_weights(weights_arg: Optional[str], *fallbacks: Optional[str]) -> Optional[str]:
    """The weights to evaluate, predict or export with; an untrained model needs ``-w random``.

    Raises:
        ConfigError: no weights anywhere.
    """
    if weights_arg == RANDOM_WEIGHTS:
        return None
    weights = weights_arg or next((f for f in fallbacks if f), None)
    if not weights:
        raise ConfigError("no weights: pass -w/--weights (a .pdparams, a training checkpoint .pdckpt, a training "
                          "output dir or an official .pth) or set them in the config; -w random uses an untrained "
                          "model on purpose")
    return weights


def int_setting(value: Any, key: str, minimum: Optional[int] = None) -> int:
    """``value`` of setting ``key`` as an int (``minimum`` or more).

    Raises:
        ConfigError naming the key and what it needs.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(f"{key}: expected an integer{f' >= {minimum}' if minimum is not None else ''}, "
                              f"got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{key}: must be >= {minimum}, got {value}")
    return value


def check_resume_arg(resume: Optional[str], output_dir: str) -> Optional[str]:
    """``--resume`` without a value means the run's own output dir."""
    if resume is None:
        return None
    return output_dir if resume == "" else resume


def start_run(output_dir: str, resume_arg: Optional[str], overwrite: bool, record: Any, what: str, task: str,
              rank: int) -> Tuple[Optional[str], Optional[Dict[str, Any]]]:
    """The start of a toolkit run: ``--resume`` resolved and checked against the config's model ``record``
    (a ``task`` checkpoint of the same ``what``), or the output dir claimed for a new run. Returns the
    checkpoint path and state to resume from (None, None for a new run)."""
    path = resolve_resume(check_resume_arg(resume_arg, output_dir), output_dir)
    if not path:
        if rank == 0:
            claim_output_dir(output_dir, overwrite)
        return None, None
    state = load_checkpoint_file(path)
    check_resume_record(path, state, state.get("meta", {}).get("model_record"), record, what, "-w/--weights",
                        task=task)
    return path, state


class Task:
    """One kind of config. Each method takes the parsed command line (:func:`..cli.build_parser`) and
    the ``-o`` overrides, and returns the data the tool prints (JSON with ``--json``)."""

    kind = ""

    def train(self, args: argparse.Namespace, overrides: List[str]) -> Dict[str, Any]:
        raise NotImplementedError

    def evaluate(self, args: argparse.Namespace, overrides: List[str]) -> Dict[str, Any]:
        raise NotImplementedError

    def infer(self, args: argparse.Namespace, overrides: List[str]) -> Any:
        raise NotImplementedError

    def export(self, args: argparse.Namespace, overrides: List[str]) -> Dict[str, Any]:
        raise NotImplementedError

    def human(self, mode: str, result: Any) -> Optional[List[str]]:
        """Lines printed instead of JSON when ``--json`` is not given (None: print JSON anyway)."""
        return None

    @staticmethod
    def default_output(config_path: str, sub: str = "") -> str:
        stem = os.path.splitext(os.path.basename(config_path))[0]
        return os.path.join("output", stem, sub) if sub else os.path.join("output", stem)
