"""PaddleClas 2.6 classification transform operators, by their PaddleClas names and arguments.

A PaddleClas config's ``transform_ops`` / ``Infer.transforms`` (``DecodeImage``, ``RandCropImage``,
``ResizeImage``, ``CropImage``, ``RandFlipImage``, ``TimmAutoAugment``, ``NormalizeImage``,
``RandomErasing``, ``ToCHWImage``) run here with PaddleClas 2.6's semantics: the same arguments and
defaults, the same arithmetic, and the same random draws in the same order from Python's ``random`` and
NumPy's global generator (which :class:`paddle_lk.engine.data.ClassificationDataset` seeds per sample from
(seed, epoch, index), so a sample's augmentation is reproducible and resumable). The code is paddle_lk's
own; ``docs/ppcls_operators.md`` tabulates each operator and the few deliberate differences (errors where
PaddleClas silently does something else). The batch operators (``MixupOperator``, ``CutmixOperator``,
``OpSampler``) map onto :class:`paddle_lk.engine.data.Mixup` in :func:`paddle_lk.engine.data.build_mixup`.

Images flow as NumPy ``uint8`` HWC arrays (RGB after ``DecodeImage(to_rgb=True)``) until
``NormalizeImage`` makes them float32; PIL images are accepted where PaddleClas accepts them.
"""
from __future__ import annotations

import ast
import io
import math
import operator
import random
import re
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
from PIL import Image

from ..errors import DataError
from .randaugment import RAND_INCREASING_TRANSFORMS, RAND_TRANSFORMS, RandAugment

__all__ = ["OpArgError", "ImageDecodeError", "parse_number", "DecodeImage", "ResizeImage", "CropImage",
           "RandCropImage", "RandFlipImage", "NormalizeImage", "ToCHWImage", "TimmAutoAugment", "RandomErasing",
           "parse_rand_config", "PPCLS_OPS", "RANDOM_ERASING_ARGS", "IMAGENET_DEFAULT_MEAN",
           "IMAGENET_DEFAULT_STD"]

IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)


class OpArgError(ValueError):
    """A bad operator argument; ``arg`` names it so the config path can be completed
    (``...transform_ops[2].RandCropImage.size``)."""

    def __init__(self, arg: str, message: str) -> None:
        super().__init__(f"{arg}: {message}")
        self.arg, self.message = arg, message


class ImageDecodeError(DataError):
    """``DecodeImage`` could not decode the bytes it was given (the dataset adds the file name)."""


# ----------------------------------------------------------------------------- argument helpers
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def _arith(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        v = _arith(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
        return _ARITH[type(node.op)](_arith(node.left), _arith(node.right))
    raise ValueError("not arithmetic")


def parse_number(value: Any, arg: str) -> float:
    """A number, or a string of number arithmetic as PaddleClas ``eval``\\ s it (``"1.0/255.0"``, ``"1.0/3.0"``).

    Only numbers, ``+ - * /`` and parentheses are evaluated (never arbitrary code).

    Raises:
        OpArgError: anything else, or a division by zero.
    """
    if isinstance(value, bool):
        raise OpArgError(arg, f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(_arith(ast.parse(value.strip(), mode="eval").body))
        except (SyntaxError, ValueError, ZeroDivisionError):
            pass
    raise OpArgError(arg, f"expected a number or number arithmetic like '1.0/255.0', got {value!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _check_bool(value: Any, arg: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise OpArgError(arg, f"expected true or false, got {value!r}")
    return bool(value)


def _size_pair(size: Any, arg: str) -> Tuple[int, int]:
    """PaddleClas sizes: an int ``s`` -> ``(s, s)``; a list keeps its order (``(size[0], size[1])``)."""
    if _is_int(size) and size > 0:
        return int(size), int(size)
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(_is_int(v) and v > 0 for v in size):
        return int(size[0]), int(size[1])
    raise OpArgError(arg, f"expected a positive int or a list of 2 positive ints, got {size!r}")


def _range_pair(value: Any, arg: str) -> Tuple[float, float]:
    if (isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_num(v) for v in value)
            and 0 < value[0] <= value[1]):
        return float(value[0]), float(value[1])
    raise OpArgError(arg, f"expected [low, high] with 0 < low <= high, got {value!r}")


def _three_numbers(value: Any, arg: str) -> List[float]:
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(_is_num(v) for v in value):
        return [float(v) for v in value]
    raise OpArgError(arg, f"expected a list of 3 numbers (one per channel), got {value!r}")


def _backend(value: Any) -> str:
    if isinstance(value, str) and value.lower() in ("cv2", "pil"):
        return value.lower()
    raise OpArgError("backend", f"expected 'cv2' or 'pil', got {value!r}")


def _cv2():
    try:
        import cv2
    except ImportError:  # pragma: no cover - opencv-python is in requirements.txt / the 'train' extra
        raise ImportError("backend 'cv2' needs OpenCV: pip install opencv-python (or use backend: pil)") from None
    return cv2


def _as_array(img: Any, op: str) -> np.ndarray:
    if isinstance(img, np.ndarray):
        return img
    if isinstance(img, Image.Image):
        return np.asarray(img)
    raise TypeError(f"{op} expects an HWC numpy array (after DecodeImage) or a PIL image, got {type(img).__name__}")


def _image_hw(img: Any) -> Tuple[int, int]:
    if isinstance(img, np.ndarray):
        return int(img.shape[0]), int(img.shape[1])
    if isinstance(img, Image.Image):
        return img.size[1], img.size[0]
    raise TypeError(f"expected an HWC numpy array or a PIL image, got {type(img).__name__}")


class _Resizer:
    """PaddleClas's ``UnifiedResize``: cv2 or PIL resizing with named interpolations.

    ``random`` picks bilinear or bicubic per call with ``random.choice``. Sizes are ``(width, height)``.
    """

    def __init__(self, interpolation: Any, backend: Any, return_numpy: bool = True) -> None:
        self.backend = _backend(backend)
        if self.backend == "cv2":
            cv2 = _cv2()
            table: Dict[str, Any] = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR,
                                     "area": cv2.INTER_AREA, "bicubic": cv2.INTER_CUBIC,
                                     "lanczos": cv2.INTER_LANCZOS4,
                                     "random": (cv2.INTER_LINEAR, cv2.INTER_CUBIC)}
            default = cv2.INTER_LINEAR
        else:
            table = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
                     "box": Image.BOX, "lanczos": Image.LANCZOS, "hamming": Image.HAMMING,
                     "random": (Image.BILINEAR, Image.BICUBIC)}
            default = Image.BILINEAR
        if interpolation is None:
            self.flag = default
        elif isinstance(interpolation, str) and interpolation.lower() in table:
            self.flag = table[interpolation.lower()]
        elif _is_int(interpolation) and int(interpolation) in [v for v in table.values() if not isinstance(v, tuple)]:
            self.flag = int(interpolation)  # a raw cv2/PIL constant, passed through as PaddleClas does
        else:
            raise OpArgError("interpolation", f"expected one of {', '.join(table)} for backend "
                                              f"'{self.backend}', got {interpolation!r}")
        self.interpolation, self.return_numpy = interpolation, _check_bool(return_numpy, "return_numpy")

    def __call__(self, img: Any, size_wh: Tuple[int, int]) -> Any:
        flag = random.choice(self.flag) if isinstance(self.flag, tuple) else self.flag
        if self.backend == "cv2":
            return _cv2().resize(np.ascontiguousarray(_as_array(img, "resize")), tuple(size_wh), interpolation=flag)
        pil = Image.fromarray(np.ascontiguousarray(img)) if isinstance(img, np.ndarray) else img
        out = pil.resize(tuple(size_wh), flag)
        return np.asarray(out) if self.return_numpy else out


# ----------------------------------------------------------------------------- operators
class DecodeImage:
    """Decode an image file's bytes into an HWC ``uint8`` array (PaddleClas ``DecodeImage``).

    The dataset hands a pipeline that starts with ``DecodeImage`` the file's raw bytes, so decoding is
    PaddleClas's: ``backend: cv2`` uses ``cv2.imdecode(..., IMREAD_COLOR)`` (3 channels; applies EXIF
    orientation; BGR order), ``backend: pil`` uses ``PIL.Image.open(...).convert("RGB")`` (then flipped to
    BGR). ``to_rgb`` flips the BGR result to RGB; ``channel_first`` transposes HWC -> CHW.

    Other inputs: a PIL image (an already-loaded image) is converted to RGB and treated as the PIL
    backend's decode (no EXIF rotation: PIL does not apply it); a numpy array is taken as an already
    cv2-decoded BGR HWC image (``backend: cv2`` only, as in PaddleClas). With ``to_np: false`` the decoded
    object (PIL image or BGR array) is returned unchanged and ``to_rgb``/``channel_first`` are ignored.

    Returns:
        ``uint8`` array ``[H, W, 3]`` (or ``[3, H, W]`` with ``channel_first``).

    Raises:
        ImageDecodeError: the bytes are not a decodable image.
        TypeError: any other input type, or a numpy array with ``backend: pil``.
    """

    wants_bytes = True  # tells the dataset to pass the file's bytes (see data.read_sample)

    def __init__(self, to_np: bool = True, to_rgb: bool = True, channel_first: bool = False,
                 backend: str = "cv2") -> None:
        self.to_np = _check_bool(to_np, "to_np")
        self.to_rgb = _check_bool(to_rgb, "to_rgb")
        self.channel_first = _check_bool(channel_first, "channel_first")
        self.backend = _backend(backend)
        if self.backend == "cv2":
            _cv2()

    def __call__(self, img: Union[bytes, Image.Image, np.ndarray]) -> Union[np.ndarray, Image.Image]:
        if isinstance(img, (bytes, bytearray, memoryview)):
            if self.backend == "pil":
                try:
                    with Image.open(io.BytesIO(bytes(img))) as opened:
                        img = opened.convert("RGB")
                except (OSError, ValueError) as exc:
                    raise ImageDecodeError(f"DecodeImage(backend=pil): cannot decode the image ({exc})") from None
            else:
                cv2 = _cv2()
                arr = cv2.imdecode(np.frombuffer(bytes(img), dtype=np.uint8), cv2.IMREAD_COLOR)
                if arr is None:
                    raise ImageDecodeError("DecodeImage(backend=cv2): cv2.imdecode cannot decode the image")
                img = arr
        elif isinstance(img, Image.Image):
            img = img if img.mode == "RGB" else img.convert("RGB")
        elif isinstance(img, np.ndarray):
            if self.backend == "pil":
                raise TypeError("DecodeImage(backend=pil) got a numpy array; PaddleClas takes arrays as "
                                "cv2-decoded BGR images only with backend: cv2")
        else:
            raise TypeError(f"DecodeImage expects image bytes, a PIL image or a numpy array, got "
                            f"{type(img).__name__}")
        if not self.to_np:
            return img
        arr = np.asarray(img)[:, :, ::-1] if isinstance(img, Image.Image) else img  # BGR, as PaddleClas
        if self.to_rgb:
            if arr.ndim != 3 or arr.shape[2] != 3:
                raise ValueError(f"DecodeImage(to_rgb=True) needs a 3-channel HWC image, got shape {arr.shape}")
            arr = arr[:, :, ::-1]
        if self.channel_first:
            arr = arr.transpose((2, 0, 1))
        return np.ascontiguousarray(arr)

    def __repr__(self) -> str:
        return (f"DecodeImage(to_np={self.to_np}, to_rgb={self.to_rgb}, channel_first={self.channel_first}, "
                f"backend={self.backend})")


class ResizeImage:
    """Resize to ``size`` or so the short side is ``resize_short`` (PaddleClas ``ResizeImage``).

    ``resize_short > 0`` wins over ``size``: the output is ``(int(round(W * s / min(W, H))),
    int(round(H * s / min(W, H))))`` (width, height; Python's round-half-to-even). ``size`` is an int or a
    list whose first element is the **width** and second the height. ``interpolation``: cv2 -- nearest,
    bilinear (default), area, bicubic, lanczos, random; pil -- nearest, bilinear (default), bicubic, box,
    lanczos, hamming, random (``random``: bilinear or bicubic, drawn per image with ``random.choice``).

    Returns:
        The resized HWC array (or a PIL image with ``backend: pil, return_numpy: false``).

    Raises:
        OpArgError: neither ``size`` nor a positive ``resize_short``, or a bad size/interpolation/backend.
    """

    def __init__(self, size: Any = None, resize_short: Optional[float] = None, interpolation: Any = None,
                 backend: str = "cv2", return_numpy: bool = True) -> None:
        if resize_short is not None and not _is_num(resize_short):
            raise OpArgError("resize_short", f"expected a positive number, got {resize_short!r}")
        if resize_short is not None and resize_short > 0:
            self.resize_short: Optional[float] = resize_short
            self.w = self.h = None
        elif size is not None:
            self.resize_short = None
            self.w, self.h = _size_pair(size, "size")
        else:
            raise OpArgError("size", "ResizeImage needs 'size' or a positive 'resize_short'")
        self._resize = _Resizer(interpolation, backend, return_numpy)

    def __call__(self, img: Any) -> Any:
        img_h, img_w = _image_hw(img)
        if self.resize_short is not None:
            percent = float(self.resize_short) / min(img_w, img_h)
            w, h = int(round(img_w * percent)), int(round(img_h * percent))
        else:
            w, h = self.w, self.h
        return self._resize(img, (w, h))

    def __repr__(self) -> str:
        what = f"resize_short={self.resize_short}" if self.resize_short else f"size=(w={self.w}, h={self.h})"
        return f"ResizeImage({what}, interpolation={self._resize.interpolation}, backend={self._resize.backend})"


class CropImage:
    """Center crop (PaddleClas ``CropImage``): ``size`` int or ``[width, height]``.

    The window starts at ``((W - w) // 2, (H - h) // 2)``.

    Raises:
        OpArgError: a bad ``size``.
        ValueError: the image is smaller than the crop (PaddleClas's training op would silently return a
            wrongly sized slice; its deploy op raises, as here).
    """

    def __init__(self, size: Any) -> None:
        self.size = _size_pair(size, "size")

    def __call__(self, img: Any) -> np.ndarray:
        arr = _as_array(img, "CropImage")
        w, h = self.size
        img_h, img_w = arr.shape[:2]
        if img_h < h or img_w < w:
            raise ValueError(f"CropImage: crop (h={h}, w={w}) is larger than the image (h={img_h}, w={img_w}); "
                             f"resize first (e.g. ResizeImage resize_short >= the crop size)")
        w_start, h_start = (img_w - w) // 2, (img_h - h) // 2
        return arr[h_start:h_start + h, w_start:w_start + w]

    def __repr__(self) -> str:
        return f"CropImage(w={self.size[0]}, h={self.size[1]})"


class RandCropImage:
    """Random-resized crop (PaddleClas ``RandCropImage``; one draw, no retries).

    Draws, in order: the aspect ratio ``a ~ U(ratio)`` (``use_log_aspect``: ``exp(U(log ratio))``); the area
    fraction ``U(min(scale[0], b), min(scale[1], b))`` with ``b = min((W/H)/a, (H/W)*a)`` (so the crop
    fits); crop ``w = int(sqrt(A*a))``, ``h = int(sqrt(A/a))`` at ``x = randint(0, W-w)``,
    ``y = randint(0, H-h)`` (all from ``random``); then resizes the crop to ``size`` (int or
    ``[width, height]``) with ``interpolation`` / ``backend`` as :class:`ResizeImage`.
    ``progress_size`` is accepted and unused (only PaddleClas's progressive-training engine reads it).

    Returns:
        HWC array of ``size``.
    """

    def __init__(self, size: Any, progress_size: Any = None, scale: Any = None, ratio: Any = None,
                 interpolation: Any = None, use_log_aspect: bool = False, backend: str = "cv2") -> None:
        self.size = _size_pair(size, "size")
        if progress_size is not None and not (isinstance(progress_size, (list, tuple))
                                              and all(_is_int(v) and v > 0 for v in progress_size)):
            raise OpArgError("progress_size", f"expected a list of positive ints, got {progress_size!r}")
        self.progress_size = progress_size
        self.scale = (0.08, 1.0) if scale is None else _range_pair(scale, "scale")
        self.ratio = (3.0 / 4.0, 4.0 / 3.0) if ratio is None else _range_pair(ratio, "ratio")
        self.use_log_aspect = _check_bool(use_log_aspect, "use_log_aspect")
        self._resize = _Resizer(interpolation, backend)

    def __call__(self, img: Any) -> np.ndarray:
        arr = _as_array(img, "RandCropImage")
        scale, ratio = self.scale, self.ratio
        if self.use_log_aspect:
            aspect_ratio = math.exp(random.uniform(math.log(ratio[0]), math.log(ratio[1])))
        else:
            aspect_ratio = random.uniform(*ratio)
        img_h, img_w = arr.shape[:2]
        bound = min((float(img_w) / img_h) / aspect_ratio, (float(img_h) / img_w) * aspect_ratio)
        scale_max = min(scale[1], bound)
        scale_min = min(scale[0], bound)
        target_area = img_w * img_h * random.uniform(scale_min, scale_max)
        w = int(math.sqrt(target_area * aspect_ratio))
        h = int(math.sqrt(target_area / aspect_ratio))
        i = random.randint(0, img_w - w)
        j = random.randint(0, img_h - h)
        return self._resize(arr[j:j + h, i:i + w], self.size)

    def __repr__(self) -> str:
        return (f"RandCropImage(size=(w={self.size[0]}, h={self.size[1]}), scale={self.scale}, ratio={self.ratio}, "
                f"use_log_aspect={self.use_log_aspect}, interpolation={self._resize.interpolation}, "
                f"backend={self._resize.backend})")


class RandFlipImage:
    """Flip with probability 1/2 (``random.randint(0, 1) == 1``), PaddleClas ``RandFlipImage``.

    ``flip_code`` as ``cv2.flip``: 1 horizontal (default), 0 vertical, -1 both. Arrays are flipped on
    their first two axes (what ``cv2.flip`` does to HWC/HW arrays); PIL images stay PIL.
    """

    def __init__(self, flip_code: int = 1) -> None:
        if not _is_int(flip_code) or flip_code not in (-1, 0, 1):
            raise OpArgError("flip_code", f"expected 1 (horizontal), 0 (vertical) or -1 (both), got {flip_code!r}")
        self.flip_code = int(flip_code)

    def __call__(self, img: Any) -> Any:
        if random.randint(0, 1) != 1:
            return img
        if isinstance(img, Image.Image):
            if self.flip_code == 1:
                return img.transpose(Image.FLIP_LEFT_RIGHT)
            if self.flip_code == 0:
                return img.transpose(Image.FLIP_TOP_BOTTOM)
            return img.transpose(Image.ROTATE_180)
        arr = _as_array(img, "RandFlipImage")
        axes = {1: (1,), 0: (0,), -1: (0, 1)}[self.flip_code]
        return np.ascontiguousarray(np.flip(arr, axis=axes))

    def __repr__(self) -> str:
        return f"RandFlipImage(flip_code={self.flip_code})"


class NormalizeImage:
    """``(img * scale - mean) / std`` in float32 (PaddleClas ``NormalizeImage``).

    ``scale`` defaults to 1/255 and may be an arithmetic string (``"1.0/255.0"``); ``mean``/``std``
    (defaults: ImageNet's, in 0-1 units) are 3 values broadcast over channels-last (``order`` ``''`` or
    ``'hwc'``) or channels-first (``order: chw``; the input must then already be CHW). ``channel_num: 4``
    appends a zero channel. ``output_fp16`` returns float16.

    Returns:
        float32 (or float16) array, same layout as the input (+1 channel with ``channel_num: 4``).

    Raises:
        OpArgError: a bad scale/mean/std/order/channel_num.
    """

    def __init__(self, scale: Any = None, mean: Any = None, std: Any = None, order: str = "chw",
                 output_fp16: bool = False, channel_num: int = 3) -> None:
        if not _is_int(channel_num) or channel_num not in (3, 4):
            raise OpArgError("channel_num", f"expected 3 or 4, got {channel_num!r}")
        if order not in ("chw", "hwc", ""):
            raise OpArgError("order", f"expected 'chw', 'hwc' or '' (channels last), got {order!r}")
        self.channel_num, self.order = int(channel_num), order
        self.output_dtype = np.float16 if _check_bool(output_fp16, "output_fp16") else np.float32
        self.scale = np.float32(1.0 / 255.0 if scale is None else parse_number(scale, "scale"))
        mean = _three_numbers(IMAGENET_DEFAULT_MEAN if mean is None else mean, "mean")
        std = _three_numbers(IMAGENET_DEFAULT_STD if std is None else std, "std")
        if any(s == 0 for s in std):
            raise OpArgError("std", f"must be non-zero, got {std}")
        shape = (3, 1, 1) if order == "chw" else (1, 1, 3)
        self.mean = np.array(mean).reshape(shape).astype("float32")
        self.std = np.array(std).reshape(shape).astype("float32")

    def __call__(self, img: Any) -> np.ndarray:
        arr = np.array(img) if isinstance(img, Image.Image) else img
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"NormalizeImage expects a numpy array or a PIL image, got {type(img).__name__}")
        out = (arr.astype("float32") * self.scale - self.mean) / self.std
        if self.channel_num == 4:
            axis = 0 if self.order == "chw" else 2
            pad_shape = list(out.shape)
            pad_shape[axis] = 1
            out = np.concatenate((out, np.zeros(pad_shape, dtype=out.dtype)), axis=axis)
        return out.astype(self.output_dtype)

    def __repr__(self) -> str:
        return (f"NormalizeImage(scale={float(self.scale):.6g}, mean={self.mean.ravel().tolist()}, "
                f"std={self.std.ravel().tolist()}, order={self.order!r}, channel_num={self.channel_num})")


class ToCHWImage:
    """HWC -> CHW transpose keeping the dtype (PaddleClas ``ToCHWImage``); PIL images become arrays first.

    Raises:
        ValueError: the input is not 3-D.
    """

    def __call__(self, img: Any) -> np.ndarray:
        arr = np.array(img) if isinstance(img, Image.Image) else img
        if not isinstance(arr, np.ndarray) or arr.ndim != 3:
            raise ValueError(f"ToCHWImage expects an HWC array, got {getattr(arr, 'shape', type(arr).__name__)}")
        return arr.transpose((2, 0, 1))

    def __repr__(self) -> str:
        return "ToCHWImage()"


def parse_rand_config(config_str: Any) -> Dict[str, Any]:
    """timm's RandAugment config string (``rand-m9-mstd0.5-inc1``) as :class:`RandAugment` arguments.

    Sections after ``rand`` split at their first digit into key and value: ``m`` magnitude (int, default
    10), ``n`` ops per image (int, default 2), ``mstd`` magnitude std-dev (float, default 0; the first one
    counts), ``inc`` the increasing-severity op list (timm 0.4 / PaddleClas 2.6 test ``bool(value)`` on the
    string, so ``inc0`` selects it too), ``w`` choice weights (only ``0``). Sections without a digit are
    ignored, as in timm.

    Raises:
        OpArgError: not a ``rand-`` string (``auto-``/``augmix-`` are not supported), an unknown section,
            or a malformed value.
    """
    if not isinstance(config_str, str):
        raise OpArgError("config_str", f"expected a string like 'rand-m9-mstd0.5-inc1', got {config_str!r}")
    parts = config_str.split("-")
    if parts[0] != "rand":
        raise OpArgError("config_str", f"only timm RandAugment strings ('rand-...', e.g. 'rand-m9-mstd0.5-inc1') "
                                       f"are supported; got {config_str!r} (AutoAugment 'auto-...' and AugMix "
                                       f"'augmix-...' policies are not implemented)")
    out: Dict[str, Any] = {"magnitude": 10, "num_layers": 2, "magnitude_std": None, "ops": RAND_TRANSFORMS,
                           "weight_idx": None}
    for section in parts[1:]:
        cs = re.split(r"(\d.*)", section)
        if len(cs) < 2:
            continue
        key, val = cs[:2]
        try:
            if key == "mstd":
                if out["magnitude_std"] is None:
                    out["magnitude_std"] = float(val)
            elif key == "inc":
                if bool(val):
                    out["ops"] = RAND_INCREASING_TRANSFORMS
            elif key == "m":
                out["magnitude"] = int(val)
            elif key == "n":
                out["num_layers"] = int(val)
            elif key == "w":
                out["weight_idx"] = int(val)
                if out["weight_idx"] != 0:
                    raise OpArgError("config_str", f"section '{section}': only weight set w0 exists")
            else:
                raise OpArgError("config_str", f"unknown section '{section}' in {config_str!r} "
                                               f"(known: m<int>, n<int>, mstd<float>, inc<int>, w0)")
        except ValueError as exc:
            if isinstance(exc, OpArgError):
                raise
            raise OpArgError("config_str", f"section '{section}' of {config_str!r}: bad value {val!r}") from None
    if out["magnitude_std"] is None:
        out["magnitude_std"] = 0.0
    return out


# TimmAutoAugment's interpolation -> RandAugment's: timm's ``_pil_interp`` maps anything but bicubic,
# lanczos and hamming to bilinear; an empty value or 'random' picks bilinear/bicubic per op.
_TIMM_INTERP = {"bicubic": "bicubic", "lanczos": "lanczos", "hamming": "hamming", "bilinear": "bilinear",
                "nearest": "bilinear", "random": "random"}


class TimmAutoAugment:
    """PaddleClas ``TimmAutoAugment``: timm's RandAugment via :class:`~paddle_lk.engine.randaugment.RandAugment`.

    One ``random.random() < prob`` draw decides whether to augment; the image is converted to PIL and
    back to a ``uint8`` array. ``config_str`` is parsed by :func:`parse_rand_config`; geometric ops
    fill with ``round(255 * mean)`` and resample with ``interpolation`` (bicubic, lanczos, hamming;
    bilinear and nearest give bilinear; ``random``/empty pick bilinear or bicubic per op). Each op runs
    with probability 0.5. ``img_size`` only sizes timm's absolute translations, which the ``rand`` op
    lists do not use.

    Returns:
        HWC ``uint8`` array.

    Raises:
        OpArgError: a bad ``config_str``, ``interpolation``, ``mean``, ``img_size`` or ``prob``.
    """

    def __init__(self, prob: float = 1.0, config_str: str = "rand-m9-mstd0.5-inc1", interpolation: Any = "bicubic",
                 img_size: Any = 224, mean: Any = IMAGENET_DEFAULT_MEAN) -> None:
        if not _is_num(prob) or not 0.0 <= prob <= 1.0:
            raise OpArgError("prob", f"expected a number in [0, 1], got {prob!r}")
        if not (_is_int(img_size) and img_size > 0) and not (
                isinstance(img_size, (list, tuple)) and img_size and all(_is_int(v) and v > 0 for v in img_size)):
            raise OpArgError("img_size", f"expected a positive int or a list of them, got {img_size!r}")
        mean = _three_numbers(mean, "mean")
        if interpolation in (None, ""):
            interp = "random"
        elif isinstance(interpolation, str) and interpolation in _TIMM_INTERP:  # case-sensitive, as timm's
            interp = _TIMM_INTERP[interpolation]
        else:
            raise OpArgError("interpolation", f"expected one of {', '.join(_TIMM_INTERP)}, got {interpolation!r}")
        cfg = parse_rand_config(config_str)
        self.prob, self.config_str, self.img_size = float(prob), config_str, img_size
        self.fill = tuple(min(255, round(255 * x)) for x in mean)
        self.augment = RandAugment(num_layers=cfg["num_layers"], magnitude=cfg["magnitude"],
                                   magnitude_std=cfg["magnitude_std"], prob=0.5, ops=cfg["ops"],
                                   interpolation=interp, fill=self.fill, weight_idx=cfg["weight_idx"])

    def __call__(self, img: Any) -> np.ndarray:
        if not isinstance(img, Image.Image):
            img = Image.fromarray(np.ascontiguousarray(img))
        if random.random() < self.prob:
            img = self.augment(img)
        return np.asarray(img)

    def __repr__(self) -> str:
        return f"TimmAutoAugment(config_str={self.config_str!r}, prob={self.prob}, {self.augment!r})"


class RandomErasing:
    """PaddleClas ``RandomErasing`` (Zhong et al.; timm's variant): erase one rectangle of an HWC array.

    With probability ``EPSILON`` (skipped when ``random.random() > EPSILON``), up to ``attempt`` tries
    draw an area ``U(sl, sh) * H * W`` and an aspect ``U(r1, 1/r1)`` (``use_log_aspect``:
    ``exp(U(log r1, -log r1))``), giving ``h = int(round(sqrt(area * aspect)))``,
    ``w = int(round(sqrt(area / aspect)))``; the first try with ``h < H`` and ``w < W`` fills
    ``[y, y+h) x [x, x+w)`` at ``y = randint(0, H-h)``, ``x = randint(0, W-w)`` with ``mode``: ``const`` --
    ``mean``; ``rand`` -- one N(0, 1) value per channel; ``pixel`` -- N(0, 1) per pixel and channel
    (``np.random.normal``, drawn before the position). 3-channel images are filled on all channels,
    others on channel 0. ``EPSILON``, ``sl``, ``sh``, ``r1`` may be arithmetic strings (``"1.0/3.0"``).
    Numpy input is always taken as HWC (as in PaddleClas); the input is not modified (a copy is erased).

    Raises:
        OpArgError: bad arguments. TypeError: the input is not a numpy array.
    """

    def __init__(self, EPSILON: Any = 0.5, sl: Any = 0.02, sh: Any = 0.4, r1: Any = 0.3,
                 mean: Any = (0.0, 0.0, 0.0), attempt: int = 100, use_log_aspect: bool = False,
                 mode: str = "const") -> None:
        self.EPSILON = parse_number(EPSILON, "EPSILON")
        self.sl, self.sh = parse_number(sl, "sl"), parse_number(sh, "sh")
        r1 = parse_number(r1, "r1")
        if not 0.0 <= self.EPSILON <= 1.0:
            raise OpArgError("EPSILON", f"expected a probability in [0, 1], got {self.EPSILON}")
        if not 0.0 <= self.sl <= self.sh:
            raise OpArgError("sh", f"expected 0 <= sl <= sh, got sl={self.sl}, sh={self.sh}")
        if r1 <= 0:
            raise OpArgError("r1", f"expected a positive aspect ratio, got {r1}")
        if not _is_int(attempt) or attempt < 0:
            raise OpArgError("attempt", f"expected an int >= 0, got {attempt!r}")
        if mode not in ("const", "rand", "pixel"):
            raise OpArgError("mode", f"expected 'const', 'rand' or 'pixel', got {mode!r}")
        if not (isinstance(mean, (list, tuple)) and mean and all(_is_num(v) for v in mean)):
            raise OpArgError("mean", f"expected a list of numbers (one per channel), got {mean!r}")
        self.use_log_aspect = _check_bool(use_log_aspect, "use_log_aspect")
        self.r1 = (math.log(r1), math.log(1 / r1)) if self.use_log_aspect else (r1, 1 / r1)
        self.attempt, self.mode, self.mean = int(attempt), mode, np.array(mean)

    def _pixels(self, h: int, w: int, c: int) -> np.ndarray:
        if self.mode == "rand":
            return np.random.normal(size=(1, 1, 3))
        if self.mode == "pixel":
            return np.random.normal(size=(h, w, c))
        if self.mean.size != c:
            raise ValueError(f"RandomErasing(mode=const): mean has {self.mean.size} values, the image {c} channels")
        return np.reshape(self.mean, (1, 1, c))

    def __call__(self, img: Any) -> np.ndarray:
        if not isinstance(img, np.ndarray) or img.ndim != 3:
            raise TypeError("RandomErasing (PaddleClas arguments) expects an HWC numpy array, e.g. after "
                            f"NormalizeImage(order: ''); got {getattr(img, 'shape', type(img).__name__)}")
        if random.random() > self.EPSILON:
            return img
        img_h, img_w, img_c = img.shape
        area = img_h * img_w
        for _ in range(self.attempt):
            target_area = random.uniform(self.sl, self.sh) * area
            aspect_ratio = random.uniform(*self.r1)
            if self.use_log_aspect:
                aspect_ratio = math.exp(aspect_ratio)
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if w < img_w and h < img_h:
                pixels = self._pixels(h, w, img_c)
                y = random.randint(0, img_h - h)
                x = random.randint(0, img_w - w)
                out = np.array(img)
                if img_c == 3:
                    out[y:y + h, x:x + w, :] = pixels
                else:
                    out[y:y + h, x:x + w, 0] = pixels[:, :, 0]
                return out
        return img

    def __repr__(self) -> str:
        return (f"RandomErasing(EPSILON={self.EPSILON}, sl={self.sl}, sh={self.sh}, r1={self.r1}, "
                f"attempt={self.attempt}, use_log_aspect={self.use_log_aspect}, mode={self.mode})")


# PaddleClas's RandomErasing shares its name with paddle.vision's; these arguments select it.
RANDOM_ERASING_ARGS = ("EPSILON", "sl", "sh", "r1", "mean", "attempt", "use_log_aspect", "mode")

PPCLS_OPS: Dict[str, type] = {
    "DecodeImage": DecodeImage, "ResizeImage": ResizeImage, "CropImage": CropImage, "RandCropImage": RandCropImage,
    "RandFlipImage": RandFlipImage, "NormalizeImage": NormalizeImage, "ToCHWImage": ToCHWImage,
    "TimmAutoAugment": TimmAutoAugment,
}
