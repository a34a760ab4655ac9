"""PaddleSeg: paddle_lk backbones as ``manager.BACKBONES`` components, and PaddleSeg configs loaded the
way the one front end needs them.

* :func:`register` adds one backbone class per registered paddle_lk variant (``type: RepLKNet31B``,
  ``type: UniRepLKNet_T`` ...) and installs the PaddleSeg workarounds of :mod:`.compat`; it runs when a
  PaddleSeg config is used (or explicitly, before PaddleSeg's own tools are used with paddle_lk).
* :func:`load_config` reads a config with PaddleSeg's own parser (``_base_`` merged), applies ``-o``
  overrides through :mod:`paddle_lk.utils.overrides` -- a typo anywhere (``batch_sise``,
  ``model.backbone.chanels``, ``type: RepLKNet31b``) is one error naming the key path and the nearest
  valid key -- and builds PaddleSeg's ``Config`` (its checker rules included) from that dict, without
  writing a temporary YAML.

Besides PaddleSeg's keys a config may set the run settings PaddleSeg takes on its command line
(:data:`RUN_SETTINGS`: ``save_interval``, ``log_iters``, ``num_workers``, ``seed``,
``keep_checkpoint_max``, ``use_visualdl``).
"""
from __future__ import annotations

import inspect
import logging
import os
from typing import Any, Dict, List, Optional, Sequence

import paddle

from ..errors import ConfigError, closest
from ..utils.log import TOOLKIT_LOGGER
from ..utils.overrides import apply_overrides, unknown_key_error
from . import compat
from ._common import BACKBONE_NAMES, LKBackbone, backbone_params

__all__ = ["register", "BACKBONES", "load_config", "builder", "build", "sample_file", "component_class", "run_setting",
           "RUN_SETTINGS", "PADDLESEG_KEYS"]

logger = logging.getLogger("paddle_lk.engine")

BACKBONES: Dict[str, type] = {}

# PaddleSeg's top-level config keys (2.8) and the run settings paddle_lk reads from the config.
PADDLESEG_KEYS = ("batch_size", "iters", "train_dataset", "val_dataset", "test_config", "optimizer", "lr_scheduler",
                  "loss", "distill_loss", "model", "export", "to_static_training", "_base_")
RUN_SETTINGS: Dict[str, Any] = {"save_interval": 1000, "log_iters": 10, "num_workers": 0, "seed": 0,
                                "keep_checkpoint_max": 3, "use_visualdl": True}
_TEST_CONFIG_KEYS = ("is_slide", "crop_size", "stride", "aug_eval", "scales", "flip_horizontal", "flip_vertical")


def _make_backbone_class(name: str) -> type:
    doc = (f"{name} for PaddleSeg: multi-scale features of ``out_indices`` (strides 4-32), "
           f"``feat_channels``, ``pretrained`` = converted ``.pdparams`` / official ``.pth`` path.")
    return type(name, (LKBackbone,), {"arch": name, "__doc__": doc, "__module__": __name__})


for _name in BACKBONE_NAMES:
    BACKBONES[_name] = _make_backbone_class(_name)
    globals()[_name] = BACKBONES[_name]


def register() -> List[str]:
    """Add the backbones to PaddleSeg's ``manager.BACKBONES`` and install the PaddleSeg workarounds of
    :mod:`.compat` (the Paddle-3-safe loss among them); idempotent."""
    from paddleseg.cvlibs import manager

    for cls in BACKBONES.values():
        if manager.BACKBONES._components_dict.get(cls.__name__) is not cls:
            manager.BACKBONES.add_component(cls)
    compat.install("paddleseg")
    _route_logs()
    return list(BACKBONES)


def _route_logs() -> None:
    """PaddleSeg prints its log lines (config dumps, parameter groups) to stdout, which carries the
    tools' data: send them to paddle_lk's toolkit log instead (the log file; warnings on the console)."""
    from paddleseg.utils import logger as seg_logger

    if getattr(seg_logger.log, "_paddle_lk", False):
        return
    target = logging.getLogger(TOOLKIT_LOGGER)
    levels = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}

    def log(level: int = 2, message: str = "") -> None:
        if level <= seg_logger.log_level:
            target.log(levels.get(level, logging.INFO), f"[paddleseg] {message}")

    log._paddle_lk = True  # type: ignore[attr-defined]
    seg_logger.log = log


def _managers() -> List[Any]:
    from paddleseg.cvlibs import manager

    return [manager.MODELS, manager.BACKBONES, manager.DATASETS, manager.TRANSFORMS, manager.LOSSES,
            manager.OPTIMIZERS]


def component_class(type_name: str) -> Optional[type]:
    """The class a PaddleSeg ``type:`` names (a manager component, a ``paddle.optimizer.lr`` schedule)."""
    for mgr in _managers():
        if type_name in mgr.components_dict:
            return mgr.components_dict[type_name]
    cls = getattr(paddle.optimizer.lr, type_name, None)
    return cls if inspect.isclass(cls) else None


def _all_component_names() -> List[str]:
    names = [n for mgr in _managers() for n in mgr.components_dict]
    return names + [n for n in dir(paddle.optimizer.lr) if inspect.isclass(getattr(paddle.optimizer.lr, n))]


def _accepted_args(cls: type) -> Optional[List[str]]:
    """Keyword arguments of ``cls`` (None: it takes ``**kwargs``, anything goes)."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return [p for p in params if p != "self"]


def _check_key(parts: List[str], container: Any, key: str) -> None:
    """May ``key`` be created in ``container`` (at ``parts``)? Raise the nearest-key error if not."""
    where = ".".join(parts)
    if not parts:
        valid = set(PADDLESEG_KEYS) | set(RUN_SETTINGS) | set(container)
        if key not in valid:
            raise unknown_key_error("", key, valid)
        return
    if parts == ["test_config"]:
        if key not in _TEST_CONFIG_KEYS:
            raise unknown_key_error(where, key, _TEST_CONFIG_KEYS)
        return
    if isinstance(container, dict) and isinstance(container.get("type"), str):
        cls = component_class(container["type"])
        if container["type"] in BACKBONES and cls is BACKBONES[container["type"]]:
            args = backbone_params(container["type"])  # the wrapper takes **kwargs: the model's arguments
        else:
            args = _accepted_args(cls) if cls is not None else None
        extra = ["warmup_iters", "warmup_start_lr", "decay_steps"] if parts[-1] == "lr_scheduler" else []
        if args is not None and key not in args + extra + ["type"]:
            raise unknown_key_error(where, key, args + extra + ["type"],
                                    where=f"{container['type']} does not take this argument: ")


def _check_types(node: Any, path: str) -> None:
    """Every ``type:`` must name a component PaddleSeg (with paddle_lk registered) knows."""
    if isinstance(node, dict):
        t = node.get("type")
        if isinstance(t, str) and component_class(t) is None:
            close = closest(t, _all_component_names(), n=1)
            raise ConfigError(f"{path + '.' if path else ''}type: unknown component '{t}'"
                              + (f"; did you mean '{close[0]}'?" if close else ""))
        for k, v in node.items():
            _check_types(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_types(v, f"{path}.{i}")


def _paddleseg_config_class() -> type:
    from paddleseg.cvlibs import Config

    class _DictConfig(Config):
        """PaddleSeg's ``Config`` over an already parsed and overridden dict (its checker rules run)."""

        def __init__(self, dic: Dict[str, Any], path: str) -> None:  # noqa: D107 - PaddleSeg's own fields
            self.dic = dic
            self.path = path
            self._build_default_checker().apply_all_rules(self)

    return _DictConfig


def load_config(path: str, overrides: Sequence[str] = (), datasets: Sequence[str] = ()) -> Any:
    """PaddleSeg ``Config`` from ``path`` (``_base_`` merged) with ``-o`` overrides (typed, validated).

    ``CrossEntropyLoss`` entries become ``Float32LabelCE`` where PaddleSeg's fails on this Paddle, with
    one log line (:func:`.compat.rewrite_ce_losses`). The roots of ``datasets`` (e.g.
    ``["train_dataset"]``) must exist: PaddleSeg would otherwise start a download.

    Raises:
        ConfigError naming the file or the key path (with the nearest valid key).
    """
    from paddleseg.cvlibs.config import parse_from_yaml

    register()
    if not os.path.isfile(path):
        raise ConfigError(f"config file '{path}' not found")
    try:
        dic = parse_from_yaml(path)
    except Exception as exc:  # noqa: BLE001 - YAML and _base_ errors from PaddleSeg's parser
        raise ConfigError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    if "model" not in dic:
        raise ConfigError(f"{path}: not a PaddleSeg config (no 'model' key)")
    dic = apply_overrides(dic, overrides, check=_check_key)
    _check_types(dic, "")
    compat.rewrite_ce_losses(dic, log=logger.info)
    for key in datasets:
        ds = dic.get(key)
        if not isinstance(ds, dict):
            raise ConfigError(f"{path}: '{key}' is missing")
        root = ds.get("dataset_root")
        if not root or not os.path.isdir(str(root)):
            raise ConfigError(f"{key}.dataset_root '{root}' is not a directory (set it with "
                              f"-o {key}.dataset_root=PATH; nothing is downloaded)")
    try:
        return _paddleseg_config_class()(dic, path)
    except (AssertionError, ValueError, KeyError, TypeError, RuntimeError) as exc:  # PaddleSeg's checker rules
        cause = exc
        while cause.__cause__ is not None or cause.__context__ is not None:  # "Sanity check ... failed" wraps it
            cause = cause.__cause__ or cause.__context__
        raise ConfigError(f"{path}: {cause if str(cause).strip() else exc}") from None



def builder(cfg: Any) -> Any:
    """PaddleSeg's ``SegBuilder`` over a config of :func:`load_config` (models, losses, datasets ...)."""
    from paddleseg.cvlibs import SegBuilder

    return SegBuilder(cfg)


def build(seg_builder: Any, part: str) -> Any:
    """``seg_builder.<part>`` (``model``, ``optimizer``, ``train_dataset`` ...): a value the component
    refuses (an assertion or type error inside PaddleSeg or Paddle) becomes a ConfigError naming the
    config section."""
    section = {"optimizer": "optimizer / lr_scheduler", "loss": "loss", "model": "model"}.get(part, part)
    try:
        return getattr(seg_builder, part)
    except FileNotFoundError as exc:  # a list file or image folder the dataset names
        raise ConfigError(f"{section}: {exc}") from None
    except (AssertionError, TypeError, ValueError, KeyError, RuntimeError, IndexError, ZeroDivisionError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{section}: PaddleSeg cannot build it from this config ({type(exc).__name__}: "
                          f"{str(exc).strip() or 'invalid value'})") from None


def sample_file(dataset: Any, index: int) -> str:
    """The image (and label) file of sample ``index`` of a PaddleSeg dataset, for error messages."""
    image, label = (list(dataset.file_list[index]) + [None])[:2]
    return f"{image} (label {label})" if label else str(image)


def run_setting(cfg: Any, key: str) -> Any:
    """One of :data:`RUN_SETTINGS` from the config (or its default)."""
    return cfg.dic.get(key, RUN_SETTINGS[key])


register()  # on import, as the toolkit's own components register
