"""The chapter's data: the synthetic three-Gaussian set, and image + label sets from users' files.

Synthetic (section 3.4; the thesis gives the marginals, we chose the generative form): z ~ N(0, 1),
x_i = i + z + e_i with e_i ~ N(0, i - 1), so modality i has mean i and variance i (1, 2, 3), the three
are independent given z, and modality 1 is the noiseless one closest to the prior. 10,000 training
and 1,000 test samples; every draw is seeded.

MNIST / Fashion-MNIST are read from (first match wins):
1. a ``.npz`` with ``images`` (N x 28 x 28 uint8) and ``labels`` (N), given as the path or found in
   the directory by the dataset's name (``mnist*.npz``, ``fashion*.npz``);
2. the official IDX files (``train-images-idx3-ubyte`` etc., gzipped or not) in the directory, in
   ``DIR/<name>/`` or in torchvision's layout ``DIR/MNIST/raw``, ``DIR/FashionMNIST/raw``, read directly;
3. torchvision's dataset classes when torchvision is installed (never required, never downloads).
Pixels become floats in [0, 1] (not binarised); labels become one-hot vectors of 10 ("text").
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DATASETS = ("gaussian", "mnist", "fashion-mnist")
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class DataError(ValueError):
    """Data that cannot be found or read; the message says what to give instead."""


def gaussian_modalities(count: int, seed: int) -> dict[str, torch.Tensor]:
    """``count`` samples of the synthetic set: ``m1``, ``m2``, ``m3``, each ``count x 1``."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(count, 1, generator=g)
    return {f"m{i}": i + z + (i - 1) ** 0.5 * torch.randn(count, 1, generator=g) for i in (1, 2, 3)}


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (the format of the official MNIST downloads), gzipped or not."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_TYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    dims = raw[3]
    shape = struct.unpack(f">{dims}I", raw[4:4 + 4 * dims])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    body = raw[4 + 4 * dims:]
    if len(body) != expected:
        raise DataError(f"{path}: IDX header says {shape} ({expected} bytes) but {len(body)} bytes follow")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


@dataclass
class ImageLabels:
    """Images (N x 28 x 28 uint8) and labels (N); ``test_from`` marks where an official test part begins."""

    images: np.ndarray
    labels: np.ndarray
    source: str
    test_from: int | None = None


def load_npz(path: str | Path) -> ImageLabels:
    path = Path(path)
    with np.load(path) as archive:
        missing = {"images", "labels"} - set(archive.files)
        if missing:
            raise DataError(f"{path}: an archive needs arrays 'images' and 'labels' (missing {sorted(missing)})")
        images, labels = archive["images"], archive["labels"]
    return _checked(images, labels, str(path))


def _checked(images: np.ndarray, labels: np.ndarray, source: str, test_from: int | None = None) -> ImageLabels:
    if images.ndim == 2 and images.shape[1] == 784:
        images = images.reshape(-1, 28, 28)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise DataError(f"{source}: expected N x 28 x 28 images and N labels, got {images.shape} and {labels.shape}")
    if images.dtype != np.uint8:
        images = np.clip(np.rint(images * 255 if images.max() <= 1 else images), 0, 255).astype(np.uint8)
    labels = labels.astype(np.int64)
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{source}: labels must be classes 0-9")
    return ImageLabels(images, labels, source, test_from)


_IDX_NAMES = [("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_idx_folder(folder: Path) -> ImageLabels | None:
    """The official training and test IDX files in ``folder`` (the test part after the training one)."""
    parts = []
    for images_stem, labels_stem in _IDX_NAMES:
        images, labels = _idx_file(folder, images_stem), _idx_file(folder, labels_stem)
        if images and labels:
            parts.append((read_idx(images), read_idx(labels)))
    if not parts:
        return None
    test_from = len(parts[0][0]) if len(parts) == 2 else None
    return _checked(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), str(folder), test_from)


def load_image_labels(dataset: str, data_dir: str | Path | None) -> ImageLabels:
    """MNIST or Fashion-MNIST from the files the user has (see the module docstring for the order)."""
    if dataset not in ("mnist", "fashion-mnist"):
        raise DataError(f"unknown image dataset {dataset!r}; use mnist or fashion-mnist")
    if data_dir is None:
        raise DataError(f"--data-dir is needed for {dataset}: a folder with its IDX files or an .npz of images and labels")
    root = Path(data_dir)
    if root.is_file():
        return load_npz(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (give the folder that holds {dataset}'s IDX files or .npz)")
    prefix = "fashion" if dataset == "fashion-mnist" else "mnist"
    archives = sorted(root.glob(f"{prefix}*.npz"))
    if archives:
        return load_npz(archives[0])
    torchvision_dir = "FashionMNIST" if dataset == "fashion-mnist" else "MNIST"
    for folder in (root / dataset, root / torchvision_dir / "raw", root):
        found = load_idx_folder(folder) if folder.is_dir() else None
        if found:
            return found
    found = _from_torchvision(dataset, root)
    if found:
        return found
    raise DataError(f"{root}: no {prefix}*.npz and no IDX files (train-images-idx3-ubyte[.gz], ...) for {dataset}")


def _from_torchvision(dataset: str, root: Path) -> ImageLabels | None:
    try:
        from torchvision import datasets  # optional
    except ImportError:
        return None
    cls = datasets.FashionMNIST if dataset == "fashion-mnist" else datasets.MNIST
    try:
        train, test = cls(str(root), train=True, download=False), cls(str(root), train=False, download=False)
    except (RuntimeError, OSError):
        return None
    images = np.concatenate([train.data.numpy(), test.data.numpy()])
    labels = np.concatenate([train.targets.numpy(), test.targets.numpy()])
    return _checked(images, labels, f"torchvision {cls.__name__} at {root}", len(train.data))


def as_tensors(images: np.ndarray, labels: np.ndarray) -> dict[str, torch.Tensor]:
    """Images as flat floats in [0, 1], labels as one-hot floats: the ``image`` and ``text`` modalities."""
    x = torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)
    t = torch.nn.functional.one_hot(torch.from_numpy(labels.astype(np.int64)), 10).float()
    return {"image": x, "text": t}


def split(data: ImageLabels, train_size: int, test_size: int, seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A random training set of ``train_size`` (drawn with ``seed``) and a fixed test set.

    The test set is the first ``test_size`` of the official test part when there is one, else the
    first ``test_size`` of one fixed permutation (seed 0) of everything; training draws never touch it."""
    n = len(data.labels)
    if data.test_from is not None:
        test_idx = np.arange(data.test_from, min(n, data.test_from + test_size))
        pool = np.arange(data.test_from)
    else:
        order = np.random.default_rng(0).permutation(n)
        test_idx, pool = order[:test_size], order[test_size:]
    if train_size > len(pool):
        raise DataError(f"{data.source}: {train_size} training samples asked, only {len(pool)} outside the test set")
    train_idx = np.random.default_rng(seed).choice(pool, size=train_size, replace=False)
    return as_tensors(data.images[train_idx], data.labels[train_idx]), as_tensors(data.images[test_idx], data.labels[test_idx])
