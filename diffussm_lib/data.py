"""Image data without torchvision: MNIST (and CIFAR-10) files, verified; 1- and 3-channel datasets.

A *data root* holds one folder per dataset (``<root>/mnist``, ``<root>/cifar10``): the ``root=``
argument, else ``$DIFFUSSM_DATA_DIR``, else ``$XDG_CACHE_HOME/diffussm`` (``~/.cache/diffussm``).
Missing files are downloaded from public mirrors; every file is verified by the md5 of its
*decompressed* bytes (``.gz`` and raw copies both work) before use, and a corrupt or truncated file
raises ``DataError`` naming it. ``load_mnist`` returns images uint8 (N, 28, 28) and labels int64
(N,); ``ImageDataset`` yields x float32 (C, H, W) in [-1, 1] (optionally padded with the background
value -1 to ``pad_to`` x ``pad_to``) and y int64 ().
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import os
import struct
import tarfile
import urllib.error
import urllib.request
import zlib
from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .atomic import atomic_write_bytes

DATA_ENV_VAR = "DIFFUSSM_DATA_DIR"


class DataError(RuntimeError):
    """A dataset file is missing, unreachable, corrupt or malformed. The message names it."""


# ---- Where data lives
def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` argument > ``$DIFFUSSM_DATA_DIR`` > the user's cache directory."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(DATA_ENV_VAR):
        return Path(os.environ[DATA_ENV_VAR]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "diffussm"


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _download(urls: Sequence[str], dest: Path, check) -> None:
    """Try each URL in turn; ``check(raw_bytes)`` must pass before the bytes are written (atomically),
    so a failed or corrupt download never leaves a file behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=60) as r:
                raw = r.read()
            check(raw)
        except (urllib.error.URLError, http.client.HTTPException, OSError, DataError, ValueError) as e:
            errors.append(f"{url}: {type(e).__name__}: {e}")   # down, an error page, a cut connection, bad bytes
            continue
        atomic_write_bytes(dest, raw)
        return
    raise DataError("download failed for " + dest.name + ":\n  " + "\n  ".join(errors))


# ---- MNIST
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# md5 of the decompressed IDX files: the well-known MNIST checksums.
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
MNIST_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}


def _decompressed(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt or truncated gzip file ({e}); delete it to re-download") from e
    return raw


def _verified_idx_bytes(folder: Path, name: str, download: bool) -> bytes:
    """The decompressed bytes of IDX file ``name`` from ``folder`` (``name`` or ``name.gz``),
    downloading it if missing, and only after its md5 matches."""
    expected = MNIST_MD5[name]
    candidates = [folder / name, folder / (name + ".gz")]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        if not download:
            raise DataError(_missing_message(folder, name, "download=False"))
        def check(gz: bytes):
            try:
                raw = gzip.decompress(gz)
            except (OSError, EOFError, zlib.error) as e:
                raise DataError(f"not a complete gzip file ({type(e).__name__}: {e})") from None
            if md5_of(raw) != expected:
                raise DataError("md5 mismatch")
        try:
            _download([m + name + ".gz" for m in MNIST_MIRRORS], folder / (name + ".gz"), check)
        except (DataError, OSError) as e:
            raise DataError(_missing_message(folder, name, f"the download failed ({e})")) from e
        path = folder / (name + ".gz")
    return _cached_verified(str(path), path.stat().st_mtime_ns, path.stat().st_size, expected)


@lru_cache(maxsize=8)
def _cached_verified(path: str, mtime_ns: int, size: int, expected: str) -> bytes:
    raw = _decompressed(Path(path))
    got = md5_of(raw)
    if got != expected:
        raise DataError(f"{path}: md5 of the decompressed bytes is {got}, expected {expected}: "
                        "the file is corrupt or truncated and was not used; delete it to re-download")
    return raw


def _missing_message(folder: Path, name: str, why: str) -> str:
    msg = (f"MNIST file '{name}' (or '{name}.gz') not found in {folder}, and {why}. "
           f"Put the four MNIST IDX files there, or set {DATA_ENV_VAR} to a data root whose "
           f"'mnist' folder holds them (or pass root=...).")
    if any((folder.parent / n).is_file() for n in (name, name + ".gz")):
        msg += (f" Note: {folder.parent} itself holds the MNIST files; {DATA_ENV_VAR} names the data"
                f" root, so set it to {folder.parent.parent} instead.")
    return msg


def parse_idx(raw: bytes) -> np.ndarray:
    """Parse an IDX file (the MNIST format): big-endian magic, dims, then uint8 data."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError("not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"IDX payload has {data.size} bytes, header says {dims}")
    return data.reshape(dims)


def load_mnist(split: str = "train", root: str | os.PathLike | None = None,
               download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST ``split`` ("train" or "test") as (images uint8 (N, 28, 28), labels int64 (N,))."""
    if split not in MNIST_SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    img_name, lbl_name, n = MNIST_SPLITS[split]
    folder = data_root(root) / "mnist"
    images = parse_idx(_verified_idx_bytes(folder, img_name, download))
    labels = parse_idx(_verified_idx_bytes(folder, lbl_name, download))
    if images.shape != (n, 28, 28) or labels.shape != (n,):
        raise DataError(f"MNIST {split}: unexpected shapes {images.shape}, {labels.shape}")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


# ---- CIFAR-10 (binary version: no pickle is ever loaded)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"  # of the .tar.gz archive
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def parse_cifar10_binary(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch (records of 1 label byte + 3072 pixel bytes, R, G, B planes) ->
    images uint8 (N, 32, 32, 3), labels int64 (N,)."""
    rec = 1 + 3 * 32 * 32
    if len(raw) % rec:
        raise DataError(f"CIFAR-10 batch of {len(raw)} bytes is not a whole number of {rec}-byte records")
    arr = np.frombuffer(raw, dtype=np.uint8).reshape(-1, rec)
    images = arr[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), arr[:, 0].astype(np.int64)


def load_cifar10(split: str = "train", root: str | os.PathLike | None = None,
                 download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 ``split`` as (images uint8 (N, 32, 32, 3), labels int64 (N,))."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    archive = data_root(root) / "cifar10" / "cifar-10-binary.tar.gz"
    if not archive.is_file():
        if not download:
            raise DataError(f"CIFAR-10 archive not found at {archive}; set {DATA_ENV_VAR} or pass root=...")
        def check(raw: bytes):
            if md5_of(raw) != CIFAR10_MD5:
                raise DataError("md5 mismatch")
        try:
            _download([CIFAR10_URL], archive, check)
        except DataError as e:
            raise DataError(f"CIFAR-10 not found at {archive} and {e}. Set {DATA_ENV_VAR} to a data "
                            "root whose 'cifar10' folder holds cifar-10-binary.tar.gz.") from e
    raw = archive.read_bytes()
    if md5_of(raw) != CIFAR10_MD5:
        raise DataError(f"{archive}: md5 mismatch, the archive is corrupt and was not used; delete it")
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    imgs, lbls = [], []
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        for n in names:
            i, l = parse_cifar10_binary(tar.extractfile(members[n]).read())
            imgs.append(i)
            lbls.append(l)
    return torch.from_numpy(np.concatenate(imgs)), torch.from_numpy(np.concatenate(lbls))


# ---- Any image folder (one sub-folder per class), 1 or 3 channels
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def load_image_folder(path: str | os.PathLike, channels: int = 3) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images from ``path/<class>/<image>``: (images uint8 (N, H, W, C), labels int64 (N,), class
    names sorted). All images must share one size. ``channels`` is 1 (grey) or 3 (RGB)."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise DataError(f"{root}: expected one sub-folder per class, found none")
    mode = {1: "L", 3: "RGB"}[channels]
    imgs, labels, files = [], [], []
    for ci, c in enumerate(classes):
        for f in sorted((root / c).iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                try:
                    with Image.open(f) as im:
                        imgs.append(np.asarray(im.convert(mode)))   # any mode (RGBA, P, L, ...) -> L / RGB
                except (OSError, ValueError, Image.DecompressionBombError) as e:
                    raise DataError(f"{f}: not a readable image ({type(e).__name__}: {e}); remove or replace it") from None
                labels.append(ci)
                files.append(f)
    if not imgs:
        raise DataError(f"{root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in its class folders")
    sizes = {a.shape[:2] for a in imgs}
    if len(sizes) > 1:
        first = {}
        for a, f in zip(imgs, files):
            first.setdefault(a.shape[:2], f)
        examples = "; ".join(f"{h}x{w}: {f}" for (h, w), f in sorted(first.items())[:3])
        raise DataError(f"{root}: images have different sizes (height x width, e.g. {examples}); resize them "
                        "to one size first")
    arr = np.stack(imgs)
    if channels == 1:
        arr = arr[..., None]
    return torch.from_numpy(arr), torch.tensor(labels, dtype=torch.int64), classes


# ---- Scaling and the dataset
def to_model_range(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1] (same shape)."""
    return images_uint8.float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], clipping (same shape)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def pad_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Pad (..., H, W) centrally to (..., size, size) with the background value -1.
    MNIST 28 -> 32 adds 2 pixels each side: the digit is unchanged (not resized)."""
    h, w = x.shape[-2:]
    if h > size or w > size:
        raise ValueError(f"cannot pad images of size {h}x{w} to {size}x{size}")
    top, left = (size - h) // 2, (size - w) // 2
    return torch.nn.functional.pad(x, (left, size - w - left, top, size - h - top), value=-1.0)


class ImageDataset(Dataset):
    """Labelled images for diffusion training: images uint8 (N, H, W) or (N, H, W, C), C in {1, 3};
    labels int (N,). Item i: (x float32 (C, H', W') in [-1, 1], y int64 ()), H' = W' = ``pad_to`` if
    given. Converted once, up front (MNIST: 60000x1x32x32 floats, 250 MB): iterating costs nothing."""

    def __init__(self, images, labels, pad_to: Optional[int] = None):
        images = torch.as_tensor(np.asarray(images))
        labels = torch.as_tensor(np.asarray(labels)).long()
        if images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8, got {images.dtype}")
        if images.dim() == 3:
            images = images[..., None]
        if images.dim() != 4 or images.shape[-1] not in (1, 3):
            raise ValueError(f"images must have shape (N, H, W) or (N, H, W, C) with C in {{1, 3}}, got {tuple(images.shape)}")
        if labels.shape != images.shape[:1]:
            raise ValueError(f"labels shape {tuple(labels.shape)} does not match {images.shape[0]} images")
        x = to_model_range(images.permute(0, 3, 1, 2))
        self.x = pad_images(x, pad_to) if pad_to else x
        self.y = labels

    @property
    def channels(self) -> int:
        return self.x.shape[1]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def mnist_dataset(split: str = "train", pad_to: Optional[int] = 32, root=None) -> ImageDataset:
    """MNIST as an ``ImageDataset``: x (1, 32, 32) in [-1, 1] by default (``pad_to=None``: 28x28)."""
    images, labels = load_mnist(split, root)
    return ImageDataset(images, labels, pad_to=pad_to)


def dataset_from_config(cfg, split: str = "train") -> ImageDataset:
    """The dataset a ``DataConfig`` describes (``cfg.name`` in mnist, cifar10, folder)."""
    if cfg.name == "mnist":
        return mnist_dataset(split, pad_to=cfg.pad_to, root=cfg.path)
    if cfg.name == "cifar10":
        images, labels = load_cifar10(split, root=cfg.path)
        return ImageDataset(images, labels, pad_to=cfg.pad_to)
    if cfg.path is None:
        raise DataError("data.path is required when data.name is 'folder'")
    images, labels, _ = load_image_folder(cfg.path)
    return ImageDataset(images, labels, pad_to=cfg.pad_to)
