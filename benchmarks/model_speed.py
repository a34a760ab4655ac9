"""Whole-model CPU speed with the large-kernel op vs Paddle's native depthwise conv.

RepLKNet-31B in deploy form (large + small kernels merged, BN fused): inference images/s at 224x224,
batch 1 and 8; RepLKNet-31B train form: one training step (forward, backward, SGD update). VAN-b2
likewise (its 5x5 depthwise convs use the op, the 7x7 dilation-3 ones cannot and stay native).
UniRepLKNet-S likewise (deploy form: one 13x13 or 3x3 depthwise conv per block, all on the op; train form:
also the dilated 3x3-7x7 branches, on the op where it takes dilation; most FLOPs are pointwise Linears).
Both paths run in the same process, on the same weights and inputs, and the outputs are compared.

    OMP_NUM_THREADS=2 python benchmarks/model_speed.py                 # all (minutes: native is slow)
    python benchmarks/model_speed.py --models RepLKNet31B --batches 1 --no-train

Native timings use a single timed run (each takes seconds to minutes on 2 cores); the op path uses
the median of ``--reps`` runs after a warm-up.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import paddle

import paddle_lk
import paddle_lk.ops as ops


def _timed(fn: Callable[[], object], reps: int, warmup: bool) -> float:
    if warmup:
        fn()
    times = []
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _build(name: str, deploy: bool) -> paddle.nn.Layer:
    paddle.seed(0)
    model = paddle_lk.create_model(name, num_classes=1000)
    if deploy:
        model.eval()
        model = paddle_lk.reparameterize(model, fuse_bn=True)
    return model


def bench_inference(name: str, batches: Sequence[int], reps: int) -> List[str]:
    model = _build(name, deploy=True)
    model.eval()
    rows = []
    for b in batches:
        x = paddle.randn([b, 3, 224, 224])
        res: Dict[str, float] = {}
        outs = {}
        for mode in ("custom", "native"):
            def run():
                with paddle.no_grad(), ops.op_path(mode):
                    return model(x)
            outs[mode] = run().numpy()
            res[mode] = _timed(run, reps if mode == "custom" else 1, warmup=False)
        diff = float(np.abs(outs["custom"] - outs["native"]).max() / np.abs(outs["native"]).max())
        rows.append(f"| {name} deploy | inference b{b} | {b / res['custom']:.2f} img/s | {b / res['native']:.3f} img/s "
                    f"| {res['native'] / res['custom']:.1f}x | {diff:.1e} |")
        print(rows[-1], flush=True)
    return rows


def bench_train_step(name: str, batch: int, reps: int) -> List[str]:
    model = _build(name, deploy=False)
    model.train()
    x = paddle.randn([batch, 3, 224, 224])
    y = paddle.randint(0, 1000, [batch])
    opt = paddle.optimizer.SGD(learning_rate=0.0, parameters=model.parameters())  # lr 0: weights unchanged
    res: Dict[str, float] = {}
    losses = {}
    for mode in ("custom", "native"):
        def step():
            paddle.seed(0)  # same DropPath masks on both paths, so the losses are comparable
            with ops.op_path(mode):
                loss = paddle.nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                opt.clear_grad()
            return float(loss)
        losses[mode] = step()
        res[mode] = _timed(step, reps if mode == "custom" else 1, warmup=False)
    row = (f"| {name} train | train step b{batch} | {res['custom']:.2f} s | {res['native']:.2f} s "
           f"| {res['native'] / res['custom']:.1f}x | loss {losses['custom']:.4f} vs {losses['native']:.4f} |")
    print(row, flush=True)
    return [row]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="RepLKNet31B,VAN_b2,UniRepLKNet_S")
    ap.add_argument("--batches", default="1,8", help="inference batch sizes")
    ap.add_argument("--train-batch", type=int, default=2)
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--reps", type=int, default=3, help="timed runs of the op path (median)")
    args = ap.parse_args(argv)
    try:
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        print(f"error: --batches must be a comma list of integers, got {args.batches!r}", file=sys.stderr)
        return 2
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in paddle_lk.list_models()]
    if unknown:
        print(f"error: unknown model(s) {unknown}; see paddle_lk.list_models()", file=sys.stderr)
        return 2
    paddle.set_device("cpu")
    try:
        ops.load_op()
    except ops.OpBuildError as exc:
        print(f"error: the op cannot be built: {exc}", file=sys.stderr)
        return 2
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# model speed, CPU, paddle {paddle.__version__}, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, load average {load:.2f}")
    print("| model | case | with op | native | speed-up | check |\n|---|---|---|---|---|---|")
    for name in models:
        bench_inference(name, batches, args.reps)
        if not args.no_train:
            bench_train_step(name, args.train_batch, args.reps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
