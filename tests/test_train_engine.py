"""End-to-end engine tests on a tiny synthetic label-list dataset: train -> eval -> infer -> export
(Paddle Inference + ONNX vs dygraph), NaN stop, exact resume after SIGKILL, 2-process gloo training."""
import hashlib
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import paddle
import pytest
import yaml

from paddle_lk.engine.cli import main
from helpers import kill_when_checkpointed, tiny_cls_config as _tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
PY = sys.executable


def _model_state(path, part: str = "model") -> dict:
    return {k: v.numpy() for k, v in paddle.load(str(path))[part].items()}


def test_train_eval_infer_export(tmp_path, capsys):
    cfg = _tiny_config(tmp_path)
    assert main("train", ["-c", str(cfg), "-o", "Global.accum_steps=2"]) == 0
    out = tmp_path / "out"
    for name in ("latest.pdckpt", "best.pdckpt", "best_model.pdparams", "epoch_2.pdckpt", "train.log"):
        assert (out / name).is_file(), name
    assert list((out / "vdl").iterdir()), "no VisualDL logs"
    log = (out / "train.log").read_text()
    assert "eval (EMA)" in log and "images/s" in log and "eta " in log
    resolved = yaml.safe_load((out / "config.yaml").read_text())  # the config as run: -o and defaults applied
    assert resolved["Global"]["accum_steps"] == 2 and resolved["Optimizer"]["name"] == "AdamW"
    state = paddle.load(str(out / "latest.pdckpt"))
    assert state["meta"]["epoch"] == 2 and state["meta"]["updates"] == 4  # 4 steps/epoch, accum 2
    assert state["ema"] is not None and state["optimizer"]

    capsys.readouterr()
    assert main("eval", ["-c", str(cfg), "-w", str(out / "latest.pdckpt"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["samples"] == 8 and 0.0 <= result["top1"] <= 1.0
    assert "top5" not in result  # 4 classes: a top-5 says nothing (issue 16)

    assert main("infer", ["-c", str(cfg), "-w", str(out), "-i", str(tmp_path / "data" / "val"), "--json"]) == 0
    preds = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(preds) == 8 and len(preds[0]["class_ids"]) == 2
    assert preds[0]["label_names"][0].startswith("class_") and preds[0]["scores"][0] >= preds[0]["scores"][1]

    inf = tmp_path / "deploy"
    assert main("export", ["-c", str(cfg), "-w", str(out), "--onnx", "--output", str(inf)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["op"] == "native" and summary["onnxruntime_max_rel_diff"] <= summary["rtol"]
    assert summary["paddle_inference_max_rel_diff"] <= summary["rtol"]
    assert (inf / "inference.pdiparams").is_file() and (inf / "inference.onnx").is_file()
    assert not [p for p in inf.iterdir() if p.name.startswith(".export.")]  # temp dir cleaned up

    # Independent check of the deploy files against the trained weights.
    from paddle_lk import load_checkpoint
    from paddle_lk.engine.builder import build_model
    from paddle_lk.engine.config import load_config
    from paddle_lk.engine.export import run_onnxruntime, run_paddle_inference

    model = build_model(load_config(str(cfg)))
    load_checkpoint(model, str(out))
    model.eval()
    x = np.random.RandomState(5).rand(3, 3, 16, 16).astype("float32")
    ref = paddle.nn.functional.softmax(model(paddle.to_tensor(x)), axis=-1).numpy()  # PaddleClas's export appends it
    np.testing.assert_allclose(run_paddle_inference(str(inf), x), ref, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(run_onnxruntime(str(inf / "inference.onnx"), x), ref, atol=1e-4, rtol=1e-4)

    # Fine-tuning init (Global.pretrained_model) into a 5-class head: backbone copied, head re-initialised.
    from paddle_lk.engine.trainer import Trainer

    source = model.state_dict()
    for weights in (out / "latest.pdckpt", out / "best_model.pdparams"):
        trainer = Trainer(load_config(str(cfg), ["Arch.class_num=5", f"Global.pretrained_model={weights}"]))
        trainer._build()
        got = trainer.net.state_dict()
        assert list(got["head.weight"].shape) == [16, 5]
        if weights.name == "best_model.pdparams":
            np.testing.assert_array_equal(got["stem.0.conv.weight"].numpy(), source["stem.0.conv.weight"].numpy())
        assert not np.array_equal(got["stem.0.conv.weight"].numpy(), build_model(
            load_config(str(cfg), ["Arch.class_num=5"])).state_dict()["stem.0.conv.weight"].numpy())


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    cfg = _tiny_config(tmp_path)
    assert main("train", ["-c", str(cfg), "-o", "Optimizer.lr.learnig_rate=0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean 'Optimizer.lr.learning_rate'" in err
    bad_list = tmp_path / "bad_list.txt"
    bad_list.write_text("train/0.png 0\ntrain/1.png\n")
    assert main("train", ["-c", str(cfg), "-o", f"DataLoader.Train.dataset.cls_label_path={bad_list}"]) == 2
    assert "bad_list.txt:2:" in capsys.readouterr().err
    assert main("eval", ["-c", str(cfg), "-w", str(tmp_path / "none.pdparams")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "out" / "latest.pdckpt").exists()


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path, capsys):
    cfg = _tiny_config(tmp_path, epochs=1)
    assert main("train", ["-c", str(cfg)]) == 0
    latest = tmp_path / "out" / "latest.pdckpt"
    digest = hashlib.sha256(latest.read_bytes()).hexdigest()
    capsys.readouterr()
    # A NaN loss weight (YAML .nan) makes the first loss of the resumed epoch NaN.
    code = main("train", ["-c", str(cfg), "--resume", "-o", "Global.epochs=2", "-o", "Loss.Train.0.CELoss.weight=.nan"])
    err = capsys.readouterr().err
    assert code == 1 and "loss is nan at epoch 2, batch 1 (after " in err and "latest.pdckpt" in err
    assert hashlib.sha256(latest.read_bytes()).hexdigest() == digest
    assert paddle.load(str(latest))["meta"]["epoch"] == 1


def test_export_with_custom_op(tmp_path, capsys):
    from paddle_lk import ops

    if not ops.is_available():
        pytest.skip("the large-kernel custom op cannot be built here")
    cfg = _tiny_config(tmp_path, epochs=1, eval_during_train=False)
    assert main("train", ["-c", str(cfg)]) == 0
    capsys.readouterr()
    out = tmp_path / "custom"
    assert main("export", ["-c", str(cfg), "-w", str(tmp_path / "out"), "--with-custom-op",
                           "--output", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["op"] == "custom" and summary["paddle_inference_max_rel_diff"] <= summary["rtol"]
    program = next(p for p in out.iterdir() if p.name in ("inference.json", "inference.pdmodel"))
    assert b"lk_dwconv2d" in program.read_bytes()
    assert main("export", ["-c", str(cfg), "--with-custom-op", "--onnx", "--output", str(out)]) == 2
    assert "ONNX has no large-kernel custom op" in capsys.readouterr().err


def _train_cmd(cfg, *extra):
    return [PY, str(ROOT / "tools" / "train.py"), "-c", str(cfg), *extra]


def test_sigkill_resume_matches_uninterrupted(tmp_path):
    over = ["-o", "Global.save_step_interval=1", "-o", "Global.eval_during_train=false", "-o", "Global.epochs=3",
            "-o", "Global.use_visualdl=false"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ref_cfg = _tiny_config(tmp_path / "ref")
    subprocess.run(_train_cmd(ref_cfg, *over), check=True, env=env, capture_output=True, timeout=300)
    cfg = _tiny_config(tmp_path / "run")
    latest = tmp_path / "run" / "out" / "latest.pdckpt"
    kill_when_checkpointed(_train_cmd(cfg, *over), latest, env, timeout=240)
    meta = paddle.load(str(latest))["meta"]
    assert (meta["epoch"], meta["batch"]) < (3, 0)  # killed mid-run
    subprocess.run(_train_cmd(cfg, *over, "--resume"), check=True, env=env, capture_output=True, timeout=300)
    for part in ("model", "ema"):
        ref, got = _model_state(tmp_path / "ref" / "out" / "latest.pdckpt", part), _model_state(latest, part)
        assert ref.keys() == got.keys()
        for k in ref:
            np.testing.assert_array_equal(got[k], ref[k], err_msg=f"{part}: {k}")
    assert paddle.load(str(latest))["meta"]["updates"] == 12


def test_two_process_gloo_training_stays_in_sync(tmp_path):
    cfg = _tiny_config(tmp_path, epochs=1)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [PY, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir", str(tmp_path / "log"),
           str(ROOT / "tools" / "train.py"), "-c", str(cfg), "-o", "Global.device=cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280)
    logs = "".join(p.read_text(errors="replace") for p in sorted((tmp_path / "log").glob("workerlog.*")))
    assert proc.returncode == 0, logs[-3000:]
    assert "parameters identical on all 2 ranks" in logs
    assert "2 process(es)" in logs
    assert paddle.load(str(tmp_path / "out" / "latest.pdckpt"))["meta"]["world_size"] == 2
