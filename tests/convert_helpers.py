"""Helpers for the converter tests: Paddle -> PyTorch naming and tiny checkpoint builders."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import zipfile
from typing import Dict, List, Sequence

import numpy as np
import paddle.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


def to_torch_names(model: nn.Layer) -> Dict[str, np.ndarray]:
    """The state dict PyTorch would save for this model: BN statistics renamed, a step counter per
    BN, Linear weights transposed to [out, in]."""
    linear = {f"{name}.weight" for name, layer in model.named_sublayers() if isinstance(layer, nn.Linear)}
    out: Dict[str, np.ndarray] = {}
    for key, value in model.state_dict().items():
        arr = value.numpy()
        if key in linear:
            arr = np.ascontiguousarray(arr.T)
        if key.endswith("._mean"):
            key = key[: -len("._mean")] + ".running_mean"
        elif key.endswith("._variance"):
            key = key[: -len("._variance")] + ".running_var"
            out[key] = arr
            out[key[: -len(".running_var")] + ".num_batches_tracked"] = np.array(7, dtype=np.int64)
            continue
        out[key] = arr
    return out


class _Evil:
    """Pickles to a call of ``os.system`` (what a malicious checkpoint does)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_pickle(marker: str, protocol: int = 2) -> bytes:
    """A state-dict-looking pickle whose unpickling would create ``marker`` via ``os.system``."""
    return pickle.dumps({"weight": _Evil(marker)}, protocol=protocol)


def write_zip_with_pickle(path: str, data_pkl: bytes) -> None:
    """A torch-zip-format file whose data.pkl is ``data_pkl``."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")


def run_cli(args: Sequence[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``tools/convert_torch.py`` in a subprocess (exit code and stderr are what users see)."""
    return subprocess.run([PY, os.path.join(ROOT, "tools", "convert_torch.py"), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def stderr_lines(proc: subprocess.CompletedProcess) -> List[str]:
    """stderr without the warnings Paddle prints on import."""
    return [ln for ln in proc.stderr.splitlines()
            if ln.startswith("convert_torch:") or "Error" in ln or "Traceback" in ln]


def load_convert_cli():
    """``tools/convert_torch.py`` as a module (its ``main`` is what users run)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("convert_torch", os.path.join(ROOT, "tools", "convert_torch.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
