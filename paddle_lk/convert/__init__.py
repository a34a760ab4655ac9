"""Checkpoint loading and conversion (PyTorch / PaddleClas -> paddle_lk), torch-free and safe.

* :func:`load_torch_checkpoint` reads ``torch.save`` files (zip and legacy formats) without torch,
  through a restricted unpickler that never executes pickled code.
* :mod:`.keymaps`: one key map per checkpoint family (RepLKNet, VAN, PaddleClas VAN, generic
  Torch incl. RefConv, Paddle) behind one framework; :func:`convert_state_dict`, :func:`map_shapes`.
* :func:`detect_architecture`: family, registered variant and full config from keys and shapes.
* :func:`load_torch_weights` / :func:`load_weights`: fill a model, report what was skipped.
* :func:`convert_checkpoint`: the library behind ``tools/convert_torch.py``.
"""
from .api import (HEAD_KEYS, ConvertSummary, LoadReport, WeightMismatchError, check_shapes, convert_checkpoint,
                  convert_state_dict, load_torch_weights, load_weights, map_shapes, read_checkpoint,
                  save_pdparams)
from .detect import DetectedArch, DetectionError, detect_architecture, lazy_state_shapes
from .keymaps import KEYMAPS, ConvertedState, KeyMap, Rule, get_keymap, guess_keymap
from .torch_reader import CheckpointError, UnsafeCheckpointError, load_torch_checkpoint, read_checkpoint_file
from .torch_writer import TensorView, TorchParameter, save_torch_checkpoint

__all__ = ["load_torch_checkpoint", "read_checkpoint", "read_checkpoint_file", "save_torch_checkpoint",
           "TensorView", "TorchParameter", "CheckpointError", "UnsafeCheckpointError", "WeightMismatchError", "DetectionError",
           "KeyMap", "Rule", "KEYMAPS", "get_keymap", "guess_keymap", "ConvertedState", "convert_state_dict",
           "map_shapes", "check_shapes", "DetectedArch", "detect_architecture", "lazy_state_shapes",
           "LoadReport", "load_torch_weights", "load_weights", "ConvertSummary", "convert_checkpoint", "save_pdparams",
           "HEAD_KEYS"]
