"""File formats, without any model knowledge: atomic writes, the torch-free safe checkpoint reader and
writer, ``.pdparams`` writing, and the key-map framework that renames checkpoint keys."""
from .atomic import atomic_path, atomic_save
from .keymap import (GENERIC_KEYMAPS, KEYMAPS, ConvertedState, KeyMap, Rule, get_keymap, guess_keymap, prepare_keys,
                     register_keymap)
from .pdparams import save_pdparams, write_pdparams
from .torch_reader import load_torch_checkpoint, read_checkpoint_file, read_torch_file, unwrap_state_dict
from .torch_writer import TensorView, TorchParameter, save_torch_checkpoint

__all__ = ["atomic_path", "atomic_save", "KeyMap", "Rule", "KEYMAPS", "GENERIC_KEYMAPS", "ConvertedState",
           "get_keymap", "guess_keymap", "prepare_keys", "register_keymap", "save_pdparams", "write_pdparams",
           "load_torch_checkpoint", "read_checkpoint_file", "read_torch_file", "unwrap_state_dict",
           "TensorView", "TorchParameter", "save_torch_checkpoint"]
