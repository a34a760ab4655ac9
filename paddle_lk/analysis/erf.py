"""Effective receptive field (ERF), the way the RepLKNet paper (Ding et al., CVPR 2022) and its
official ``erf/`` scripts measure it: for each image (resized to ``size`` x ``size``,
ImageNet-normalised) take the central point of the last stage's output, ReLU it and sum over
channels, back-propagate to the input, ReLU the input gradient and sum it over RGB; average these
maps over the images, scale by ``log10(x + 1)`` and divide by the maximum. The *high-contribution
area ratio* at threshold ``t`` is the area (as a fraction of the image) of the smallest centred
square holding more than ``t`` of the total contribution: a larger ratio means a larger ERF.

The ``log10(x + 1)`` step is not scale-invariant: a model whose raw input gradients are large (e.g.
a randomly initialised ResNet-101, up to ~1e6) gets a flattened map and large ratios, one with small
gradients (~1e-2) an almost linear one. Trained models can be expected to sit in a closer range
than random ones, and every result also carries the scale-free ``linear_ratios`` (raw map divided
by its maximum) and ``raw_max``.

Models are any :mod:`paddle_lk` backbone (built in feature mode on its last stage) or a
``paddle.vision`` ResNet (``resnet101``, ``resnet152``, ...), with weights from ``weights`` when
given (``.pdparams``, or an official ``.pth`` for paddle_lk models) and random otherwise.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..checkpoint import load_checkpoint
from ..errors import closest
from ..io.atomic import atomic_path
from ..models import create_model
from ..registry import list_models
from ..reparam import reparameterize

__all__ = ["ERF_THRESHOLDS", "ERFResult", "SKIMAGE_PHOTOS", "sample_images", "load_images", "preprocess",
           "erf_model_names", "build_erf_model", "input_gradient_map", "compute_erf", "normalize_erf",
           "area_ratio", "area_ratios", "plot_erf", "write_erf_tables", "run_erf"]

ERF_THRESHOLDS: Tuple[float, ...] = (0.2, 0.3, 0.5, 0.99)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype="float32")
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype="float32")

# Real photographs bundled inside the scikit-image wheel (no download): colour first, then grey.
SKIMAGE_PHOTOS: Tuple[str, ...] = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg",
    "ihc.png", "retina.jpg", "motorcycle_right.png", "camera.png", "coins.png", "moon.png", "page.png",
    "grass.png", "gravel.png", "brick.png", "text.png", "cell.png")
_RESNET_DEPTHS = (18, 34, 50, 101, 152)
_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

Image = Tuple[str, np.ndarray]  # (name, HxWx3 uint8 RGB)


@dataclasses.dataclass
class ERFResult:
    """One model's ERF: the averaged raw gradient map and its normalised, thresholded summary."""

    name: str
    weights: str  # "random" or the weights file
    size: int
    num_images: int  # images that contributed (non-finite gradients are skipped, as in the paper's code)
    skipped: int
    raw: np.ndarray  # mean over images of the ReLU'd, RGB-summed input gradient, [size, size]
    thresholds: Tuple[float, ...] = ERF_THRESHOLDS

    @property
    def normalized(self) -> np.ndarray:
        """``log10(raw + 1)`` scaled to a maximum of 1 (the paper's heatmap)."""
        return normalize_erf(self.raw)

    @property
    def ratios(self) -> Dict[float, float]:
        """High-contribution area ratio per threshold (paper: on the log-scaled map)."""
        return {t: r for t, (_, r) in area_ratios(self.normalized, self.thresholds).items()}

    @property
    def linear_ratios(self) -> Dict[float, float]:
        """The same ratios on the raw map divided by its maximum (independent of the gradient scale)."""
        return {t: r for t, (_, r) in area_ratios(normalize_erf(self.raw, "linear"), self.thresholds).items()}

    @property
    def raw_max(self) -> float:
        """Largest averaged input gradient (shows how much the log scaling compresses the map)."""
        return float(self.raw.max())

    @property
    def side_lengths(self) -> Dict[float, int]:
        """Side (pixels) of the centred square reaching each threshold."""
        return {t: s for t, (s, _) in area_ratios(self.normalized, self.thresholds).items()}

    def summary(self) -> dict:
        """JSON-ready description (no arrays)."""
        return {"model": self.name, "weights": self.weights, "size": self.size, "num_images": self.num_images,
                "skipped_non_finite": self.skipped,
                "area_ratio": {f"{t:g}": r for t, r in self.ratios.items()},
                "side_length": {f"{t:g}": s for t, s in self.side_lengths.items()},
                "area_ratio_linear": {f"{t:g}": r for t, r in self.linear_ratios.items()},
                "raw_max": self.raw_max}


# ----------------------------------------------------------------------------------------- images
def _to_rgb(img: np.ndarray) -> np.ndarray:
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"expected an HxW, HxWx3 or HxWx4 image, got shape {img.shape}")
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = np.asarray(img, dtype="float64")
        img = (img / max(float(img.max()), 1e-12) * 255.0) if img.max() > 1.0 else img * 255.0
        img = np.clip(img, 0, 255).astype("uint8")
    return img


def _read(path: str) -> np.ndarray:
    from PIL import Image as PILImage

    try:
        with PILImage.open(path) as im:
            return _to_rgb(np.asarray(im.convert("RGB")))
    except OSError as e:
        raise ValueError(f"cannot read image '{path}': {e}") from e


def sample_images(num_images: Optional[int] = None) -> List[Image]:
    """Photos that ship inside scikit-image (read from its data folder: never downloads)."""
    from skimage import data as skdata

    found = [(n, os.path.join(skdata.data_dir, n)) for n in SKIMAGE_PHOTOS
             if os.path.isfile(os.path.join(skdata.data_dir, n))]
    if not found:
        raise FileNotFoundError(f"no bundled scikit-image photos found in {skdata.data_dir}")
    if num_images is not None:
        found = found[:num_images]
    return [(os.path.splitext(n)[0], _read(p)) for n, p in found]


def load_images(directory: str, num_images: Optional[int] = None) -> List[Image]:
    """Images of ``directory`` (sorted by name; jpg/png/bmp/tif/webp), grey/RGBA converted to RGB."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"image folder '{directory}' not found")
    names = sorted(n for n in os.listdir(directory) if n.lower().endswith(_IMAGE_EXTS))
    if not names:
        raise FileNotFoundError(f"no images ({', '.join(_IMAGE_EXTS)}) in '{directory}'")
    if num_images is not None:
        names = names[:num_images]
    return [(os.path.splitext(n)[0], _read(os.path.join(directory, n))) for n in names]


def preprocess(img: np.ndarray, size: int) -> np.ndarray:
    """Bicubic resize to ``size`` x ``size`` (aspect not kept, as in the paper), ImageNet normalisation;
    returns a float32 ``[1, 3, size, size]`` array."""
    from PIL import Image as PILImage

    if size < 8:
        raise ValueError(f"size={size}: need at least 8 pixels")
    im = PILImage.fromarray(_to_rgb(img)).resize((size, size), PILImage.BICUBIC)
    arr = (np.asarray(im, dtype="float32") / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return arr.transpose(2, 0, 1)[None].astype("float32")


# ----------------------------------------------------------------------------------------- models
def erf_model_names() -> List[str]:
    """Names accepted by :func:`build_erf_model`: every paddle_lk model and the paddle.vision ResNets."""
    return list_models() + [f"resnet{d}" for d in _RESNET_DEPTHS]


class _LastFeature(nn.Layer):
    """Wraps a feature-mode backbone so that forward returns the last feature map only."""

    def __init__(self, backbone: nn.Layer) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = self.backbone(x)
        return out[-1] if isinstance(out, (list, tuple)) else out


def _resnet_depth(name: str) -> Optional[int]:
    lower = name.lower()
    return int(lower[6:]) if lower.startswith("resnet") and lower[6:].isdigit() else None


def _check_model_name(name: str) -> None:
    """KeyError with close matches unless ``name`` is a paddle_lk model or a paddle.vision ResNet."""
    depth = _resnet_depth(name)
    if depth is not None:
        if depth not in _RESNET_DEPTHS:
            raise KeyError(f"unknown model '{name}': paddle.vision ResNets are "
                           f"{', '.join(f'resnet{d}' for d in _RESNET_DEPTHS)}")
        return
    if name not in list_models():
        close = closest(name, erf_model_names())
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown model '{name}'{hint} (paddle_lk models or resnet18..152)")


def build_erf_model(name: str, weights: Optional[str] = None) -> Tuple[nn.Layer, str]:
    """An eval-mode model whose forward returns the last stage's feature map, and a weights label.

    ``name`` is a paddle_lk model (``paddle_lk.list_models()``, built with ``out_indices`` on the last
    stage and re-parameterized: same function, faster) or ``resnet18/34/50/101/152`` from
    ``paddle.vision`` (without pooling and classifier). ``weights`` is a file (paddle_lk models accept
    ``.pdparams`` and official ``.pth``; ResNets ``.pdparams``); ``None`` keeps the random init.
    """
    _check_model_name(name)
    if weights is not None and not os.path.isfile(weights):
        raise FileNotFoundError(f"weights file '{weights}' not found")
    label = os.path.basename(weights) if weights else "random"
    depth = _resnet_depth(name)
    if depth is not None:
        model = getattr(paddle.vision.models, f"resnet{depth}")(pretrained=False, num_classes=0, with_pool=False)
        if weights:  # the feature-only ResNet has no fc: the checkpoint's classifier is skipped
            load_checkpoint(model, weights)
        model.eval()
        return model, label
    # Every paddle_lk family has four stages; feature mode skips the classifier (and its checkpoint keys).
    model = create_model(name, pretrained=weights, out_indices=(3,))
    model.eval()
    model = reparameterize(model)
    return _LastFeature(model), label


# ------------------------------------------------------------------------------------ computation
def input_gradient_map(model: nn.Layer, x: np.ndarray) -> np.ndarray:
    """The paper's per-image contribution map: ReLU(d sum_c ReLU(f_c(centre)) / d input), summed over
    batch and RGB. ``model(x)`` must return an NCHW feature map (or a list whose last entry is one)."""
    inp = paddle.to_tensor(x, dtype="float32")
    inp.stop_gradient = False
    out = model(inp)
    if isinstance(out, (list, tuple)):
        out = out[-1]
    if out.ndim != 4:
        raise ValueError(f"ERF needs a model that returns an NCHW feature map, got shape {list(out.shape)} "
                         f"(build paddle_lk models with out_indices=..., ResNets with num_classes=0, "
                         f"with_pool=False)")
    h, w = out.shape[2], out.shape[3]
    central = F.relu(out[:, :, h // 2, w // 2]).sum()
    (grad,) = paddle.grad([central], [inp])
    return F.relu(grad).sum(axis=[0, 1]).numpy().astype("float64")


def compute_erf(model: nn.Layer, images: Sequence[Image], size: int, name: str = "model",
                weights: str = "random") -> ERFResult:
    """Average :func:`input_gradient_map` over ``images`` at ``size`` x ``size`` (model in eval mode).

    Parameters are frozen during the computation (only the input gradient is needed) and restored.
    Images whose gradient is not finite are skipped, as the paper's script does.
    """
    if not images:
        raise ValueError("compute_erf: no images")
    was_training = model.training
    model.eval()
    params = [p for p in model.parameters() if not p.stop_gradient]
    for p in params:
        p.stop_gradient = True
    total, count, skipped = np.zeros((size, size), dtype="float64"), 0, 0
    try:
        for _, img in images:
            grad_map = input_gradient_map(model, preprocess(img, size))
            if not np.isfinite(grad_map).all():
                skipped += 1
                continue
            total += grad_map
            count += 1
    finally:
        for p in params:
            p.stop_gradient = False
        if was_training:
            model.train()
    if count == 0:
        raise RuntimeError(f"{name}: every image gave a non-finite input gradient")
    return ERFResult(name=name, weights=weights, size=size, num_images=count, skipped=skipped,
                     raw=total / count)


def normalize_erf(raw: np.ndarray, scale: str = "log") -> np.ndarray:
    """``log10(raw + 1)`` (``scale="log"``, the paper) or ``raw`` (``"linear"``) divided by its maximum
    (all zeros stays all zeros)."""
    if scale not in ("log", "linear"):
        raise ValueError(f"scale={scale!r}: expected 'log' or 'linear'")
    data = np.asarray(raw, dtype="float64")
    data = np.log10(data + 1.0) if scale == "log" else data
    peak = float(data.max())
    return data / peak if peak > 0 else data


def area_ratio(data: np.ndarray, threshold: float) -> Tuple[int, float]:
    """(side, area ratio) of the smallest centred square whose sum exceeds ``threshold`` of the total.

    As the paper's ``get_rectangle`` (centre ``h // 2``), but starting from the single centre pixel and
    growing up to the whole image, so every threshold below 1 has an answer.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold {threshold} must be in (0, 1)")
    data = np.asarray(data, dtype="float64")
    h, w = data.shape
    total = float(data.sum())
    if total <= 0:
        raise ValueError("area_ratio: the contribution map is all zeros")
    cy, cx = h // 2, w // 2
    for i in range(0, max(h, w)):
        y0, y1, x0, x1 = max(cy - i, 0), min(cy + i + 1, h), max(cx - i, 0), min(cx + i + 1, w)
        if float(data[y0:y1, x0:x1].sum()) / total > threshold:
            return 2 * i + 1, min((y1 - y0) * (x1 - x0) / (h * w), 1.0)
    return max(h, w), 1.0


def area_ratios(data: np.ndarray, thresholds: Sequence[float] = ERF_THRESHOLDS) -> Dict[float, Tuple[int, float]]:
    """:func:`area_ratio` for each threshold."""
    return {float(t): area_ratio(data, t) for t in thresholds}


# ------------------------------------------------------------------------------------------ output
def plot_erf(results: Sequence[ERFResult], path: str, title: Optional[str] = None) -> str:
    """Side-by-side heatmaps (one per model, weights and area ratios under each) saved as PNG at ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not results:
        raise ValueError("plot_erf: no results")
    n = len(results)
    fig = Figure(figsize=(4.0 * n + 1.0, 5.9), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    image = None
    for ax, res in zip(axes, results):
        image = ax.imshow(res.normalized, cmap="RdYlGn", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        weights = "random weights" if res.weights == "random" else f"weights: {res.weights}"
        ax.set_title(f"{res.name}\n({weights})", fontsize=11)
        ratios = "  ".join(f"{t:g}: {r:.3f}" for t, r in res.ratios.items())
        linear = "  ".join(f"{t:g}: {r:.3f}" for t, r in res.linear_ratios.items())
        ax.set_xlabel(f"area ratio (paper, log scale) at t =\n{ratios}\n"
                      f"linear scale: {linear}\nmax raw gradient {res.raw_max:.3g}", fontsize=9)
    fig.colorbar(image, ax=list(axes), fraction=0.03, pad=0.02, label="log10(x+1), max-normalised")
    res0 = results[0]
    fig.suptitle(title or f"Effective receptive field: input {res0.size}x{res0.size}, "
                          f"{res0.num_images} image(s)", fontsize=12)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    with atomic_path(path, suffix=".png") as tmp, open(tmp, "wb") as f:
        f.write(buf.getvalue())
    return path


def write_erf_tables(results: Sequence[ERFResult], json_path: str, csv_path: str,
                     images: Optional[Sequence[str]] = None) -> None:
    """Area ratios of every model as JSON (with side lengths and image names) and as a wide CSV."""
    payload = {"method": "RepLKNet paper ERF: log10(x+1)-scaled, max-normalised mean input gradient "
                         "(area_ratio); area_ratio_linear uses the raw map / max",
               "thresholds": list(results[0].thresholds) if results else list(ERF_THRESHOLDS),
               "images": list(images or []), "models": [r.summary() for r in results]}
    with atomic_path(json_path, suffix=".json") as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
    with atomic_path(csv_path, suffix=".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        thresholds = payload["thresholds"]
        writer.writerow(["model", "weights", "size", "num_images"] + [f"ratio@{t:g}" for t in thresholds]
                        + [f"linear_ratio@{t:g}" for t in thresholds] + ["raw_max"])
        for r in results:
            ratios, linear = r.ratios, r.linear_ratios
            writer.writerow([r.name, r.weights, r.size, r.num_images] + [f"{ratios[t]:.6f}" for t in thresholds]
                            + [f"{linear[t]:.6f}" for t in thresholds] + [f"{r.raw_max:.6g}"])


def run_erf(models: Sequence[str], output: str, weights: Optional[Sequence[Optional[str]]] = None,
            size: int = 1024, num_images: int = 10, images_dir: Optional[str] = None,
            seed: int = 0, log=print) -> List[ERFResult]:
    """Everything ``tools/erf.py`` does: build each model, compute its ERF on the same images, write
    ``erf.png``, ``erf_ratios.json``, ``erf_ratios.csv`` and ``erf_<model>.npy`` (raw map) to ``output``.

    ``weights`` is None or one entry per model (None/"random" for random init). ``seed`` fixes random
    weights.
    """
    if not models:
        raise ValueError("no models given")
    if weights is None:
        weights = [None] * len(models)
    if len(weights) != len(models):
        raise ValueError(f"{len(weights)} weights for {len(models)} models: give one per model "
                         f"('random' for none)")
    weights = [None if (w is None or str(w).lower() in ("random", "none", "-")) else w for w in weights]
    if num_images < 1:
        raise ValueError(f"num_images={num_images}: need at least 1")
    # Fail on a bad name or path before spending minutes on the models that come first.
    for name, w in zip(models, weights):
        _check_model_name(name)
        if w is not None and not os.path.isfile(w):
            raise FileNotFoundError(f"weights file '{w}' not found")
    images = load_images(images_dir, num_images) if images_dir else sample_images(num_images)
    log(f"ERF at {size}x{size} on {len(images)} image(s): {', '.join(n for n, _ in images)}")
    results = []
    for name, w in zip(models, weights):
        paddle.seed(seed)
        model, label = build_erf_model(name, w)
        res = compute_erf(model, images, size, name=name, weights=label)
        del model
        results.append(res)
        log(f"{name:>14s} ({label}): " + "  ".join(f"t={t:g} {r:.4f}" for t, r in res.ratios.items())
            + "  | linear " + "  ".join(f"{r:.4f}" for r in res.linear_ratios.values())
            + f"  | max grad {res.raw_max:.3g}" + (f"  [{res.skipped} non-finite skipped]" if res.skipped else ""))
    os.makedirs(output, exist_ok=True)
    for res in results:
        with atomic_path(os.path.join(output, f"erf_{res.name}.npy"), suffix=".npy") as tmp:
            np.save(tmp, res.raw)
    plot_erf(results, os.path.join(output, "erf.png"))
    write_erf_tables(results, os.path.join(output, "erf_ratios.json"), os.path.join(output, "erf_ratios.csv"),
                     images=[n for n, _ in images])
    return results

