"""Top-k prediction for images, image lists and folders."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import paddle
import paddle.nn.functional as F

from ..checkpoint import load_checkpoint
from .builder import build_model
from .config import ConfigError
from .data import class_names_for, image_paths, read_sample
from .runtime import check_interrupt
from .transforms import build_transforms, to_chw_float

__all__ = ["predict"]


def predict(cfg: Dict[str, Any], weights: Optional[str], source: Union[None, str, Sequence[str]] = None,
            topk: Optional[int] = None, use_ema: bool = False) -> List[Dict[str, Any]]:
    """Classify ``source`` (images, folders or image-list files; default ``Infer.infer_imgs``) with
    ``Arch`` + ``weights``.

    Preprocessing is ``Infer.transforms`` or else the Eval dataset's ``transform_ops``. Returns one
    ``{"file", "class_ids", "scores", "label_names"}`` dict per image, best first.
    """
    infer = cfg["Infer"]
    source = source or infer.get("infer_imgs")
    if not source:
        raise ConfigError("Infer.infer_imgs: no input given (pass an image, list file or folder)")
    k = topk or infer["PostProcess"]["topk"]
    ops = infer.get("transforms")
    path = "Infer.transforms"
    if ops is None:
        if cfg["DataLoader"].get("Eval") is None:
            raise ConfigError("Infer.transforms: required when there is no DataLoader.Eval to copy them from")
        ops, path = cfg["DataLoader"]["Eval"]["dataset"]["transform_ops"], "DataLoader.Eval.dataset.transform_ops"
    transform = build_transforms(ops, path)
    names = class_names_for(cfg)
    files = [f for src in ([source] if isinstance(source, str) else source) for f in image_paths(src)]
    model = build_model(cfg, load_pretrained=not weights)
    if weights:
        load_checkpoint(model, weights, use_ema=use_ema)
    model.eval()
    channels = cfg["Global"]["image_shape"][0]
    results: List[Dict[str, Any]] = []
    bs = infer["batch_size"]
    with paddle.no_grad():
        for start in range(0, len(files), bs):
            check_interrupt()
            chunk = files[start:start + bs]
            batch = np.stack([to_chw_float(read_sample(f, channels, transform), channels) for f in chunk])
            probs = F.softmax(model(paddle.to_tensor(batch)), axis=-1).numpy()
            kk = min(k, probs.shape[-1])
            for f, p in zip(chunk, probs):
                ids = np.argsort(-p)[:kk].tolist()
                results.append({"file": f, "class_ids": ids, "scores": [round(float(p[i]), 6) for i in ids],
                                "label_names": [names.get(i, str(i)) for i in ids] if names else []})
    return results
