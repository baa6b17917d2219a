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
from .errors import UserError

DATA_ENV_VAR = "DIFFUSSM_DATA_DIR"


class DataError(UserError, RuntimeError):
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
        except (
            urllib.error.URLError,
            http.client.HTTPException,
            OSError,
            DataError,
            ValueError,
        ) as e:
            errors.append(
                f"{url}: {type(e).__name__}: {e}"
            )  # down, an error page, a cut connection, bad bytes
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
            raise DataError(
                f"{path}: corrupt or truncated gzip file ({e}); delete it to re-download"
            ) from e
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
        raise DataError(
            f"{path}: md5 of the decompressed bytes is {got}, expected {expected}: "
            "the file is corrupt or truncated and was not used; delete it to re-download"
        )
    return raw


def _missing_message(folder: Path, name: str, why: str) -> str:
    msg = (
        f"MNIST file '{name}' (or '{name}.gz') not found in {folder}, and {why}. "
        f"Put the four MNIST IDX files there, or set {DATA_ENV_VAR} to a data root whose "
        f"'mnist' folder holds them (or pass root=...)."
    )
    if any((folder.parent / n).is_file() for n in (name, name + ".gz")):
        msg += (
            f" Note: {folder.parent} itself holds the MNIST files; {DATA_ENV_VAR} names the data"
            f" root, so set it to {folder.parent.parent} instead."
        )
    return msg


def parse_idx(raw: bytes) -> np.ndarray:
    """Parse an IDX file (the MNIST format): big-endian magic, dims, then uint8 data."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError("not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"IDX payload has {data.size} bytes, header says {dims}")
    return data.reshape(dims)


def load_mnist(
    split: str = "train", root: str | os.PathLike | None = None, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST ``split`` ("train" or "test") as (images uint8 (N, 28, 28), labels int64 (N,))."""
    if split not in MNIST_SPLITS:
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
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
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def parse_cifar10_binary(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch (records of 1 label byte + 3072 pixel bytes, R, G, B planes) ->
    images uint8 (N, 32, 32, 3), labels int64 (N,)."""
    rec = 1 + 3 * 32 * 32
    if len(raw) % rec:
        raise DataError(
            f"CIFAR-10 batch of {len(raw)} bytes is not a whole number of {rec}-byte records"
        )
    arr = np.frombuffer(raw, dtype=np.uint8).reshape(-1, rec)
    images = arr[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), arr[:, 0].astype(np.int64)


def load_cifar10(
    split: str = "train", root: str | os.PathLike | None = None, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10 ``split`` as (images uint8 (N, 32, 32, 3), labels int64 (N,))."""
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    archive = data_root(root) / "cifar10" / "cifar-10-binary.tar.gz"
    if not archive.is_file():
        if not download:
            raise DataError(
                f"CIFAR-10 archive not found at {archive}; set {DATA_ENV_VAR} or pass root=..."
            )

        def check(raw: bytes):
            if md5_of(raw) != CIFAR10_MD5:
                raise DataError("md5 mismatch")

        try:
            _download([CIFAR10_URL], archive, check)
        except DataError as e:
            raise DataError(
                f"CIFAR-10 not found at {archive} and {e}. Set {DATA_ENV_VAR} to a data "
                "root whose 'cifar10' folder holds cifar-10-binary.tar.gz."
            ) from e
    raw = archive.read_bytes()
    if md5_of(raw) != CIFAR10_MD5:
        raise DataError(
            f"{archive}: md5 mismatch, the archive is corrupt and was not used; delete it"
        )
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
IMAGE_MODES = {1: "L", 3: "RGB"}  # channels -> the PIL mode every image is converted to


def image_folder_classes(path: str | os.PathLike) -> list[str]:
    """The class names of the image folder ``path``: its sub-folders, sorted (hidden ones, such as the
    ``.diffussm`` cache, are not classes). Raises ``DataError`` when ``path`` is missing, a file, or
    has no class folders."""
    root = Path(path).expanduser()
    if root.is_file():
        raise DataError(
            f"data.path {root} is a file; it must be a folder with one sub-folder of images per class"
        )
    if not root.is_dir():
        raise DataError(
            f"image folder not found: {root} (data.path; a relative data.path is read from the "
            "config file's folder)"
        )
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(
            f"{root}: expected one sub-folder per class ({root}/<class>/<image>), found none"
        )
    return classes


def load_image_folder(
    path: str | os.PathLike, channels: int = 3
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images from ``path/<class>/<image>``: (images uint8 (N, H, W, C), labels int64 (N,), class
    names sorted; class i is the i-th name). All images must share one size. ``channels`` is 1 (grey)
    or 3 (RGB): every image, whatever its mode (RGBA, P, L, ...), is converted to it."""
    if channels not in IMAGE_MODES:
        raise DataError(
            f"image folders load as 1 (grey) or 3 (RGB) channels, not {channels} (model.in_channels)"
        )
    root = Path(path).expanduser()
    classes = image_folder_classes(root)
    imgs, labels, files = [], [], []
    for ci, c in enumerate(classes):
        found = [
            f
            for f in sorted((root / c).iterdir())
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not found:
            raise DataError(
                f"{root / c}: class folder '{c}' holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                "add images or remove the folder"
            )
        for f in found:
            try:
                with Image.open(f) as im:
                    imgs.append(np.asarray(im.convert(IMAGE_MODES[channels])))
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                raise DataError(
                    f"{f}: not a readable image ({type(e).__name__}: {e}); remove or replace it"
                ) from None
            labels.append(ci)
            files.append(f)
    sizes = {a.shape[:2] for a in imgs}
    if len(sizes) > 1:
        first = {}
        for a, f in zip(imgs, files):
            first.setdefault(a.shape[:2], f)
        examples = "; ".join(f"{h}x{w}: {f}" for (h, w), f in sorted(first.items())[:3])
        raise DataError(
            f"{root}: images have different sizes (height x width, e.g. {examples}); resize them "
            "to one size first"
        )
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
        raise DataError(f"cannot pad images of size {h}x{w} to {size}x{size} (data.pad_to)")
    top, left = (size - h) // 2, (size - w) // 2
    return torch.nn.functional.pad(x, (left, size - w - left, top, size - h - top), value=-1.0)


class ImageDataset(Dataset):
    """Labelled images for diffusion training: images uint8 (N, H, W) or (N, H, W, C), C in {1, 3};
    labels int (N,). Item i: (x float32 (C, H', W') in [-1, 1], y int64 ()), H' = W' = ``pad_to`` if
    given. Converted once, up front (MNIST: 60000x1x32x32 floats, 250 MB): iterating costs nothing.
    ``classes``: the class names (label i is ``classes[i]``), where known (image folders)."""

    def __init__(
        self, images, labels, pad_to: Optional[int] = None, classes: Optional[Sequence[str]] = None
    ):
        images = torch.as_tensor(np.asarray(images))
        labels = torch.as_tensor(np.asarray(labels)).long()
        if images.dtype != torch.uint8:
            raise DataError(f"images must be uint8, got {images.dtype}")
        if images.dim() == 3:
            images = images[..., None]
        if images.dim() != 4 or images.shape[-1] not in (1, 3):
            raise DataError(
                f"images must have shape (N, H, W) or (N, H, W, C) with C in {{1, 3}}, "
                f"got {tuple(images.shape)}"
            )
        if labels.shape != images.shape[:1]:
            raise DataError(
                f"labels shape {tuple(labels.shape)} does not match {images.shape[0]} images"
            )
        x = to_model_range(images.permute(0, 3, 1, 2))
        self.x = pad_images(x, pad_to) if pad_to else x
        self.y = labels
        self.classes = list(classes) if classes is not None else None

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


KNOWN_CLASSES = {"mnist": 10, "cifar10": 10}
KNOWN_CHANNELS = {"mnist": 1, "cifar10": 3}


def dataset_from_config(
    cfg, split: str = "train", *, channels: Optional[int] = None, num_classes: Optional[int] = None
) -> ImageDataset:
    """The dataset a ``DataConfig`` describes (``cfg.name`` in mnist, cifar10, folder), checked against
    the model that will learn it (what the trainer passes: ``model.in_channels``, ``model.num_classes``):

    * ``channels``: an image folder is read with this many channels (1 grey, 3 RGB; default 3), any
      image mode converted; MNIST (1) and CIFAR-10 (3) must match it.
    * ``num_classes``: the number of classes (class folders; 10 for MNIST and CIFAR-10) must equal it,
      or it is 0 (an unconditional model: labels are never used). A wrong count would train classes
      that do not exist, or give a real class the null-class index that guidance relies on.

    Every mismatch raises ``DataError`` naming both numbers and the config key that fixes it. A folder
    dataset has one split: ``split`` is ignored."""
    if cfg.name in KNOWN_CLASSES:
        want_c, k = KNOWN_CHANNELS[cfg.name], KNOWN_CLASSES[cfg.name]
        if channels is not None and channels != want_c:
            raise DataError(
                f"{cfg.name} images have {want_c} channel{'s' if want_c > 1 else ''} but model.in_channels "
                f"is {channels}: set model.in_channels: {want_c}"
            )
        _check_class_count(k, num_classes, f"data.name {cfg.name} has {k} classes")
        if cfg.name == "mnist":
            return mnist_dataset(split, pad_to=cfg.pad_to, root=cfg.path)
        images, labels = load_cifar10(split, root=cfg.path)
        return ImageDataset(images, labels, pad_to=cfg.pad_to, classes=CIFAR10_CLASSES)
    if cfg.path is None:
        raise DataError("data.path is required when data.name is 'folder'")
    classes = image_folder_classes(cfg.path)
    shown = ", ".join(classes[:8]) + (
        f", ... ({len(classes) - 8} more)" if len(classes) > 8 else ""
    )
    _check_class_count(
        len(classes),
        num_classes,
        f"{cfg.path} has {len(classes)} class folder{'s' if len(classes) > 1 else ''} ({shown})",
    )
    images, labels, classes = load_image_folder(
        cfg.path, channels=3 if channels is None else channels
    )
    return ImageDataset(images, labels, pad_to=cfg.pad_to, classes=classes)


def _check_class_count(found: int, num_classes: Optional[int], what: str) -> None:
    """``num_classes`` (model.num_classes) must be ``found`` or 0 (unconditional)."""
    if num_classes is not None and num_classes not in (0, found):
        raise DataError(
            f"{what} but model.num_classes is {num_classes}: set model.num_classes: {found} "
            "(or 0 for an unconditional model)"
        )
