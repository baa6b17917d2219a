"""FID-LeNet: the Fréchet distance between Gaussian fits of LeNet features, plus the two checks
that FID alone misses on MNIST: class accuracy of conditional samples and mode dropping.

For feature sets with means m1, m2 and covariances S1, S2 (128 x 128):

    FD = |m1 - m2|^2 + tr(S1) + tr(S2) - 2 tr( (S1^{1/2} S2 S1^{1/2})^{1/2} )

(the last trace equals tr((S1 S2)^{1/2}); the symmetric form is computed with eigendecompositions
in float64, which is stable, with no scipy). FID is biased by the sample count n: compare values only
at equal n, and report the real-vs-real floor at that n beside every model's number.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class FeatureStats:
    """Mean (F,) and covariance (F, F) of N feature vectors, float64."""

    mean: torch.Tensor
    cov: torch.Tensor
    n: int

    @classmethod
    def of(cls, feats: torch.Tensor) -> "FeatureStats":
        """feats (N, F), N >= 2."""
        if feats.dim() != 2 or feats.shape[0] < 2:
            raise ValueError(f"need features of shape (N >= 2, F), got {tuple(feats.shape)}")
        f = feats.double()
        return cls(f.mean(0), torch.cov(f.T), f.shape[0])


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix (negative eigenvalues clipped)."""
    w, v = torch.linalg.eigh((m + m.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """The Fréchet distance between N(a.mean, a.cov) and N(b.mean, b.cov)."""
    s1_half = _sqrt_psd(a.cov)
    middle = s1_half @ b.cov @ s1_half
    tr_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    diff = a.mean - b.mean
    return float(diff @ diff + a.cov.trace() + b.cov.trace() - 2 * tr_sqrt)


def class_accuracy(pred: torch.Tensor, wanted: torch.Tensor) -> float:
    """Fraction of samples classified as the class they were generated for. (N,), (N,) -> float."""
    return float((pred == wanted).float().mean())


def histogram_deviation(pred: torch.Tensor, num_classes: int = 10) -> float:
    """Largest absolute deviation of the predicted-class frequencies from uniform (1/num_classes).
    0 for perfectly balanced samples; 0.1 when one MNIST class is missing entirely."""
    freq = torch.bincount(pred, minlength=num_classes).double() / len(pred)
    return float((freq - 1.0 / num_classes).abs().max())
