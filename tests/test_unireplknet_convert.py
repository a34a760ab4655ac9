"""Issue 15: UniRepLKNet checkpoints through the converter and the one loader -- the official fixtures
(train form saved as ``{"model": sd}``, deploy form), synthetic checkpoints in the official layouts
(plain / ``{"model": ...}``, train / deploy, features mode, mmseg ``backbone.*``), detection of every
released variant from its shapes, and ``tools/convert_torch.py`` (``--verify``, ``--reparam``,
``--arch``, the exit-2 one-line contract)."""
from __future__ import annotations

import os
import pathlib
import re

import numpy as np
import paddle
import pytest

import paddle_lk
from convert_helpers import ROOT, load_convert_cli, run_cli, to_torch_names
from paddle_lk.convert import (WeightMismatchError, convert_checkpoint, detect_architecture, load_checkpoint,
                               read_checkpoint, save_torch_checkpoint)
from paddle_lk.models.unireplknet import DEFAULT_KERNEL_SIZES, VARIANT_CONFIGS, UniRepLKNet

TOL = 1e-4
# The fixtures' architecture (unireplknet_tiny.json), as overrides of a registered variant.
TINY = dict(depths=(1, 1, 2, 1), dims=(16, 32, 64, 128), kernel_sizes=((3,), (13,), (13, 3), (13,)))
# A smaller one for synthetic checkpoints: every block kind (3x3, identity, 5x5, dilated 13 and 7).
SMALL = dict(depths=(1, 2, 1, 1), dims=(8, 16, 16, 32), kernel_sizes=((3,), (13, 0), (7,), (5,)))
VARIANTS = sorted(VARIANT_CONFIGS)
ROOT_DIR = pathlib.Path(ROOT)


CLI = load_convert_cli()


def _randomized(model: UniRepLKNet, seed: int = 0) -> UniRepLKNet:
    """Random BN statistics/affines, layer scales, GRN gamma/beta: a wrongly mapped or folded term shows."""
    rng = np.random.RandomState(seed)
    with paddle.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith(("._mean", ".bias")) or ".act.1." in name:
                t.set_value(rng.uniform(-0.5, 0.5, t.shape).astype("float32"))
            elif name.endswith("._variance"):
                t.set_value(rng.uniform(0.5, 2.0, t.shape).astype("float32"))
            elif name.endswith(".gamma") or (len(t.shape) == 1 and name.endswith(".weight")):
                t.set_value(rng.uniform(0.5, 1.5, t.shape).astype("float32"))
    return model.eval()


def _forward(model, x):
    model.eval()
    with paddle.no_grad():
        y = model(paddle.to_tensor(x))
    return [t.numpy() for t in y] if isinstance(y, (list, tuple)) else [y.numpy()]


def _close(a, b, tol=TOL):
    for u, v in zip(a, b):
        assert u.shape == v.shape
        diff = float(np.abs(u - v).max())
        assert diff <= tol * max(1.0, float(np.abs(v).max())), diff


def _torch_shapes(model) -> dict:
    """{official key: shape} of a (lazily built) model: what the official checkpoint of it holds."""
    linear = {f"{n}.weight" for n, layer in model.named_sublayers() if isinstance(layer, paddle.nn.Linear)}
    out = {}
    for key, value in model.state_dict().items():
        shape = [int(s) for s in value.shape]
        shape = shape[::-1] if key in linear else shape
        key = key.replace("._mean", ".running_mean").replace("._variance", ".running_var")
        out[key] = shape
        if key.endswith(".running_var"):
            out[key[: -len("running_var")] + "num_batches_tracked"] = []
    return out


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("convert_torch: error:"), err
    return err[0]


# ---------------------------------------------------------------------------------------------------
# The official fixtures through the CLI and create_model
# ---------------------------------------------------------------------------------------------------
def test_fixtures_convert_and_reproduce(fixtures_dir, tmp_path, capsys):
    x = np.load(fixtures_dir / "unireplknet_tiny_input.npy")
    ref = np.load(fixtures_dir / "unireplknet_tiny_out.npy")
    _close([np.load(fixtures_dir / "unireplknet_tiny_deploy_out.npy")], [ref])  # same model, two forms

    train = str(tmp_path / "uni_train.pdparams")
    assert CLI.main(["--src", str(fixtures_dir / "unireplknet_tiny.pth"), "--dst", train, "--verify"]) == 0
    out = capsys.readouterr().out
    assert "detected: custom UniRepLKNet [unireplknet, train form, 10 classes] keymap=unireplknet" in out
    assert "mapped 206 tensors" in out and "BatchNorm step counter (Paddle has none): 28 keys" in out
    model = paddle_lk.create_model("UniRepLKNet_T", pretrained=train, num_classes=10, **TINY)
    _close(_forward(model, x), [ref])
    # The same file into a deploy-form model: re-parameterized on the way in.
    deploy_model = paddle_lk.create_model("UniRepLKNet_T", pretrained=train, num_classes=10, deploy=True, **TINY)
    assert deploy_model.deploy
    _close(_forward(deploy_model, x), [ref])

    deploy = str(tmp_path / "uni_deploy.pdparams")
    assert CLI.main(["--src", str(fixtures_dir / "unireplknet_tiny_deploy.pth"), "--dst", deploy, "--verify"]) == 0
    assert "[unireplknet, deploy form, 10 classes]" in capsys.readouterr().out
    _close(_forward(paddle_lk.create_model("UniRepLKNet_T", pretrained=deploy, num_classes=10, deploy=True,
                                           **TINY), x), [ref])
    # A deploy checkpoint cannot fill a train-form model: one clear error saying so.
    with pytest.raises(WeightMismatchError, match="deploy form but the model is in train form"):
        paddle_lk.create_model("UniRepLKNet_T", pretrained=deploy, num_classes=10, **TINY)

    # --reparam --verify: deploy-form weights, checked against the train form.
    reparam = str(tmp_path / "uni_reparam.pdparams")
    assert CLI.main(["--src", str(fixtures_dir / "unireplknet_tiny.pth"), "--dst", reparam, "--reparam",
                     "--verify"]) == 0
    out = capsys.readouterr().out
    assert "reparam: deploy-form weights (79 tensors)" in out and "re-parameterized vs train-form max |diff|" in out
    state = paddle.load(reparam)
    official, _ = read_checkpoint(str(fixtures_dir / "unireplknet_tiny_deploy.pth"))
    assert set(state) == set(official)  # exactly the official deploy keys
    assert not [k for k in state if re.search(r"dil_conv|origin_bn|act\.1\.beta|pwconv2\.2|^stages\.\d+\.\d+\.gamma$", k)]
    _close(_forward(paddle_lk.create_model("UniRepLKNet_T", pretrained=reparam, num_classes=10, deploy=True,
                                           **TINY), x), [ref])
    # The official .pth loads directly too.
    _close(_forward(paddle_lk.create_model("UniRepLKNet_T", num_classes=10, **TINY,
                                           pretrained=str(fixtures_dir / "unireplknet_tiny.pth")), x), [ref])


# ---------------------------------------------------------------------------------------------------
# Synthetic checkpoints in the official layouts
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("deploy", [False, True], ids=["train", "deploy"])
@pytest.mark.parametrize("wrapper", ["plain", "model"])
def test_classifier_checkpoints(tmp_path, deploy, wrapper):
    src = _randomized(UniRepLKNet(num_classes=6, **SMALL), seed=1)
    if deploy:
        src = paddle_lk.reparameterize(src)
    state = to_torch_names(src)
    assert state["head.weight"].shape == (6, 32) and "stages.0.0.norm.num_batches_tracked" in state or deploy
    path = str(tmp_path / "uni.pth")
    save_torch_checkpoint({"model": state} if wrapper == "model" else state, path)
    det = detect_architecture(read_checkpoint(path)[0])
    assert (det.family, det.variant, det.form, det.num_classes) == ("unireplknet", None,
                                                                    "deploy" if deploy else "train", 6)
    assert det.config["kernel_sizes"] == SMALL["kernel_sizes"] and det.config["deploy"] is deploy
    x = np.random.RandomState(2).standard_normal((2, 3, 64, 64)).astype("float32")
    ref = _forward(src, x)
    model = paddle_lk.create_model("UniRepLKNet_A", pretrained=path, num_classes=6, deploy=deploy, **SMALL)
    _close(_forward(model, x), ref)
    dst = str(tmp_path / "uni.pdparams")
    summary = convert_checkpoint(path, dst, verify=True, log=lambda _m: None)
    assert summary.keymap == "unireplknet" and summary.mapped == len(src.state_dict())
    again = UniRepLKNet(num_classes=6, deploy=deploy, **SMALL)
    assert load_checkpoint(again, dst).loaded == len(again.state_dict())
    _close(_forward(again, x), ref)
    if not deploy:  # --reparam output equals the train-form model
        summary = convert_checkpoint(path, str(tmp_path / "r.pdparams"), reparam=True, verify=True,
                                     log=lambda _m: None)
        assert summary.verify_max_diff is not None and summary.verify_max_diff <= 1e-4
        merged = UniRepLKNet(num_classes=6, deploy=True, **SMALL)
        load_checkpoint(merged, str(tmp_path / "r.pdparams"))
        _close(_forward(merged, x), ref)


@pytest.mark.parametrize("layout", ["features", "mmseg"])
def test_features_mode_checkpoints(tmp_path, layout):
    src = _randomized(UniRepLKNet(out_indices=(0, 1, 2, 3), **SMALL), seed=3)
    state = to_torch_names(src)
    assert {"norm0.weight", "norm3.bias"} <= set(state) and not any(k.startswith("head.") for k in state)
    if layout == "mmseg":  # an UperNet checkpoint: backbone.* next to the heads, with meta data
        state = {f"backbone.{k}": v for k, v in state.items()}
        state["decode_head.conv_seg.weight"] = np.ones((150, 8, 1, 1), "float32")
        state["auxiliary_head.conv_seg.bias"] = np.ones(150, "float32")
        obj = {"meta": {"iter": 160000, "CLASSES": ["wall", "building"]}, "state_dict": state}
    else:
        obj = state
    path = str(tmp_path / f"{layout}.pth")
    save_torch_checkpoint(obj, path)
    det = detect_architecture(read_checkpoint(path)[0])
    assert det.config["out_indices"] == (0, 1, 2, 3) and det.num_classes is None and det.form == "train"
    x = np.random.RandomState(4).standard_normal((1, 3, 64, 64)).astype("float32")
    ref = _forward(src, x)
    backbone = paddle_lk.create_model("UniRepLKNet_T", pretrained=path, out_indices=(0, 1, 2, 3), **SMALL)
    _close(_forward(backbone, x), ref)
    summary = convert_checkpoint(path, str(tmp_path / "bb.pdparams"), reparam=True, verify=True,
                                 log=lambda _m: None)
    reasons = dict(summary.skipped)
    if layout == "mmseg":
        assert reasons["decode_head.conv_seg.weight"] == "downstream 'decode_head' (not part of the backbone)"
        assert reasons["auxiliary_head.conv_seg.bias"].startswith("downstream 'auxiliary_head'")
    merged = UniRepLKNet(out_indices=(0, 1, 2, 3), deploy=True, **SMALL)
    load_checkpoint(merged, str(tmp_path / "bb.pdparams"))
    _close(_forward(merged, x), ref)


@pytest.mark.parametrize("name", VARIANTS)
def test_released_variants_detected_from_shapes(name):
    """Each released variant, as the official keys and shapes (train / deploy / features / 22K head)."""
    for kwargs, form, classes in (({}, "train", 1000), ({"deploy": True}, "deploy", 1000),
                                  ({"out_indices": (0, 1, 2, 3)}, "train", None),
                                  ({"num_classes": 21841}, "train", 21841)):
        with paddle.LazyGuard():
            model = paddle_lk.create_model(name, **kwargs)
        det = detect_architecture(_torch_shapes(model))
        assert (det.variant, det.form, det.num_classes) == (name, form, classes), (kwargs, det.describe())
        assert det.config["kernel_sizes"] == DEFAULT_KERNEL_SIZES[VARIANT_CONFIGS[name]["depths"]]
    if name == "UniRepLKNet_S":  # a Cascade Mask R-CNN checkpoint's backbone (mmdet layout)
        with paddle.LazyGuard():
            model = paddle_lk.create_model(name, out_indices=(0, 1, 2, 3))
        shapes = {f"backbone.{k}": v for k, v in _torch_shapes(model).items()}
        shapes.update({"neck.lateral_convs.0.conv.weight": [256, 96, 1, 1], "rpn_head.rpn_cls.bias": [3]})
        det = detect_architecture(shapes)
        assert det.variant == name and det.num_classes is None


# ---------------------------------------------------------------------------------------------------
# --arch and the exit-2 contract
# ---------------------------------------------------------------------------------------------------
def test_arch_checks(fixtures_dir, tmp_path, capsys):
    uni = str(fixtures_dir / "unireplknet_tiny.pth")
    a = paddle_lk.create_model("UniRepLKNet_A", num_classes=4)
    a_path = str(tmp_path / "unireplknet_a.pth")
    save_torch_checkpoint(to_torch_names(a), a_path)
    assert CLI.main(["--src", a_path, "--dst", str(tmp_path / "a.pdparams"), "--arch", "UniRepLKNet_A"]) == 0
    assert "detected: UniRepLKNet_A [unireplknet, train form, 4 classes]" in capsys.readouterr().out
    # A-sized, one kernel changed: the message names only what differs (the stage of kernel_sizes).
    kernels = [list(s) for s in DEFAULT_KERNEL_SIZES[(2, 2, 6, 2)]]
    kernels[2][5] = 3
    custom = UniRepLKNet(num_classes=4, kernel_sizes=kernels, **VARIANT_CONFIGS["UniRepLKNet_A"])
    custom_path = str(tmp_path / "custom_a.pth")
    save_torch_checkpoint({"model": to_torch_names(custom)}, custom_path)

    cases = {
        "uni_as_replknet": (uni, "RepLKNet31B", "the checkpoint is a custom UniRepLKNet, not --arch RepLKNet31B "
                                                "(a RepLKNet)"),
        "replknet_as_uni": (str(fixtures_dir / "replknet_tiny.pth"), "UniRepLKNet_T",
                            "the checkpoint is a custom RepLKNet, not --arch UniRepLKNet_T (a UniRepLKNet)"),
        "tiny_as_a": (uni, "UniRepLKNet_A", "the checkpoint is a custom UniRepLKNet, not --arch UniRepLKNet_A: "
                                           "depths=[1, 1, 2, 1] (--arch: [2, 2, 6, 2])"),
        "custom_kernels_as_a": (custom_path, "UniRepLKNet_A",
                                "not --arch UniRepLKNet_A: kernel_sizes[2]=[13, 13, 13, 13, 13, 3] "
                                "(--arch: [13, 13, 13, 13, 13, 13])"),
        "a_as_f": (a_path, "UniRepLKNet_F", "the checkpoint is UniRepLKNet_A, not --arch UniRepLKNet_F: "
                                           "dims=[40, 80, 160, 320] (--arch: [48, 96, 192, 384])"),
        "unknown": (uni, "UniRepLKNet_Q", "did you mean"),
    }
    for name, (src, arch, expected) in cases.items():
        dst = tmp_path / f"{name}.pdparams"
        assert CLI.main(["--src", src, "--dst", str(dst), "--arch", arch]) == 2, name
        line = _one_error_line(capsys)
        assert expected in line, (name, line)
        assert not dst.exists() and not [p for p in os.listdir(tmp_path) if p.startswith(f".{name}.pdparams")]
    # Equal fields are never listed as differences.
    line = _one_error_line(capsys) if CLI.main(["--src", a_path, "--dst", str(tmp_path / "x.pdparams"), "--arch",
                                                "UniRepLKNet_F"]) == 2 else ""
    assert "depths" not in line and "kernel_sizes" not in line
    # The real process: exit code 2, the error line, no file.
    proc = run_cli(["--src", uni, "--dst", str(tmp_path / "p.pdparams"), "--arch", "RepLKNet31B"])
    assert proc.returncode == 2 and not (tmp_path / "p.pdparams").exists()
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("convert_torch:")]
    assert errors == ["convert_torch: error: " + f"{uni}: the checkpoint is a custom UniRepLKNet, not --arch "
                      "RepLKNet31B (a RepLKNet)"], proc.stderr
    assert "Traceback" not in proc.stderr


def test_imagenet_checkpoint_into_features_backbone(tmp_path):
    """What the seg/det configs do: an ImageNet (classification) checkpoint initialises a features-mode
    backbone; its norm0-3 have no counterpart and keep their init (the official backbone loads with
    strict=False), everything else must load."""
    src = _randomized(UniRepLKNet(num_classes=5, **SMALL), seed=5)
    path = str(tmp_path / "in1k.pth")
    save_torch_checkpoint(to_torch_names(src), path)
    notes = []
    backbone = UniRepLKNet(out_indices=(0, 1, 2, 3), **SMALL)
    report = load_checkpoint(backbone, path, log=notes.append)
    assert sorted(report.missing) == sorted(f"norm{i}.{p}" for i in range(4) for p in ("weight", "bias"))
    assert any("keep their initial values" in n and "norm0.weight" in n for n in notes), notes
    reasons = dict(report.skipped)
    assert reasons["head.weight"].startswith("classifier not in the model") and reasons["norm.weight"] == \
        "not in the model"
    own, ref = backbone.state_dict(), src.state_dict()
    for k, v in own.items():
        if k.startswith("norm"):
            np.testing.assert_array_equal(v.numpy(), np.ones(v.shape) if k.endswith("weight") else np.zeros(v.shape))
        else:
            np.testing.assert_array_equal(v.numpy(), ref[k].numpy(), err_msg=k)
    # Through create_model (what the toolkit backbones call), and into a deploy-form backbone.
    paddle_lk.create_model("UniRepLKNet_T", pretrained=path, out_indices=(1, 2, 3), **SMALL)
    x = np.random.RandomState(6).standard_normal((1, 3, 64, 64)).astype("float32")
    deploy = paddle_lk.create_model("UniRepLKNet_T", pretrained=path, out_indices=(0, 1, 2, 3), deploy=True, **SMALL)
    _close(_forward(deploy, x), _forward(backbone, x))
    # Only those: any other missing key still fails the load, naming it.
    state = to_torch_names(src)
    del state["stages.1.0.dwconv.dil_bn_k5_1.weight"]
    save_torch_checkpoint(state, str(tmp_path / "broken.pth"))
    with pytest.raises(WeightMismatchError, match=r"missing key.*stages\.1\.0\.dwconv\.dil_bn_k5_1\.weight"):
        load_checkpoint(UniRepLKNet(out_indices=(0, 1, 2, 3), **SMALL), str(tmp_path / "broken.pth"))


def test_model_zoo_lists_every_official_file():
    """Both READMEs list each official release with its resolution, published top-1 and convert command."""
    from paddle_lk.registry import model_cfg

    readmes = {name: (ROOT_DIR / name).read_text(encoding="utf-8") for name in ("README.md", "README_cn.md")}
    for variant in VARIANTS:
        for ck in model_cfg(variant).checkpoints:
            dst = ck.file.replace(".pth", ".pdparams")
            for name, text in readmes.items():
                row = next((ln for ln in text.splitlines() if ln.startswith(f"| `{ck.file}`")), None)
                assert row is not None, (name, ck.file)
                cells = [c.strip() for c in row.split("|")[1:-1]]
                assert cells[1] == f"`{variant}`" and cells[2] == str(ck.resolution), (name, row)
                assert cells[3].startswith(f"{ck.top1:.1f}" if ck.top1 is not None else "–"), (name, row)
                assert cells[4] == f"`python tools/convert_torch.py --src {ck.file} --dst {dst} --verify`", (name, row)
