"""Every workaround paddle_lk needs to run PaddleSeg / PaddleDetection on Paddle 3, NumPy >= 1.24
and Pillow >= 10 -- in one place, each one version-guarded and as narrow as it can be.

Each workaround is a :class:`Shim`: the upstream bug it works around (file, function, symptom),
the versions that have it (``requires``; checked with ``importlib.metadata``), and what it
replaces. A shim replaces exactly the one upstream function (or method) that has the bug -- never
a Paddle or NumPy API process-wide -- and only when every version condition holds, so upgrading
a toolkit past a guarded range switches the shim off by itself.
``tests/test_toolkit_compat.py`` reproduces every bug on the unpatched upstream function and
asserts that it shows exactly when the guard applies: when an upgrade fixes a bug, that test
fails and says which shim to drop (or, for a bug still there past the range, to widen it).

Toolkit shims are installed by :func:`install` (called by ``seg.register`` / ``det.register``,
idempotent). :func:`onednn_safe_resize` is not installed: it is a context manager around export
tracing (see there). The upstream originals stay reachable through :func:`original`.
"""
from __future__ import annotations

import contextlib
import dis
import re
import sys
import types
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

__all__ = ["Shim", "SHIMS", "install", "installed", "original", "dist_version", "version_in",
           "onednn_safe_resize", "float32_label_ce_class", "rewrite_ce_losses", "FLOAT32_CE",
           "draw_bbox", "calculate_area"]

# ---------------------------------------------------------------------------------------------
# Versions


def dist_version(dist: str) -> Optional[str]:
    """Installed version of distribution ``dist`` (``importlib.metadata``), None when absent.

    ``paddle`` stands for whichever Paddle wheel is installed (``paddlepaddle`` or
    ``paddlepaddle-gpu``); ``Pillow`` for ``pillow``.
    """
    from importlib.metadata import PackageNotFoundError, version

    names = {"paddle": ("paddlepaddle", "paddlepaddle-gpu"), "Pillow": ("Pillow", "pillow")}.get(dist, (dist,))
    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def _release(text: str) -> Tuple[int, ...]:
    """``"3.3.1"`` -> (3, 3, 1); pre/post/local suffixes are ignored (``"3.0.0rc1"`` -> (3, 0, 0))."""
    match = re.match(r"\d+(\.\d+)*", text.strip())
    if not match:
        raise ValueError(f"cannot parse version '{text}'")
    return tuple(int(p) for p in match.group(0).split("."))


def version_in(dist: str, spec: str) -> bool:
    """Whether installed ``dist`` satisfies ``spec``: comma-separated ``>=X``, ``<X``, ``<=X``,
    ``>X``, ``==X`` (release numbers only). False when ``dist`` is not installed."""
    installed_version = dist_version(dist)
    if installed_version is None:
        return False
    have = _release(installed_version)
    for clause in spec.split(","):
        m = re.fullmatch(r"\s*(>=|<=|==|>|<)\s*([\w.]+)\s*", clause)
        if not m:
            raise ValueError(f"bad version clause '{clause}' in '{spec}'")
        op, want = m.group(1), _release(m.group(2))
        width = max(len(have), len(want))
        a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        ok = {">=": a >= b, "<=": a <= b, "==": a == b, ">": a > b, "<": a < b}[op]
        if not ok:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Shim records and patching


@dataclass(frozen=True)
class Shim:
    """One workaround: ``requires`` maps distributions to the version range that has the bug
    (all must hold); ``toolkit`` is the package it patches (``ppdet`` / ``paddleseg``), or
    ``paddle`` for the export-time rewrite."""

    name: str
    toolkit: str
    requires: Tuple[Tuple[str, str], ...]
    upstream: str

    def applies(self) -> bool:
        """True when every installed version is in its buggy range."""
        return all(version_in(dist, spec) for dist, spec in self.requires)


# The ranges end at the first release not checked: a newer toolkit runs unpatched, and the
# upstream-bug tests tell whether the shim is still needed there.
_PADDLE3 = ("paddle", ">=3.0")
_PPDET25 = ("paddledet", ">=2.5,<2.6")
_PADDLESEG28 = ("paddleseg", ">=2.8,<2.9")

SHIMS: Dict[str, Shim] = {s.name: s for s in [
    Shim("ppdet_zero_d_concat", "ppdet", (_PADDLE3, _PPDET25),
         "RPNHead._gen_proposal, CascadeHead._get_rois_from_boxes, FCOSBox._merge_hw and "
         "proposal_generator/target.py's generate_proposal_target / generate_mask_target / "
         "libra_generate_proposal_target paddle.concat values of paddle.shape(x)[i], which are "
         "0-d on Paddle 3 (shape [1] on Paddle 2): 'The axis is expected to be in range of [0, 0)' "
         "in dygraph, a 0-d rois_num that RCNNBox cannot index when traced"),
    Shim("ppdet_bbox_get_pred", "ppdet", (_PADDLE3, _PPDET25),
         "post_process.py BBoxPostProcess.get_pred mixes the 0-d bbox_num[i] with a shape-[1] "
         "fake count (traced: 'Does not support rank inconsistency: rank1=0, rank2=1'; "
         "dygraph: concat fails for a batch where one image has no box) and concats 0-d scale values"),
    Shim("ppdet_cascade_pred_bbox_onednn", "ppdet", (("paddle", ">=3.0,<3.4"), _PPDET25),
         "heads/cascade_head.py CascadeHead._get_pred_bbox picks `concat(proposals) if "
         "len(proposals) > 1 else proposals[0]`; traced, that is an if-op over the RPN's tensor "
         "array, and Paddle Inference's oneDNN slice on its output fails ('onednn_op.slice raises "
         "an exception dnnl::error', RuntimeError: std::exception): an exported Cascade R-CNN "
         "does not run in a default CPU predictor"),
    Shim("ppdet_multiclass_nms_pir", "ppdet", (_PADDLE3, _PPDET25),
         "ops.py multiclass_nms builds its static op with LayerHelper.append_op, which Paddle 3's "
         "PIR programs reject: \"The type of '%BBoxes' in operator multiclass_nms3 should be one "
         "of [str, bytes, Variable]\" -- no detector with NMS can be exported"),
    Shim("ppdet_numpy_aliases", "ppdet", (("numpy", ">=1.24"), _PPDET25),
         "functions such as proposal_generator/target.py polygons_to_mask (Mask R-CNN mask "
         "targets) use np.bool / np.int / np.float / np.object, removed in NumPy 1.24: "
         "AttributeError: module 'numpy' has no attribute 'bool'"),
    Shim("ppdet_fcos_iou_loss_clamp", "ppdet", (_PPDET25,),
         "losses/fcos_loss.py FCOSLoss.__iou_loss takes -log(iou) without a clamp; iou is 0 for "
         "every negative location, so loss_box is inf * 0 = nan from the first step (mmdetection's "
         "IoULoss, which the FCOS configs cite, takes -log(iou.clamp(min=1e-6)))"),
    Shim("ppdet_draw_bbox_pillow10", "ppdet", (("Pillow", ">=10"), _PPDET25),
         "utils/visualizer.py draw_bbox draws with colormap's float colours (TypeError: 'numpy.float32' "
         "object cannot be interpreted as an integer) and measures labels with ImageDraw.textsize, "
         "removed in Pillow 10 (AttributeError)"),
    Shim("paddleseg_ce_float32_label", "paddleseg", (_PADDLE3, _PADDLESEG28),
         "models/losses/cross_entropy_loss.py CrossEntropyLoss._post_process_loss multiplies the "
         "float32 mask by ones_like(int64 label): Paddle 3 refuses ('Type promotion only support "
         "calculations between floating-point numbers ... float32, int64')"),
    Shim("paddleseg_calculate_area", "paddleseg", (_PADDLE3, _PADDLESEG28),
         "utils/metrics.py calculate_area paddle.concats per-class 0-d sums: 'The axis is "
         "expected to be in range of [0, 0)' -- no mIoU on Paddle 3"),
    Shim("paddleseg_random_padding_crop", "paddleseg", (_PADDLESEG28,),
         "transforms/transforms.py RandomPaddingCrop.__call__ with category_max_ratio < 1 stores "
         "the label crop as the image (600x700x3 -> (512, 512)) and leaves the image uncropped "
         "when no crop meets the ratio; Normalize then fails on the 2-D 'image'"),
    Shim("paddleclas_deploy_memory_optim", "paddleclas", (("paddle", ">=3.0,<3.4"), ("paddleclas", ">=2.5,<2.7")),
         "deploy/utils/predictor.py Predictor.create_paddle_predictor always calls "
         "Config.enable_memory_optim(); Paddle Inference 3.3 then fails to create a predictor for "
         "any PIR program ('Not find predictor_id 0 and pass_name memory_optimize_pass'): "
         "PaddleClas's own deploy predictor (predict_cls.py, the paddleclas wheel) runs no exported model"),
    Shim("paddle_onednn_interp", "paddle", (("paddle", ">=3.0,<3.4"),),
         "Paddle Inference's oneDNN executor cannot convert the ArrayAttribute<DoubleAttribute> "
         "'scale' of bilinear_interp / nearest_interp (onednn_instruction.cc, "
         "ConvertPirAttribute2RuntimeAttribute, Paddle issue #79749): a default CPU predictor "
         "fails on any exported model that resizes (UPerNet, FPN)"),
]}

# (owner, attribute) -> upstream object, for every replacement made.
_ORIGINALS: Dict[Tuple[Any, str], Any] = {}
_INSTALLED: Dict[str, bool] = {}


def original(owner: Any, attr: str) -> Any:
    """The upstream ``owner.attr`` as it was before :func:`install` (``owner.attr`` itself when
    nothing replaced it)."""
    return _ORIGINALS.get((owner, attr), owner.__dict__[attr] if isinstance(owner, type)
                          else getattr(owner, attr))


def installed() -> List[str]:
    """Names of the shims installed in this process."""
    return [name for name, done in _INSTALLED.items() if done]


def _replace(owner: Any, attr: str, new: Any, package: str) -> None:
    """Set ``owner.attr = new`` once, keep the upstream object, and repoint every module of
    ``package`` that imported the function by name (``from .target import f``)."""
    key = (owner, attr)
    if key in _ORIGINALS:
        return
    old = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
    _ORIGINALS[key] = old
    setattr(owner, attr, new)
    if isinstance(owner, type):
        return
    for name, module in list(sys.modules.items()):
        if module is None or module is owner or not (name == package or name.startswith(package + ".")):
            continue
        for var, value in list(vars(module).items()):
            if value is old:
                setattr(module, var, new)


def _with_globals(func: Callable, **names: Any) -> Callable:
    """A copy of ``func`` (same code) whose global lookups of ``names`` see the given objects:
    the narrowest way to change what one upstream function calls, leaving the module, and every
    other function, as it is. No ``__wrapped__``: dy2static unwraps it and would trace the
    original's globals."""
    new = types.FunctionType(func.__code__, dict(func.__globals__, **names), func.__name__,
                             func.__defaults__, func.__closure__)
    new.__kwdefaults__ = func.__kwdefaults__
    new.__qualname__, new.__doc__, new.__module__ = func.__qualname__, func.__doc__, func.__module__
    new.__dict__.update(func.__dict__)
    new.__paddle_lk_original__ = func  # type: ignore[attr-defined]
    return new


class _ModuleView(types.ModuleType):
    """A module with a few attributes overridden; everything else is read from ``base``."""

    def __init__(self, base: types.ModuleType, **overrides: Any) -> None:
        super().__init__(base.__name__, base.__doc__)
        self.__dict__.update(overrides)
        self._base = base

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)


# ---------------------------------------------------------------------------------------------
# PaddleDetection: 0-d paddle.shape(x)[i] values concatenated


def _concat_stacking_0d(x: Any, axis: int = 0, name: Optional[str] = None) -> Any:
    """``paddle.concat`` as PaddleDetection 2.5 expects it: inputs that are all 0-d (Paddle 3's
    ``paddle.shape(x)[i]``) are stacked into a 1-d tensor -- Paddle 2's result for its shape-[1]
    values -- in dygraph and when traced (a loop's list becomes a tensor array of 0-d elements).
    Anything else goes to ``paddle.concat`` unchanged."""
    import paddle

    if isinstance(x, (list, tuple)) and x and all(hasattr(t, "shape") and len(t.shape) == 0 for t in x):
        return paddle.stack(list(x), axis=0)
    if (isinstance(x, paddle.pir.Value) and x.is_dense_tensor_array_type() and len(x.shape) == 0
            and not paddle.in_dynamic_mode()):
        out, _ = paddle._C_ops.array_to_tensor(x, 0, True)  # use_stack=True
        return out
    return paddle.concat(x, axis=axis, name=name)


def _zero_d_concat_targets() -> List[Tuple[Any, str]]:
    from ppdet.modeling import layers
    from ppdet.modeling.heads import cascade_head
    from ppdet.modeling.proposal_generator import rpn_head, target

    return [(rpn_head.RPNHead, "_gen_proposal"), (cascade_head.CascadeHead, "_get_rois_from_boxes"),
            (layers.FCOSBox, "_merge_hw"), (target, "generate_proposal_target"),
            (target, "generate_mask_target"), (target, "libra_generate_proposal_target")]


def _install_zero_d_concat() -> None:
    import paddle

    # not_to_static: dy2static calls it as is instead of transcribing its source.
    concat = paddle.jit.not_to_static(_concat_stacking_0d)
    view = _ModuleView(paddle, concat=concat)
    for owner, attr in _zero_d_concat_targets():
        func = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
        _replace(owner, attr, _with_globals(func, paddle=view), "ppdet")


# ---------------------------------------------------------------------------------------------
# PaddleDetection: BBoxPostProcess.get_pred


def _bbox_get_pred(self, bboxes, bbox_num, im_shape, scale_factor):
    """PaddleDetection 2.5.0's ``BBoxPostProcess.get_pred`` with Paddle 3 shapes: per-image
    counts are sliced (``bbox_num[i:i + 1]``, shape [1] as Paddle 2's ``bbox_num[i]``), the fake
    box of an image without detections is chosen without a branch, and the (x, y, x, y) scale is
    a slice of ``scale_factor`` rather than a concat of 0-d values. Same outputs as upstream."""
    import paddle
    from ppdet.modeling.post_process import BBoxPostProcess, nonempty_bbox

    if self.export_eb or self.export_onnx:  # the branches that do not index per image
        return original(BBoxPostProcess, "get_pred")(self, bboxes, bbox_num, im_shape, scale_factor)
    bboxes_list, bbox_num_list = [], []
    id_start = paddle.zeros([1], dtype=bbox_num.dtype)
    fake_bboxes = paddle.to_tensor(np.array([[0., 0.0, 0.0, 0.0, 1.0, 1.0]], dtype="float32"))
    for i in range(bbox_num.shape[0]):
        num_i = bbox_num[i:i + 1]
        # [boxes of image i; fake][:max(n_i, 1)]: its boxes, or the one fake box when it has none.
        keep_i = paddle.maximum(num_i, paddle.ones_like(num_i))
        both = paddle.concat([bboxes[id_start:id_start + num_i, :], fake_bboxes])
        bboxes_list.append(both[:keep_i])
        bbox_num_list.append(keep_i)
        id_start = id_start + num_i
    bboxes = paddle.concat(bboxes_list)
    bbox_num = paddle.concat(bbox_num_list)

    origin_shape = paddle.floor(im_shape / scale_factor + 0.5)
    origin_shape_list, scale_factor_list = [], []
    for i in range(bbox_num.shape[0]):
        origin_shape_list.append(paddle.expand(origin_shape[i:i + 1, :], [bbox_num[i], 2]))
        scale = paddle.tile(paddle.flip(scale_factor[i:i + 1, :], axis=[1]), [1, 2])  # x, y, x, y
        scale_factor_list.append(paddle.expand(scale, [bbox_num[i], 4]))
    self.origin_shape_list = paddle.concat(origin_shape_list)
    scale_factor_list = paddle.concat(scale_factor_list)

    # Unchanged from upstream: rescale to the original image, clip, mark empty boxes label -1.
    pred_label = bboxes[:, 0:1]
    pred_score = bboxes[:, 1:2]
    pred_bbox = bboxes[:, 2:]
    scaled_bbox = pred_bbox / scale_factor_list
    origin_h = self.origin_shape_list[:, 0]
    origin_w = self.origin_shape_list[:, 1]
    zeros = paddle.zeros_like(origin_h)
    x1 = paddle.maximum(paddle.minimum(scaled_bbox[:, 0], origin_w), zeros)
    y1 = paddle.maximum(paddle.minimum(scaled_bbox[:, 1], origin_h), zeros)
    x2 = paddle.maximum(paddle.minimum(scaled_bbox[:, 2], origin_w), zeros)
    y2 = paddle.maximum(paddle.minimum(scaled_bbox[:, 3], origin_h), zeros)
    pred_bbox = paddle.stack([x1, y1, x2, y2], axis=-1)
    keep_mask = paddle.unsqueeze(nonempty_bbox(pred_bbox, return_mask=True), [1])
    pred_label = paddle.where(keep_mask, pred_label, paddle.ones_like(pred_label) * -1)
    pred_result = paddle.concat([pred_label, pred_score, pred_bbox], axis=1)
    return bboxes, pred_result, bbox_num


def _cascade_get_pred_bbox(self, deltas, proposals, weights):
    """``CascadeHead._get_pred_bbox`` with the proposals always concatenated (a concat of one
    tensor is that tensor, so the values are upstream's): no branch in the traced program."""
    import paddle
    from ppdet.modeling.bbox_utils import delta2bbox

    pred_proposals = paddle.concat(proposals)  # upstream: `... if len(proposals) > 1 else proposals[0]`
    pred_bbox = delta2bbox(deltas, pred_proposals, weights)
    pred_bbox = paddle.reshape(pred_bbox, [-1, deltas.shape[-1]])
    num_prop = [p.shape[0] for p in proposals] if isinstance(proposals, (list, tuple)) else [-1]
    return pred_bbox.split(num_prop)


# ---------------------------------------------------------------------------------------------
# PaddleDetection: multiclass_nms under PIR


def _make_multiclass_nms(upstream: Callable) -> Callable:
    def multiclass_nms(bboxes, scores, score_threshold, nms_top_k, keep_top_k, nms_threshold=0.3,
                       normalized=True, nms_eta=1., background_label=-1, return_index=False,
                       return_rois_num=True, rois_num=None, name=None):
        """PaddleDetection's ``ops.multiclass_nms``; traced, it calls the PIR-aware
        ``_C_ops.multiclass_nms3`` (the same kernel) instead of ``LayerHelper.append_op``."""
        import paddle

        if paddle.in_dynamic_mode():
            return upstream(bboxes, scores, score_threshold, nms_top_k, keep_top_k, nms_threshold,
                            normalized, nms_eta, background_label, return_index, return_rois_num,
                            rois_num, name)
        output, index, nms_rois_num = paddle._C_ops.multiclass_nms3(
            bboxes, scores, rois_num, score_threshold, nms_top_k, keep_top_k, nms_threshold,
            normalized, nms_eta, background_label)
        return output, (nms_rois_num if return_rois_num else None), (index if return_index else None)

    return multiclass_nms


# ---------------------------------------------------------------------------------------------
# PaddleDetection: NumPy aliases removed in 1.24

# What the aliases meant before NumPy 1.24 removed them (the builtins).
_NUMPY_ALIASES = {"bool": bool, "int": int, "float": float, "complex": complex, "object": object,
                  "str": str, "long": int, "unicode": str}


def _numpy_aliases_used(code: types.CodeType) -> List[str]:
    """Removed aliases that ``code`` (or a function nested in it) reads as ``np.<alias>``."""
    found: List[str] = []
    previous = None
    for ins in dis.get_instructions(code):
        if (previous is not None and previous.opname == "LOAD_GLOBAL" and previous.argval == "np"
                and ins.opname in ("LOAD_ATTR", "LOAD_METHOD") and ins.argval in _NUMPY_ALIASES):
            found.append(ins.argval)
        previous = ins
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found += _numpy_aliases_used(const)
    return found


def numpy_alias_users(package: str = "ppdet") -> List[Tuple[Any, str]]:
    """(owner, attribute) of every function and method in the imported modules of ``package``
    that reads a NumPy alias missing from the installed NumPy."""
    missing = {a for a in _NUMPY_ALIASES if a not in np.__dict__}
    targets: List[Tuple[Any, str]] = []
    seen = set()
    for name, module in list(sys.modules.items()):
        if module is None or not (name == package or name.startswith(package + ".")):
            continue
        owners: List[Any] = [module] + [v for v in vars(module).values()
                                         if isinstance(v, type) and v.__module__ == name]
        for owner in owners:
            for attr, value in list(vars(owner).items()):
                func = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
                if not isinstance(func, types.FunctionType) or func.__module__ != name:
                    continue
                key = (id(owner), attr)
                if key in seen:
                    continue
                seen.add(key)
                uses_np = func.__globals__.get("np") is np  # replaced copies see the view already
                if uses_np and set(_numpy_aliases_used(func.__code__)) & missing:
                    targets.append((owner, attr))
    return targets


def _install_numpy_aliases() -> None:
    import ppdet.data.transform  # noqa: F401 -- the modules to scan must be imported
    import ppdet.modeling  # noqa: F401

    view = _ModuleView(np, **{a: t for a, t in _NUMPY_ALIASES.items() if a not in np.__dict__})
    for owner, attr in numpy_alias_users("ppdet"):
        value = vars(owner)[attr]
        if hasattr(value, "__paddle_lk_original__"):  # already one of our copies: its globals are ours
            value.__globals__["np"] = view
            continue
        if isinstance(value, (staticmethod, classmethod)):
            new = type(value)(_with_globals(value.__func__, np=view))
        else:
            new = _with_globals(value, np=view)
        _replace(owner, attr, new, "ppdet")


# ---------------------------------------------------------------------------------------------
# PaddleDetection: FCOS IoU loss

_IOU_EPS = 1e-6  # mmdetection IoULoss eps


def _fcos_iou_loss(self, pred, targets, positive_mask, weights=None):
    """``FCOSLoss.__iou_loss`` with mmdetection's clamp for ``iou_loss_type: IoU``:
    ``-log(max(iou, 1e-6))``. The other types (GIoU, linear IoU) are upstream's."""
    import paddle
    from ppdet.modeling.losses.fcos_loss import FCOSLoss

    if self.iou_loss_type.lower() != "iou":
        return original(FCOSLoss, "_FCOSLoss__iou_loss")(self, pred, targets, positive_mask, weights)
    # Upstream's IoU, unchanged: distances (l, t, r, b) of positive locations.
    plw, pth, prw, pbh = (pred[:, k] * positive_mask for k in range(4))
    tlw, tth, trw, tbh = (targets[:, k] * positive_mask for k in range(4))
    for t in (tlw, tth, trw, tbh):
        t.stop_gradient = True
    ilw, irw = paddle.minimum(plw, tlw), paddle.minimum(prw, trw)
    ith, ibh = paddle.minimum(pth, tth), paddle.minimum(pbh, tbh)
    area_predict = (plw + prw) * (pth + pbh)
    area_target = (tlw + trw) * (tth + tbh)
    area_inter = (ilw + irw) * (ith + ibh)
    ious = (area_inter + 1.0) / (area_predict + area_target - area_inter + 1.0)
    ious = ious * positive_mask
    # The fix: negatives have iou 0 here; without the clamp their -log is inf and inf * 0 = nan.
    loss = -paddle.log(paddle.clip(ious, min=_IOU_EPS))
    if weights is not None:
        loss = loss * weights
    return loss


# ---------------------------------------------------------------------------------------------
# PaddleDetection: draw_bbox with Pillow >= 10


def draw_bbox(image, im_id, catid2name, bboxes, threshold):
    """PaddleDetection's ``visualizer.draw_bbox`` (same arguments and look) measuring the label
    with ``ImageDraw.textbbox`` (Pillow >= 8) instead of ``textsize`` (removed in Pillow 10), with
    integer colours."""
    from PIL import ImageDraw
    from ppdet.utils.colormap import colormap

    draw = ImageDraw.Draw(image)
    catid2color: Dict[int, Tuple[int, ...]] = {}
    color_list = colormap(rgb=True)[:40]
    for dt in np.array(bboxes):
        if im_id != dt["image_id"]:
            continue
        catid, bbox, score = dt["category_id"], dt["bbox"], dt["score"]
        if score < threshold:
            continue
        if catid not in catid2color:
            catid2color[catid] = tuple(int(c) for c in color_list[np.random.randint(len(color_list))])
        color = catid2color[catid]
        if len(bbox) == 4:
            xmin, ymin, w, h = bbox
            xmax, ymax = xmin + w, ymin + h
            draw.line([(xmin, ymin), (xmin, ymax), (xmax, ymax), (xmax, ymin), (xmin, ymin)],
                      width=2, fill=color)
        elif len(bbox) == 8:
            x1, y1, x2, y2, x3, y3, x4, y4 = bbox
            draw.line([(x1, y1), (x2, y2), (x3, y3), (x4, y4), (x1, y1)], width=2, fill=color)
            xmin, ymin = min(x1, x2, x3, x4), min(y1, y2, y3, y4)
        else:
            continue
        text = "{} {:.2f}".format(catid2name[catid], score)
        left, top, right, bottom = draw.textbbox((0, 0), text)
        tw, th = right - left, bottom - top
        draw.rectangle([(xmin + 1, ymin - th), (xmin + tw + 1, ymin)], fill=color)
        draw.text((xmin + 1, ymin - th), text, fill=(255, 255, 255))
    return image


# ---------------------------------------------------------------------------------------------
# PaddleSeg: CrossEntropyLoss, calculate_area, RandomPaddingCrop

FLOAT32_CE = "Float32LabelCE"
_CE_CLASS: Optional[type] = None


def float32_label_ce_class() -> type:
    """``Float32LabelCE``: PaddleSeg's ``CrossEntropyLoss`` (same arguments) whose
    ``_post_process_loss`` gets a float32 label, so ``mask * ones_like(label)`` is float32 *
    float32. The label there only feeds the mask and ``coef`` (compared / multiplied by value);
    with class weights ``one_hot`` needs the integer label, so that path stays upstream's."""
    global _CE_CLASS
    if _CE_CLASS is None:
        from paddleseg.models.losses import CrossEntropyLoss

        class Float32LabelCE(CrossEntropyLoss):
            __doc__ = float32_label_ce_class.__doc__

            def _post_process_loss(self, logit, label, semantic_weights, loss):
                if self.weight is not None:
                    return super()._post_process_loss(logit, label, semantic_weights, loss)
                return super()._post_process_loss(logit, label.astype("float32"), semantic_weights, loss)

        Float32LabelCE.__module__, Float32LabelCE.__qualname__ = __name__, FLOAT32_CE  # importable by name
        _CE_CLASS = Float32LabelCE
        globals()[FLOAT32_CE] = Float32LabelCE
    return _CE_CLASS


def rewrite_ce_losses(dic: Dict[str, Any], log: Callable[[str], None] = print) -> List[str]:
    """Replace every ``type: CrossEntropyLoss`` under the config's ``loss`` section (nested
    ``MixedLoss`` entries included) by :data:`FLOAT32_CE`, when the shim applies; logs one line
    naming the entries and why. Returns the dotted keys rewritten."""
    if not SHIMS["paddleseg_ce_float32_label"].applies():
        return []
    done: List[str] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "CrossEntropyLoss":
                node["type"] = FLOAT32_CE
                done.append(path)
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}.{i}")

    walk(dic.get("loss"), "loss")
    if done:
        log(f"[seg config] {', '.join(done)}: CrossEntropyLoss replaced by {FLOAT32_CE} (same loss and "
            f"arguments): PaddleSeg {dist_version('paddleseg')}'s CrossEntropyLoss multiplies a float32 "
            f"mask by an int64 tensor, which Paddle {dist_version('paddle')} refuses")
    return done


def calculate_area(pred, label, num_classes: int, ignore_index: int = 255):
    """PaddleSeg's ``metrics.calculate_area`` (same arguments, int64 tensors out) counting with
    ``np.bincount``: per-class intersection, prediction and label pixels of the non-ignored
    pixels; predictions or labels outside ``[0, num_classes)`` count for no class."""
    import paddle

    pred = np.asarray(pred.numpy() if hasattr(pred, "numpy") else pred).reshape(-1).astype(np.int64)
    label = np.asarray(label.numpy() if hasattr(label, "numpy") else label).reshape(-1).astype(np.int64)
    if pred.shape != label.shape:
        raise ValueError(f"Shape of `pred` and `label should be equal, but there are {pred.shape} and {label.shape}.")
    valid = label != ignore_index
    pred_v, label_v = pred[valid], label[valid]
    pred_ok = (pred_v >= 0) & (pred_v < num_classes)
    label_ok = (label_v >= 0) & (label_v < num_classes)
    pred_area = np.bincount(pred_v[pred_ok], minlength=num_classes)[:num_classes]
    label_area = np.bincount(label_v[label_ok], minlength=num_classes)[:num_classes]
    hit = pred_ok & (pred_v == label_v)
    intersect = np.bincount(pred_v[hit], minlength=num_classes)[:num_classes]
    return tuple(paddle.to_tensor(a.astype(np.int64)) for a in (intersect, pred_area, label_area))


def _random_padding_crop_call(self, data: Dict[str, Any]) -> Dict[str, Any]:
    """PaddleSeg 2.8.0's ``RandomPaddingCrop.__call__`` with the image cropped at the window the
    labels get: the ``category_max_ratio`` search (as mmsegmentation's RandomCrop: up to
    ``loop_times`` windows, else one more random window) picks the window, then the image and
    every ``gt_fields`` entry are cropped there. Random draws are upstream's."""
    from paddleseg.transforms import functional

    img_shape = data["img"].shape[:2]
    if img_shape[0] == self.crop_size[0] and img_shape[1] == self.crop_size[1]:
        return data
    data = self._padding(data)
    img_shape = data["img"].shape[:2]
    crop_coordinates = self._get_crop_coordinates(img_shape)
    if self.category_max_ratio < 1.0:
        for _ in range(self.loop_times):
            seg_temp = functional.crop(data["label"], crop_coordinates)
            labels, cnt = np.unique(seg_temp, return_counts=True)
            cnt = cnt[labels != self.ignore_index]
            if len(cnt) > 1 and np.max(cnt) / np.sum(cnt) < self.category_max_ratio:
                break
            crop_coordinates = self._get_crop_coordinates(img_shape)
    data["img"] = functional.crop(data["img"], crop_coordinates)  # upstream: the label crop
    for key in data.get("gt_fields", []):
        data[key] = functional.crop(data[key], crop_coordinates)
    return data


# ---------------------------------------------------------------------------------------------
# Installation


def _ppdet_patches() -> Dict[str, Callable[[], None]]:
    def zero_d() -> None:
        _install_zero_d_concat()

    def get_pred() -> None:
        from ppdet.modeling.post_process import BBoxPostProcess

        _replace(BBoxPostProcess, "get_pred", _bbox_get_pred, "ppdet")

    def cascade() -> None:
        from ppdet.modeling.heads.cascade_head import CascadeHead

        _replace(CascadeHead, "_get_pred_bbox", _cascade_get_pred_bbox, "ppdet")

    def nms() -> None:
        from ppdet.modeling import ops

        _replace(ops, "multiclass_nms", _make_multiclass_nms(ops.multiclass_nms), "ppdet")

    def iou_loss() -> None:
        from ppdet.modeling.losses.fcos_loss import FCOSLoss

        _replace(FCOSLoss, "_FCOSLoss__iou_loss", _fcos_iou_loss, "ppdet")

    def visualizer() -> None:
        from ppdet.utils import visualizer as vis

        _replace(vis, "draw_bbox", draw_bbox, "ppdet")

    return {"ppdet_zero_d_concat": zero_d, "ppdet_bbox_get_pred": get_pred,
            "ppdet_cascade_pred_bbox_onednn": cascade, "ppdet_multiclass_nms_pir": nms,
            "ppdet_numpy_aliases": _install_numpy_aliases, "ppdet_fcos_iou_loss_clamp": iou_loss,
            "ppdet_draw_bbox_pillow10": visualizer}


def _paddleseg_patches() -> Dict[str, Callable[[], None]]:
    def ce() -> None:
        from paddleseg.cvlibs import manager

        cls = float32_label_ce_class()
        if manager.LOSSES._components_dict.get(cls.__name__) is not cls:
            manager.LOSSES.add_component(cls)

    def area() -> None:
        from paddleseg.utils import metrics

        _replace(metrics, "calculate_area", calculate_area, "paddleseg")

    def crop() -> None:
        from paddleseg.transforms.transforms import RandomPaddingCrop

        _replace(RandomPaddingCrop, "__call__", _random_padding_crop_call, "paddleseg")

    return {"paddleseg_ce_float32_label": ce, "paddleseg_calculate_area": area,
            "paddleseg_random_padding_crop": crop}


# ---------------------------------------------------------------------------------------------
# PaddleClas: the deploy predictor


def _config_without_memory_optim() -> type:
    """``paddle.inference.Config`` whose ``enable_memory_optim`` does nothing (the pass it enables
    breaks predictor creation for PIR programs on Paddle Inference 3.3)."""
    from paddle.inference import Config

    class ConfigWithoutMemoryOptim(Config):
        def enable_memory_optim(self, *args: Any, **kwargs: Any) -> None:
            return None

    return ConfigWithoutMemoryOptim


def _paddleclas_patches() -> Dict[str, Callable[[], None]]:
    def memory_optim() -> None:
        from paddleclas.deploy.utils import predictor

        func = predictor.Predictor.__dict__["create_paddle_predictor"]
        _replace(predictor.Predictor, "create_paddle_predictor",
                 _with_globals(func, Config=_config_without_memory_optim()), "paddleclas")

    return {"paddleclas_deploy_memory_optim": memory_optim}


def install(toolkit: str) -> List[str]:
    """Install the shims of ``toolkit`` (``"ppdet"``, ``"paddleseg"`` or ``"paddleclas"``) whose version
    guard holds; idempotent. Returns the names installed (now or before)."""
    patches = {"ppdet": _ppdet_patches, "paddleseg": _paddleseg_patches, "paddleclas": _paddleclas_patches}[toolkit]()
    for name, apply in patches.items():
        if not _INSTALLED.get(name) and SHIMS[name].applies():
            apply()
            _INSTALLED[name] = True
    return [n for n in patches if _INSTALLED.get(n)]


# ---------------------------------------------------------------------------------------------
# Export: resize ops a default CPU predictor can run


def _nearest_by_index(x, out_h, out_w):
    """Nearest resize (align_corners False) as two ``index_select``: source index
    ``int(dst * (in / out))`` in float32, the expression of Paddle's nearest_interp kernel."""
    import paddle

    shape = paddle.shape(x)

    def index(n_out, n_in):
        n_out_f = n_out.astype("float32") if hasattr(n_out, "astype") else paddle.full([], n_out, "float32")
        ratio = n_in.astype("float32") / n_out_f
        idx = (paddle.arange(0, n_out, dtype="float32") * ratio).astype("int64")
        return paddle.minimum(idx, (n_in - 1).astype("int64"))

    y = paddle.index_select(x, index(out_h, shape[2]), axis=2)
    return paddle.index_select(y, index(out_w, shape[3]), axis=3)


def _paddle_interpolate_signature(x, size=None, scale_factor=None, mode="nearest", align_corners=False,
                                  align_mode=0, data_format=None, recompute_scale_factor=None, name=None):
    """The Paddle-style signature of ``F.interpolate`` (used to bind calls)."""


def _pair(scale_factor: Any) -> List[float]:
    values = list(scale_factor) if isinstance(scale_factor, (list, tuple)) else [scale_factor] * 2
    return [float(v) for v in values]


def _make_safe_interpolate(upstream: Callable) -> Callable:
    import inspect

    import paddle

    signature = inspect.signature(_paddle_interpolate_signature)

    def interpolate(*args: Any, **kwargs: Any) -> Any:
        """``F.interpolate`` without ``bilinear_interp`` / ``nearest_interp`` ops for 4-D NCHW
        inputs: bilinear runs as ``trilinear_interp`` over a depth of one (the depth axis adds
        one sample of weight 1, so the weights are bilinear's); nearest (no corner alignment) as
        ``repeat_interleave`` for integer scales and ``index_select`` for sizes. Every other call
        (other modes, layouts, PyTorch-style arguments) goes to upstream unchanged."""
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return upstream(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        x, size, scale, mode = a["x"], a["size"], a["scale_factor"], a["mode"]
        if (len(x.shape) != 4 or (a["data_format"] or "NCHW") != "NCHW" or mode not in ("bilinear", "nearest")
                or a["recompute_scale_factor"] or (size is None) == (scale is None)):
            return upstream(*args, **kwargs)
        if mode == "bilinear":
            common = dict(mode="trilinear", align_corners=a["align_corners"], align_mode=a["align_mode"],
                          data_format="NCDHW")
            if size is None:
                y = upstream(x.unsqueeze(2), scale_factor=[1.0] + _pair(scale), **common)
            elif isinstance(size, (list, tuple)):
                y = upstream(x.unsqueeze(2), size=[1] + list(size), **common)
            else:  # a shape tensor [2]
                size3 = paddle.concat([paddle.ones([1], dtype=size.dtype), size.reshape([-1])])
                y = upstream(x.unsqueeze(2), size=size3, **common)
            return y.squeeze(2)
        if a["align_corners"]:
            return upstream(*args, **kwargs)
        if size is None:
            sf = _pair(scale)
            if not all(s == int(s) and s >= 1 for s in sf):
                return upstream(*args, **kwargs)
            y = paddle.repeat_interleave(x, int(sf[0]), axis=2)
            return paddle.repeat_interleave(y, int(sf[1]), axis=3)
        return _nearest_by_index(x, size[0], size[1])

    interpolate.__paddle_lk_original__ = upstream  # type: ignore[attr-defined]
    # Traced code calls it as is (dy2static would otherwise transcribe it).
    return paddle.jit.not_to_static(interpolate)


@contextlib.contextmanager
def onednn_safe_resize() -> Iterator[bool]:
    """While tracing an export: ``paddle.nn.functional.interpolate`` emits resize ops that Paddle
    Inference's oneDNN executor can run (see :func:`_make_safe_interpolate`); yields whether the
    shim applies. Dygraph code outside this context is untouched; the exported program gives the
    same values (bilinear to float rounding, nearest exactly)."""
    if not SHIMS["paddle_onednn_interp"].applies():
        yield False
        return
    import paddle.nn.functional as F
    from paddle.nn.functional import common

    upstream = F.interpolate
    safe = _make_safe_interpolate(upstream)
    owners = [m for m in (F, common) if getattr(m, "interpolate", None) is upstream]
    for m in owners:
        m.interpolate = safe
    try:
        yield True
    finally:
        for m in owners:
            m.interpolate = upstream
