"""Issue 15: UniRepLKNet -- fixtures, released structure and sizes, re-parameterization, model contract."""
from __future__ import annotations

import json
import math
import re

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest

import paddle_lk
from helpers import assert_jit_roundtrip, max_rel_diff, randomize_bn
from paddle_lk.convert import load_torch_weights, read_checkpoint
from paddle_lk.layers import DepthwiseConv2D
from paddle_lk.layers.conv_bn import SyncBatchNorm2D, is_bn
from paddle_lk.models import unireplknet as U
from paddle_lk.models.unireplknet import (DEFAULT_KERNEL_SIZES, DILATED_BRANCHES, VARIANT_CONFIGS,
                                          DilatedReparamBlock, UniRepLKNet, UniRepLKNetBlock, dilate_kernel,
                                          variant_config_from_shapes)
from paddle_lk.registry import get_family, match_variant
from paddle_lk.utils import count_params

FIXTURE_TOL = 1e-4   # max abs vs the official PyTorch outputs
REPARAM_TOL = 1e-5   # max relative difference, train form vs re-parameterized form
TINY = dict(depths=(1, 1, 2, 1), dims=(16, 32, 64, 128), kernel_sizes=((3,), (13,), (13, 3), (13,)), num_classes=10)
SMALL = dict(depths=(1, 1, 1, 1), dims=(8, 16, 16, 16))
# README of the fixtures: deploy-form parameter counts, rounded to 0.01M.
README_DEPLOY_M = {"A": 4.44, "F": 6.24, "P": 10.74, "N": 18.32, "T": 31.04, "S": 55.65, "B": 98.01, "L": 218.45,
                   "XL": 386.53}
_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _paddle_key(key: str) -> str:
    return key.replace("running_mean", "_mean").replace("running_var", "_variance")


def _paddle_shapes(torch_shapes):
    """torch {key: shape} -> Paddle names/layouts (BN renames, step counter dropped, 2-D Linear transposed)."""
    return {_paddle_key(k): tuple(s[::-1] if len(s) == 2 else s) for k, s in torch_shapes.items()
            if not k.endswith("num_batches_tracked")}


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _fixture(fixtures_dir, name):
    meta = json.loads((fixtures_dir / f"{name}.json").read_text())
    x = paddle.to_tensor(np.load(fixtures_dir / f"{name}_input.npy"))
    return meta, x, np.load(fixtures_dir / f"{name}_out.npy")


def _randomize(model, seed=0):
    """Random BN statistics/affines, GRN gamma and beta, layer scales and depthwise kernels, so that a
    wrongly merged branch or folded term shows up in the output."""
    randomize_bn(model, seed)
    rng = np.random.RandomState(seed + 1)
    for name, p in model.named_parameters():
        if p.stop_gradient:
            continue
        if name.endswith(".gamma") and len(p.shape) == 1:          # layer scale
            p.set_value(rng.uniform(0.5, 1.5, p.shape).astype("float32"))
        elif ".act.1." in name:                                     # GRN gamma / beta
            p.set_value(rng.uniform(-0.5, 0.5, p.shape).astype("float32"))
        elif ".dwconv." in name and name.endswith("weight") and len(p.shape) == 4:
            p.set_value(rng.normal(0, 0.2, p.shape).astype("float32"))
    return model


def _outputs(y):
    return [t.numpy() for t in y] if isinstance(y, (list, tuple)) else [y.numpy()]


# ---------------------------------------------------------------------------------------------------
# Official fixtures
# ---------------------------------------------------------------------------------------------------
def test_fixture_train_form(fixtures_dir):
    meta, x, ref = _fixture(fixtures_dir, "unireplknet_tiny")
    cfg = meta["config"]
    model = UniRepLKNet(depths=cfg["depths"], dims=cfg["dims"], kernel_sizes=cfg["kernel_sizes"],
                        num_classes=cfg["num_classes"])
    assert _shapes(model) == _paddle_shapes(meta["keys"])  # the official module tree, key for key
    report = load_torch_weights(model, str(fixtures_dir / "unireplknet_tiny.pth"), keymap="torch_generic")
    assert {k for k, _ in report.skipped} == {k for k in meta["keys"] if k.endswith("num_batches_tracked")}
    model.eval()
    with paddle.no_grad():
        y = model(x).numpy()
    assert np.abs(y - ref).max() <= FIXTURE_TOL


def test_fixture_deploy_form(fixtures_dir):
    meta, x, ref = _fixture(fixtures_dir, "unireplknet_tiny_deploy")
    assert meta["config"]["deploy"]
    model = UniRepLKNet(deploy=True, **TINY)
    assert _shapes(model) == _paddle_shapes(meta["keys"])
    load_torch_weights(model, str(fixtures_dir / "unireplknet_tiny_deploy.pth"), keymap="torch_generic")
    model.eval()
    with paddle.no_grad():
        y = model(x).numpy()
    assert np.abs(y - ref).max() <= FIXTURE_TOL


def test_fixture_reparameterized_equals_official_deploy(fixtures_dir):
    _, x, ref = _fixture(fixtures_dir, "unireplknet_tiny")
    deploy_meta = json.loads((fixtures_dir / "unireplknet_tiny_deploy.json").read_text())
    model = UniRepLKNet(**TINY)
    load_torch_weights(model, str(fixtures_dir / "unireplknet_tiny.pth"), keymap="torch_generic")
    model.eval()
    model = paddle_lk.reparameterize(model)
    assert model.deploy
    assert _shapes(model) == _paddle_shapes(deploy_meta["keys"])
    with paddle.no_grad():
        y = model(x).numpy()
    assert np.abs(y - ref).max() <= FIXTURE_TOL
    # ... and the merged weights are the official merged weights.
    official, _ = read_checkpoint(str(fixtures_dir / "unireplknet_tiny_deploy.pth"))
    own = model.state_dict()
    for key, arr in official.items():
        arr = arr.T if arr.ndim == 2 else arr
        assert np.abs(own[key].numpy() - arr).max() <= 1e-4 * max(1.0, np.abs(arr).max()), key


# ---------------------------------------------------------------------------------------------------
# Released structure and sizes
# ---------------------------------------------------------------------------------------------------
def test_manifest_A_maps_key_for_key(fixtures_dir):
    ref = json.loads((fixtures_dir / "manifest_UniRepLKNet-A.json").read_text())
    with paddle.LazyGuard():
        model = U.UniRepLKNet_A()
    own = _shapes(model)
    mapped = _paddle_shapes(ref)
    for key, shape in ref.items():
        if key.endswith("num_batches_tracked"):
            continue
        pkey = _paddle_key(key)
        assert pkey in own, f"{key} has no counterpart {pkey}"
        assert own[pkey] == mapped[pkey], f"{key} {shape} vs {pkey} {own[pkey]}"
    assert set(own) == set(mapped), f"extra keys {sorted(set(own) - set(mapped))[:5]}"
    assert count_params(model) == sum(int(np.prod(s)) for k, s in ref.items() if not k.endswith(_STATS))


def _train_minus_deploy(depths, dims, kernel_sizes):
    """Parameters the train form has beyond the deploy form, counted from the official module tree."""
    extra = 0
    for c, ks in zip(dims, kernel_sizes):
        for k in ks:
            extra += c          # layer scale gamma
            extra += 4 * c      # GRN beta (ffn_dim = 4c)
            extra += 2 * c - c  # BN after pwconv2 (weight, bias) minus the merged Linear's bias
            if k:
                extra += 2 * c - c  # mixer BN minus the merged conv's bias
            if k >= 7:
                extra += 2 * c  # origin_bn
                extra += sum(b * b * c + 2 * c for b in DILATED_BRANCHES[k][0])  # dilated convs + BNs
    return extra


@pytest.mark.parametrize("letter", list(README_DEPLOY_M))
def test_param_counts_match_readme(letter):
    name = f"UniRepLKNet_{letter}"
    with paddle.LazyGuard():
        deploy = paddle_lk.create_model(name, deploy=True)
        train = paddle_lk.create_model(name)
    n_deploy, n_train = count_params(deploy), count_params(train)
    assert round(n_deploy / 1e6, 2) == README_DEPLOY_M[letter]
    cfg = VARIANT_CONFIGS[name]
    assert n_train - n_deploy == _train_minus_deploy(cfg["depths"], cfg["dims"], DEFAULT_KERNEL_SIZES[cfg["depths"]])


def test_variants_registered_with_official_tables():
    names = paddle_lk.list_models("UniRepLKNet_*")
    assert sorted(names) == sorted(VARIANT_CONFIGS)
    with paddle.LazyGuard():
        s = paddle_lk.create_model("UniRepLKNet_S", class_num=7)
    assert s.kernel_sizes == DEFAULT_KERNEL_SIZES[(3, 3, 27, 3)]
    assert s.head.weight.shape == [768, 7] and s.dims == (96, 192, 384, 768)
    assert s.kernel_sizes[2][:6] == (13, 3, 3, 13, 3, 3)
    blk = s.stages[2][0]
    assert isinstance(blk.dwconv, DilatedReparamBlock) and blk.dwconv.branches == [(5, 1), (7, 2), (3, 3), (3, 4),
                                                                                    (3, 5)]
    with pytest.raises(ValueError, match="disagree"):
        paddle_lk.create_model("UniRepLKNet_A", class_num=7, num_classes=8)


def test_variant_kwargs_and_official_init():
    with paddle.LazyGuard():
        feats = U.UniRepLKNet_T(out_indices=(0, 1, 2, 3), in_chans=1, drop_path_rate=0.1)
    own = _shapes(feats)
    assert not any(k.startswith(("head.", "norm.")) for k in own)
    assert [own[f"norm{i}.weight"] for i in range(4)] == [(80,), (160,), (320,), (640,)]
    assert own["downsample_layers.0.0.weight"] == (40, 1, 3, 3) and feats.feat_channels == [80, 160, 320, 640]
    rates = [blk.drop_path.drop_prob if hasattr(blk.drop_path, "drop_prob") else 0.0
             for stage in feats.stages for blk in stage]
    np.testing.assert_allclose(rates, np.linspace(0, 0.1, 27))
    m = UniRepLKNet(num_classes=3, kernel_sizes=((3,),) * 4, head_init_scale=1e-3, layer_scale_init_value=0.5,
                    **SMALL)
    assert 0 < m.head.weight.numpy().std() < 1e-4 and not m.head.bias.numpy().any()
    assert np.all(m.stages[0][0].gamma.numpy() == 0.5) and not m.stages[0][0].act[1].gamma.numpy().any()
    zero = UniRepLKNet(num_classes=3, kernel_sizes=((3,),) * 4, head_init_scale=0.0, **SMALL)
    assert not zero.head.weight.numpy().any()


# ---------------------------------------------------------------------------------------------------
# Re-parameterization
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel_size", sorted(DILATED_BRANCHES))
def test_dilated_reparam_block_merges(kernel_size):
    """Every entry of the branch table (5..17) on a map larger than the kernel, so every tap counts."""
    block = _randomize(DilatedReparamBlock(6, kernel_size)).eval()
    for k, r in block.branches:
        conv = getattr(block, f"dil_conv_k{k}_{r}")
        assert isinstance(conv, DepthwiseConv2D) and conv._dilation == [r, r]
        conv.weight.set_value(paddle.randn(conv.weight.shape))
    x = paddle.randn([2, 6, 2 * kernel_size + 3, 2 * kernel_size + 1])
    y = block(x).numpy()
    assert paddle_lk.reparameterize(block) is block and block.deploy
    assert set(block.state_dict()) == {"lk_origin.weight", "lk_origin.bias"}
    assert isinstance(block.lk_origin, DepthwiseConv2D)
    assert max_rel_diff(y, block(x).numpy()) <= REPARAM_TOL


@pytest.mark.parametrize("k,r", [(3, 2), (5, 3), (3, 7), (9, 2)])
def test_dilate_kernel_equals_dilated_conv(k, r):
    w = paddle.randn([4, 1, k, k])
    x = paddle.randn([1, 4, 23, 21])
    dense = dilate_kernel(w, r)
    assert dense.shape == [4, 1, r * (k - 1) + 1, r * (k - 1) + 1]
    pad = (r * (k - 1) + 1) // 2
    a = F.conv2d(x, w, padding=pad, dilation=r, groups=4)
    b = F.conv2d(x, dense, padding=pad, groups=4)
    assert max_rel_diff(a.numpy(), b.numpy()) <= 1e-6


@pytest.mark.parametrize("features", [False, True])
@pytest.mark.parametrize("kernel_size", [0, 3] + sorted(DILATED_BRANCHES))
def test_reparam_parity(kernel_size, features):
    """The whole model (every block with this kernel size) before and after re-parameterization,
    at an input size not divisible by 32; the result also equals a deploy=True model."""
    extra = dict(out_indices=(0, 1, 2, 3)) if features else dict(num_classes=5)
    cfg = dict(SMALL, kernel_sizes=((kernel_size,),) * 4, **extra)
    model = _randomize(UniRepLKNet(**cfg)).eval()
    x = paddle.randn([2, 3, 57, 71])
    with paddle.no_grad():
        before = _outputs(model(x))
        model = paddle_lk.reparameterize(model)
        after = _outputs(model(x))
    assert model.deploy and not any(is_bn(m) for m in model.sublayers())
    for a, b in zip(before, after):
        assert max_rel_diff(a, b) <= REPARAM_TOL
    deploy = UniRepLKNet(deploy=True, **cfg)
    assert _shapes(deploy) == _shapes(model)
    deploy.set_state_dict(model.state_dict())
    deploy.eval()
    with paddle.no_grad():
        for a, b in zip(after, _outputs(deploy(x))):
            np.testing.assert_array_equal(a, b)


def test_reparam_parity_default_layout_and_idempotent():
    """Mixed kernel sizes as released (3 and 13 in one stage), fuse_bn=True, a second call is a no-op."""
    model = _randomize(UniRepLKNet(depths=(1, 1, 2, 1), dims=(8, 16, 16, 16),
                                   kernel_sizes=((3,), (13,), (13, 5), (0,)), num_classes=4), 3).eval()
    x = paddle.randn([1, 3, 96, 80])
    with paddle.no_grad():
        y = model(x).numpy()
        model = paddle_lk.reparameterize(model, fuse_bn=True)
        keys = set(model.state_dict())
        model = paddle_lk.reparameterize(model)
        assert set(model.state_dict()) == keys
        assert max_rel_diff(y, model(x).numpy()) <= REPARAM_TOL
    assert model.reparameterize_unireplknet() is model


def test_no_layer_scale_reparam():
    model = _randomize(UniRepLKNet(layer_scale_init_value=None, kernel_sizes=((7,),) * 4, num_classes=3,
                                   **{k: v for k, v in SMALL.items()})).eval()
    assert not any(k.endswith(".gamma") and "act" not in k for k in model.state_dict())
    x = paddle.randn([1, 3, 64, 64])
    with paddle.no_grad():
        y = model(x).numpy()
        assert max_rel_diff(y, paddle_lk.reparameterize(model)(x).numpy()) <= REPARAM_TOL


def test_every_depthwise_conv_is_dispatched():
    def check(model):
        for name, m in model.named_sublayers():
            if isinstance(m, nn.Conv2D) and m._groups > 1:
                assert m._groups == m._in_channels == m._out_channels
                assert isinstance(m, DepthwiseConv2D), name
        return model

    cfg = dict(SMALL, kernel_sizes=((3,), (5,), (13,), (17,)), num_classes=2)
    model = check(UniRepLKNet(**cfg))
    assert sum(isinstance(m, DepthwiseConv2D) for m in model.sublayers()) == 1 + 1 + 6 + 6
    check(paddle_lk.reparameterize(model.eval()))
    check(UniRepLKNet(deploy=True, **cfg))


# ---------------------------------------------------------------------------------------------------
# Model contract
# ---------------------------------------------------------------------------------------------------
def test_odd_input_sizes_follow_official_strides():
    model = UniRepLKNet(out_indices=(0, 1, 2, 3), kernel_sizes=((3,), (7,), (3,), (0,)), **SMALL).eval()
    h, w = 57, 71
    outs = model(paddle.randn([1, 3, h, w]))
    sizes = []
    for _ in range(5):  # every stride-2 conv (3x3, padding 1) gives ceil(n / 2)
        h, w = math.ceil(h / 2), math.ceil(w / 2)
        sizes.append((h, w))
    assert [tuple(o.shape) for o in outs] == [(1, c) + s for c, s in zip(SMALL["dims"], sizes[1:])]
    cls = UniRepLKNet(num_classes=6, kernel_sizes=((3,), (7,), (3,), (0,)), **SMALL).eval()
    assert cls(paddle.randn([2, 3, 33, 95])).shape == [2, 6]
    assert cls.forward_features(paddle.randn([2, 3, 33, 95])).shape == [2, 16, 2, 3]


def test_num_classes_zero_and_pre_logits():
    cfg = dict(SMALL, kernel_sizes=((3,), (7,), (3,), (0,)))
    model = UniRepLKNet(num_classes=5, **cfg).eval()
    pooled = UniRepLKNet(num_classes=0, **cfg).eval()
    pooled.set_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("head.")})
    x = paddle.randn([2, 3, 40, 40])
    feats = pooled(x)
    assert feats.shape == [2, pooled.num_features] and pooled.num_features == 16
    np.testing.assert_allclose(feats.numpy(), model.forward_head(model.forward_features(x), pre_logits=True).numpy(),
                               rtol=1e-6, atol=1e-6)
    # the pooled features are normed: LayerNorm with unit weight, zero bias -> zero mean per sample
    assert np.abs(feats.numpy().mean(axis=1)).max() < 1e-4


def test_reset_classifier():
    model = UniRepLKNet(num_classes=5, kernel_sizes=((3,),) * 4, **SMALL).eval()
    model.reset_classifier(7)
    assert model(paddle.randn([1, 3, 32, 32])).shape == [1, 7] and model.get_classifier() is model.head
    model.reset_classifier(0)
    assert model(paddle.randn([1, 3, 32, 32])).shape == [1, 16] and model.num_classes == 0
    feats = UniRepLKNet(out_indices=(1,), kernel_sizes=((3,),) * 4, **SMALL)
    with pytest.raises(ValueError, match="features mode"):
        feats.reset_classifier(3)


def test_out_indices_normalized_in_stage_order():
    model = UniRepLKNet(out_indices=(3, 0), kernel_sizes=((3,),) * 4, **SMALL).eval()
    assert model.out_indices == (0, 3) and model.feat_channels == [8, 16]
    assert not hasattr(model, "head") and not hasattr(model, "norm")
    assert {k.split(".")[0] for k in model.state_dict() if k.startswith("norm")} == {"norm0", "norm3"}
    outs = model(paddle.randn([1, 3, 64, 64]))
    assert [o.shape[1] for o in outs] == model.feat_channels
    assert [o.shape[2] for o in outs] == [16, 2]
    assert [f["reduction"] for f in model.feature_info] == [4, 32]
    assert [f["module"] for f in model.feature_info] == ["norm0", "norm3"]
    assert UniRepLKNet(out_indices=-1, kernel_sizes=((3,),) * 4, **SMALL).out_indices == (3,)
    for bad in [(0, 4), (1, 1), ()]:
        with pytest.raises(ValueError, match="out_indices"):
            UniRepLKNet(out_indices=bad, kernel_sizes=((3,),) * 4, **SMALL)


def test_group_matcher_and_no_weight_decay():
    model = UniRepLKNet(num_classes=3, kernel_sizes=((3,), (7,), (3,), (0,)), **SMALL)

    def group(name, matcher):  # timm's group_with_matcher ordinal rule
        if re.match(matcher["stem"], name):
            return (0,)
        for pattern, fixed in matcher["blocks"]:
            m = re.match(pattern, name)
            if m:
                return tuple(int(g) for g in m.groups()) + tuple(fixed or ())
        return None

    fine, coarse = model.group_matcher(), model.group_matcher(coarse=True)
    names = [n for n, _ in model.named_parameters()]
    assert all(group(n, fine) == (0,) for n in names if n.startswith("downsample_layers.0."))
    assert group("downsample_layers.2.0.weight", fine) == (2, -1)
    assert group("stages.1.0.dwconv.lk_origin.weight", fine) == (1, 0)
    assert group("stages.3.0.pwconv1.1.weight", fine) == (3, 0)
    assert group("downsample_layers.3.1.bias", coarse) == (3,) and group("stages.2.0.gamma", coarse) == (2,)
    assert all(group(n, fine) is None for n in names if n.startswith(("norm.", "head.")))
    assert all(group(n, fine) is not None for n in names if n.startswith(("stages", "downsample_layers")))
    nwd = model.no_weight_decay()
    assert "stages.0.0.gamma" in nwd and "head.bias" in nwd and "downsample_layers.0.1.weight" in nwd
    assert "head.weight" not in nwd and "stages.0.0.dwconv.weight" not in nwd


def _train_step(model, x, target):
    model.train()
    opt = paddle.optimizer.SGD(0.1, parameters=model.parameters())
    paddle.seed(123)  # same drop-path masks in both runs
    loss = F.cross_entropy(model(x), target)
    loss.backward()
    grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters() if p.grad is not None}
    opt.step()
    return float(loss), grads, {k: v.numpy().copy() for k, v in model.state_dict().items()}


def test_grad_checkpointing_is_exact(monkeypatch):
    cfg = dict(SMALL, kernel_sizes=((3,), (7,), (5,), (0,)), num_classes=4, drop_path_rate=0.2)
    plain = _randomize(UniRepLKNet(**cfg))
    cp = UniRepLKNet(with_cp=True, **cfg)
    cp.set_state_dict(plain.state_dict())
    assert cp.with_cp and cp.grad_checkpointing
    initial = {k: v.numpy().copy() for k, v in plain.state_dict().items()}
    x, target = paddle.randn([4, 3, 48, 40]), paddle.to_tensor([0, 1, 2, 3])
    calls = []
    original = U.checkpoint
    monkeypatch.setattr(U, "checkpoint", lambda layer, inp: calls.append(1) or original(layer, inp))
    (l0, g0, s0), (l1, g1, s1) = [_train_step(m, x, target) for m in (plain, cp)]
    assert len(calls) == sum(SMALL["depths"])  # every block checkpointed, in the cp run only
    assert l0 == l1
    assert set(g0) == set(g1) and len(g0) == sum(1 for p in plain.parameters() if not p.stop_gradient)
    for n in g0:
        np.testing.assert_allclose(g1[n], g0[n], rtol=1e-5, atol=1e-7, err_msg=n)
    for k in s0:  # weights after the step and BN running statistics (updated once, not twice)
        np.testing.assert_allclose(s1[k], s0[k], rtol=1e-5, atol=1e-7, err_msg=k)
    assert all(not np.array_equal(s0[k], initial[k]) for k in s0 if k.endswith(("_mean", "_variance")))
    cp.set_grad_checkpointing(False)
    assert not cp.with_cp
    cp.with_cp = True
    assert cp.grad_checkpointing


def test_sync_bn_runs_on_cpu():
    cfg = dict(SMALL, kernel_sizes=((3,), (7,), (3,), (0,)), num_classes=3)
    sync, plain = UniRepLKNet(use_sync_bn=True, **cfg), UniRepLKNet(**cfg)
    assert any(isinstance(m, SyncBatchNorm2D) for m in sync.sublayers())
    assert _shapes(sync) == _shapes(plain)
    x = paddle.randn([2, 3, 32, 32])
    sync.train()
    sync(x).sum().backward()
    sync.eval()
    with paddle.no_grad():
        y = sync(x).numpy()
        assert np.isfinite(y).all()
        assert max_rel_diff(y, paddle_lk.reparameterize(sync)(x).numpy()) <= REPARAM_TOL


def test_bad_inputs_raise_value_error():
    base = dict(dims=(8, 16, 16, 16), num_classes=2)
    with pytest.raises(ValueError, match="kernel_sizes"):      # even
        UniRepLKNet(depths=(1, 1, 1, 1), kernel_sizes=((4,), (3,), (3,), (3,)), **base)
    with pytest.raises(ValueError, match="kernel_sizes"):      # not in the branch table
        UniRepLKNet(depths=(1, 1, 1, 1), kernel_sizes=((3,), (19,), (3,), (3,)), **base)
    with pytest.raises(ValueError, match="kernel_sizes"):
        UniRepLKNet(depths=(1, 1, 1, 1), kernel_sizes=((1,), (3,), (3,), (3,)), **base)
    with pytest.raises(ValueError, match="depths"):            # length mismatch per stage
        UniRepLKNet(depths=(1, 2, 1, 1), kernel_sizes=((3,), (3,), (3,), (3,)), **base)
    with pytest.raises(ValueError, match="kernel_sizes"):      # no default for these depths
        UniRepLKNet(depths=(1, 1, 1, 1), **base)
    with pytest.raises(ValueError, match="kernel_sizes"):
        UniRepLKNet(depths=(1, 1, 1, 1), kernel_sizes=((3,), (3,), (3,)), **base)
    with pytest.raises(ValueError, match="depths"):
        UniRepLKNet(depths=(1, 1, 1), kernel_sizes=((3,), (3,), (3,)), **base)
    with pytest.raises(ValueError, match="dims"):
        UniRepLKNet(depths=(1, 1, 1, 1), dims=(8, 16, 32), kernel_sizes=((3,),) * 4)
    with pytest.raises(ValueError, match="kernel_size"):
        DilatedReparamBlock(8, 3)
    with pytest.raises(ValueError, match="kernel_size"):
        UniRepLKNetBlock(8, 6)


def test_deploy_model_jit_roundtrip(tmp_path):
    model = _randomize(UniRepLKNet(num_classes=5, kernel_sizes=((3,), (13,), (5,), (0,)), **SMALL)).eval()
    assert_jit_roundtrip(paddle_lk.reparameterize(model), tmp_path, paddle.randn([2, 3, 64, 64]))


def test_pretrained_path_and_deploy_checkpoint(fixtures_dir, tmp_path):
    tiny = {k: v for k, v in TINY.items() if k != "num_classes"}
    model = U.UniRepLKNet_A(pretrained=str(fixtures_dir / "unireplknet_tiny.pth"), num_classes=10, **tiny).eval()
    _, x, ref = _fixture(fixtures_dir, "unireplknet_tiny")
    with paddle.no_grad():
        assert np.abs(model(x).numpy() - ref).max() <= FIXTURE_TOL
    path = str(tmp_path / "uni_deploy.pdparams")
    paddle.save(paddle_lk.reparameterize(model).state_dict(), path)
    again = paddle_lk.create_model("UniRepLKNet_A", pretrained=path, num_classes=10, deploy=True, **tiny).eval()
    with paddle.no_grad():
        assert np.abs(again(x).numpy() - ref).max() <= FIXTURE_TOL


# ---------------------------------------------------------------------------------------------------
# Config from checkpoint shapes
# ---------------------------------------------------------------------------------------------------
def test_variant_config_from_fixture_keys(fixtures_dir):
    for name, deploy in (("unireplknet_tiny", False), ("unireplknet_tiny_deploy", True)):
        meta = json.loads((fixtures_dir / f"{name}.json").read_text())
        cfg = variant_config_from_shapes(_paddle_shapes(meta["keys"]))
        c = meta["config"]
        assert cfg == dict(depths=tuple(c["depths"]), dims=tuple(c["dims"]), deploy=deploy, in_chans=3,
                           kernel_sizes=tuple(tuple(k) for k in c["kernel_sizes"]), num_classes=c["num_classes"])
        assert _shapes(UniRepLKNet(**cfg)) == _paddle_shapes(meta["keys"])
        assert match_variant(get_family("unireplknet"), cfg) is None


def test_variant_config_from_manifest_A(fixtures_dir):
    ref = json.loads((fixtures_dir / "manifest_UniRepLKNet-A.json").read_text())
    cfg = variant_config_from_shapes(_paddle_shapes(ref))
    assert cfg == dict(VARIANT_CONFIGS["UniRepLKNet_A"], kernel_sizes=DEFAULT_KERNEL_SIZES[(2, 2, 6, 2)],
                       deploy=False, in_chans=3, num_classes=1000)
    assert match_variant(get_family("unireplknet"), cfg) == "UniRepLKNet_A"
    assert paddle_lk.detect_architecture(ref).variant == "UniRepLKNet_A"


@pytest.mark.parametrize("kwargs", [
    dict(out_indices=(0, 1, 2, 3)), dict(out_indices=(1, 3), deploy=True), dict(num_classes=0),
    dict(num_classes=7, in_chans=1, layer_scale_init_value=0.0), dict(num_classes=3, deploy=True),
])
def test_variant_config_round_trip(kwargs):
    cfg = dict(depths=(1, 2, 1, 0), dims=(8, 16, 24, 32), kernel_sizes=((3,), (0, 17), (5,), ()), **kwargs)
    with paddle.LazyGuard():
        shapes = _shapes(UniRepLKNet(**cfg))
    got = variant_config_from_shapes(shapes)
    with paddle.LazyGuard():
        assert _shapes(UniRepLKNet(**got)) == shapes
    assert got["deploy"] == kwargs.get("deploy", False)
    assert got.get("out_indices") == kwargs.get("out_indices")


def test_variant_config_rejects_other_keys(fixtures_dir):
    from paddle_lk.models import RepLKNet
    with paddle.LazyGuard():
        replk = _shapes(RepLKNet([7, 7, 7, 7], [1, 1, 1, 1], [8, 16, 16, 16], 0.0, 5, num_classes=3))
    with pytest.raises(ValueError, match="not a UniRepLKNet"):
        variant_config_from_shapes(replk)
    meta = json.loads((fixtures_dir / "unireplknet_tiny.json").read_text())
    torch_layout = {_paddle_key(k): tuple(s) for k, s in meta["keys"].items()}  # Linear not transposed
    with pytest.raises(ValueError, match="Linear"):
        variant_config_from_shapes(torch_layout)
    shapes = _paddle_shapes(meta["keys"])
    mixed = {k: v for k, v in shapes.items() if not k.startswith("stages.0.0.act.1.beta")}
    with pytest.raises(ValueError, match="mixes"):
        variant_config_from_shapes(mixed)
    with pytest.raises(ValueError, match="unexpected"):
        variant_config_from_shapes(dict(shapes, **{"stages.0.0.extra.weight": (3,)}))
    with pytest.raises(ValueError, match="neither"):
        variant_config_from_shapes({k: v for k, v in shapes.items() if not k.startswith(("norm.", "head."))})
