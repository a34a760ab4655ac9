"""Issue 13: one command-line contract for classification, PaddleSeg and PaddleDetection configs.

The same flags mean the same thing for the three kinds of config (``-o`` typed overrides checked key by
key, ``-w`` in every weights format, ``--resume``, ``--eval``, ``--output``, ``--overwrite``, ``--json``),
a run killed with SIGKILL resumes to the same weights as an uninterrupted one, a NaN loss stops with
exit 1 keeping the last good checkpoint, VisualDL gets the scalars, and exports are re-parameterized.
Each config is a shipped one, shrunk by value overrides on tiny data in its toolkit's layout.
"""
from __future__ import annotations

import json
import os
import re
import subprocess

import numpy as np
import paddle
import pytest

pytest.importorskip("paddleseg")
pytest.importorskip("ppdet")

from helpers import kill_when_checkpointed, tiny_cls_config  # noqa: E402
from toolkit_helpers import (PY, ROOT, det_value_overrides, make_ade20k_layout, make_coco_layout,  # noqa: E402
                             seg_value_overrides)

from paddle_lk.engine.cli import main  # noqa: E402

SEG_CFG = str(ROOT / "configs" / "seg" / "replknet31b_upernet_ade20k_512x512_160k.yml")
DET_CFG = str(ROOT / "configs" / "det" / "van_b2_retinanet_fpn_1x_coco.yml")
KINDS = ("cls", "seg", "det")


def _setup(kind: str, tmp_path, **kw):
    """(config path, ``-o`` overrides) of a tiny run of ``kind`` with its data under ``tmp_path``."""
    if kind == "cls":
        over = {"epochs": kw.get("epochs", 2), "use_visualdl": kw.get("vdl", False), "eval_during_train": False}
        return str(tiny_cls_config(tmp_path, **over)), []
    if kind == "seg":
        data = make_ade20k_layout(tmp_path / "ADEChallengeData2016")
        ov = seg_value_overrides(SEG_CFG, data, iters=kw.get("iters", 2))[1]
        return SEG_CFG, ov + [f"use_visualdl={str(kw.get('vdl', False)).lower()}", "save_interval=2"]
    data = make_coco_layout(tmp_path / "coco")
    ov = det_value_overrides(DET_CFG, data, epochs=kw.get("epochs", 1))[1]
    return DET_CFG, ov + [f"use_vdl={str(kw.get('vdl', False)).lower()}"]


def _o(overrides):
    return [a for o in overrides for a in ("-o", o)]


def _model_state(path) -> dict:
    return {k: v.numpy() for k, v in paddle.load(str(path))["model"].items()}


# --------------------------------------------------------------------------------------------
# One parser

@pytest.mark.parametrize("mode", ["train", "eval", "infer", "export"])
def test_same_flags_for_every_kind(mode, capsys):
    from paddle_lk.engine.cli import build_parser

    text = build_parser(mode).format_help()
    for flag in ["-c", "-o", "-w", "--json"] + {"train": ["--resume", "--overwrite", "--eval", "--no-eval",
                                                         "--output"],
                                                "eval": ["--ema"], "infer": ["-i", "--topk", "--threshold", "--output"],
                                                "export": ["--output", "--onnx", "--opset", "--with-custom-op"]}[mode]:
        assert f" {flag}" in text, flag
    assert main(mode, ["--help"]) == 0


@pytest.mark.parametrize("kind,override,names", [
    ("cls", "Global.epohcs=3", ["Global.epohcs", "epochs"]),
    ("cls", "Arch.chanels=[8,16]", ["Arch.chanels", "channels"]),
    ("seg", "batch_sise=2", ["batch_sise", "batch_size"]),
    ("seg", "itres=2", ["itres", "iters"]),
    ("seg", "model.backbone.chanels=[8,16,16,16]", ["model.backbone.chanels", "channels"]),
    ("seg", "model.backbone.type=RepLKNet31b", ["RepLKNet31b", "RepLKNet31B"]),
    ("det", "epoh=2", ["epoh", "epoch"]),
    ("det", "VAN_b2.embed_dim=[8,16,16,16]", ["VAN_b2.embed_dim", "embed_dims"]),
    ("det", "TrainReader.batchsize=1", ["TrainReader.batchsize", "batch_size"]),
])
def test_config_typos_are_one_error_naming_the_key_and_the_nearest(kind, override, names, tmp_path, capsys):
    cfg, ov = _setup(kind, tmp_path)
    assert main("train", ["-c", cfg, *_o(ov), "-o", override, "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and all(n in err for n in names), err
    assert not (tmp_path / "out").exists()  # nothing written


def test_values_are_typed(tmp_path, capsys):
    from paddle_lk.integrations import det, seg

    cfg = seg.load_config(SEG_CFG, ["iters=7", "optimizer.weight_decay=1e-3", "model.backbone.channels=[8,16,16,16]",
                                    "test_config.is_slide=true"])
    assert cfg.dic["iters"] == 7 and cfg.dic["optimizer"]["weight_decay"] == 1e-3
    assert cfg.dic["model"]["backbone"]["channels"] == [8, 16, 16, 16] and cfg.dic["test_config"]["is_slide"] is True
    dcfg = det.load_det_config(DET_CFG, ["epoch=3", "LearningRate.base_lr=2e-4", "VAN_b2.depths=[1,1,1,1]"])
    assert dcfg.epoch == 3 and dcfg.LearningRate["base_lr"] == 2e-4 and dcfg.VAN_b2["depths"] == [1, 1, 1, 1]


# --------------------------------------------------------------------------------------------
# Train, resume, weights formats, output dirs

@pytest.mark.parametrize("kind", KINDS)
def test_run_layout_weights_formats_and_output_dir_rules(kind, tmp_path, capsys):
    cfg, ov = _setup(kind, tmp_path)
    out = tmp_path / "run"
    assert main("train", ["-c", cfg, *_o(ov), "--output", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert {"latest.pdckpt", "best_model.pdparams", "config.yaml", "train.log"} <= set(os.listdir(out))
    assert summary["output_dir"] == str(out) and summary["updates"] >= 1
    # Every weights format evaluates the same: run dir, best weights, training checkpoint.
    results = []
    for weights in (out, out / "best_model.pdparams", out / "latest.pdckpt"):
        assert main("eval", ["-c", cfg, *_o(ov), "-w", str(weights), "--json"]) == 0, capsys.readouterr().err
        results.append(json.loads(capsys.readouterr().out))
    assert results[0] == results[1] == results[2]
    # The dir holds a run: a new run is refused, --resume continues it, --overwrite starts over.
    assert main("train", ["-c", cfg, *_o(ov), "--output", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main("train", ["-c", cfg, *_o(ov), "--output", str(out), "--resume", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["updates"] == summary["updates"]  # already complete
    assert main("train", ["-c", cfg, *_o(ov), "--output", str(out), "--overwrite", "--json"]) == 0
    capsys.readouterr()
    # Resuming with another model is refused before anything is built.
    other = {"cls": ["Arch.channels=[8,24]"], "seg": ["model.backbone.channels=[8,16,16,24]"],
             "det": ["VAN_b2.embed_dims=[8,16,16,24]"]}[kind]
    assert main("train", ["-c", cfg, *_o(ov + other), "--output", str(out), "--resume"]) == 2
    assert "channels" in capsys.readouterr().err or kind == "det"


def _train_cmd(cfg, ov, *extra):
    return [PY, str(ROOT / "tools" / "train.py"), "-c", cfg, *_o(ov), *extra]


@pytest.mark.parametrize("kind", ["seg", "det"])
def test_sigkill_then_resume_gives_the_uninterrupted_weights(kind, tmp_path):
    cfg, ov = _setup(kind, tmp_path, iters=24, epochs=10)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    ref, run = tmp_path / "ref", tmp_path / "run"
    subprocess.run(_train_cmd(cfg, ov, "--output", str(ref)), check=True, env=env, capture_output=True, timeout=600)
    latest = run / "latest.pdckpt"
    kill_when_checkpointed(_train_cmd(cfg, ov, "--output", str(run)), latest, env)
    done = paddle.load(str(latest))["meta"]["updates"]
    total = paddle.load(str(ref / "latest.pdckpt"))["meta"]["updates"]
    assert 0 < done < total
    subprocess.run(_train_cmd(cfg, ov, "--output", str(run), "--resume"), check=True, env=env, capture_output=True,
                   timeout=600)
    want, got = _model_state(ref / "latest.pdckpt"), _model_state(latest)
    assert want.keys() == got.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


@pytest.mark.parametrize("kind,nan", [("seg", "optimizer.weight_decay=.nan"),
                                      ("det", "OptimizerBuilder.optimizer.weight_decay=.nan")])
def test_nan_loss_stops_with_exit_1_and_keeps_the_checkpoint(kind, nan, tmp_path, capsys):
    cfg, ov = _setup(kind, tmp_path)
    out = tmp_path / "run"
    assert main("train", ["-c", cfg, *_o(ov), "--output", str(out)]) == 0
    before = _model_state(out / "latest.pdckpt")
    capsys.readouterr()
    longer = ["iters=4"] if kind == "seg" else ["epoch=2"]
    code = main("train", ["-c", cfg, *_o(ov + longer + [nan]), "--output", str(out), "--resume"])
    err = capsys.readouterr().err
    assert code == 1 and ("loss is nan" in err or "weights are not finite" in err), err[-2000:]
    assert "the last good checkpoint is " + str(out / "latest.pdckpt") in err
    after = _model_state(out / "latest.pdckpt")
    assert all(np.array_equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("kind", KINDS)
def test_visualdl_gets_the_training_scalars(kind, tmp_path, capsys):
    cfg, ov = _setup(kind, tmp_path, vdl=True)
    out = tmp_path / "run"
    extra = ["--eval"] if kind != "cls" else ["-o", "Global.eval_during_train=true"]
    assert main("train", ["-c", cfg, *_o(ov), "--output", str(out), *extra]) == 0, capsys.readouterr().err[-2000:]
    from visualdl import LogReader

    files = [f for f in os.listdir(out / "vdl") if f.startswith("vdlrecords")]
    assert files
    tags = LogReader(file_path=str(out / "vdl" / files[0])).get_tags()["scalar"]
    primary = {"cls": "eval/top1", "seg": "eval/mIoU", "det": "eval/bbox_mAP"}[kind]
    assert {"train/loss", "train/lr", primary} <= set(tags), tags


# --------------------------------------------------------------------------------------------
# Export: re-parameterized for every task, verified in a default predictor

def _numel(tensors) -> int:
    return sum(int(np.prod(v.shape)) for v in tensors)


FCOS_CFG = str(ROOT / "configs" / "det" / "replknet31b_fcos_fpn_2x_coco.yml")


def _export_case(kind, tmp_path):
    """(config, overrides, train-form model) of a RepLKNet-31B-family model of each task."""
    if kind == "cls":
        from paddle_lk.engine.builder import build_model
        from paddle_lk.engine.config import load_config

        cfg = str(tiny_cls_config(tmp_path))
        return cfg, [], build_model(load_config(cfg), load_pretrained=False)
    if kind == "seg":
        from paddle_lk.integrations import seg

        ov = seg_value_overrides(SEG_CFG)[1]
        return SEG_CFG, ov, seg.builder(seg.load_config(SEG_CFG, ov)).model
    from paddle_lk.integrations import det

    ov = det_value_overrides(FCOS_CFG, score_threshold=0.0)[1]
    return FCOS_CFG, ov, det.build_model(det.load_det_config(FCOS_CFG, ov))


@pytest.mark.parametrize("kind", KINDS)
def test_export_is_the_reparameterized_model_verified_in_paddle_inference(kind, tmp_path, capsys):
    import paddle_lk

    cfg, ov, model = _export_case(kind, tmp_path)
    paddle.save(model.state_dict(), str(tmp_path / "w.pdparams"))
    train_keys = list(model.state_dict())
    assert any(".small_conv." in k for k in train_keys)  # the parallel small-kernel branches (with BN)
    train_numel = _numel(model.state_dict().values())
    model.eval()
    deploy = paddle_lk.reparameterize(model, fuse_bn=True)
    assert not any(".small_conv." in k for k in deploy.state_dict())
    # the inference program: no auxiliary seg head; constants kept as buffers outside the state dict
    kept = {k: v for k, v in dict(deploy.state_dict(), **dict(deploy.named_buffers())).items() if "aux" not in k}
    deploy_numel = _numel(kept.values())
    assert deploy_numel < train_numel
    out = tmp_path / "exp"
    assert main("export", ["-c", cfg, *_o(ov), "-w", str(tmp_path / "w.pdparams"), "--output", str(out),
                           "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["paddle_inference_max_rel_diff"] <= info["rtol"]  # a default (oneDNN) predictor, two input sizes
    assert len(info["verified_input_shapes"]) == 2
    prefix = out / ("inference" if kind == "cls" else "model")
    program = _numel(paddle.jit.load(str(prefix)).state_dict().values())
    assert program <= deploy_numel  # every small-kernel branch and branch BN merged away
    assert paddle.get_device() == "cpu"


def test_iteration_based_runs_save_and_evaluate_at_every_interval(tmp_path, capsys):
    """PaddleSeg's iters / save_interval: iter_<n> checkpoints and an evaluation at every interval, whether or
    not it ends an epoch (here 1 batch per epoch, so every one does)."""
    cfg, ov = _setup("seg", tmp_path, iters=8)
    out = tmp_path / "run"
    assert main("train", ["-c", cfg, *_o(ov + ["save_interval=3", "keep_checkpoint_max=2"]), "--output", str(out),
                          "--eval"]) == 0
    err = capsys.readouterr().err
    assert [int(n) for n in re.findall(r"iter (\d+) eval:", err)] == [3, 6, 8]
    assert sorted(p.name for p in out.glob("iter_*.pdckpt")) == ["iter_6.pdckpt", "iter_8.pdckpt"]
    assert not list(out.glob("epoch_*.pdckpt"))


def test_refused_commands_write_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = str(ROOT / "configs" / "quickstart.yaml")
    for mode in ("eval", "infer", "export"):
        assert main(mode, ["-c", cfg]) == 2
        assert "-w random" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # no data prepared, no log file, no output dir


def test_train_output_also_holds_the_export_after_training(tmp_path, capsys):
    cfg, ov = _setup("cls", tmp_path, epochs=1)
    out = tmp_path / "elsewhere"
    assert main("train", ["-c", cfg, "-o", "Global.export_after_train=true", "--output", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["export"] == str(out / "inference")
    assert (out / "inference" / "inference.yml").is_file()


@pytest.mark.parametrize("kind,workers", [("seg", 0), ("seg", 2), ("det", 0), ("det", 2)])
def test_a_corrupt_image_is_one_error_naming_the_file(kind, workers, tmp_path, capsys):
    cfg, ov = _setup(kind, tmp_path)
    images = sorted((tmp_path / "ADEChallengeData2016" / "images" / "training").glob("*.jpg")) if kind == "seg" \
        else sorted((tmp_path / "coco" / "train2017").glob("*.jpg"))
    images[0].write_bytes(b"not an image")
    setting = "num_workers" if kind == "seg" else "worker_num"
    code = main("train", ["-c", cfg, *_o(ov + [f"{setting}={workers}"]), "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and err.startswith("error: ") and images[0].name in err, err


# --------------------------------------------------------------------------------------------
# What a newcomer tried: every one is one error line, exit 2, nothing written

def test_resume_across_tasks_is_refused_before_anything_is_built(tmp_path, capsys):
    cls_cfg, cls_ov = _setup("cls", tmp_path / "c", epochs=1)
    assert main("train", ["-c", cls_cfg, "--output", str(tmp_path / "cls")]) == 0
    seg_cfg, seg_ov = _setup("seg", tmp_path / "s")
    assert main("train", ["-c", seg_cfg, *_o(seg_ov), "--output", str(tmp_path / "seg")]) == 0
    capsys.readouterr()
    det_cfg, det_ov = _setup("det", tmp_path / "d")
    cases = [(det_cfg, det_ov, tmp_path / "cls" / "latest.pdckpt", "classification"),
             (seg_cfg, seg_ov, tmp_path / "cls" / "latest.pdckpt", "classification"),
             (cls_cfg, [], tmp_path / "seg" / "latest.pdckpt", "segmentation")]
    for cfg, ov, ckpt, other in cases:
        out = tmp_path / f"new_{other}_{os.path.basename(cfg)}"
        assert main("train", ["-c", cfg, *_o(ov), "--resume", str(ckpt), "--output", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("error: ") and other in err and "--resume" in err, err
        assert not out.exists()


def test_bad_run_settings_name_the_key(tmp_path, capsys):
    for kind, bad, key in [("seg", "batch_size=0", "batch_size"), ("seg", "log_iters=0", "log_iters"),
                           ("seg", "num_workers=-1", "num_workers"), ("seg", "iters=abc", "iters"),
                           ("det", "TrainReader.batch_size=0", "TrainReader.batch_size"),
                           ("det", "worker_num=-1", "worker_num"), ("det", "epoch=abc", "epoch"),
                           ("cls", "Arch.channels=16", "Arch")]:
        cfg, ov = _setup(kind, tmp_path / kind)
        out = tmp_path / f"out_{key}"
        assert main("train", ["-c", cfg, *_o(ov + [bad]), "--output", str(out)]) == 2, bad
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("error: ") and key in err, (bad, err)
        assert not out.exists(), bad  # a refused run leaves no config.yaml / train.log behind


def test_flags_that_contradict_or_do_not_apply_are_refused(tmp_path, capsys):
    cfg, _ = _setup("cls", tmp_path, epochs=1)
    (tmp_path / "afile").write_text("x")
    for mode, argv, says in [
            ("train", ["--resume", "--overwrite"], "--overwrite"),
            ("infer", ["-w", "random", "--threshold", "0.3"], "--threshold"),
            ("infer", ["-w", "random", "--topk", "-1"], "--topk"),
            ("train", ["--output", str(tmp_path / "afile")], "afile"),
            ("export", ["-w", "random", "--onnx", "--opset", "99"], "--opset")]:
        assert main(mode, ["-c", cfg, *argv]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert "error" in err and says in err, (argv, err)


def test_re_export_replaces_every_file_of_the_previous_export(tmp_path, capsys):
    cfg, _ = _setup("cls", tmp_path, epochs=1)
    out = tmp_path / "exp"
    assert main("export", ["-c", cfg, "-w", "random", "--onnx", "--output", str(out)]) == 0
    assert (out / "inference.onnx").is_file()
    assert main("export", ["-c", cfg, "-w", "random", "--output", str(out)]) == 0
    assert not (out / "inference.onnx").exists()  # would be the previous model for --backend onnx
    capsys.readouterr()
    (out / "inference.pdiparams").write_bytes(b"truncated")
    from paddle_lk.engine.cli import predict_main

    assert predict_main(["-m", str(out), "-i", str(tmp_path / "data" / "val" / "0.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "cannot load the exported model" in err, err


def test_console_output_survives_a_closed_pipe(tmp_path):
    console = os.path.join(os.path.dirname(PY), "paddle_lk")
    if not os.path.isfile(console):
        pytest.skip("console script not installed")
    err = tmp_path / "err.txt"
    res = subprocess.run(f"{console} models 2>{err} | head -1; exit ${{PIPESTATUS[0]}}", shell=True,
                         executable="/bin/bash", capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.startswith("model") and "Traceback" not in err.read_text()


def test_seg_label_values_beyond_num_classes_are_a_data_error(tmp_path, capsys):
    """A user's own PaddleSeg Dataset whose label PNGs hold ids >= num_classes: one error line, exit 2."""
    cfg, ov = _setup("seg", tmp_path)
    root = tmp_path / "ADEChallengeData2016"
    pairs = [(p.relative_to(root), (root / "annotations" / "training" / p.name).with_suffix(".png").relative_to(root))
             for p in sorted((root / "images" / "training").glob("*.jpg"))]
    (root / "train.txt").write_text("".join(f"{a} {b}\n" for a, b in pairs))
    dataset = {"type": "Dataset", "dataset_root": str(root), "train_path": str(root / "train.txt"), "num_classes": 3,
               "mode": "train", "transforms": [{"type": "RandomPaddingCrop", "crop_size": [64, 64]},
                                              {"type": "Normalize"}]}
    over = [o for o in ov if not o.startswith(("train_dataset.", "val_dataset."))]
    val = dict(dataset, mode="val", val_path=dataset.pop("train_path"), transforms=[{"type": "Normalize"}])
    dataset["train_path"] = val["val_path"]
    over += [f"train_dataset={json.dumps(dataset)}", f"val_dataset={json.dumps(val)}", "model.num_classes=3"]
    code = main("train", ["-c", cfg, *_o(over), "--output", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and err.startswith("error: ") and "num_classes (3)" in err, err
