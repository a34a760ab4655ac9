"""Issue 15: the UniRepLKNet classification configs -- the official recipe numbers, every config validates
and builds its (full-size, lazily built) model, and two of them train a couple of steps through
``tools/train.py`` with ``-o`` overrides that only shrink them (the ImageNet-1K recipe with Mixup/CutMix;
the 22K -> 1K fine-tune with layer decay, EMA and a 21841-class checkpoint whose head is re-initialised)."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import paddle
import pytest

import paddle_lk
from convert_helpers import to_torch_names
from paddle_lk.convert import save_torch_checkpoint
from paddle_lk.engine.builder import build_model
from paddle_lk.models import constructor_params
from paddle_lk.engine.config import load_config
from paddle_lk.engine.data import build_mixup
from paddle_lk.engine.transforms import build_transforms
from paddle_lk.models.unireplknet import VARIANT_CONFIGS

ROOT = pathlib.Path(__file__).resolve().parents[1]
PY = sys.executable
IN1K = {  # letter: (drop path, mixup, cutmix, GPUs in the official run) -- Image/README.md "ImageNet-1K Training"
    "A": (0.0, 0.3, 0.3, 4), "F": (0.0, 0.3, 0.3, 4), "P": (0.1, 0.3, 0.3, 4),
    "N": (0.1, 0.5, 0.5, 4), "T": (0.2, 0.8, 1.0, 4), "S": (0.4, 0.8, 1.0, 8),
}
FT = {  # letter: (drop path, epochs, label smoothing, EMA, GPUs) -- Image/README.md "Finetune ... with ImageNet-1K"
    "S": (0.2, 30, 0.1, False, 4), "B": (0.2, 30, 0.1, False, 4),
    "L": (0.3, 20, 0.3, True, 4), "XL": (0.3, 20, 0.3, True, 8),
}
CONFIGS = [f"UniRepLKNet_{k}.yaml" for k in IN1K] + [f"UniRepLKNet_{k}_22Kto1K_384.yaml" for k in FT]
TINY_ARCH = ["Arch.depths=[1,1,1,1]", "Arch.dims=[8,16,16,16]", "Arch.kernel_sizes=[[3],[13],[7],[5]]"]


def _cfg(name, overrides=()):
    return load_config(str(ROOT / "configs" / name), list(overrides))


def _total_batch(cfg, gpus):
    return cfg["DataLoader"]["Train"]["sampler"]["batch_size"] * cfg["Global"]["accum_steps"] * gpus


@pytest.mark.parametrize("name", CONFIGS)
def test_config_validates_and_builds(name):
    cfg = _cfg(name)
    for split in ("Train", "Eval"):
        build_transforms(cfg["DataLoader"][split]["dataset"]["transform_ops"], f"DataLoader.{split}")
    build_transforms(cfg["Infer"]["transforms"], "Infer.transforms")
    build_mixup(cfg["DataLoader"]["Train"]["dataset"].get("batch_transform_ops"), "b")
    arch = cfg["Arch"]
    assert set(arch) - {"name"} <= set(constructor_params(arch["name"])), arch
    with paddle.LazyGuard():
        model = build_model(cfg, load_pretrained=False)
    variant = VARIANT_CONFIGS[arch["name"]]
    assert (model.depths, model.dims, model.num_classes) == (variant["depths"], variant["dims"], 1000)
    assert not model.deploy  # trained in the train form; export re-parameterizes


@pytest.mark.parametrize("letter", sorted(IN1K))
def test_in1k_recipe_numbers(letter):
    drop_path, mixup, cutmix, gpus = IN1K[letter]
    cfg = _cfg(f"UniRepLKNet_{letter}.yaml")
    g, opt = cfg["Global"], cfg["Optimizer"]
    assert (g["epochs"], g["image_shape"], _total_batch(cfg, gpus)) == (300, [3, 224, 224], 4096)
    assert opt["name"] == "AdamW" and (opt["beta1"], opt["beta2"], opt["epsilon"]) == (0.9, 0.999, 1e-8)
    assert (opt["weight_decay"], opt["layer_decay"], opt["clip_norm"]) == (0.05, None, None)
    assert opt["lr"] == {"name": "Cosine", "learning_rate": 4e-3, "eta_min": 1e-6, "warmup_epoch": 20,
                         "warmup_start_lr": 0.0}
    assert cfg["Arch"]["drop_path_rate"] == drop_path and cfg["Arch"]["layer_scale_init_value"] == 1e-6
    assert "EMA" not in cfg  # the official 1K runs use none
    assert cfg["Loss"]["Train"] == [{"CELoss": {"weight": 1.0, "epsilon": 0.1}}]
    train = cfg["DataLoader"]["Train"]["dataset"]
    assert train["batch_transform_ops"] == [{"Mixup": {"mixup_alpha": mixup, "cutmix_alpha": cutmix, "prob": 1.0,
                                                       "switch_prob": 0.5}}]
    ops = {next(iter(op)): op[next(iter(op))] for op in train["transform_ops"] if isinstance(op, dict)}
    assert ops["RandAugment"] == {"num_layers": 2, "magnitude": 9, "magnitude_std": 0.5, "prob": 0.5}
    assert ops["RandomErasing"]["prob"] == 0.25 and ops["RandomResizedCrop"]["interpolation"] == "bicubic"
    assert cfg["DataLoader"]["Eval"]["dataset"]["transform_ops"][:2] == [
        {"Resize": {"size": 256, "interpolation": "bicubic"}}, {"CenterCrop": {"size": 224}}]


@pytest.mark.parametrize("letter", sorted(FT))
def test_22k_to_1k_recipe_numbers(letter):
    drop_path, epochs, smoothing, ema, gpus = FT[letter]
    cfg = _cfg(f"UniRepLKNet_{letter}_22Kto1K_384.yaml")
    g, opt = cfg["Global"], cfg["Optimizer"]
    assert (g["epochs"], g["image_shape"], _total_batch(cfg, gpus)) == (epochs, [3, 384, 384], 512)
    assert g["pretrained_model"].endswith(f"unireplknet_{letter.lower()}_in22k_pretrain.pth")
    assert (opt["weight_decay"], opt["layer_decay"]) == (1e-8, 0.8)
    assert opt["lr"]["learning_rate"] == 5e-5 and opt["lr"]["warmup_epoch"] == 0 and opt["lr"]["eta_min"] == 1e-6
    assert cfg["Arch"]["drop_path_rate"] == drop_path and cfg["Arch"]["head_init_scale"] == 0.001
    assert cfg["Loss"]["Train"][0]["CELoss"]["epsilon"] == smoothing
    assert (cfg.get("EMA") == {"decay": 0.9999, "eval": True}) if ema else "EMA" not in cfg
    assert not cfg["DataLoader"]["Train"]["dataset"].get("batch_transform_ops")  # no Mixup / CutMix
    # Evaluated at 384 by warping the whole image, no crop (the official datasets.py).
    assert cfg["DataLoader"]["Eval"]["dataset"]["transform_ops"][0] == {
        "Resize": {"size": [384, 384], "interpolation": "bicubic"}}


# ---------------------------------------------------------------------------------------------------
# A couple of training steps through tools/train.py
# ---------------------------------------------------------------------------------------------------
def _tiny_data(root: pathlib.Path):
    from helpers import tiny_cls_data as make

    if not root.exists():
        make(root, n_train=8, n_val=4)
    return root


def _shrink(tmp: pathlib.Path, data: pathlib.Path, eval_crop: bool):
    over = TINY_ARCH + [
        "Arch.class_num=4", f"Global.output_dir={tmp / 'out'}", f"Global.save_inference_dir={tmp / 'out' / 'inf'}",
        "Global.device=cpu", "Global.epochs=1", "Global.accum_steps=1", "Global.max_steps_per_epoch=2",
        "Global.use_visualdl=false", "Global.use_tqdm=false", "Global.print_batch_step=1",
        "Global.image_shape=[3,16,16]", "Optimizer.lr.warmup_epoch=0",
        "DataLoader.Train.dataset.transform_ops.0.RandomResizedCrop.size=16",
        "DataLoader.Train.sampler.batch_size=4", "DataLoader.Train.loader.num_workers=0",
        "DataLoader.Eval.sampler.batch_size=4", "DataLoader.Eval.loader.num_workers=0"]
    over += (["DataLoader.Eval.dataset.transform_ops.0.Resize.size=18",
              "DataLoader.Eval.dataset.transform_ops.1.CenterCrop.size=16"] if eval_crop else
             ["DataLoader.Eval.dataset.transform_ops.0.Resize.size=[16,16]"])
    for split, lst in (("Train", "train_list.txt"), ("Eval", "val_list.txt")):
        over += [f"DataLoader.{split}.dataset.image_root={data}", f"DataLoader.{split}.dataset.cls_label_path={data / lst}"]
    return over


def _train(cfg_name, overrides):
    args = [PY, str(ROOT / "tools" / "train.py"), "-c", str(ROOT / "configs" / cfg_name)]
    for o in overrides:
        args += ["-o", o]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(args, cwd=str(ROOT), capture_output=True, text=True, timeout=300, env=env)


def test_in1k_config_trains_two_steps(tmp_path):
    data = _tiny_data(tmp_path / "data")
    res = _train("UniRepLKNet_T.yaml", _shrink(tmp_path, data, eval_crop=True))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    state = paddle.load(str(tmp_path / "out" / "latest.pdckpt"))
    assert state["meta"]["updates"] == 2 and state["ema"] is None
    weights = state["model"]
    assert "stages.2.0.dwconv.dil_conv_k3_2.weight" in weights  # trained in the train form (7x7 DRB)
    assert all(np.isfinite(v.numpy()).all() for v in weights.values())


def test_22k_finetune_config_trains_two_steps(tmp_path, capsys):
    """L's recipe (layer decay 0.8, EMA, head_init_scale 0.001) from a 21841-class checkpoint, then export."""
    data = _tiny_data(tmp_path / "data")
    src = paddle_lk.create_model("UniRepLKNet_L", num_classes=21841, depths=[1, 1, 1, 1], dims=[8, 16, 16, 16],
                                 kernel_sizes=[[3], [13], [7], [5]])
    pretrained = tmp_path / "unireplknet_l_in22k_pretrain.pth"
    save_torch_checkpoint(to_torch_names(src), str(pretrained))  # an official-layout 22K checkpoint
    over = _shrink(tmp_path, data, eval_crop=False) + [f"Global.pretrained_model={pretrained}",
                                                      "DataLoader.Train.dataset.transform_ops.0.RandomResizedCrop.size=16"]
    res = _train("UniRepLKNet_L_22Kto1K_384.yaml", over)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    log = res.stdout + res.stderr + (tmp_path / "out" / "train.log").read_text()
    assert "21841" in log  # the 22K classifier is reported as not loaded
    state = paddle.load(str(tmp_path / "out" / "latest.pdckpt"))
    assert state["meta"]["updates"] == 2 and state["ema"] is not None
    head = state["model"]["head.weight"].numpy()
    assert head.shape == (16, 4) and 0 < np.abs(head).max() < 0.02  # fresh head at 0.001 x trunc-normal(.02)
    np.testing.assert_allclose(state["model"]["downsample_layers.0.0.weight"].numpy(),  # the 22K weights, fine-tuned
                               src.state_dict()["downsample_layers.0.0.weight"].numpy(), atol=1e-3)

    from paddle_lk.engine.cli import main

    out = tmp_path / "deploy"
    assert main("export", ["-c", str(ROOT / "configs" / "UniRepLKNet_L_22Kto1K_384.yaml"), "-w",
                           str(tmp_path / "out"), "--output", str(out), "-o", *over]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["paddle_inference_max_rel_diff"] <= summary["rtol"]


def test_complexity_benchmark_figures():
    """benchmarks/model_complexity.py compares with the registry's published figures, and counts them."""
    import importlib.util

    from paddle_lk.registry import model_cfg
    from paddle_lk.utils import count_flops, count_params

    spec = importlib.util.spec_from_file_location("model_complexity", ROOT / "benchmarks" / "model_complexity.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for name in VARIANT_CONFIGS:
        cfg = model_cfg(name)
        assert bench.PAPER[name] == (cfg.params_m, cfg.flops_g), name
    assert bench.PAPER_384["UniRepLKNet_XL"] == (386, 187.0)
    model = paddle_lk.reparameterize(paddle_lk.create_model("UniRepLKNet_A").eval())
    assert round(count_params(model) / 1e6, 1) == 4.4 and round(count_flops(model) / 1e9, 1) == 0.6
