"""GPU harness for the large-kernel depthwise conv CUDA kernels (no Paddle needed).

Compiles ``paddle_lk/ops/csrc/lk_dwconv_cuda.cu`` (the very file the Paddle op builds) with nvcc into a
shared library, calls it through ctypes on torch CUDA tensors, checks forward / input grad / weight grad
/ bias grad against ``torch.nn.functional.conv2d`` (fp32, fp16 and bf16; dilations 1..7 with "same"
padding), and times it against cuDNN at the RepLKNet paper's Table-1 shapes: input (64, 384, R, R),
R in {16, 32, 64}, kernel 3..31, plus the dilated shapes of VAN (7x7, dilation 3) and UniRepLKNet.

    python benchmarks/dwconv_gpu.py --build-only            # compile check (no GPU needed)
    python benchmarks/dwconv_gpu.py --check --bench         # needs a CUDA GPU and torch with CUDA

Timings are CUDA-event medians. ``--archs`` defaults to the local GPU's compute capability.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Callable, List, Optional, Sequence, Tuple

ROOT = pathlib.Path(__file__).resolve().parents[1]
CU_SOURCE = ROOT / "paddle_lk" / "ops" / "csrc" / "lk_dwconv_cuda.cu"
DTYPE_CODES = {"float32": 0, "float16": 1, "bfloat16": 2}
TABLE1_R = (16, 32, 64)
TABLE1_K = (3, 5, 7, 9, 13, 17, 21, 25, 27, 29, 31)
# (kernel, dilation) at R in TABLE1_R: VAN's DW-D-Conv and UniRepLKNet's dilated re-param branches.
DILATED_KD = ((7, 3), (7, 2), (5, 2), (3, 3), (3, 4), (3, 5))


def find_nvcc() -> Optional[str]:
    """nvcc from PATH, $CUDA_HOME/bin or /usr/local/cuda/bin; None when absent."""
    for cand in (shutil.which("nvcc"), os.path.join(os.environ.get("CUDA_HOME", ""), "bin", "nvcc"),
                 "/usr/local/cuda/bin/nvcc"):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def nvcc_command(nvcc: str, out: str, archs: Sequence[str], shared: bool) -> List[str]:
    """The nvcc command line: ``-shared`` library for ctypes, or ``-c`` object for a compile check."""
    cmd = [nvcc, "-O3", "-std=c++17", "-Xcompiler", "-fPIC"]
    for arch in archs:
        cmd += ["-gencode", f"arch=compute_{arch},code=sm_{arch}"]
    cmd += (["-shared"] if shared else ["-c"]) + [str(CU_SOURCE), "-o", out]
    return cmd


def build_library(out: Optional[str] = None, archs: Sequence[str] = ("80", "90"), shared: bool = True,
                  timeout: float = 600) -> str:
    """Compile the CUDA kernels; returns the output path. Raises RuntimeError with nvcc's output on failure."""
    nvcc = find_nvcc()
    if nvcc is None:
        raise RuntimeError("nvcc not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin)")
    if out is None:
        out = os.path.join(tempfile.mkdtemp(prefix="lk_dwconv_gpu_"), "liblk_dwconv.so" if shared else "lk.o")
    # Compile to a temp name and rename: a failed build never leaves a stale library behind.
    tmp = out + ".tmp"
    proc = subprocess.run(nvcc_command(nvcc, tmp, archs, shared), capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"nvcc failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    os.replace(tmp, out)
    return out


class Kernels:
    """ctypes front end of the four C entry points, taking torch CUDA tensors."""

    def __init__(self, lib_path: str) -> None:
        lib = ctypes.CDLL(lib_path)
        i64, vp, i32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
        lib.lk_dwconv2d_forward_cuda.argtypes = [i32, vp, vp, vp, vp, i64, i64, i64, i64, i64, i64, vp]
        lib.lk_dwconv2d_input_grad_cuda.argtypes = [i32, vp, vp, vp, i64, i64, i64, i64, i64, i64, vp]
        lib.lk_dwconv2d_weight_grad_cuda.argtypes = [i32, vp, vp, vp, vp, i64, i64, i64, i64, i64, i64, vp]
        lib.lk_dwconv2d_bias_grad_cuda.argtypes = [i32, vp, vp, i64, i64, i64, i64, vp]
        for fn in ("forward", "input_grad", "weight_grad", "bias_grad"):
            getattr(lib, f"lk_dwconv2d_{fn}_cuda").restype = ctypes.c_int
        self.lib = lib

    @staticmethod
    def _stream():
        import torch

        return ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)

    @staticmethod
    def _code(t) -> int:
        return DTYPE_CODES[str(t.dtype).replace("torch.", "")]

    def _ok(self, err: int, what: str) -> None:
        if err != 0:
            raise RuntimeError(f"{what}: CUDA error {err}")

    def forward(self, x, w, b=None, d: int = 1):
        import torch

        y = torch.empty_like(x)
        n, c, h, wd = x.shape
        self._ok(self.lib.lk_dwconv2d_forward_cuda(self._code(x), x.data_ptr(), w.data_ptr(),
                                                   b.data_ptr() if b is not None else None, y.data_ptr(),
                                                   n, c, h, wd, w.shape[-1], d, self._stream()), "forward")
        return y

    def input_grad(self, dy, w, d: int = 1):
        import torch

        dx = torch.empty_like(dy)
        n, c, h, wd = dy.shape
        self._ok(self.lib.lk_dwconv2d_input_grad_cuda(self._code(dy), dy.data_ptr(), w.data_ptr(), dx.data_ptr(),
                                                      n, c, h, wd, w.shape[-1], d, self._stream()), "input grad")
        return dx

    def weight_grad(self, x, dy, k: int, d: int = 1):
        import torch

        n, c, h, wd = x.shape
        dw = torch.empty((c, 1, k, k), dtype=x.dtype, device=x.device)
        ws = dw if x.dtype == torch.float32 else torch.empty((c, 1, k, k), dtype=torch.float32, device=x.device)
        self._ok(self.lib.lk_dwconv2d_weight_grad_cuda(self._code(x), x.data_ptr(), dy.data_ptr(), dw.data_ptr(),
                                                       ws.data_ptr(), n, c, h, wd, k, d, self._stream()),
                 "weight grad")
        return dw

    def bias_grad(self, dy):
        import torch

        n, c, h, wd = dy.shape
        db = torch.empty((c,), dtype=dy.dtype, device=dy.device)
        self._ok(self.lib.lk_dwconv2d_bias_grad_cuda(self._code(dy), dy.data_ptr(), db.data_ptr(), n, c, h, wd,
                                                     self._stream()), "bias grad")
        return db


def _rel(a, b) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12))


def check(kern: Kernels, device: str = "cuda") -> bool:
    """Forward and all gradients vs torch (fp32 reference); prints one line per case."""
    import torch
    import torch.nn.functional as F

    ok = True
    # N, C, H, W, k, dilation: the undilated grid, then dilated ones (maps smaller than the dilated
    # extent d*(k-1)+1 included, several tiles per phase, odd sizes).
    cases = [(1, 1, 7, 7, 13, 1), (3, 5, 9, 11, 3, 1), (2, 64, 16, 17, 31, 1), (3, 5, 33, 31, 31, 1),
             (2, 8, 20, 70, 63, 1), (4, 384, 32, 32, 27, 1), (1, 3, 5, 3, 27, 1),
             (2, 64, 56, 56, 7, 3), (2, 32, 7, 7, 7, 3), (3, 16, 14, 14, 3, 5), (2, 8, 75, 41, 5, 2),
             (1, 4, 9, 13, 9, 7), (2, 8, 100, 100, 13, 4)]
    for dtype, tol in (("float32", 1e-4), ("float16", 1e-2), ("bfloat16", 5e-2)):
        for n, c, h, w, k, d in cases:
            g = torch.Generator(device="cpu").manual_seed(0)
            x32 = torch.randn(n, c, h, w, generator=g)
            w32 = torch.randn(c, 1, k, k, generator=g) / k
            b32 = torch.randn(c, generator=g)
            dy32 = torch.randn(n, c, h, w, generator=g)
            td = getattr(torch, dtype)
            # the reference sees the same (rounded) inputs, computed in fp32
            xs, ws_, bs, dys = (t.to(td).to(device) for t in (x32, w32, b32, dy32))
            xr, wr, br = (t.float().clone().requires_grad_(True) for t in (xs, ws_, bs))
            yr = F.conv2d(xr, wr, br, padding=d * (k // 2), dilation=d, groups=c)
            gx, gw, gb = torch.autograd.grad(yr, (xr, wr, br), dys.float())
            errs = [_rel(kern.forward(xs, ws_, bs, d), yr), _rel(kern.input_grad(dys, ws_, d), gx),
                    _rel(kern.weight_grad(xs, dys, k, d), gw), _rel(kern.bias_grad(dys), gb)]
            good = all(e < tol for e in errs)
            ok &= good
            print(f"{dtype:8s} N={n} C={c} {h}x{w} k={k} d={d}: fwd {errs[0]:.1e} dx {errs[1]:.1e} "
                  f"dw {errs[2]:.1e} db {errs[3]:.1e} {'ok' if good else 'FAIL'}")
    return ok


def _time_ms(fn: Callable[[], object], reps: int = 10, warmup: int = 3) -> float:
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def bench(kern: Kernels, rs: Sequence[int] = TABLE1_R, ks: Sequence[int] = TABLE1_K, batch: int = 64,
          channels: int = 384, dtypes: Sequence[str] = ("float32", "float16", "bfloat16"),
          dilated: Sequence[Tuple[int, int]] = DILATED_KD) -> None:
    """Table-1 style timing: ours vs cuDNN (torch conv2d, groups=C), forward and forward+backward; then
    the dilated (k, d) pairs at the same R."""
    import torch
    import torch.nn.functional as F

    torch.backends.cudnn.benchmark = True
    print(f"{'dtype':8s} {'R':>3s} {'k':>3s} {'d':>2s} | {'cuDNN fwd':>10s} {'ours fwd':>9s} {'x':>6s} | "
          f"{'cuDNN f+b':>10s} {'ours f+b':>9s} {'x':>6s}   (ms, median, input ({batch},{channels},R,R))")
    for dtype in dtypes:
        td = getattr(torch, dtype)
        for r in rs:
            for k, d in [(k, 1) for k in ks] + list(dilated):
                x = torch.randn(batch, channels, r, r, device="cuda", dtype=td)
                w = torch.randn(channels, 1, k, k, device="cuda", dtype=td) / k
                dy = torch.randn_like(x)
                xg, wg = x.clone().requires_grad_(True), w.clone().requires_grad_(True)

                def ref_fwd():
                    with torch.no_grad():
                        return F.conv2d(x, w, padding=d * (k // 2), dilation=d, groups=channels)

                def ref_fb():
                    y = F.conv2d(xg, wg, padding=d * (k // 2), dilation=d, groups=channels)
                    return torch.autograd.grad(y, (xg, wg), dy)

                def ours_fb():
                    kern.forward(x, w, None, d)
                    return kern.input_grad(dy, w, d), kern.weight_grad(x, dy, k, d)

                t = [_time_ms(ref_fwd), _time_ms(lambda: kern.forward(x, w, None, d)), _time_ms(ref_fb),
                     _time_ms(ours_fb)]
                print(f"{dtype:8s} {r:3d} {k:3d} {d:2d} | {t[0]:10.3f} {t[1]:9.3f} {t[0] / t[1]:6.2f} | "
                      f"{t[2]:10.3f} {t[3]:9.3f} {t[2] / t[3]:6.2f}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-only", action="store_true", help="compile the library and stop (no GPU needed)")
    ap.add_argument("--check", action="store_true", help="compare with torch conv2d (fwd, dx, dw, db)")
    ap.add_argument("--bench", action="store_true", help="time vs cuDNN at Table-1 shapes")
    ap.add_argument("--archs", default=None, help="comma list of SM versions, e.g. 80,90 (default: local GPU, "
                                                  "or 80,90 with --build-only)")
    ap.add_argument("--lib", default=None, help="output path of the shared library")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="bench R=32 and k in {3, 13, 31} only")
    args = ap.parse_args(argv)
    archs: List[str]
    if args.archs:
        archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    elif args.build_only:
        archs = ["80", "90"]
    else:
        import torch

        if not torch.cuda.is_available():
            print("error: no CUDA device visible to torch (use --build-only for a compile check)", file=sys.stderr)
            return 2
        major, minor = torch.cuda.get_device_capability()
        archs = [f"{major}{minor}"]
    try:
        lib = build_library(args.lib, archs)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"built {lib} for sm_{', sm_'.join(archs)}")
    if args.build_only:
        return 0
    kern = Kernels(lib)
    ok = True
    if args.check or not args.bench:
        ok = check(kern)
    if args.bench:
        if args.quick:
            bench(kern, rs=(32,), ks=(3, 13, 31), batch=args.batch, dilated=((7, 3), (3, 5)))
        else:
            bench(kern, batch=args.batch)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
