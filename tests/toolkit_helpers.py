"""Shared helpers of the PaddleSeg / PaddleDetection tests: tiny datasets in the toolkits' own layouts,
value overrides that shrink a shipped config (widths, sizes, schedule -- never its transforms or
losses), running ``tools/*.py`` and reading their JSON, and a default Paddle Inference predictor."""
from __future__ import annotations

import glob
import json
import os
import pathlib
import subprocess
import sys
from typing import Any, Dict, List, Sequence, Tuple

import cv2
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
PY = sys.executable
SEG_CONFIGS = sorted(glob.glob(str(ROOT / "configs" / "seg" / "*.yml")))
DET_CONFIGS = sorted(glob.glob(str(ROOT / "configs" / "det" / "*.yml")))

# Tiny backbones: the same architecture family, a few channels, one block per stage.
TINY_BACKBONE = {
    "RepLKNet": {"channels": [8, 16, 16, 16], "layers": [1, 1, 1, 1], "large_kernel_sizes": [7, 7, 7, 5]},
    "VAN": {"embed_dims": [8, 16, 16, 16], "depths": [1, 1, 1, 1]},
    # every UniRepLKNet block kind: 3x3 conv, 13x13 and 7x7 Dilated Reparam Blocks, 5x5
    "UniRepLKNet": {"depths": [1, 1, 1, 1], "dims": [8, 16, 16, 16], "kernel_sizes": [[3], [13], [7], [5]]},
}


def tiny_for(arch: str) -> Dict[str, Any]:
    """The tiny constructor arguments of ``arch``'s family (``RepLKNet31B`` -> RepLKNet's)."""
    family = next(f for f in ("UniRepLKNet", "RepLKNet", "VAN") if arch.startswith(f))
    return TINY_BACKBONE[family]


def run_tool(tool: str, args: Sequence[Any], timeout: int = 600, json_out: bool = True,
             cwd: Any = None) -> subprocess.CompletedProcess:
    """``python tools/<tool>.py args [--json]`` as a user runs it."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    argv = [PY, str(ROOT / "tools" / f"{tool}.py")] + [str(a) for a in args] + (["--json"] if json_out else [])
    return subprocess.run(argv, cwd=str(cwd or ROOT), capture_output=True, text=True, timeout=timeout, env=env)


def last_json(stdout: str) -> Any:
    """The tool's result: with ``--json`` stdout holds exactly one JSON document."""
    lines = [line for line in stdout.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"stdout should hold only the JSON result, got:\n{stdout[-2000:]}"
    return json.loads(lines[0])


# --------------------------------------------------------------------------------------------
# Tiny datasets in the toolkits' own layouts

def _label_blobs(rng: np.random.Generator, h: int, w: int, classes: Sequence[int]) -> np.ndarray:
    label = np.full((h, w), classes[0], np.uint8)
    for c in classes[1:]:
        y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
        label[y0:y0 + h // 2, x0:x0 + w // 2] = c
    return label


def make_ade20k_layout(root: pathlib.Path, hw=(80, 112), n: int = 2) -> pathlib.Path:
    """ADEChallengeData2016/{images,annotations}/{training,validation}: jpg images, png labels
    0..150 (0 = other, ignored)."""
    rng = np.random.default_rng(0)
    for split in ("training", "validation"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            label = _label_blobs(rng, *hw, [0, 3, 12, 150])
            img = (rng.integers(0, 60, hw + (3,)) + label[..., None] % 7 * 25).astype(np.uint8)
            cv2.imwrite(str(root / "images" / split / f"ADE_{split}_{i:08d}.jpg"), img)
            cv2.imwrite(str(root / "annotations" / split / f"ADE_{split}_{i:08d}.png"), label)
    return root


def make_cityscapes_layout(root: pathlib.Path, hw=(96, 192), n: int = 2) -> pathlib.Path:
    """leftImg8bit/<split>/<city>/*_leftImg8bit.png and gtFine/<split>/<city>/*_gtFine_labelTrainIds.png
    (train ids 0..18, 255 = ignore), what PaddleSeg's Cityscapes globs for."""
    rng = np.random.default_rng(0)
    for split, city in (("train", "aachen"), ("val", "frankfurt")):
        (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
        (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            label = _label_blobs(rng, *hw, [0, 7, 18, 255])
            img = (rng.integers(0, 60, hw + (3,)) + label[..., None] % 7 * 25).astype(np.uint8)
            stem = f"{city}_{i:06d}_000019"
            cv2.imwrite(str(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"), img)
            cv2.imwrite(str(root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png"), label)
    return root


def make_coco_layout(root: pathlib.Path, hw=(240, 320), n_train: int = 4, n_val: int = 2) -> pathlib.Path:
    """COCO 2017 layout: train2017/, val2017/, annotations/instances_*.json; two objects per image
    with (non-rectangular) polygons."""
    rng = np.random.default_rng(0)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    ann_id = 0
    h, w = hw
    for split, n in (("train2017", n_train), ("val2017", n_val)):
        (root / split).mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for i in range(n):
            img = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
            for k in range(2):
                bw, bh = int(rng.integers(w // 5, w // 2)), int(rng.integers(h // 5, h // 2))
                x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
                poly = [x, y, x + bw, y, x + bw, y + bh // 2, x + bw // 2, y + bh, x, y + bh]
                cv2.fillPoly(img, [np.array(poly).reshape(-1, 2)], (200 - 80 * k, 60 + 90 * k, 30))
                ann_id += 1
                anns.append({"id": ann_id, "image_id": i + 1, "category_id": 1 + k, "bbox": [x, y, bw, bh],
                             "area": float(bw * bh) * 0.75, "iscrowd": 0, "segmentation": [poly]})
            name = f"{i + 1:012d}.jpg"
            cv2.imwrite(str(root / split / name), img)
            images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
        cats = [{"id": 1, "name": "box"}, {"id": 2, "name": "crate"}]
        with open(root / "annotations" / f"instances_{split}.json", "w") as f:
            json.dump({"images": images, "annotations": anns, "categories": cats}, f)
    return root


def seg_data_for(cfg_path: str, root: pathlib.Path) -> pathlib.Path:
    """A tiny dataset in the layout ``cfg_path``'s train_dataset reads."""
    from paddleseg.cvlibs.config import parse_from_yaml

    if parse_from_yaml(cfg_path)["train_dataset"]["type"] == "ADE20K":
        return make_ade20k_layout(root / "ADEChallengeData2016")
    return make_cityscapes_layout(root / "cityscapes")


def write_astronaut(path: pathlib.Path, size: int = 256) -> str:
    """A natural RGB image (scikit-image's astronaut, ``size`` x ``size``) written as a jpg."""
    from skimage import data

    img = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return str(path)


# --------------------------------------------------------------------------------------------
# Value overrides: widths, sizes, schedule -- never the transforms or losses themselves

def seg_value_overrides(cfg_path: str, data_root: Any = None, iters: int = 2,
                        backbone: Any = None) -> Tuple[Dict[str, Any], List[str]]:
    """(raw config, ``-o`` overrides) shrinking a shipped PaddleSeg config (``backbone``: other tiny
    backbone arguments)."""
    from paddleseg.cvlibs.config import parse_from_yaml

    raw = parse_from_yaml(cfg_path)
    tiny = backbone or tiny_for(raw["model"]["backbone"]["type"])
    ov = [f"model.backbone.{k}={json.dumps(v)}" for k, v in tiny.items()] + ["model.channels=8", "batch_size=2"]
    if raw["model"]["type"] == "PFPNNet":
        ov.append("model.fpn_inplanes=" + json.dumps(tiny.get("channels") or tiny.get("embed_dims")
                                                     or tiny.get("dims")))
    for i, op in enumerate(raw["train_dataset"]["transforms"]):
        if op["type"] == "RandomPaddingCrop":  # 512x512 -> 64x64, 1024x512 -> 128x64
            ov.append(f"train_dataset.transforms.{i}.crop_size=" + json.dumps([c // 8 for c in op["crop_size"]]))
    ov += [f"iters={iters}", "log_iters=1", f"save_interval={iters}", "use_visualdl=false"]
    if data_root is not None:
        ov += [f"train_dataset.dataset_root={data_root}", f"val_dataset.dataset_root={data_root}"]
    return raw, ov


DET_HEADS = {
    "CascadeRCNN": ["FPN.out_channel=16", "CascadeTwoFCHead.out_channel=16", "MaskFeat.out_channel=16",
                    "MaskFeat.num_convs=1"],
    "MaskRCNN": ["FPN.out_channel=16", "TwoFCHead.out_channel=16", "MaskFeat.out_channel=16", "MaskFeat.num_convs=1"],
    # FCOSHead's prediction convs take 256 channels whatever fcos_feat.feat_out says (ppdet 2.5).
    "FCOS": ["FPN.out_channel=32", "FCOSHead.fcos_feat.feat_in=32", "FCOSHead.fcos_feat.num_convs=1"],
    "RetinaNet": ["FPN.out_channel=32", "RetinaHead.conv_feat.feat_in=32", "RetinaHead.conv_feat.feat_out=32",
                  "RetinaHead.conv_feat.num_convs=1"],
}
DET_NMS = {"CascadeRCNN": "BBoxPostProcess.nms", "MaskRCNN": "BBoxPostProcess.nms", "FCOS": "FCOSPostProcess.nms",
           "RetinaNet": "RetinaHead.nms"}


def det_value_overrides(cfg_path: str, data_root: Any = None, score_threshold: Any = None, epochs: int = 1,
                        backbone: Any = None) -> Tuple[Dict[str, Any], List[str]]:
    """(raw config, ``-o`` overrides) shrinking a shipped PaddleDetection config: resize targets / 8
    (``backbone``: other tiny backbone arguments)."""
    from ppdet.core.workspace import _load_config_with_base

    raw = _load_config_with_base(cfg_path)
    arch = raw["architecture"]
    bb = raw[arch]["backbone"]
    ov = [f"{bb}.{k}={json.dumps(v)}" for k, v in (backbone or tiny_for(bb)).items()]
    for reader in ("TrainReader", "EvalReader", "TestReader"):
        for i, op in enumerate(raw[reader]["sample_transforms"]):
            (name, args), = op.items()
            if "target_size" in (args or {}):  # 800x1333 -> 100x166 (every scale of a multi-scale list)
                ts = args["target_size"]
                small = [[a // 8, b // 8] for a, b in ts] if isinstance(ts[0], list) else [ts[0] // 8, ts[1] // 8]
                ov.append(f"{reader}.sample_transforms.{i}.{name}.target_size={json.dumps(small)}")
    ov += DET_HEADS[arch]
    if "CascadeXConvNormHead" in raw:
        ov += ["CascadeXConvNormHead.conv_dim=16", "CascadeXConvNormHead.out_channel=16",
               "CascadeXConvNormHead.num_convs=1"]
    ov += [f"epoch={epochs}", "log_iter=1", "worker_num=0", "snapshot_epoch=1", "use_vdl=false"]
    if data_root is not None:  # the tiny COCO layout has 2 categories
        ov += ["num_classes=2"] + (["FCOSPostProcess.decode.num_classes=2"] if arch == "FCOS" else [])
    if score_threshold is not None:
        ov.append(f"{DET_NMS[arch]}.score_threshold={score_threshold}")
    if data_root is not None:
        ov += [f"{k}.dataset_dir={data_root}" for k in ("TrainDataset", "EvalDataset", "TestDataset")]
    return raw, ov


# --------------------------------------------------------------------------------------------
# A default Paddle Inference predictor, as a user creates one

def create_predictor(prefix: str):
    """A default Paddle Inference predictor (oneDNN left on as Paddle enables it)."""
    import paddle.inference as pi

    model = prefix + (".json" if os.path.exists(prefix + ".json") else ".pdmodel")
    config = pi.Config(model, prefix + ".pdiparams")
    assert config.mkldnn_enabled(), "the default CPU config should have oneDNN on"
    return pi.create_predictor(config)


def predict(prefix: str, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
    predictor = create_predictor(prefix)
    for name in predictor.get_input_names():
        predictor.get_input_handle(name).copy_from_cpu(np.ascontiguousarray(feeds[name]))
    predictor.run()
    return [predictor.get_output_handle(n).copy_to_cpu() for n in predictor.get_output_names()]
