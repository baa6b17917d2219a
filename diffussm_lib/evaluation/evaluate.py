"""Measuring samples honestly on MNIST: FID-LeNet, its real-vs-real floor, class accuracy, modes.

``evaluate_images`` takes N generated images and returns an ``EvalReport``:

* ``fid``: FID-LeNet of the samples against the 10,000 MNIST test images;
* ``floor``: the same distance for N *real* training images (seeded draw): FID is biased by N, so a
  model's number means something only next to the floor at the same N;
* ``class_accuracy``: for class-conditional samples, the fraction the fixed LeNet classifies as the
  class they were asked for (None for unconditional samples);
* ``histogram_deviation``: max |frequency of a predicted class - 1/10|: catches dropped modes that
  FID and confidence can miss.

``evaluate_manifold`` adds precision, recall, density and coverage of the samples on the same LeNet
features against the same test set (``precision_recall.py``), and ``real_manifold`` their values for
the floor's N real training images: they tell fidelity (precision, density) from variety
(recall, coverage), which FID-LeNet folds into one number.

``sample_and_evaluate`` draws the samples from a model first (every class in equal numbers, or
unconditional): what the comparisons of notebook 07 run; ``evaluate_checkpoint`` does the same
from a checkpoint file: what ``diffussm evaluate`` runs. For a model trained on an image folder
(``data.name: folder``) both use FD-classifier instead (``folder_metric.py``: a classifier trained on
the folder's own images), and return a ``FolderReport``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Callable, Optional

import torch

from ..data import dataset_from_config, mnist_dataset
from ..diffusion import DEFAULT_SAMPLER, NoiseSchedule
from ..env import resolve_device
from ..errors import UserError
from ..sampling import generate, parse_labels
from ..training import load_model
from .fid import FeatureStats, class_accuracy, frechet_distance, histogram_deviation
from .folder_metric import (
    CACHE_DIR_NAME,
    dataset_classifier,
    default_cache_dir,
    evaluate_folder_images,
)
from .lenet import classify, load_lenet
from .precision_recall import (
    DENSITY_COVERAGE_K,
    PRECISION_RECALL_K,
    ManifoldMetrics,
    manifold_metrics,
)
from .report import EvalReport


@lru_cache(maxsize=1)
def _extractor():
    """The committed FID-LeNet, read from disk once per process."""
    return load_lenet()


@lru_cache(maxsize=2)
def _test_features(root: Optional[str]) -> torch.Tensor:
    """LeNet features (10000, 128) float64 of the MNIST test set, computed once per process."""
    feats, _ = classify(_extractor(), mnist_dataset("test", pad_to=32, root=root).x)
    return feats


@lru_cache(maxsize=2)
def _test_stats(root: Optional[str]) -> FeatureStats:
    return FeatureStats.of(_test_features(root))


def _train_features(n: int, seed: int, root: Optional[str]) -> torch.Tensor:
    """LeNet features (n, 128) of ``n`` random MNIST training images (drawn with ``seed``)."""
    train = mnist_dataset("train", pad_to=32, root=root)
    idx = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]
    return classify(_extractor(), train.x[idx])[0]


def real_floor(n: int, seed: int = 0, root: Optional[str] = None) -> float:
    """FID-LeNet of ``n`` random MNIST training images (seeded) against the test set."""
    feats = _train_features(n, seed, root)
    return frechet_distance(_test_stats(root), FeatureStats.of(feats))


def evaluate_manifold(
    images: torch.Tensor,
    *,
    k_pr: int = PRECISION_RECALL_K,
    k_dc: int = DENSITY_COVERAGE_K,
    root: Optional[str] = None,
) -> ManifoldMetrics:
    """Precision, recall (k-NN radii, k = ``k_pr``), density and coverage (k = ``k_dc``) of images
    (N, 1, H, W) in [-1, 1], H, W <= 32, on FID-LeNet's features against the 10,000 MNIST test
    images. Like FID they depend on N: compare at equal N, beside ``real_manifold`` at that N.

    Why all 10,000 and not N of them (the papers compare equal sizes): on these 128-d features the
    k-NN balls of a small reference set are so wide that uniform noise scores a precision close
    to real digits'; the full test set keeps the real manifold tight (the slow test checks noise
    against real images at this reference)."""
    if images.dim() != 4 or images.shape[1] != 1:
        raise UserError(
            f"LeNet features need grey MNIST-like images (N, 1, H, W); got {tuple(images.shape)}"
        )
    feats, _ = classify(_extractor(), images)
    return manifold_metrics(_test_features(root), feats, k_pr=k_pr, k_dc=k_dc)


def real_manifold(
    n: int,
    seed: int = 0,
    *,
    k_pr: int = PRECISION_RECALL_K,
    k_dc: int = DENSITY_COVERAGE_K,
    root: Optional[str] = None,
) -> ManifoldMetrics:
    """``evaluate_manifold``'s four numbers for ``n`` real MNIST training images (the seeded draw
    ``real_floor`` uses) against the test set: what real data (a perfect model) scores at this N."""
    return manifold_metrics(
        _test_features(root), _train_features(n, seed, root), k_pr=k_pr, k_dc=k_dc
    )


def evaluate_images(
    images: torch.Tensor,
    labels: Optional[torch.Tensor] = None,
    *,
    floor: bool = True,
    seed: int = 0,
    root: Optional[str] = None,
) -> EvalReport:
    """images (N, 1, H, W) in [-1, 1] with H, W <= 32; labels (N,) the classes asked for, or None."""
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(
            f"FID-LeNet evaluates grey MNIST-like images (N, 1, H, W); got {tuple(images.shape)}"
        )
    if labels is not None and labels.shape != images.shape[:1]:
        raise ValueError(
            f"labels shape {tuple(labels.shape)} does not match {images.shape[0]} images"
        )
    feats, pred = classify(_extractor(), images)
    return EvalReport(
        n=len(images),
        fid=frechet_distance(_test_stats(root), FeatureStats.of(feats)),
        floor=real_floor(len(images), seed, root) if floor else None,
        class_accuracy=None if labels is None else class_accuracy(pred, labels.to(pred.device)),
        histogram_deviation=histogram_deviation(pred),
    )


def sample_and_evaluate(
    model,
    cfg,
    n: int,
    *,
    conditional: bool = True,
    sampler: str = DEFAULT_SAMPLER,
    steps: Optional[int] = None,
    guidance: float = 1.0,
    seed: int = 0,
    batch_size: Optional[int] = None,
    device=None,
    progress: bool = False,
    variance: Optional[str] = None,
    cache_dir: Optional[str | os.PathLike] = None,
    log: Callable[[str], None] = print,
) -> tuple[EvalReport, torch.Tensor]:
    """Sample ``n`` images from ``model`` (an ``ExperimentConfig`` ``cfg`` describes it) and evaluate them:
    FID-LeNet for MNIST-like data; for ``data.name: folder`` FD-classifier (``folder_metric``), whose
    classifier comes from (or is trained into) ``cache_dir`` (default: beside the data), before sampling.

    conditional: every class in equal numbers (``n`` a multiple of the class count), else unconditional.
    Returns (report, images (n, C, H, W) in [-1, 1]).
    """
    folder = cfg.data.name == "folder"
    if not folder and cfg.model.in_channels != 1:
        raise UserError(
            f"FID-LeNet is defined for 1-channel MNIST-like images; this model has "
            f"{cfg.model.in_channels} channels (model.in_channels). For images of your "
            "own, train on an image folder (data.name: folder): evaluate then trains a "
            "classifier on it"
        )
    labels = parse_labels("all", n, cfg.model.num_classes) if conditional else None
    if folder:
        dataset = dataset_from_config(
            cfg.data, channels=cfg.model.in_channels, num_classes=cfg.model.num_classes
        )
        classifier = dataset_classifier(
            dataset, cache_dir or default_cache_dir(cfg.data.path), log=log
        )
    images = generate(
        model,
        NoiseSchedule.from_config(cfg.diffusion),
        n,
        labels,
        image_size=cfg.model.image_size,
        channels=cfg.model.in_channels,
        sampler=sampler,
        steps=steps,
        guidance=guidance,
        seed=seed,
        prediction=cfg.diffusion.prediction,
        batch_size=batch_size,
        device=device,
        progress=progress,
        variance=variance,
    )
    if folder:
        return evaluate_folder_images(images, labels, dataset, classifier, seed=seed), images
    return evaluate_images(images, labels, seed=seed), images


def evaluate_checkpoint(
    path,
    n: int,
    *,
    conditional: bool = True,
    sampler: str = DEFAULT_SAMPLER,
    steps: Optional[int] = None,
    guidance: float = 1.0,
    seed: int = 0,
    batch_size: Optional[int] = None,
    device=None,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """``diffussm evaluate`` as a function: load the EMA weights of the checkpoint at ``path`` (a file or
    a run / export folder), sample and evaluate (a folder dataset's classifier is cached beside the
    data, else in the checkpoint's folder). Returns the report as a dict with the checkpoint, its step
    and the sampling settings (what ``--json`` writes)."""
    device = resolve_device(device)
    model, cfg, ckpt = load_model(path, device=device)
    cache = (
        default_cache_dir(cfg.data.path, fallback=ckpt.path.parent / CACHE_DIR_NAME)
        if cfg.data.name == "folder" and cfg.data.path
        else None
    )
    report, _ = sample_and_evaluate(
        model,
        cfg,
        n,
        conditional=conditional,
        sampler=sampler,
        steps=steps,
        guidance=guidance,
        seed=seed,
        batch_size=batch_size,
        device=device,
        progress=progress,
        cache_dir=cache,
        log=log,
    )
    return dict(
        report.as_dict(),
        checkpoint=str(ckpt.path),
        step=ckpt.step,
        sampler=sampler,
        steps=steps,
        guidance=guidance,
        seed=seed,
        conditional=conditional,
    )
