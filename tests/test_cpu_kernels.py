"""The CPU kernels alone (no Paddle): tests/csrc/check_cpu_kernels.cc compares forward, input, weight
and bias gradients with a double-precision direct convolution over a grid that crosses every path
boundary of lk_dwconv_cpu.cc (dilations 1..7 included), with the default path choice, with each
small-kernel path (flat, channel-packed) forced on and both forced off, without AVX-512, and on the
portable scalar path.

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


# Environment of each run: the default path choice, each small-kernel path forced on for every case
# it can take (flat; channel-packed for C >= 8), both forced off, AVX2 without AVX-512, and scalar.
PATH_ENVS = {
    "avx2": {},
    "avx2-only": {"PADDLE_LK_OP_NO_AVX512": "1"},
    "flat": {"PADDLE_LK_OP_FLAT": "1"},
    "flat-avx2-only": {"PADDLE_LK_OP_FLAT": "1", "PADDLE_LK_OP_NO_AVX512": "1"},
    "packed": {"PADDLE_LK_OP_PACKED": "1"},
    "plane-only": {"PADDLE_LK_OP_FLAT": "0", "PADDLE_LK_OP_PACKED": "0"},
    "scalar": {"PADDLE_LK_OP_NO_AVX2": "1"},
}


@pytest.mark.parametrize("path", list(PATH_ENVS))
def test_cpu_kernels_match_double_reference(checker, path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDLE_LK_OP_")}
    env.update(OMP_NUM_THREADS="2", **PATH_ENVS[path])
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
