"""Image transforms from config op lists, built on ``paddle.vision.transforms``.

A config lists ops as ``- OpName: {kwargs}``; ``OpName`` is any class of
``paddle.vision.transforms`` (``RandomResizedCrop``, ``RandomHorizontalFlip``, ``ColorJitter``,
``Normalize``, ``RandomErasing``, ...) or one of the few ops Paddle lacks, defined here:
``RandAugment`` (timm's ``rand-m9-mstd0.5-inc1`` policy -- neither ``paddle.vision.transforms`` nor
the pip PaddleClas, which ships no ``ppcls/data``, provides one) and ``ToCHW``. Ops run on PIL
images; ``Normalize(data_format=HWC)`` turns them into float arrays. Randomness comes only from
Python's ``random`` and NumPy's global generator, which the dataset seeds per sample, so a
sample's augmentation depends on (seed, epoch, index) alone (exact resume).
"""
from __future__ import annotations

import inspect
import random
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import paddle.vision.transforms as T
from PIL import Image, ImageEnhance, ImageOps

from .config import ConfigError, list_of_single_key_dicts, unknown_key_error

__all__ = ["RandAugment", "ToCHW", "build_transforms", "to_chw_float"]

_FILL = (128, 128, 128)


def _rotate(img, mag):
    return img.rotate(mag, resample=Image.BILINEAR, fillcolor=_fill(img))


def _fill(img):
    return _FILL[0] if img.mode == "L" else _FILL[: len(img.getbands())]


def _shear_x(img, mag):
    return img.transform(img.size, Image.AFFINE, (1, mag, 0, 0, 1, 0), Image.BILINEAR, fillcolor=_fill(img))


def _shear_y(img, mag):
    return img.transform(img.size, Image.AFFINE, (1, 0, 0, mag, 1, 0), Image.BILINEAR, fillcolor=_fill(img))


def _translate_x(img, mag):
    return img.transform(img.size, Image.AFFINE, (1, 0, mag * img.size[0], 0, 1, 0), Image.BILINEAR,
                         fillcolor=_fill(img))


def _translate_y(img, mag):
    return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, mag * img.size[1]), Image.BILINEAR,
                         fillcolor=_fill(img))


def _solarize_add(img, add):
    lut = [min(255, i + add) if i < 128 else i for i in range(256)]
    return img.point(lut * len(img.getbands()))


# name -> (function, magnitude -> argument, whether the sign is randomised). Ranges follow timm's
# RandAugment with increasing ("inc1") severity transforms.
_RA_OPS: Dict[str, Any] = {
    "AutoContrast": (lambda img, _: ImageOps.autocontrast(img), lambda m: None, False),
    "Equalize": (lambda img, _: ImageOps.equalize(img), lambda m: None, False),
    "Invert": (lambda img, _: ImageOps.invert(img), lambda m: None, False),
    "Rotate": (_rotate, lambda m: m / 10 * 30.0, True),
    "PosterizeIncreasing": (lambda img, b: ImageOps.posterize(img, b), lambda m: 4 - int(m / 10 * 4), False),
    "SolarizeIncreasing": (lambda img, t: ImageOps.solarize(img, t), lambda m: 256 - int(m / 10 * 256), False),
    "SolarizeAdd": (_solarize_add, lambda m: int(m / 10 * 110), False),
    "ColorIncreasing": (lambda img, f: ImageEnhance.Color(img).enhance(f), lambda m: 1.0 + m / 10 * 0.9, True),
    "ContrastIncreasing": (lambda img, f: ImageEnhance.Contrast(img).enhance(f), lambda m: 1.0 + m / 10 * 0.9,
                           True),
    "BrightnessIncreasing": (lambda img, f: ImageEnhance.Brightness(img).enhance(f),
                             lambda m: 1.0 + m / 10 * 0.9, True),
    "SharpnessIncreasing": (lambda img, f: ImageEnhance.Sharpness(img).enhance(f),
                            lambda m: 1.0 + m / 10 * 0.9, True),
    "ShearX": (_shear_x, lambda m: m / 10 * 0.3, True),
    "ShearY": (_shear_y, lambda m: m / 10 * 0.3, True),
    "TranslateXRel": (_translate_x, lambda m: m / 10 * 0.45, True),
    "TranslateYRel": (_translate_y, lambda m: m / 10 * 0.45, True),
}


class RandAugment:
    """RandAugment on PIL images (timm ``rand-m{magnitude}-mstd{magnitude_std}-inc1``).

    Each call applies ``num_layers`` ops drawn uniformly from the increasing-severity op set,
    each with probability ``prob`` and magnitude ~ N(magnitude, magnitude_std) clipped to [0, 10].
    Signed ops (rotate, shear, translate, enhance) flip the sign of the offset with probability 0.5;
    enhance factors become ``1 -/+ offset``.
    """

    def __init__(self, num_layers: int = 2, magnitude: float = 9.0, magnitude_std: float = 0.5,
                 prob: float = 0.5, ops: Optional[Sequence[str]] = None) -> None:
        self.ops = list(ops) if ops else list(_RA_OPS)
        bad = [o for o in self.ops if o not in _RA_OPS]
        if bad:
            raise ValueError(f"RandAugment: unknown ops {bad}; valid: {', '.join(_RA_OPS)}")
        self.num_layers, self.magnitude, self.magnitude_std, self.prob = num_layers, magnitude, magnitude_std, prob

    def __call__(self, img: Image.Image) -> Image.Image:
        if not isinstance(img, Image.Image):
            raise TypeError("RandAugment expects a PIL image: put it before Normalize/ToTensor")
        for name in random.choices(self.ops, k=self.num_layers):
            if random.random() > self.prob:
                continue
            fn, arg_of, signed = _RA_OPS[name]
            mag = self.magnitude
            if self.magnitude_std > 0:
                mag = random.gauss(self.magnitude, self.magnitude_std)
            mag = min(10.0, max(0.0, mag))
            arg = arg_of(mag)
            if signed and arg is not None:
                if name.endswith("Increasing"):  # enhance ops: factor = 1 +/- offset
                    arg = 1.0 + (arg - 1.0) * (-1 if random.random() < 0.5 else 1)
                elif random.random() < 0.5:
                    arg = -arg
            img = fn(img, arg)
        return img

    def __repr__(self) -> str:
        return f"RandAugment(n={self.num_layers}, m={self.magnitude}, mstd={self.magnitude_std}, p={self.prob})"


class ToCHW:
    """HWC array (or PIL image) -> CHW float32 array (PaddleClas's ``ToCHWImage``)."""

    def __call__(self, img: Any) -> np.ndarray:
        arr = np.asarray(img, dtype=np.float32)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        return np.ascontiguousarray(arr.transpose(2, 0, 1))


_LOCAL_OPS: Dict[str, Callable] = {"RandAugment": RandAugment, "ToCHW": ToCHW}


def _paddle_ops() -> Dict[str, type]:
    return {name: obj for name, obj in vars(T).items()
            if inspect.isclass(obj) and issubclass(obj, T.BaseTransform) and obj is not T.BaseTransform}


def _valid_kwargs(cls: Callable) -> List[str]:
    params = inspect.signature(cls.__init__ if inspect.isclass(cls) else cls).parameters
    return [p for p in params if p not in ("self", "keys", "args", "kwargs")]


def build_transforms(ops: Any, path: str) -> T.Compose:
    """A ``Compose`` from ``- OpName: {kwargs}`` items; unknown ops/arguments raise naming ``path``."""
    available = dict(_paddle_ops())
    available.update(_LOCAL_OPS)
    built = []
    for i, (name, kwargs) in enumerate(list_of_single_key_dicts(ops, path)):
        if name not in available:
            raise unknown_key_error(f"{path}[{i}]", name, available, where="transform op: ")
        cls = available[name]
        valid = _valid_kwargs(cls)
        for key in kwargs:
            if key not in valid:
                raise unknown_key_error(f"{path}[{i}].{name}", key, valid)
        try:
            built.append(cls(**kwargs))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}[{i}].{name}: {exc}") from None
    return T.Compose(built)


def to_chw_float(sample: Any, channels: int) -> np.ndarray:
    """The transformed sample as a CHW float32 array.

    PIL images become ``[0, 1]`` floats; HWC arrays (``Normalize(data_format=HWC)``) are
    transposed; CHW arrays and tensors pass through.
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
    return np.ascontiguousarray(arr)
