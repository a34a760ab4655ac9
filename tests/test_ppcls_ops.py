"""PaddleClas 2.6 operators (paddle_lk.engine.ppcls_ops) against references computed in the test.

References are direct OpenCV / PIL / NumPy calls or the operators' documented formulas, written out here
with their own RNG replaying PaddleClas's draw order (``random.Random(s)`` / ``np.random.RandomState(s)``
give the same streams as ``random.seed(s)`` / ``np.random.seed(s)``).
"""
import io
import math
import random

import cv2
import numpy as np
import paddle
import paddle.vision.transforms as T
import pytest
import yaml
from PIL import Image, ImageEnhance, ImageOps
from skimage import data as skdata

from paddle_lk.engine import ppcls_ops as P
from paddle_lk.engine.config import ConfigError, DataError
from paddle_lk.engine.data import ClassificationDataset, Mixup, SampleSource, build_mixup, read_sample
from paddle_lk.engine.transforms import RAND_INCREASING_TRANSFORMS, RAND_TRANSFORMS, RandAugment, \
    build_transforms, to_chw_float


def _astronaut(step=8):
    return np.ascontiguousarray(skdata.astronaut()[::step, ::step])  # 512 / step square, RGB uint8


def _encode(arr, fmt, **kw):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, fmt, **kw)
    return buf.getvalue()


def _op(spec, path="ops"):
    return build_transforms([spec], path).transforms[0]


# ----------------------------------------------------------------------------- DecodeImage
def test_decode_image_bytes_pil_and_arrays(tmp_path):
    arr = _astronaut()
    png = _encode(arr, "PNG")
    for backend in ("cv2", "pil", "PIL"):
        np.testing.assert_array_equal(P.DecodeImage(backend=backend)(png), arr)  # PNG is lossless
        np.testing.assert_array_equal(P.DecodeImage(to_rgb=False, backend=backend)(png), arr[:, :, ::-1])
        np.testing.assert_array_equal(P.DecodeImage(channel_first=True, backend=backend)(png), arr.transpose(2, 0, 1))
    jpg = _encode(arr, "JPEG", quality=90)
    np.testing.assert_array_equal(P.DecodeImage()(jpg), cv2.imdecode(np.frombuffer(jpg, np.uint8), 1)[:, :, ::-1])
    np.testing.assert_array_equal(P.DecodeImage(backend="pil")(jpg), np.asarray(Image.open(io.BytesIO(jpg)).convert("RGB")))
    gray = _encode(arr[:, :, 0], "PNG")
    np.testing.assert_array_equal(P.DecodeImage()(gray), np.repeat(arr[:, :, :1], 3, axis=2))
    # cv2.imdecode applies the EXIF orientation (PaddleClas's default backend), PIL does not.
    tall = Image.fromarray(np.zeros((20, 40, 3), np.uint8))
    exif = tall.getexif()
    exif[0x0112] = 6  # rotate 90 degrees
    buf = io.BytesIO()
    tall.save(buf, "JPEG", exif=exif.tobytes())
    assert P.DecodeImage()(buf.getvalue()).shape == (40, 20, 3)
    assert P.DecodeImage(backend="pil")(buf.getvalue()).shape == (20, 40, 3)
    # An already-loaded PIL image is taken as decoded RGB; a numpy array as cv2's BGR (PaddleClas).
    np.testing.assert_array_equal(P.DecodeImage()(Image.fromarray(arr)), arr)
    np.testing.assert_array_equal(P.DecodeImage()(Image.fromarray(arr[:, :, 1])), np.repeat(arr[:, :, 1:2], 3, 2))
    np.testing.assert_array_equal(P.DecodeImage()(arr), arr[:, :, ::-1])
    assert isinstance(P.DecodeImage(to_np=False, backend="pil")(png), Image.Image)
    with pytest.raises(TypeError, match="backend=pil"):
        P.DecodeImage(backend="pil")(arr)
    for backend in ("cv2", "pil"):
        with pytest.raises(P.ImageDecodeError):
            P.DecodeImage(backend=backend)(b"not an image")
    with pytest.raises(ConfigError, match=r"ops\[0\]\.DecodeImage\.backend: expected 'cv2' or 'pil'"):
        _op({"DecodeImage": {"backend": "skimage"}})
    with pytest.raises(ConfigError, match=r"ops\[0\]\.DecodeImage\.to_rgb: expected true or false"):
        _op({"DecodeImage": {"to_rgb": "yes"}})


def test_decode_pipeline_reads_bytes_and_names_bad_files(tmp_path):
    arr = _astronaut(16)
    (tmp_path / "a.png").write_bytes(_encode(arr, "PNG"))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    (tmp_path / "list.txt").write_text("a.png 0\nbad.png 1\n")
    t = build_transforms([{"DecodeImage": {"to_rgb": False}}], "t")
    assert t.wants_bytes and not build_transforms(["ToCHW"], "t").wants_bytes
    # to_rgb False: the dataset handed DecodeImage the bytes, decoded by cv2 as BGR.
    np.testing.assert_array_equal(read_sample(str(tmp_path / "a.png"), 3, t), arr[:, :, ::-1])
    ds = ClassificationDataset(str(tmp_path), str(tmp_path / "list.txt"), build_transforms(["DecodeImage"], "t"))
    np.testing.assert_array_equal(ds[0][0], arr.transpose(2, 0, 1).astype(np.float32))
    with pytest.raises(DataError, match=r"bad\.png: cannot read image \(DecodeImage\(backend=cv2\)"):
        ds[1]


# ----------------------------------------------------------------------------- ResizeImage / CropImage
def test_resize_image_sizes_values_and_errors():
    arr = _astronaut()[:20, :50]  # h=20, w=50
    out = P.ResizeImage(resize_short=10)(arr)  # short side 20 -> 10: (w, h) = (25, 10)
    np.testing.assert_array_equal(out, cv2.resize(arr, (25, 10), interpolation=cv2.INTER_LINEAR))
    out = P.ResizeImage(resize_short=10, interpolation="bicubic", backend="pil")(arr)
    np.testing.assert_array_equal(out, np.asarray(Image.fromarray(arr).resize((25, 10), Image.BICUBIC)))
    # Python's round() (half to even): 5 * 2/4 = 2.5 -> 2 and 15 * 2/4 = 7.5 -> 8.
    assert P.ResizeImage(resize_short=2)(arr[:4, :5]).shape == (2, 2, 3)
    assert P.ResizeImage(resize_short=2)(arr[:4, :15]).shape == (2, 8, 3)
    # size is [width, height].
    out = P.ResizeImage(size=[12, 8], interpolation="area")(arr)
    np.testing.assert_array_equal(out, cv2.resize(arr, (12, 8), interpolation=cv2.INTER_AREA))
    assert P.ResizeImage(size=7, resize_short=0)(arr).shape == (7, 7, 3)
    assert isinstance(P.ResizeImage(size=7, backend="pil", return_numpy=False)(arr), Image.Image)
    # interpolation 'random': bilinear or bicubic, one random.choice per image.
    op = P.ResizeImage(size=[9, 6], interpolation="random")
    for seed in range(6):
        random.seed(seed)
        flag = random.Random(seed).choice((cv2.INTER_LINEAR, cv2.INTER_CUBIC))
        np.testing.assert_array_equal(op(arr), cv2.resize(arr, (9, 6), interpolation=flag))
    with pytest.raises(ConfigError, match=r"t\[1\]\.ResizeImage\.size: ResizeImage needs 'size' or a positive"):
        build_transforms(["DecodeImage", {"ResizeImage": {}}], "t")
    with pytest.raises(ConfigError, match=r"t\[0\]\.ResizeImage\.interpolation: expected one of .*'pil'"):
        build_transforms([{"ResizeImage": {"size": 4, "interpolation": "area", "backend": "pil"}}], "t")
    with pytest.raises(ConfigError, match=r"t\[0\]\.ResizeImage\.size: expected a positive int or a list of 2"):
        build_transforms([{"ResizeImage": {"size": [4, 4, 4]}}], "t")


def test_crop_image_center_window():
    arr = np.arange(7 * 9 * 3, dtype=np.uint8).reshape(7, 9, 3)
    np.testing.assert_array_equal(P.CropImage(4)(arr), arr[1:5, 2:6])  # (7-4)//2 = 1, (9-4)//2 = 2
    np.testing.assert_array_equal(P.CropImage([4, 2])(arr), arr[2:4, 2:6])  # [width 4, height 2]
    tall = arr.transpose(1, 0, 2)  # h=9, w=7
    np.testing.assert_array_equal(P.CropImage([7, 5])(tall), tall[2:7, 0:7])
    with pytest.raises(ValueError, match=r"crop \(h=8, w=8\) is larger than the image \(h=7, w=9\)"):
        P.CropImage(8)(arr)
    with pytest.raises(ConfigError, match=r"t\[0\]\.CropImage\.size: required"):
        build_transforms(["CropImage"], "t")


# ----------------------------------------------------------------------------- RandCropImage / RandFlipImage
def _rand_crop_reference(arr, seed, size, scale, ratio, log_aspect):
    rng = random.Random(seed)
    if log_aspect:
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
    else:
        aspect = rng.uniform(*ratio)
    img_h, img_w = arr.shape[:2]
    bound = min((img_w / img_h) / aspect, (img_h / img_w) * aspect)
    area = img_w * img_h * rng.uniform(min(scale[0], bound), min(scale[1], bound))
    w, h = int(math.sqrt(area * aspect)), int(math.sqrt(area / aspect))
    x, y = rng.randint(0, img_w - w), rng.randint(0, img_h - h)
    return arr[y:y + h, x:x + w], rng


@pytest.mark.parametrize("log_aspect", [False, True])
def test_rand_crop_image_matches_formula(log_aspect):
    arr = _astronaut()[:40, :60]
    op = P.RandCropImage(size=[16, 12], scale=[0.2, 0.9], ratio=[0.5, 2.0], interpolation="bicubic",
                         use_log_aspect=log_aspect)
    pil_op = P.RandCropImage(size=10, interpolation="random", backend="pil", use_log_aspect=log_aspect)
    for seed in range(8):
        random.seed(seed)
        out = op(arr)
        crop, _ = _rand_crop_reference(arr, seed, (16, 12), (0.2, 0.9), (0.5, 2.0), log_aspect)
        assert out.shape == (12, 16, 3)  # size [width 16, height 12]
        np.testing.assert_array_equal(out, cv2.resize(crop, (16, 12), interpolation=cv2.INTER_CUBIC))
        random.seed(seed)
        out = pil_op(arr)
        crop, rng = _rand_crop_reference(arr, seed, (10, 10), (0.08, 1.0), (3 / 4, 4 / 3), log_aspect)
        flag = rng.choice((Image.BILINEAR, Image.BICUBIC))  # 'random' is drawn after the crop
        np.testing.assert_array_equal(out, np.asarray(Image.fromarray(crop).resize((10, 10), flag)))
    path = "DataLoader.Train.dataset.transform_ops"
    with pytest.raises(ConfigError, match=r"transform_ops\[1\]\.RandCropImage\.size: expected a positive int"):
        build_transforms(["DecodeImage", {"RandCropImage": {"size": "224"}}], path)
    with pytest.raises(ConfigError, match=r"did you mean 'DataLoader\.Train\.dataset\.transform_ops\[1\]\."
                                          r"RandCropImage\.interpolation'"):
        build_transforms(["DecodeImage", {"RandCropImage": {"size": 8, "interpolaton": "bicubic"}}], path)
    with pytest.raises(ConfigError, match=r"RandCropImage\.scale: expected \[low, high\] with 0 < low <= high"):
        build_transforms([{"RandCropImage": {"size": 8, "scale": [1.0, 0.08]}}], path)


def test_rand_flip_image_codes():
    arr = _astronaut(32)
    for code in (1, 0, -1):
        op = P.RandFlipImage(code)
        flips = 0
        for seed in range(10):
            random.seed(seed)
            flip = random.Random(seed).randint(0, 1) == 1
            flips += flip
            np.testing.assert_array_equal(op(arr), cv2.flip(arr, code) if flip else arr)
            random.seed(seed)
            pil = op(Image.fromarray(arr))
            assert isinstance(pil, Image.Image)
            np.testing.assert_array_equal(np.asarray(pil), cv2.flip(arr, code) if flip else arr)
        assert 0 < flips < 10
    with pytest.raises(ConfigError, match=r"t\[0\]\.RandFlipImage\.flip_code: expected 1 \(horizontal\)"):
        build_transforms([{"RandFlipImage": {"flip_code": 2}}], "t")


# ----------------------------------------------------------------------------- NormalizeImage / ToCHWImage
def test_normalize_image_values_layouts_and_errors():
    arr = np.array([[[0, 128, 255], [1, 2, 3]], [[10, 20, 30], [254, 100, 50]]], np.uint8)  # 2 x 2 x 3
    out = _op({"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                                  "order": ""}})(arr)
    assert out.dtype == np.float32 and out.shape == (2, 2, 3)
    assert out[0, 0, 0] == -1.0  # (0 - 0.5) / 0.5, exact
    # The same float32 operations in the same order: bit-identical.
    expected = (arr.astype(np.float32) * np.float32(1.0 / 255.0) - np.float32(0.5)) / np.float32(0.5)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_allclose(out, (arr / 255.0 - 0.5) / 0.5, rtol=0, atol=1e-6)  # float32 rounding only
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    chw = P.NormalizeImage(scale=0.00392157)(arr.transpose(2, 0, 1))  # defaults: ImageNet, order chw
    np.testing.assert_allclose(chw, (arr.transpose(2, 0, 1) * 0.00392157 - mean[:, None, None]) / std[:, None, None],
                               rtol=0, atol=2e-6)
    four = P.NormalizeImage(order="hwc", channel_num=4)(arr)
    assert four.shape == (2, 2, 4) and not four[..., 3].any()
    np.testing.assert_array_equal(four[..., :3], P.NormalizeImage(order="hwc")(arr))
    assert P.NormalizeImage(output_fp16=True, order="")(arr).dtype == np.float16
    np.testing.assert_array_equal(P.NormalizeImage(order="")(Image.fromarray(arr)), P.NormalizeImage(order="")(arr))
    for spec, where in (({"scale": "__import__('os').getcwd()"}, "scale"), ({"scale": "1/0"}, "scale"),
                        ({"channel_num": 1}, "channel_num"), ({"mean": [0.5, 0.5]}, "mean"),
                        ({"std": [0.5, 0.0, 0.5]}, "std"), ({"order": "CHW"}, "order")):
        with pytest.raises(ConfigError, match=rf"Infer\.transforms\[0\]\.NormalizeImage\.{where}: "):
            build_transforms([{"NormalizeImage": spec}], "Infer.transforms")


def test_to_chw_image():
    arr = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    out = P.ToCHWImage()(arr)
    assert out.dtype == np.uint8 and out.shape == (3, 2, 3)
    np.testing.assert_array_equal(out[1], arr[:, :, 1])
    np.testing.assert_array_equal(P.ToCHWImage()(Image.fromarray(arr)), out)
    with pytest.raises(ValueError, match="HWC"):
        P.ToCHWImage()(arr[:, :, 0])


# ----------------------------------------------------------------------------- TimmAutoAugment / RandAugment
def test_rand_config_strings():
    cfg = P.parse_rand_config("rand-m9-mstd0.5-inc1")
    assert (cfg["magnitude"], cfg["num_layers"], cfg["magnitude_std"], cfg["weight_idx"]) == (9, 2, 0.5, None)
    assert cfg["ops"] == RAND_INCREASING_TRANSFORMS and len(RAND_INCREASING_TRANSFORMS) == 15
    cfg = P.parse_rand_config("rand-n3-m5")
    assert (cfg["num_layers"], cfg["magnitude"], cfg["magnitude_std"], cfg["ops"]) == (3, 5, 0.0, RAND_TRANSFORMS)
    assert P.parse_rand_config("rand-inc0")["ops"] == RAND_INCREASING_TRANSFORMS  # bool('0') is True in timm 0.4
    assert P.parse_rand_config("rand-mstd0.5-mstd2-x")["magnitude_std"] == 0.5  # first mstd; no-digit sections skipped
    cfg = P.parse_rand_config("rand-w0")
    assert cfg["magnitude"] == 10 and cfg["weight_idx"] == 0
    for bad, msg in (("auto-v0", "only timm RandAugment"), ("augmix-m3", "only timm"), ("rand-q3", "unknown section"),
                     ("rand-m9.5", "bad value"), ("rand-w1", "only weight set w0")):
        with pytest.raises(ConfigError, match=rf"t\[0\]\.TimmAutoAugment\.config_str: .*{msg}"):
            build_transforms([{"TimmAutoAugment": {"config_str": bad}}], "t")


def test_timm_autoaugment_arguments():
    op = P.TimmAutoAugment()
    assert isinstance(op.augment, RandAugment)  # one RandAugment implementation
    assert op.fill == (124, 116, 104)  # round(255 * ImageNet mean): 123.675, 116.28, 103.53
    assert op.augment.interpolation == "bicubic" and op.augment.prob == 0.5
    assert (op.augment.num_layers, op.augment.magnitude, op.augment.magnitude_std) == (2, 9, 0.5)
    assert P.TimmAutoAugment(mean=[0.5, 0.5, 0.5]).fill == (128, 128, 128)  # round(127.5) -> 128
    assert P.TimmAutoAugment(interpolation="random").augment.interpolation == "random"
    assert P.TimmAutoAugment(interpolation=None).augment.interpolation == "random"
    assert P.TimmAutoAugment(interpolation="nearest").augment.interpolation == "bilinear"  # timm's _pil_interp
    weighted = P.TimmAutoAugment(config_str="rand-inc1-w0").augment
    assert weighted.weights[RAND_TRANSFORMS.index("Rotate")] == pytest.approx(0.3 / 1.0)  # the weights sum to 1
    with pytest.raises(ConfigError, match=r"t\[1\]\.RandAugment: in a PaddleClas pipeline .* use TimmAutoAugment"):
        build_transforms(["DecodeImage", {"RandAugment": {"num_layers": 2, "magnitude": 5}}], "t")
    with pytest.raises(ConfigError, match=r"TimmAutoAugment\.interpolation: expected one of"):
        build_transforms([{"TimmAutoAugment": {"interpolation": "Bicubic"}}], "t")
    with pytest.raises(ConfigError, match=r"TimmAutoAugment\.mean: expected a list of 3 numbers"):
        build_transforms([{"TimmAutoAugment": {"mean": 0.5}}], "t")
    # prob 0: one random.random() draw, image unchanged, returned as an array.
    arr = _astronaut(32)
    random.seed(3)
    out = P.TimmAutoAugment(prob=0.0)(Image.fromarray(arr))
    assert isinstance(out, np.ndarray) and np.array_equal(out, arr)
    rng = random.Random(3)
    rng.random()
    assert random.random() == rng.random()


M = 9  # magnitude; levels are timm's formulas at m = 9
_FILL = (124, 116, 104)


def _affine(img, matrix):
    return img.transform(img.size, Image.AFFINE, matrix, resample=Image.BICUBIC, fillcolor=_FILL)


def _solarize_add(img, add):
    a = np.asarray(img).astype(np.int32)
    return Image.fromarray(np.where(a < 128, np.minimum(255, a + add), a).astype(np.uint8))


# name -> reference(img, sign) with sign +1/-1 for the signed ops.
_REFERENCES = {
    "AutoContrast": lambda img, s: ImageOps.autocontrast(img),
    "Equalize": lambda img, s: ImageOps.equalize(img),
    "Invert": lambda img, s: ImageOps.invert(img),
    "Rotate": lambda img, s: img.rotate(s * (M / 10) * 30.0, resample=Image.BICUBIC, fillcolor=_FILL),
    "Posterize": lambda img, s: ImageOps.posterize(img, 3),  # int(3.6)
    "PosterizeIncreasing": lambda img, s: ImageOps.posterize(img, 1),  # 4 - int(3.6)
    "Solarize": lambda img, s: ImageOps.solarize(img, 230),  # int(230.4)
    "SolarizeIncreasing": lambda img, s: ImageOps.solarize(img, 26),  # 256 - int(230.4)
    "SolarizeAdd": lambda img, s: _solarize_add(img, 99),  # int(99.0)
    "Color": lambda img, s: ImageEnhance.Color(img).enhance((M / 10) * 1.8 + 0.1),
    "ColorIncreasing": lambda img, s: ImageEnhance.Color(img).enhance(1.0 + s * ((M / 10) * 0.9)),
    "Contrast": lambda img, s: ImageEnhance.Contrast(img).enhance((M / 10) * 1.8 + 0.1),
    "ContrastIncreasing": lambda img, s: ImageEnhance.Contrast(img).enhance(1.0 + s * ((M / 10) * 0.9)),
    "Brightness": lambda img, s: ImageEnhance.Brightness(img).enhance((M / 10) * 1.8 + 0.1),
    "BrightnessIncreasing": lambda img, s: ImageEnhance.Brightness(img).enhance(1.0 + s * ((M / 10) * 0.9)),
    "Sharpness": lambda img, s: ImageEnhance.Sharpness(img).enhance((M / 10) * 1.8 + 0.1),
    "SharpnessIncreasing": lambda img, s: ImageEnhance.Sharpness(img).enhance(1.0 + s * ((M / 10) * 0.9)),
    "ShearX": lambda img, s: _affine(img, (1, s * (M / 10) * 0.3, 0, 0, 1, 0)),
    "ShearY": lambda img, s: _affine(img, (1, 0, 0, s * (M / 10) * 0.3, 1, 0)),
    "TranslateXRel": lambda img, s: _affine(img, (1, 0, s * (M / 10) * 0.45 * img.size[0], 0, 1, 0)),
    "TranslateYRel": lambda img, s: _affine(img, (1, 0, 0, 0, 1, s * (M / 10) * 0.45 * img.size[1])),
}
_SIGNED = {"Rotate", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing",
           "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}


@pytest.mark.parametrize("name", sorted(set(RAND_TRANSFORMS) | set(RAND_INCREASING_TRANSFORMS)))
def test_rand_augment_ops_match_pil_references(name):
    img = Image.fromarray(_astronaut(16))
    op = RandAugment(num_layers=1, magnitude=M, magnitude_std=0, prob=1.0, ops=[name], interpolation="bicubic",
                     fill=_FILL)
    for seed in (0, 1, 2, 3):
        random.seed(seed)
        sign = -1 if random.Random(seed).random() > 0.5 else 1  # timm's _randomly_negate
        expected = _REFERENCES[name](img, sign if name in _SIGNED else 1)
        np.testing.assert_array_equal(np.asarray(op(img)), np.asarray(expected))


def test_rand_augment_draw_order():
    """timm's protocol: ops by np.random.choice; per op random.random() > prob skips, random.gauss
    magnitude clipped to [0, 10], the sign draw, then random.choice of the resampling filter."""
    img = Image.fromarray(_astronaut(16))
    op = RandAugment(num_layers=3, magnitude=7, magnitude_std=2.0, prob=0.6, ops=["Rotate", "ShearX"],
                     interpolation="random", fill=(1, 2, 3))
    for seed in range(6):
        random.seed(seed)
        np.random.seed(seed)
        out = np.asarray(op(img))
        rng, nrng = random.Random(seed), np.random.RandomState(seed)
        ref = img
        for k in nrng.randint(0, 2, size=3):
            if rng.random() > 0.6:
                continue
            m = min(10.0, max(0.0, rng.gauss(7, 2.0)))
            sign = -1 if rng.random() > 0.5 else 1
            resample = rng.choice((Image.BILINEAR, Image.BICUBIC))
            if k == 0:
                ref = ref.rotate(sign * (m / 10) * 30.0, resample=resample, fillcolor=(1, 2, 3))
            else:
                ref = ref.transform(ref.size, Image.AFFINE, (1, sign * (m / 10) * 0.3, 0, 0, 1, 0),
                                    resample=resample, fillcolor=(1, 2, 3))
        np.testing.assert_array_equal(out, np.asarray(ref))


# ----------------------------------------------------------------------------- RandomErasing
@pytest.mark.parametrize("mode", ["const", "rand", "pixel"])
def test_random_erasing_matches_formula(mode):
    img = np.random.RandomState(9).uniform(-1, 1, (32, 40, 3)).astype(np.float32)
    op = _op({"RandomErasing": {"EPSILON": 1.0, "sl": 0.02, "sh": "1.0/3.0", "r1": 0.3, "attempt": 10,
                                "use_log_aspect": True, "mode": mode, "mean": [0.1, 0.2, 0.3]}})
    assert isinstance(op, P.RandomErasing)
    for seed in range(8):
        random.seed(seed)
        np.random.seed(seed)
        before = img.copy()
        out = op(img)
        np.testing.assert_array_equal(img, before)  # the input is not modified
        rng, nrng = random.Random(seed), np.random.RandomState(seed)
        assert rng.random() <= 1.0  # the EPSILON draw
        expected = img.copy()
        for _ in range(10):
            area = rng.uniform(0.02, 1.0 / 3.0) * 32 * 40
            aspect = math.exp(rng.uniform(math.log(0.3), math.log(1 / 0.3)))
            h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if w < 40 and h < 32:
                pixels = {"const": np.array([0.1, 0.2, 0.3]).reshape(1, 1, 3),
                          "rand": nrng.normal(size=(1, 1, 3)) if mode == "rand" else None,
                          "pixel": nrng.normal(size=(h, w, 3)) if mode == "pixel" else None}[mode]
                y, x = rng.randint(0, 32 - h), rng.randint(0, 40 - w)
                expected[y:y + h, x:x + w, :] = pixels
                break
        np.testing.assert_array_equal(out, expected)
        assert not np.array_equal(out, img)


def test_random_erasing_probability_channels_and_dispatch():
    img = np.zeros((16, 16, 1), np.float32)
    never = P.RandomErasing(EPSILON=0.0)
    assert never(img) is img
    one = P.RandomErasing(EPSILON=1.0, sl=0.2, sh=0.2, r1=1.0, mean=[5.0], attempt=1)
    out = one(img)  # area 0.2 * 256 = 51.2, aspect 1 -> a 7 x 7 square on channel 0
    assert out.shape == img.shape and (out == 5.0).sum() == 49
    # RandomErasing is both paddle.vision's and PaddleClas's: the arguments decide, else the pipeline.
    assert isinstance(_op({"RandomErasing": {"EPSILON": 0.25}}), P.RandomErasing)
    assert isinstance(_op({"RandomErasing": {"prob": 0.25, "value": 0}}), T.RandomErasing)
    assert isinstance(_op("RandomErasing"), T.RandomErasing)
    assert isinstance(build_transforms(["DecodeImage", "RandomErasing"], "t").transforms[1], P.RandomErasing)
    with pytest.raises(ConfigError, match=r"t\[0\]\.RandomErasing: mixes PaddleClas RandomErasing arguments"):
        build_transforms([{"RandomErasing": {"EPSILON": 0.25, "prob": 0.5}}], "t")
    with pytest.raises(ConfigError, match=r"did you mean 't\[1\]\.RandomErasing\.EPSILON'"):
        build_transforms(["DecodeImage", {"RandomErasing": {"EPSILN": 0.25}}], "t")
    with pytest.raises(ConfigError, match=r"t\[0\]\.RandomErasing\.mode: expected 'const', 'rand' or 'pixel'"):
        build_transforms([{"RandomErasing": {"mode": "noise"}}], "t")
    with pytest.raises(ConfigError, match=r"t\[0\]\.RandomErasing\.sh: expected 0 <= sl <= sh"):
        build_transforms([{"RandomErasing": {"sl": 0.5, "sh": "1.0/3.0"}}], "t")


# ----------------------------------------------------------------------------- batch operators
def test_batch_ops_map_onto_mixup():
    path = "DataLoader.Train.dataset.batch_transform_ops"
    m = build_mixup([{"OpSampler": {"MixupOperator": {"alpha": 0.8, "prob": 0.5},
                                    "CutmixOperator": {"alpha": 1.0, "prob": 0.5}}}], path)
    assert (m.mixup_alpha, m.cutmix_alpha, m.prob, m.switch_prob, m.partner) == (0.8, 1.0, 1.0, 0.5, "permutation")
    m = build_mixup([{"OpSampler": {"MixupOperator": {"alpha": 0.4, "prob": 0.2},
                                    "CutmixOperator": {"prob": 0.3}}}], path)
    assert (m.mixup_alpha, m.cutmix_alpha, m.prob, m.switch_prob) == (0.4, 0.2, 0.5, pytest.approx(0.6))
    m = build_mixup([{"OpSampler": {"MixupOperator": {"alpha": 0.4, "prob": 0.0},
                                    "CutmixOperator": {"prob": 0.3}}}], path)
    assert (m.mixup_alpha, m.cutmix_alpha, m.prob, m.switch_prob) == (0.0, 0.2, 0.3, 1.0)
    assert build_mixup([{"OpSampler": {"MixupOperator": {"prob": 0}}}], path) is None
    m = build_mixup(["MixupOperator"], path)
    assert (m.mixup_alpha, m.cutmix_alpha, m.prob, m.partner) == (1.0, 0.0, 1.0, "permutation")
    m = build_mixup([{"CutmixOperator": {"alpha": 0.5, "class_num": 10}}], path)
    assert (m.mixup_alpha, m.cutmix_alpha, m.prob) == (0.0, 0.5, 1.0)
    assert build_mixup([{"Mixup": {"mixup_alpha": 0.8}}], path).partner == "flip"
    where = r"DataLoader\.Train\.dataset\.batch_transform_ops\[0\]\."
    for spec, msg in (
            ({"OpSampler": {"MixupOperator": {"prob": 0.7}, "CutmixOperator": {"prob": 0.5}}},
             rf"{where}OpSampler: the ops' prob values add up to 1\.2 > 1"),
            ({"OpSampler": {"FmixOperator": {"prob": 0.5}}},
             rf"unknown config key '{where}OpSampler\.FmixOperator'; did you mean '{where}OpSampler\.(Cutmix|Mixup)Operator'"),
            ({"OpSampler": {"MixupOperator": {"alpha": 0.8}}}, rf"{where}OpSampler\.MixupOperator\.prob: required"),
            ({"OpSampler": {"CutmixOperator": {"alpha": 0, "prob": 0.5}}},
             rf"{where}OpSampler\.CutmixOperator\.alpha: must be a number > 0"),
            ({"MixupOperator": {"alpah": 0.8}}, rf"did you mean '{where}MixupOperator\.alpha'"),
            ({"MixupOperater": {}}, r"did you mean 'DataLoader\.Train\.dataset\.batch_transform_ops\[0\]\.MixupOperator'")):
        with pytest.raises(ConfigError, match=msg):
            build_mixup([spec], path)
    with pytest.raises(ConfigError, match="at most one batch op"):
        build_mixup(["MixupOperator", "CutmixOperator"], path)


def test_permutation_mixup_and_cutmix_math():
    """PaddleClas's formulas with a random permutation partner, written out with the draws replayed."""
    rs = np.random.RandomState(4)
    x = rs.uniform(-1, 1, (5, 2, 6, 8)).astype(np.float32)
    labels = np.array([0, 2, 1, 3, 2])
    onehot = np.eye(4, dtype=np.float32)[labels]
    for seed in range(5):
        xm, tm = Mixup(0.8, 0.0, partner="permutation")(paddle.to_tensor(x), paddle.to_tensor(onehot),
                                                        np.random.RandomState(seed))
        r = np.random.RandomState(seed)
        r.rand()  # prob draw
        idx = r.permutation(5)
        lam = r.beta(0.8, 0.8)
        np.testing.assert_allclose(xm.numpy(), lam * x + (1 - lam) * x[idx], rtol=0, atol=1e-6)
        np.testing.assert_allclose(tm.numpy(), lam * onehot + (1 - lam) * onehot[idx], rtol=0, atol=1e-6)

        xm, tm = Mixup(0.0, 1.0, partner="permutation")(paddle.to_tensor(x), paddle.to_tensor(onehot),
                                                        np.random.RandomState(seed))
        r = np.random.RandomState(seed)
        r.rand()
        idx = r.permutation(5)
        lam = r.beta(1.0, 1.0)
        cut_h, cut_w = int(6 * np.sqrt(1 - lam)), int(8 * np.sqrt(1 - lam))
        cy, cx = r.randint(6), r.randint(8)
        y0, y1 = np.clip(cy - cut_h // 2, 0, 6), np.clip(cy + cut_h // 2, 0, 6)
        x0, x1 = np.clip(cx - cut_w // 2, 0, 8), np.clip(cx + cut_w // 2, 0, 8)
        expected = x.copy()
        expected[:, :, y0:y1, x0:x1] = x[idx, :, y0:y1, x0:x1]
        np.testing.assert_array_equal(xm.numpy(), expected)  # copies, exact
        lam = 1 - (y1 - y0) * (x1 - x0) / (6 * 8)
        np.testing.assert_allclose(tm.numpy(), lam * onehot + (1 - lam) * onehot[idx], rtol=0, atol=1e-6)


def test_op_sampler_chooses_ops_with_their_probabilities():
    m = build_mixup([{"OpSampler": {"MixupOperator": {"alpha": 0.8, "prob": 0.3},
                                    "CutmixOperator": {"alpha": 1.0, "prob": 0.5}}}], "b")
    x = paddle.to_tensor(np.arange(1, 9, dtype=np.float32).reshape(8, 1, 1, 1) * np.ones((1, 1, 32, 32), np.float32))
    t = paddle.to_tensor(np.eye(8, dtype=np.float32))
    counts = {"none": 0, "mixup": 0, "cutmix": 0}
    n = 2000
    for seed in range(n):
        xm, tm = m(x, t, np.random.RandomState(seed))
        xm = xm.numpy()
        if np.array_equal(tm.numpy(), t.numpy()):
            counts["none"] += 1
        elif np.array_equal(xm, np.round(xm)):
            counts["cutmix"] += 1  # whole pixels copied from the partner
        else:
            counts["mixup"] += 1
    # Binomial: 5 standard deviations (< 0.056 for n = 2000); CutMix boxes of zero area (lam > 1 - 1/32^2)
    # count as 'none' (<0.1%).
    for key, p in (("none", 0.2), ("mixup", 0.3), ("cutmix", 0.5)):
        assert abs(counts[key] / n - p) < 5 * math.sqrt(p * (1 - p) / n), counts


# ----------------------------------------------------------------------------- a whole PaddleClas config
VAN_B0_DATA = """
Train:
  transform_ops:
    - DecodeImage:
        to_rgb: True
        channel_first: False
    - RandCropImage:
        size: 224
        interpolation: random
        backend: pil
    - RandFlipImage:
        flip_code: 1
    - TimmAutoAugment:
        config_str: rand-m9-mstd0.5-inc1
        interpolation: random
        img_size: 224
        mean: [0.5, 0.5, 0.5]
    - NormalizeImage:
        scale: 1.0/255.0
        mean: [0.5, 0.5, 0.5]
        std: [0.5, 0.5, 0.5]
        order: ''
    - RandomErasing:
        EPSILON: 0.25
        sl: 0.02
        sh: 1.0/3.0
        r1: 0.3
        attempt: 10
        use_log_aspect: True
        mode: pixel
  batch_transform_ops:
    - OpSampler:
        MixupOperator:
          alpha: 0.8
          prob: 0.5
        CutmixOperator:
          alpha: 1.0
          prob: 0.5
Eval:
  transform_ops:
    - DecodeImage:
        to_rgb: True
        channel_first: False
    - ResizeImage:
        resize_short: 248
        interpolation: bicubic
        backend: pil
    - CropImage:
        size: 224
    - NormalizeImage:
        scale: 1.0/255.0
        mean: [0.5, 0.5, 0.5]
        std: [0.5, 0.5, 0.5]
        order: ''
Infer:
  transforms:
    - DecodeImage:
        to_rgb: True
        channel_first: False
    - ResizeImage:
        resize_short: 248
        interpolation: bicubic
        backend: pil
    - CropImage:
        size: 224
    - NormalizeImage:
        scale: 1.0/255.0
        mean: [0.5, 0.5, 0.5]
        std: [0.5, 0.5, 0.5]
        order: ''
    - ToCHWImage:
"""


def test_van_b0_pipelines_from_paddleclas_config(tmp_path):
    """Train / Eval / Infer transforms and batch ops as in PaddleClas 2.6 ppcls/configs/ImageNet/VAN/VAN_B0.yaml."""
    cfg = yaml.safe_load(VAN_B0_DATA)
    jpg = _encode(skdata.astronaut(), "JPEG", quality=90)  # 512 x 512
    (tmp_path / "astronaut.jpg").write_bytes(jpg)
    (tmp_path / "list.txt").write_text("astronaut.jpg 0\nastronaut.jpg 1\n")
    train = SampleSource(ClassificationDataset(str(tmp_path), str(tmp_path / "list.txt"),
                                               build_transforms(cfg["Train"]["transform_ops"],
                                                                "DataLoader.Train.dataset.transform_ops")), seed=7)
    a, label = train[(1, 3)]
    assert a.dtype == np.float32 and a.shape == (3, 224, 224) and int(label) == 1 and np.isfinite(a).all()
    np.testing.assert_array_equal(a, train[(1, 3)][0])  # a function of (seed, epoch, index)
    assert not np.array_equal(a, train[(1, 4)][0]) and not np.array_equal(a, train[(0, 3)][0])

    evaluation = ClassificationDataset(str(tmp_path), str(tmp_path / "list.txt"),
                                       build_transforms(cfg["Eval"]["transform_ops"], "DataLoader.Eval.dataset.transform_ops"))
    e = evaluation[0][0]
    # Reference: cv2 decode -> RGB -> PIL bicubic resize of the short side to 248 -> centre 224 -> (x/255-0.5)/0.5.
    rgb = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    resized = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((248, 248), Image.BICUBIC))
    crop = resized[12:236, 12:236]
    ref = (crop.astype(np.float32) * np.float32(1 / 255.0) - np.float32(0.5)) / np.float32(0.5)
    np.testing.assert_array_equal(e, ref.transpose(2, 0, 1))
    infer = build_transforms(cfg["Infer"]["transforms"], "Infer.transforms")
    np.testing.assert_array_equal(to_chw_float(read_sample(str(tmp_path / "astronaut.jpg"), 3, infer), 3), e)

    mixup = build_mixup(cfg["Train"]["batch_transform_ops"], "DataLoader.Train.dataset.batch_transform_ops")
    x = paddle.to_tensor(np.stack([train[(0, 3)][0], a]))
    target = paddle.to_tensor(np.eye(2, dtype=np.float32))
    xm, tm = mixup(x, target, np.random.RandomState(11))
    assert xm.shape == [2, 3, 224, 224] and np.allclose(tm.numpy().sum(1), 1.0)


def test_train_and_infer_with_paddleclas_data_sections(tmp_path):
    """tools/train.py and tools/infer.py run VAN_B0.yaml's data sections (sizes scaled to 16 px)."""
    from paddle_lk.engine.cli import main

    rng = np.random.RandomState(0)
    lines = []
    (tmp_path / "img").mkdir()
    for i in range(8):
        (tmp_path / "img" / f"{i}.jpg").write_bytes(_encode((rng.rand(20, 24, 3) * 255).astype(np.uint8), "JPEG"))
        lines.append(f"img/{i}.jpg {i % 2}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    data = yaml.safe_load(VAN_B0_DATA.replace("size: 224", "size: 16").replace("img_size: 224", "img_size: 16")
                          .replace("resize_short: 248", "resize_short: 18"))
    dataset = {"name": "ImageNetDataset", "image_root": str(tmp_path), "cls_label_path": str(tmp_path / "list.txt")}
    cfg = {
        "Global": {"output_dir": str(tmp_path / "out"), "epochs": 1, "seed": 1, "image_shape": [3, 16, 16],
                   "use_tqdm": False, "use_visualdl": False, "device": "cpu"},
        "Arch": {"name": "RepLKNet31B", "class_num": 2, "channels": [8, 16], "layers": [1, 1],
                 "large_kernel_sizes": [7, 5], "small_kernel": 3},
        "Loss": {"Train": [{"CELoss": {"weight": 1.0, "epsilon": 0.1}}], "Eval": [{"CELoss": {"weight": 1.0}}]},
        "DataLoader": {
            "Train": {"dataset": dict(dataset, **data["Train"]),
                      "sampler": {"name": "DistributedBatchSampler", "batch_size": 4, "drop_last": True,
                                  "shuffle": True}},
            "Eval": {"dataset": dict(dataset, **data["Eval"]),
                     "sampler": {"name": "DistributedBatchSampler", "batch_size": 4, "drop_last": False,
                                 "shuffle": False}}},
        "Infer": {"transforms": data["Infer"]["transforms"], "PostProcess": {"name": "Topk", "topk": 1}},
    }
    path = tmp_path / "van_data.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main("train", ["-c", str(path)]) == 0
    assert main("infer", ["-c", str(path), "-w", str(tmp_path / "out"), "-i", str(tmp_path / "img" / "0.jpg")]) == 0
