"""Smoke tests of the benchmark scripts: they must run end to end and count what they claim to count.
Timings are never asserted."""
from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "dwconv_cpu.py"
_spec = importlib.util.spec_from_file_location("dwconv_cpu", SCRIPT)
dwconv_cpu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dwconv_cpu)
MODEL_SPEED = ROOT / "benchmarks" / "model_speed.py"
_spec2 = importlib.util.spec_from_file_location("model_speed", MODEL_SPEED)
model_speed = importlib.util.module_from_spec(_spec2)
_spec2.loader.exec_module(model_speed)


@pytest.mark.parametrize("h,w,k,d", [(7, 7, 13, 1), (56, 56, 31, 1), (14, 9, 27, 1), (5, 8, 3, 1), (1, 1, 1, 1),
                                     (28, 28, 29, 1), (14, 14, 7, 3), (7, 7, 3, 5), (9, 6, 5, 2)])
def test_in_map_taps_counts_taps_that_land_on_the_map(h, w, k, d):
    p = k // 2
    brute = sum(1 for y in range(h) for x in range(w) for i in range(k) for j in range(k)
                if 0 <= y + d * (i - p) < h and 0 <= x + d * (j - p) < w)
    assert dwconv_cpu.in_map_taps(h, w, k, d) == brute


@pytest.mark.parametrize("malloc_flag", [[], ["--default-malloc"]])
def test_dwconv_cpu_benchmark_runs_end_to_end(tmp_path, malloc_flag):
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env["OMP_NUM_THREADS"] = "2"
    cmd = [sys.executable, str(SCRIPT), "--ks", "3", "--no-stages", "--models", "", "--reps", "1",
           "--baseline-reps", "1", "--json", str(out), *malloc_flag]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    if malloc_flag:
        assert "GLIBC_TUNABLES=unset (default malloc)" in proc.stdout
    else:  # restarted itself under the tunables, which every column then shares
        assert f"GLIBC_TUNABLES={dwconv_cpu.MALLOC_TUNABLES}, for every column" in proc.stdout
    row = json.loads(out.read_text())["sweep"]["3"]
    assert row["flops"] == 2.0 * 8 * 256 * 56 * 56 * 9
    assert row["in_map"] == pytest.approx(dwconv_cpu.in_map_taps(56, 56, 3) / (56 * 56 * 9))
    for key in ("ours_fwd", "ours_fb", "paddle_fwd", "paddle_fb"):
        assert row[key] > 0
    assert "| 3 |" in proc.stdout


def test_model_shape_table_lists_every_depthwise_conv_of_the_models():
    shapes = dwconv_cpu.MODEL_SHAPES
    assert set(shapes) == {"RepLKNet-31B", "VAN-b2", "UniRepLKNet-S"}
    van = {(s, k, d) for _, s, k, d in shapes["VAN-b2"]}
    assert ((8, 64, 56, 56), 7, 3) in van and ((8, 2048, 7, 7), 3, 1) in van and len(van) == 12
    uni = {(s, k, d) for _, s, k, d in shapes["UniRepLKNet-S"]}
    for kd in ((5, 1), (7, 2), (3, 3), (3, 4), (3, 5), (13, 1)):  # Dilated Reparam Block of k=13
        assert ((8, 768, 7, 7),) + kd in uni
    assert ((8, 1024, 7, 7), 13, 1) in {(s, k, d) for _, s, k, d in shapes["RepLKNet-31B"]}


def test_dwconv_cpu_model_rows_run_dilated_shapes(tmp_path):
    """One model's rows end to end (op only: no Paddle columns, torch columns only if torch is there)."""
    out = tmp_path / "models.json"
    env = dict(os.environ, OMP_NUM_THREADS="2")
    cmd = [sys.executable, str(SCRIPT), "--no-stages", "--no-sweep", "--models", "VAN-b2", "--no-paddle-models",
           "--reps", "2", "--baseline-reps", "1", "--stat", "min", "--default-malloc", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.loads(out.read_text())["models"]["VAN-b2"]
    assert len(rows) == 12
    dilated = [r for r in rows if r["d"] == 3]
    assert len(dilated) == 4 and all(r["ours_fwd"] > 0 and r["ours_fb"] > 0 for r in dilated)
    assert dilated[0]["in_map"] == pytest.approx(dwconv_cpu.in_map_taps(56, 56, 7, 3) / (56 * 56 * 49))
    assert "| VAN-b2 | LKA 7x7 d3 | [8, 64, 56, 56] | 7 | 3 |" in proc.stdout


def test_model_speed_skips_official_torch_model_with_the_reason(tmp_path):
    assert model_speed.load_official(None, "replknet") == (None, "no --torch-replknet path given")
    build, note = model_speed.load_official(str(tmp_path / "absent.py"), "van")
    assert build is None and "not found" in note
    fake = tmp_path / "replknet.py"
    fake.write_text("import torch\n\ndef create_RepLKNet31B(**kw):\n    raise AssertionError\n")
    build, note = model_speed.load_official(str(fake), "replknet")
    if importlib.util.find_spec("torch") is None:
        assert build is None and note == "torch not importable"
    else:
        assert build is not None


def test_model_speed_rejects_bad_arguments():
    for args in (["--sections", "bogus"], ["--models", "NoSuchNet"], ["--batches", "x"]):
        proc = subprocess.run([sys.executable, str(MODEL_SPEED), *args], capture_output=True, text=True,
                              cwd=ROOT, timeout=300)
        assert proc.returncode == 2, args
        assert "error: " in proc.stderr, proc.stderr


def test_dwconv_cpu_benchmark_rejects_even_kernel():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--ks", "4", "--default-malloc"], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2
    assert "odd" in proc.stderr


def test_fixture_agreement_prints_every_fixture_within_tolerance(fixtures_dir):
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fixture_agreement.py"), "--fixtures",
                          str(fixtures_dir)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [line.split("|")[1:-1] for line in res.stdout.splitlines() if line.startswith("| ") and "fixture" not in line]
    assert len(rows) == 5
    for _, loaded, deploy, _scale in rows:
        assert float(loaded) < 1e-4 and float(deploy) < 1e-4
