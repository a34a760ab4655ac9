"""paddle_lk.integrations.compat: every toolkit workaround, and the shipped configs as shipped.

For each shim, one test reproduces the upstream bug on the *unpatched* upstream function and checks
it against the shim's version guard (:func:`check_upstream`): when a toolkit / Paddle / NumPy /
Pillow upgrade fixes the bug while the guard still applies, the test fails and names the shim to
drop (and a guard that excludes a version still having the bug fails too). A second test checks the
patched path users get.

Then every shipped seg / det config trains with its own transforms and losses (shrunk by value
overrides only: widths, crop / resize sizes, iterations) on tiny data in the toolkit's own dataset
layout, and every exported model runs in a default ``paddle.inference`` predictor (oneDNN on) with
the dygraph model's outputs.
"""
from __future__ import annotations

import os
import re

import numpy as np
import paddle
import pytest

pytest.importorskip("paddleseg")
pytest.importorskip("ppdet")

import paddle_lk.integrations.det  # noqa: E402,F401 -- registers and installs the shims
import paddle_lk.integrations.seg  # noqa: E402,F401
from paddle_lk.engine.cli import main  # noqa: E402
from paddle_lk.integrations import compat, det, det_infer, seg  # noqa: E402
from toolkit_helpers import (DET_CONFIGS, ROOT, SEG_CONFIGS, det_value_overrides,  # noqa: E402
                             last_json, make_coco_layout, predict, run_tool, seg_data_for, seg_value_overrides,
                             write_astronaut)


def check_upstream(name: str, bug_shows: bool) -> None:
    """The upstream bug must show exactly when shim ``name``'s version guard applies."""
    shim = compat.SHIMS[name]
    if bug_shows and not shim.applies():
        pytest.fail(f"the upstream bug of shim '{name}' shows with the installed versions, but its guard "
                    f"{shim.requires} excludes them: widen the guard")
    if not bug_shows and shim.applies():
        pytest.fail(f"the upstream bug of shim '{name}' is gone with the installed versions: drop the shim "
                    f"or end its guard {shim.requires} before them")


def raises(fn, exc=Exception, match: str = "") -> bool:
    """Whether ``fn()`` raises ``exc`` with ``match`` in its message (other errors propagate)."""
    try:
        fn()
    except exc as e:  # noqa: PERF203
        if match and match not in str(e):
            raise
        return True
    return False


# --------------------------------------------------------------------------------------------
# Guards and installation

def test_version_guards():
    assert compat._release("3.3.1") == (3, 3, 1) and compat._release("3.0.0rc1") == (3, 0, 0)
    v = compat.dist_version("numpy")
    assert v == np.__version__
    assert compat.version_in("numpy", f">={v}") and compat.version_in("numpy", f"<={v},>=1")
    assert not compat.version_in("numpy", f"<{v}") and not compat.version_in("numpy", f">{v}")
    assert not compat.version_in("no-such-distribution-paddle-lk", ">=0")
    assert compat.dist_version("paddle") == paddle.__version__
    with pytest.raises(ValueError):
        compat.version_in("numpy", "~=1")


def test_installed_shims_are_those_whose_guard_holds():
    import paddle_lk.integrations.ppcls  # noqa: F401 -- installs the PaddleClas shim (seg/det: at import above)

    toolkit_shims = {n for n, s in compat.SHIMS.items() if s.toolkit in ("ppdet", "paddleseg", "paddleclas")}
    assert set(compat.installed()) == {n for n in toolkit_shims if compat.SHIMS[n].applies()}
    # Installing again changes nothing; every replacement keeps its upstream original.
    before = dict(compat._ORIGINALS)
    for toolkit in ("ppdet", "paddleseg", "paddleclas"):
        compat.install(toolkit)
    assert compat._ORIGINALS == before
    for (owner, attr), upstream in before.items():
        current = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
        assert current is not upstream and compat.original(owner, attr) is upstream


# --------------------------------------------------------------------------------------------
# ppdet_zero_d_concat


def _rpn_eval():
    from ppdet.modeling.proposal_generator.rpn_head import RPNHead

    head = RPNHead(anchor_generator={"anchor_sizes": [[16]], "aspect_ratios": [1.0], "strides": [8]},
                   test_proposal={"pre_nms_top_n": 50, "post_nms_top_n": 20, "min_size": 0.0}, in_channel=4)
    head.eval()
    feats = [paddle.uniform([1, 4, 4, 4], min=-1, max=1, seed=1)]
    return head, feats, {"im_shape": paddle.to_tensor([[32.0, 32.0]])}


def test_upstream_bug_ppdet_zero_d_concat(monkeypatch):
    from ppdet.modeling.layers import FCOSBox
    from ppdet.modeling.proposal_generator.rpn_head import RPNHead

    msg = "[0, 0)"  # paddle.concat of 0-d tensors: "The axis is expected to be in range of [0, 0)"
    merge_fails = raises(lambda: compat.original(FCOSBox, "_merge_hw")(FCOSBox(), paddle.zeros([1, 2, 3, 4])),
                         ValueError, msg)
    head, feats, inputs = _rpn_eval()
    monkeypatch.setattr(RPNHead, "_gen_proposal", compat.original(RPNHead, "_gen_proposal"))
    rpn_fails = raises(lambda: head(feats, inputs), ValueError, msg)
    assert merge_fails == rpn_fails
    check_upstream("ppdet_zero_d_concat", rpn_fails)


def test_ppdet_zero_d_concat_patched():
    from ppdet.modeling.heads.cascade_head import CascadeHead
    from ppdet.modeling.layers import FCOSBox
    from ppdet.modeling.proposal_generator import target

    np.testing.assert_array_equal(FCOSBox()._merge_hw(paddle.zeros([2, 5, 3, 4])).numpy(), [2, 5, 12])
    head, feats, inputs = _rpn_eval()
    rois, rois_num, _ = head(feats, inputs)
    assert rois_num.shape == [1] and int(rois_num[0]) == rois[0].shape[0] > 0

    class _Stub:  # _get_rois_from_boxes reads only self.training
        training = False

    boxes = [paddle.to_tensor([[1.0, 2, 50, 60], [-5, 0, 10, 10]]), paddle.to_tensor([[0.0, 0, 4, 4]])]
    rois, rois_num = CascadeHead._get_rois_from_boxes(_Stub(), boxes, paddle.to_tensor([[40.0, 40], [8, 8]]))
    np.testing.assert_array_equal(rois_num.numpy(), [2, 1])
    np.testing.assert_allclose(rois[0].numpy(), [[1, 2, 40, 40], [0, 0, 10, 10]])
    # Training targets (dygraph): rois_num per image, 1-d as Paddle 2 gave.
    out = target.generate_proposal_target(
        [paddle.to_tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])], [paddle.to_tensor([[1]], dtype="int32")],
        [paddle.to_tensor([[0.0, 0, 9, 9]])], batch_size_per_im=4, fg_fraction=0.5, fg_thresh=0.5, bg_thresh=0.5,
        num_classes=2, use_random=False, is_crowd=[paddle.to_tensor([[0]], dtype="int32")])
    assert out[-1].shape == [1] and int(out[-1][0]) == out[0][0].shape[0]


# --------------------------------------------------------------------------------------------
# ppdet_bbox_get_pred


def test_upstream_bug_ppdet_bbox_get_pred():
    from ppdet.modeling.post_process import BBoxPostProcess

    upstream = compat.original(BBoxPostProcess, "get_pred")
    bug = raises(lambda: upstream(BBoxPostProcess(), paddle.to_tensor([[0, 0.9, 1, 1, 5, 5.0]]),
                                  paddle.to_tensor([1], dtype="int32"), paddle.to_tensor([[10.0, 10]]),
                                  paddle.to_tensor([[1.0, 1]])), ValueError, "[0, 0)")
    check_upstream("ppdet_bbox_get_pred", bug)


def test_ppdet_bbox_get_pred_patched():
    from ppdet.modeling.post_process import BBoxPostProcess

    pp = BBoxPostProcess()
    # Image 0 has no detection (one fake box, as upstream), image 1 two; scale_factor is (y, x).
    bboxes, pred, num = pp.get_pred(paddle.to_tensor([[0, 0.9, 1, 1, 5, 5.0], [1, 0.5, 2, 2, 30, 8]]),
                                    paddle.to_tensor([0, 2], dtype="int32"),
                                    paddle.to_tensor([[10.0, 10], [20, 20]]), paddle.to_tensor([[1.0, 1], [2, 0.5]]))
    np.testing.assert_array_equal(num.numpy(), [1, 2])
    np.testing.assert_allclose(pred.numpy(), [[0, 0, 0, 0, 1, 1], [0, 0.9, 2, 0.5, 10, 2.5], [1, 0.5, 4, 1, 40, 4]],
                               rtol=1e-6)


# --------------------------------------------------------------------------------------------
# ppdet_multiclass_nms_pir


def _nms_inputs():
    boxes = paddle.to_tensor([[[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]]])
    scores = paddle.to_tensor([[[0.9, 0.8, 0.7], [0.1, 0.2, 0.6]]])
    return boxes, scores


def _traced_nms(nms):
    def run(boxes, scores):
        out, num, _ = nms(boxes, scores, 0.05, -1, 10, 0.5, False)
        return out, num

    return paddle.jit.to_static(run, full_graph=True)


def test_upstream_bug_ppdet_multiclass_nms_pir():
    from ppdet.modeling import ops

    upstream = compat.original(ops, "multiclass_nms")
    bug = raises(lambda: _traced_nms(upstream)(*_nms_inputs()), TypeError, "multiclass_nms3")
    check_upstream("ppdet_multiclass_nms_pir", bug)


def test_ppdet_multiclass_nms_pir_patched():
    from ppdet.modeling import ops

    eager = ops.multiclass_nms(*_nms_inputs(), 0.05, -1, 10, 0.5, False)
    traced = _traced_nms(ops.multiclass_nms)(*_nms_inputs())
    np.testing.assert_allclose(traced[0].numpy(), eager[0].numpy())
    np.testing.assert_array_equal(traced[1].numpy(), eager[1].numpy())
    # Per class, box 1 and box 0 overlap (IoU 0.81 > 0.5): the lower-scored one goes -> 2 + 2 kept.
    assert eager[0].shape[0] == 4


# --------------------------------------------------------------------------------------------
# ppdet_numpy_aliases

_POLY = [np.array([1.0, 1, 6, 1, 6, 6, 1, 6])]


@pytest.mark.filterwarnings("ignore::FutureWarning")  # NumPy 1.24's note on the removed alias
def test_upstream_bug_ppdet_numpy_aliases():
    from ppdet.modeling.proposal_generator import target

    upstream = compat.original(target, "polygons_to_mask")
    check_upstream("ppdet_numpy_aliases", raises(lambda: upstream(_POLY, 8, 8), AttributeError, "bool"))


def test_ppdet_numpy_aliases_patched():
    import pycocotools.mask as mask_util
    from ppdet.modeling.proposal_generator import target

    mask = target.polygons_to_mask(_POLY, 8, 8)
    expected = mask_util.decode(mask_util.merge(mask_util.frPyObjects(_POLY, 8, 8))).astype(bool)
    assert mask.dtype == bool and mask.any()
    np.testing.assert_array_equal(mask, expected)
    if compat.SHIMS["ppdet_numpy_aliases"].applies():
        # The whole class: no imported PaddleDetection function reads a removed alias any more,
        # and NumPy itself was left alone.
        assert compat.numpy_alias_users("ppdet") == []
        assert "bool" not in np.__dict__ or np.bool is np.bool_


# --------------------------------------------------------------------------------------------
# ppdet_fcos_iou_loss_clamp


def _iou_inputs():
    pred = paddle.to_tensor([[2.0, 2, 2, 2], [1, 1, 1, 1], [3, 3, 3, 3]])
    targets = paddle.to_tensor([[2.0, 2, 3, 3], [0, 0, 0, 0], [3, 3, 3, 3]])
    mask = paddle.to_tensor([1.0, 0.0, 1.0])  # the second location is a negative
    return pred, targets, mask


def test_upstream_bug_ppdet_fcos_iou_loss():
    from ppdet.modeling.losses.fcos_loss import FCOSLoss

    upstream = compat.original(FCOSLoss, "_FCOSLoss__iou_loss")
    pred, targets, mask = _iou_inputs()
    loss = upstream(FCOSLoss(iou_loss_type="IoU"), pred, targets, mask, weights=paddle.ones([3]))
    # FCOSLoss.forward multiplies by the positive mask and sums: inf * 0 = nan.
    check_upstream("ppdet_fcos_iou_loss_clamp", not np.isfinite(float((loss * mask).sum())))


def test_ppdet_fcos_iou_loss_patched():
    from ppdet.modeling.losses.fcos_loss import FCOSLoss

    pred, targets, mask = _iou_inputs()
    pred.stop_gradient = False
    loss = FCOSLoss(iou_loss_type="IoU")._FCOSLoss__iou_loss(pred, targets, mask, weights=paddle.ones([3]))
    total = (loss * mask).sum()
    total.backward()
    # Positives: -log((inter + 1) / (union + 1)); the negative contributes -log(1e-6) * 0 = 0.
    iou0 = (4 * 4 + 1) / (4 * 4 + 5 * 5 - 4 * 4 + 1)
    np.testing.assert_allclose(loss.numpy()[[0, 2]], [-np.log(iou0), 0.0], atol=1e-6)
    assert np.isfinite(float(total)) and np.isfinite(pred.grad.numpy()).all()


# --------------------------------------------------------------------------------------------
# ppdet_draw_bbox_pillow10

_DETS = [{"image_id": 0, "category_id": 0, "bbox": [4.0, 10.0, 20.0, 12.0], "score": 0.9}]


def test_upstream_bug_ppdet_draw_bbox():
    from PIL import Image
    from ppdet.utils import visualizer

    upstream = compat.original(visualizer, "draw_bbox")
    bug = raises(lambda: upstream(Image.new("RGB", (40, 40)), 0, {0: "a"}, _DETS, 0.5), (AttributeError, TypeError))
    check_upstream("ppdet_draw_bbox_pillow10", bug)


def test_ppdet_draw_bbox_patched():
    from PIL import Image
    from ppdet.utils import visualizer

    drawn = np.asarray(visualizer.visualize_results(Image.new("RGB", (40, 40)), _DETS, None, None, None, 0,
                                                    {0: "a"}, 0.5))
    assert drawn[10:23, 4].any() and drawn[30:, :].sum() == 0  # box edge drawn, nothing below it


# --------------------------------------------------------------------------------------------
# PaddleSeg: CrossEntropyLoss, calculate_area, RandomPaddingCrop


def _ce_inputs():
    logit = paddle.uniform([2, 3, 4, 5], min=-2, max=2, seed=2)
    label = paddle.to_tensor(np.random.RandomState(0).randint(0, 3, (2, 4, 5)).astype("int64"))
    label[0, 0, 0] = 255
    return logit, label


def test_upstream_bug_paddleseg_cross_entropy():
    from paddleseg.models.losses import CrossEntropyLoss

    check_upstream("paddleseg_ce_float32_label",
                   raises(lambda: CrossEntropyLoss()(*_ce_inputs()), (TypeError, ValueError), "int64"))


def test_paddleseg_cross_entropy_patched(capsys):
    from paddleseg.cvlibs import manager

    logit, label = _ce_inputs()
    loss_cls = manager.LOSSES[compat.FLOAT32_CE]
    got = float(loss_cls()(logit, label))
    lab = label.numpy().reshape(-1)
    logp = paddle.nn.functional.log_softmax(logit, axis=1).numpy().transpose(0, 2, 3, 1).reshape(-1, 3)
    valid = lab != 255
    # PaddleSeg's default (avg_non_ignore=True): the mean over the non-ignored pixels.
    expected = -logp[valid, lab[valid]].mean()
    assert got == pytest.approx(expected, rel=1e-5)
    # The config rewrite covers nested losses and says so in one line.
    dic = {"loss": {"types": [{"type": "CrossEntropyLoss"},
                              {"type": "MixedLoss", "losses": [{"type": "CrossEntropyLoss"}, {"type": "DiceLoss"}],
                               "coef": [1, 1]}], "coef": [1, 0.4]}}
    done = compat.rewrite_ce_losses(dic)
    lines = [line for line in capsys.readouterr().out.splitlines() if "CrossEntropyLoss" in line]
    if compat.SHIMS["paddleseg_ce_float32_label"].applies():
        assert done == ["loss.types.0", "loss.types.1.losses.0"]
        assert dic["loss"]["types"][1]["losses"][0]["type"] == compat.FLOAT32_CE
        assert len(lines) == 1 and "Paddle" in lines[0] and compat.FLOAT32_CE in lines[0]


def test_upstream_bug_paddleseg_calculate_area():
    from paddleseg.utils import metrics

    upstream = compat.original(metrics, "calculate_area")
    pred = paddle.to_tensor([[[0, 1], [2, 1]]], dtype="int64")
    check_upstream("paddleseg_calculate_area", raises(lambda: upstream(pred, pred, 3), ValueError, "[0, 0)"))


def test_paddleseg_calculate_area_patched():
    from paddleseg.utils import metrics

    rng = np.random.RandomState(0)
    pred = rng.randint(0, 5, (1, 1, 9, 11))
    label = rng.randint(0, 5, (1, 1, 9, 11))
    label[0, 0, :2] = 255
    inter, p_area, l_area = metrics.calculate_area(paddle.to_tensor(pred), paddle.to_tensor(label), 5, 255)
    valid = label != 255
    for c in range(5):
        assert int(p_area[c]) == ((pred == c) & valid).sum()
        assert int(l_area[c]) == (label == c).sum()
        assert int(inter[c]) == ((pred == c) & (label == c)).sum()
    assert inter.dtype == paddle.int64


def _crop_sample(h: int, w: int, one_class: bool = False):
    """Image whose channel 0 is the label map, so a consistent crop keeps img[..., 0] == label."""
    label = np.zeros((h, w), np.uint8)
    if not one_class:
        label[:, w // 3:] = 7
        label[h // 2:, : w // 2] = 12
    img = np.stack([label.astype(np.float32), np.full((h, w), 5.0), np.full((h, w), 9.0)], axis=-1)
    return {"img": img, "label": label.copy(), "gt_fields": ["label"], "trans_info": []}


def test_upstream_bug_paddleseg_random_padding_crop():
    from paddleseg.transforms import RandomPaddingCrop

    upstream = compat.original(RandomPaddingCrop, "__call__")
    np.random.seed(0)
    out = upstream(RandomPaddingCrop(crop_size=[512, 512], category_max_ratio=0.75), _crop_sample(600, 700))
    check_upstream("paddleseg_random_padding_crop", out["img"].shape != (512, 512, 3))


@pytest.mark.parametrize("hw, one_class", [((600, 700), False), ((300, 200), False), ((600, 700), True)],
                         ids=["crop", "pad", "no-window-meets-ratio"])
def test_paddleseg_random_padding_crop_patched(hw, one_class):
    from paddleseg.transforms import RandomPaddingCrop

    np.random.seed(0)
    op = RandomPaddingCrop(crop_size=[512, 384], category_max_ratio=0.75, ignore_index=255, label_padding_value=255)
    out = op(_crop_sample(*hw, one_class=one_class))
    assert out["img"].shape == (384, 512, 3) and out["label"].shape == (384, 512)
    # Image and label cropped at the same window (padding: image 127.5, label 255).
    pad = out["label"] == 255
    np.testing.assert_array_equal(out["img"][..., 0][~pad], out["label"][~pad])
    assert (out["img"][..., 1][~pad] == 5).all() and (out["img"][pad] == 127.5).all()
    if not one_class:
        labels, counts = np.unique(out["label"][~pad], return_counts=True)
        assert len(labels) > 1 and counts.max() / counts.sum() < 0.75


# --------------------------------------------------------------------------------------------
# paddle_onednn_interp


class _Resize(paddle.nn.Layer):
    def forward(self, x):
        up = paddle.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
        return paddle.nn.functional.interpolate(up, size=[7, 9], mode="bilinear", align_corners=False)


def _save_resize(prefix: str, safe: bool) -> None:
    spec = [paddle.static.InputSpec([None, 3, None, None], "float32", "x")]
    if safe:
        with compat.onednn_safe_resize():  # what the one export path traces under
            paddle.jit.save(paddle.jit.to_static(_Resize(), input_spec=spec, full_graph=True), prefix)
    else:
        paddle.jit.save(paddle.jit.to_static(_Resize(), input_spec=spec, full_graph=True), prefix)


def test_upstream_bug_paddle_memory_optim_pir(tmp_path):
    """Paddle Inference 3.3 cannot create a predictor for a PIR program with enable_memory_optim(),
    which PaddleClas's deploy predictor always calls."""
    import paddle.inference as pi

    _save_resize(str(tmp_path / "m"), safe=True)
    config = pi.Config(str(tmp_path / "m.json"), str(tmp_path / "m.pdiparams"))
    config.enable_memory_optim()
    bug = raises(lambda: pi.create_predictor(config), ValueError, "memory_optimize_pass")
    check_upstream("paddleclas_deploy_memory_optim", bug)


def test_paddleclas_deploy_predictor_patched(tmp_path):
    pytest.importorskip("paddleclas")
    import paddle_lk.integrations.ppcls  # noqa: F401 -- installs the shim
    from paddleclas.deploy.utils.predictor import Predictor

    if not compat.SHIMS["paddleclas_deploy_memory_optim"].applies():
        pytest.skip("the installed versions do not need the shim")
    assert "paddleclas_deploy_memory_optim" in compat.installed()
    _save_resize(str(tmp_path / "inference"), safe=True)
    args = {"use_gpu": False, "enable_mkldnn": True, "cpu_num_threads": 1, "enable_profile": False,
            "ir_optim": True, "use_tensorrt": False, "use_fp16": False}

    class Args(dict):
        __getattr__ = dict.__getitem__

    predictor = Predictor(Args(args), str(tmp_path)).predictor  # would raise ValueError unpatched
    x = np.random.RandomState(0).rand(1, 3, 5, 6).astype("float32")
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.copy_from_cpu(x)
    predictor.run()
    got = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
    np.testing.assert_allclose(got, _Resize()(paddle.to_tensor(x)).numpy(), atol=1e-5)


def test_upstream_bug_paddle_onednn_interp(tmp_path):
    _save_resize(str(tmp_path / "plain"), safe=False)
    x = np.random.RandomState(0).rand(1, 3, 5, 6).astype("float32")
    bug = raises(lambda: predict(str(tmp_path / "plain"), {"x": x}), NotImplementedError,
                 "ConvertPirAttribute2RuntimeAttribute")
    check_upstream("paddle_onednn_interp", bug)


def test_exported_resize_runs_in_default_predictor(tmp_path):
    _save_resize(str(tmp_path / "safe"), safe=True)
    x = np.random.RandomState(0).rand(2, 3, 5, 6).astype("float32")
    got = predict(str(tmp_path / "safe"), {"x": x})[0]
    np.testing.assert_allclose(got, _Resize()(paddle.to_tensor(x)).numpy(), atol=1e-5)


@pytest.mark.parametrize("kwargs", [
    {"size": [32, 40], "mode": "bilinear"}, {"size": [32, 40], "mode": "bilinear", "align_corners": True},
    {"size": [7, 9], "mode": "bilinear", "align_mode": 1}, {"scale_factor": [1.5, 2.5], "mode": "bilinear"},
    {"scale_factor": 2.0, "mode": "nearest"}, {"scale_factor": [2, 3], "mode": "nearest"},
    {"size": [30, 41], "mode": "nearest"}, {"size": [7, 5], "mode": "nearest"},
    {"size": "tensor", "mode": "bilinear"}], ids=lambda k: "-".join(f"{a}={b}" for a, b in k.items()))
def test_safe_interpolate_matches_upstream(kwargs):
    import paddle.nn.functional as F

    kwargs = dict(kwargs)
    if kwargs.get("size") == "tensor":
        kwargs["size"] = paddle.to_tensor([26, 35], dtype="int32")
    x = paddle.uniform([2, 3, 13, 17], min=-1, max=1, seed=4)
    safe = compat._make_safe_interpolate(F.interpolate)
    np.testing.assert_allclose(safe(x, **kwargs).numpy(), F.interpolate(x, **kwargs).numpy(), rtol=0, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Every shipped config trains as shipped


@pytest.mark.parametrize("cfg_path", SEG_CONFIGS, ids=os.path.basename)
def test_shipped_seg_config_trains(cfg_path, tmp_path):
    raw, ov = seg_value_overrides(cfg_path, seg_data_for(cfg_path, tmp_path))
    types = [op["type"] for op in raw["train_dataset"]["transforms"]]
    assert "RandomPaddingCrop" in types and "Normalize" in types  # the shipped pipeline runs
    res = run_tool("train", ["-c", cfg_path, "-o", *ov, "--output", tmp_path / "out"])
    assert res.returncode == 0, res.stderr[-3000:]
    summary = last_json(res.stdout)
    assert summary["updates"] == 2 and np.isfinite(summary["loss"])
    losses = [float(v) for v in re.findall(r"iter \d+/2 loss (\S+)", res.stderr)]
    assert len(losses) == 2 and np.isfinite(losses).all(), res.stderr[-3000:]
    if compat.SHIMS["paddleseg_ce_float32_label"].applies():
        said = [line for line in res.stderr.splitlines() if "[seg config]" in line]
        assert len(said) == 1 and "CrossEntropyLoss" in said[0]


@pytest.mark.parametrize("cfg_path", DET_CONFIGS, ids=os.path.basename)
def test_shipped_det_config_trains(cfg_path, tmp_path):
    root = make_coco_layout(tmp_path / "coco")
    _, ov = det_value_overrides(cfg_path, root)
    res = run_tool("train", ["-c", cfg_path, "-o", *ov, "--output", tmp_path / "out"])
    assert res.returncode == 0, res.stderr[-4000:]
    # "epoch 1/1 batch 1/2 loss 7.78 lr ... loss_cls 1.1 loss_box 5.87 ..." for each of the 2 iterations.
    totals = [float(v) for v in re.findall(r"batch \d+/\d+ loss (\S+)", res.stderr)]
    parts = [float(v) for v in re.findall(r"\bloss_\w+ (\S+)", res.stderr)]
    assert len(totals) == 2 and parts, res.stderr[-3000:]
    assert np.isfinite(totals).all() and np.isfinite(parts).all(), res.stderr[-3000:]
    state = paddle.load(str(tmp_path / "out" / "best_model.pdparams"))  # no evaluation: the final weights
    bad = [k for k, v in state.items() if not np.isfinite(np.asarray(v)).all()]
    assert not bad, f"{len(bad)} of {len(state)} saved tensors are not finite"


# --------------------------------------------------------------------------------------------
# Every shipped config exports and runs in a default predictor like dygraph


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory) -> str:
    return write_astronaut(tmp_path_factory.mktemp("img") / "astronaut.jpg")


def _export(cfg_path: str, ov, weights, out, *extra) -> str:
    """``tools/export.py`` in this process; returns the program prefix."""
    assert main("export", ["-c", cfg_path, "-o", *ov, "-w", str(weights), "--output", str(out), *extra]) == 0
    return str(out / "model")


@pytest.mark.parametrize("cfg_path", DET_CONFIGS, ids=os.path.basename)
def test_det_export_default_predictor_matches_dygraph(cfg_path, tmp_path, astronaut):
    _, ov = det_value_overrides(cfg_path, score_threshold=0.0)  # random weights: keep every box
    cfg = det.load_det_config(cfg_path, ov)
    paddle.seed(3)
    model = det.build_model(cfg)
    paddle.save(model.state_dict(), str(tmp_path / "w.pdparams"))
    prefix = _export(cfg_path, ov, tmp_path / "w.pdparams", tmp_path / "exp")
    model.eval()
    cfg = det.load_det_config(cfg_path, ov)
    inputs = det_infer.prepare_inputs(cfg, astronaut, det_infer.test_transforms(cfg))
    with paddle.no_grad():
        ref = model(dict(inputs))
    feeds = {k: v.numpy() for k, v in inputs.items()}
    outs = predict(prefix, feeds)
    ref_bbox, bbox, num = ref["bbox"].numpy(), outs[0], outs[1]
    assert int(num[0]) == int(ref["bbox_num"].numpy()[0]) == len(ref_bbox) > 0
    np.testing.assert_allclose(bbox, ref_bbox, rtol=1e-4, atol=1e-3)
    if "mask" in ref:
        ref_mask, mask = ref["mask"].numpy(), outs[2]
        assert mask.shape == ref_mask.shape == (len(ref_bbox), 256, 256) and ref_mask.any()
        assert (mask != ref_mask).mean() < 1e-4  # pixels at the 0.5 threshold may flip


def test_upstream_bug_ppdet_cascade_pred_bbox_onednn(tmp_path, astronaut, monkeypatch):
    from ppdet.modeling.heads.cascade_head import CascadeHead

    cfg_path = str(ROOT / "configs" / "det" / "replknet31b_cascade_mask_rcnn_fpn_3x_coco.yml")
    ov = det_value_overrides(cfg_path, score_threshold=0.0)[1]
    cfg = det.load_det_config(cfg_path, ov)
    paddle.save(det.build_model(cfg).state_dict(), str(tmp_path / "w.pdparams"))
    monkeypatch.setattr(CascadeHead, "_get_pred_bbox", compat.original(CascadeHead, "_get_pred_bbox"))
    prefix = _export(cfg_path, ov, tmp_path / "w.pdparams", tmp_path / "exp", "--no-verify")
    inputs = det_infer.prepare_inputs(cfg, astronaut, det_infer.test_transforms(cfg))
    bug = raises(lambda: predict(prefix, {k: v.numpy() for k, v in inputs.items()}), RuntimeError)
    check_upstream("ppdet_cascade_pred_bbox_onednn", bug)


@pytest.mark.parametrize("cfg_path", SEG_CONFIGS, ids=os.path.basename)
def test_seg_export_default_predictor_matches_dygraph(cfg_path, tmp_path):
    _, ov = seg_value_overrides(cfg_path)
    cfg = seg.load_config(cfg_path, ov)
    paddle.seed(3)
    model = seg.builder(cfg).model
    paddle.save(model.state_dict(), str(tmp_path / "w.pdparams"))
    prefix = _export(cfg_path, ov, tmp_path / "w.pdparams", tmp_path / "exp")
    model.eval()
    x = np.random.RandomState(0).uniform(-2, 2, (1, 3, 72, 104)).astype("float32")
    with paddle.no_grad():
        logits = model(paddle.to_tensor(x))[0].numpy()[0]
    label = predict(prefix, {"x": x})[0][0, 0]
    assert label.shape == (72, 104)
    top2 = np.sort(logits, axis=0)[-2:]
    differ = label != logits.argmax(0)
    # Only pixels whose two best classes tie to float rounding may differ.
    assert (top2[1] - top2[0])[differ].max(initial=0) < 1e-4
