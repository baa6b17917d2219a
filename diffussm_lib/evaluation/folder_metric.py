"""A metric beyond MNIST: FD-classifier, built the way FID-LeNet is, for a dataset of your own images.

FID-LeNet rests on a classifier of MNIST digits; a folder of your own images has none, so
``diffussm evaluate`` trains one on the dataset itself, once:

* the images are split, per class and seeded, into a *reference* half and a *held-out* half
  (``split_halves``);
* ``FolderNet`` (two 3x3 convolutions of 16 and 32 channels, 64-d features, any C, H, W) is trained
  on the reference half; its accuracy on the held-out half is printed and stored with it;
* FD-classifier: the Fréchet distance (``fid.frechet_distance``) between the samples' features and the
  reference half's;
* the real-vs-real floor: the same distance for held-out images (unseen by the classifier, like
  samples), min(N, held-out count) of them: FID falls with N, so compare a model with the floor at
  the same N where the folder is large enough;
* class accuracy of conditional samples and the histogram deviation, from its predictions.

The classifier is cached (``classifier-<key>.safetensors`` + ``.json`` card, written atomically, no
pickle) under a key that hashes the dataset's pixels, labels and class names with the training
settings: a changed folder trains a new one. Its place is ``<data.path>/.diffussm/`` (hidden folders
are never classes), else the run's folder when the data folder cannot be written.

The numbers are comparable only within one dataset and one classifier (the same cache): not across
datasets, and not with FID-LeNet or the Inception FID of papers.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import atomic_write, atomic_write_text
from ..data import DataError, ImageDataset
from .fid import FeatureStats, class_accuracy, frechet_distance, histogram_deviation
from .lenet import classify, train_classifier
from .report import FolderReport

CACHE_DIR_NAME = ".diffussm"
CLASSIFIER_VERSION = (
    1  # part of the cache key: a change of the recipe below trains a new classifier
)
FEATURE_DIM = 64
SPLIT_SEED = 0  # the reference / held-out split (fixed: the classifier is trained on one half)
TRAIN_STEPS = 400  # at least this many updates (and 5 epochs), whatever the folder's size
TRAIN = dict(batch_size=64, lr=2e-3, seed=0)
LOW_ACCURACY = 0.9  # below this held-out accuracy, a note says what the distance is worth


class FolderNet(nn.Module):
    """x (B, C, H, W) in [-1, 1] -> logits (B, K); ``features(x)`` -> (B, 64) (post-ReLU). Any H, W."""

    def __init__(self, in_channels: int, num_classes: int, feature_dim: int = FEATURE_DIM):
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, 16, 3, padding=1
        )  # (B, 16, H, W) -> pool (B, 16, H/2, W/2)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)  # (B, 32, H/2, W/2) -> pool (B, 32, 4, 4)
        self.fc1 = nn.Linear(32 * 4 * 4, feature_dim)
        self.drop = nn.Dropout(0.3)
        self.fc2 = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(F.relu(self.conv1(x)), 2, ceil_mode=True)
        h = F.adaptive_avg_pool2d(F.relu(self.conv2(h)), 4)
        return F.relu(self.fc1(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.features(x)))


def _as_input(x: torch.Tensor) -> torch.Tensor:
    return x.float()


def split_halves(labels: torch.Tensor, seed: int = SPLIT_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (reference, held-out) of labels (N,): each class's images in a seeded order, the first
    ceil(n_c / 2) to the reference half, the rest held out."""
    g = torch.Generator().manual_seed(seed)
    ref, held = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = (len(idx) + 1) // 2
        ref.append(idx[:k])
        held.append(idx[k:])
    return torch.cat(ref).sort().values, torch.cat(held).sort().values


def dataset_key(dataset: ImageDataset) -> str:
    """sha256 of the dataset's pixels (as the model sees them), labels, class names and the recipe."""
    h = hashlib.sha256()
    recipe = {
        "version": CLASSIFIER_VERSION,
        "feature_dim": FEATURE_DIM,
        "split_seed": SPLIT_SEED,
        "steps": TRAIN_STEPS,
        **TRAIN,
        "shape": list(dataset.x.shape),
        "classes": dataset.classes,
    }
    h.update(json.dumps(recipe, sort_keys=True).encode())
    h.update(dataset.x.contiguous().numpy().tobytes())
    h.update(dataset.y.contiguous().numpy().tobytes())
    return h.hexdigest()


def default_cache_dir(
    data_path: str | os.PathLike, fallback: Optional[str | os.PathLike] = None
) -> Path:
    """``<data_path>/.diffussm`` when it can be written, else ``fallback`` (e.g. the run's ``.diffussm``)."""
    beside = Path(data_path) / CACHE_DIR_NAME
    writable = os.access(beside if beside.is_dir() else beside.parent, os.W_OK)
    return beside if writable or fallback is None else Path(fallback)


@dataclass
class DatasetClassifier:
    """A ``FolderNet`` trained on the reference half of ``dataset``, with its card and cache path."""

    model: FolderNet
    card: dict
    path: Path


def num_classes_of(dataset: ImageDataset) -> int:
    return len(dataset.classes) if dataset.classes is not None else int(dataset.y.max()) + 1


def dataset_classifier(
    dataset: ImageDataset, cache_dir: str | os.PathLike, log: Callable[[str], None] = print
) -> DatasetClassifier:
    """The classifier of ``dataset`` from ``cache_dir`` when its key matches, else trained (on the
    reference half; held-out accuracy measured) and cached there. Says which through ``log``."""
    key = dataset_key(dataset)
    path = Path(cache_dir) / f"classifier-{key[:16]}.safetensors"
    card_path = path.with_suffix(".json")
    channels, k = dataset.x.shape[1], num_classes_of(dataset)
    if path.is_file() and card_path.is_file():
        try:
            card = json.loads(card_path.read_text())
            if card.get("key") == key:
                model = FolderNet(channels, k)
                model.load_state_dict(load_file(str(path)))
                log(
                    f"classifier: {path} (cached; held-out accuracy {card['heldout_accuracy']:.4f} on "
                    f"{card['n_heldout']} images)"
                )
                return DatasetClassifier(model.eval(), card, path)
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:
            log(f"classifier cache {path} unreadable ({type(e).__name__}: {e}); training a new one")
    ref, held = split_halves(dataset.y)
    if len(ref) < 2 or len(held) < 2:
        raise DataError(
            f"FD-classifier needs at least 2 reference and 2 held-out images; the "
            f"dataset has {len(dataset)}"
        )
    per_epoch = len(ref) // min(TRAIN["batch_size"], len(ref))
    epochs = max(5, math.ceil(TRAIN_STEPS / per_epoch))
    log(
        f"classifier: training on the {len(ref)} reference images of {k} classes ({epochs} epochs), "
        f"once for this dataset"
    )
    model = train_classifier(
        lambda: FolderNet(channels, k),
        dataset.x[ref],
        dataset.y[ref],
        epochs=epochs,
        shift=max(1, dataset.x.shape[-1] // 16),
        log=lambda m: None,
        **TRAIN,
    )
    _, pred = classify(model, dataset.x[held], prepare=_as_input)
    acc = class_accuracy(pred, dataset.y[held])
    card = {
        "key": key,
        "classes": dataset.classes,
        "channels": channels,
        "image_size": list(dataset.x.shape[2:]),
        "n_reference": len(ref),
        "n_heldout": len(held),
        "heldout_accuracy": round(acc, 4),
        "epochs": epochs,
        **TRAIN,
        "feature_dim": FEATURE_DIM,
        "version": CLASSIFIER_VERSION,
        "torch": torch.__version__,
    }
    state = {n: t.contiguous() for n, t in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, tmp))
    atomic_write_text(card_path, json.dumps(card, indent=2) + "\n")
    log(f"classifier: held-out accuracy {acc:.4f} on {len(held)} images; cached in {path}")
    if acc < LOW_ACCURACY:
        log(
            f"note: a held-out accuracy below {LOW_ACCURACY:.0%} means the classifier's features miss much of what "
            "tells the classes apart, and so does its distance; more images per class help"
        )
    return DatasetClassifier(model, card, path)


def evaluate_folder_images(
    images: torch.Tensor,
    labels: Optional[torch.Tensor],
    dataset: ImageDataset,
    classifier: DatasetClassifier,
    *,
    floor: bool = True,
    seed: int = 0,
) -> FolderReport:
    """images (N, C, H, W) in [-1, 1], the dataset's own shape; labels (N,) the classes asked for, or
    None. FD-classifier against the reference half, its floor, class accuracy, histogram deviation."""
    if images.dim() != 4 or tuple(images.shape[1:]) != tuple(dataset.x.shape[1:]):
        raise ValueError(
            f"samples of shape {tuple(images.shape)} do not match the dataset's images "
            f"{tuple(dataset.x.shape[1:])} (C, H, W)"
        )
    if labels is not None and labels.shape != images.shape[:1]:
        raise ValueError(
            f"labels shape {tuple(labels.shape)} does not match {images.shape[0]} images"
        )
    model, k = classifier.model, num_classes_of(dataset)
    ref, held = split_halves(dataset.y)
    reference = FeatureStats.of(classify(model, dataset.x[ref], prepare=_as_input)[0])
    feats, pred = classify(model, images, prepare=_as_input)
    floor_n = min(len(images), len(held))
    floor_value = None
    if floor:
        pick = held[
            torch.randperm(len(held), generator=torch.Generator().manual_seed(seed))[:floor_n]
        ]
        real, _ = classify(model, dataset.x[pick], prepare=_as_input)
        floor_value = frechet_distance(reference, FeatureStats.of(real))
    return FolderReport(
        n=len(images),
        fid=frechet_distance(reference, FeatureStats.of(feats)),
        floor=floor_value,
        class_accuracy=None if labels is None else class_accuracy(pred, labels.to(pred.device)),
        histogram_deviation=histogram_deviation(pred, k),
        floor_n=floor_n,
        num_classes=k,
        classifier_accuracy=classifier.card["heldout_accuracy"],
        classifier=str(classifier.path),
    )
