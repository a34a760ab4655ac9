"""Issue 16: what an export directory holds for the toolkits' deploy code, and paddle_lk.Predictor /
tools/predict.py over it -- on the quickstart config as shipped (shrunk by -o only)."""
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
    """PaddleClas's own deploy preprocessing and post-processing, built from our inference.yml, give
    what paddle_lk.Predictor gives (the predictor object itself cannot run on Paddle 3.3: see
    paddle_lk.integrations.compat.paddleclas_deploy_predictor)."""
    pytest.importorskip("paddleclas")
    from paddleclas.deploy.python.postprocess import build_postprocess
    from paddleclas.deploy.python.preprocess import create_operators

    tmp, _ = quickstart_export
    deploy = yaml.safe_load((tmp / "inf" / "inference.yml").read_text())
    ops = create_operators(deploy["PreProcess"]["transform_ops"])
    post = build_postprocess(deploy["PostProcess"])
    image = sorted((tmp / "mnist" / "val").glob("*.png"))[0]
    x = np.asarray(Image.open(image).convert("RGB"))
    for op in ops:
        x = op(x)
    ours = paddle_lk.Predictor(tmp / "inf")
    logits = ours._run(x[None].astype("float32"))
    theirs = post(logits)[0]
    mine = ours.predict(str(image))[0]
    assert theirs["class_ids"] == mine["class_ids"] and theirs["label_names"] == mine["label_names"]
