"""FID-LeNet: the Fréchet distance against closed forms, the committed extractor, the checks."""

import pytest
import torch

from diffussm_lib.evaluation import (
    FeatureStats,
    class_accuracy,
    frechet_distance,
    histogram_deviation,
)
from diffussm_lib.evaluation import (
    DEFAULT_WEIGHTS,
    as_classifier_input,
    classify,
    lenet_card,
    load_lenet,
)


def test_frechet_distance_closed_forms():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(4000, 8, generator=g, dtype=torch.float64)
    a = FeatureStats.of(f)
    assert abs(frechet_distance(a, a)) < 1e-9
    # shifted mean only: FD = |shift|^2
    b = FeatureStats(a.mean + 3.0, a.cov, a.n)
    assert frechet_distance(a, b) == pytest.approx(9.0 * 8, rel=1e-9)
    # diagonal covariances: FD = sum (s1 - s2)^2 (with standard deviations s)
    d1, d2 = torch.tensor([1.0, 4.0, 9.0]).double(), torch.tensor([4.0, 1.0, 1.0]).double()
    x = FeatureStats(torch.zeros(3).double(), torch.diag(d1), 10)
    y = FeatureStats(torch.zeros(3).double(), torch.diag(d2), 10)
    assert frechet_distance(x, y) == pytest.approx(
        float(((d1.sqrt() - d2.sqrt()) ** 2).sum()), rel=1e-9
    )
    # symmetric in its arguments for general covariances
    m = torch.randn(5, 5, generator=g, dtype=torch.float64)
    p = FeatureStats(
        torch.randn(5, generator=g, dtype=torch.float64), m @ m.T + torch.eye(5).double(), 10
    )
    assert frechet_distance(
        p, x.__class__(torch.zeros(5).double(), torch.eye(5).double(), 10)
    ) == pytest.approx(
        frechet_distance(x.__class__(torch.zeros(5).double(), torch.eye(5).double(), 10), p),
        rel=1e-9,
    )


def test_class_checks():
    pred = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    assert class_accuracy(pred, pred) == 1.0 and class_accuracy(pred, (pred + 1) % 10) == 0.0
    assert histogram_deviation(pred) == pytest.approx(0.0)
    missing_nine = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8] * 10)
    assert histogram_deviation(missing_nine) == pytest.approx(0.1)


def test_classifier_input_and_errors():
    assert as_classifier_input(torch.zeros(2, 1, 28, 28)).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\).*\(2, 3, 32, 32\)"):
        as_classifier_input(torch.zeros(2, 3, 32, 32))


@pytest.mark.skipif(not DEFAULT_WEIGHTS.exists(), reason="FID-LeNet weights not trained yet")
@pytest.mark.slow
def test_committed_extractor_is_accurate_and_small():
    from diffussm_lib.data import mnist_dataset

    assert DEFAULT_WEIGHTS.stat().st_size < 1_000_000
    card = lenet_card()
    assert card["test_accuracy"] >= 0.99 and "seed" in card
    model = load_lenet()
    test = mnist_dataset("test", pad_to=32)
    feats, pred = classify(model, test.x[:2000])
    assert feats.shape == (2000, 128)
    assert class_accuracy(pred, test.y[:2000]) >= 0.985
    # real vs real is far below real vs noisy: the metric separates them
    train = mnist_dataset("train", pad_to=32)
    real = FeatureStats.of(feats)
    other = FeatureStats.of(classify(model, train.x[:2000])[0])
    noisy = FeatureStats.of(
        classify(
            model,
            (
                train.x[:2000]
                + 0.6 * torch.randn(2000, 1, 32, 32, generator=torch.Generator().manual_seed(0))
            ).clamp(-1, 1),
        )[0]
    )
    assert frechet_distance(real, other) * 3 < frechet_distance(real, noisy)
