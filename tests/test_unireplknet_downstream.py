"""Issue 15: UniRepLKNet in PaddleClas / PaddleSeg / PaddleDetection -- every variant registered, the shipped
UperNet ADE20K (T, S) and Cascade Mask R-CNN 3x COCO (T) configs train a couple of iterations on tiny
data through ``tools/train.py`` (shrunk with ``-o`` only), their optimizer groups follow the official
recipe as far as the toolkits can express it, and their exports are re-parameterized."""
from __future__ import annotations

import json
import pathlib
import re

import numpy as np
import paddle
import pytest

pytest.importorskip("paddleseg")
pytest.importorskip("ppdet")

from toolkit_helpers import (det_value_overrides, last_json, make_ade20k_layout, make_coco_layout,  # noqa: E402
                             run_tool, seg_value_overrides)

import paddle_lk  # noqa: E402
import paddle_lk.integrations.det  # noqa: E402,F401 -- registers on import
import paddle_lk.integrations.seg  # noqa: E402,F401
from paddle_lk.integrations import compat  # noqa: E402
from paddle_lk.models.unireplknet import VARIANT_CONFIGS  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
SEG = {v: str(ROOT / "configs" / "seg" / f"unireplknet_{v}_upernet_ade20k_512x512_160k.yml") for v in ("t", "s")}
DET = str(ROOT / "configs" / "det" / "unireplknet_t_cascade_mask_rcnn_fpn_3x_coco.yml")
RETINANET = str(ROOT / "configs" / "det" / "van_b2_retinanet_fpn_1x_coco.yml")
# The same family, a few channels; every block kind (3x3 conv, 13x13 and 7x7 Dilated Reparam Blocks, 5x5).
TINY = {"depths": [1, 1, 1, 1], "dims": [8, 16, 16, 16], "kernel_sizes": [[3], [13], [7], [5]]}
TRAIN_FORM = re.compile(r"dil_conv|dil_bn|origin_bn|pwconv2\.2\.|act\.1\.beta|stages\.\d+\.\d+\.gamma$")


def _numel(state) -> int:
    return sum(int(np.prod(v.shape)) for v in state.values())


def _exported_numel(prefix: str) -> int:
    """Weights in an exported program (its parameter names are generic, so count them)."""
    return _numel(paddle.jit.load(prefix).state_dict())


def _official_layer_id(name: str, max_layer_id: int = 12) -> int:
    """The official UniRepLKNetLearningRateDecayOptimizerConstructor's get_layer_id, on paddle_lk names."""
    name = name.replace("backbone.model.", "backbone.")
    if name.startswith("backbone.downsample_layers"):
        return {0: 0, 1: 2, 2: 3, 3: max_layer_id}[int(name.split(".")[2])]
    if name.startswith("backbone.stages"):
        stage, block = int(name.split(".")[2]), int(name.split(".")[3])
        return {0: 1, 1: 2, 2: 3 + block // 3, 3: max_layer_id}[stage]
    return max_layer_id + 1


def _no_decay(name: str, param) -> bool:
    """The official rule: no weight decay on 1-D parameters and biases."""
    return len(param.shape) == 1 or name.endswith(".bias")


def _group_of(optimizer):
    """{param id: (weight decay, lr multiplier)} from a Paddle optimizer's param groups."""
    out = {}
    for group in optimizer._param_groups:
        wd = group.get("weight_decay", optimizer._default_dict.get("weight_decay"))
        wd = float(getattr(wd, "_coeff", wd) or 0.0)
        for p in group["params"]:
            out[id(p)] = (wd, float(p.optimize_attr["learning_rate"]))
    return out


# --------------------------------------------------------------------------------------------
# Registration

def test_every_variant_registered_in_every_toolkit():
    import paddle_lk.integrations as integ
    import paddle_lk.integrations.ppcls  # noqa: F401
    from paddleseg.cvlibs import manager
    from ppdet.core.workspace import global_config

    import paddleclas.ppcls.arch as arch
    from paddle_lk.integrations._common import BACKBONE_NAMES

    integ.register_all()
    names = sorted(VARIANT_CONFIGS)
    assert names == paddle_lk.list_models(family="unireplknet") and set(names) <= set(BACKBONE_NAMES)
    for name in names:
        assert manager.BACKBONES[name].__name__ == name
        assert name in global_config
        assert callable(getattr(arch, name))
    backbone = manager.BACKBONES["UniRepLKNet_S"](in_channels=3, **TINY)
    feats = backbone(paddle.randn([1, 3, 64, 64]))
    assert [list(f.shape) for f in feats] == [[1, 8, 16, 16], [1, 16, 8, 8], [1, 16, 4, 4], [1, 16, 2, 2]]
    assert backbone.feat_channels == [8, 16, 16, 16] and backbone.feat_strides == [4, 8, 16, 32]


# --------------------------------------------------------------------------------------------
# PaddleSeg: UperNet ADE20K 512x512 160k (T, S)

def _seg_overrides(variant, data=None, depths=None):
    arch = dict(TINY)
    if depths:  # deeper: several stage-2 blocks (layer-wise lr groups), every block kind
        arch.update(depths=depths, kernel_sizes=[[3] * depths[0], [13] * depths[1], ([7, 0, 13, 3] * 4)[:depths[2]],
                                                 [5] * depths[3]])
    return seg_value_overrides(SEG[variant], data, backbone=arch)[1]


def test_seg_configs_official_numbers():
    from paddleseg.cvlibs.config import parse_from_yaml

    for v, drop_path, with_cp in (("t", 0.2, False), ("s", 0.3, True)):
        raw = parse_from_yaml(SEG[v])
        bb = raw["model"]["backbone"]
        assert (bb["type"], bb["drop_path_rate"], bb["with_cp"]) == (f"UniRepLKNet_{v.upper()}", drop_path, with_cp)
        assert (raw["iters"], raw["batch_size"], raw["model"]["channels"]) == (160000, 2, 512)
        assert raw["train_dataset"]["transforms"][1]["crop_size"] == [512, 512]
        assert raw["lr_scheduler"] == {"type": "PolynomialDecay", "learning_rate": 1e-4, "end_lr": 0.0, "power": 1.0,
                                       "warmup_iters": 1500, "warmup_start_lr": 1e-10}
        assert raw["optimizer"]["type"] == "AdamW" and raw["optimizer"]["weight_decay"] == 0.05
        assert raw["loss"]["coef"] == [1, 0.4]
        head = open(SEG[v]).read().split("\n", 2)[1]
        assert {"t": "48.6 mIoU single-scale", "s": "50.5 mIoU single-scale"}[v] in head


@pytest.mark.parametrize("variant", ["t", "s"])
def test_seg_optimizer_follows_official_rule(variant):
    """Weight decay exactly the official rule; S: the official layer-wise lr (0.9) on every decayed
    backbone weight, lr x 1 for the rest (the documented PaddleSeg limitation)."""
    from paddle_lk.integrations import seg

    builder = seg.builder(seg.load_config(SEG[variant], _seg_overrides(variant, depths=[1, 2, 4, 1])))
    groups = _group_of(builder.optimizer)
    checked = 0
    for name, p in builder.model.named_parameters():
        if p.stop_gradient:
            continue
        wd, lr = groups[id(p)]
        assert wd == (0.0 if _no_decay(name, p) else pytest.approx(0.05)), name
        layer_lr = 0.9 ** (13 - _official_layer_id(name)) if variant == "s" and name.startswith("backbone.") else 1.0
        if _no_decay(name, p) or ".act.1." in name:
            assert lr == 1.0, name
        else:
            assert lr == pytest.approx(layer_lr, rel=1e-5), name
            checked += name.startswith("backbone.")
    assert checked > 20


@pytest.mark.parametrize("variant", ["t", "s"])
def test_seg_config_trains_and_exports(variant, tmp_path):
    data = make_ade20k_layout(tmp_path / "ADEChallengeData2016")
    ov = _seg_overrides(variant, data)
    out = tmp_path / "run"
    extra = ["--eval"] if variant == "t" else []  # S keeps with_cp: true (recompute in backward)
    res = run_tool("train", ["-c", SEG[variant], "-o", *ov, "--output", out, *extra])
    assert res.returncode == 0, res.stderr[-3000:]
    summary = last_json(res.stdout)
    assert summary["updates"] == 2 and np.isfinite(summary["loss"])
    if extra:
        assert 0.0 <= summary["eval"]["mIoU"] <= 1.0 and len(summary["eval"]["class_iou"]) == 150
    weights = out / "best_model.pdparams"
    state = paddle.load(str(weights))
    assert any(k.startswith("backbone.model.stages.1.0.dwconv.dil_conv_k") for k in state)  # trained in train form

    res = run_tool("export", ["-c", SEG[variant], "-o", *ov, "-w", weights, "--output", tmp_path / "exp"])
    assert res.returncode == 0, res.stderr[-3000:]
    # The exported program gives the trained model's label map.
    from paddle_lk.integrations import seg

    model = seg.builder(seg.load_config(SEG[variant], ov)).model
    model.set_state_dict(state)
    model.eval()
    x = paddle.uniform([1, 3, 64, 64], min=-2, max=2, seed=1)
    expected = paddle.argmax(model(x)[0], axis=1, keepdim=True).numpy()
    loaded = paddle.jit.load(str(tmp_path / "exp" / "model"))
    got = loaded(x)
    got = (got[0] if isinstance(got, (list, tuple)) else got).numpy()
    assert (got == expected).mean() > 0.99


class _Logits(paddle.nn.Layer):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)[0]


def _traced_numel(model, prefix: str) -> int:
    """Weights in the program of ``model``'s inference forward (the auxiliary head is pruned, as in an export)."""
    spec = [paddle.static.InputSpec([None, 3, None, None], "float32", "x")]
    with compat.onednn_safe_resize():
        paddle.jit.save(paddle.jit.to_static(_Logits(model), input_spec=spec, full_graph=True), prefix)
    return _exported_numel(prefix)


def test_seg_export_is_reparameterized(tmp_path):
    from paddle_lk.integrations import seg

    ov = _seg_overrides("t")
    model = seg.builder(seg.load_config(SEG["t"], ov)).model
    weights = tmp_path / "model.pdparams"
    paddle.save(model.state_dict(), str(weights))
    model.eval()
    train_numel = _traced_numel(model, str(tmp_path / "train" / "model"))
    deploy_numel = _traced_numel(paddle_lk.reparameterize(model), str(tmp_path / "deploy" / "model"))
    assert deploy_numel < train_numel
    res = run_tool("export", ["-c", SEG["t"], "-o", *ov, "-w", weights, "--output", tmp_path / "exp"])
    assert res.returncode == 0, res.stderr[-3000:]
    # No Dilated Reparam branch, block BN, GRN bias or layer scale left in the exported weights.
    assert _exported_numel(str(tmp_path / "exp" / "model")) <= deploy_numel


# --------------------------------------------------------------------------------------------
# PaddleDetection: Cascade Mask R-CNN 3x COCO (T)

def _det_overrides(data=None, backbone=None):
    return det_value_overrides(DET, data, score_threshold=0.0, backbone=backbone or TINY)[1]


def test_det_config_official_numbers():
    from ppdet.core.workspace import _load_config_with_base

    raw = _load_config_with_base(DET)
    assert raw["architecture"] == "CascadeRCNN" and raw["CascadeRCNN"]["backbone"] == "UniRepLKNet_T"
    assert raw["UniRepLKNet_T"]["drop_path_rate"] == 0.3 and raw["UniRepLKNet_T"]["with_cp"] is True
    assert raw["epoch"] == 36 and raw["LearningRate"]["base_lr"] == 1e-4
    assert raw["LearningRate"]["schedulers"][0].milestones == [27, 33]
    assert raw["OptimizerBuilder"]["optimizer"]["weight_decay"] == 0.05
    assert raw["CascadeXConvNormHead"]["num_convs"] == 4 and raw["GIoULoss"]["loss_weight"] == 10.0
    assert raw["CascadeHead"]["stage_loss_weights"] == [1.0, 0.5, 0.25]
    assert raw["BBoxAssigner"]["cascade_iou"] == [0.5, 0.6, 0.7] and raw["TrainReader"]["batch_size"] == 2
    head = "".join(open(DET).read().split("\n", 3)[:3])
    assert "51.7 box AP / 44.9 mask AP" in head and "53.0 / 45.9" in head


def test_det_optimizer_has_official_layer_decay():
    from ppdet.core.workspace import create

    from paddle_lk.integrations import det

    ov = _det_overrides(backbone={"depths": [1, 1, 7, 1], "dims": [8, 16, 16, 16],
                                  "kernel_sizes": [[3], [13], [13, 3, 7, 0, 13, 3, 5], [5]]})
    cfg = det.load_det_config(DET, ov)
    model = det.build_model(cfg)
    optimizer = create("OptimizerBuilder")(create("LearningRate")(10), model)
    head = model.bbox_head
    assert type(head.head).__name__ == "CascadeXConvNormHead" and head.reg_class_agnostic  # difference (2)
    assert type(head.bbox_loss).__name__ == "GIoULoss" and head.bbox_loss.loss_weight == 10.0
    groups = _group_of(optimizer)
    seen = set()
    for name, p in model.named_parameters():
        if p.stop_gradient:
            continue
        wd, lr = groups[id(p)]
        assert wd == pytest.approx(0.05), name  # every parameter: see the config's differences (1)
        expected = 0.8 ** (13 - _official_layer_id(name)) if name.startswith("backbone.") else 1.0
        assert lr == pytest.approx(expected, rel=1e-5), name
        seen.add(_official_layer_id(name))
    assert seen == {0, 1, 2, 3, 4, 5, 12, 13}


def test_det_config_trains(tmp_path):
    data = make_coco_layout(tmp_path / "coco")
    res = run_tool("train", ["-c", DET, "-o", *_det_overrides(data), "--output", tmp_path / "out", "--eval"])
    assert res.returncode == 0, res.stderr[-3000:]
    summary = last_json(res.stdout)
    assert 0.0 <= summary["eval"]["bbox_mAP"] <= 1.0
    weights = tmp_path / "out" / "best_model.pdparams"
    state = paddle.load(str(weights))
    assert any(k.startswith("backbone.model.stages.1.0.dwconv.dil_conv_k") for k in state)
    assert all(np.isfinite(v.numpy()).all() for v in state.values())
    assert "loss_bbox_reg_stage2" in res.stdout + res.stderr  # the three cascade stages with the GIoU loss


def _det_export_check(cfg_path, ov, tmp_path):
    from paddle_lk.integrations import det

    model = det.build_model(det.load_det_config(cfg_path, ov))
    weights = tmp_path / "model.pdparams"
    paddle.save(model.state_dict(), str(weights))
    train_numel = _numel(model.state_dict())
    model.eval()
    deploy = paddle_lk.reparameterize(model)
    # + buffers outside the state dict that the program keeps as constants (RetinaNet's base anchors)
    deploy_numel = _numel(dict(deploy.state_dict(), **dict(deploy.named_buffers())))
    assert deploy_numel < train_numel
    res = run_tool("export", ["-c", cfg_path, "-o", *ov, "-w", weights, "--output", tmp_path / "exp"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert _exported_numel(str(tmp_path / "exp" / "model")) <= deploy_numel


def test_det_one_stage_export_is_reparameterized(tmp_path):
    """A UniRepLKNet-T RetinaNet."""
    ov = det_value_overrides(RETINANET, score_threshold=0.0)[1]
    ov += ["RetinaNet.backbone=UniRepLKNet_T", "UniRepLKNet_T.out_indices=[1,2,3]"]
    ov += [f"UniRepLKNet_T.{k}={json.dumps(v)}" for k, v in TINY.items()]
    _det_export_check(RETINANET, ov, tmp_path)


def test_det_cascade_export_is_reparameterized(tmp_path):
    _det_export_check(DET, _det_overrides(), tmp_path)
