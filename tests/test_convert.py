"""Converters: fixtures reproduced, manifests mapped and detected, key maps, loading, the CLI."""
from __future__ import annotations

import json
import os
import re

import numpy as np
import paddle
import pytest

import paddle_lk
from convert_helpers import (load_convert_cli, malicious_pickle, run_cli, to_torch_names,
                             write_zip_with_pickle)
from paddle_lk import RefConv, refocus
from paddle_lk.convert import (WeightMismatchError, check_shapes, convert_checkpoint, convert_state_dict,
                               detect_architecture, lazy_state_shapes, load_torch_weights, map_shapes,
                               read_checkpoint, save_torch_checkpoint)
from paddle_lk import load_checkpoint
from paddle_lk.models import VAN, RepLKNet

TOL = 1e-4
MANIFEST_VARIANTS = {"RepLKNet-31B": "RepLKNet31B", "RepLKNet-31L": "RepLKNet31L", "RepLKNet-XL": "RepLKNetXL"}
MANIFEST_VARIANTS.update({f"VAN-b{i}": f"VAN_b{i}" for i in range(7)})


CLI = load_convert_cli()


def _build_from_json(cfg_path):
    cfg = json.loads(cfg_path.read_text())["config"]
    if "large_kernel_sizes" in cfg:
        return RepLKNet(**cfg)
    if "embed_dims" in cfg:
        return VAN(**cfg)
    return RefConv(**cfg)


def _forward(model, x):
    model.eval()
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy()


@pytest.mark.parametrize("name,out", [("replknet_tiny", "replknet_tiny_out"),
                                      ("replknet_tiny_merged", "replknet_tiny_merged_out"),
                                      ("van_tiny", "van_tiny_out"), ("refconv_dw3", "refconv_dw3_out")])
def test_fixture_reproduced(fixtures_dir, name, out):
    model = _build_from_json(fixtures_dir / f"{name}.json")
    report = load_torch_weights(model, str(fixtures_dir / f"{name}.pth"))
    assert report.loaded == len(model.state_dict())
    assert all("step counter" in reason for _, reason in report.skipped)
    y = _forward(model, np.load(fixtures_dir / f"{name}_input.npy"))
    diff = np.abs(y - np.load(fixtures_dir / f"{out}.npy")).max()
    assert diff <= TOL, f"{name}: max abs diff {diff}"
    if name.startswith("replknet"):  # SyncBN models share the BN parameter names
        cfg = json.loads((fixtures_dir / f"{name}.json").read_text())["config"]
        sync = RepLKNet(**dict(cfg, use_sync_bn=True))
        assert load_torch_weights(sync, str(fixtures_dir / f"{name}.pth")).loaded == report.loaded
    # The detected config builds the same architecture (same keys and shapes).
    det = detect_architecture(read_checkpoint(str(fixtures_dir / f"{name}.pth"))[0])
    assert lazy_state_shapes(det.build) == {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("manifest", sorted(MANIFEST_VARIANTS))
def test_manifest_maps_and_detects(fixtures_dir, manifest):
    paths = [fixtures_dir / f"manifest_{manifest}.json", fixtures_dir / f"manifest_{manifest}_merged.json"]
    for path in [p for p in paths if p.exists()]:
        shapes = json.loads(path.read_text())
        det = detect_architecture(shapes)
        merged = path.stem.endswith("_merged")
        assert det.variant == MANIFEST_VARIANTS[manifest], det.describe()
        assert det.form == ("merged" if merged else "train") and det.num_classes == 1000
        mapped = map_shapes(str(path))
        kwargs = {"small_kernel_merged": True} if merged else {}
        target = lazy_state_shapes(paddle_lk.create_model, name=det.variant, **kwargs)
        assert check_shapes(mapped.tensors, target) == ([], [], [])
        # Every manifest key is either mapped or a BN step counter, nothing else.
        assert len(mapped.tensors) + len(mapped.skipped) == len(shapes)
        assert {r for _, r in mapped.skipped} == {"BatchNorm step counter (Paddle has none)"}


def test_paddleclas_van_pdparams(tmp_path):
    from paddleclas.ppcls.arch.backbone.model_zoo.van import VAN_B0

    ppcls = VAN_B0(class_num=7)
    state = ppcls.state_dict()
    assert list(state["block1.0.layer_scale_1"].shape) == [32, 1, 1]
    rng = np.random.RandomState(0)
    with paddle.no_grad():
        for k, v in state.items():  # non-trivial layer scales and BN statistics
            if "layer_scale" in k or "_mean" in k:
                v.set_value(rng.uniform(0.1, 0.5, v.shape).astype("float32"))
    converted = convert_state_dict(state)
    assert converted.keymap == "van_paddleclas"
    path = str(tmp_path / "VAN_B0_pretrained.pdparams")
    paddle.save(state, path)
    model = paddle_lk.create_model("VAN_b0", pretrained=path, num_classes=7)
    x = rng.standard_normal((1, 3, 64, 64)).astype("float32")
    diff = np.abs(_forward(model, x) - _forward(ppcls, x)).max()
    assert diff <= TOL, diff
    # The converter detects it too and writes paddle_lk layout.
    summary = convert_checkpoint(path, str(tmp_path / "van_b0.pdparams"), log=lambda _: None)
    assert (summary.detected.variant, summary.keymap, summary.detected.num_classes) == ("VAN_b0", "van_paddleclas", 7)
    assert list(paddle.load(str(tmp_path / "van_b0.pdparams"))["block1.0.layer_scale_1"].shape) == [32]


def _tiny_replknet(**kw):
    cfg = dict(large_kernel_sizes=[7, 5, 5, 3], layers=[1, 1, 1, 1], channels=[8, 16, 16, 32], drop_path_rate=0.0,
               small_kernel=3, num_classes=4)
    cfg.update(kw)
    return RepLKNet(**cfg)


def test_downstream_backbone_checkpoint(tmp_path):
    # mmseg/mmdet layout: the backbone under "backbone.", heads next to it, wrapped with meta data.
    backbone = _tiny_replknet(num_classes=None, out_indices=[0, 1, 2, 3], norm_intermediate_features=True)
    state = {f"backbone.{k}": v for k, v in to_torch_names(backbone).items()}
    state["decode_head.conv_seg.weight"] = np.ones((19, 8, 1, 1), "float32")
    state["auxiliary_head.conv_seg.bias"] = np.ones(19, "float32")
    path = str(tmp_path / "upernet_replknet.pth")
    save_torch_checkpoint({"meta": {"epoch": 80, "CLASSES": ["road", "car"]}, "state_dict": state}, path)
    det = detect_architecture(read_checkpoint(path)[0])
    assert det.config["out_indices"] == [0, 1, 2, 3] and det.config["norm_intermediate_features"]
    assert det.num_classes is None
    model = det.build()
    report = load_torch_weights(model, path)
    reasons = dict(report.skipped)
    assert reasons["decode_head.conv_seg.weight"] == "downstream 'decode_head' (not part of the backbone)"
    assert reasons["auxiliary_head.conv_seg.bias"].startswith("downstream 'auxiliary_head'")
    x = np.random.RandomState(1).standard_normal((1, 3, 64, 64)).astype("float32")
    backbone.eval()
    model.eval()
    with paddle.no_grad():
        for a, b in zip(backbone(paddle.to_tensor(x)), model(paddle.to_tensor(x))):
            assert float((a - b).abs().max()) <= TOL


def test_refocused_model_and_wrappers(tmp_path):
    base = _tiny_replknet()
    model = refocus(base, map_k=3, zero_init=False, min_kernel=3)
    # A DataParallel-wrapped, legacy-format checkpoint of the refocused model.
    state = {f"module.{k}": v for k, v in to_torch_names(model).items()}
    path = str(tmp_path / "refocused.pth")
    save_torch_checkpoint(state, path, legacy=True)
    det = detect_architecture(read_checkpoint(path)[0])
    assert det.family == "replknet" and det.refocus == {"map_k": 3, "min_kernel": 3}
    rebuilt = det.build()
    assert det.target_shapes() == {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    load_torch_weights(rebuilt, path)
    x = np.random.RandomState(2).standard_normal((1, 3, 64, 64)).astype("float32")
    ref = _forward(model, x)
    assert np.abs(_forward(rebuilt, x) - ref).max() <= TOL
    dst = str(tmp_path / "refocused.pdparams")
    summary = convert_checkpoint(path, dst, verify=True, log=lambda _: None)
    assert summary.detected.refocus and summary.verify_max_diff == 0.0
    reloaded = det.build()
    load_checkpoint(reloaded, dst)
    assert np.abs(_forward(reloaded, x) - ref).max() <= TOL


def test_bad_inputs_raise_clear_errors(tmp_path, fixtures_dir):
    van = str(fixtures_dir / "van_tiny.pth")
    rep_cfg = fixtures_dir / "replknet_tiny.json"
    with pytest.raises(WeightMismatchError, match="VAN weights .* model is a RepLKNet"):
        load_torch_weights(_build_from_json(rep_cfg), van)

    state = read_checkpoint(str(fixtures_dir / "replknet_tiny.pth"))[0]
    missing = dict(state)
    del missing["stages.2.blocks.1.pw1.conv.weight"]
    with pytest.raises(WeightMismatchError, match=r"missing key.*stages\.2\.blocks\.1\.pw1\.conv\.weight"):
        load_torch_weights(_build_from_json(rep_cfg), missing)

    bad = dict(state)
    bad["stem.0.conv.weight"] = np.zeros((16, 3, 5, 5), "float32")
    with pytest.raises(WeightMismatchError, match=re.escape("stem.0.conv.weight: checkpoint [16, 3, 5, 5] vs "
                                                            "model [16, 3, 3, 3]")):
        load_torch_weights(_build_from_json(rep_cfg), bad)

    # A train-form checkpoint loads into a deploy-form (merged) model: re-parameterized on the way in.
    merged = RepLKNet(**json.loads((fixtures_dir / "replknet_tiny_merged.json").read_text())["config"])
    notes = []
    load_checkpoint(merged, state, log=notes.append)
    assert any("re-parameterized" in n for n in notes), notes
    y = _forward(merged, np.load(fixtures_dir / "replknet_tiny_input.npy"))
    assert np.abs(y - np.load(fixtures_dir / "replknet_tiny_out.npy")).max() <= TOL
    # The reverse cannot be undone: a clear error that says so.
    train = _build_from_json(rep_cfg)
    with pytest.raises(WeightMismatchError, match="deploy form but the model is in train form"):
        load_checkpoint(train, str(fixtures_dir / "replknet_tiny_merged.pth"))

    # A classifier of another size is dropped (with a log line), exactly then; the rest loads.
    model = RepLKNet(**dict(json.loads(rep_cfg.read_text())["config"], num_classes=3))
    head_before = model.head.weight.numpy().copy()
    notes = []
    report = load_checkpoint(model, state, log=notes.append)
    assert report.head_dropped and any("classifier dropped" in r for _, r in report.skipped)
    assert any("classifier" in n and "10 classes" in n for n in notes), notes
    np.testing.assert_array_equal(model.head.weight.numpy(), head_before)
    assert report.loaded == len(model.state_dict()) - 2


def test_create_model_pth_and_pdparams(tmp_path):
    src = paddle_lk.create_model("VAN_b0", num_classes=5)
    pth = str(tmp_path / "van_b0.pth.tar")
    save_torch_checkpoint({"state_dict": to_torch_names(src)}, pth)
    x = np.random.RandomState(3).standard_normal((1, 3, 32, 32)).astype("float32")
    ref = _forward(src, x)
    from_pth = paddle_lk.create_model("VAN_b0", pretrained=pth, num_classes=5)
    assert np.abs(_forward(from_pth, x) - ref).max() <= TOL
    pdparams = str(tmp_path / "van_b0.pdparams")
    assert CLI.main(["--src", pth, "--dst", pdparams]) == 0
    from_pd = paddle_lk.create_model("VAN_b0", pretrained=pdparams, class_num=5)
    assert np.abs(_forward(from_pd, x) - ref).max() <= TOL
    saved = str(tmp_path / "paddle_save.pdparams")  # a plain paddle.save of a paddle_lk model
    paddle.save(src.state_dict(), saved)
    assert np.abs(_forward(paddle_lk.create_model("VAN_b0", pretrained=saved, num_classes=5), x) - ref).max() <= TOL
    # 1000-class default vs the 5-class checkpoint: the classifier is dropped, everything else loads.
    new_head = paddle_lk.create_model("VAN_b0", pretrained=pth, num_classes=3)
    assert new_head.head.weight.shape == [256, 3]
    np.testing.assert_array_equal(new_head.patch_embed1.proj.weight.numpy(), src.patch_embed1.proj.weight.numpy())
    # load_checkpoint is the registry hook: same behaviour when called directly.
    assert load_checkpoint(paddle_lk.create_model("VAN_b0", num_classes=5), pdparams).loaded == len(src.state_dict())


def test_cli_convert_reparam_verify(tmp_path, fixtures_dir, capsys):
    src = str(fixtures_dir / "replknet_tiny.pth")
    dst = str(tmp_path / "deploy.pdparams")
    assert CLI.main(["--src", src, "--dst", dst, "--reparam", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "detected: custom RepLKNet [replknet, train form, 10 classes]" in out
    assert "mapped 246 tensors" in out and "BatchNorm step counter (Paddle has none): 51 keys" in out
    assert "re-parameterized vs train-form max |diff|" in out
    cfg = json.loads((fixtures_dir / "replknet_tiny_merged.json").read_text())["config"]
    merged = RepLKNet(**cfg)
    load_checkpoint(merged, dst)
    y = _forward(merged, np.load(fixtures_dir / "replknet_tiny_input.npy"))
    assert np.abs(y - np.load(fixtures_dir / "replknet_tiny_out.npy")).max() <= TOL


def test_cli_failures_exit_2_without_output(tmp_path, fixtures_dir, capsys):
    marker = tmp_path / "PWNED"
    evil = str(tmp_path / "evil.pth")
    write_zip_with_pickle(evil, malicious_pickle(str(marker)))
    trunc = tmp_path / "trunc.pth"
    trunc.write_bytes((fixtures_dir / "van_tiny.pth").read_bytes()[:5000])
    rand = tmp_path / "random.pth"
    rand.write_bytes(np.random.RandomState(0).bytes(2048))
    state = read_checkpoint(str(fixtures_dir / "replknet_tiny.pth"))[0]
    missing = str(tmp_path / "missing.pth")
    save_torch_checkpoint({k: v for k, v in state.items() if k != "stages.0.blocks.1.pw2.bn.weight"}, missing)
    shape = str(tmp_path / "shape.pth")
    save_torch_checkpoint(dict(state, **{"stages.3.blocks.0.pw1.conv.weight": np.zeros((128, 64, 1, 1), "float32")}),
                          shape)
    cases = {
        "evil": (["--src", evil], "posix.system"),
        "truncated": (["--src", str(trunc)], "truncated or corrupt zip"),
        "random": (["--src", str(rand)], "not a checkpoint"),
        "van_as_replknet": (["--src", str(fixtures_dir / "van_tiny.pth"), "--arch", "RepLKNet31B"],
                            "custom VAN, not --arch RepLKNet31B"),
        "missing": (["--src", missing], "stages.0.blocks.1.pw2.bn.weight"),
        "shape": (["--src", shape], "checkpoint [128, 64, 1, 1] vs model [128, 128, 1, 1]"),
        "unknown_arch": (["--src", str(fixtures_dir / "van_tiny.pth"), "--arch", "VAN_b9"], "did you mean"),
    }
    for name, (args, expected) in cases.items():
        dst = tmp_path / f"{name}.pdparams"
        assert CLI.main(args + ["--dst", str(dst)]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("convert_torch: error:") and expected in err[0], (name, err)
        assert not dst.exists(), name
        assert not [p for p in os.listdir(tmp_path) if p.startswith(f".{name}.pdparams")], name
    assert not marker.exists()
    # The real process exit code, once.
    proc = run_cli(["--src", str(rand), "--dst", str(tmp_path / "x.pdparams")])
    assert proc.returncode == 2 and "convert_torch: error:" in proc.stderr
    assert not (tmp_path / "x.pdparams").exists()
