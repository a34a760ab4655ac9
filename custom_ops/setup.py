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
import importlib.util
import os

from paddle.utils.cpp_extension import CppExtension, CUDAExtension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "_paddle_lk_op_build", os.path.join(HERE, "..", "paddle_lk", "ops", "_build.py"))
_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_build)

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
