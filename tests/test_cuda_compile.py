"""Compile-only checks of the CUDA path, so a syntax or template error fails CI without a GPU.

Skipped cleanly when nvcc is absent.
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("dwconv_gpu", ROOT / "benchmarks" / "dwconv_gpu.py")
dwconv_gpu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dwconv_gpu)

NVCC = dwconv_gpu.find_nvcc()
pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc not installed")


def test_nvcc_compiles_kernels_for_sm80_and_sm90(tmp_path):
    out = dwconv_gpu.build_library(str(tmp_path / "lk.o"), archs=("80", "90"), shared=False)
    assert os.path.getsize(out) > 0


def test_gpu_harness_builds_a_loadable_library(tmp_path):
    """benchmarks/dwconv_gpu.py's build step: a shared library exporting the four C entry points."""
    lib = tmp_path / "liblk.so"
    assert dwconv_gpu.main(["--build-only", "--archs", "80", "--lib", str(lib)]) == 0
    handle = ctypes.CDLL(str(lib))  # static cudart: loading needs no GPU or driver
    for name in ("forward", "input_grad", "weight_grad", "bias_grad"):
        assert hasattr(handle, f"lk_dwconv2d_{name}_cuda")


def test_paddle_cuda_extension_compiles_and_links(tmp_path):
    """custom_ops/setup.py's CUDAExtension build (binding + CPU + CUDA kernels, linked against cudart and
    libpaddle), forced on this CPU Paddle wheel: nothing runs it here, but it must build."""
    env = dict(os.environ, PADDLE_LK_OP_FORCE_CUDA="1", PADDLE_LK_CUDA_ARCHS="80;90")
    cmd = [sys.executable, "setup.py", "build_ext", "--build-temp", str(tmp_path / "tmp"),
           "--build-lib", str(tmp_path / "lib")]
    proc = subprocess.run(cmd, cwd=ROOT / "custom_ops", env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    libs = list((tmp_path / "lib").glob("*.so"))
    assert libs, proc.stdout[-2000:]
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(libs[0])], capture_output=True, text=True).stdout
    assert "lk_dwconv2d_forward_cuda" in symbols
