"""Small shared helpers."""
from .io import atomic_path, atomic_save

__all__ = ["atomic_path", "atomic_save"]
