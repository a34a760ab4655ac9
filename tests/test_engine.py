"""Engine units: config validation/overrides, data formats and their errors, transforms, sampler,
Mixup, loss, optimizer/schedule. Fast: no training loops (those are in test_train_engine.py)."""
import glob
import os
import pathlib
import random

import numpy as np
import paddle
import pytest
import yaml
from PIL import Image

from paddle_lk.engine import config as C
from paddle_lk.engine.builder import SoftTargetCrossEntropy, build_model
from paddle_lk.engine.data import ClassificationDataset, SampleSource, Mixup, ResumableBatchSampler, \
    build_mixup, check_data_exists, read_label_list
from paddle_lk.engine.optim import build_lr_scheduler, build_optimizer, layer_ids, split_decay_params
from paddle_lk.engine.transforms import RandAugment, build_transforms

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted(glob.glob(str(ROOT / "configs" / "*.yaml")))


def _minimal(**extra):
    cfg = {"Arch": {"name": "RepLKNet31B", "class_num": 4},
           "DataLoader": {"Train": {"dataset": {"image_root": "x", "cls_label_path": "x/l.txt",
                                                "transform_ops": ["ToCHW"]}}}}
    cfg.update(extra)
    return cfg


# ----------------------------------------------------------------------------- config
def test_unknown_key_names_path_and_closest_key():
    cfg = _minimal(Optimizer={"lr": {"learnig_rate": 0.1}})
    with pytest.raises(C.ConfigError, match=r"Optimizer\.lr\.learnig_rate.*did you mean 'Optimizer\.lr\.learning_rate'"):
        C.validate_config(cfg)
    with pytest.raises(C.ConfigError, match=r"'Globl'.*did you mean 'Global'"):
        C.validate_config(_minimal(Globl={}))
    with pytest.raises(C.ConfigError, match=r"DataLoader\.Train\.sampler\.batchsize.*'DataLoader\.Train\.sampler\.batch_size'"):
        C.validate_config(_minimal(DataLoader={"Train": {"sampler": {"batchsize": 2}, "dataset": {}}}))


def test_bad_value_type_and_choice():
    with pytest.raises(C.ConfigError, match=r"Global\.epochs: expected int, got 'ten'"):
        C.validate_config(_minimal(Global={"epochs": "ten"}))
    with pytest.raises(C.ConfigError, match=r"Global\.use_visualdl: expected bool"):
        C.validate_config(_minimal(Global={"use_visualdl": 1}))
    with pytest.raises(C.ConfigError, match=r"Optimizer\.name: 'adamw'.*did you mean 'AdamW'"):
        C.validate_config(_minimal(Optimizer={"name": "adamw"}))
    with pytest.raises(C.ConfigError, match=r"Global\.epochs: must be >= 1"):
        C.validate_config(_minimal(Global={"epochs": 0}))


def test_overrides_parse_and_validate(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_minimal()))
    cfg = C.load_config(str(path), ["Global.epochs=3", "Optimizer.lr.learning_rate=1e-3",
                                    "DataLoader.Train.dataset.transform_ops.0=ToCHW", "Arch.channels=[8, 16]"])
    assert cfg["Global"]["epochs"] == 3 and cfg["Optimizer"]["lr"]["learning_rate"] == pytest.approx(1e-3)
    assert cfg["Arch"]["channels"] == [8, 16]
    assert cfg["Optimizer"]["weight_decay"] == 0.05  # defaults filled in
    with pytest.raises(C.ConfigError, match=r"-o Glo\.epochs=3.*did you mean 'Global'"):
        C.load_config(str(path), ["Glo.epochs=3"])
    with pytest.raises(C.ConfigError, match=r"Global\.epoch'.*did you mean 'Global\.epochs'"):
        C.load_config(str(path), ["Global.epoch=3"])
    with pytest.raises(C.ConfigError, match="expected Section.key=value"):
        C.load_config(str(path), ["Global.epochs"])


def test_yaml_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("Global:\n  epochs: 3\n   seed: [1\n")
    with pytest.raises(C.ConfigError, match=r"bad\.yaml:\d+: invalid YAML"):
        C.load_config(str(bad))
    with pytest.raises(C.ConfigError, match="not found"):
        C.load_config(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.basename(p) for p in CONFIGS])
def test_shipped_configs_validate(path):
    cfg = C.load_config(path)
    for split in ("Train", "Eval"):
        build_transforms(cfg["DataLoader"][split]["dataset"]["transform_ops"], f"DataLoader.{split}")
    build_mixup(cfg["DataLoader"]["Train"]["dataset"].get("batch_transform_ops"), "b")
    # Arch keys are checked against the constructor without building the (large) model.
    from paddle_lk.models import constructor_params
    from paddle_lk.registry import list_models

    if cfg["Arch"]["name"] in list_models():
        valid = constructor_params(cfg["Arch"]["name"])
        assert all(k in valid + ["name", "pretrained", "refocus"] for k in cfg["Arch"]), cfg["Arch"]


def test_replknet31b_recipe_numbers():
    cfg = C.load_config(str(ROOT / "configs" / "RepLKNet31B.yaml"))
    assert cfg["Global"]["epochs"] == 300 and cfg["Arch"]["drop_path_rate"] == 0.5
    assert cfg["Optimizer"]["lr"]["learning_rate"] == 4e-3 and cfg["Optimizer"]["lr"]["warmup_epoch"] == 10
    assert cfg["Optimizer"]["weight_decay"] == 0.05 and cfg["EMA"]["decay"] == 0.9999
    assert cfg["DataLoader"]["Train"]["sampler"]["batch_size"] * cfg["Global"]["accum_steps"] * 8 == 2048
    refconv = C.load_config(str(ROOT / "configs" / "RefConv_MobileNetV2.yaml"))
    assert refconv["Optimizer"]["name"] == "Momentum" and refconv["Optimizer"]["lr"]["learning_rate"] == 0.1
    assert refconv["Optimizer"]["weight_decay"] == 4e-5 and refconv["Global"]["epochs"] == 105


def test_missing_dataset_says_where_and_how(tmp_path):
    cfg = C.load_config(str(ROOT / "configs" / "RepLKNet31B.yaml"),
                        [f"DataLoader.Train.dataset.image_root={tmp_path}/nope"])
    with pytest.raises(C.DataError, match=r"image_root '.*nope' is not a directory.*-o DataLoader\.Train\.dataset\.image_root="):
        check_data_exists(cfg, "Train")


def test_arch_errors():
    cfg = C.validate_config(_minimal(Arch={"name": "RepLKNet31B", "class_num": 4, "kernel_sizes": [3]}))
    with pytest.raises(C.ConfigError, match=r"Arch\.kernel_sizes'.*did you mean 'Arch\.large_kernel_sizes'"):
        build_model(cfg)
    cfg = C.validate_config(_minimal(Arch={"name": "RepLKNet31C", "class_num": 4}))
    with pytest.raises(C.ConfigError, match="unknown model 'RepLKNet31C'"):
        build_model(cfg)
    cfg = C.validate_config(_minimal(Arch={"name": "VAN_b0", "class_num": 4, "use_checkpoint": True}))
    with pytest.raises(C.ConfigError, match=r"VAN_b0 does not take this argument.*Arch\.use_checkpoint"):
        build_model(cfg)


def test_transform_errors():
    with pytest.raises(C.ConfigError, match=r"ops\[0\]\.RandomResizedCrop\.sizee'.*'ops\[0\]\.RandomResizedCrop\.size'"):
        build_transforms([{"RandomResizedCrop": {"sizee": 3}}], "ops")
    with pytest.raises(C.ConfigError, match=r"did you mean 'ops\[1\]\.RandomHorizontalFlip'"):
        build_transforms(["ToCHW", {"RandomHorizontalFlp": {}}], "ops")


# ----------------------------------------------------------------------------- data
def _write_images(root, n=4, size=12):
    os.makedirs(root, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((size, size, 3), i * 40, np.uint8)).save(os.path.join(root, f"{i}.png"))


def test_label_list_errors_name_file_and_line(tmp_path):
    _write_images(tmp_path / "img")
    good = tmp_path / "list.txt"
    good.write_text("img/0.png 0\n\nimg/1.png 1\n")
    assert [s[1] for s in read_label_list(str(good), str(tmp_path))] == [0, 1]
    bad = tmp_path / "bad.txt"
    bad.write_text("img/0.png 0\nimg/1.png\n")
    with pytest.raises(C.DataError, match=r"bad\.txt:2: expected '<relative/image/path> <int label>'"):
        read_label_list(str(bad), str(tmp_path))
    bad.write_text("img/0.png zero\n")
    with pytest.raises(C.DataError, match=r"bad\.txt:1: label 'zero' is not an integer"):
        read_label_list(str(bad), str(tmp_path))
    missing = tmp_path / "missing.txt"
    missing.write_text("img/0.png 0\nimg/9.png 1\n")
    with pytest.raises(C.DataError, match=r"img/9\.png: image not found \(listed in .*missing\.txt:2\)"):
        ClassificationDataset(str(tmp_path), str(missing), None)
    with pytest.raises(C.DataError, match=r"list\.txt:3: label 1 >= Arch\.class_num \(1\)"):
        ClassificationDataset(str(tmp_path), str(good), None, num_classes=1)


def test_class_per_folder_and_seeded_augmentation(tmp_path):
    for cls in ("cat", "dog"):
        _write_images(tmp_path / cls, n=3, size=20)
    t = build_transforms([{"RandomResizedCrop": {"size": 8}}, {"RandAugment": {}}, "ToCHW"], "t")
    plain = ClassificationDataset(str(tmp_path), None, t)
    ds = SampleSource(plain, seed=3)
    assert len(ds) == 6 and ds.class_names == {0: "cat", 1: "dog"} and int(ds[4][1]) == 1
    a, b, c = ds[(2, 5)][0], ds[(2, 5)][0], ds[(2, 6)][0]
    assert a.shape == (3, 8, 8) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)  # same (seed, epoch, index) -> same augmentation
    assert not np.array_equal(a, c) or not np.array_equal(ds[(3, 5)][0], ds[(3, 6)][0])


def test_randaugment_applies_ops():
    random.seed(0)
    img = Image.fromarray((np.arange(32 * 32 * 3) % 251).astype(np.uint8).reshape(32, 32, 3))
    ra = RandAugment(num_layers=2, magnitude=9, prob=1.0)
    outs = [np.asarray(ra(img)) for _ in range(5)]
    assert all(o.shape == (32, 32, 3) for o in outs)
    assert sum(not np.array_equal(o, np.asarray(img)) for o in outs) >= 4
    with pytest.raises(ValueError, match="unknown ops"):
        RandAugment(ops=["Blur"])


def test_sampler_order_resume_and_shards():
    s = ResumableBatchSampler(10, 3, shuffle=True, seed=1)
    s.set_epoch(2)
    full = list(s)
    s.set_epoch(2, start_batch=2)
    assert list(s) == full[2:] and len(s) == len(full) - 2
    s.set_epoch(3)
    assert list(s) != full
    assert all(e == 2 for batch in full for _, e in batch)
    shards = []
    for rank in range(3):
        r = ResumableBatchSampler(10, 2, shuffle=True, seed=1, rank=rank, world_size=3)
        r.set_epoch(0)
        shards.append([i for b in r for i, _ in b])
    assert len({len(x) for x in shards}) == 1  # same number of steps on every rank
    assert set(sum(shards, [])) == set(range(10))


def test_mixup_cutmix_targets():
    x = paddle.to_tensor(np.stack([np.full((1, 8, 8), v, np.float32) for v in (0.0, 1.0)]))
    target = paddle.to_tensor(np.eye(2, dtype=np.float32))
    for mix_alpha, cut_alpha in ((1.0, 0.0), (0.0, 1.0)):
        xm, tm = Mixup(mix_alpha, cut_alpha)(x, target, np.random.RandomState(0))
        lam = float(tm[0, 0])
        assert 0.0 < lam < 1.0 and np.allclose(tm.numpy().sum(1), 1.0)
        # The first image's mean equals its target weight on class 1 (pixel value 1 comes from image 1).
        assert float(xm[0].mean()) == pytest.approx(1.0 - lam, abs=1e-5)


def test_soft_target_loss_matches_paddle_ce():
    logits = paddle.randn([4, 5])
    label = paddle.to_tensor([0, 3, 1, 4])
    ref = paddle.nn.functional.cross_entropy(logits, label)
    assert float(SoftTargetCrossEntropy(5)(logits, label)) == pytest.approx(float(ref), rel=1e-5)
    smooth = paddle.nn.functional.cross_entropy(logits, label, label_smoothing=0.1) \
        if "label_smoothing" in paddle.nn.functional.cross_entropy.__code__.co_varnames else None
    if smooth is not None:
        assert float(SoftTargetCrossEntropy(5, 0.1)(logits, label)) == pytest.approx(float(smooth), rel=1e-4)


# ----------------------------------------------------------------------------- optimizer / schedule
def test_weight_decay_split_and_layer_decay():
    import paddle_lk

    model = paddle_lk.create_model("VAN_b0", class_num=3, depths=[1, 1, 1, 1])
    decay, no_decay, names = split_decay_params(model, {"one_dim_param_no_weight_decay": True})
    assert any("layer_scale" in n for n in names) and any(n.endswith("bias") for n in names)
    assert all(len(p.shape) > 1 for p in decay)
    narrow = paddle_lk.create_model("RepLKNet31B", class_num=3, channels=[4, 4, 4, 4])  # 31B's depth, cheap
    ids = layer_ids(narrow)
    assert ids["stem.0.conv.weight"] == 0 and ids["head.weight"] == 13
    assert ids["stages.2.blocks.0.pw1.conv.weight"] == 3 and ids["stages.3.blocks.0.pw1.conv.weight"] == 12


def test_warmup_cosine_schedule_and_optimizer_groups():
    cfg = C.validate_config(_minimal(Global={"epochs": 4}, Optimizer={
        "name": "Momentum", "weight_decay": 1e-4,
        "lr": {"learning_rate": 0.1, "warmup_epoch": 1, "warmup_start_lr": 0.0, "eta_min": 0.0}}))
    sched = build_lr_scheduler(cfg, updates_per_epoch=10)
    lrs = []
    for _ in range(40):
        lrs.append(sched())
        sched.step()
    assert lrs[0] == 0.0 and lrs[10] == pytest.approx(0.1) and lrs[5] == pytest.approx(0.05)
    assert lrs[25] == pytest.approx(0.05, rel=1e-6) and lrs[-1] < 1e-3
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4))
    opt = build_optimizer(cfg, model, sched)
    # Paddle's Momentum stores a group's L2 decay as regularization_coeff: conv weight 1e-4, BN + bias 0.
    coeffs = {len(g["params"]): g["regularization_coeff"] for g in opt._param_groups}
    assert coeffs == {1: pytest.approx(1e-4), 3: 0.0}


@pytest.mark.parametrize("kind,raw", [("det", {"architecture": "YOLOv3", "TrainReader": {}}),
                                      ("det", {"architecture": "FCOS", "LearningRate": "!PiecewiseDecay"}),
                                      ("seg", {"model": {"type": "UPerNet"}, "train_dataset": {}}),
                                      ("cls", {"Arch": {"name": "VAN_b0"}})])
def test_each_kind_of_config_goes_to_its_task(tmp_path, monkeypatch, kind, raw):
    from paddle_lk.engine import cli
    from paddle_lk.engine.tasks import get_task

    task = get_task(kind)
    calls = []
    monkeypatch.setattr(cli, "get_task", lambda k: calls.append(k) or task)
    monkeypatch.setattr(type(task), "evaluate", lambda self, args, overrides: {"overrides": overrides})
    path = tmp_path / f"{kind}.yml"
    text = yaml.safe_dump(raw)
    path.write_text(text.replace("'!PiecewiseDecay'", "!PiecewiseDecay {gamma: 0.1}"))  # a tagged value
    assert cli.main("eval", ["-c", str(path), "-o", "x=1", "-o", "y=2", "--json"]) == 0
    assert calls == [kind]
