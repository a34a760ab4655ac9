"""CPU benchmark of the large-kernel depthwise conv op vs Paddle's F.conv2d (and torch when installed).

Shapes: RepLKNet-31B's four stages at batch 8, 224x224 input, a kernel-size sweep at [8,256,56,56], and
every depthwise conv shape that RepLKNet-31B, VAN-b2 and UniRepLKNet-S run at batch 8, 224x224 (their
small kernels, VAN's 7x7 dilation-3 conv and UniRepLKNet's dilated re-parameterization branches
included), with the ratios torch / ours and Paddle / ours (> 1: the op is faster).
For each: forward and forward+backward (input and weight gradients) median times, GFLOP/s, % of the
machine's nominal AVX2/FMA peak and of the FMA peak measured next to each row (a register-only FMA loop
run before and after the row, so machine load shows up on both sides), and the ratios. All columns come from one run, so a loaded
machine slows every column alike.

    python benchmarks/dwconv_cpu.py                 # full tables (a few minutes: Paddle's conv is slow)
    python benchmarks/dwconv_cpu.py --quick         # k in {3, 13, 31}, stage shapes
    python benchmarks/dwconv_cpu.py --ks 31 --no-stages
    python benchmarks/dwconv_cpu.py --no-stages --no-sweep --models VAN-b2   # one model's shapes

The script re-runs itself with glibc's malloc told to keep freed buffers of up to 32 MiB on the heap
(GLIBC_TUNABLES mmap_threshold/trim_threshold): by default every large tensor of every call comes from a
fresh mmap and pays a page fault per 4 KiB on first touch, which weighs most on short calls (small
kernels). It applies to every column (Paddle's conv and torch too); --default-malloc measures without it,
so two runs compare the settings.

FLOPs are 2*N*C*H*W*k^2 per pass (a multiply-add is 2); forward+backward counts three passes. These
nominal FLOPs include the taps over the zero border, which the op skips, so on maps not much larger than
the kernel the nominal GFLOP/s can pass the peak. "in-map taps" is the share of taps that land on the
map, and the "in-map" % columns count only those: the arithmetic the op really had to do.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.nn.functional as F

# Measure the paddle_lk next to this script (this checkout or worktree), not whichever is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paddle_lk.ops as ops  # noqa: E402

STAGES = [("stage1", (8, 128, 56, 56), 31), ("stage2", (8, 256, 28, 28), 29),
          ("stage3", (8, 512, 14, 14), 27), ("stage4", (8, 1024, 7, 7), 13)]
SWEEP_SHAPE = (8, 256, 56, 56)
SWEEP_KS = (3, 5, 7, 9, 13, 17, 21, 25, 27, 29, 31)


def _model_shapes() -> Dict[str, List[Tuple[str, Tuple[int, int, int, int], int, int]]]:
    """(what, [N, C, H, W], k, dilation) of every distinct depthwise conv each model runs at batch 8,
    224x224 ("same" padding, stride 1; the stride-2 3x3 convs of RepLKNet's stem and transitions stay
    native and are not listed)."""
    maps = (56, 28, 14, 7)
    rep = []
    for c, m, k in zip((128, 256, 512, 1024), maps, (31, 29, 27, 13)):
        rep += [(f"large k{k}", (8, c, m, m), k, 1), ("5x5 branch", (8, c, m, m), 5, 1)]
    van = []
    for i, (c, m) in enumerate(zip((64, 128, 320, 512), maps)):
        hidden = c * (8 if i < 2 else 4)
        van += [("LKA 5x5", (8, c, m, m), 5, 1), ("LKA 7x7 d3", (8, c, m, m), 7, 3),
                ("MLP 3x3", (8, hidden, m, m), 3, 1)]
    # UniRepLKNet-S: dims 96/192/384/768, depths 3/3/27/3; stage 1 uses 3x3, stages 2-4 13x13 (stage 3
    # alternates 13, 3, 3); a 13x13 Dilated Reparam Block trains branches (k, d) = (5,1), (7,2), (3,3),
    # (3,4), (3,5) (official unireplknet.py); deploy merges them into the 13x13 kernel.
    uni = [("3x3", (8, 96, 56, 56), 3, 1)]
    for c, m in zip((192, 384, 768), maps[1:]):
        uni.append(("13x13", (8, c, m, m), 13, 1))
        if c == 384:
            uni.append(("3x3", (8, c, m, m), 3, 1))
        uni += [(f"branch {k}x{k} d{d}", (8, c, m, m), k, d) for k, d in ((5, 1), (7, 2), (3, 3), (3, 4), (3, 5))]
    return {"RepLKNet-31B": rep, "VAN-b2": van, "UniRepLKNet-S": uni}


MODEL_SHAPES = _model_shapes()

_PEAK_SRC = r"""
#include <immintrin.h>
#include <omp.h>
/* 12 independent FMA chains (enough to cover FMA latency x 2 ports). Each chain starts from a
   different run-time value so the compiler cannot merge identical chains into one. */
__attribute__((target("avx2,fma"), noinline)) static float run(long iters, float seed) {
  __m256 a[12];
  for (int i = 0; i < 12; ++i) a[i] = _mm256_set1_ps(seed + 0.001f * i);
  const __m256 m = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(1e-4f);
  for (long it = 0; it < iters; ++it) {
#pragma GCC unroll 12
    for (int i = 0; i < 12; ++i) a[i] = _mm256_fmadd_ps(a[i], m, c);
  }
  float s = 0.f;
  for (int i = 0; i < 12; ++i) {
    float out[8];
    _mm256_storeu_ps(out, a[i]);
    s += out[i % 8];
  }
  return s;
}
/* FLOPs executed by all threads together: threads * iters * 12 FMAs * 8 lanes * 2. */
extern "C" double fma_flops(long iters, float seed) {
  double total = 0;
  float sink = 0;
#pragma omp parallel reduction(+:total) reduction(+:sink)
  {
    sink += run(iters, seed + omp_get_thread_num());
    total += (double)iters * 12 * 8 * 2;
  }
  return sink == 12345.f ? 0 : total;
}
"""


def nominal_peak_gflops() -> Tuple[float, str]:
    """cores x GHz x 32 FLOP/cycle (2 FMA units x 8 fp32 lanes x 2): the AVX2/FMA peak."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    mhz = None
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("cpu mhz"):
                    mhz = float(line.split(":")[1])
                    break
    except OSError:
        pass
    ghz = (mhz or 2500.0) / 1000.0
    return cores * ghz * 32.0, f"{cores} cores x {ghz:.2f} GHz x 32 FLOP/cycle"


class PeakMeter:
    """FMA-only loop (all threads, registers only) compiled with the system C++ compiler.

    ``measure()`` is called next to every benchmark row, so the "% of measured peak" columns compare
    against what the CPU delivers to this process at that moment of a shared machine.
    """

    def __init__(self, seconds: float = 0.3) -> None:
        self.fn = None
        tmp = tempfile.mkdtemp(prefix="lk_peak_")
        src, lib = os.path.join(tmp, "peak.cc"), os.path.join(tmp, "peak.so")
        with open(src, "w") as fh:
            fh.write(_PEAK_SRC)
        cxx = os.environ.get("CXX", "g++")
        try:
            proc = subprocess.run([cxx, "-O2", "-fopenmp", "-shared", "-fPIC", src, "-o", lib],
                                  capture_output=True)
            if proc.returncode != 0:
                return
            self.fn = ctypes.CDLL(lib).fma_flops  # stays mapped after the files are removed
        except OSError:
            return
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.fn.restype, self.fn.argtypes = ctypes.c_double, [ctypes.c_long, ctypes.c_float]
        self.iters = 1_000_000
        while True:  # calibrate one run to about `seconds`
            t0 = time.perf_counter()
            self.fn(self.iters, 0.1)
            if time.perf_counter() - t0 > seconds / 4:
                break
            self.iters *= 4

    def measure(self) -> Optional[float]:
        """Best of two runs, GFLOP/s; None when the loop could not be built."""
        if self.fn is None:
            return None
        best = 0.0
        for _ in range(2):
            t0 = time.perf_counter()
            flops = self.fn(self.iters, 0.1)
            best = max(best, flops / (time.perf_counter() - t0) / 1e9)
        return best


STATS = {"median": statistics.median, "min": min}


def time_median(fn: Callable[[], object], reps: int, budget_s: float, warmup: int = 3,
                cheap_s: float = 1.0, stat: str = "median") -> float:
    """Median (or ``stat="min"``: fastest) seconds of up to ``reps`` runs, stopping early past ``budget_s``.

    Untimed warm-up first: ``warmup`` calls when a call takes under ``cheap_s`` (the heap grows over the
    first calls of a new shape, and those page faults are not the steady state), one call otherwise
    (F.conv2d with a large kernel takes seconds to minutes per call)."""
    t0 = time.perf_counter()
    fn()
    if time.perf_counter() - t0 < cheap_s:
        for _ in range(warmup - 1):
            fn()
    times: List[float] = []
    start = time.perf_counter()
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s:
            break
    return STATS[stat](times)


def _paddle_cases(x: paddle.Tensor, w: paddle.Tensor, k: int, d: int = 1) -> Dict[str, Callable[[], object]]:
    c = x.shape[1]
    dy = paddle.randn(x.shape)
    pad = d * (k // 2)

    def native_fwd():
        with paddle.no_grad():
            return F.conv2d(x, w, padding=pad, dilation=d, groups=c)

    def ours_fwd():
        with paddle.no_grad():
            return ops.depthwise_conv2d_lk(x, w, dilation=d)

    def native_fb():
        xg, wg = x.detach(), w.detach()
        xg.stop_gradient = wg.stop_gradient = False
        y = F.conv2d(xg, wg, padding=pad, dilation=d, groups=c)
        return paddle.grad([y], [xg, wg], [dy])

    def ours_fb():
        xg, wg = x.detach(), w.detach()
        xg.stop_gradient = wg.stop_gradient = False
        y = ops.depthwise_conv2d_lk(xg, wg, dilation=d)
        return paddle.grad([y], [xg, wg], [dy])

    return {"paddle_fwd": native_fwd, "ours_fwd": ours_fwd, "paddle_fb": native_fb, "ours_fb": ours_fb}


def _torch_cases(x: np.ndarray, w: np.ndarray, k: int, d: int = 1) -> Optional[Dict[str, Callable[[], object]]]:
    try:
        import torch
        import torch.nn.functional as TF
    except ImportError:
        return None
    tx, tw = torch.from_numpy(x), torch.from_numpy(w)
    tdy = torch.randn(tx.shape)
    c = x.shape[1]

    def fwd():
        with torch.no_grad():
            return TF.conv2d(tx, tw, padding=d * (k // 2), dilation=d, groups=c)

    def fb():
        xg, wg = tx.clone().requires_grad_(True), tw.clone().requires_grad_(True)
        y = TF.conv2d(xg, wg, padding=d * (k // 2), dilation=d, groups=c)
        return torch.autograd.grad(y, (xg, wg), tdy)

    return {"torch_fwd": fwd, "torch_fb": fb}


def in_map_taps(h: int, w: int, k: int, d: int = 1) -> int:
    """Kernel taps that land on the map, summed over all outputs of a "same" conv with dilation ``d`` (the
    rest multiply the zero border: counted in the nominal FLOPs, skipped by the op)."""
    p = k // 2

    def line(n: int) -> int:
        return sum(1 for i in range(n) for t in range(-p, p + 1) if 0 <= i + d * t < n)

    return line(h) * line(w)


def bench_shape(shape: Sequence[int], k: int, reps: int, baseline_reps: int, budget_s: float,
                with_torch: bool, meter: Optional[PeakMeter], d: int = 1, with_paddle: bool = True,
                stat: str = "median") -> Dict[str, float]:
    n, c, h, w = shape
    rng = np.random.RandomState(0)
    xn = rng.standard_normal(shape).astype("float32")
    wn = (rng.standard_normal((c, 1, k, k)) / k).astype("float32")
    x, wt = paddle.to_tensor(xn), paddle.to_tensor(wn)
    cases = _paddle_cases(x, wt, k, d)
    # Correctness guard: a fast wrong kernel must not make a nice table.
    got = cases["ours_fwd"]().numpy()
    with paddle.no_grad():
        ref = F.conv2d(x[:1], wt, padding=d * (k // 2), dilation=d, groups=c).numpy()
    err = float(np.abs(got[:1] - ref).max() / np.abs(ref).max())
    if err > 1e-4:
        raise SystemExit(f"op output differs from F.conv2d at {list(shape)} k={k} d={d}: rel {err:.2e}")
    res: Dict[str, float] = {"flops": 2.0 * n * c * h * w * k * k,
                             "in_map": in_map_taps(h, w, k, d) / float(h * w * k * k)}
    # The op's timings are bracketed by two peak measurements (what the CPU gives us right then).
    peaks = [meter.measure() if meter else None]
    for name in ("ours_fwd", "ours_fb"):
        res[name] = time_median(cases[name], reps, budget_s, stat=stat)
    peaks.append(meter.measure() if meter else None)
    if None not in peaks:
        res["measured_peak"] = statistics.mean(peaks)
    for name in ("paddle_fwd", "paddle_fb") if with_paddle else ():
        res[name] = time_median(cases[name], baseline_reps, budget_s, stat=stat)
    tcases = _torch_cases(xn, wn, k, d) if with_torch else None
    for name, fn in (tcases or {}).items():
        res[name] = time_median(fn, baseline_reps, budget_s, stat=stat)
    return res


def _fmt_row(label: str, r: Dict[str, float], peak: float, has_torch: bool) -> str:
    f1, f3 = r["flops"], 3 * r["flops"]
    g_fwd, g_fb = f1 / r["ours_fwd"] / 1e9, f3 / r["ours_fb"] / 1e9
    cols = [label,
            f"{r['ours_fwd'] * 1e3:.1f}", f"{r['paddle_fwd'] * 1e3:.0f}", f"{r['paddle_fwd'] / r['ours_fwd']:.1f}x",
            f"{r['ours_fb'] * 1e3:.1f}", f"{r['paddle_fb'] * 1e3:.0f}", f"{r['paddle_fb'] / r['ours_fb']:.1f}x"]
    if has_torch:
        cols += [f"{r['torch_fwd'] / r['ours_fwd']:.1f}x", f"{r['torch_fb'] / r['ours_fb']:.1f}x"]
    cols += [f"{g_fwd:.1f}", f"{g_fb:.1f}", f"{100 * g_fwd / peak:.0f}%", f"{100 * g_fb / peak:.0f}%"]
    frac = r["in_map"]
    cols += [f"{100 * frac:.0f}%", f"{100 * g_fwd * frac / peak:.0f}%", f"{100 * g_fb * frac / peak:.0f}%"]
    mpeak = r.get("measured_peak")
    if mpeak:
        cols += [f"{mpeak:.0f}", f"{100 * g_fwd / mpeak:.0f}%", f"{100 * g_fb / mpeak:.0f}%"]
    return "| " + " | ".join(cols) + " |"


def _header(first: str, has_torch: bool, mpeak: Optional[float]) -> str:
    cols = [first, "ours fwd ms", "Paddle fwd ms", "fwd speed-up", "ours f+b ms", "Paddle f+b ms", "f+b speed-up"]
    if has_torch:
        cols += ["vs torch fwd", "vs torch f+b"]
    cols += ["fwd GFLOP/s", "f+b GFLOP/s", "fwd % peak", "f+b % peak",
             "in-map taps", "fwd % peak, in-map", "f+b % peak, in-map"]
    if mpeak:
        cols += ["meas. peak GFLOP/s", "fwd % meas.", "f+b % meas."]
    return "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)


def _model_header(has_torch: bool, with_paddle: bool) -> str:
    cols = ["model", "conv", "shape", "k", "d", "ours fwd ms", "ours f+b ms"]
    if has_torch:
        cols += ["torch fwd ms", "torch f+b ms", "torch / ours fwd", "torch / ours f+b"]
    if with_paddle:
        cols += ["Paddle fwd ms", "Paddle f+b ms", "Paddle / ours fwd", "Paddle / ours f+b"]
    return "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols)


def _model_row(model: str, what: str, shape: Sequence[int], k: int, d: int, r: Dict[str, float]) -> str:
    cols = [model, what, str(list(shape)), str(k), str(d), f"{r['ours_fwd'] * 1e3:.2f}", f"{r['ours_fb'] * 1e3:.2f}"]
    if "torch_fwd" in r:
        cols += [f"{r['torch_fwd'] * 1e3:.2f}", f"{r['torch_fb'] * 1e3:.2f}",
                 f"{r['torch_fwd'] / r['ours_fwd']:.2f}x", f"{r['torch_fb'] / r['ours_fb']:.2f}x"]
    if "paddle_fwd" in r:
        cols += [f"{r['paddle_fwd'] * 1e3:.1f}", f"{r['paddle_fb'] * 1e3:.1f}",
                 f"{r['paddle_fwd'] / r['ours_fwd']:.1f}x", f"{r['paddle_fb'] / r['ours_fb']:.1f}x"]
    return "| " + " | ".join(cols) + " |"


# Freed buffers up to 32 MiB (glibc's ceiling for mmap_threshold) stay on the heap for reuse.
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296"


def _reexec_with_malloc_reuse(argv: Sequence[str]) -> None:
    """Restart this script under MALLOC_TUNABLES (glibc reads them only at process start)."""
    if "--default-malloc" in argv or "GLIBC_TUNABLES" in os.environ or not sys.platform.startswith("linux"):
        return
    env = dict(os.environ, GLIBC_TUNABLES=MALLOC_TUNABLES)
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *argv], env)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", default=",".join(map(str, SWEEP_KS)), help="kernel sizes of the sweep")
    ap.add_argument("--no-stages", action="store_true", help="skip the RepLKNet-31B stage shapes")
    ap.add_argument("--no-sweep", action="store_true", help="skip the kernel-size sweep")
    ap.add_argument("--models", default=",".join(MODEL_SHAPES),
                    help=f"models whose depthwise shapes to time ('' for none; from {', '.join(MODEL_SHAPES)})")
    ap.add_argument("--no-paddle-models", action="store_true",
                    help="model-shape table without Paddle's F.conv2d columns (they take minutes)")
    ap.add_argument("--quick", action="store_true", help="sweep k in {3, 13, 31} only")
    ap.add_argument("--reps", type=int, default=5, help="timed runs of the op (see --stat)")
    ap.add_argument("--baseline-reps", type=int, default=3, help="timed runs of F.conv2d / torch (see --stat)")
    ap.add_argument("--budget", type=float, default=20.0, help="stop repeating a case after this many seconds")
    ap.add_argument("--stat", choices=sorted(STATS), default="median",
                    help="statistic of the timed runs (every column alike); 'min' resists other jobs on a shared "
                         "machine, which stall multi-threaded sub-millisecond calls for whole scheduler slices")
    ap.add_argument("--peak-gflops", type=float, default=None, help="override the nominal FMA peak")
    ap.add_argument("--json", default=None, help="also write the raw results here")
    ap.add_argument("--default-malloc", action="store_true",
                    help="do not restart under MALLOC_TUNABLES (measure with glibc's default malloc)")
    args = ap.parse_args(argv)
    try:
        ks = [int(k) for k in ("3,13,31" if args.quick else args.ks).split(",") if k.strip()]
    except ValueError:
        print(f"error: --ks must be a comma list of odd integers, got {args.ks!r}", file=sys.stderr)
        return 2
    if any(k % 2 == 0 or not 3 <= k <= 63 for k in ks):
        print(f"error: kernel sizes must be odd in 3..63, got {ks}", file=sys.stderr)
        return 2
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in MODEL_SHAPES]
    if unknown:
        print(f"error: unknown model(s) {unknown}; choose from {', '.join(MODEL_SHAPES)}", file=sys.stderr)
        return 2
    paddle.set_device("cpu")
    try:
        ops.load_op()
    except ops.OpBuildError as exc:
        print(f"error: the op cannot be built: {exc}", file=sys.stderr)
        return 2
    try:
        import torch  # noqa: F401

        has_torch = True
        torch_note = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        has_torch = False
        torch_note = "torch not installed: torch columns skipped"
    peak, peak_note = (args.peak_gflops, "given") if args.peak_gflops else nominal_peak_gflops()
    meter = PeakMeter()
    mpeak = meter.measure()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# dwconv CPU benchmark  paddle {paddle.__version__}, {torch_note}")
    print(f"# nominal FMA peak {peak:.0f} GFLOP/s ({peak_note}); FMA peak measured at start: "
          f"{mpeak:.0f} GFLOP/s, and per row (mean of before/after)" if mpeak
          else f"# nominal FMA peak {peak:.0f} GFLOP/s; measured peak: n/a (no C++ compiler)")
    print(f"# OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, load average {load:.2f}; "
          f"op reps {args.reps}, baseline reps {args.baseline_reps} ({args.stat})")
    print(f"# GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', 'unset (default malloc)')}, for every column")
    results = {"peak": peak, "measured_peak": mpeak, "stages": {}, "sweep": {}, "models": {}}
    if not args.no_stages:
        print("\n## RepLKNet-31B stages, batch 8, 224x224\n")
        print(_header("stage (shape, k)", has_torch, mpeak))
        for name, shape, k in STAGES:
            r = bench_shape(shape, k, args.reps, args.baseline_reps, args.budget, has_torch, meter, stat=args.stat)
            results["stages"][name] = r
            print(_fmt_row(f"{name} {list(shape)} k{k}", r, peak, has_torch), flush=True)
    if not args.no_sweep:
        print(f"\n## kernel-size sweep at {list(SWEEP_SHAPE)}\n")
        print(_header("k", has_torch, mpeak))
        for k in ks:
            r = bench_shape(SWEEP_SHAPE, k, args.reps, args.baseline_reps, args.budget, has_torch, meter,
                            stat=args.stat)
            results["sweep"][k] = r
            print(_fmt_row(str(k), r, peak, has_torch), flush=True)
    if models:
        with_paddle = not args.no_paddle_models
        print("\n## Depthwise conv shapes of the models, batch 8, 224x224 (ratios > 1: the op is faster)\n")
        print(_model_header(has_torch, with_paddle))
        for model in models:
            rows = results["models"].setdefault(model, [])
            for what, shape, k, d in MODEL_SHAPES[model]:
                r = bench_shape(shape, k, args.reps, args.baseline_reps, args.budget, has_torch, None, d=d,
                                with_paddle=with_paddle, stat=args.stat)
                rows.append(dict(r, conv=what, shape=list(shape), k=k, d=d))
                print(_model_row(model, what, shape, k, d, r), flush=True)
    if args.json:
        from paddle_lk.utils import atomic_path

        with atomic_path(args.json) as tmp, open(tmp, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    _reexec_with_malloc_reuse(sys.argv[1:])
    sys.exit(main())
