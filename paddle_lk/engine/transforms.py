"""Image transforms from config op lists, built on ``paddle.vision.transforms``.

A config lists ops as ``- OpName: {kwargs}``; ``OpName`` is any class of
``paddle.vision.transforms`` (``RandomResizedCrop``, ``RandomHorizontalFlip``, ``ColorJitter``,
``Normalize``, ``RandomErasing``, ...), one of the few ops Paddle lacks, defined here --
``RandAugment`` (timm's RandAugment, e.g. ``rand-m9-mstd0.5-inc1``; neither ``paddle.vision.transforms``
nor the pip PaddleClas, which ships no ``ppcls/data``, provides one) and ``ToCHW`` -- or a PaddleClas 2.6
operator (``DecodeImage``, ``RandCropImage``, ``ResizeImage``, ``CropImage``, ``RandFlipImage``,
``NormalizeImage``, ``ToCHWImage``, ``TimmAutoAugment``, PaddleClas-argument ``RandomErasing``; see
:mod:`paddle_lk.engine.ppcls_ops`). paddle.vision ops run on PIL images and ``Normalize(data_format=HWC)``
turns them into float arrays; PaddleClas pipelines start with ``DecodeImage`` and run on NumPy arrays.
Randomness comes only from Python's ``random`` and NumPy's global generator, which the dataset seeds per
sample, so a sample's augmentation depends on (seed, epoch, index) alone (exact resume).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Sequence

import numpy as np
import paddle.vision.transforms as T
from PIL import Image

from .config import ConfigError, list_of_single_key_dicts, unknown_key_error
from .ppcls_ops import PPCLS_OPS, RANDOM_ERASING_ARGS, OpArgError, RandomErasing as PPClsRandomErasing
from .randaugment import RAND_INCREASING_TRANSFORMS, RAND_TRANSFORMS, RandAugment

__all__ = ["RandAugment", "ToCHW", "Compose", "available_ops", "build_transforms", "to_chw_float", "deploy_preprocess",
           "RAND_TRANSFORMS", "RAND_INCREASING_TRANSFORMS"]


class ToCHW:
    """HWC array (or PIL image) -> CHW float32 array; 2-D images get a channel axis.

    (PaddleClas's ``ToCHWImage`` -- also available -- keeps the dtype and needs 3-D input.)
    """

    def __call__(self, img: Any) -> np.ndarray:
        arr = np.asarray(img, dtype=np.float32)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        return np.ascontiguousarray(arr.transpose(2, 0, 1))


_LOCAL_OPS: Dict[str, Callable] = {"RandAugment": RandAugment, "ToCHW": ToCHW}


class Compose(T.Compose):
    """The built pipeline: ops applied in order (without ``paddle.vision``'s printed stack trace on error).

    ``wants_bytes`` is true when the first op is PaddleClas's ``DecodeImage``: the dataset then passes the
    image file's bytes instead of a decoded PIL image (see :func:`paddle_lk.engine.data.read_sample`).
    """

    def __init__(self, transforms: Sequence[Callable]) -> None:
        super().__init__(list(transforms))
        self.wants_bytes = bool(self.transforms) and bool(getattr(self.transforms[0], "wants_bytes", False))

    def __call__(self, data: Any) -> Any:
        for op in self.transforms:
            data = op(data)
        return data


def _paddle_ops() -> Dict[str, type]:
    return {name: obj for name, obj in vars(T).items()
            if inspect.isclass(obj) and issubclass(obj, T.BaseTransform) and obj is not T.BaseTransform}


def _valid_kwargs(cls: Callable) -> List[str]:
    params = inspect.signature(cls.__init__ if inspect.isclass(cls) else cls).parameters
    return [p for p in params if p not in ("self", "keys", "args", "kwargs")]


def _required_kwargs(cls: Callable) -> List[str]:
    params = inspect.signature(cls.__init__ if inspect.isclass(cls) else cls).parameters
    return [n for n, p in params.items() if n not in ("self", "keys", "args", "kwargs")
            and p.default is inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD and p.kind is not p.VAR_POSITIONAL]


def _random_erasing(kwargs: Dict[str, Any], ppcls_pipeline: bool, where: str) -> type:
    """``RandomErasing`` is both a paddle.vision op and a PaddleClas op: the arguments decide; with none,
    PaddleClas's in a pipeline that starts with ``DecodeImage``, paddle.vision's otherwise."""
    vision_args = set(_valid_kwargs(T.RandomErasing))
    ours, theirs = set(kwargs) & set(RANDOM_ERASING_ARGS), set(kwargs) & vision_args
    if ours and theirs:
        raise ConfigError(f"{where}: mixes PaddleClas RandomErasing arguments ({', '.join(sorted(ours))}) with "
                          f"paddle.vision RandomErasing arguments ({', '.join(sorted(theirs))}); use one set")
    if ours or (not theirs and ppcls_pipeline):
        return PPClsRandomErasing
    return T.RandomErasing


def available_ops() -> Dict[str, Callable]:
    """Every transform op name a config may use: ``paddle.vision.transforms`` classes, ``RandAugment``,
    ``ToCHW`` and PaddleClas 2.6's operators (:mod:`paddle_lk.engine.ppcls_ops`)."""
    available: Dict[str, Callable] = dict(_paddle_ops())
    available.update(_LOCAL_OPS)
    available.update(PPCLS_OPS)
    return available


def build_transforms(ops: Any, path: str) -> Compose:
    """A :class:`Compose` from ``- OpName: {kwargs}`` items (see :func:`available_ops`).

    Raises:
        ConfigError: an unknown op or argument (naming ``path[i].Op.arg`` and the closest valid name), a
            missing required argument, or a bad argument value.
    """
    available = available_ops()
    items = list_of_single_key_dicts(ops, path)
    ppcls_pipeline = bool(items) and items[0][0] == "DecodeImage"
    built = []
    for i, (name, kwargs) in enumerate(items):
        where = f"{path}[{i}].{name}"
        if name not in available:
            raise unknown_key_error(f"{path}[{i}]", name, available, where="transform op: ")
        if name == "RandAugment" and ppcls_pipeline:
            raise ConfigError(f"{where}: in a PaddleClas pipeline (one starting with DecodeImage) 'RandAugment' "
                              f"would be PaddleClas's own RandAugment policy, which paddle_lk does not implement; "
                              f"paddle_lk's RandAugment is timm's and runs on PIL images: use TimmAutoAugment "
                              f"(config_str 'rand-m9-mstd0.5-inc1' style) instead")
        cls = _random_erasing(kwargs, ppcls_pipeline, where) if name == "RandomErasing" else available[name]
        valid = _valid_kwargs(cls)
        for key in kwargs:
            if key not in valid:
                raise unknown_key_error(where, key, valid)
        for key in _required_kwargs(cls):
            if key not in kwargs:
                raise ConfigError(f"{where}.{key}: required")
        try:
            built.append(cls(**kwargs))
        except OpArgError as exc:
            raise ConfigError(f"{where}.{exc.arg}: {exc.message}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return Compose(built)


def to_chw_float(sample: Any, channels: int) -> np.ndarray:
    """The transformed sample as a CHW float32 array.

    PIL images become ``[0, 1]`` floats; HWC arrays (``Normalize(data_format=HWC)``, PaddleClas's
    ``NormalizeImage(order: '')``) are transposed; CHW arrays and tensors pass through.

    Raises:
        ValueError: the result is not ``channels`` x H x W.
    """
    if isinstance(sample, Image.Image):
        arr = np.asarray(sample, dtype=np.float32) / 255.0
    elif hasattr(sample, "numpy"):
        arr = np.asarray(sample.numpy(), dtype=np.float32)
    else:
        arr = np.asarray(sample, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"transforms produced an array of shape {arr.shape}, expected an image")
    if arr.shape[0] != channels and arr.shape[-1] == channels:
        arr = arr.transpose(2, 0, 1)
    if arr.shape[0] != channels:
        raise ValueError(f"transforms produced an image of shape {arr.shape}, expected {channels} channels "
                         f"(Global.image_shape[0]) first or last")
    return np.ascontiguousarray(arr)


_DEPLOY_PASS = ("ResizeImage", "CropImage", "NormalizeImage", "ToCHWImage")


def _deploy_op(name: str, kwargs: Dict[str, Any], path: str) -> Any:
    """One evaluation op as PaddleClas's deploy op (the same computation on an RGB uint8 HWC array)."""
    if name in _DEPLOY_PASS:
        return {name: dict(kwargs)} if kwargs else {name: None}
    if name == "DecodeImage":
        return None  # the deploy predictor decodes images itself (RGB)
    if name == "Resize":
        size = kwargs.get("size")
        interp = kwargs.get("interpolation", "bilinear")
        if isinstance(size, int):
            return {"ResizeImage": {"resize_short": size, "interpolation": interp, "backend": "pil"}}
        if isinstance(size, (list, tuple)) and len(size) == 2:
            return {"ResizeImage": {"size": [size[1], size[0]], "interpolation": interp, "backend": "pil"}}
    if name == "CenterCrop":
        size = kwargs.get("size")
        if isinstance(size, int):
            return {"CropImage": {"size": size}}
        if isinstance(size, (list, tuple)) and len(size) == 2:
            return {"CropImage": {"size": [size[1], size[0]]}}
    if name == "Normalize" and kwargs.get("data_format", "CHW").upper() == "HWC":
        mean, std = kwargs.get("mean", 0.0), kwargs.get("std", 1.0)
        mean = [float(m) / 255.0 for m in (mean if isinstance(mean, (list, tuple)) else [mean] * 3)]
        std = [float(s) / 255.0 for s in (std if isinstance(std, (list, tuple)) else [std] * 3)]
        return {"NormalizeImage": {"scale": "1.0/255.0", "mean": mean, "std": std, "order": ""}}
    if name in ("ToCHW",):
        return {"ToCHWImage": None}
    raise ConfigError(f"{path}: '{name}' has no PaddleClas deploy counterpart")


def deploy_preprocess(ops: Any, path: str) -> List[Dict[str, Any]]:
    """An evaluation pipeline as PaddleClas deploy ``PreProcess.transform_ops`` (``ResizeImage``,
    ``CropImage``, ``NormalizeImage``, ``ToCHWImage``), which PaddleClas's own predictor and
    :class:`paddle_lk.Predictor` run on RGB uint8 images. paddle.vision ``Resize``/``CenterCrop``/
    ``Normalize(data_format=HWC)``/``ToCHW`` translate exactly (PIL resizing, 0-255 mean/std rescaled).

    Raises:
        ConfigError naming the first op that has no deploy counterpart (e.g. a random augmentation).
    """
    items = list_of_single_key_dicts(ops, path)
    out = []
    for i, (name, kwargs) in enumerate(items):
        op = _deploy_op(name, kwargs, f"{path}[{i}]")
        if op is not None:
            out.append(op)
    chw = [i for i, op in enumerate(out) if "ToCHWImage" in op]
    if not any("NormalizeImage" in op for op in out):
        # to_chw_float scales a PIL result to [0, 1]; an array (ToCHW of unnormalized pixels) stays 0-255.
        scale = 1.0 if chw else "1.0/255.0"
        op = {"NormalizeImage": {"scale": scale, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "order": ""}}
        out.insert(chw[0] if chw else len(out), op)
    if not chw:
        out.append({"ToCHWImage": None})
    return out
