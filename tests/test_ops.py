"""The large-kernel depthwise conv op (paddle_lk.ops): numerics vs F.conv2d, dispatcher, errors, export.

The first test that needs the op JIT-builds it (about a minute on 2 cores, then cached). Shapes are tiny:
Paddle's own depthwise conv, the reference, runs 31x31 kernels at ~2 GFLOP/s.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import paddle_lk.ops as ops
from paddle_lk.ops import _build
from paddle_lk.layers import DepthwiseConv2D

from helpers import TINY_REPLKNET, max_rel_diff, randomize_bn

RTOL = 1e-4  # fp32, relative to the output scale


@pytest.fixture(scope="module")
def op_module():
    try:
        return ops.load_op()
    except ops.OpBuildError as exc:  # e.g. no C++ compiler on this machine
        pytest.skip(f"custom op cannot be built here: {exc}")


def _rel(a: paddle.Tensor, b: paddle.Tensor) -> float:
    return max_rel_diff(b.numpy(), a.numpy())


# Every kernel size of the issue, H/W even, odd and smaller than the kernel, N in {1,3}, C in {1,5,64}.
CASES = [
    # N, C, H, W, K, bias
    (1, 1, 7, 7, 13, True),     # map smaller than the kernel (RepLKNet stage 4 pattern)
    (3, 5, 9, 11, 3, False),    # odd sizes
    (1, 64, 16, 16, 31, True),  # even, smaller than the kernel
    (3, 5, 12, 10, 5, True),
    (1, 5, 8, 6, 7, False),
    (3, 1, 15, 13, 27, True),
    (1, 64, 6, 9, 27, False),
    (3, 64, 10, 12, 7, True),
    (1, 5, 33, 31, 31, True),   # map larger than the kernel, odd
    (3, 1, 4, 5, 13, False),
    (1, 5, 11, 13, 19, True),   # the other register-block shapes of the CPU weight grad
    (2, 3, 9, 8, 63, False),    # the largest kernel the op takes
    (9, 7, 7, 7, 13, True),     # small-map (matrix) path: image blocks of 3 with a tail, 2 row blocks
    (5, 3, 8, 8, 13, False),    # small-map path at its 64-pixel limit
    (4, 2, 5, 3, 9, True),      # small-map path, non-square map
]


def _check_against_conv2d(n: int, c: int, h: int, w: int, k: int, d: int, with_bias: bool) -> None:
    """The op's output and its x / weight / bias gradients against F.conv2d ("same" padding d*(k//2))."""
    x = paddle.randn([n, c, h, w])
    weight = paddle.randn([c, 1, k, k]) / k
    bias = paddle.randn([c]) if with_bias else None
    leaves = [x, weight] + ([bias] if with_bias else [])
    for t in leaves:
        t.stop_gradient = False
    dy = paddle.randn([n, c, h, w])
    y = ops.depthwise_conv2d_lk(x, weight, bias, dilation=d)
    grads = paddle.grad([y], leaves, [dy])
    y_ref = F.conv2d(x, weight, bias, padding=d * (k // 2), dilation=d, groups=c)
    grads_ref = paddle.grad([y_ref], leaves, [dy])
    assert y.shape == y_ref.shape and y.dtype == paddle.float32
    assert _rel(y, y_ref) < RTOL
    for name, g, g_ref in zip(["x", "weight", "bias"], grads, grads_ref):
        assert _rel(g, g_ref) < RTOL, f"grad of {name}"


@pytest.mark.parametrize("n,c,h,w,k,with_bias", CASES)
def test_op_matches_conv2d_forward_and_grads(op_module, n, c, h, w, k, with_bias):
    _check_against_conv2d(n, c, h, w, k, 1, with_bias)


# Dilated ("same" padding d*(k//2)): kernels 3-9, dilations 1-7, maps smaller than the dilated extent
# d*(k-1)+1, odd/even sizes, the small-map and direct paths, VAN's 7x7 d3 and UniRepLKNet's branches.
DILATED_CASES = [
    # N, C, H, W, K, D, bias
    (2, 3, 14, 14, 7, 3, True),    # VAN DW-D-Conv at stage 3 size (extent 19 > 14)
    (1, 4, 7, 7, 7, 3, False),     # VAN stage 4: extent 19 on a 7x7 map
    (3, 2, 7, 7, 3, 5, True),      # UniRepLKNet k=3 d=5 on stage 4 (extent 11)
    (2, 3, 28, 28, 3, 4, False),
    (1, 2, 13, 11, 5, 2, True),    # odd sizes
    (2, 5, 12, 16, 9, 2, True),    # even sizes
    (1, 3, 5, 9, 3, 7, False),     # extent 15 larger than both sides
    (4, 2, 8, 8, 5, 1, True),
    (2, 2, 20, 9, 7, 2, False),
    (1, 1, 1, 6, 3, 3, True),      # a single row
    (9, 2, 6, 6, 3, 2, True),      # small map, batch tail
    (2, 3, 17, 23, 9, 6, True),
]


@pytest.mark.parametrize("n,c,h,w,k,d,with_bias", DILATED_CASES)
def test_dilated_op_matches_conv2d_forward_and_grads(op_module, n, c, h, w, k, d, with_bias):
    _check_against_conv2d(n, c, h, w, k, d, with_bias)


def test_dispatcher_runs_dilated_layers_through_the_op(op_module, count_op_calls):
    """VAN's DW-D-Conv layer (7x7, dilation 3, padding 9) and a UniRepLKNet branch use the op."""
    van = DepthwiseConv2D(6, 6, 7, padding=9, dilation=3, groups=6)
    uni = DepthwiseConv2D(6, 6, 3, padding=5, dilation=5, groups=6, bias_attr=False)
    x = paddle.randn([2, 6, 14, 14])
    with ops.op_path("custom"):
        y = uni(van(x))
    with ops.op_path("native"):
        y_ref = uni(van(x))
    assert count_op_calls == [7, 3]
    assert _rel(y, y_ref) < RTOL


def test_op_weight_grad_accumulates_over_batch_and_second_backward_path(op_module):
    """Gradients flow through two uses of the op (accumulation in the weight grad)."""
    x = paddle.randn([2, 3, 9, 9])
    weight = paddle.randn([3, 1, 5, 5])
    weight.stop_gradient = False
    y = ops.depthwise_conv2d_lk(ops.depthwise_conv2d_lk(x, weight), weight).sum()
    y.backward()
    w_ref = paddle.to_tensor(weight.numpy(), stop_gradient=False)
    y_ref = F.conv2d(F.conv2d(x, w_ref, padding=2, groups=3), w_ref, padding=2, groups=3).sum()
    y_ref.backward()
    assert _rel(weight.grad, w_ref.grad) < RTOL


# ---------------------------------------------------------------------------------------------------
# Bad input: a Python error naming the problem, never a crash
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,exc,pattern", [
    (lambda: (paddle.randn([1, 4, 8, 8]).astype("float64"), paddle.randn([4, 1, 3, 3]).astype("float64")),
     TypeError, "float32"),
    (lambda: (paddle.randn([4, 8, 8]), paddle.randn([4, 1, 3, 3])), ValueError, "4-D"),
    (lambda: (paddle.randn([1, 4, 8, 8]), paddle.randn([4, 1, 4, 4])), ValueError, "odd"),
    (lambda: (paddle.randn([1, 4, 8, 8]), paddle.randn([4, 1, 3, 5])), ValueError, "square"),
    (lambda: (paddle.randn([1, 4, 8, 8]), paddle.randn([5, 1, 3, 3])), ValueError, "channels"),
    (lambda: (paddle.randn([1, 4, 8, 8]), paddle.randn([4, 2, 3, 3])), ValueError, "one input channel"),
    (lambda: (paddle.randn([1, 4, 8, 8]), paddle.randn([4, 1, 65, 65])), ValueError, "3..63"),
    (lambda: (paddle.randn([1, 4, 8, 6]).transpose([0, 1, 3, 2]), paddle.randn([4, 1, 3, 3])),
     ValueError, "contiguous"),
])
def test_bad_input_raises_named_error(make, exc, pattern):
    x, weight = make()
    with pytest.raises(exc, match=pattern):
        ops.depthwise_conv2d_lk(x, weight)


def test_bad_bias_and_non_tensor_raise():
    x, weight = paddle.randn([1, 4, 8, 8]), paddle.randn([4, 1, 3, 3])
    with pytest.raises(ValueError, match="bias"):
        ops.depthwise_conv2d_lk(x, weight, paddle.randn([3]))
    with pytest.raises(TypeError, match="paddle Tensors"):
        ops.depthwise_conv2d_lk(np.zeros([1, 4, 8, 8], "float32"), weight)


def test_raw_op_validates_in_cpp(op_module):
    """Calling the compiled op directly (bypassing Python checks) still errors instead of crashing."""
    x = paddle.randn([1, 4, 8, 8])
    for weight, pattern in [(paddle.randn([4, 1, 4, 4]), "odd"), (paddle.randn([3, 1, 3, 3]), "channels"),
                            (paddle.randn([4, 1, 3, 5]), "square")]:
        with pytest.raises(Exception, match=pattern):
            op_module.lk_dwconv2d(x, weight, 1)
    with pytest.raises(Exception, match="bias"):
        op_module.lk_dwconv2d_bias(x, paddle.randn([4, 1, 3, 3]), paddle.randn([5]), 1)
    with pytest.raises(Exception, match="dilation"):
        op_module.lk_dwconv2d(x, paddle.randn([4, 1, 3, 3]), 0)


# ---------------------------------------------------------------------------------------------------
# Dispatcher
# ---------------------------------------------------------------------------------------------------
@pytest.fixture
def count_op_calls(monkeypatch):
    """Kernel sizes of the op calls made (the dispatcher and depthwise_conv2d_lk both end in _call_op)."""
    calls = []
    real = ops._call_op

    def counting(x, weight, bias, dilation):
        calls.append(weight.shape[2])
        return real(x, weight, bias, dilation)

    monkeypatch.setattr(ops, "_call_op", counting)
    return calls


@pytest.mark.parametrize("kwargs,applicable", [
    (dict(stride=1, padding=3, dilation=1), True),
    (dict(stride=[1, 1], padding=[3, 3], dilation=(1, 1)), True),
    (dict(stride=1, padding="same", dilation=1), True),
    (dict(stride=2, padding=3, dilation=1), False),
    (dict(stride=1, padding=9, dilation=3), True),       # VAN's DW-D-Conv: "same" with dilation
    (dict(stride=1, padding="same", dilation=2), False),  # Paddle's "same" drops the dilation
    (dict(stride=1, padding=4, dilation=2), False),      # not "same"
    (dict(stride=1, padding=[3, 6], dilation=[1, 2]), False),  # anisotropic dilation
    (dict(stride=1, padding=2, dilation=1), False),
])
def test_dispatcher_picks_op_only_when_it_fits(op_module, count_op_calls, kwargs, applicable):
    x, weight, bias = paddle.randn([2, 6, 11, 11]), paddle.randn([6, 1, 7, 7]), paddle.randn([6])
    with ops.op_path("auto"):
        y = ops.depthwise_conv2d(x, weight, bias, **kwargs)
    y_ref = F.conv2d(x, weight, bias, groups=6, **kwargs)
    assert _rel(y, y_ref) < RTOL
    assert bool(count_op_calls) == applicable


# ---------------------------------------------------------------------------------------------------
# AMP: the dispatch decision per level (GPU decisions checked on CPU by passing the device / AMP state)
# ---------------------------------------------------------------------------------------------------
def _tensors(x_dtype="float32", w_dtype="float32", b_dtype=None, k=7):
    x = paddle.randn([2, 4, 9, 9]).astype(x_dtype)
    w = paddle.randn([4, 1, k, k]).astype(w_dtype)
    b = paddle.randn([4]).astype(b_dtype) if b_dtype else None
    return x, w, b


@pytest.mark.parametrize("device,amp,dtypes,expected", [
    # GPU, O1: compute in the autocast dtype, whatever mix of float32 / half the inputs are
    ("gpu", ("O1", "float16"), ("float16", "float32", "float32"), ("custom", "float16", "float16")),
    ("gpu", ("O1", "bfloat16"), ("float32", "float32", None), ("custom", "bfloat16", "bfloat16")),
    ("gpu", ("OD", "float16"), ("float32", "float32", "float32"), ("custom", "float16", "float16")),
    # GPU, O2: the parameters' dtype (decorated float16 weights; a layer kept in float32 stays float32)
    ("gpu", ("O2", "float16"), ("float16", "float16", "float16"), ("custom", "float16", "float16")),
    ("gpu", ("O2", "float16"), ("float16", "float32", "float32"), ("custom", "float32", "float32")),
    ("gpu", ("O2", "bfloat16"), ("float32", "bfloat16", None), ("custom", "bfloat16", "bfloat16")),
    # GPU, no AMP: the inputs' dtype; mixed dtypes are left to F.conv2d
    ("gpu", ("O0", "float32"), ("float16", "float16", None), ("custom", "float16", "float16")),
    ("gpu", ("O0", "float32"), ("float16", "float32", None), ("native", None, None)),
    ("gpu", ("O1", "float16"), ("float64", "float64", None), ("native", None, None)),
    # CPU: the kernel computes float32; a half-precision request runs in float32, result cast back
    ("cpu", ("O0", "float32"), ("float32", "float32", "float32"), ("custom", "float32", "float32")),
    ("cpu", ("O1", "bfloat16"), ("float32", "float32", None), ("custom", "float32", "bfloat16")),
    ("cpu", ("O0", "float32"), ("bfloat16", "bfloat16", None), ("custom", "float32", "bfloat16")),
    ("cpu", ("O2", "float16"), ("float16", "float16", "float16"), ("custom", "float32", "float16")),
    ("cpu", ("O0", "float32"), ("float64", "float64", None), ("native", None, None)),
])
def test_dispatch_plan_per_amp_level(device, amp, dtypes, expected):
    x, w, b = _tensors(*dtypes)
    plan = ops.dispatch_plan(x, w, b, 1, 3, 1, mode="auto", device=device, amp=amp, has_cuda=True)
    assert (plan.kernel, plan.compute_dtype, plan.out_dtype) == expected, plan.reason
    assert plan.reason


def test_dispatch_plan_native_cases_say_why():
    x, w, _ = _tensors()
    assert ops.dispatch_plan(x, w, mode="native").reason == "op path 'native'"
    plan = ops.dispatch_plan(x, w, None, 2, 3, 1, mode="auto", device="gpu", amp=("O1", "float16"), has_cuda=True)
    assert plan.kernel == "native" and "stride" in plan.reason
    plan = ops.dispatch_plan(x, w, None, 1, 3, 1, mode="auto", device="gpu", amp=("O1", "float16"), has_cuda=False)
    assert plan.kernel == "native" and "without CUDA" in plan.reason
    plan = ops.dispatch_plan(x, w, None, 1, 9, 3, mode="auto", device="gpu", amp=("O2", "float16"), has_cuda=True)
    assert (plan.kernel, plan.compute_dtype) == ("custom", "float32")  # dilated, float32 parameters


def test_amp_on_cpu_changes_nothing(op_module, count_op_calls):
    """Paddle's auto_cast has no effect on a CPU place (it warns): the op runs in float32 at every level."""
    x, w, b = _tensors(b_dtype="float32")
    for level in ("O1", "O2"):
        with pytest.warns(UserWarning, match="CUDAPlace"), paddle.amp.auto_cast(level=level, dtype="bfloat16"):
            assert ops.amp_state() == ("O0", "float32")
            y = ops.depthwise_conv2d(x, w, b, 1, 3, 1)
        assert y.dtype == paddle.float32
    assert count_op_calls == [7, 7]


def test_dispatcher_follows_the_amp_state_it_reads(op_module, count_op_calls, monkeypatch):
    """The dispatcher acts on amp_state() (faked here to O1 bfloat16, as on a GPU): inputs and weight are
    cast, the CPU op computes float32, the result and every gradient come back in the right dtype."""
    monkeypatch.setattr(ops, "amp_state", lambda: ("O1", "bfloat16"))
    x, w, b = _tensors(b_dtype="float32")
    for t in (x, w, b):
        t.stop_gradient = False
    y = ops.depthwise_conv2d(x, w, b, 1, 3, 1)
    assert count_op_calls == [7] and y.dtype == paddle.bfloat16
    gx, gw, gb = paddle.grad([y.astype("float32").sum()], [x, w, b])
    assert (gx.dtype, gw.dtype, gb.dtype) == (paddle.float32,) * 3
    # The reference sees the same bfloat16-rounded inputs, computed in float32.
    xr, wr, br = (t.astype("bfloat16").astype("float32") for t in (x, w, b))
    for t in (xr, wr, br):
        t.stop_gradient = False
    ref = F.conv2d(xr, wr, br, padding=3, groups=4)
    refs = paddle.grad([ref.sum()], [xr, wr, br])
    assert max_rel_diff(ref.numpy(), y.astype("float32").numpy()) < 1e-2  # bfloat16 rounding
    for g, r in zip((gx, gw, gb), refs):
        assert max_rel_diff(r.numpy(), g.numpy()) < 1e-2


def test_dispatcher_native_and_custom_paths(op_module, count_op_calls, monkeypatch):
    x, weight = paddle.randn([1, 4, 9, 9]), paddle.randn([4, 1, 5, 5])
    with ops.op_path("native"):
        ops.depthwise_conv2d(x, weight, None, 1, 2, 1)
    assert count_op_calls == []
    monkeypatch.setenv("PADDLE_LK_OP", "custom")
    ops.depthwise_conv2d(x, weight, None, 1, 2, 1)
    assert count_op_calls == [5]
    # stride 2 cannot be expressed by the op: even `custom` runs it natively (RepLKNet's stems).
    y = ops.depthwise_conv2d(x, weight, None, 2, 2, 1)
    assert _rel(y, F.conv2d(x, weight, None, 2, 2, 1, 4)) < RTOL and count_op_calls == [5]
    # 1x1 and float64 stay on F.conv2d
    ops.depthwise_conv2d(x, paddle.randn([4, 1, 1, 1]), None, 1, 0, 1)
    ops.depthwise_conv2d(x.astype("float64"), weight.astype("float64"), None, 1, 2, 1)
    assert count_op_calls == [5]
    monkeypatch.setenv("PADDLE_LK_OP", "bogus")
    with pytest.raises(ValueError, match="PADDLE_LK_OP"):
        ops.depthwise_conv2d(x, weight, None, 1, 2, 1)


def test_unbuildable_op_custom_errors_auto_falls_back(monkeypatch):
    monkeypatch.setattr(ops, "_op_module", None)
    monkeypatch.setattr(ops, "_op_error", "no C++ compiler found (simulated)")
    monkeypatch.setattr(ops, "_warned", False)
    x, weight = paddle.randn([1, 4, 9, 9]), paddle.randn([4, 1, 5, 5])
    assert not ops.is_available()
    with ops.op_path("custom"), pytest.raises(ops.OpBuildError, match="simulated"):
        ops.depthwise_conv2d(x, weight, None, 1, 2, 1)
    with ops.op_path("auto"), pytest.warns(RuntimeWarning, match="simulated"):
        y = ops.depthwise_conv2d(x, weight, None, 1, 2, 1)
    assert _rel(y, F.conv2d(x, weight, None, 1, 2, 1, 4)) < 1e-6


def test_build_reports_why_it_cannot_build(tmp_path, monkeypatch):
    monkeypatch.setattr(_build, "_load_installed", lambda: None)
    monkeypatch.setenv("PADDLE_LK_OP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(_build.shutil, "which", lambda name: None)
    with pytest.raises(ops.OpBuildError, match="no C\\+\\+ compiler"):
        _build.build_and_load()
    monkeypatch.setattr(_build, "CSRC_DIR", tmp_path / "nowhere")
    with pytest.raises(ops.OpBuildError, match="sources missing"):
        _build.source_files(False)


def test_sources_ship_as_package_data():
    """The JIT build reads its sources from the package, so a wheel must carry them."""
    import re

    setup_py = open(os.path.join(os.path.dirname(__file__), "..", "setup.py")).read()
    assert re.search(r'"ops/csrc/\*"', setup_py)
    for name in _build.CPU_SOURCES + _build.CUDA_SOURCES + _build.HEADERS:
        assert (_build.CSRC_DIR / name).is_file()


# ---------------------------------------------------------------------------------------------------
# Models: with the op == without it; static graphs; saved models
# ---------------------------------------------------------------------------------------------------
def _tiny_replknet(**over):
    from paddle_lk.models.replknet import RepLKNet

    cfg = dict(TINY_REPLKNET, channels=[8, 16, 16, 16], layers=[1, 1, 1, 1], num_classes=4)
    cfg.update(over)
    return randomize_bn(RepLKNet(**cfg))


def _out_and_grads(model, x, proj, mode):
    model.clear_gradients()
    with ops.op_path(mode):
        out = model(x)
        (out * proj).sum().backward()
    return out.numpy(), {n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None}


def test_replknet_with_op_equals_without_train_and_deploy(op_module, count_op_calls):
    from paddle_lk.reparam import reparameterize

    model = _tiny_replknet()
    x = paddle.randn([2, 3, 32, 32])
    proj = paddle.randn([2, 4])  # a random projection of the logits as the loss
    # Train form, eval mode: output and every parameter gradient, per parameter.
    model.eval()
    out_n, grads_n = _out_and_grads(model, x, proj, "native")
    out_c, grads_c = _out_and_grads(model, x, proj, "custom")
    assert count_op_calls, "the op was never used"
    assert max_rel_diff(out_n, out_c) < RTOL
    assert grads_n.keys() == grads_c.keys()
    for name, g in grads_n.items():
        assert max_rel_diff(g, grads_c[name]) < RTOL, name
    # Train form, train mode (batch statistics). Some gradients are ~0 by construction (a BN bias
    # followed by a train-mode BN), so compare against the overall gradient scale.
    model.train()
    out_n, grads_n = _out_and_grads(model, x, proj, "native")
    out_c, grads_c = _out_and_grads(model, x, proj, "custom")
    assert max_rel_diff(out_n, out_c) < RTOL
    scale = max(np.abs(g).max() for g in grads_n.values())
    assert max(np.abs(g - grads_c[n]).max() for n, g in grads_n.items()) / scale < RTOL
    # Deploy form (large + small kernels merged into one biased conv), eval mode.
    model.eval()
    deploy = reparameterize(model)
    del count_op_calls[:]
    with ops.op_path("native"):
        ref = deploy(x).numpy()
    with ops.op_path("custom"):
        got = deploy(x).numpy()
    assert 13 in count_op_calls
    assert max_rel_diff(ref, got) < RTOL


def test_replknet_fixture_with_op(op_module, fixtures_dir):
    """The op path reproduces the official PyTorch RepLKNet outputs (fixture tolerance 1e-4)."""
    from paddle_lk import load_checkpoint
    from paddle_lk.models.replknet import RepLKNet

    meta = json.loads((fixtures_dir / "replknet_tiny_merged.json").read_text())
    cfg = dict(meta["config"])
    model = RepLKNet(**{k: v for k, v in cfg.items() if k in RepLKNet.__init__.__code__.co_varnames})
    load_checkpoint(model, str(fixtures_dir / "replknet_tiny_merged.pth"))
    model.eval()
    x = paddle.to_tensor(np.load(fixtures_dir / "replknet_tiny_merged_input.npy"))
    with ops.op_path("custom"):
        out = model(x).numpy()
    assert np.abs(out - np.load(fixtures_dir / "replknet_tiny_merged_out.npy")).max() < 1e-4


def test_to_static_save_and_fresh_process_load(op_module, tmp_path):
    """to_static + jit.save with the op; a fresh process loads it via jit_load and a predictor."""
    paddle.seed(1)
    net = paddle.nn.Sequential(DepthwiseConv2D(6, 6, 13, padding=6, groups=6), paddle.nn.ReLU(),
                               DepthwiseConv2D(6, 6, 5, padding=4, dilation=2, groups=6),  # the op's attribute
                               DepthwiseConv2D(6, 6, 3, stride=2, padding=1, groups=6))
    net.eval()
    x = paddle.randn([2, 6, 15, 15])
    with ops.op_path("custom"):
        y = net(x)
        static = paddle.jit.to_static(net, input_spec=[paddle.static.InputSpec([None, 6, 15, 15], "float32")],
                                      full_graph=True)
        assert _rel(static(x), y) < 1e-6
        paddle.jit.save(static, str(tmp_path / "op" / "model"))
    with ops.op_path("native"):
        native = paddle.jit.to_static(net, input_spec=[paddle.static.InputSpec([None, 6, 15, 15], "float32")],
                                      full_graph=True)
        paddle.jit.save(native, str(tmp_path / "native" / "model"))
    assert ops._uses_op(str(tmp_path / "op" / "model"))
    assert not ops._uses_op(str(tmp_path / "native" / "model"))
    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "y.npy", y.numpy())

    script = textwrap.dedent(f"""
        import numpy as np, paddle, paddle_lk.ops as ops
        x, y = np.load(r"{tmp_path / 'x.npy'}"), np.load(r"{tmp_path / 'y.npy'}")
        for sub in ("op", "native"):
            prefix = r"{tmp_path}" + "/" + sub + "/model"
            layer = ops.jit_load(prefix)
            d1 = np.abs(layer(paddle.to_tensor(x)).numpy() - y).max()
            pred = ops.create_predictor(prefix)
            pred.get_input_handle(pred.get_input_names()[0]).copy_from_cpu(x)
            pred.run()
            d2 = np.abs(pred.get_output_handle(pred.get_output_names()[0]).copy_to_cpu() - y).max()
            print(sub, float(d1), float(d2))
    """)
    env = dict(os.environ, GLOG_minloglevel="2")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln.split() for ln in proc.stdout.splitlines() if ln.startswith(("op ", "native "))]
    assert [ln[0] for ln in lines] == ["op", "native"]
    for _, d1, d2 in lines:
        assert float(d1) < 1e-4 and float(d2) < 1e-4


def test_default_onednn_predictor_on_a_program_with_the_op_is_exact_or_refuses(op_module, tmp_path):
    """What a user meets: export with the op, load the op, then a *default* paddle.inference predictor
    (oneDNN on, so the 1x1 convs feeding the op hand it oneDNN's blocked layouts). The outputs must match
    dygraph, or the run must fail naming the op: never silently wrong (issue 11, item 8)."""
    from paddle import inference

    paddle.seed(3)
    net = paddle.nn.Sequential(
        paddle.nn.Conv2D(4, 16, 1), DepthwiseConv2D(16, 16, 13, padding=6, groups=16), paddle.nn.ReLU(),
        paddle.nn.Conv2D(16, 16, 1), DepthwiseConv2D(16, 16, 7, padding=9, dilation=3, groups=16),
        paddle.nn.BatchNorm2D(16), paddle.nn.Conv2D(16, 8, 3, stride=2, padding=1),
        DepthwiseConv2D(8, 8, 5, padding=2, groups=8, bias_attr=False))
    randomize_bn(net)
    net.eval()
    x = paddle.randn([2, 4, 20, 18])
    prefix = str(tmp_path / "model")
    with ops.op_path("auto"):  # as tools/export.py --with-custom-op
        ref = net(x).numpy()
        paddle.jit.save(net, prefix, input_spec=[paddle.static.InputSpec([None, 4, 20, 18], "float32", "x")])
    assert ops._uses_op(prefix)
    ops.load_op()
    config = inference.Config(prefix + ".json", prefix + ".pdiparams")
    config.disable_glog_info()
    assert config.mkldnn_enabled(), "Paddle's default CPU config is expected to use oneDNN"
    predictor = inference.create_predictor(config)
    predictor.get_input_handle(predictor.get_input_names()[0]).copy_from_cpu(x.numpy())
    try:
        predictor.run()
    except Exception as exc:  # refusing is acceptable, if it says why
        assert "lk_dwconv2d" in str(exc), str(exc)[-2000:]
        return
    out = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
    assert max_rel_diff(ref, out) < RTOL
    # paddle_lk's own factory keeps oneDNN on and agrees.
    pred = ops.create_predictor(prefix)
    pred.get_input_handle(pred.get_input_names()[0]).copy_from_cpu(x.numpy())
    pred.run()
    assert max_rel_diff(ref, pred.get_output_handle(pred.get_output_names()[0]).copy_to_cpu()) < RTOL


def test_jit_load_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved program"):
        ops.jit_load(str(tmp_path / "absent"))


def test_scalar_fallback_path_matches(op_module, monkeypatch):
    """CPUs without AVX2/FMA get the portable scalar kernels (forced here with PADDLE_LK_OP_NO_AVX2)."""
    x = paddle.randn([2, 3, 9, 7])
    weight, bias = paddle.randn([3, 1, 5, 5]), paddle.randn([3])
    for t in (x, weight, bias):
        t.stop_gradient = False
    monkeypatch.setenv("PADDLE_LK_OP_NO_AVX2", "1")
    y = ops.depthwise_conv2d_lk(x, weight, bias)
    grads = paddle.grad([y], [x, weight, bias], [paddle.ones_like(y)])
    monkeypatch.delenv("PADDLE_LK_OP_NO_AVX2")
    y_ref = F.conv2d(x, weight, bias, padding=2, groups=3)
    grads_ref = paddle.grad([y_ref], [x, weight, bias], [paddle.ones_like(y)])
    assert _rel(y, y_ref) < RTOL
    for g, g_ref in zip(grads, grads_ref):
        assert _rel(g, g_ref) < RTOL
