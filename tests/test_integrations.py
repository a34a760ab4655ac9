"""PaddleClas / PaddleSeg / PaddleDetection integration: registration, every shipped config built
through its toolkit's builder (tiny widths) with converted backbone weights, and train / eval /
infer / export end to end through tools/*.py on tiny synthetic datasets in the toolkits' formats."""
from __future__ import annotations

import glob
import json
import os
import pathlib
import re
import subprocess
import sys

import cv2
import numpy as np
import paddle
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PY = sys.executable
SEG_CONFIGS = sorted(glob.glob(str(ROOT / "configs" / "seg" / "*.yml")))
DET_CONFIGS = sorted(glob.glob(str(ROOT / "configs" / "det" / "*.yml")))

pytest.importorskip("paddleseg")
pytest.importorskip("ppdet")

# Tiny backbones: the same architecture family, a few channels, one block per stage.
TINY_BACKBONE = {
    "RepLKNet31B": {"channels": [8, 16, 16, 16], "layers": [1, 1, 1, 1], "large_kernel_sizes": [7, 7, 7, 5]},
    "VAN_b2": {"embed_dims": [8, 16, 16, 16], "depths": [1, 1, 1, 1]},
    "UniRepLKNet": {"depths": [1, 1, 1, 1], "dims": [8, 16, 16, 16], "kernel_sizes": [[3], [13], [7], [5]]},
}


def _tiny_for(arch: str) -> dict:
    family = next((f for f in ("UniRepLKNet", "RepLKNet") if arch.startswith(f)), "VAN")
    return TINY_BACKBONE[{"UniRepLKNet": "UniRepLKNet", "RepLKNet": "RepLKNet31B", "VAN": "VAN_b2"}[family]]


def _yaml(v) -> str:
    return json.dumps(v)  # JSON is YAML


def _run_tool(tool: str, args, timeout: int = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([PY, str(ROOT / "tools" / f"{tool}.py")] + [str(a) for a in args], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=timeout, env=env)


def _last_json(stdout: str):
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") or line.startswith("["):
            return json.loads(line)
    raise AssertionError(f"no JSON result in output:\n{stdout[-2000:]}")


def _converted_weights(arch: str, kwargs: dict, path: pathlib.Path) -> dict:
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
# Synthetic datasets in the toolkits' own formats

def make_ade20k(root: pathlib.Path, n_train: int = 3, n_val: int = 2) -> pathlib.Path:
    """ADEChallengeData2016 layout: images/*.jpg, annotations/*.png (0 = ignore, 1..150)."""
    rng = np.random.default_rng(0)
    for split, n in (("training", n_train), ("validation", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            label = np.full((48, 64), 4, np.uint8)
            label[:, 32:] = 9
            label[:4] = 0
            img[label == 9] = (250, 20, 20)
            cv2.imwrite(str(root / "images" / split / f"ADE_{split}_{i:08d}.jpg"), img)
            cv2.imwrite(str(root / "annotations" / split / f"ADE_{split}_{i:08d}.png"), label)
    return root


def make_coco(root: pathlib.Path) -> pathlib.Path:
    """COCO layout: train2017/, val2017/, annotations/instances_*.json with boxes and polygons."""
    rng = np.random.default_rng(0)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split, n in (("train2017", 3), ("val2017", 2)):
        (root / split).mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for i in range(n):
            h, w = 96, 128
            img = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
            x, y, bw, bh = 20 + 10 * i, 16, 48, 40
            img[y:y + bh, x:x + bw] = (200, 60, 30)
            name = f"{i + 1:012d}.jpg"
            cv2.imwrite(str(root / split / name), img)
            images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
            anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1 + i % 2, "bbox": [x, y, bw, bh],
                         "area": bw * bh, "iscrowd": 0,
                         "segmentation": [[x, y, x + bw, y, x + bw, y + bh // 2, x, y + bh]]})
        cats = [{"id": 1, "name": "box"}, {"id": 2, "name": "crate"}]
        with open(root / "annotations" / f"instances_{split}.json", "w") as f:
            json.dump({"images": images, "annotations": anns, "categories": cats}, f)
    return root


# --------------------------------------------------------------------------------------------
# Overrides that make each shipped config tiny

def seg_overrides(cfg_path: str, data_root=None, weights=None):
    from paddleseg.cvlibs.config import parse_from_yaml

    raw = parse_from_yaml(cfg_path)
    arch = raw["model"]["backbone"]["type"]
    tiny = _tiny_for(arch)
    ov = [f"model.backbone.{k}={_yaml(v)}" for k, v in tiny.items()]
    chans = tiny.get("channels") or tiny.get("embed_dims")
    if raw["model"]["type"] == "PFPNNet":
        ov += [f"model.fpn_inplanes={_yaml(chans)}", "model.channels=8"]
    else:
        ov += ["model.channels=8"]
    ov += ["batch_size=2",
           "train_dataset.transforms=" + _yaml([{"type": "RandomPaddingCrop", "crop_size": [64, 48]},
                                                {"type": "RandomHorizontalFlip"}, {"type": "Normalize"}]),
           "val_dataset.transforms=" + _yaml([{"type": "Normalize"}])]
    if data_root is not None:
        ov += [f"train_dataset.dataset_root={data_root}", f"val_dataset.dataset_root={data_root}"]
    if weights is not None:
        ov += [f"model.backbone.pretrained={weights}"]
    return arch, tiny, ov


def det_overrides(cfg_path: str, data_root=None, weights=None):
    from ppdet.core.workspace import _load_config_with_base

    raw = _load_config_with_base(cfg_path)
    arch = raw["architecture"]
    bb = raw[arch]["backbone"]
    tiny = _tiny_for(bb)
    ov = [f"{bb}.{k}={_yaml(v)}" for k, v in tiny.items()]
    reader = _yaml([{"Decode": {}}, {"Resize": {"target_size": [64, 96], "keep_ratio": True, "interp": 1}},
                    {"NormalizeImage": {"is_scale": True, "mean": [0.485, 0.456, 0.406],
                                        "std": [0.229, 0.224, 0.225]}}, {"Permute": {}}])
    ov += ["num_classes=2", "epoch=1", "log_iter=1", "worker_num=0", "snapshot_epoch=1",
           "TrainReader.batch_size=1", f"TrainReader.sample_transforms={reader}",
           f"EvalReader.sample_transforms={reader}", f"TestReader.sample_transforms={reader}",
           "LearningRate.schedulers.0.milestones=[1]", "LearningRate.schedulers.1.steps=1"]
    heads = {
        "CascadeRCNN": ["FPN.out_channel=16", "CascadeTwoFCHead.out_channel=16", "MaskFeat.out_channel=16",
                        "MaskFeat.num_convs=1", "BBoxPostProcess.nms.score_threshold=0.0",
                        "CascadeXConvNormHead.conv_dim=16", "CascadeXConvNormHead.out_channel=16",
                        "CascadeXConvNormHead.num_convs=1"],
        "MaskRCNN": ["FPN.out_channel=16", "TwoFCHead.out_channel=16", "MaskFeat.out_channel=16",
                     "MaskFeat.num_convs=1", "BBoxPostProcess.nms.score_threshold=0.0"],
        # FCOS's prediction convs are built for 256 input channels in PaddleDetection 2.5.
        "FCOS": ["FPN.out_channel=32", "FCOSHead.fcos_feat.feat_in=32", "FCOSHead.fcos_feat.num_convs=1",
                 "FCOSPostProcess.nms.score_threshold=0.0"],
        "RetinaNet": ["FPN.out_channel=32", "RetinaHead.conv_feat.feat_in=32", "RetinaHead.conv_feat.feat_out=32",
                      "RetinaHead.conv_feat.num_convs=1", "RetinaHead.nms.score_threshold=0.0"],
    }[arch]
    ov += heads
    if data_root is not None:
        ov += [f"{k}.dataset_dir={data_root}" for k in ("TrainDataset", "EvalDataset", "TestDataset")]
    if weights is not None:
        ov += [f"{bb}.pretrained={weights}"]
    return arch, bb, tiny, ov


# --------------------------------------------------------------------------------------------
# Registration

def test_import_paddle_lk_does_not_import_toolkits():
    code = ("import sys, paddle_lk; bad = [m for m in ('paddleseg', 'ppdet', 'paddleclas') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_registration_everywhere_and_idempotent():
    import paddle_lk.integrations as integ
    from paddleseg.cvlibs import manager
    from ppdet.core.workspace import global_config

    first = integ.register_all()
    second = integ.register_all()
    assert first == second
    names = ["RepLKNet31B", "RepLKNet31L", "RepLKNetXL"] + [f"VAN_b{i}" for i in range(7)]
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
    import paddle_lk.integrations  # noqa: F401
    from paddleclas.ppcls.arch import build_model

    tiny = TINY_BACKBONE["VAN_b2"]
    state = _converted_weights("VAN_b0", tiny, tmp_path / "van.pdparams")
    # PaddleClas passes paths without the extension.
    model = build_model({"Arch": {"name": "VAN_b0", "class_num": 10, "pretrained": str(tmp_path / "van"), **tiny}})
    model.eval()
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), state[k], err_msg=k)
    assert model(paddle.randn([1, 3, 32, 32])).shape == [1, 10]
    with pytest.raises(ValueError, match="SSLD"):
        build_model({"Arch": {"name": "VAN_b0", "use_ssld": True, **tiny}})


@pytest.mark.parametrize("name", ["RepLKNet31B", "VAN_b0"])
def test_seg_backbone_multiscale_and_converted_weights(name, tmp_path):
    import paddle_lk.integrations  # noqa: F401
    from paddleseg.cvlibs import manager

    tiny = TINY_BACKBONE["RepLKNet31B" if name.startswith("RepLK") else "VAN_b2"]
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
    import paddle_lk.integrations  # noqa: F401
    from ppdet.core.workspace import create, global_config

    from paddle_lk.integrations import det

    det._reset_global_config()
    global_config["VAN_b1"].update({"out_indices": [1, 2, 3], **TINY_BACKBONE["VAN_b2"]})
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

    arch, tiny, ov = seg_overrides(cfg_path)
    state = _converted_weights(arch, tiny, tmp_path / "bb.pdparams")
    cfg = seg.build_config(cfg_path, ov + [f"model.backbone.pretrained={tmp_path / 'bb.pdparams'}"])
    builder = seg._builder(cfg)
    model = builder.model
    _assert_loaded(model.backbone, state)
    assert builder.optimizer is not None and len(builder.loss["types"]) == len(builder.loss["coef"])
    model.eval()
    logits = model(paddle.randn([1, 3, 64, 64]))
    assert logits[0].shape == [1, cfg.model_cfg["num_classes"], 64, 64]


@pytest.mark.parametrize("cfg_path", DET_CONFIGS, ids=os.path.basename)
def test_det_config_builds_with_converted_weights(cfg_path, tmp_path):
    from paddle_lk.integrations import det

    arch, bb, tiny, ov = det_overrides(cfg_path)
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
    from paddle_lk.integrations import det, seg

    cfg = SEG_CONFIGS[0]
    assert seg.main("train", ["-c", str(tmp_path / "nope.yml")]) == 2
    assert seg.main("train", ["-c", cfg, "-o", f"train_dataset.dataset_root={tmp_path / 'absent'}"]) == 2
    assert "dataset_root" in capsys.readouterr().err
    assert seg.main("eval", ["-c", cfg]) == 2
    assert seg.main("train", ["-c", cfg, "-o", "nosuchsection.key=1"]) == 2
    assert "nosuchsection" in capsys.readouterr().err
    assert seg.main("train", ["-c", cfg, "--bogus"]) == 2
    assert det.main("eval", ["-c", DET_CONFIGS[0]]) == 2
    assert det.main("train", ["-c", DET_CONFIGS[0], "-o", f"TrainDataset.dataset_dir={tmp_path / 'absent'}"]) == 2
    assert "dataset_dir" in capsys.readouterr().err
    assert det.main("bogus", []) == 2


# --------------------------------------------------------------------------------------------
# End to end through tools/*.py

def _tools_available():
    if not (ROOT / "tools" / "train.py").is_file():
        pytest.skip("tools/train.py not present")


def test_seg_train_eval_infer_export_through_tools(tmp_path):
    _tools_available()
    data = make_ade20k(tmp_path / "ADEChallengeData2016")
    cfg = str(ROOT / "configs" / "seg" / "replknet31b_upernet_ade20k_512x512_160k.yml")
    arch, tiny, ov = seg_overrides(cfg, data_root=data)
    out = tmp_path / "run"
    res = _run_tool("train", ["-c", cfg, "-o", *ov, "--iters", "2", "--log-every", "1", "--eval",
                              "--output", out])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = _last_json(res.stdout)
    assert summary["iters"] == 2 and np.isfinite(summary["loss"])
    assert 0.0 <= summary["mIoU"] <= 1.0 and len(summary["class_iou"]) == 150
    weights = out / "model.pdparams"
    assert weights.is_file()

    res = _run_tool("eval", ["-c", cfg, "-o", *ov, "--weights", weights])
    assert res.returncode == 0, res.stderr[-3000:]
    assert _last_json(res.stdout)["mIoU"] == pytest.approx(summary["mIoU"])

    img = data / "images" / "validation" / "ADE_validation_00000000.jpg"
    res = _run_tool("infer", ["-c", cfg, "-o", *ov, "--weights", weights, "--image", img,
                              "--output", tmp_path / "vis"])
    assert res.returncode == 0, res.stderr[-3000:]
    from PIL import Image

    mask = Image.open(tmp_path / "vis" / "ADE_validation_00000000.png")
    assert mask.size == (64, 48) and mask.mode == "P"  # palette = colour mask

    res = _run_tool("export", ["-c", cfg, "-o", *ov, "--weights", weights, "--output", tmp_path / "exp"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "exp" / "deploy.yaml").is_file()
    # The exported program gives the dygraph model's label map.
    from paddle_lk.integrations import seg

    model = seg._builder(seg.build_config(cfg, ov)).model
    model.set_state_dict(paddle.load(str(weights)))
    model.eval()
    x = paddle.randn([1, 3, 64, 64])
    expected = paddle.argmax(model(x)[0], axis=1, keepdim=True).numpy()
    loaded = paddle.jit.load(str(tmp_path / "exp" / "model"))
    loaded.eval()
    got = loaded(x)
    got = (got[0] if isinstance(got, (list, tuple)) else got).numpy()
    np.testing.assert_array_equal(got, expected)


def test_det_mask_rcnn_train_eval_infer_through_tools(tmp_path):
    _tools_available()
    data = make_coco(tmp_path / "coco")
    cfg = str(ROOT / "configs" / "det" / "van_b2_mask_rcnn_fpn_1x_coco.yml")
    _, _, _, ov = det_overrides(cfg, data_root=data)
    res = _run_tool("train", ["-c", cfg, "-o", *ov, "--output", tmp_path / "out", "--eval"])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = _last_json(res.stdout)
    assert {"bbox_mAP", "mask_mAP"} <= set(summary) and 0.0 <= summary["bbox_mAP"] <= 1.0
    weights = pathlib.Path(summary["final"])
    assert weights.is_file()
    assert not (ROOT / "bbox.json").exists()  # COCO detections go next to the checkpoints

    res = _run_tool("eval", ["-c", cfg, "-o", *ov, "--weights", weights, "--output", tmp_path / "eval"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "eval" / "bbox.json").is_file()
    assert _last_json(res.stdout)["bbox_mAP"] == pytest.approx(summary["bbox_mAP"], abs=1e-6)

    img = data / "val2017" / "000000000001.jpg"
    res = _run_tool("infer", ["-c", cfg, "-o", *ov, "--weights", weights, "--image", img,
                              "--output", tmp_path / "vis", "--threshold", "0.0"])
    assert res.returncode == 0, res.stderr[-3000:]
    result = _last_json(res.stdout)[0]
    from PIL import Image

    drawn = np.asarray(Image.open(result["output"]).convert("RGB"))
    original = cv2.cvtColor(cv2.imread(str(img)), cv2.COLOR_BGR2RGB)
    assert drawn.shape == original.shape
    assert result["boxes"] > 0 and (np.abs(drawn.astype(int) - original).sum() > 0)


def test_det_export_runs_like_dygraph(tmp_path):
    _tools_available()
    from paddle_lk.integrations import det

    cfg = str(ROOT / "configs" / "det" / "van_b2_retinanet_fpn_1x_coco.yml")
    _, _, _, ov = det_overrides(cfg)
    model = det.build_model(det.load_det_config(cfg, ov))
    weights = tmp_path / "model.pdparams"
    paddle.save(model.state_dict(), str(weights))
    res = _run_tool("export", ["-c", cfg, "-o", *ov, "--weights", weights, "--output", tmp_path / "exp"])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    model.eval()
    x = paddle.uniform([1, 3, 64, 96], min=-2, max=2, seed=3)
    im_shape = paddle.to_tensor([[64.0, 96.0]])
    scale = paddle.to_tensor([[1.0, 1.0]])
    with paddle.no_grad():
        ref = model({"image": x, "im_shape": im_shape, "scale_factor": scale})
    loaded = paddle.jit.load(str(tmp_path / "exp" / "model"))
    loaded.eval()
    bbox, bbox_num = loaded(x, im_shape, scale)[:2]
    assert int(bbox_num.numpy()[0]) == int(ref["bbox_num"].numpy()[0]) > 0
    np.testing.assert_allclose(np.sort(bbox.numpy(), axis=0), np.sort(ref["bbox"].numpy(), axis=0),
                               rtol=1e-4, atol=1e-3)
