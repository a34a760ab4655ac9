"""Checkpoint conversion (PyTorch / PaddleClas -> paddle_lk), torch-free and safe.

* :func:`convert_checkpoint`: the library behind ``tools/convert_torch.py`` (detect, map, optionally
  re-parameterize, write ``.pdparams`` atomically, verify).
* :func:`convert_state_dict`, :func:`map_shapes`, :func:`check_shapes`: key-map helpers.
* Re-exported for convenience: the safe reader/writer (:mod:`paddle_lk.io`), the key-map framework, and
  :func:`paddle_lk.load_checkpoint` / :func:`paddle_lk.detect_architecture` (the one loader and the
  detection, in :mod:`paddle_lk.checkpoint`), whose family knowledge each family module registers.
"""
from ..checkpoint import (DetectedArch, LoadReport, detect_architecture, lazy_state_shapes, load_checkpoint,
                          read_state, shapes_of)
from ..errors import CheckpointError, DetectionError, UnsafeCheckpointError, WeightMismatchError
from ..io.keymap import KEYMAPS, ConvertedState, KeyMap, Rule, get_keymap, guess_keymap
from ..io.pdparams import save_pdparams
from ..io.torch_reader import load_torch_checkpoint, read_checkpoint_file
from ..io.torch_writer import TensorView, TorchParameter, save_torch_checkpoint
from .api import (ConvertSummary, check_shapes, convert_checkpoint, convert_state_dict, load_torch_weights, map_shapes,
                  read_checkpoint)

__all__ = ["load_torch_checkpoint", "read_checkpoint", "read_checkpoint_file", "read_state", "save_torch_checkpoint",
           "TensorView", "TorchParameter", "CheckpointError", "UnsafeCheckpointError", "WeightMismatchError",
           "DetectionError", "KeyMap", "Rule", "KEYMAPS", "get_keymap", "guess_keymap", "ConvertedState",
           "convert_state_dict", "map_shapes", "check_shapes", "DetectedArch", "detect_architecture",
           "lazy_state_shapes", "LoadReport", "load_checkpoint", "load_torch_weights", "ConvertSummary",
           "convert_checkpoint", "save_pdparams", "shapes_of"]
