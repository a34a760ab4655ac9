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
        RepLKNet([13, 11], [1, 1, 1], [8, 16, 32], 0.0, 5)
    with pytest.raises(ValueError, match="small_kernel"):
        RepLKNet([3, 3], [1, 1], [8, 16], 0.0, 5)
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
