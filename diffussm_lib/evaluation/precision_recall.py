"""Manifold metrics of two feature sets: improved precision and recall, density and coverage.

FID folds quality and diversity into one number. These metrics split them, using k-nearest-neighbour
balls in feature space (on MNIST: FID-LeNet's 128-d features, ``lenet.py``). Notation: real features
r_1 .. r_{n_real}, fake (generated) features f_1 .. f_{n_fake}, each of width F; NND_k(x) the
distance from x to its k-th nearest neighbour within its own set (itself excluded); B(x, r) the
closed ball {z : |z - x| <= r}; 1[.] the indicator.

Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for
Assessing Generative Models", NeurIPS; k = 3). The real manifold is the union of the balls
B(r_i, NND_k(r_i)), the fake manifold likewise:

    precision = 1/n_fake sum_j 1[ f_j in some B(r_i, NND_k(r_i)) ]  (are the samples realistic?)
    recall    = 1/n_real sum_i 1[ r_i in some B(f_j, NND_k(f_j)) ]  (is the data's variety met?)

so precision(real, fake) = recall(fake, real). One outlier among the fakes gets a huge ball that can
swallow many real points and inflate recall; density and coverage (Naeem et al. 2020, "Reliable
Fidelity and Diversity Metrics for Generative Models", ICML; k = 5) use the real balls only:

    density  = 1/(k n_fake) sum_j sum_i 1[ f_j in B(r_i, NND_k(r_i)) ]  (real balls per sample)
    coverage = 1/n_real sum_i 1[ some f_j in B(r_i, NND_k(r_i)) ]   (real balls holding a sample)

For two sets drawn from one continuous distribution, E[density] = 1 and

    E[coverage] = 1 - prod_{i=1..k} (n_real - i) / (n_real + n_fake - i)

(Naeem et al.; about 1 - 2^-k when both sets are large and equal): both are exchangeability
arguments, true for any distribution. Density exceeds 1 when samples crowd where the real data is
dense, and does not fall when modes are dropped; coverage does. All four depend on n_real and n_fake
(the radii shrink as a set grows): compare values at equal sizes only, beside the real-vs-real
reference at the same sizes.

Distances are computed in float64 as |a|^2 + |b|^2 - 2 a.b, at most ``max_elements`` at a time
(chunks of rows), so memory stays bounded for the 10,000 MNIST test features; squared distances
are compared with squared radii (no square roots in the comparisons). Closed balls (<=) throughout,
as in Kynkäänniemi et al.'s code (Naeem et al.'s uses open balls: they differ only on exact ties).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterator

import torch
from torch import Tensor

from ..errors import UserError

PRECISION_RECALL_K = 3  # Kynkäänniemi et al.'s choice
DENSITY_COVERAGE_K = 5  # Naeem et al.'s choice
MAX_ELEMENTS = 2**22  # distances held at once: 32 MiB in float64


@dataclass
class ManifoldMetrics:
    """Precision and recall, density and coverage of fake against real features
    (``manifold_metrics``); each in [0, 1] except density (>= 0; about 1 when the two match)."""

    precision: float
    recall: float
    density: float
    coverage: float

    def as_dict(self) -> dict:
        return asdict(self)


def _checked(name: str, x: Tensor, k: int) -> Tensor:
    """One feature set as float64 (n, F), n > k; raises ``UserError`` for what the metrics cannot
    use (``name`` says which set)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UserError(f"k (the neighbour that sets each ball's radius) must be >= 1, got {k!r}")
    if not isinstance(x, Tensor) or x.dim() != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise UserError(f"{name} features must be a tensor of shape (n, F), got {shape}")
    if len(x) < k + 1:
        raise UserError(
            f"k = {k} nearest neighbours need at least {k + 1} {name} feature vectors, got {len(x)}"
        )
    if not torch.isfinite(x).all():
        raise UserError(f"{name} features contain NaN or infinite values")
    return x.double()


def _checked_pair(real: Tensor, fake: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Both sets checked (``_checked``), of equal width F, as float64 on real's device."""
    real, fake = _checked("real", real, k), _checked("fake", fake, k)
    if real.shape[1] != fake.shape[1]:
        raise UserError(
            f"real features have {real.shape[1]} dimensions but fake features {fake.shape[1]}: "
            "compute both with the same extractor"
        )
    return real, fake.to(real.device)


def _row_chunks(rows: int, cols: int, max_elements: int) -> Iterator[slice]:
    """Slices of ``range(rows)`` whose (chunk, cols) blocks hold <= max_elements (>= 1 row each)."""
    step = max(1, max_elements // max(cols, 1))
    for s in range(0, rows, step):
        yield slice(s, min(s + step, rows))


def _sq_dists(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances a (n_a, F), b (n_b, F) -> (n_a, n_b), clamped at 0 (rounding)."""
    d = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1) - 2.0 * (a @ b.T)
    return d.clamp_min_(0.0)


def _knn_sq_radii(x: Tensor, k: int, max_elements: int) -> Tensor:
    """x (n_x, F) -> (n_x,): squared distance from each row to its k-th nearest other row."""
    out = []
    for rows in _row_chunks(len(x), len(x), max_elements):
        d = _sq_dists(x[rows], x)  # (chunk, n_x)
        i = torch.arange(rows.stop - rows.start, device=x.device)
        d[i, i + rows.start] = float("inf")  # a point is not its own neighbour
        out.append(d.kthvalue(k, dim=1).values)
    return torch.cat(out)


def _balls_holding(points: Tensor, centres: Tensor, sq_radii: Tensor, max_elements: int) -> Tensor:
    """points (n_p, F), centres (n_c, F), sq_radii (n_c,) -> (n_p,) long: how many of the closed
    balls B(centres[i], sqrt(sq_radii[i])) contain each point."""
    out = []
    for rows in _row_chunks(len(points), len(centres), max_elements):
        out.append((_sq_dists(points[rows], centres) <= sq_radii).sum(1))
    return torch.cat(out)


def _nearest_sq_dist(a: Tensor, b: Tensor, max_elements: int) -> Tensor:
    """a (n_a, F), b (n_b, F) -> (n_a,): squared distance from each row of a to its nearest in b."""
    out = []
    for rows in _row_chunks(len(a), len(b), max_elements):
        out.append(_sq_dists(a[rows], b).min(1).values)
    return torch.cat(out)


def knn_radii(x: Tensor, k: int, *, max_elements: int = MAX_ELEMENTS) -> Tensor:
    """x (n_x, F) -> (n_x,) float64: NND_k(x_i), the distance from each row to its k-th nearest
    other row."""
    return _knn_sq_radii(_checked("input", x, k), k, max_elements).sqrt()


def precision_and_recall(
    real: Tensor, fake: Tensor, k: int = PRECISION_RECALL_K, *, max_elements: int = MAX_ELEMENTS
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of fake (n_fake, F) against real
    (n_real, F) features, balls of radius NND_k. Returns (precision, recall), each in [0, 1]."""
    real, fake = _checked_pair(real, fake, k)
    in_real = _balls_holding(fake, real, _knn_sq_radii(real, k, max_elements), max_elements)
    in_fake = _balls_holding(real, fake, _knn_sq_radii(fake, k, max_elements), max_elements)
    return float((in_real > 0).double().mean()), float((in_fake > 0).double().mean())


def density_and_coverage(
    real: Tensor, fake: Tensor, k: int = DENSITY_COVERAGE_K, *, max_elements: int = MAX_ELEMENTS
) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020) of fake (n_fake, F) against real (n_real, F)
    features, balls of radius NND_k around the real points only.
    Returns (density >= 0, coverage in [0, 1])."""
    real, fake = _checked_pair(real, fake, k)
    sq_radii = _knn_sq_radii(real, k, max_elements)  # (n_real,)
    held_by = _balls_holding(fake, real, sq_radii, max_elements)  # (n_fake,)
    covered = _nearest_sq_dist(real, fake, max_elements) <= sq_radii  # (n_real,)
    return held_by.sum().item() / (k * len(fake)), float(covered.double().mean())


def manifold_metrics(
    real: Tensor,
    fake: Tensor,
    *,
    k_pr: int = PRECISION_RECALL_K,
    k_dc: int = DENSITY_COVERAGE_K,
    max_elements: int = MAX_ELEMENTS,
) -> ManifoldMetrics:
    """All four for fake (n_fake, F) against real (n_real, F) features: ``precision_and_recall``
    with k = ``k_pr`` and ``density_and_coverage`` with k = ``k_dc``."""
    precision, recall = precision_and_recall(real, fake, k_pr, max_elements=max_elements)
    density, coverage = density_and_coverage(real, fake, k_dc, max_elements=max_elements)
    return ManifoldMetrics(precision, recall, density, coverage)
