"""Issue 2: every variant builds and runs; parameter counts and keys equal the released models."""
import json

import numpy as np
import paddle
import pytest

import paddle_lk
from paddle_lk.models import RepLKNet, VAN
from paddle_lk.utils import count_params

REPLKNET_VARIANTS = ["RepLKNet31B", "RepLKNet31L", "RepLKNetXL", "RepLKNet3", "RepLKNet7", "RepLKNet13",
                     "RepLKNet25"]
VAN_VARIANTS = [f"VAN_b{i}" for i in range(7)]

# manifest name -> (paddle_lk constructor, kwargs)
MANIFESTS = {
    "RepLKNet-31B": ("RepLKNet31B", {}), "RepLKNet-31B_merged": ("RepLKNet31B", {"small_kernel_merged": True}),
    "RepLKNet-31L": ("RepLKNet31L", {}), "RepLKNet-31L_merged": ("RepLKNet31L", {"small_kernel_merged": True}),
    "RepLKNet-XL": ("RepLKNetXL", {}), "RepLKNet-XL_merged": ("RepLKNetXL", {"small_kernel_merged": True}),
    **{f"VAN-b{i}": (f"VAN_b{i}", {}) for i in range(7)},
}
_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _torch_key_to_paddle(key: str) -> str:
    return key.replace("running_mean", "_mean").replace("running_var", "_variance")


def test_registry_lists_every_variant():
    names = paddle_lk.list_models()
    for name in REPLKNET_VARIANTS + VAN_VARIANTS:
        assert name in names
    assert paddle_lk.list_models("van_*") == VAN_VARIANTS


def test_unknown_model_suggests_close_name():
    with pytest.raises(KeyError, match="RepLKNet31B"):
        paddle_lk.create_model("RepLKNet31b")


def test_class_num_alias_and_conflict():
    with paddle.LazyGuard():
        m = paddle_lk.create_model("VAN_b0", class_num=7)
    assert m.head.weight.shape == [256, 7]
    with pytest.raises(ValueError, match="disagree"):
        paddle_lk.create_model("VAN_b0", class_num=7, num_classes=8)


@pytest.mark.parametrize("manifest", sorted(MANIFESTS))
def test_keys_shapes_and_param_count_match_release(fixtures_dir, manifest):
    name, kwargs = MANIFESTS[manifest]
    ref = json.loads((fixtures_dir / f"manifest_{manifest}.json").read_text())
    with paddle.LazyGuard():  # full-size model without allocating its weights
        model = paddle_lk.create_model(name, **kwargs)
    own = {k: list(v.shape) for k, v in model.state_dict().items()}
    for key, shape in ref.items():
        if key.endswith("num_batches_tracked"):
            continue
        pkey = _torch_key_to_paddle(key)
        assert pkey in own, f"{manifest}: {key} has no counterpart {pkey}"
        expected = shape[::-1] if len(shape) == 2 else shape  # Linear weights are transposed in Paddle
        assert own[pkey] == expected, f"{manifest}: {key} {shape} vs {pkey} {own[pkey]}"
    mapped = {_torch_key_to_paddle(k) for k in ref if not k.endswith("num_batches_tracked")}
    assert set(own) == mapped, f"extra keys: {sorted(set(own) - mapped)[:5]}"
    n_ref = sum(int(np.prod(s)) for k, s in ref.items() if not k.endswith(_STATS))
    n_own = count_params(model)
    assert n_own == n_ref


@pytest.mark.parametrize("name", REPLKNET_VARIANTS + VAN_VARIANTS)
def test_every_variant_runs_forward(name):
    model = paddle_lk.create_model(name, num_classes=5)
    model.eval()
    with paddle.no_grad():
        y = model(paddle.randn([1, 3, 32, 32]))
    assert y.shape == [1, 5]
    assert bool(paddle.isfinite(y).all())


def test_replknet_feature_mode_shapes():
    model = RepLKNet([13, 11, 9, 7], [1, 1, 1, 1], [8, 16, 32, 64], 0.1, 5, out_indices=(0, 1, 2, 3),
                     norm_intermediate_features=True)
    assert not hasattr(model, "head") and model.feat_channels == [8, 16, 32, 64]
    outs = model(paddle.randn([2, 3, 64, 64]))
    assert [list(o.shape) for o in outs] == [[2, 8, 16, 16], [2, 16, 8, 8], [2, 32, 4, 4], [2, 64, 2, 2]]


def test_van_feature_mode_shapes():
    model = VAN(embed_dims=[8, 16, 32, 64], depths=[1, 1, 1, 1], mlp_ratios=[4, 4, 4, 4], out_indices=(1, 3))
    outs = model(paddle.randn([1, 3, 64, 64]))
    assert [list(o.shape) for o in outs] == [[1, 16, 8, 8], [1, 64, 2, 2]]


def test_structure_matches_paper():
    with paddle.LazyGuard():
        xl, b, k3 = (paddle_lk.create_model(n) for n in ("RepLKNetXL", "RepLKNet31B", "RepLKNet3"))
    m = xl
    blk = m.stages[0].blocks[0]
    assert blk.large_kernel.lkb_origin.conv.weight.shape == [384, 1, 27, 27]  # dw_ratio 1.5
    assert not hasattr(blk.large_kernel, "small_conv")  # XL has no small kernel
    m = b
    kernels = [m.stages[i].blocks[0].large_kernel.lkb_origin.conv.weight.shape[-1] for i in range(4)]
    assert kernels == [31, 29, 27, 13]
    assert m.stages[2].blocks[0].large_kernel.small_conv.conv.weight.shape == [512, 1, 5, 5]
    assert len(m.stages[2].blocks) == 36  # 18 RepLK blocks + 18 ConvFFNs
    assert k3.stages[0].blocks[0].large_kernel.small_kernel is None


def test_invalid_configs_raise():
    with pytest.raises(ValueError, match="same length"):
        RepLKNet([13, 11], [1, 1, 1], [8, 16, 32], 0.0, 5, num_classes=2)
    with pytest.raises(ValueError, match="small_kernel"):
        RepLKNet([3, 3], [1, 1], [8, 16], 0.0, 5, num_classes=2)
    with pytest.raises(ValueError, match="out_indices"):
        RepLKNet([7, 7], [1, 1], [8, 16], 0.0, 5, out_indices=(0, 4))


def test_sync_bn_keeps_keys():
    cfg = dict(large_kernel_sizes=[7, 5], layers=[1, 1], channels=[8, 16], drop_path_rate=0.0, small_kernel=3,
               num_classes=4)
    plain, sync = RepLKNet(**cfg), RepLKNet(use_sync_bn=True, **cfg)
    assert any(isinstance(l, paddle.nn.SyncBatchNorm) for l in sync.sublayers())
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in sync.state_dict().items()}


def test_recompute_matches_plain_gradients():
    cfg = dict(large_kernel_sizes=[7, 5], layers=[1, 1], channels=[8, 16], drop_path_rate=0.0, small_kernel=3,
               num_classes=4)
    paddle.seed(1)
    a = RepLKNet(**cfg)
    b = RepLKNet(use_checkpoint=True, **cfg)
    b.set_state_dict(a.state_dict())
    x = paddle.randn([2, 3, 32, 32])
    x.stop_gradient = False
    grads = []
    for m in (a, b):
        m.train()
        m(x).sum().backward()
        grads.append(m.stages[0].blocks[0].large_kernel.lkb_origin.conv.weight.grad.numpy())
        m.clear_gradients()
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_flop_count_leaves_no_buffers_and_counts_depthwise():
    from paddle_lk.utils import count_flops

    model = RepLKNet([7, 5], [1, 1], [8, 16], 0.0, 3, num_classes=4).eval()
    keys = set(model.state_dict())
    flops = count_flops(model, (1, 3, 32, 32))
    assert set(model.state_dict()) == keys and flops > 0
    from paddle_lk.layers import DepthwiseConv2D

    dw = DepthwiseConv2D(8, 8, 7, padding=3, groups=8, bias_attr=False)
    # (paddle.flops only visits sublayers, hence the container)
    assert count_flops(paddle.nn.Sequential(dw), (1, 8, 10, 10)) == 8 * 10 * 10 * 49  # a MAC per tap per output


def test_atomic_path_permissions_and_cleanup(tmp_path):
    import os

    from paddle_lk.utils import atomic_path

    target = tmp_path / "out.bin"
    with atomic_path(str(target)) as tmp:
        open(tmp, "wb").write(b"ok")
    umask = os.umask(0)
    os.umask(umask)
    assert target.read_bytes() == b"ok" and (target.stat().st_mode & 0o777) == (0o666 & ~umask)
    with pytest.raises(RuntimeError):
        with atomic_path(str(tmp_path / "never.bin")) as tmp:
            open(tmp, "wb").write(b"half")
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


# ----------------------------------------------------------------------------- the model contract
TINY = {
    "replknet": ("RepLKNet31B", dict(channels=[8, 8, 16, 16], layers=[1, 1, 1, 1], large_kernel_sizes=[7, 5, 5, 3],
                                     small_kernel=3)),
    "van": ("VAN_b0", dict(embed_dims=[8, 8, 16, 16], depths=[1, 1, 1, 1])),
}


def _tiny_model(family: str, **kw):
    name, arch = TINY[family]
    return paddle_lk.create_model(name, **dict(arch, **kw))


@pytest.mark.parametrize("family", sorted(TINY))
def test_model_contract(family):
    x = paddle.randn([2, 3, 64, 64])
    model = _tiny_model(family, num_classes=7).eval()
    assert model.num_features == 16 and model.get_classifier() is model.head
    feats = model.forward_features(x)
    assert list(feats.shape) == [2, 16, 2, 2]
    pooled = model.forward_head(feats, pre_logits=True)
    assert list(pooled.shape) == [2, 16]
    np.testing.assert_allclose(model.forward_head(feats).numpy(), model(x).numpy(), rtol=1e-6)
    assert [i["reduction"] for i in model.feature_info] == [4, 8, 16, 32]
    assert [i["num_chs"] for i in model.feature_info] == [8, 8, 16, 16]
    # num_classes=0: pooled features, and reset_classifier switches in both directions.
    bare = _tiny_model(family, num_classes=0).eval()
    bare.set_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("head.")})
    np.testing.assert_allclose(bare(x).numpy(), pooled.numpy(), rtol=1e-5, atol=1e-6)
    bare.reset_classifier(3)
    assert list(bare(x).shape) == [2, 3]
    model.reset_classifier(0)
    assert list(model(x).shape) == [2, 16]
    # No weight decay on every 1-D parameter and bias; group_matcher covers the stem and every block.
    skip = model.no_weight_decay()
    assert skip and all(len(p.shape) <= 1 or n.endswith(".bias") for n, p in model.named_parameters() if n in skip)
    assert all(n in skip for n, p in model.named_parameters() if len(p.shape) == 1 and not p.stop_gradient)
    matcher = model.group_matcher()
    assert {"stem", "blocks"} <= set(matcher)
    # in_chans is accepted by every constructor (each family maps it to its own argument).
    gray = _tiny_model(family, num_classes=2, in_chans=1)
    assert list(gray(paddle.randn([1, 1, 32, 32])).shape) == [1, 2]


@pytest.mark.parametrize("family", sorted(TINY))
def test_none_num_classes_is_refused(family):
    with pytest.raises(ValueError, match="num_classes=None"):
        paddle_lk.models.RepLKNet(**dict(TINY["replknet"][1], drop_path_rate=0.0, num_classes=None)) \
            if family == "replknet" else paddle_lk.models.VAN(**dict(TINY["van"][1], num_classes=None))


@pytest.mark.parametrize("family", sorted(TINY))
def test_out_indices_are_normalised_for_every_view(family):
    """Issue 11 (3): what is returned, feat_channels, feature_info and the toolkits' views agree."""
    model = _tiny_model(family, out_indices=(3, 0)).eval()
    outs = model(paddle.randn([1, 3, 64, 64]))
    assert model.out_indices == (0, 3)
    assert [int(o.shape[1]) for o in outs] == model.feat_channels == [8, 16]
    assert [i["reduction"] for i in model.feature_info] == [4, 32]
    assert _tiny_model(family, out_indices=-1).out_indices == (3,)
    for bad in ((0, 0), (0, 4), (), ("1",)):
        with pytest.raises(ValueError, match="out_indices"):
            _tiny_model(family, out_indices=bad)


@pytest.mark.parametrize("kwargs,argument", [
    (dict(large_kernel_sizes=[12, 11, 9, 7]), r"large_kernel_sizes\[0\]=12"),
    (dict(large_kernel_sizes=[13, 11, 9, 7], small_kernel=4), "small_kernel=4"),
    (dict(large_kernel_sizes=[14, 11, 9, 7], small_kernel=4), r"large_kernel_sizes\[0\]=14"),
    (dict(large_kernel_sizes=[0, 11, 9, 7]), r"large_kernel_sizes\[0\]=0"),
    (dict(large_kernel_sizes=[3, 11, 9, 7], small_kernel=5), "small_kernel=5 is larger"),
])
def test_kernel_sizes_are_validated_at_construction(kwargs, argument):
    """Issue 11 (4): a kernel a 'same'-padded conv cannot use is refused naming the argument."""
    cfg = dict(layers=[1, 1, 1, 1], channels=[8, 8, 8, 8], drop_path_rate=0.0, small_kernel=3, num_classes=2)
    cfg.update(kwargs)
    with pytest.raises(ValueError, match=argument):
        RepLKNet(**cfg)


@pytest.mark.parametrize("family", sorted(TINY))
def test_gradient_checkpointing_changes_nothing(family):
    """Issue 11 (5): recompute must not update BN statistics twice; loss, grads and stats identical."""
    paddle.seed(2)
    a = _tiny_model(family, num_classes=3, drop_path_rate=0.1)
    b = _tiny_model(family, num_classes=3, drop_path_rate=0.1)
    b.set_state_dict(a.state_dict())
    b.set_grad_checkpointing(True)
    x = paddle.randn([2, 3, 32, 32])
    y = paddle.to_tensor([0, 2])
    results = []
    for m in (a, b):
        m.train()
        paddle.seed(7)  # same drop-path draws
        loss = paddle.nn.functional.cross_entropy(m(x), y)
        loss.backward()
        results.append((float(loss), {n: p.grad.numpy() for n, p in m.named_parameters() if p.grad is not None},
                        {n: t.numpy() for n, t in m.state_dict().items()}))
    (la, ga, sa), (lb, gb, sb) = results
    assert la == lb and ga.keys() == gb.keys()
    for n in ga:
        np.testing.assert_array_equal(ga[n], gb[n], err_msg=n)
    for n in sa:
        np.testing.assert_array_equal(sa[n], sb[n], err_msg=n)


@pytest.mark.parametrize("family", sorted(TINY))
def test_sync_bn_model_runs_on_one_cpu(family, tmp_path):
    """Issue 11 (6): a model built for multi-GPU SyncBN training evaluates, trains and exports on a CPU."""
    model = _tiny_model(family, num_classes=3, use_sync_bn=True, drop_path_rate=0.0)
    assert any(isinstance(l, paddle.nn.SyncBatchNorm) for l in model.sublayers())
    plain = _tiny_model(family, num_classes=3, drop_path_rate=0.0)
    plain.set_state_dict(model.state_dict())
    x = paddle.randn([2, 3, 32, 32])
    for mode in ("train", "eval"):
        getattr(model, mode)()
        getattr(plain, mode)()
        np.testing.assert_allclose(model(x).numpy(), plain(x).numpy(), rtol=1e-5, atol=1e-6)
    model.eval()
    deploy = paddle_lk.reparameterize(model, fuse_bn=True)
    static = paddle.jit.to_static(deploy, input_spec=[paddle.static.InputSpec([None, 3, 32, 32], "float32")],
                                  full_graph=True)
    paddle.jit.save(static, str(tmp_path / "m"))
    np.testing.assert_allclose(paddle.jit.load(str(tmp_path / "m"))(x).numpy(), plain.eval()(x).numpy(),
                               rtol=1e-4, atol=1e-5)


def test_registry_tables_and_did_you_mean():
    info = paddle_lk.model_info("RepLKNet31B")
    assert info["family"] == "replknet" and info["top1"] == 86.0 and info["params_m"] == 79.0
    assert info["input_size"] == (3, 224, 224) and info["has_weights"]
    assert "RepLKNet3" not in paddle_lk.list_models(pretrained=True)
    assert paddle_lk.list_models(family="van") == VAN_VARIANTS
    with pytest.raises(KeyError) as exc:
        paddle_lk.create_model("RepLKNet31b")
    assert str(exc.value).index("RepLKNet31B") < str(exc.value).index("RepLKNet31L")
