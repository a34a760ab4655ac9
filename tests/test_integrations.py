"""PaddleClas / PaddleSeg / PaddleDetection integration: registration, every shipped config built
through its toolkit's builder (tiny widths) with converted backbone weights, and train / eval / infer /
export end to end through tools/*.py on tiny datasets in the toolkits' own layouts (the shipped
transforms and losses; value overrides only)."""
from __future__ import annotations

import os
import re
import subprocess

import cv2
import numpy as np
import paddle
import pytest

pytest.importorskip("paddleseg")
pytest.importorskip("ppdet")

from toolkit_helpers import (DET_CONFIGS, PY, ROOT, SEG_CONFIGS, det_value_overrides, last_json,  # noqa: E402
                             make_ade20k_layout, make_coco_layout, run_tool, seg_value_overrides, tiny_for)


def _converted_weights(arch: str, kwargs: dict, path) -> dict:
    """A state dict saved from a paddle_lk classification model: what a converter produces."""
    import paddle_lk

    model = paddle_lk.create_model(arch, num_classes=10, **kwargs)
    state = model.state_dict()
    paddle.save(state, str(path))
    return {k: v.numpy() for k, v in state.items()}


def _assert_loaded(backbone, state: dict) -> None:
    from paddle_lk.registry import family_of_model

    own = backbone.model.state_dict()
    assert own, "backbone has no parameters"
    optional = family_of_model(backbone.model).optional_keys  # e.g. UniRepLKNet's features-mode norm{i}
    for k, v in own.items():
        if k not in state and any(re.fullmatch(p, k) for p in optional):
            continue  # not in classification weights: kept at its init
        np.testing.assert_array_equal(v.numpy(), state[k], err_msg=k)


# --------------------------------------------------------------------------------------------
# Registration

def test_import_paddle_lk_does_not_import_toolkits():
    code = ("import sys, paddle_lk; bad = [m for m in ('paddleseg', 'ppdet', 'paddleclas') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_registration_everywhere_and_idempotent():
    import paddle_lk.integrations as integ
    import paddle_lk.integrations.ppcls  # noqa: F401
    from paddleseg.cvlibs import manager
    from ppdet.core.workspace import global_config

    first = integ.register_all()
    second = integ.register_all()
    assert first == second
    names = ["RepLKNet31B", "RepLKNet31L", "RepLKNetXL", "UniRepLKNet_T"] + [f"VAN_b{i}" for i in range(7)]
    for name in names:
        assert manager.BACKBONES[name].__name__ == name
        assert name in global_config
    import paddleclas.ppcls.arch as arch

    assert "paddleclas.ppcls.arch" in integ.ppcls.registered_modules()
    for name in names:
        assert callable(getattr(arch, name)) and getattr(arch.backbone, name) is getattr(arch, name)
    # PaddleClas's own VAN_B0 stays PaddleClas's.
    assert not getattr(arch.VAN_B0, "_paddle_lk_entry", False)


def test_ppcls_build_model_and_pretrained(tmp_path):
    import paddle_lk.integrations.ppcls  # noqa: F401 -- registers on import
    from paddleclas.ppcls.arch import build_model

    tiny = tiny_for("VAN")
    state = _converted_weights("VAN_b0", tiny, tmp_path / "van.pdparams")
    # PaddleClas passes paths without the extension.
    model = build_model({"Arch": {"name": "VAN_b0", "class_num": 10, "pretrained": str(tmp_path / "van"), **tiny}})
    model.eval()
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), state[k], err_msg=k)
    assert model(paddle.randn([1, 3, 32, 32])).shape == [1, 10]
    with pytest.raises(ValueError, match="SSLD"):
        build_model({"Arch": {"name": "VAN_b0", "use_ssld": True, **tiny}})


@pytest.mark.parametrize("name", ["RepLKNet31B", "VAN_b0", "UniRepLKNet_T"])
def test_seg_backbone_multiscale_and_converted_weights(name, tmp_path):
    import paddle_lk.integrations.seg  # noqa: F401 -- registers on import
    from paddleseg.cvlibs import manager

    tiny = tiny_for(name)
    state = _converted_weights(name, tiny, tmp_path / "w.pdparams")
    backbone = manager.BACKBONES[name](pretrained=str(tmp_path / "w.pdparams"), in_channels=3, **tiny)
    _assert_loaded(backbone, state)
    backbone.eval()
    feats = backbone(paddle.randn([1, 3, 64, 64]))
    assert [f.shape for f in feats] == [[1, c, 64 // s, 64 // s] for c, s in
                                        zip(backbone.feat_channels, (4, 8, 16, 32))]
    with pytest.raises(FileNotFoundError):
        manager.BACKBONES[name](pretrained=str(tmp_path / "missing.pdparams"), **tiny)


def test_det_backbone_out_shape():
    import paddle_lk.integrations.det  # noqa: F401 -- registers on import
    from ppdet.core.workspace import create, global_config

    from paddle_lk.integrations import det

    det._reset_global_config()
    global_config["VAN_b1"].update({"out_indices": [1, 2, 3], **tiny_for("VAN")})
    bb = create("VAN_b1")
    assert [(s.channels, s.stride) for s in bb.out_shape] == [(16, 8), (16, 16), (16, 32)]
    feats = bb({"image": paddle.randn([1, 3, 64, 64])})
    assert [f.shape[-1] for f in feats] == [8, 4, 2]
    det._reset_global_config()


# --------------------------------------------------------------------------------------------
# Every shipped config builds through its toolkit's builder and loads converted weights

@pytest.mark.parametrize("cfg_path", SEG_CONFIGS, ids=os.path.basename)
def test_seg_config_builds_with_converted_weights(cfg_path, tmp_path):
    from paddle_lk.integrations import seg

    raw, ov = seg_value_overrides(cfg_path)
    arch, tiny = raw["model"]["backbone"]["type"], tiny_for(raw["model"]["backbone"]["type"])
    state = _converted_weights(arch, tiny, tmp_path / "bb.pdparams")
    cfg = seg.load_config(cfg_path, ov + [f"model.backbone.pretrained={tmp_path / 'bb.pdparams'}"])
    builder = seg.builder(cfg)
    model = builder.model
    _assert_loaded(model.backbone, state)
    assert builder.optimizer is not None and len(builder.loss["types"]) == len(builder.loss["coef"])
    model.eval()
    logits = model(paddle.randn([1, 3, 64, 64]))
    assert logits[0].shape == [1, cfg.model_cfg["num_classes"], 64, 64]


@pytest.mark.parametrize("cfg_path", DET_CONFIGS, ids=os.path.basename)
def test_det_config_builds_with_converted_weights(cfg_path, tmp_path):
    from paddle_lk.integrations import det

    raw, ov = det_value_overrides(cfg_path)
    arch = raw["architecture"]
    bb, tiny = raw[arch]["backbone"], tiny_for(raw[arch]["backbone"])
    state = _converted_weights(bb, tiny, tmp_path / "bb.pdparams")
    cfg = det.load_det_config(cfg_path, ov + [f"{bb}.pretrained={tmp_path / 'bb.pdparams'}"])
    model = det.build_model(cfg)
    assert type(model).__name__ == arch
    _assert_loaded(model.backbone, state)
    strides = [s.stride for s in model.backbone.out_shape]
    assert strides == [4, 8, 16, 32][-len(strides):]




# --------------------------------------------------------------------------------------------
# Bad input: one clear error, exit 2

def test_bad_input_exit_2(tmp_path, capsys):
    from paddle_lk.engine.cli import main

    cfg = SEG_CONFIGS[0]
    assert main("train", ["-c", str(tmp_path / "nope.yml")]) == 2
    assert "nope.yml" in capsys.readouterr().err
    assert main("train", ["-c", cfg, "-o", f"train_dataset.dataset_root={tmp_path / 'absent'}"]) == 2
    assert "dataset_root" in capsys.readouterr().err
    assert main("eval", ["-c", cfg]) == 2
    assert "-w random" in capsys.readouterr().err
    assert main("train", ["-c", cfg, "-o", "nosuchsection.key=1"]) == 2
    assert "nosuchsection" in capsys.readouterr().err
    assert main("train", ["-c", cfg, "--bogus"]) == 2
    assert main("eval", ["-c", DET_CONFIGS[0]]) == 2
    assert main("train", ["-c", DET_CONFIGS[0], "-o", f"TrainDataset.dataset_dir={tmp_path / 'absent'}"]) == 2
    assert "dataset_dir" in capsys.readouterr().err
    assert main("infer", ["-c", DET_CONFIGS[0], "-w", "random", "-i", str(tmp_path / "none.jpg")]) == 2
    assert "none.jpg" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# End to end through tools/*.py

def test_seg_train_eval_infer_export_through_tools(tmp_path):
    data = make_ade20k_layout(tmp_path / "ADEChallengeData2016")
    cfg = str(ROOT / "configs" / "seg" / "replknet31b_upernet_ade20k_512x512_160k.yml")
    _, ov = seg_value_overrides(cfg, data_root=data)
    out = tmp_path / "run"
    res = run_tool("train", ["-c", cfg, "-o", *ov, "--eval", "--output", out])
    assert res.returncode == 0, res.stderr[-3000:]
    summary = last_json(res.stdout)
    assert summary["updates"] == 2 and np.isfinite(summary["loss"])
    assert 0.0 <= summary["eval"]["mIoU"] <= 1.0 and len(summary["eval"]["class_iou"]) == 150
    assert {"latest.pdckpt", "best_model.pdparams", "config.yaml", "train.log"} <= set(os.listdir(out))
    assert "[paddleseg]" in (out / "train.log").read_text()  # PaddleSeg's own lines: the log file, not stdout

    res = run_tool("eval", ["-c", cfg, "-o", *ov, "-w", out])  # a run dir means its best weights
    assert res.returncode == 0, res.stderr[-3000:]
    assert last_json(res.stdout)["mIoU"] == pytest.approx(summary["eval"]["mIoU"])

    img = data / "images" / "validation" / "ADE_validation_00000000.jpg"
    res = run_tool("infer", ["-c", cfg, "-o", *ov, "-w", out, "-i", img, "--output", tmp_path / "vis"])
    assert res.returncode == 0, res.stderr[-3000:]
    from PIL import Image

    mask = Image.open(last_json(res.stdout)[0]["mask"])
    assert mask.size == (112, 80) and mask.mode == "P"  # palette = colour mask, the image's size

    res = run_tool("export", ["-c", cfg, "-o", *ov, "-w", out, "--output", tmp_path / "exp"])
    assert res.returncode == 0, res.stderr[-3000:]
    info = last_json(res.stdout)
    assert info["paddle_inference_max_rel_diff"] <= 1e-3  # label maps: the fraction of pixels that differ
    import yaml

    deploy = yaml.safe_load((tmp_path / "exp" / "deploy.yaml").read_text())["Deploy"]
    assert deploy["model"] == "model.json" and deploy["transforms"][-1]["type"] == "Normalize"


def test_det_mask_rcnn_train_eval_infer_through_tools(tmp_path):
    data = make_coco_layout(tmp_path / "coco")
    cfg = str(ROOT / "configs" / "det" / "van_b2_mask_rcnn_fpn_1x_coco.yml")
    _, ov = det_value_overrides(cfg, data_root=data, score_threshold=0.0)
    out = tmp_path / "out"
    res = run_tool("train", ["-c", cfg, "-o", *ov, "--output", out, "--eval"])
    assert res.returncode == 0, res.stderr[-3000:]
    summary = last_json(res.stdout)
    assert {"bbox_mAP", "mask_mAP"} <= set(summary["eval"]) and 0.0 <= summary["eval"]["bbox_mAP"] <= 1.0
    assert (out / "eval" / "bbox.json").is_file() and not (ROOT / "bbox.json").exists()
    assert "Average Precision" in (out / "train.log").read_text()  # pycocotools' table: the log file

    res = run_tool("eval", ["-c", cfg, "-o", *ov, "-w", out])
    assert res.returncode == 0, res.stderr[-3000:]
    assert last_json(res.stdout)["bbox_mAP"] == pytest.approx(summary["eval"]["bbox_mAP"], abs=1e-6)

    img = data / "val2017" / "000000000001.jpg"
    res = run_tool("infer", ["-c", cfg, "-o", *ov, "-w", out, "-i", img, "--output", tmp_path / "vis",
                             "--threshold", "0.0"])
    assert res.returncode == 0, res.stderr[-3000:]
    result = last_json(res.stdout)[0]
    from PIL import Image

    drawn = np.asarray(Image.open(result["image"]).convert("RGB"))
    original = cv2.cvtColor(cv2.imread(str(img)), cv2.COLOR_BGR2RGB)
    assert drawn.shape == original.shape
    assert result["boxes"] and {"class_id", "label_name", "score", "bbox_xywh"} <= set(result["boxes"][0])
    assert result["boxes"][0]["label_name"] in ("box", "crate")  # names from the COCO annotation file
    assert np.abs(drawn.astype(int) - original).sum() > 0
