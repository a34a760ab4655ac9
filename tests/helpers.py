"""Shared test utilities (tiny configs and data, BN randomization)."""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time

import numpy as np
import yaml
from PIL import Image
import paddle
import paddle.nn as nn

from paddle_lk.layers.conv_bn import is_bn

TINY_REPLKNET = dict(large_kernel_sizes=[13, 11, 9, 7], layers=[1, 1, 2, 1], channels=[16, 32, 64, 128],
                     drop_path_rate=0.0, small_kernel=5, num_classes=10)
TINY_VAN = dict(embed_dims=[16, 32, 64, 128], depths=[1, 1, 2, 1], mlp_ratios=[8, 8, 4, 4], num_classes=10)


def randomize_bn(model: nn.Layer, seed: int = 0) -> nn.Layer:
    """Give every BN random statistics and affine parameters so a wrongly folded BN shows up."""
    rng = np.random.RandomState(seed)
    for layer in model.sublayers(include_self=True):
        if is_bn(layer):
            c = layer._mean.shape[0]
            layer._mean.set_value(rng.uniform(-0.5, 0.5, c).astype("float32"))
            layer._variance.set_value(rng.uniform(0.5, 2.0, c).astype("float32"))
            layer.weight.set_value(rng.uniform(0.5, 1.5, c).astype("float32"))
            layer.bias.set_value(rng.uniform(-0.5, 0.5, c).astype("float32"))
    return model


def max_rel_diff(a, b) -> float:
    """max |a - b| divided by the output scale max |a|."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))


def tiny_cls_data(root: pathlib.Path, n_train: int = 32, n_val: int = 8, size: int = 16) -> None:
    """4 classes of coloured squares at class-dependent positions, PaddleClas label-list layout."""
    rng = np.random.RandomState(0)
    for split, n in (("train", n_train), ("val", n_val)):
        lines = []
        os.makedirs(root / split, exist_ok=True)
        for i in range(n):
            c = i % 4
            img = (rng.rand(size, size, 3) * 60).astype(np.uint8)
            y0, x0 = (c // 2) * (size // 2), (c % 2) * (size // 2)
            img[y0:y0 + size // 2, x0:x0 + size // 2, c % 3] = 255
            Image.fromarray(img).save(root / split / f"{i}.png")
            lines.append(f"{split}/{i}.png {c}")
        (root / f"{split}_list.txt").write_text("\n".join(lines) + "\n")
    (root / "labels.txt").write_text("".join(f"{c} class_{c}\n" for c in range(4)))


def tiny_cls_config(tmp: pathlib.Path, **global_over) -> pathlib.Path:
    data = tmp / "data"
    if not data.exists():
        tiny_cls_data(data)
    norm = {"Normalize": {"mean": [127.5] * 3, "std": [127.5] * 3, "data_format": "HWC"}}
    cfg = {
        "Global": dict({"output_dir": str(tmp / "out"), "epochs": 2, "seed": 1, "image_shape": [3, 16, 16],
                        "print_batch_step": 2, "use_tqdm": False, "save_inference_dir": str(tmp / "out" / "inf"),
                        "device": "cpu"}, **global_over),
        "Arch": {"name": "RepLKNet31B", "class_num": 4, "channels": [8, 16], "layers": [1, 1],
                 "large_kernel_sizes": [7, 5], "small_kernel": 3, "drop_path_rate": 0.1},
        "EMA": {"decay": 0.9},
        "Loss": {"Train": [{"CELoss": {"epsilon": 0.1}}]},
        "Optimizer": {"name": "AdamW", "weight_decay": 0.05, "clip_norm": 5.0,
                      "lr": {"learning_rate": 0.01, "warmup_epoch": 1, "warmup_start_lr": 0.001, "eta_min": 0.0}},
        "DataLoader": {
            "Train": {"dataset": {"image_root": str(data), "cls_label_path": str(data / "train_list.txt"),
                                  "transform_ops": [{"RandomResizedCrop": {"size": 16, "scale": [0.5, 1.0]}},
                                                    {"RandomHorizontalFlip": {}}, {"RandAugment": {}}, norm,
                                                    {"RandomErasing": {"prob": 0.25}}, "ToCHW"],
                                  "batch_transform_ops": [{"Mixup": {"mixup_alpha": 0.8, "cutmix_alpha": 1.0}}]},
                      "sampler": {"batch_size": 8, "shuffle": True, "drop_last": True}},
            "Eval": {"dataset": {"image_root": str(data), "cls_label_path": str(data / "val_list.txt"),
                                 "transform_ops": [norm, "ToCHW"]},
                     "sampler": {"batch_size": 8}},
        },
        "Infer": {"PostProcess": {"topk": 2, "class_id_map_file": str(data / "labels.txt")}},
    }
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def assert_jit_roundtrip(deploy: nn.Layer, tmp: pathlib.Path, x: "paddle.Tensor") -> None:
    """``paddle.jit.save`` of a deploy model, loaded back, gives the dygraph outputs."""
    deploy.eval()
    expected = deploy(x).numpy()
    spec = [paddle.static.InputSpec([None] + list(x.shape[1:]), "float32")]
    path = str(tmp / "model")
    paddle.jit.save(paddle.jit.to_static(deploy, input_spec=spec, full_graph=True), path)
    loaded = paddle.jit.load(path)
    loaded.eval()
    np.testing.assert_allclose(loaded(x).numpy(), expected, rtol=1e-4, atol=1e-5)


def kill_when_checkpointed(cmd, checkpoint: pathlib.Path, env: dict, timeout: float = 300) -> None:
    """Start training ``cmd`` and SIGKILL it as soon as ``checkpoint`` exists (asserting it was killed
    mid-run, not after finishing)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + timeout
        while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
