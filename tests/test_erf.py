"""Effective receptive field: paper method on tiny models and tiny images."""
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest

from paddle_lk.analysis import erf
from paddle_lk.models import RepLKNet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny(kernel: int, seed: int) -> RepLKNet:
    # Two stages, output stride 8: at 64x64 a 3x3 stack sees only the middle of the image while 13x13
    # kernels reach the border, so the gap is wide for any seed (checked for several below).
    paddle.seed(seed)
    return RepLKNet([kernel, kernel], [1, 1], [8, 16], 0.0, None, out_indices=(1,))


@pytest.fixture(scope="module")
def images():
    return erf.sample_images(2)


def test_sample_images_are_bundled_rgb_photos():
    imgs = erf.sample_images(3)
    assert [n for n, _ in imgs] == ["astronaut", "chelsea", "coffee"]
    for _, img in imgs:
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


def test_preprocess_shape_and_normalisation():
    img = np.full((30, 50, 3), 255, dtype=np.uint8)
    x = erf.preprocess(img, 16)
    assert x.shape == (1, 3, 16, 16) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], (1 - erf.IMAGENET_MEAN) / erf.IMAGENET_STD, rtol=1e-5)


def test_area_ratio_on_known_maps():
    data = np.zeros((11, 11))
    data[5, 5] = 1.0
    assert erf.area_ratio(data, 0.5) == (1, 1 / 121)
    uniform = np.ones((10, 10))
    side, ratio = erf.area_ratio(uniform, 0.5)
    # Centre at (5, 5): a 7x7 square holds 49% (not > 50%), the 9x9 one clipped to 9x9 = 81%.
    assert side == 9 and ratio == pytest.approx(0.81)
    assert erf.area_ratio(uniform, 0.99) == (11, 1.0)
    with pytest.raises(ValueError):
        erf.area_ratio(uniform, 1.0)
    with pytest.raises(ValueError):
        erf.area_ratio(np.zeros((4, 4)), 0.5)


def test_normalize_is_log_scaled_to_one():
    raw = np.array([[0.0, 9.0], [99.0, 0.0]])
    np.testing.assert_allclose(erf.normalize_erf(raw), [[0.0, 0.5], [1.0, 0.0]])
    np.testing.assert_allclose(erf.normalize_erf(raw, "linear"), raw / 99.0)
    with pytest.raises(ValueError):
        erf.normalize_erf(raw, "sqrt")


def test_erf_map_ratios_and_heatmap(images, tmp_path):
    res = erf.compute_erf(_tiny(13, 0), images, 64, name="tiny13")
    assert res.raw.shape == (64, 64) and res.num_images == 2 and res.skipped == 0
    assert np.isfinite(res.raw).all() and res.raw.min() >= 0 and res.raw.max() > 0
    norm = res.normalized
    assert norm.max() == pytest.approx(1.0)
    ratios = [res.ratios[t] for t in erf.ERF_THRESHOLDS]
    assert all(0 < r <= 1 for r in ratios)
    assert ratios == sorted(ratios) and ratios[0] < ratios[-1]
    linear = [res.linear_ratios[t] for t in erf.ERF_THRESHOLDS]
    assert linear == sorted(linear) and res.raw_max == pytest.approx(res.raw.max())
    out = tmp_path / "erf.png"
    erf.plot_erf([res], str(out))
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp file left behind


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_larger_kernels_give_larger_erf(images, seed):
    small = erf.compute_erf(_tiny(3, seed), images, 64)
    large = erf.compute_erf(_tiny(13, seed), images, 64)
    for t in (0.5, 0.99):
        assert large.ratios[t] > 2 * small.ratios[t], (t, small.ratios, large.ratios)


def test_compute_erf_restores_params_and_mode(images):
    model = _tiny(3, 0)
    model.train()
    before = [p.stop_gradient for p in model.parameters()]
    assert not all(before)
    erf.compute_erf(model, images[:1], 32)
    assert model.training
    assert [p.stop_gradient for p in model.parameters()] == before


def test_classifier_output_is_rejected(images):
    paddle.seed(0)
    model = RepLKNet([3, 3], [1, 1], [8, 16], 0.0, None, num_classes=4)
    with pytest.raises(ValueError, match="feature map"):
        erf.compute_erf(model, images[:1], 32)


def test_build_erf_model_names_and_errors(tmp_path):
    model, label = erf.build_erf_model("resnet18")
    assert label == "random"
    with paddle.no_grad():
        assert model(paddle.zeros([1, 3, 64, 64])).shape == [1, 512, 2, 2]
    with pytest.raises(KeyError, match="RepLKNet31B"):
        erf.build_erf_model("RepLKNet31b")
    with pytest.raises(KeyError, match="resnet101"):
        erf.build_erf_model("resnet99")
    with pytest.raises(FileNotFoundError):
        erf.build_erf_model("resnet18", str(tmp_path / "missing.pdparams"))


def test_resnet_weights_are_loaded(tmp_path):
    paddle.seed(1)
    src = paddle.vision.models.resnet18()
    path = str(tmp_path / "r18.pdparams")
    paddle.save(src.state_dict(), path)  # full classifier checkpoint: fc.* must be ignored
    model, label = erf.build_erf_model("resnet18", path)
    assert label == "r18.pdparams"
    np.testing.assert_array_equal(model.conv1.weight.numpy(), src.conv1.weight.numpy())
    paddle.save({"foo": paddle.zeros([1])}, path)
    with pytest.raises(ValueError, match="missing"):
        erf.build_erf_model("resnet18", path)


def test_paddle_lk_weights_are_loaded(tmp_path):
    import paddle_lk

    paddle.seed(3)
    src = paddle_lk.create_model("VAN_b0", num_classes=10)
    path = str(tmp_path / "van_b0.pdparams")
    paddle.save(src.state_dict(), path)  # classifier checkpoint into a features-mode model: head skipped
    model, label = erf.build_erf_model("VAN_b0", path)
    assert label == "van_b0.pdparams"
    np.testing.assert_array_equal(model.backbone.patch_embed1.proj.weight.numpy(),
                                  src.patch_embed1.proj.weight.numpy())
    with paddle.no_grad():
        assert model(paddle.zeros([1, 3, 64, 64])).shape == [1, 256, 2, 2]


def test_load_images_folder(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((20, 30), dtype=np.uint8)).save(tmp_path / "b.png")
    Image.fromarray(np.zeros((20, 30, 4), dtype=np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    imgs = erf.load_images(str(tmp_path))
    assert [n for n, _ in imgs] == ["a", "b"] and all(i.shape == (20, 30, 3) for _, i in imgs)
    with pytest.raises(FileNotFoundError):
        erf.load_images(str(tmp_path / "nowhere"))


def test_cli_writes_figure_and_tables(tmp_path):
    out = tmp_path / "erf"
    cmd = [sys.executable, os.path.join(ROOT, "tools", "erf.py"), "--models", "resnet18", "VAN_b0",
           "--size", "48", "--num-images", "1", "--output", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (out / "erf.png").stat().st_size > 0
    assert np.load(out / "erf_VAN_b0.npy").shape == (48, 48)
    table = json.loads((out / "erf_ratios.json").read_text())
    assert [m["model"] for m in table["models"]] == ["resnet18", "VAN_b0"]
    assert table["images"] == ["astronaut"]
    for m in table["models"]:
        assert m["weights"] == "random" and set(m["area_ratio_linear"]) == set(m["area_ratio"])
        vals = [m["area_ratio"][f"{t:g}"] for t in erf.ERF_THRESHOLDS]
        assert vals == sorted(vals)
    csv_lines = (out / "erf_ratios.csv").read_text().strip().splitlines()
    assert csv_lines[0].startswith("model,weights,size,num_images,ratio@0.2") and len(csv_lines) == 3


@pytest.mark.parametrize("args, message", [
    (["--models", "RepLKNet31X"], "did you mean"),
    (["--models", "resnet18", "--weights", "a", "b"], "one per model"),
    (["--models", "resnet18", "--images", "/nonexistent-dir"], "not found"),
])
def test_cli_bad_input_exits_2(tmp_path, args, message):
    cmd = [sys.executable, os.path.join(ROOT, "tools", "erf.py"), *args, "--output", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_cli_unreadable_weights_exit_2(tmp_path):
    bad = tmp_path / "bad.pdparams"
    bad.write_text("not a checkpoint")
    cmd = [sys.executable, os.path.join(ROOT, "tools", "erf.py"), "--models", "VAN_b0", "--weights", str(bad),
           "--size", "32", "--num-images", "1", "--output", str(tmp_path / "out")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.pdparams" in lines[0]
    assert not (tmp_path / "out").exists()
