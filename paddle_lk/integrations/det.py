"""PaddleDetection: paddle_lk backbones as ``@register @serializable`` modules with ``out_shape``, and
PaddleDetection configs loaded the way the one front end needs them.

* :func:`register` makes one backbone class per registered paddle_lk variant (``RepLKNet31B``,
  ``VAN_b2``, ``UniRepLKNet_T`` ...) known to PaddleDetection's workspace and installs the
  PaddleDetection workarounds of :mod:`.compat`; it runs when a PaddleDetection config is used (or
  explicitly, before PaddleDetection's own tools are used with paddle_lk).
* :func:`load_det_config` is PaddleDetection's ``load_config`` (``_BASE_`` merged) plus ``-o``
  overrides through :mod:`paddle_lk.utils.overrides`: values typed, a key a module or the runtime does
  not have (``epoh``, ``RepLKNet31B.chanels``, ``TrainReader.batchsize``) is one error naming the key
  path and the nearest valid key.
* :func:`train_reader` / :func:`eval_reader` give a dataset with its transforms and the batch
  collation, for :class:`~paddle_lk.engine.data.SafeDataLoader`.

Inference pre-processing and drawing are in :mod:`.det_infer`.
"""
from __future__ import annotations

import inspect
import json
import logging
import os
from typing import Any, Dict, List, Sequence, Tuple

import paddle
import paddle.nn as nn

from ..utils.log import ForwardHandler, prints_to_log
from ..utils.overrides import apply_overrides, unknown_key_error
from ..errors import ConfigError
from . import compat
from ._common import BACKBONE_NAMES, LKBackbone, backbone_params

__all__ = ["register", "BACKBONES", "load_det_config", "create", "build_model", "check_dataset", "train_reader",
           "evaluator", "check_num_classes", "sample_file", "class_names", "config_dict", "model_record", "ppdet_version", "RUNTIME_KEYS"]

BACKBONES: Dict[str, type] = {}

# What a reader's **kwargs may set (PaddleDetection 2.5 passes them to DetDataset.set_kwargs).
READER_DATASET_KEYS = ("mixup_epoch", "cutmix_epoch", "mosaic_epoch")

# PaddleDetection's runtime keys (ppdet/engine and its configs' runtime.yml) a config may set.
RUNTIME_KEYS = ("use_gpu", "use_xpu", "use_mlu", "use_npu", "log_iter", "save_dir", "snapshot_epoch", "weights",
                "pretrain_weights", "use_ema", "ema_decay", "ema_decay_type", "ema_filter_no_grad", "worker_num",
                "metric", "num_classes", "epoch", "print_flops", "print_params", "find_unused_parameters",
                "use_vdl", "vdl_log_dir", "output_eval", "save_prediction_only", "architecture", "norm_type",
                "amp", "fp16", "seed", "keep_checkpoint_max", "TrainDataset", "EvalDataset", "TestDataset",
                "TrainReader", "EvalReader", "TestReader", "LearningRate", "OptimizerBuilder", "filename")


class _DetBackbone(LKBackbone):
    """Base of the PaddleDetection backbones: ``forward(inputs)`` reads ``inputs['image']``."""

    def forward(self, inputs) -> List[paddle.Tensor]:  # type: ignore[override]
        x = inputs["image"] if isinstance(inputs, dict) else inputs
        return self.model(x)

    @property
    def out_shape(self):
        from ppdet.modeling.shape_spec import ShapeSpec

        return [ShapeSpec(channels=c, stride=s) for c, s in zip(self.feat_channels, self.feat_strides)]


def _make(name: str) -> type:
    doc = (f"{name} backbone for PaddleDetection.\n\n    Args:\n"
           f"        out_indices (list): stages to return (0-3, strides 4-32), returned in stage order.\n"
           f"        pretrained (str): converted .pdparams / official .pth path, or None.\n")
    return type(name, (_DetBackbone,), {"arch": name, "__doc__": doc, "__module__": __name__})


for _name in BACKBONE_NAMES:
    BACKBONES[_name] = _make(_name)
    globals()[_name] = BACKBONES[_name]


def register() -> List[str]:
    """``@register @serializable`` every backbone into PaddleDetection and install the PaddleDetection
    workarounds of :mod:`.compat` (idempotent)."""
    from ppdet.core.config.schema import SchemaDict
    from ppdet.core.workspace import global_config, register as ppdet_register, serializable

    for name, cls in BACKBONES.items():
        # (a config loaded before registering leaves a plain dict under the name: register over it)
        if not isinstance(global_config.get(name), SchemaDict):
            loaded = global_config.pop(name, None)
            ppdet_register(serializable(cls))
            if isinstance(loaded, dict):
                global_config[name].update(loaded)
    compat.install("ppdet")
    _route_logs()
    return list(BACKBONES)


def _adopt(logger: logging.Logger) -> None:
    for h in list(logger.handlers):
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
            logger.removeHandler(h)
    if not any(isinstance(h, ForwardHandler) for h in logger.handlers):
        logger.addHandler(ForwardHandler())


def _route_logs() -> None:
    """PaddleDetection's loggers print to stdout, which carries the tools' data: forward them to
    paddle_lk's toolkit log instead (the log file; warnings on the console), later ones included."""
    import ppdet.utils.logger as ppdet_logger

    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if name.split(".")[0] == "ppdet" and isinstance(logger, logging.Logger):
            _adopt(logger)
    original = ppdet_logger.setup_logger
    if getattr(original, "_paddle_lk", False):
        return

    def setup_logger(name: str = "ppdet", output: Any = None) -> logging.Logger:
        logger = original(name, output)
        _adopt(logger)
        return logger

    setup_logger._paddle_lk = True  # type: ignore[attr-defined]
    ppdet_logger.setup_logger = setup_logger


def _reset_global_config() -> None:
    """PaddleDetection merges every loaded YAML into one process-wide dict; drop what an earlier
    config left there (module defaults stay) so configs loaded in one process do not mix."""
    from ppdet.core.config.schema import SchemaDict
    from ppdet.core.workspace import global_config

    for key in list(global_config):
        value = global_config[key]
        if isinstance(value, SchemaDict):
            dict.clear(value)
        else:
            del global_config[key]


def _check_key(parts: List[str], container: Any, key: str) -> None:
    """May ``key`` be created in ``container``? Module configs (``SchemaDict``) take their class's
    arguments; YAML-tagged objects their constructor's; the top level PaddleDetection's runtime keys."""
    from ppdet.core.config.schema import SchemaDict

    where = ".".join(parts)
    if not parts:
        valid = set(RUNTIME_KEYS) | set(container)
        if key not in valid:
            raise unknown_key_error("", key, valid)
    elif isinstance(container, SchemaDict):
        name = getattr(container, "name", None)
        valid = set(container.schema) | set(container)
        if name in BACKBONES:  # the wrapper takes **kwargs: the model constructor's arguments
            valid |= set(backbone_params(name))
        elif name in ("TrainReader", "EvalReader", "TestReader"):  # **kwargs go to the dataset's set_kwargs
            valid |= set(READER_DATASET_KEYS)
        elif not container.strict:  # a module taking **kwargs: anything goes
            return
        if key not in valid:
            raise unknown_key_error(where, key, valid)
    elif not isinstance(container, dict):
        params = inspect.signature(type(container).__init__).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()) and key not in params:
            raise unknown_key_error(where, key, [p for p in params if p != "self"])


def load_det_config(path: str, overrides: Sequence[str] = ()) -> Any:
    """PaddleDetection's ``load_config`` (``_BASE_`` merged) + ``-o`` overrides; uses a GPU only when
    this Paddle has one.

    Raises:
        ConfigError naming the file or the key path (with the nearest valid key).
    """
    from ppdet.core.workspace import load_config

    register()
    if not os.path.isfile(path):
        raise ConfigError(f"config file '{path}' not found")
    _reset_global_config()
    try:
        cfg = load_config(path)
    except Exception as exc:  # noqa: BLE001 - YAML, _BASE_ and tag errors from PaddleDetection's loader
        raise ConfigError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    if "architecture" not in cfg:
        raise ConfigError(f"{path}: not a PaddleDetection config (no 'architecture' key)")
    apply_overrides(cfg, overrides, check=_check_key, copy_cfg=False)
    use_gpu = bool(cfg.get("use_gpu", False)) and paddle.device.is_compiled_with_cuda() \
        and paddle.device.cuda.device_count() > 0
    cfg["use_gpu"] = use_gpu
    paddle.set_device("gpu" if use_gpu else "cpu")
    return cfg


def create(name: str, *args: Any) -> Any:
    """PaddleDetection's ``create(name)(*args)``: a value the module refuses (an assertion or type error
    inside PaddleDetection or Paddle) becomes a ConfigError naming the config section."""
    from ppdet.core.workspace import create as ppdet_create

    try:
        made = ppdet_create(name)
        return made(*args) if args else made
    except (TypeError, ValueError, KeyError, AssertionError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{name}: PaddleDetection cannot build it from this config ({type(exc).__name__}: "
                          f"{str(exc).strip() or 'invalid value'})") from None


def build_model(cfg: Any) -> nn.Layer:
    """The config's architecture through PaddleDetection's ``create``."""
    return create(cfg.architecture)


def check_dataset(cfg: Any, key: str) -> None:
    """The dataset folder and annotation file exist (PaddleDetection would otherwise try a download)."""
    ds = cfg.get(key)
    if ds is None:
        raise ConfigError(f"config has no {key}")
    root = ds.dataset_dir
    anno = ds.get_anno() if hasattr(ds, "get_anno") else None
    if not os.path.isdir(root):
        raise ConfigError(f"{key}.dataset_dir '{root}' is not a directory (set -o {key}.dataset_dir=PATH; "
                          f"nothing is downloaded)")
    if anno and not os.path.isfile(anno):
        raise ConfigError(f"{key}: annotation file '{anno}' not found")


def _reader(cfg: Any, dataset_key: str, reader_key: str) -> Tuple[Any, Any, Any]:
    """(dataset with its sample transforms, batch collation, reader settings) as PaddleDetection's
    ``BaseDataLoader.__call__`` sets them up, without its ``DataLoader`` (see
    :class:`~paddle_lk.engine.data.SafeDataLoader`)."""
    check_dataset(cfg, dataset_key)
    dataset = cfg[dataset_key]
    reader = create(reader_key)
    dataset.check_or_download_dataset()
    with prints_to_log():  # pycocotools' progress lines
        dataset.parse_dataset()
    dataset.set_transform(reader._sample_transforms)
    dataset.set_kwargs(**reader.kwargs)
    check_num_classes(cfg, dataset, dataset_key)
    return dataset, reader._batch_transforms, reader


def check_num_classes(cfg: Any, dataset: Any, key: str) -> None:
    """The model's ``num_classes`` must equal the dataset's categories (PaddleDetection would fail in
    the middle of the first evaluation on a class id the annotations do not have)."""
    categories = getattr(dataset, "catid2clsid", None)
    num = int(cfg.get("num_classes", 80))
    if categories and len(categories) != num:
        raise ConfigError(f"num_classes is {num} but {key}'s annotations have {len(categories)} categories "
                          f"({dataset.get_anno() if hasattr(dataset, 'get_anno') else dataset.dataset_dir}): "
                          f"set -o num_classes={len(categories)}")


def train_reader(cfg: Any) -> Tuple[Any, Any, Any]:
    """``TrainDataset`` with ``TrainReader``'s transforms: (dataset, collate, reader)."""
    return _reader(cfg, "TrainDataset", "TrainReader")


def evaluator(cfg: Any, model: nn.Layer, output_eval: str) -> Tuple[Any, Any, int, List[Any]]:
    """What PaddleDetection's evaluation uses, set up by its own ``Trainer`` in ``eval`` mode around
    ``model`` (no second model is built): ``(EvalDataset with EvalReader's transforms, batch
    collation, batch size, metrics)``. The metrics (COCO, VOC ... per ``metric``) write their
    detections (``bbox.json``) to ``output_eval``."""
    from ppdet.engine import Trainer

    check_dataset(cfg, "EvalDataset")
    os.makedirs(output_eval, exist_ok=True)
    cfg["output_eval"] = output_eval
    cfg["model"] = model  # Trainer takes this model instead of building one
    try:
        with prints_to_log():  # pycocotools' progress lines
            trainer = Trainer(cfg, mode="eval")
    finally:
        del cfg["model"]
    check_num_classes(cfg, trainer.dataset, "EvalDataset")
    return trainer.dataset, trainer.loader._batch_transforms, int(cfg.EvalReader["batch_size"]), trainer._metrics


def sample_file(dataset: Any, index: int) -> str:
    """The image file of sample ``index`` of a PaddleDetection dataset, for error messages."""
    return str(dataset.roidbs[index].get("im_file", f"sample {index}"))


def ppdet_version() -> str:
    try:
        from importlib.metadata import version

        return version("paddledet")
    except Exception:  # noqa: BLE001 - metadata missing in a source checkout
        return "?"


def _plain(node: Any) -> Any:
    """YAML-safe form of a config value: module sections as dicts, YAML-tagged objects (datasets,
    schedules) as ``{type, constructor arguments}``."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(v) for v in node]
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    params = [p for p in inspect.signature(type(node).__init__).parameters if p not in ("self", "args", "kwargs")]
    return {"type": type(node).__name__, **{p: _plain(getattr(node, p)) for p in params if hasattr(node, p)}}


def config_dict(cfg: Any) -> Dict[str, Any]:
    """The config as loaded (``_BASE_`` merged, ``-o`` applied) as a plain dict: runtime keys and the
    module sections the YAML files set (PaddleDetection's registry holds every module; the untouched
    ones are left out)."""
    from ppdet.core.config.schema import SchemaDict

    return {k: _plain(v) for k, v in cfg.items()
            if not (isinstance(v, SchemaDict) and not dict.__len__(v)) and k not in ("model", "output_eval")}


def model_record(cfg: Any) -> Dict[str, Any]:
    """What defines the network (recorded in training checkpoints, compared on ``--resume``): the
    architecture and the sections of the modules it names, ``pretrained`` paths left out."""
    from ppdet.core.config.schema import SchemaDict

    arch = cfg.architecture
    record: Dict[str, Any] = {"architecture": arch}
    pending = [arch]
    while pending:
        name = pending.pop()
        section = cfg.get(name)
        if not isinstance(section, SchemaDict) or name in record:
            continue
        record[name] = {k: _plain(v) for k, v in section.items() if k != "pretrained"}
        pending += [v for v in section.values() if isinstance(v, str) and isinstance(cfg.get(v), SchemaDict)]
    return record


def class_names(cfg: Any) -> Dict[int, str]:
    """clsid -> name from the COCO annotation file when there is one, else the index."""
    anno = None
    for key in ("TestDataset", "EvalDataset"):
        ds = cfg.get(key)
        if ds is not None and hasattr(ds, "get_anno") and ds.get_anno() and os.path.isfile(ds.get_anno()):
            anno = ds.get_anno()
            break
    num = int(cfg.get("num_classes", 80))
    if anno:
        with open(anno) as f:
            cats = sorted(json.load(f).get("categories", []), key=lambda c: c["id"])
        if cats:
            return {i: c["name"] for i, c in enumerate(cats)}
    return {i: str(i) for i in range(num)}


register()  # on import, as the toolkit's own components register
