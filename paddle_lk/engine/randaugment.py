"""timm's RandAugment on PIL images: one implementation for the ``RandAugment`` op and PaddleClas's
``TimmAutoAugment`` (PaddleClas 2.6 ``ppcls/data/preprocess/ops/timm_autoaugment.py`` semantics, timm 0.4).

Randomness comes only from Python's ``random`` and NumPy's global generator, drawn in timm's order.
"""
from __future__ import annotations

import random
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

__all__ = ["RandAugment", "RAND_TRANSFORMS", "RAND_INCREASING_TRANSFORMS"]

_FILL = (128, 128, 128)


# timm RandAugment op functions (PaddleClas 2.6 ``timm_autoaugment.py`` semantics). Geometric ops take
# ``resample`` and ``fill``; the others ignore them.
_RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
             "lanczos": Image.LANCZOS, "hamming": Image.HAMMING, "random": (Image.BILINEAR, Image.BICUBIC)}
_MAX_LEVEL = 10.0
_TRANSLATE_PCT = 0.45  # timm's default ``translate_pct`` for the *Rel ops


def _fill(img: Image.Image, fill: Tuple[int, ...]) -> Any:
    return fill[0] if img.mode in ("L", "I", "F") else tuple(fill[: len(img.getbands())])


def _affine(img, matrix, resample, fill):
    return img.transform(img.size, Image.AFFINE, matrix, resample=resample, fillcolor=_fill(img, fill))


def _rotate(img, deg, resample, fill):
    return img.rotate(deg, resample=resample, fillcolor=_fill(img, fill))


def _shear_x(img, f, resample, fill):
    return _affine(img, (1, f, 0, 0, 1, 0), resample, fill)


def _shear_y(img, f, resample, fill):
    return _affine(img, (1, 0, 0, f, 1, 0), resample, fill)


def _translate_x_rel(img, pct, resample, fill):
    return _affine(img, (1, 0, pct * img.size[0], 0, 1, 0), resample, fill)


def _translate_y_rel(img, pct, resample, fill):
    return _affine(img, (1, 0, 0, 0, 1, pct * img.size[1]), resample, fill)


def _posterize(img, bits, *_):
    return img if bits >= 8 else ImageOps.posterize(img, bits)


def _solarize_add(img, add, *_):
    if img.mode not in ("L", "RGB"):
        return img  # timm: other modes pass through
    lut = [min(255, i + add) if i < 128 else i for i in range(256)]
    return img.point(lut * len(img.getbands()))


def _negate(v: float) -> float:
    """timm's ``_randomly_negate``: one ``random.random()`` draw, negative when it exceeds 0.5."""
    return -v if random.random() > 0.5 else v


def _enhance_increasing(m: float) -> float:
    return 1.0 + _negate((m / _MAX_LEVEL) * 0.9)


# name -> (op(img, arg, resample, fill), level(magnitude) -> arg or None, geometric). Levels are timm's
# ``*_level_to_arg`` functions: the sign draws happen inside them, in timm's order.
_RA_OPS: Dict[str, Any] = {
    "AutoContrast": (lambda img, *_: ImageOps.autocontrast(img), None, False),
    "Equalize": (lambda img, *_: ImageOps.equalize(img), None, False),
    "Invert": (lambda img, *_: ImageOps.invert(img), None, False),
    "Rotate": (_rotate, lambda m: _negate((m / _MAX_LEVEL) * 30.0), True),
    "Posterize": (_posterize, lambda m: int((m / _MAX_LEVEL) * 4), False),
    "PosterizeIncreasing": (_posterize, lambda m: 4 - int((m / _MAX_LEVEL) * 4), False),
    "PosterizeOriginal": (_posterize, lambda m: int((m / _MAX_LEVEL) * 4) + 4, False),
    "Solarize": (lambda img, t, *_: ImageOps.solarize(img, t), lambda m: int((m / _MAX_LEVEL) * 256), False),
    "SolarizeIncreasing": (lambda img, t, *_: ImageOps.solarize(img, t),
                           lambda m: 256 - int((m / _MAX_LEVEL) * 256), False),
    "SolarizeAdd": (_solarize_add, lambda m: int((m / _MAX_LEVEL) * 110), False),
    "Color": (lambda img, f, *_: ImageEnhance.Color(img).enhance(f), lambda m: (m / _MAX_LEVEL) * 1.8 + 0.1, False),
    "ColorIncreasing": (lambda img, f, *_: ImageEnhance.Color(img).enhance(f), _enhance_increasing, False),
    "Contrast": (lambda img, f, *_: ImageEnhance.Contrast(img).enhance(f), lambda m: (m / _MAX_LEVEL) * 1.8 + 0.1,
                 False),
    "ContrastIncreasing": (lambda img, f, *_: ImageEnhance.Contrast(img).enhance(f), _enhance_increasing, False),
    "Brightness": (lambda img, f, *_: ImageEnhance.Brightness(img).enhance(f),
                   lambda m: (m / _MAX_LEVEL) * 1.8 + 0.1, False),
    "BrightnessIncreasing": (lambda img, f, *_: ImageEnhance.Brightness(img).enhance(f), _enhance_increasing,
                             False),
    "Sharpness": (lambda img, f, *_: ImageEnhance.Sharpness(img).enhance(f),
                  lambda m: (m / _MAX_LEVEL) * 1.8 + 0.1, False),
    "SharpnessIncreasing": (lambda img, f, *_: ImageEnhance.Sharpness(img).enhance(f), _enhance_increasing, False),
    "ShearX": (_shear_x, lambda m: _negate((m / _MAX_LEVEL) * 0.3), True),
    "ShearY": (_shear_y, lambda m: _negate((m / _MAX_LEVEL) * 0.3), True),
    "TranslateXRel": (_translate_x_rel, lambda m: _negate((m / _MAX_LEVEL) * _TRANSLATE_PCT), True),
    "TranslateYRel": (_translate_y_rel, lambda m: _negate((m / _MAX_LEVEL) * _TRANSLATE_PCT), True),
}

# timm's op lists: ``_RAND_TRANSFORMS`` (config strings without ``inc``) and ``_RAND_INCREASING_TRANSFORMS``.
RAND_TRANSFORMS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
                   "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")
RAND_INCREASING_TRANSFORMS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
                              "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
                              "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel",
                              "TranslateYRel")
# timm's ``_RAND_CHOICE_WEIGHTS_0`` (config string ``w0``), by position of ``RAND_TRANSFORMS`` (timm looks the
# weights up by the plain names even when ``inc`` selects the increasing list).
_RAND_CHOICE_WEIGHTS_0 = {"Rotate": 0.3, "ShearX": 0.2, "ShearY": 0.2, "TranslateXRel": 0.1, "TranslateYRel": 0.1,
                          "Color": .025, "Sharpness": 0.025, "AutoContrast": 0.025, "Solarize": .005,
                          "SolarizeAdd": .005, "Contrast": .005, "Brightness": .005, "Equalize": .005,
                          "Posterize": 0, "Invert": 0}


class RandAugment:
    """RandAugment on PIL images with timm's semantics (what PaddleClas's ``TimmAutoAugment`` runs).

    Each call picks ``num_layers`` ops with ``np.random.choice`` (with replacement; weighted and without
    replacement when ``weight_idx=0``, timm's ``w0``). Each op then runs with probability ``prob`` (one
    ``random.random()`` draw when ``prob < 1``) at magnitude ``magnitude`` -- or ~ N(magnitude,
    magnitude_std) when ``magnitude_std > 0`` (``random.gauss``) -- clipped to [0, 10] and mapped to the
    op's argument by timm's level functions (rotate up to 30 degrees, shear 0.3, translate 0.45 of the
    size, enhance factor 1 -/+ 0.9, posterize/solarize thresholds). Signed ops flip the sign when a
    ``random.random()`` draw exceeds 0.5. Geometric ops resample with ``interpolation`` (``random`` picks
    bilinear or bicubic per op with ``random.choice``) and fill uncovered pixels with ``fill``.

    Args:
        num_layers: ops applied per image (>= 0).
        magnitude: op strength in [0, 10].
        magnitude_std: std-dev of the magnitude noise (0 disables it).
        prob: probability of applying each picked op, in [0, 1].
        ops: op names (default: timm's increasing-severity list, ``RAND_INCREASING_TRANSFORMS``).
        interpolation: ``bilinear``, ``bicubic``, ``lanczos``, ``hamming``, ``nearest`` or ``random``.
        fill: RGB fill colour (0-255 ints) of the geometric ops.
        weight_idx: ``None`` (uniform choice) or ``0`` (timm's weights; needs the 15 default-list ops).

    The defaults (bilinear, grey fill 128) are paddle_lk's ``RandAugment`` op's; PaddleClas's
    ``TimmAutoAugment`` passes its own (bicubic or random, ``round(255 * mean)``).

    Raises:
        ValueError: an unknown op, interpolation or out-of-range argument.
        TypeError: the input is not a PIL image.
    """

    def __init__(self, num_layers: int = 2, magnitude: float = 9.0, magnitude_std: float = 0.5,
                 prob: float = 0.5, ops: Optional[Sequence[str]] = None, interpolation: str = "bilinear",
                 fill: Sequence[int] = _FILL, weight_idx: Optional[int] = None) -> None:
        self.ops = list(ops) if ops else list(RAND_INCREASING_TRANSFORMS)
        bad = [o for o in self.ops if o not in _RA_OPS]
        if bad:
            raise ValueError(f"RandAugment: unknown ops {bad}; valid: {', '.join(_RA_OPS)}")
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 0:
            raise ValueError(f"num_layers must be an int >= 0, got {num_layers!r}")
        for name, value in (("magnitude", magnitude), ("magnitude_std", magnitude_std), ("prob", prob)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        if magnitude_std < 0:
            raise ValueError(f"magnitude_std must be >= 0, got {magnitude_std}")
        if interpolation not in _RESAMPLE:
            raise ValueError(f"interpolation must be one of {', '.join(_RESAMPLE)}, got {interpolation!r}")
        fill = tuple(fill) if isinstance(fill, (list, tuple)) else fill
        if not (isinstance(fill, tuple) and len(fill) == 3
                and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in fill)):
            raise ValueError(f"fill must be 3 ints in [0, 255], got {fill!r}")
        self.weights: Optional[np.ndarray] = None
        if weight_idx is not None:
            if weight_idx != 0:
                raise ValueError(f"weight_idx must be None or 0 (timm has one weight set), got {weight_idx!r}")
            if len(self.ops) != len(RAND_TRANSFORMS):
                raise ValueError(f"weight_idx=0 weights timm's {len(RAND_TRANSFORMS)} default ops; "
                                 f"got {len(self.ops)} ops")
            w = np.array([_RAND_CHOICE_WEIGHTS_0[k] for k in RAND_TRANSFORMS], dtype=np.float64)
            self.weights = w / np.sum(w)
        self.num_layers, self.magnitude, self.magnitude_std, self.prob = num_layers, magnitude, magnitude_std, prob
        self.interpolation, self.fill, self.weight_idx = interpolation, fill, weight_idx

    def _apply(self, name: str, img: Image.Image) -> Image.Image:
        if self.prob < 1.0 and random.random() > self.prob:
            return img
        fn, level, geometric = _RA_OPS[name]
        mag = self.magnitude
        if self.magnitude_std > 0:
            mag = random.gauss(mag, self.magnitude_std)
        mag = min(_MAX_LEVEL, max(0.0, mag))
        arg = level(mag) if level is not None else None
        resample = _RESAMPLE[self.interpolation]
        if geometric and isinstance(resample, tuple):
            resample = random.choice(resample)
        return fn(img, arg, resample, self.fill)

    def __call__(self, img: Image.Image) -> Image.Image:
        if not isinstance(img, Image.Image):
            raise TypeError("RandAugment expects a PIL image: put it before Normalize/ToTensor")
        picks = np.random.choice(len(self.ops), self.num_layers, replace=self.weights is None, p=self.weights)
        for k in picks:
            img = self._apply(self.ops[int(k)], img)
        return img

    def __repr__(self) -> str:
        return (f"RandAugment(n={self.num_layers}, m={self.magnitude}, mstd={self.magnitude_std}, p={self.prob}, "
                f"interpolation={self.interpolation}, fill={self.fill})")
