"""PaddleDetection inference helpers: one image through the ``TestReader`` into model inputs, results as
COCO-style records, and drawing with PaddleDetection's own visualizer (made Pillow-10-safe by
:mod:`.compat`)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import paddle

__all__ = ["test_transforms", "prepare_inputs", "detections", "draw"]


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
    bbox = out["bbox"].numpy()
    keep = bbox[:, 1] >= threshold if bbox.size else np.zeros([0], bool)
    boxes = [{"image_id": 0, "category_id": int(b[0]), "score": float(b[1]),
              "bbox": [float(b[2]), float(b[3]), float(b[4] - b[2]), float(b[5] - b[3])]} for b in bbox[keep]]
    masks = None
    if "mask" in out and bbox.size:
        from pycocotools import mask as mask_util

        masks = []
        for b, m in zip(bbox[keep], out["mask"].numpy()[keep]):
            rle = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("utf8")
            masks.append({"image_id": 0, "category_id": int(b[0]), "score": float(b[1]), "segmentation": rle})
    return boxes, masks


def draw(image: Any, boxes: List[Dict[str, Any]], masks: Optional[List[Dict[str, Any]]], names: Dict[int, str],
         threshold: float) -> Any:
    """Boxes and masks drawn on a PIL image by PaddleDetection's visualizer."""
    from ppdet.utils.visualizer import visualize_results

    return visualize_results(image, boxes, masks, None, None, 0, names, threshold)
