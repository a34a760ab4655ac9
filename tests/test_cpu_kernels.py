"""The CPU kernels alone (no Paddle): tests/csrc/check_cpu_kernels.cc compares forward, input, weight
and bias gradients with a double-precision direct convolution over a grid that crosses every path
boundary of lk_dwconv_cpu.cc (dilations 1..7 included), on the AVX2/FMA paths (default choice, the
channel-packed path forced on, forced off) and on the portable scalar path.

Skipped cleanly when no C++ compiler is installed.
"""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

from paddle_lk.ops import _build

ROOT = pathlib.Path(__file__).resolve().parents[1]
CSRC = ROOT / "paddle_lk" / "ops" / "csrc"
CXX = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")

pytestmark = pytest.mark.skipif(CXX is None, reason="no C++ compiler")


@pytest.fixture(scope="module")
def checker(tmp_path_factory) -> pathlib.Path:
    exe = tmp_path_factory.mktemp("cpu_kernels") / "check_cpu_kernels"
    cmd = [CXX, *_build.CXX_FLAGS, "-std=c++17", f"-I{CSRC}", str(ROOT / "tests" / "csrc" / "check_cpu_kernels.cc"),
           str(CSRC / "lk_dwconv_cpu.cc"), "-o", str(exe), *_build.LD_FLAGS]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return exe


@pytest.mark.parametrize("path", ["avx2", "avx2-packed", "avx2-unpacked", "scalar"])
def test_cpu_kernels_match_double_reference(checker, path):
    env = dict(os.environ, OMP_NUM_THREADS="2")
    env.pop("PADDLE_LK_OP_PACKED", None)
    if path == "scalar":
        env["PADDLE_LK_OP_NO_AVX2"] = "1"
    elif path != "avx2":  # force the channel-packed path on (every case with C >= 8) or off
        env["PADDLE_LK_OP_PACKED"] = "1" if path == "avx2-packed" else "0"
    proc = subprocess.run([str(checker)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    expected = "AVX2/FMA" if path != "scalar" and _has_avx2_fma() else "scalar"
    assert f"0 mismatches ({expected} path)" in proc.stdout, proc.stdout[-2000:]


def _has_avx2_fma() -> bool:
    try:
        flags = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx2" in flags and " fma" in flags
