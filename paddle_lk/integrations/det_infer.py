"""PaddleDetection inference helpers: one image through the ``TestReader`` into model inputs, results as
COCO-style records, and drawing with PaddleDetection's own visualizer (made Pillow-10-safe by
:mod:`.compat`). The ``deploy_*`` helpers do the same from an export's ``infer_cfg.yml`` (its
``Preprocess`` list is the ``TestReader``'s sample transforms without ``Decode``, plus ``PadStride``)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle

from ..errors import ConfigError, DataError

__all__ = ["test_transforms", "prepare_inputs", "detections", "detection_records", "draw", "deploy_transforms",
           "deploy_inputs"]


def test_transforms(cfg: Any) -> Any:
    """The ``TestReader``'s sample transforms."""
    from ppdet.data.reader import Compose

    return Compose(cfg["TestReader"]["sample_transforms"], num_classes=cfg.get("num_classes", 80))


def prepare_inputs(cfg: Any, image_path: str, transforms: Any) -> Dict[str, paddle.Tensor]:
    """One image through the ``TestReader``'s sample transforms into model inputs (a batch of 1):
    ``image`` ``[1, 3, H, W]`` padded to the reader's ``PadBatch`` stride, ``im_shape`` and
    ``scale_factor`` ``[1, 2]``."""
    sample = {"im_file": image_path, "im_id": np.array([0])}
    with open(image_path, "rb") as f:
        sample["image"] = f.read()
    sample = transforms(sample)
    image = sample["image"]
    stride = 1
    for op in cfg["TestReader"].get("batch_transforms", []) or []:
        if "PadBatch" in op:
            stride = int((op["PadBatch"] or {}).get("pad_to_stride", 1))
    if stride > 1:
        c, h, w = image.shape
        ph, pw = int(np.ceil(h / stride) * stride), int(np.ceil(w / stride) * stride)
        padded = np.zeros((c, ph, pw), dtype=np.float32)
        padded[:, :h, :w] = image
        image = padded
    return {"image": paddle.to_tensor(image[None].astype("float32")),
            "im_shape": paddle.to_tensor(np.asarray(sample["im_shape"], "float32")[None]),
            "scale_factor": paddle.to_tensor(np.asarray(sample["scale_factor"], "float32")[None])}


def detections(out: Dict[str, Any], threshold: float) -> Tuple[List[Dict[str, Any]], Optional[List[Dict[str, Any]]]]:
    """(COCO-style box records, mask records or None) of one image's model output, score >= threshold."""
    return detection_records(out["bbox"].numpy(), out["mask"].numpy() if "mask" in out else None, threshold)


def detection_records(bbox: np.ndarray, mask: Optional[np.ndarray], threshold: float
                      ) -> Tuple[List[Dict[str, Any]], Optional[List[Dict[str, Any]]]]:
    """:func:`detections` on arrays: ``bbox`` ``[M, 6]`` (class, score, x1, y1, x2, y2 in original-image
    pixels), ``mask`` ``[M, H0, W0]`` or None. Box records carry ``bbox`` = [x, y, w, h] (pixels); mask
    records a COCO RLE ``segmentation``."""
    keep = bbox[:, 1] >= threshold if bbox.size else np.zeros([0], bool)
    boxes = [{"image_id": 0, "category_id": int(b[0]), "score": float(b[1]),
              "bbox": [float(b[2]), float(b[3]), float(b[4] - b[2]), float(b[5] - b[3])]} for b in bbox[keep]]
    masks = None
    if mask is not None and bbox.size:
        from pycocotools import mask as mask_util

        masks = []
        for b, m in zip(bbox[keep], mask[keep]):
            rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("utf8")
            masks.append({"image_id": 0, "category_id": int(b[0]), "score": float(b[1]), "segmentation": rle})
    return boxes, masks


def draw(image: Any, boxes: List[Dict[str, Any]], masks: Optional[List[Dict[str, Any]]], names: Dict[int, str],
         threshold: float) -> Any:
    """Boxes and masks drawn on a PIL image by PaddleDetection's visualizer."""
    from ppdet.utils.visualizer import visualize_results

    return visualize_results(image, boxes, masks, None, None, 0, names, threshold)


def deploy_transforms(preprocess: Sequence[Dict[str, Any]], where: str = "infer_cfg.yml: Preprocess"
                      ) -> Tuple[Any, int]:
    """PaddleDetection's own sample transforms (``ppdet.data.transform`` operators by name, e.g.
    ``Resize``, ``NormalizeImage``, ``Permute``) from an ``infer_cfg.yml`` ``Preprocess`` list of
    ``{type: Name, **args}``, and the ``PadStride`` stride (1: no padding), as PaddleDetection's
    ``deploy/python/preprocess.py`` reads the list.

    Raises:
        ConfigError: an entry without ``type``, or a name PaddleDetection does not have (``where`` names
            the list).
    """
    from ppdet.data import transform
    from ppdet.data.reader import Compose

    ops: List[Dict[str, Any]] = []
    stride = 1
    for i, op in enumerate(preprocess or []):
        args = dict(op or {})
        name = args.pop("type", None)
        if name == "PadStride":  # a batch transform upstream (PadBatch); deploy pads each image itself
            stride = max(int(args.get("stride", 0) or 0), 1)
        elif not isinstance(name, str) or not hasattr(transform, name):
            raise ConfigError(f"{where}.{i}.type: '{name}' is not a PaddleDetection transform")
        else:
            ops.append({name: args})
    return Compose(ops), stride


def deploy_inputs(image: Any, transforms: Any, stride: int) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """One image through :func:`deploy_transforms`' result into a program's feeds (a batch of 1).

    Args:
        image: a file path (decoded by PaddleDetection's ``Decode``: RGB) or an RGB ``[H, W, 3]`` uint8 array.

    Returns:
        (the decoded RGB ``[H0, W0, 3]`` uint8 image, ``{"image": [1, 3, H, W] float32`` padded to
        ``stride``, ``"im_shape"``: ``[1, 2]`` (resized h, w), ``"scale_factor"``: ``[1, 2]`` (y, x)}).

    Raises:
        DataError: a file that does not decode to an image (FileNotFoundError: no such file).
    """
    from ppdet.data.transform.operators import Decode

    if isinstance(image, np.ndarray):
        h, w = image.shape[:2]  # what Decode records for a file
        sample = {"image": image, "h": h, "w": w, "im_shape": np.array([h, w], np.float32),
                  "scale_factor": np.array([1.0, 1.0], np.float32)}
    else:
        with open(image, "rb") as f:
            sample = {"im_file": image, "image": f.read()}
        # Decode swallows cv2's error and keeps the undecodable bytes, then fails on their ``.shape``.
        try:
            decoded = Decode()(sample)["image"]
        except AttributeError:
            decoded = None
        if not isinstance(decoded, np.ndarray) or decoded.ndim != 3:
            raise DataError(f"{image}: cannot read image (not an image file OpenCV decodes)")
    original = sample["image"]
    sample = transforms(sample)
    chw = np.asarray(sample["image"], np.float32)
    if stride > 1:
        c, h, w = chw.shape
        padded = np.zeros((c, int(np.ceil(h / stride) * stride), int(np.ceil(w / stride) * stride)), np.float32)
        padded[:, :h, :w] = chw
        chw = padded
    return original, {"image": chw[None], "im_shape": np.asarray(sample["im_shape"], np.float32)[None],
                      "scale_factor": np.asarray(sample["scale_factor"], np.float32)[None]}
