"""Installable build of paddle_lk's large-kernel depthwise conv op.

    cd custom_ops && python setup.py install      # then paddle_lk uses it instead of its JIT build

``PADDLE_LK_CUDA_ARCHS="80;90"`` narrows the GPU architectures compiled; ``PADDLE_LK_OP_FORCE_CUDA=1``
builds the CUDAExtension even against a CPU Paddle (CI uses it to compile and link the CUDA path).

Builds the module ``paddle_lk_dwconv_ops`` (ops ``lk_dwconv2d`` and ``lk_dwconv2d_bias``) with
``paddle.utils.cpp_extension``: ``CUDAExtension`` (CPU + CUDA kernels) when Paddle is compiled with
CUDA, ``CppExtension`` (CPU kernels) otherwise. The sources are those of the JIT build, shipped as
package data in ``paddle_lk/ops/csrc``; the flags come from ``paddle_lk/ops/_build.py`` so both
builds are identical.
"""
import os
import sys

from paddle.utils.cpp_extension import CppExtension, CUDAExtension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # this checkout's paddle_lk, whatever else is installed
from paddle_lk.ops import _build  # noqa: E402

cfg = _build.build_config(force_cuda=os.environ.get("PADDLE_LK_OP_FORCE_CUDA") == "1")
sources = [os.path.relpath(s, HERE) for s in cfg["sources"]]
if cfg["with_cuda"]:
    ext = CUDAExtension(sources=sources,
                        extra_compile_args={"cxx": cfg["cxx_flags"], "nvcc": cfg["cuda_flags"]},
                        extra_link_args=cfg["ld_flags"])
else:
    ext = CppExtension(sources=sources, extra_compile_args={"cxx": cfg["cxx_flags"]},
                       extra_link_args=cfg["ld_flags"])

setup(name=_build.INSTALLED_MODULE, ext_modules=ext)
