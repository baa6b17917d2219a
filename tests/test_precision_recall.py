"""Precision / recall and density / coverage: a case worked by hand, the known answers for matching,
mode-dropping and off-manifold samples, the chunked computation against a direct one, bad input."""

import math

import pytest
import torch

from _train_helpers import one_thread  # noqa: F401
from diffussm_lib.errors import UserError
from diffussm_lib.evaluation import (
    ManifoldMetrics,
    density_and_coverage,
    evaluate_manifold,
    knn_radii,
    manifold_metrics,
    precision_and_recall,
    real_manifold,
)

pytestmark = pytest.mark.usefixtures("one_thread")

# The hand-worked case, k = 1 (integer points: every squared distance is exact in float64).
#   real r1 = (0, 0), r2 = (2, 0), r3 = (0, 4)
#     distances: r1-r2 = 2, r1-r3 = 4, r2-r3 = sqrt(20)
#     NND_1: r1 = 2, r2 = 2, r3 = 4;  NND_2: r1 = 4, r2 = sqrt(20), r3 = sqrt(20)
#   fake f1 = (1, 0), f2 = (0, 9), f3 = (10, 10), f4 = (3, 0)
#     NND_1: f1 = 2 (f4), f2 = sqrt(82) (f1), f3 = sqrt(101) (f2), f4 = 2 (f1)
#   balls B(r_i, NND_1(r_i)) holding each fake:
#     f1: r1 (1 <= 2), r2 (1 <= 2), not r3 (sqrt(17) > 4)  -> 2
#     f2: r3 at 5 > 4, r1 at 9 > 2, r2 at sqrt(85) > 2      -> 0
#     f3: far from all                                      -> 0
#     f4: r2 (1 <= 2), not r1 (3 > 2), not r3 (5 > 4)       -> 1
#   precision = 2/4 (f1, f4); density = (2 + 0 + 0 + 1) / (1 * 4) = 3/4
#   recall: r1, r2 lie in B(f1, 2) (both at 1); r3 lies in B(f2, sqrt(82)) (at 5) -> 3/3 = 1:
#     the outlier f2's big ball "recalls" r3, which no sample is near (what coverage fixes)
#   coverage: r1, r2 hold f1; r3's nearest fake is f1 at sqrt(17) > 4 -> 2/3
REAL = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]])
FAKE = torch.tensor([[1.0, 0.0], [0.0, 9.0], [10.0, 10.0], [3.0, 0.0]])


def test_radii_worked_by_hand():
    assert knn_radii(REAL, 1).tolist() == [2.0, 2.0, 4.0]
    assert knn_radii(REAL, 2).tolist() == pytest.approx([4.0, math.sqrt(20), math.sqrt(20)])
    assert knn_radii(FAKE, 1).tolist() == pytest.approx([2.0, math.sqrt(82), math.sqrt(101), 2.0])


def test_metrics_worked_by_hand():
    assert precision_and_recall(REAL, FAKE, k=1) == (0.5, 1.0)
    density, coverage = density_and_coverage(REAL, FAKE, k=1)
    assert density == 0.75 and coverage == pytest.approx(2 / 3)
    m = manifold_metrics(REAL, FAKE, k_pr=1, k_dc=1)
    assert isinstance(m, ManifoldMetrics)
    assert m.as_dict() == {
        "precision": 0.5,
        "recall": 1.0,
        "density": 0.75,
        "coverage": pytest.approx(2 / 3),
    }


def test_a_point_on_a_ball_boundary_is_inside():
    """Closed balls: (4, 0) is exactly NND_1(r2) = 2 from r2 = (2, 0); (10, 10) is in no ball."""
    fake = torch.tensor([[4.0, 0.0], [10.0, 10.0]])
    assert density_and_coverage(REAL, fake, k=1) == (1 / 2, 1 / 3)


def mixture(per_mode: int, modes, seed: int) -> torch.Tensor:
    """``per_mode`` points (exactly) around each of the given modes of 8 unit Gaussians whose
    centres lie on a circle of radius 10 (neighbouring centres 7.7 apart): (per_mode * modes, 2)."""
    g = torch.Generator().manual_seed(seed)
    angle = torch.tensor(list(modes), dtype=torch.float64) * 2 * math.pi / 8
    centres = 10 * torch.stack([angle.cos(), angle.sin()], 1)
    noise = torch.randn(per_mode * len(modes), 2, generator=g, dtype=torch.float64)
    return centres.repeat_interleave(per_mode, 0) + noise


def expected_coverage(n_real: int, n_fake: int, k: int) -> float:
    """Naeem et al.: 1 - prod_i (n_real - i) / (n_real + n_fake - i), for two draws of one
    distribution."""
    return 1 - math.prod((n_real - i) / (n_real + n_fake - i) for i in range(1, k + 1))


def test_two_draws_of_one_distribution():
    real, fake = mixture(125, range(8), seed=0), mixture(125, range(8), seed=1)
    m = manifold_metrics(real, fake)
    # E[density] = 1, E[coverage] = 0.969 for 1000 and 1000 points, k = 5; the SD of a coverage
    # over 1000 points near 0.97 is about sqrt(0.03 * 0.97 / 1000) = 0.005
    assert m.density == pytest.approx(1.0, abs=0.1)
    assert m.coverage == pytest.approx(expected_coverage(1000, 1000, 5), abs=0.025)
    # the two sets play symmetric roles: precision and recall high and about equal
    assert m.precision > 0.9 and m.recall > 0.9
    assert abs(m.precision - m.recall) < 0.03


def test_dropped_modes_lower_recall_and_coverage_not_precision():
    real, fake = mixture(125, range(8), seed=0), mixture(125, range(8), seed=1)
    half = mixture(250, range(0, 8, 2), seed=2)  # the same number of samples, from 4 of 8 modes
    full, dropped = manifold_metrics(real, fake), manifold_metrics(real, half)
    # only the real points of the 4 kept modes (half of them) can be recalled or covered
    assert dropped.recall < 0.55 and full.recall - dropped.recall > 0.3
    # in each kept mode: 125 real and 250 fake points of one distribution
    assert dropped.coverage == pytest.approx(0.5 * expected_coverage(125, 250, 5), abs=0.03)
    # the samples are as realistic as before, and no denser than the data where they are
    assert dropped.precision > 0.9 and abs(dropped.precision - full.precision) < 0.03
    assert dropped.density == pytest.approx(1.0, abs=0.1)


def test_samples_off_the_data_manifold():
    real = mixture(50, range(8), seed=0)
    far = mixture(50, range(8), seed=1) + 100.0  # centred 141 from the origin, the data within ~15
    assert manifold_metrics(real, far).as_dict() == {
        "precision": 0.0,
        "recall": 0.0,
        "density": 0.0,
        "coverage": 0.0,
    }


def test_precision_of_real_vs_fake_is_recall_of_fake_vs_real():
    a, b = mixture(40, range(8), seed=3), mixture(30, range(0, 8, 2), seed=4) * 1.1
    p_ab, r_ab = precision_and_recall(a, b)
    p_ba, r_ba = precision_and_recall(b, a)
    assert (p_ab, r_ab) == (r_ba, p_ba)
    assert p_ab != r_ab  # the swap is a real check: the two numbers differ here


def direct_metrics(real, fake, k_pr, k_dc) -> dict:
    """The definitions written with one full distance matrix (``torch.cdist``) and sorting."""
    rr, ff, fr = torch.cdist(real, real), torch.cdist(fake, fake), torch.cdist(fake, real)
    rad = lambda d, k: d.sort(1).values[:, k]  # noqa: E731 (column 0 is the point itself)
    return {
        "precision": (fr <= rad(rr, k_pr)[None]).any(1).double().mean().item(),
        "recall": (fr.T <= rad(ff, k_pr)[None]).any(1).double().mean().item(),
        "density": (fr <= rad(rr, k_dc)[None]).sum().item() / (k_dc * len(fake)),
        "coverage": (fr.min(0).values <= rad(rr, k_dc)).double().mean().item(),
    }


@pytest.mark.parametrize("max_elements", [1, 97, 2**22])
def test_chunked_computation_matches_the_direct_one(max_elements):
    """Chunks of one row, of 97 elements (chunks that do not divide the sets), or none."""
    g = torch.Generator().manual_seed(5)
    real = torch.randn(150, 16, generator=g, dtype=torch.float64)
    fake = 1.2 * torch.randn(90, 16, generator=g, dtype=torch.float64) + 0.3
    got = manifold_metrics(real, fake, k_pr=3, k_dc=5, max_elements=max_elements).as_dict()
    want = direct_metrics(real, fake, 3, 5)
    assert got == pytest.approx(want, abs=1e-12)
    assert 0 < want["precision"] < 1 and 0 < want["coverage"] < 1  # not a trivial case


@pytest.mark.parametrize(
    "real, fake, k, message",
    [
        (
            torch.zeros(10, 4),
            torch.zeros(10, 3),
            3,
            r"real features have 4 dimensions but fake .* 3",
        ),
        (
            torch.zeros(3, 4),
            torch.zeros(10, 4),
            3,
            r"k = 3 .* at least 4 real feature vectors, got 3",
        ),
        (torch.zeros(10, 4), torch.zeros(2, 4), 3, r"at least 4 fake feature vectors, got 2"),
        (torch.zeros(10), torch.zeros(10, 4), 3, r"real features must be .* \(n, F\), got \(10,\)"),
        (torch.zeros(10, 4), torch.zeros(10, 4), 0, r"k .* must be >= 1, got 0"),
        (torch.full((10, 4), math.nan), torch.zeros(10, 4), 3, r"real features contain NaN"),
    ],
)
def test_bad_input_is_a_user_error(real, fake, k, message):
    for metric in (precision_and_recall, density_and_coverage):
        with pytest.raises(UserError, match=message) as info:
            metric(real, fake, k)
        assert "\n" not in str(info.value)


def test_evaluate_manifold_rejects_colour_images():
    with pytest.raises(UserError, match=r"\(N, 1, H, W\); got \(4, 3, 28, 28\)"):
        evaluate_manifold(torch.zeros(4, 3, 28, 28))


@pytest.mark.slow
def test_test_images_are_on_the_manifold_and_noise_is_not():
    """Test images are points of the reference set itself: each lies in its own ball, so precision
    is exactly 1. Uniform noise looks like no digit: it recalls and covers nothing. Its precision
    stays above 0 (odd real digits far from the rest have big balls that catch some noise: the
    outlier weakness density was made to soften), but far below real images'."""
    from diffussm_lib.data import mnist_dataset

    test = mnist_dataset("test", pad_to=None)  # 28x28: padded to 32 inside, like samples
    assert evaluate_manifold(test.x[:300]).precision == 1.0
    noise = torch.rand(300, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    bad, real = evaluate_manifold(noise), real_manifold(300, seed=0)
    assert bad.recall < 0.01 and bad.coverage < 0.01
    assert bad.precision < real.precision / 2 and bad.density < real.density / 2
    # training and test images come from one distribution: coverage as two draws of one predicts
    assert real.coverage == pytest.approx(expected_coverage(10000, 300, 5), abs=0.03)
    assert real.recall > 0.5
