"""Statistics for results over seeds: Welch's two-sided t-test, written out (no SciPy needed).

    welch(a, b)  -> {"diff": mean(a) - mean(b), "t", "df", "p"}
    paired(a, b) -> the same for paired values (a[i], b[i] measured on one seed's model)

Welch's t for two samples with unequal variances: t = (mean_a - mean_b) / sqrt(s_a^2/n_a + s_b^2/n_b),
with the Welch-Satterthwaite degrees of freedom; the two-sided p-value is P(|T_df| >= |t|) =
I_{df / (df + t^2)}(df / 2, 1 / 2), the regularized incomplete beta function, evaluated by its
continued fraction (Lentz's method). With 3 seeds per arm the test has little power: a p above 0.05
says "not shown", never "equal".
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence


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
