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


@pytest.mark.parametrize("h,w,k", [(7, 7, 13), (56, 56, 31), (14, 9, 27), (5, 8, 3), (1, 1, 1), (28, 28, 29)])
def test_in_map_taps_counts_taps_that_land_on_the_map(h, w, k):
    p = k // 2
    brute = sum(1 for y in range(h) for x in range(w) for i in range(k) for j in range(k)
                if 0 <= y + i - p < h and 0 <= x + j - p < w)
    assert dwconv_cpu.in_map_taps(h, w, k) == brute


@pytest.mark.parametrize("malloc_flag", [[], ["--default-malloc"]])
def test_dwconv_cpu_benchmark_runs_end_to_end(tmp_path, malloc_flag):
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env["OMP_NUM_THREADS"] = "2"
    cmd = [sys.executable, str(SCRIPT), "--ks", "3", "--no-stages", "--reps", "1", "--baseline-reps", "1",
           "--json", str(out), *malloc_flag]
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


def test_dwconv_cpu_benchmark_rejects_even_kernel():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--ks", "4", "--default-malloc"], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2
    assert "odd" in proc.stderr
