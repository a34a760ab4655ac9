"""Issue 16: a PaddleClas user's config works unchanged -- PaddleClas 2.6's ImageNet/VAN/VAN_B0.yaml as
published (tests/configs/paddleclas_VAN_B0.yaml), shrunk only by ``-o`` as ``ppcls`` parses it."""
from __future__ import annotations

import json
import pathlib

import numpy as np
from PIL import Image

from paddle_lk.engine.cli import main
from paddle_lk.engine.config import load_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = ROOT / "tests" / "configs" / "paddleclas_VAN_B0.yaml"


def _imagenet_layout(root: pathlib.Path, n: int = 8) -> None:
    """PaddleClas's ImageNet layout: image_root with train/ and val/ and label lists."""
    rng = np.random.RandomState(0)
    for split in ("train", "val"):
        (root / split).mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(n if split == "train" else 4):
            Image.fromarray((rng.rand(40, 48, 3) * 255).astype("uint8")).save(root / split / f"{i}.JPEG")
            lines.append(f"{split}/{i}.JPEG {i % 3}")
        (root / f"{split}_list.txt").write_text("\n".join(lines) + "\n")


def _shrink(root: pathlib.Path, out: pathlib.Path):
    data = [f"DataLoader.{s}.dataset.{k}={v}" for s in ("Train", "Eval") for k, v in
            (("image_root", root), ("cls_label_path", root / f"{'train' if s == 'Train' else 'val'}_list.txt"))]
    return [x for o in data + [
        "Global.device=cpu", "Global.epochs=1", f"Global.output_dir={out}", "Global.image_shape=[3,32,32]",
        "DataLoader.Train.sampler.batch_size=4", "DataLoader.Eval.sampler.batch_size=4",
        "DataLoader.Train.loader.num_workers=0", "DataLoader.Eval.loader.num_workers=0",
        "DataLoader.Train.dataset.transform_ops.1.RandCropImage.size=32",
        "DataLoader.Train.dataset.transform_ops.3.TimmAutoAugment.img_size=32",
        "DataLoader.Eval.dataset.transform_ops.1.ResizeImage.resize_short=36",
        "DataLoader.Eval.dataset.transform_ops.2.CropImage.size=32",
        "Infer.transforms.1.ResizeImage.resize_short=36", "Infer.transforms.2.CropImage.size=32",
        "Arch.drop_path_rate=0.0", "Optimizer.lr.warmup_epoch=0"] for x in ("-o", o)]


def test_paddleclas_config_facts_are_understood():
    cfg = load_config(str(CONFIG), ["Global.device=cpu"])
    assert cfg["Optimizer"]["epsilon"] == 1e-8 and cfg["Optimizer"]["lr"]["learning_rate"] == 1e-3
    assert cfg["Global"]["to_static"] is False and cfg["AMP"]["use_fp16_test"] is False
    # -o as ppcls types it: Python literals and arithmetic; other text stays a string.
    cfg = load_config(str(CONFIG), ["Global.device=cpu", "Optimizer.lr.learning_rate=1e-3*2", "Global.epochs=3",
                                    "Arch.drop_path_rate=0.2", "Global.output_dir=./o"])
    assert cfg["Optimizer"]["lr"]["learning_rate"] == 2e-3 and cfg["Global"]["epochs"] == 3
    assert cfg["Global"]["output_dir"] == "./o" and cfg["Arch"]["drop_path_rate"] == 0.2


def test_paddleclas_van_b0_config_trains_evaluates_predicts_and_exports(tmp_path, capsys):
    _imagenet_layout(tmp_path / "data")
    args = ["-c", str(CONFIG), *_shrink(tmp_path / "data", tmp_path / "out")]
    assert main("train", args + ["--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["updates"] == 2 and summary["eval"]["samples"] == 4
    # VAN_B0 is PaddleClas's spelling of paddle_lk's VAN_b0; 1000 classes: the ImageNet names the wheel ships.
    img = tmp_path / "data" / "val" / "0.JPEG"
    assert main("infer", args + ["-w", str(tmp_path / "out"), "-i", str(img), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result[0]["class_ids"]) == 5 and all(n for n in result[0]["label_names"])
    assert result[0]["label_names"][0] != str(result[0]["class_ids"][0])  # a name, not '859'
    assert main("export", args + ["-w", str(tmp_path / "out"), "--output", str(tmp_path / "inf")]) == 0
    assert (tmp_path / "inf" / "inference.pdiparams").is_file()
