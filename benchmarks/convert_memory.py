"""Peak memory of converting a full-size (random-weight) PyTorch checkpoint with tools/convert_torch.py.

    python benchmarks/convert_memory.py --arch RepLKNet31B [--workdir /tmp/lk_mem]

Writes a torch-zip checkpoint of the variant with random weights (torch-free writer), then runs
the converter in fresh subprocesses and reports each one's peak resident memory
(VmHWM) next to its resident memory right after importing paddle_lk and the checkpoint size.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))


_PROBE = """
import json, runpy, sys
def status():
    return {l.split(':')[0]: int(l.split()[1]) / 1024 for l in open('/proc/self/status')
            if l.startswith(('VmRSS', 'VmHWM'))}
import paddle_lk.convert
base = status()['VmRSS']
sys.argv = ['convert_torch.py'] + json.loads(sys.argv[1])
try:
    runpy.run_path(TOOL, run_name='__main__')
except SystemExit as e:
    if e.code:
        raise
print('MEM', json.dumps(dict(base=base, peak=status()['VmHWM'])))
"""


def _measure(tool: str, args) -> tuple:
    """(RSS after importing paddle_lk, peak RSS, seconds) of one conversion in a fresh process.

    Measured inside the process (VmHWM): a child's ``ru_maxrss`` would also count helper
    processes Paddle spawns at import time."""
    import json

    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", _PROBE.replace("TOOL", repr(tool)), json.dumps(args)], cwd=ROOT,
                          capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("MEM ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"failed: {args}\n{proc.stderr[-2000:]}")
    mem = json.loads(lines[-1][4:])
    return mem["base"], mem["peak"], time.time() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="RepLKNet31B")
    parser.add_argument("--workdir", default="/tmp/paddle_lk_convert_memory")
    parser.add_argument("--skip-reparam", action="store_true")
    args = parser.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    src = os.path.join(args.workdir, f"{args.arch}_random.pth")
    if not os.path.exists(src):
        import paddle_lk
        from convert_helpers import to_torch_names
        from paddle_lk.convert import save_torch_checkpoint

        model = paddle_lk.create_model(args.arch)
        save_torch_checkpoint(to_torch_names(model), src)
        del model
    size = os.path.getsize(src) / 2 ** 20
    tool = os.path.join(ROOT, "tools", "convert_torch.py")
    runs = {"convert": ["--src", src, "--dst", os.path.join(args.workdir, "out.pdparams")]}
    if not args.skip_reparam:
        runs["convert --reparam"] = ["--src", src, "--dst", os.path.join(args.workdir, "deploy.pdparams"), "--reparam"]
    print(f"{args.arch}: checkpoint {size:.0f} MiB ({src})")
    for name, cmd in runs.items():
        base, peak, secs = _measure(tool, cmd)
        print(f"{name:18s} RSS after import {base:5.0f} MiB, peak {peak:5.0f} MiB: conversion adds "
              f"{peak - base:5.0f} MiB = {(peak - base) / size:.2f}x the checkpoint ({secs:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
