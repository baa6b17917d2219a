"""MNIST loader (verification, errors), 1/3-channel datasets, CIFAR-10 binary parsing."""

import gzip
import shutil
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

from diffussm_lib import data as D

SHARED_MNIST = D.data_root() / "mnist"
needs_mnist = pytest.mark.skipif(
    not (SHARED_MNIST / "t10k-labels-idx1-ubyte.gz").exists()
    and not (SHARED_MNIST / "t10k-labels-idx1-ubyte").exists(),
    reason="MNIST files not available",
)


@needs_mnist
def test_mnist_counts_shapes_labels():
    for split, n in [("train", 60000), ("test", 10000)]:
        x, y = D.load_mnist(split)
        assert x.shape == (n, 28, 28) and x.dtype == torch.uint8
        assert y.shape == (n,) and y.dtype == torch.int64
        assert int(y.min()) == 0 and int(y.max()) == 9
        assert (
            set(torch.bincount(y).tolist()) and torch.bincount(y).min() > n // 20
        )  # every class present
    ds = D.mnist_dataset("test")
    x0, y0 = ds[0]
    assert x0.shape == (1, 32, 32) and x0.dtype == torch.float32
    assert float(ds.x.min()) == -1.0 and float(ds.x.max()) == 1.0
    assert torch.all(ds.x[:, :, :2, :] == -1) and torch.all(
        ds.x[:, :, :, -2:] == -1
    )  # padded border is background
    assert D.mnist_dataset("test", pad_to=None)[0][0].shape == (1, 28, 28)


def _copy_mnist(tmp_path):
    dst = tmp_path / "mnist"
    dst.mkdir()
    for f in SHARED_MNIST.iterdir():
        if f.name.endswith(".gz"):
            shutil.copy(f, dst / f.name)
    return dst


@needs_mnist
def test_corrupted_copy_is_rejected(tmp_path):
    dst = _copy_mnist(tmp_path)
    raw = bytearray(gzip.decompress((dst / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # one wrong label: still a valid IDX file, wrong md5
    (dst / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(D.DataError, match="t10k-labels-idx1-ubyte.*md5"):
        D.load_mnist("test", root=tmp_path, download=False)


@needs_mnist
def test_truncated_file_is_rejected(tmp_path):
    dst = _copy_mnist(tmp_path)
    f = dst / "t10k-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:5000])
    with pytest.raises(D.DataError, match="t10k-images-idx3-ubyte.gz.*(corrupt|truncated)"):
        D.load_mnist("test", root=tmp_path, download=False)


@needs_mnist
def test_uncompressed_files_are_accepted(tmp_path):
    dst = tmp_path / "mnist"
    dst.mkdir()
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (dst / name).write_bytes(gzip.decompress((SHARED_MNIST / (name + ".gz")).read_bytes()))
    x, y = D.load_mnist("test", root=tmp_path, download=False)
    assert x.shape == (10000, 28, 28)


def _no_network(monkeypatch):
    def offline(url, *a, **k):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)


def test_offline_error_names_the_variable(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    monkeypatch.delenv("DIFFUSSM_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(D.DataError) as e:
        D.load_mnist("test")
    msg = str(e.value)
    assert "DIFFUSSM_DATA_DIR" in msg and str(tmp_path / "diffussm" / "mnist") in msg
    assert not list((tmp_path / "diffussm" / "mnist").glob("*"))  # nothing half-written left behind


def test_root_pointing_at_dataset_folder_gets_a_hint(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"x")
    with pytest.raises(D.DataError, match="set it to"):
        D.load_mnist("test", root=tmp_path)


class _Response:
    def __init__(self, body):
        self.body = body

    def read(self):
        return self.body

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


@needs_mnist
def test_download_is_verified_then_saved(tmp_path, monkeypatch):
    served = []

    def fake_urlopen(url, timeout=None):
        name = url.rsplit("/", 1)[1]
        served.append(url)
        return _Response((SHARED_MNIST / name).read_bytes())

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    x, y = D.load_mnist("test", root=tmp_path)
    assert x.shape == (10000, 28, 28) and len(served) == 2
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]


@needs_mnist
def test_corrupt_download_is_never_saved(tmp_path, monkeypatch):
    bad = gzip.compress(b"\x00\x00\x08\x01" + b"\x00\x00\x27\x10" + bytes(10000))
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: _Response(bad))
    with pytest.raises(D.DataError, match="md5 mismatch"):
        D.load_mnist("test", root=tmp_path)
    assert not list((tmp_path / "mnist").glob("*"))


def test_three_channel_arrays_and_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(6, 16, 16, 3), dtype=np.uint8)
    labels = np.array([0, 1, 0, 1, 2, 2])
    ds = D.ImageDataset(imgs, labels, pad_to=20)
    x, y = ds[1]
    assert ds.channels == 3 and x.shape == (3, 20, 20) and int(y) == 1
    # the central 16x16 is the original image, rescaled to [-1, 1], channel-first
    assert torch.allclose(
        x[:, 2:18, 2:18], torch.from_numpy(imgs[1]).permute(2, 0, 1).float() / 127.5 - 1
    )
    for i, (im, lab) in enumerate(zip(imgs, labels)):
        d = tmp_path / "folder" / f"class{lab}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(d / f"{i}.png")
    fi, fl, classes = D.load_image_folder(tmp_path / "folder")
    assert classes == ["class0", "class1", "class2"] and fi.shape == (6, 16, 16, 3)
    assert sorted(fl.tolist()) == sorted(labels.tolist())
    with pytest.raises(ValueError, match=r"\(N, H, W\) or \(N, H, W, C\)"):
        D.ImageDataset(np.zeros((2, 4, 4, 2), np.uint8), [0, 1])


def test_cifar10_binary_records():
    rng = np.random.default_rng(1)
    labels = np.array([3, 7], np.uint8)
    planes = rng.integers(0, 256, size=(2, 3, 32, 32), dtype=np.uint8)
    raw = b"".join(bytes([l]) + p.tobytes() for l, p in zip(labels, planes))
    imgs, lbls = D.parse_cifar10_binary(raw)
    assert imgs.shape == (2, 32, 32, 3) and lbls.tolist() == [3, 7]
    assert np.array_equal(imgs[1, :, :, 2], planes[1, 2])
    with pytest.raises(D.DataError, match="records"):
        D.parse_cifar10_binary(raw[:-1])
