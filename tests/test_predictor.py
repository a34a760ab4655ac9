"""Issue 16: what an export directory holds for the toolkits' deploy code, and paddle_lk.Predictor /
tools/predict.py over it -- on the quickstart config as shipped (shrunk by -o only), and on tiny
segmentation (PaddleSeg) and detection (PaddleDetection) models exported through the CLI."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

import paddle_lk
from paddle_lk.engine.cli import main, predict_main
from paddle_lk.errors import ConfigError, DataError

ROOT = pathlib.Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


@pytest.fixture(scope="module")
def quickstart_export(tmp_path_factory):
    """The quickstart config trained briefly on the bundled MNIST, exported with ONNX."""
    tmp = tmp_path_factory.mktemp("quickstart")
    over = [f"Global.output_dir={tmp / 'out'}", f"Global.save_inference_dir={tmp / 'inf'}", "Global.epochs=1",
            "Global.max_steps_per_epoch=3", "Global.use_visualdl=false", "Global.export_onnx=true",
            f"DataLoader.Train.dataset.image_root={tmp / 'mnist'}",
            f"DataLoader.Train.dataset.cls_label_path={tmp / 'mnist' / 'train_list.txt'}",
            f"DataLoader.Eval.dataset.image_root={tmp / 'mnist'}",
            f"DataLoader.Eval.dataset.cls_label_path={tmp / 'mnist' / 'val_list.txt'}",
            f"Infer.infer_imgs={tmp / 'mnist' / 'val'}",
            f"Infer.PostProcess.class_id_map_file={tmp / 'mnist' / 'label_list.txt'}"]
    args = ["-c", str(QUICKSTART)] + [x for o in over for x in ("-o", o)]
    assert main("train", args + ["--json"]) == 0
    return tmp, args


def test_export_writes_the_paddleclas_deploy_files(quickstart_export):
    tmp, _ = quickstart_export
    inf = tmp / "inf"
    deploy = yaml.safe_load((inf / "inference.yml").read_text())
    assert set(deploy) == {"Global", "PreProcess", "PostProcess"}
    ops = [next(iter(op)) for op in deploy["PreProcess"]["transform_ops"]]
    assert ops == ["NormalizeImage", "ToCHWImage"]  # the quickstart's Eval transforms, in PaddleClas's names
    norm = deploy["PreProcess"]["transform_ops"][0]["NormalizeImage"]
    assert norm["mean"] == pytest.approx([33.3 / 255] * 3) and norm["std"] == pytest.approx([78.6 / 255] * 3)
    assert deploy["PostProcess"]["Topk"]["topk"] == 3
    labels = (inf / "label_list.txt").read_text().splitlines()
    assert labels[0] == "0 digit_0" and len(labels) == 10
    info = json.loads((inf / "export_info.json").read_text())
    assert info["task"] == "cls" and info["arch"] == "RepLKNet31B"


def test_predictor_matches_the_training_framework_and_onnx(quickstart_export, capsys):
    tmp, args = quickstart_export
    images = sorted((tmp / "mnist" / "val").glob("*.png"))[:5]
    assert main("infer", args + ["-w", str(tmp / "out"), "-i", *map(str, images), "--json"]) == 0
    dygraph = json.loads(capsys.readouterr().out)
    for backend in ("paddle", "onnx"):
        got = paddle_lk.Predictor(tmp / "inf", backend=backend).predict([str(p) for p in images])
        assert [r["class_ids"] for r in got] == [r["class_ids"] for r in dygraph]
        np.testing.assert_allclose([r["scores"] for r in got], [r["scores"] for r in dygraph], atol=1e-4)
        assert got[0]["label_names"][0].startswith("digit_")
    # Arrays (RGB HWC uint8) and a folder work too.
    arr = np.asarray(Image.open(images[0]).convert("RGB"))
    assert paddle_lk.Predictor(tmp / "inf").predict(arr)[0]["class_ids"] == dygraph[0]["class_ids"]
    assert len(paddle_lk.Predictor(tmp / "inf").predict(str(tmp / "mnist" / "val"))) == 1000


def test_predict_tool(quickstart_export):
    tmp, _ = quickstart_export
    image = sorted((tmp / "mnist" / "val").glob("*.png"))[0]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "predict.py"), "-m", str(tmp / "inf"), "-i", str(image)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith(f"{image}: digit_")
    bad = subprocess.run([sys.executable, str(ROOT / "tools" / "predict.py"), "-m", str(tmp / "nope"), "-i", str(image)],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error:")


def test_paddleclas_wheel_reads_the_deploy_files(quickstart_export):
    """PaddleClas's own deploy predictor (the pinned wheel's ClsPredictor: its preprocessing, Paddle
    Inference settings and Topk post-processing), built from our inference.yml, predicts what
    paddle_lk.Predictor predicts (on Paddle 3.3 after compat's paddleclas_deploy_memory_optim shim)."""
    pytest.importorskip("paddleclas")
    import paddle_lk.integrations.ppcls  # noqa: F401 -- installs the PaddleClas deploy shim
    from paddleclas.deploy.python.predict_cls import ClsPredictor
    from paddleclas.deploy.utils import config as ppcls_config

    tmp, _ = quickstart_export
    theirs = ClsPredictor(ppcls_config.get_config(str(tmp / "inf" / "inference.yml"), show=False))
    ours = paddle_lk.Predictor(tmp / "inf")
    for image in sorted((tmp / "mnist" / "val").glob("*.png"))[:3]:
        x = np.asarray(Image.open(image).convert("RGB"))  # predict_cls.py: cv2.imread(...)[:, :, ::-1]
        got = theirs.predict(x)[0]
        mine = ours.predict(str(image))[0]
        assert got["class_ids"] == mine["class_ids"] and got["label_names"] == mine["label_names"]
        np.testing.assert_allclose(got["scores"], mine["scores"], atol=1e-4)  # probabilities, not logits


# --------------------------------------------------------------------------------------------
# Segmentation and detection exports (tiny models exported through the CLI as a user does)

SEG_CFG = str(ROOT / "configs" / "seg" / "replknet31b_upernet_ade20k_512x512_160k.yml")
RETINANET_CFG = str(ROOT / "configs" / "det" / "van_b2_retinanet_fpn_1x_coco.yml")
MASK_RCNN_CFG = str(ROOT / "configs" / "det" / "van_b2_mask_rcnn_fpn_1x_coco.yml")


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory) -> str:
    from toolkit_helpers import write_astronaut

    return write_astronaut(tmp_path_factory.mktemp("img") / "astronaut.jpg")


def _export_with_cli(cfg_path: str, ov, model, out: pathlib.Path) -> pathlib.Path:
    """``tools/export.py -c cfg -o ov -w <model's weights> --output out --no-verify``, in this process
    (the export's own check is tests/test_toolkit_compat.py's; here the predictor is compared with the
    dygraph model)."""
    import paddle

    weights = out.parent / (out.name + ".pdparams")
    paddle.save(model.state_dict(), str(weights))
    assert main("export", ["-c", cfg_path, "-o", *ov, "-w", str(weights), "--output", str(out), "--no-verify"]) == 0
    model.eval()
    return out


@pytest.fixture(scope="module")
def seg_export(tmp_path_factory):
    """(config path, overrides, the dygraph model, export dir) of a tiny RepLKNet + UperNet."""
    pytest.importorskip("paddleseg")
    import paddle
    from toolkit_helpers import seg_value_overrides

    from paddle_lk.integrations import seg

    ov = seg_value_overrides(SEG_CFG)[1]
    paddle.seed(3)
    model = seg.builder(seg.load_config(SEG_CFG, ov)).model
    return SEG_CFG, ov, model, _export_with_cli(SEG_CFG, ov, model, tmp_path_factory.mktemp("seg") / "exp")


def _det_export(tmp_path_factory, cfg_path: str):
    pytest.importorskip("ppdet")
    import paddle
    from toolkit_helpers import det_value_overrides

    from paddle_lk.integrations import det

    ov = det_value_overrides(cfg_path, score_threshold=0.0)[1]  # random weights: keep every box
    paddle.seed(3)
    model = det.build_model(det.load_det_config(cfg_path, ov))
    return cfg_path, ov, model, _export_with_cli(cfg_path, ov, model, tmp_path_factory.mktemp("det") / "exp")


@pytest.fixture(scope="module")
def retinanet_export(tmp_path_factory):
    return _det_export(tmp_path_factory, RETINANET_CFG)


@pytest.fixture(scope="module")
def mask_rcnn_export(tmp_path_factory):
    return _det_export(tmp_path_factory, MASK_RCNN_CFG)


def test_seg_predictor_matches_the_dygraph_model(seg_export, astronaut, tmp_path):
    import cv2
    import paddle
    from paddleseg.core.infer import reverse_transform
    from paddleseg.transforms import Compose

    from paddle_lk.integrations import seg

    cfg_path, ov, model, exp = seg_export
    pred = paddle_lk.Predictor(exp)
    assert pred.task == "seg" and pred.input_names == ["x"]
    # PaddleSeg's transforms from deploy.yaml: the config's val transforms, the same preprocessed input
    cfg = seg.load_config(cfg_path, ov)
    data = Compose(seg.builder(cfg).val_transforms)({"img": astronaut})
    mine = pred.preprocess({"img": cv2.imread(astronaut).astype("float32")})
    np.testing.assert_array_equal(mine["img"], data["img"])
    assert data["img"].shape == (3, 512, 512)  # ResizeByShort 512
    with paddle.no_grad():
        logits = model(paddle.to_tensor(data["img"][None]))[0]
    ref = paddle.argmax(logits, axis=1, keepdim=True).astype("float32")
    ref = reverse_transform(ref, data["trans_info"], mode="nearest").numpy()[0, 0].astype(np.int32)

    res = pred.predict(astronaut, output_dir=str(tmp_path / "masks"))
    assert len(res) == 1
    r = res[0]
    assert r["file"] == astronaut and r["label_map"].shape == (256, 256) and r["label_map"].dtype == np.int32
    assert (r["label_map"] != ref).mean() <= 1e-3  # argmax ties to float rounding may flip a pixel
    assert r["classes"] == sorted(int(c) for c in np.unique(r["label_map"]))
    assert r["mask"] == str(tmp_path / "masks" / "astronaut.png")
    png = Image.open(r["mask"])
    assert png.mode == "P" and png.size == (256, 256)
    np.testing.assert_array_equal(np.asarray(png), r["label_map"])  # palette indices are the classes
    # An RGB array gives what its file gives; without an output dir nothing is written.
    arr = np.asarray(Image.open(astronaut).convert("RGB"))
    from_array = pred.predict(arr)[0]
    assert from_array["file"] is None and from_array["mask"] is None
    np.testing.assert_array_equal(from_array["label_map"], r["label_map"])


def _boxes_array(boxes) -> np.ndarray:
    return np.array([[b["class_id"], b["score"], *b["bbox_xywh"]] for b in boxes], np.float64).reshape(-1, 6)


def _dygraph_boxes(cfg_path: str, ov, model, image: str):
    """The dygraph model on the TestReader's input: ([class, score, x, y, w, h] rows of the kept boxes,
    their masks or None), feeds."""
    import paddle

    from paddle_lk.integrations import det, det_infer

    cfg = det.load_det_config(cfg_path, ov)
    inputs = det_infer.prepare_inputs(cfg, image, det_infer.test_transforms(cfg))
    with paddle.no_grad():
        out = model(dict(inputs))
    bbox = out["bbox"].numpy()
    keep = bbox[:, 0] >= 0
    rows = np.concatenate([bbox[keep, :2], bbox[keep, 2:4], bbox[keep, 4:6] - bbox[keep, 2:4]], axis=1)
    return rows, (out["mask"].numpy()[keep] if "mask" in out else None), {k: v.numpy() for k, v in inputs.items()}


@pytest.mark.parametrize("which", ["retinanet", "mask_rcnn"])
def test_det_predictor_matches_the_dygraph_model(which, astronaut, tmp_path, request):
    from paddle_lk.integrations import det_infer

    cfg_path, ov, model, exp = request.getfixturevalue(f"{which}_export")
    ref, ref_masks, feeds = _dygraph_boxes(cfg_path, ov, model, astronaut)
    pred = paddle_lk.Predictor(exp, threshold=0.0)
    assert pred.task == "det" and pred.threshold == 0.0
    # PaddleDetection's operators from infer_cfg.yml + PadStride: the TestReader's input exactly
    _, mine = det_infer.deploy_inputs(astronaut, pred.preprocess, pred.stride)
    for k in feeds:
        np.testing.assert_array_equal(mine[k], feeds[k], err_msg=k)

    r = pred.predict(astronaut, output_dir=str(tmp_path / "drawn"))[0]
    got = _boxes_array(r["boxes"])
    assert len(got) == len(ref) > 0
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-3)  # oneDNN vs dygraph: float rounding only
    assert r["image"] == str(tmp_path / "drawn" / "astronaut.png")
    with Image.open(r["image"]) as drawn:
        assert drawn.size == (256, 256)
    if which == "mask_rcnn":
        assert r["masks"].shape == ref_masks.shape == (len(ref), 256, 256) and ref_masks.any()
        assert (r["masks"] != ref_masks).mean() < 1e-4  # pixels at the 0.5 threshold may flip
    else:
        assert "masks" not in r
    # The default threshold is infer_cfg.yml's draw_threshold; a higher one keeps fewer boxes.
    if which == "retinanet":
        draw_threshold = yaml.safe_load((exp / "infer_cfg.yml").read_text())["draw_threshold"]
        assert paddle_lk.Predictor(exp).threshold == draw_threshold
    cut = float(np.median(ref[:, 1]))
    pred.threshold = cut
    kept = pred.predict(astronaut)[0]
    assert kept["image"] is None
    assert len(kept["boxes"]) == int((ref[:, 1] >= cut).sum()) and min(b["score"] for b in kept["boxes"]) >= cut


def test_predict_tool_seg_and_det(seg_export, retinanet_export, astronaut, tmp_path):
    """tools/predict.py as a user runs it: JSON on stdout (no arrays), masks / drawings written."""
    from toolkit_helpers import last_json, run_tool

    seg_dir, det_dir = seg_export[3], retinanet_export[3]
    res = run_tool("predict", ["-m", seg_dir, "-i", astronaut, "--output", tmp_path / "seg"])
    assert res.returncode == 0, res.stderr[-3000:]
    (r,) = last_json(res.stdout)
    assert set(r) == {"file", "mask", "classes"} and r["file"] == astronaut
    assert r["mask"] == str(tmp_path / "seg" / "astronaut.png") and os.path.isfile(r["mask"])
    expected = paddle_lk.Predictor(seg_dir).predict(astronaut)[0]
    assert r["classes"] == expected["classes"]
    np.testing.assert_array_equal(np.asarray(Image.open(r["mask"])), expected["label_map"])

    res = run_tool("predict", ["-m", det_dir, "-i", astronaut, "--threshold", "0", "--output", tmp_path / "det"])
    assert res.returncode == 0, res.stderr[-3000:]
    (r,) = last_json(res.stdout)
    assert set(r) == {"file", "boxes", "image"} and r["image"] == str(tmp_path / "det" / "astronaut.png")
    assert os.path.isfile(r["image"]) and r["boxes"]
    assert set(r["boxes"][0]) == {"class_id", "label_name", "score", "bbox_xywh"}
    expected = paddle_lk.Predictor(det_dir, threshold=0.0).predict(astronaut)[0]
    np.testing.assert_allclose(_boxes_array(r["boxes"]), _boxes_array(expected["boxes"]), rtol=1e-5, atol=1e-4)


def test_predict_main_human_lines_and_default_output(seg_export, retinanet_export, astronaut, tmp_path,
                                                     capsys, monkeypatch):
    """Without --json: one line per image; without --output: output/predict under the working dir."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (folder / name).write_bytes(pathlib.Path(astronaut).read_bytes())
    monkeypatch.chdir(tmp_path)
    assert predict_main(["-m", str(seg_export[3]), "-i", str(folder)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    default = os.path.join("output", "predict")
    classes = paddle_lk.Predictor(seg_export[3]).predict(astronaut)[0]["classes"]  # the same image twice
    assert lines == [f"{folder / n} -> {os.path.join(default, n[0] + '.png')} (classes {classes})"
                     for n in ("a.jpg", "b.jpg")]
    assert (tmp_path / default / "a.png").is_file() and (tmp_path / default / "b.png").is_file()
    assert predict_main(["-m", str(retinanet_export[3]), "-i", str(folder), "--output", "drawn"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{folder / 'a.jpg'}: ")
    assert lines[0].endswith(f" boxes -> {os.path.join('drawn', 'a.png')}")


def test_predict_errors_name_the_file(seg_export, retinanet_export, astronaut, tmp_path, capsys):
    """Not an export, a missing deploy file, an unreadable image, no ONNX file: one error line, exit 2."""
    seg_dir, det_dir = seg_export[3], retinanet_export[3]

    def error(argv) -> str:
        assert predict_main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("error: ")
        return err

    empty = tmp_path / "empty"
    empty.mkdir()
    msg = error(["-m", str(empty), "-i", astronaut])
    assert str(empty) in msg and "not an export directory" in msg
    broken = tmp_path / "no_deploy"
    broken.mkdir()
    (broken / "export_info.json").write_text(json.dumps({"task": "det"}))
    assert str(broken / "infer_cfg.yml") in error(["-m", str(broken), "-i", astronaut])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    for model_dir in (seg_dir, det_dir):
        assert str(bad) in error(["-m", str(model_dir), "-i", str(bad)])
        assert str(tmp_path / "missing.jpg") in error(["-m", str(model_dir), "-i", str(tmp_path / "missing.jpg")])
        msg = error(["-m", str(model_dir), "-i", astronaut, "--backend", "onnx"])
        assert "no ONNX file" in msg and str(model_dir) in msg
    with pytest.raises(ConfigError, match="no ONNX file"):
        paddle_lk.Predictor(seg_dir, backend="onnx")
    (broken / "export_info.json").write_text(json.dumps({"task": "seg"}))
    with pytest.raises(FileNotFoundError, match="deploy.yaml"):
        paddle_lk.Predictor(broken)
    with pytest.raises(DataError, match="bad.jpg"):
        paddle_lk.Predictor(seg_dir).predict(str(bad))
