"""PaddleClas-style YAML configs: loading, ``-o Section.key=value`` overrides and validation.

Every key of a config is checked against :data:`SCHEMA`; an unknown or misspelt key is a
:class:`ConfigError` naming its full path and the closest valid key, a value of the wrong type
names the path and the expected type. Sections whose keys depend on something else (``Arch``
keyword arguments, transform arguments) are validated where that something is known
(:func:`paddle_lk.engine.builder.build_model`, :func:`paddle_lk.engine.transforms.build_transforms`)
with the same kind of message.
"""
from __future__ import annotations

import ast
import copy
import os
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import yaml

from ..errors import ConfigError, DataError, closest
from ..utils.overrides import apply_overrides as _apply
from ..utils.overrides import parse_value, unknown_key_error

__all__ = ["ConfigError", "DataError", "load_config", "apply_overrides", "validate_config", "parse_value",
           "unknown_key_error", "SCHEMA", "DEFAULTS", "get_path"]


NoneType = type(None)
_NUM = (int, float)
OPEN = "open"  # a mapping whose keys are validated by the code that consumes it

# Leaf specs are tuples of accepted types; nested dicts are sub-sections.
_LOADER_SCHEMA = {
    "dataset": {
        "name": (str,),
        "image_root": (str,),
        "cls_label_path": (str, NoneType),
        "delimiter": (str, NoneType),
        "relabel": (bool,),
        "class_names_path": (str, NoneType),
        "transform_ops": (list,),
        "batch_transform_ops": (list, NoneType),
    },
    "sampler": {
        "name": (str,),
        "batch_size": (int,),
        "shuffle": (bool,),
        "drop_last": (bool,),
    },
    "loader": {
        "num_workers": (int,),
        "use_shared_memory": (bool,),
    },
}

SCHEMA: Dict[str, Any] = {
    "Global": {
        "output_dir": (str,),
        "device": (str,),
        "seed": (int,),
        "epochs": (int,),
        "checkpoints": (str, NoneType),
        "pretrained_model": (str, NoneType),
        "save_interval": (int,),
        "save_step_interval": (int,),
        "keep_checkpoint_max": (int,),
        "eval_during_train": (bool,),
        "eval_interval": (int,),
        "print_batch_step": (int,),
        "use_visualdl": (bool,),
        "use_tqdm": (bool,),
        "image_shape": (list,),
        "save_inference_dir": (str,),
        "export_after_train": (bool,),
        "export_onnx": (bool,),
        "accum_steps": (int,),
        "max_steps_per_epoch": (int, NoneType),
        "sync_bn": (bool,),
        "prepare_data": (str, NoneType),
        "check_images": (bool, str),
        # PaddleClas keys: update_freq is gradient accumulation (= accum_steps), class_num the old
        # spelling of Arch.class_num, to_static traces the training forward with paddle.jit.to_static.
        "update_freq": (int,),
        "class_num": (int, NoneType),
        "to_static": (bool,),
        "use_dali": (bool,),
    },
    "AMP": {
        "use_amp": (bool,),
        "level": (str,),
        "scale_loss": _NUM,
        "use_dynamic_loss_scaling": (bool,),
        "use_fp16_test": (bool,),
        "use_promote": (bool,),
    },
    "EMA": {
        "decay": _NUM,
        "eval": (bool,),
    },
    "Arch": OPEN,
    "Loss": {
        "Train": (list,),
        "Eval": (list,),
    },
    "Optimizer": {
        "name": (str,),
        "momentum": _NUM,
        "beta1": _NUM,
        "beta2": _NUM,
        "epsilon": _NUM,
        "weight_decay": _NUM,
        "no_weight_decay_name": (str, list, NoneType),
        "one_dim_param_no_weight_decay": (bool,),
        "layer_decay": (*_NUM, NoneType),
        "clip_norm": (*_NUM, NoneType),
        "lr": {
            "name": (str,),
            "learning_rate": _NUM,
            "eta_min": _NUM,
            "warmup_epoch": _NUM,
            "warmup_start_lr": _NUM,
        },
    },
    "DataLoader": {
        "Train": _LOADER_SCHEMA,
        "Eval": _LOADER_SCHEMA,
    },
    "Metric": {
        "Train": (list, NoneType),
        "Eval": (list, NoneType),
    },
    "Infer": {
        "infer_imgs": (str, NoneType),
        "batch_size": (int,),
        "transforms": (list, NoneType),
        "PostProcess": {
            "name": (str,),
            "topk": (int,),
            "class_id_map_file": (str, NoneType),
        },
    },
}

# Defaults filled in under the user's values (PaddleClas users rely on most of these being optional).
DEFAULTS: Dict[str, Any] = {
    "Global": {
        "output_dir": "./output", "device": "auto", "seed": 0, "epochs": 1, "checkpoints": None,
        "pretrained_model": None, "save_interval": 1, "save_step_interval": 0, "keep_checkpoint_max": 3,
        "eval_during_train": True, "eval_interval": 1, "print_batch_step": 10, "use_visualdl": True,
        "use_tqdm": True, "image_shape": [3, 224, 224], "export_after_train": False, "export_onnx": False,
        "accum_steps": 1, "max_steps_per_epoch": None, "sync_bn": False, "prepare_data": None,
        "check_images": True, "to_static": False, "use_dali": False,
    },
    "AMP": {"use_amp": False, "level": "O1", "scale_loss": 65536.0, "use_dynamic_loss_scaling": True},
    "Loss": {"Train": [{"CELoss": {"weight": 1.0, "epsilon": 0.0}}], "Eval": [{"CELoss": {"weight": 1.0}}]},
    "Optimizer": {
        "name": "AdamW", "momentum": 0.9, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "weight_decay": 0.05,
        "no_weight_decay_name": None, "one_dim_param_no_weight_decay": True, "layer_decay": None,
        "clip_norm": None,
        "lr": {"name": "Cosine", "learning_rate": 1e-3, "eta_min": 0.0, "warmup_epoch": 0, "warmup_start_lr": 0.0},
    },
    "Metric": {"Train": [{"TopkAcc": {"topk": [1, 5]}}], "Eval": [{"TopkAcc": {"topk": [1, 5]}}]},
    "Infer": {"infer_imgs": None, "batch_size": 8, "transforms": None,
              "PostProcess": {"name": "Topk", "topk": 5, "class_id_map_file": None}},
}

_LOADER_DEFAULTS = {
    "dataset": {"name": "ImageNetDataset", "cls_label_path": None, "class_names_path": None,
                "batch_transform_ops": None},
    "sampler": {"name": "DistributedBatchSampler", "batch_size": 32, "shuffle": False, "drop_last": False},
    "loader": {"num_workers": 0, "use_shared_memory": True},
}

_CHOICES = {
    "Global.device": ("auto", "cpu", "gpu"),
    "Global.check_images": (True, False, "decode"),
    "AMP.level": ("O1", "O2"),
    "Optimizer.name": ("AdamW", "Momentum", "SGD"),
    "Optimizer.lr.name": ("Cosine", "Constant"),
    "Infer.PostProcess.name": ("Topk",),
}


def _type_names(types: Iterable[type]) -> str:
    names = {int: "int", float: "float", str: "str", bool: "bool", list: "list", dict: "mapping", NoneType: "null"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _check_leaf(path: str, value: Any, types: Tuple[type, ...]) -> None:
    if isinstance(value, bool) and bool not in types:
        ok = False
    elif isinstance(value, int) and not isinstance(value, bool) and float in types:
        ok = True
    else:
        ok = isinstance(value, types)
    if not ok:
        raise ConfigError(f"{path}: expected {_type_names(types)}, got {value!r} ({type(value).__name__})")
    choices = _CHOICES.get(path)
    if choices and value not in choices:
        close = closest(str(value), [str(c) for c in choices], n=1)
        raise ConfigError(f"{path}: '{value}' is not one of {', '.join(map(str, choices))}"
                          + (f"; did you mean '{close[0]}'?" if close else ""))


def _validate(node: Any, schema: Any, path: str) -> None:
    if schema == OPEN:
        if node is not None and not isinstance(node, dict):
            raise ConfigError(f"{path}: expected a mapping, got {node!r}")
        return
    if isinstance(schema, dict):
        if node is None:
            return
        if not isinstance(node, dict):
            raise ConfigError(f"{path}: expected a mapping of {', '.join(sorted(schema))}, got {node!r}")
        for key, value in list(node.items()):
            if key not in schema:
                raise unknown_key_error(path, str(key), schema)
            sub = schema[key]
            if isinstance(sub, tuple) and float in sub and isinstance(value, str):
                # YAML 1.1 reads '1e-3' (no dot) as a string; PaddleClas configs are full of them.
                try:
                    node[key] = value = float(value)
                except ValueError:
                    pass
            _validate(value, sub, f"{path}.{key}" if path else str(key))
        return
    _check_leaf(path, node, schema)


def _merge(base: Dict[str, Any], update: Dict[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _paddleclas_aliases(cfg: Dict[str, Any]) -> None:
    """PaddleClas spellings mapped onto the engine's: ``Global.update_freq`` is ``Global.accum_steps``,
    ``Global.class_num`` the old place of ``Arch.class_num``; a conflicting pair is an error."""
    g = cfg.get("Global") or {}
    if "update_freq" in g:
        if "accum_steps" in g and g["accum_steps"] != g["update_freq"]:
            raise ConfigError(f"Global.update_freq ({g['update_freq']}) and Global.accum_steps ({g['accum_steps']}) "
                              f"are the same setting (gradient accumulation) and disagree")
        g["accum_steps"] = g.pop("update_freq")
    if g.get("class_num") is not None:
        arch = cfg.get("Arch") or {}
        if arch.get("class_num") is None:
            arch["class_num"] = g["class_num"]
        elif arch["class_num"] != g["class_num"]:
            raise ConfigError(f"Global.class_num ({g['class_num']}) and Arch.class_num ({arch['class_num']}) disagree")
    g.pop("class_num", None)


def _literal_numbers(node: Any) -> Any:
    """PaddleClas reads string values directly under mappings as Python literals (YAML 1.1 keeps ``1e-6``
    a string); the same here, so an ``Arch`` argument like ``init_value: 1e-6`` is a float."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str):
                try:
                    literal = ast.literal_eval(value.strip())
                except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                    continue
                if isinstance(literal, (int, float)) and not isinstance(literal, bool):
                    node[key] = literal
            else:
                _literal_numbers(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict):
                _literal_numbers(item)
    return node


def validate_config(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """Check every key/type against :data:`SCHEMA`, fill defaults and return the completed config."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"config: expected a mapping of sections, got {type(cfg).__name__}")
    _validate(cfg, SCHEMA, "")
    for required in ("Arch", "DataLoader"):
        if not cfg.get(required):
            raise ConfigError(f"config: section '{required}' is required")
    if not isinstance(cfg["Arch"].get("name"), str):
        raise ConfigError("Arch.name: required (a model name, see paddle_lk.list_models())")
    _paddleclas_aliases(cfg)
    out = _merge(DEFAULTS, cfg)
    for split in ("Train", "Eval"):
        if out["DataLoader"].get(split) is not None:
            out["DataLoader"][split] = _merge(_LOADER_DEFAULTS, out["DataLoader"][split])
            ds = out["DataLoader"][split]["dataset"]
            for key in ("image_root", "transform_ops"):
                if key not in ds:
                    raise ConfigError(f"DataLoader.{split}.dataset.{key}: required")
    if out.get("EMA"):
        out["EMA"] = _merge({"decay": 0.9999, "eval": True}, out["EMA"])
    g = out["Global"]
    for key in ("epochs", "accum_steps", "save_interval", "eval_interval", "print_batch_step"):
        if g[key] < 1:
            raise ConfigError(f"Global.{key}: must be >= 1, got {g[key]}")
    shape = g["image_shape"]
    if len(shape) != 3 or not all(isinstance(v, int) and v > 0 for v in shape):
        raise ConfigError(f"Global.image_shape: expected [C, H, W] positive ints, got {shape}")
    return out


def get_path(cfg: Dict[str, Any], path: str, default: Any = None) -> Any:
    """``cfg['A']['b']`` for ``'A.b'``; ``default`` when a part is missing."""
    node: Any = cfg
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return default
    return node


def _schema_at(parts: Sequence[str]) -> Any:
    node: Any = SCHEMA
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def _schema_check(parts: List[str], container: Any, key: str) -> None:
    """A key may be created where the schema lists it, or inside an open section (``Arch``)."""
    schema = _schema_at(parts)
    if isinstance(schema, dict) and key not in schema:
        raise unknown_key_error(".".join(parts), key, schema)


def apply_overrides(cfg: Dict[str, Any], overrides: Optional[Sequence[str]]) -> Dict[str, Any]:
    """Apply ``Section.key=value`` overrides (list items by index: ``...transform_ops.0.Resize.size=32``);
    values typed as PaddleClas types them, unknown keys refused with the nearest valid one."""
    return _apply(cfg, overrides, check=_schema_check)


class _AnyTagLoader(yaml.SafeLoader):
    """Reads application tags (PaddleDetection's ``!PiecewiseDecay``, ``!COCODataSet``) as the plain
    mapping, list or scalar they tag."""


def _untagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_AnyTagLoader.add_multi_constructor("!", _untagged)


def load_yaml(path: Union[str, os.PathLike], any_tags: bool = False) -> Dict[str, Any]:
    """Read a YAML file; a missing file or a YAML syntax error is a ConfigError naming the file (and line).
    ``any_tags`` reads application tags (``!COCODataSet``) as plain values instead of failing."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file '{path}' not found")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_AnyTagLoader) if any_tags else yaml.safe_load(f)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def load_config(path: Union[str, os.PathLike], overrides: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Load, override and validate a classification config; errors name the file or key path."""
    raw = apply_overrides(_literal_numbers(load_yaml(path)), overrides)
    try:
        return validate_config(raw)
    except ConfigError as exc:
        raise ConfigError(f"{os.fspath(path)}: {exc}") from None


def list_of_single_key_dicts(value: Any, path: str) -> List[Tuple[str, Dict[str, Any]]]:
    """PaddleClas op lists (``- Name: {kwargs}``) as ``(name, kwargs)`` pairs, validated."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{path}: expected a list of '- OpName: {{args}}' items, got {value!r}")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            out.append((item, {}))
            continue
        if not isinstance(item, dict) or len(item) != 1:
            raise ConfigError(f"{path}[{i}]: expected one '- OpName: {{args}}' mapping, got {item!r}")
        name, kwargs = next(iter(item.items()))
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, dict):
            raise ConfigError(f"{path}[{i}].{name}: expected a mapping of arguments, got {kwargs!r}")
        out.append((str(name), dict(kwargs)))
    return out
