"""Whole-model CPU speed: the deploy paths a user chooses between, and the op vs Paddle's native conv.

Three tables, all from one process, on the same weights and inputs:

* ``deploy``: RepLKNet-31B / VAN-b2 / UniRepLKNet-S in deploy form (re-parameterized, BN fused), batch ``--deploy-batch``
  at 224x224, seconds per batch for each way to run it on CPU:

  - Paddle Inference + oneDNN, native export (``tools/export.py`` default: no custom op),
  - Paddle Inference + oneDNN, exported ``--with-custom-op`` (the op runs inside the oneDNN program),
  - Paddle Inference with the op and oneDNN off (what ``create_predictor`` did before the op read oneDNN's
    layouts),
  - dygraph with the op,
  - the official PyTorch model, eager, deploy form (``--torch-replknet PATH/replknet.py`` from
    DingXiaoH/RepLKNet-pytorch, ``--torch-van PATH/van.py`` from Visual-Attention-Network/VAN-Classification;
    random weights, same input shape; needs torch and timm importable, else the row says why it is skipped).
    This repository contains no torch code: the file is the user's copy of the official one.

  Every Paddle row's output is compared with dygraph native ("check": max |diff| / max |ref|), and the
  last column is the official torch time divided by the row's time (> 1: faster than torch).
* ``inference``: dygraph images/s with the op vs ``F.conv2d`` (batch 1 and 8).
* ``train``: one training step (forward, backward, SGD update) of the train form, op vs native.

UniRepLKNet-S: one 13x13 or 3x3 depthwise conv per block in deploy form (all on the op); the train form adds
the dilated 3x3-7x7 branches (on the op too); most of its FLOPs are pointwise Linears.

    OMP_NUM_THREADS=2 python benchmarks/model_speed.py --torch-replknet ~/RepLKNet-pytorch/replknet.py \\
        --torch-van ~/VAN-Classification/models/van.py
    python benchmarks/model_speed.py --sections deploy --models RepLKNet31B

Paddle Inference predictors use ``OMP_NUM_THREADS`` CPU math threads (default 1 in Paddle Inference, which
would not be a fair comparison). Native dygraph timings use one timed run (seconds to minutes each on 2
cores); the other paths the median of ``--reps`` runs after a warm-up.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle

# Measure the paddle_lk next to this script (this checkout or worktree), not whichever is installed.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paddle_lk  # noqa: E402
import paddle_lk.ops as ops  # noqa: E402

SECTIONS = ("deploy", "inference", "train")


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


def _threads() -> int:
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return os.cpu_count() or 1


def _rel(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / max(np.abs(ref).max(), 1e-12))


# ---------------------------------------------------------------------------------------------------
# Deploy paths
# ---------------------------------------------------------------------------------------------------
def _predictor(prefix: str, onednn: bool):
    from paddle import inference

    config = inference.Config(prefix + ".json", prefix + ".pdiparams")
    config.disable_glog_info()
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(_threads())
    if onednn:
        config.enable_mkldnn()
    else:
        config.disable_mkldnn()
    predictor = ops.create_predictor(config)

    def run(x: np.ndarray) -> np.ndarray:
        handle = predictor.get_input_handle(predictor.get_input_names()[0])
        handle.reshape(list(x.shape))
        handle.copy_from_cpu(x)
        predictor.run()
        return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()

    return run


def load_official(path: Optional[str], kind: str) -> Tuple[Optional[Callable[[], object]], str]:
    """(factory of the official torch model in deploy form, note). The factory is None, with the reason in
    the note, when no path is given or the file / torch / timm cannot be imported."""
    if not path:
        return None, f"no --torch-{kind} path given"
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        return None, f"{path} not found"
    try:
        import torch  # noqa: F401
    except ImportError:
        return None, "torch not importable"
    name = f"_official_{kind}"
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # timm's register_model looks the module up
        spec.loader.exec_module(module)
    except Exception as exc:  # e.g. timm missing: the official files import it
        return None, f"importing {path} failed: {type(exc).__name__}: {exc}"
    if kind == "replknet":
        factory = getattr(module, "create_RepLKNet31B", None)

        def build():
            return factory(num_classes=1000, use_checkpoint=False, small_kernel_merged=True)
    else:
        factory = getattr(module, "van_b2", None)

        def build():
            return factory(pretrained=False)
    if factory is None:
        return None, f"{path} has no {'create_RepLKNet31B' if kind == 'replknet' else 'van_b2'}"
    return build, f"official {os.path.basename(path)}, torch eager, deploy form, {_threads()} threads"


def _torch_time(build: Callable[[], object], batch: int, reps: int) -> float:
    import torch

    torch.set_num_threads(_threads())
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(batch, 3, 224, 224)

    def run():
        with torch.no_grad():
            return model(x)

    return _timed(run, reps, warmup=True)


def bench_deploy(name: str, batch: int, reps: int, official: Tuple[Optional[Callable[[], object]], str],
                 with_native: bool) -> List[str]:
    model = _build(name, deploy=True)
    model.eval()
    x = np.random.RandomState(0).standard_normal([batch, 3, 224, 224]).astype("float32")
    xt = paddle.to_tensor(x)
    spec = [paddle.static.InputSpec([None, 3, 224, 224], "float32", "x")]
    res: Dict[str, Tuple[float, Optional[np.ndarray]]] = {}
    with paddle.no_grad(), ops.op_path("native"):
        ref = model(xt).numpy()
    with tempfile.TemporaryDirectory(prefix="lk_deploy_") as tmp:
        for mode in ("native", "custom"):
            with ops.op_path(mode):
                paddle.jit.save(model, os.path.join(tmp, mode, "inference"), input_spec=spec)
        for label, mode, onednn in (("Paddle Inference + oneDNN, native export", "native", True),
                                    ("Paddle Inference + oneDNN, with the op", "custom", True),
                                    ("Paddle Inference, with the op, oneDNN off", "custom", False)):
            run = _predictor(os.path.join(tmp, mode, "inference"), onednn)
            out = run(x)
            res[label] = (_timed(lambda: run(x), reps, warmup=True), out)

    def dygraph(mode: str) -> Callable[[], paddle.Tensor]:
        def run():
            with paddle.no_grad(), ops.op_path(mode):
                return model(xt)
        return run

    res["dygraph, with the op"] = (_timed(dygraph("custom"), reps, warmup=True), dygraph("custom")().numpy())
    if with_native:
        res["dygraph, native conv"] = (_timed(dygraph("native"), 1, warmup=False), ref)
    build, note = official
    t_torch = None
    if build is not None:
        t_torch = _torch_time(build, batch, reps)
        res[f"PyTorch official ({note})"] = (t_torch, None)
    rows = []
    for label, (t, out) in res.items():
        check = f"{_rel(out, ref):.1e}" if out is not None else "n/a (own random weights)"
        vs = f"{t_torch / t:.1f}x" if t_torch else "n/a"
        rows.append(f"| {name} | {label} | b{batch} | {t:.3f} s | {batch / t:.2f} img/s | {vs} | {check} |")
        print(rows[-1], flush=True)
    if build is None:
        print(f"| {name} | PyTorch official: skipped ({note}) | b{batch} | | | | |", flush=True)
    return rows


# ---------------------------------------------------------------------------------------------------
# Dygraph: op vs native
# ---------------------------------------------------------------------------------------------------
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
        diff = _rel(outs["custom"], outs["native"])
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
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    ap.add_argument("--batches", default="1,8", help="dygraph inference batch sizes")
    ap.add_argument("--deploy-batch", type=int, default=8)
    ap.add_argument("--train-batch", type=int, default=2)
    ap.add_argument("--no-train", action="store_true", help="same as leaving 'train' out of --sections")
    ap.add_argument("--deploy-native", action="store_true",
                    help="also time dygraph with the native conv in the deploy table (slow)")
    ap.add_argument("--torch-replknet", default=None, metavar="PATH",
                    help="the official RepLKNet-pytorch replknet.py (timed in the deploy table)")
    ap.add_argument("--torch-van", default=None, metavar="PATH",
                    help="the official VAN-Classification models/van.py (timed in the deploy table)")
    ap.add_argument("--reps", type=int, default=3, help="timed runs of the fast paths (median)")
    args = ap.parse_args(argv)
    try:
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        print(f"error: --batches must be a comma list of integers, got {args.batches!r}", file=sys.stderr)
        return 2
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        print(f"error: unknown section(s) {bad}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    if args.no_train and "train" in sections:
        sections.remove("train")
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
    if "deploy" in sections:
        print(f"\n## Deploy paths, batch {args.deploy_batch}, 224x224 (last-but-one column: official torch time / "
              f"this path's time)\n")
        print("| model | path | batch | time per batch | throughput | vs official torch | check |\n"
              "|---|---|---|---|---|---|---|")
        for name in models:
            kind = next(k for k in ("unireplknet", "replknet", "van") if name.lower().startswith(k))
            paths = {"replknet": args.torch_replknet, "van": args.torch_van}
            official = load_official(paths[kind], kind) if kind in paths else \
                (None, "no official torch model wired for this family")
            bench_deploy(name, args.deploy_batch, args.reps, official, args.deploy_native)
    if "inference" in sections or "train" in sections:
        print("\n## Dygraph, the op vs F.conv2d\n")
        print("| model | case | with op | native | speed-up | check |\n|---|---|---|---|---|---|")
        for name in models:
            if "inference" in sections:
                bench_inference(name, batches, args.reps)
            if "train" in sections:
                bench_train_step(name, args.train_batch, args.reps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
