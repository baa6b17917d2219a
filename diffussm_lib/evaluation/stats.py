"""Statistics for results over seeds: Welch's two-sided t-test, written out (no SciPy needed).

    mean_sd(values) -> (mean, sample SD; nan for one value)
    fmt_p(p)     -> "p = 0.004", "p < 0.001" ("p n/a" for None): a p-value in words for reports
    welch(a, b)  -> {"diff": mean(a) - mean(b), "t", "df", "p"}
    paired(a, b) -> the same for paired values (a[i], b[i] measured on one seed's model)
    holm(pvalues, alpha) -> {"adjusted": Holm-adjusted p-values, "rejected": booleans}, input order
    familywise_rate(k, alpha) -> 1 - (1 - alpha)^k, the chance of >= 1 false verdict in k tests
    bootstrap_diff_interval(a, b, level) -> (low, high), percentile bootstrap of mean(a) - mean(b)

Welch's t for two samples with unequal variances: t = (mean_a - mean_b) / sqrt(s_a^2/n_a + s_b^2/n_b),
with the Welch-Satterthwaite degrees of freedom; the two-sided p-value is P(|T_df| >= |t|) =
I_{df / (df + t^2)}(df / 2, 1 / 2), the regularized incomplete beta function, evaluated by its
continued fraction (Lentz's method). With 3 seeds per arm the test has little power: a p above 0.05
says "not shown", never "equal".

Several comparisons against one shared base (seven scan orders against raster) form a family: at
alpha = 0.05 each, the chance of at least one false verdict grows towards ``familywise_rate(7,
0.05)`` = 0.30 (exact for independent tests; a shared base correlates them, which lowers it somewhat).
Holm's step-down correction keeps that family-wise rate at most alpha, for any dependence.
"""

from __future__ import annotations

import math
import random
import statistics
from typing import Sequence


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation, n - 1 in the denominator); the SD is nan for one value."""
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, math.nan
    return mean, math.sqrt(math.fsum((x - mean) ** 2 for x in values) / (n - 1))


def fmt_p(p: float | None) -> str:
    """0.0042 -> "p = 0.004", 2e-5 -> "p < 0.001", None -> "p n/a"."""
    return "p n/a" if p is None else "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _beta_cf(a: float, b: float, x: float, iters: int = 300, eps: float = 1e-15) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, iters + 1):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0, 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_cf(a, b, x) / a
    return 1.0 - front * _beta_cf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def welch(a: Sequence[float], b: Sequence[float]) -> dict:
    """Welch's two-sided t-test of mean(a) = mean(b); each sample needs at least 2 values.
    Returns {"diff", "t", "df", "p"} (two equal constant samples: t = 0, p = 1)."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"welch needs at least 2 values per sample, got {len(a)} and {len(b)}")
    ma, mb = statistics.mean(a), statistics.mean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = ma - mb
    if va + vb == 0.0:
        return {
            "diff": diff,
            "t": 0.0 if diff == 0 else math.copysign(math.inf, diff),
            "df": float(len(a) + len(b) - 2),
            "p": 1.0 if diff == 0 else 0.0,
        }
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return {"diff": diff, "t": t, "df": df, "p": t_two_sided_p(t, df)}


def paired(a: Sequence[float], b: Sequence[float]) -> dict:
    """The paired two-sided t-test of mean(a - b) = 0, for two measurements of the same runs (EMA and
    live weights of one seed's model): t = mean(d) / (sd(d) / sqrt(n)), df = n - 1.
    Returns {"diff", "t", "df", "p"}; needs at least 2 pairs."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(
            f"paired needs two equally long samples of at least 2 values, got {len(a)} and {len(b)}"
        )
    d = [x - y for x, y in zip(a, b)]
    diff, sd = statistics.mean(d), statistics.stdev(d)
    if sd == 0.0:
        return {
            "diff": diff,
            "t": 0.0 if diff == 0 else math.copysign(math.inf, diff),
            "df": float(len(d) - 1),
            "p": 1.0 if diff == 0 else 0.0,
        }
    t = diff / (sd / math.sqrt(len(d)))
    return {"diff": diff, "t": t, "df": float(len(d) - 1), "p": t_two_sided_p(t, len(d) - 1)}


def familywise_rate(k: int, alpha: float = 0.05) -> float:
    """The chance of at least one false verdict among ``k`` independent tests at level ``alpha``
    when every null hypothesis holds: 1 - (1 - alpha)^k (k = 7, alpha = 0.05: 0.302)."""
    return 1.0 - (1.0 - alpha) ** k


def holm(pvalues: Sequence[float], alpha: float = 0.05) -> dict:
    """Holm's step-down correction of a family of ``m`` p-values (say, m variants each against one
    shared base). Sorted ascending, p_(1) <= ... <= p_(m), the adjusted values are
    max_{j <= i} min(1, (m - j + 1) p_(j)): monotone in the sorted order and capped at 1.
    Rejecting those with adjusted p <= alpha keeps the family-wise error rate at most alpha, whatever
    the dependence between the tests.
    Returns {"adjusted": [floats], "rejected": [bools]}, both in the input order (empty in, empty out).
    """
    m = len(pvalues)
    for p in pvalues:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"holm needs p-values in [0, 1], got {p}")
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return {"adjusted": adjusted, "rejected": [q <= alpha for q in adjusted]}


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0 <= q <= 1) of sorted values, interpolated linearly between neighbours."""
    pos = q * (len(sorted_values) - 1)
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (pos - lo) * (sorted_values[hi] - sorted_values[lo])


def bootstrap_diff_interval(
    a: Sequence[float],
    b: Sequence[float],
    level: float = 0.95,
    n_boot: int = 10000,
    seed: int = 0,
) -> tuple:
    """A percentile bootstrap interval of mean(a) - mean(b): ``n_boot`` times, each arm is resampled
    with replacement (its own size, a ``random.Random(seed)``) and the difference of the means kept;
    the interval is the (1 - level) / 2 and (1 + level) / 2 quantiles of those differences.
    Returns (low, high); identical values give a zero-width interval. With few values per arm
    (3 seeds) the percentile interval is too narrow, a Welch test is the better guide there."""
    if len(a) < 1 or len(b) < 1:
        raise ValueError(f"bootstrap needs at least 1 value per sample, got {len(a)} and {len(b)}")
    if not 0.0 < level < 1.0 or n_boot < 1:
        raise ValueError(f"bootstrap needs 0 < level < 1 and n_boot >= 1, got {level}, {n_boot}")
    rng = random.Random(seed)
    a, b = list(a), list(b)
    na, nb = len(a), len(b)
    diffs = sorted(
        sum(rng.choices(a, k=na)) / na - sum(rng.choices(b, k=nb)) / nb for _ in range(n_boot)
    )
    return _quantile(diffs, (1.0 - level) / 2.0), _quantile(diffs, (1.0 + level) / 2.0)
