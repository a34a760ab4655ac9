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

import glob
import json
import os
import pathlib
import re
import sys

import cv2
import numpy as np
import paddle
import pytest

pytest.importorskip("paddleseg")
pytest.importorskip("ppdet")

import paddle_lk.integrations  # noqa: E402,F401 -- registers and installs the shims
from paddle_lk.integrations import compat, det, seg  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_integrations import TINY_BACKBONE, _last_json, _run_tool  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
SEG_CONFIGS = sorted(glob.glob(str(ROOT / "configs" / "seg" / "*.yml")))
DET_CONFIGS = sorted(glob.glob(str(ROOT / "configs" / "det" / "*.yml")))


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


def _create_predictor(prefix: str):
    """A default Paddle Inference predictor, as a user creates one (oneDNN left on)."""
    import paddle.inference as pi

    model = prefix + (".json" if os.path.exists(prefix + ".json") else ".pdmodel")
    config = pi.Config(model, prefix + ".pdiparams")
    assert config.mkldnn_enabled(), "the default CPU config should have oneDNN on"
    return pi.create_predictor(config)


def _predict(prefix: str, feeds: dict) -> list:
    predictor = _create_predictor(prefix)
    for name in predictor.get_input_names():
        predictor.get_input_handle(name).copy_from_cpu(np.ascontiguousarray(feeds[name]))
    predictor.run()
    return [predictor.get_output_handle(n).copy_to_cpu() for n in predictor.get_output_names()]


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
    toolkit_shims = {n for n, s in compat.SHIMS.items() if s.toolkit in ("ppdet", "paddleseg")}
    assert set(compat.installed()) == {n for n in toolkit_shims if compat.SHIMS[n].applies()}
    # Installing again changes nothing; every replacement keeps its upstream original.
    before = dict(compat._ORIGINALS)
    compat.install("ppdet")
    compat.install("paddleseg")
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
        from paddle_lk.integrations._common import jit_save_portable

        jit_save_portable(_Resize(), spec, prefix)
    else:
        paddle.jit.save(paddle.jit.to_static(_Resize(), input_spec=spec, full_graph=True), prefix)


def test_upstream_bug_paddle_onednn_interp(tmp_path):
    _save_resize(str(tmp_path / "plain"), safe=False)
    x = np.random.RandomState(0).rand(1, 3, 5, 6).astype("float32")
    bug = raises(lambda: _predict(str(tmp_path / "plain"), {"x": x}), NotImplementedError,
                 "ConvertPirAttribute2RuntimeAttribute")
    check_upstream("paddle_onednn_interp", bug)


def test_exported_resize_runs_in_default_predictor(tmp_path):
    _save_resize(str(tmp_path / "safe"), safe=True)
    x = np.random.RandomState(0).rand(2, 3, 5, 6).astype("float32")
    got = _predict(str(tmp_path / "safe"), {"x": x})[0]
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
# Tiny datasets in the toolkits' own layouts


def _label_blobs(rng, h: int, w: int, classes) -> np.ndarray:
    label = np.full((h, w), classes[0], np.uint8)
    for c in classes[1:]:
        y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
        label[y0:y0 + h // 2, x0:x0 + w // 2] = c
    return label


def make_ade20k_layout(root: pathlib.Path, hw=(80, 112), n: int = 2) -> pathlib.Path:
    """ADEChallengeData2016/{images,annotations}/{training,validation}: jpg images, png labels
    0..150 (0 = other, ignored)."""
    rng = np.random.default_rng(0)
    for split in ("training", "validation"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "annotations" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            label = _label_blobs(rng, *hw, [0, 3, 12, 150])
            img = (rng.integers(0, 60, hw + (3,)) + label[..., None] % 7 * 25).astype(np.uint8)
            cv2.imwrite(str(root / "images" / split / f"ADE_{split}_{i:08d}.jpg"), img)
            cv2.imwrite(str(root / "annotations" / split / f"ADE_{split}_{i:08d}.png"), label)
    return root


def make_cityscapes_layout(root: pathlib.Path, hw=(96, 192), n: int = 2) -> pathlib.Path:
    """leftImg8bit/<split>/<city>/*_leftImg8bit.png and gtFine/<split>/<city>/*_gtFine_labelTrainIds.png
    (train ids 0..18, 255 = ignore), what PaddleSeg's Cityscapes globs for."""
    rng = np.random.default_rng(0)
    for split, city in (("train", "aachen"), ("val", "frankfurt")):
        (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
        (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            label = _label_blobs(rng, *hw, [0, 7, 18, 255])
            img = (rng.integers(0, 60, hw + (3,)) + label[..., None] % 7 * 25).astype(np.uint8)
            stem = f"{city}_{i:06d}_000019"
            cv2.imwrite(str(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"), img)
            cv2.imwrite(str(root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png"), label)
    return root


def make_coco_layout(root: pathlib.Path, hw=(240, 320), n_train: int = 4, n_val: int = 2) -> pathlib.Path:
    """COCO 2017 layout: train2017/, val2017/, annotations/instances_*.json; two objects per image
    with (non-rectangular) polygons."""
    rng = np.random.default_rng(0)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    ann_id = 0
    h, w = hw
    for split, n in (("train2017", n_train), ("val2017", n_val)):
        (root / split).mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for i in range(n):
            img = rng.integers(0, 60, (h, w, 3)).astype(np.uint8)
            for k in range(2):
                bw, bh = int(rng.integers(w // 5, w // 2)), int(rng.integers(h // 5, h // 2))
                x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
                poly = [x, y, x + bw, y, x + bw, y + bh // 2, x + bw // 2, y + bh, x, y + bh]
                cv2.fillPoly(img, [np.array(poly).reshape(-1, 2)], (200 - 80 * k, 60 + 90 * k, 30))
                ann_id += 1
                anns.append({"id": ann_id, "image_id": i + 1, "category_id": 1 + k, "bbox": [x, y, bw, bh],
                             "area": float(bw * bh) * 0.75, "iscrowd": 0, "segmentation": [poly]})
            name = f"{i + 1:012d}.jpg"
            cv2.imwrite(str(root / split / name), img)
            images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
        cats = [{"id": 1, "name": "box"}, {"id": 2, "name": "crate"}]
        with open(root / "annotations" / f"instances_{split}.json", "w") as f:
            json.dump({"images": images, "annotations": anns, "categories": cats}, f)
    return root


# --------------------------------------------------------------------------------------------
# Value overrides: widths, sizes, schedule -- never the transforms or losses themselves


def _seg_value_overrides(cfg_path: str, data_root=None):
    from paddleseg.cvlibs.config import parse_from_yaml

    raw = parse_from_yaml(cfg_path)
    arch = raw["model"]["backbone"]["type"]
    tiny = TINY_BACKBONE["RepLKNet31B" if arch.startswith("RepLKNet") else "VAN_b2"]
    ov = [f"model.backbone.{k}={json.dumps(v)}" for k, v in tiny.items()] + ["model.channels=8", "batch_size=2"]
    if raw["model"]["type"] == "PFPNNet":
        ov.append("model.fpn_inplanes=" + json.dumps(tiny.get("channels") or tiny.get("embed_dims")))
    for i, op in enumerate(raw["train_dataset"]["transforms"]):
        if op["type"] == "RandomPaddingCrop":  # 512x512 -> 64x64, 1024x512 -> 128x64
            ov.append(f"train_dataset.transforms.{i}.crop_size=" + json.dumps([c // 8 for c in op["crop_size"]]))
    if data_root is not None:
        ov += [f"train_dataset.dataset_root={data_root}", f"val_dataset.dataset_root={data_root}"]
    return raw, ov


def _det_value_overrides(cfg_path: str, data_root=None, score_threshold=None):
    from ppdet.core.workspace import _load_config_with_base

    raw = _load_config_with_base(cfg_path)
    arch = raw["architecture"]
    bb = raw[arch]["backbone"]
    tiny = TINY_BACKBONE["RepLKNet31B" if bb.startswith("RepLKNet") else "VAN_b2"]
    ov = [f"{bb}.{k}={json.dumps(v)}" for k, v in tiny.items()]
    for reader in ("TrainReader", "EvalReader", "TestReader"):
        for i, op in enumerate(raw[reader]["sample_transforms"]):
            (name, args), = op.items()
            if "target_size" in (args or {}):  # 800x1333 -> 100x166 (every scale of a multi-scale list)
                ts = args["target_size"]
                small = [[a // 8, b // 8] for a, b in ts] if isinstance(ts[0], list) else [ts[0] // 8, ts[1] // 8]
                ov.append(f"{reader}.sample_transforms.{i}.{name}.target_size={json.dumps(small)}")
    ov += {
        "CascadeRCNN": ["FPN.out_channel=16", "CascadeTwoFCHead.out_channel=16", "MaskFeat.out_channel=16",
                        "MaskFeat.num_convs=1"],
        "MaskRCNN": ["FPN.out_channel=16", "TwoFCHead.out_channel=16", "MaskFeat.out_channel=16",
                     "MaskFeat.num_convs=1"],
        # FCOSHead's prediction convs take 256 channels whatever fcos_feat.feat_out says (ppdet 2.5).
        "FCOS": ["FPN.out_channel=32", "FCOSHead.fcos_feat.feat_in=32", "FCOSHead.fcos_feat.num_convs=1"],
        "RetinaNet": ["FPN.out_channel=32", "RetinaHead.conv_feat.feat_in=32", "RetinaHead.conv_feat.feat_out=32",
                      "RetinaHead.conv_feat.num_convs=1"],
    }[arch]
    ov += ["epoch=1", "log_iter=1", "worker_num=0", "snapshot_epoch=1"]
    if score_threshold is not None:
        nms = {"CascadeRCNN": "BBoxPostProcess.nms", "MaskRCNN": "BBoxPostProcess.nms",
               "FCOS": "FCOSPostProcess.nms", "RetinaNet": "RetinaHead.nms"}[arch]
        ov.append(f"{nms}.score_threshold={score_threshold}")
    if data_root is not None:
        ov += [f"{k}.dataset_dir={data_root}" for k in ("TrainDataset", "EvalDataset", "TestDataset")]
    return raw, ov


# --------------------------------------------------------------------------------------------
# Every shipped config trains as shipped


@pytest.mark.parametrize("cfg_path", SEG_CONFIGS, ids=os.path.basename)
def test_shipped_seg_config_trains(cfg_path, tmp_path):
    raw, _ = _seg_value_overrides(cfg_path)
    if raw["train_dataset"]["type"] == "ADE20K":
        root = make_ade20k_layout(tmp_path / "ADEChallengeData2016")
    else:
        root = make_cityscapes_layout(tmp_path / "cityscapes")
    _, ov = _seg_value_overrides(cfg_path, root)
    types = [op["type"] for op in raw["train_dataset"]["transforms"]]
    assert "RandomPaddingCrop" in types and "Normalize" in types  # the shipped pipeline runs
    res = _run_tool("train", ["-c", cfg_path, "-o", *ov, "--iters", "2", "--log-every", "1",
                              "--output", tmp_path / "out"])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = _last_json(res.stdout)
    assert summary["iters"] == 2 and np.isfinite(summary["loss"])
    losses = [float(v) for v in re.findall(r"\[seg train\] iter \d+/\d+ loss (\S+)", res.stdout)]
    assert len(losses) == 2 and np.isfinite(losses).all()
    if compat.SHIMS["paddleseg_ce_float32_label"].applies():
        said = [line for line in res.stdout.splitlines() if line.startswith("[seg config]")]
        assert len(said) == 1 and "CrossEntropyLoss" in said[0]


@pytest.mark.parametrize("cfg_path", DET_CONFIGS, ids=os.path.basename)
def test_shipped_det_config_trains(cfg_path, tmp_path):
    root = make_coco_layout(tmp_path / "coco")
    _, ov = _det_value_overrides(cfg_path, root)
    res = _run_tool("train", ["-c", cfg_path, "-o", *ov, "--output", tmp_path / "out"])
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    # PaddleDetection's log: "... loss_box: 5.87 loss: 7.78 ..." for each of the 2 iterations.
    totals = [float(v) for v in re.findall(r"\bloss: (\S+)", out)]
    parts = [float(v) for v in re.findall(r"\bloss_\w+: (\S+)", out)]
    assert len(totals) == 2 and parts, out[-3000:]
    assert np.isfinite(totals).all() and np.isfinite(parts).all(), out[-3000:]
    state = paddle.load(_last_json(res.stdout)["final"])
    bad = [k for k, v in state.items() if not np.isfinite(np.asarray(v)).all()]
    assert not bad, f"{len(bad)} of {len(state)} saved tensors are not finite"


# --------------------------------------------------------------------------------------------
# Every shipped config exports and runs in a default predictor like dygraph


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory) -> str:
    from skimage import data

    path = tmp_path_factory.mktemp("img") / "astronaut.jpg"
    img = cv2.resize(data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return str(path)


@pytest.mark.parametrize("cfg_path", DET_CONFIGS, ids=os.path.basename)
def test_det_export_default_predictor_matches_dygraph(cfg_path, tmp_path, astronaut):
    _, ov = _det_value_overrides(cfg_path, score_threshold=0.0)  # random weights: keep every box
    cfg = det.load_det_config(cfg_path, ov)
    paddle.seed(3)
    model = det.build_model(cfg)
    paddle.save(model.state_dict(), str(tmp_path / "w.pdparams"))
    prefix = det.export(cfg, str(tmp_path / "w.pdparams"), str(tmp_path / "exp"))
    model.eval()
    inputs = det._prepare(cfg, astronaut, det._test_transforms(cfg))
    with paddle.no_grad():
        ref = model(dict(inputs))
    outs = _predict(prefix, {k: v.numpy() for k, v in inputs.items()})
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
    cfg = det.load_det_config(cfg_path, _det_value_overrides(cfg_path, score_threshold=0.0)[1])
    paddle.save(det.build_model(cfg).state_dict(), str(tmp_path / "w.pdparams"))
    monkeypatch.setattr(CascadeHead, "_get_pred_bbox", compat.original(CascadeHead, "_get_pred_bbox"))
    prefix = det.export(cfg, str(tmp_path / "w.pdparams"), str(tmp_path / "exp"))
    inputs = det._prepare(cfg, astronaut, det._test_transforms(cfg))
    bug = raises(lambda: _predict(prefix, {k: v.numpy() for k, v in inputs.items()}), RuntimeError)
    check_upstream("ppdet_cascade_pred_bbox_onednn", bug)


@pytest.mark.parametrize("cfg_path", SEG_CONFIGS, ids=os.path.basename)
def test_seg_export_default_predictor_matches_dygraph(cfg_path, tmp_path):
    _, ov = _seg_value_overrides(cfg_path)
    cfg = seg.build_config(cfg_path, ov)
    paddle.seed(3)
    model = seg._builder(cfg).model
    paddle.save(model.state_dict(), str(tmp_path / "w.pdparams"))
    prefix = seg.export(cfg, str(tmp_path / "w.pdparams"), str(tmp_path / "exp"))
    model.eval()
    x = np.random.RandomState(0).uniform(-2, 2, (1, 3, 72, 104)).astype("float32")
    with paddle.no_grad():
        logits = model(paddle.to_tensor(x))[0].numpy()[0]
    label = _predict(prefix, {"x": x})[0][0, 0]
    assert label.shape == (72, 104)
    top2 = np.sort(logits, axis=0)[-2:]
    differ = label != logits.argmax(0)
    # Only pixels whose two best classes tie to float rounding may differ.
    assert (top2[1] - top2[0])[differ].max(initial=0) < 1e-4
