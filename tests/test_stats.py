"""Welch's t-test, Holm's correction and the bootstrap interval written out (evaluation/stats.py)
against known values and simulated experiments where the answer is known, and the speedrun tables / target verdict (evaluation/speedrun.py) on synthetic stored runs."""

import math
import random

import pytest

from diffussm_lib.evaluation.speedrun import (
    base_keys,
    lever_verdicts,
    recipe_changes,
    summary_budget,
    tables,
    target_summary,
)
from diffussm_lib.evaluation.stats import (
    betainc,
    fmt_p,
    mean_sd,
    bootstrap_diff_interval,
    familywise_rate,
    holm,
    paired,
    t_two_sided_p,
    welch,
)


def test_t_distribution_tail_against_table_values():
    assert t_two_sided_p(2.776, 4) == pytest.approx(0.05, abs=2e-4)  # t_{0.975, 4}
    assert t_two_sided_p(2.228, 10) == pytest.approx(0.05, abs=2e-4)  # t_{0.975, 10}
    assert t_two_sided_p(1.0, 1) == pytest.approx(0.5)  # Cauchy: P(|T| >= 1) = 1/2
    assert t_two_sided_p(0.0, 3) == pytest.approx(1.0)
    assert betainc(2.0, 3.0, 0.4) == pytest.approx(0.5248, abs=1e-4)  # I_0.4(2, 3), by hand: 0.5248


def test_welch_by_hand():
    r = welch([1, 2, 3], [4, 5, 6.5])
    va, vb = 1 / 3, 19 / 36  # s^2 / n: variances 1 and 19/12 (squares sum to 19/6), n = 3
    assert r["diff"] == pytest.approx(-19 / 6)
    assert r["t"] == pytest.approx(-19 / 6 / math.sqrt(va + vb))
    assert r["df"] == pytest.approx((va + vb) ** 2 / (va**2 / 2 + vb**2 / 2))
    with pytest.raises(ValueError, match="at least 2"):
        welch([1.0], [2.0, 3.0])


def test_paired_by_hand():
    r = paired([1, 2, 4], [0, 0, 1])  # differences 1, 2, 3: mean 2, SD 1
    t = 2 / (1 / math.sqrt(3))
    assert r["diff"] == pytest.approx(2.0) and r["t"] == pytest.approx(t) and r["df"] == 2
    assert r["p"] == pytest.approx(
        1 - t / math.sqrt(2 + t * t)
    )  # the t tail with 2 df in closed form
    with pytest.raises(ValueError, match="equally long"):
        paired([1.0, 2.0], [1.0])


def test_welch_false_positive_rate_is_nominal_and_a_large_difference_is_found():
    rng = random.Random(0)
    trials = 4000
    fp = (
        sum(
            welch([rng.gauss(0, 1) for _ in range(3)], [rng.gauss(0, 2) for _ in range(3)])["p"]
            < 0.05
            for _ in range(trials)
        )
        / trials
    )
    assert 0.03 < fp < 0.07  # equal means: about 5% "significant"
    hits = (
        sum(
            welch([rng.gauss(0, 1) for _ in range(5)], [rng.gauss(4, 1) for _ in range(5)])["p"]
            < 0.05
            for _ in range(500)
        )
        / 500
    )
    assert hits > 0.95  # four SDs apart: almost always found


def _welch_rejects(rng, n, shift, trials, alpha=0.05):
    """The fraction of ``trials`` simulated n-vs-n experiments (unit Gaussian noise, true difference
    ``shift``) in which Welch's test finds a difference at ``alpha``."""
    hits = 0
    for _ in range(trials):
        a = [rng.gauss(0, 1) for _ in range(n)]
        b = [rng.gauss(shift, 1) for _ in range(n)]
        hits += welch(a, b)["p"] < alpha
    return hits / trials


def test_welch_false_positive_rate_at_3_vs_3_seeds_is_at_most_nominal():
    # Equal means and variances, 3 vs 3: Welch's df estimate falls below the pooled 4, so the test is
    # conservative here: 0.034 over 40,000 simulated experiments. Over 4,000 the binomial SD is
    # 0.003, so 0.025-0.055 takes the measured rate and rules out a liberal test (0.05 + 1.5 SD).
    fp = _welch_rejects(random.Random(0), 3, 0.0, 4000)
    assert 0.025 < fp < 0.055, fp  # measured: 0.029


def test_welch_false_positive_rate_at_10_vs_10_is_nominal():
    fp = _welch_rejects(random.Random(1), 10, 0.0, 1500)
    assert 0.033 < fp < 0.067, fp  # 0.05 +- 3 binomial SD (0.0056); measured: 0.047


def test_welch_finds_a_five_sd_difference_at_3_vs_3_seeds():
    hits = _welch_rejects(random.Random(2), 3, 5.0, 1000)
    assert hits >= 0.95, hits  # true power 0.969 (40,000 experiments); measured: 0.969


def test_holm_by_hand():
    # sorted: 0.01 x 4 = 0.04, 0.03 x 3 = 0.09, 0.04 x 2 = 0.08 -> 0.09 (monotone), 0.2 x 1 = 0.2
    r = holm([0.01, 0.04, 0.03, 0.2])
    assert r["adjusted"] == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert r["rejected"] == [True, False, False, False]
    assert holm([0.5, 0.6])["adjusted"] == [1.0, 1.0]  # capped at 1 (and monotone)
    assert holm([0.01, 0.04, 0.03, 0.2], alpha=0.1)["rejected"] == [True, True, True, False]
    assert holm([]) == {"adjusted": [], "rejected": []}
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.5, 1.5])


def test_familywise_rate():
    assert familywise_rate(7, 0.05) == pytest.approx(0.302, abs=5e-4)
    assert familywise_rate(1, 0.05) == pytest.approx(0.05)


def test_holm_keeps_the_familywise_rate_of_seven_comparisons_with_one_shared_base():
    # 500 null families: 7 variants (3 seeds each) each against one shared base (3 seeds), Welch.
    rng = random.Random(3)
    families, any_raw, any_holm = 500, 0, 0
    for _ in range(families):
        base = [rng.gauss(0, 1) for _ in range(3)]
        ps = [welch([rng.gauss(0, 1) for _ in range(3)], base)["p"] for _ in range(7)]
        any_raw += any(p < 0.05 for p in ps)
        any_holm += any(holm(ps)["rejected"])
    # uncorrected: far above alpha (measured 0.19; below 0.30 as the base is shared and Welch is
    # conservative at n = 3); Holm: at most alpha, + 2 binomial SD (0.0097) of tolerance
    assert any_raw / families > 0.10, any_raw / families
    assert any_holm / families <= 0.07, any_holm / families  # measured: 0.036


def test_bootstrap_interval_covers_the_true_difference_about_nominally():
    rng = random.Random(4)
    experiments, covered = 100, 0
    for e in range(experiments):
        a = [rng.gauss(1.0, 1) for _ in range(20)]
        b = [rng.gauss(0.0, 1) for _ in range(20)]
        low, high = bootstrap_diff_interval(a, b, level=0.95, n_boot=800, seed=e)
        assert low <= high
        covered += low <= 1.0 <= high
    # the percentile interval runs a little narrow at n = 20: 0.943 over 2,000 experiments; the band is
    # that -3 binomial SD (0.023 over 100) up to 0.99; measured: 0.89
    assert 0.87 <= covered / experiments <= 0.99, covered / experiments


def test_bootstrap_interval_is_deterministic_and_degenerate_safe():
    a, b = [3.0, 4.5, 5.0, 6.5], [1.0, 2.0, 2.5]
    assert bootstrap_diff_interval(a, b, n_boot=500, seed=7) == bootstrap_diff_interval(
        a, b, n_boot=500, seed=7
    )
    low, high = bootstrap_diff_interval(a, b, n_boot=500)
    assert low < 19 / 4 - 11 / 6 < high
    assert bootstrap_diff_interval([2.0] * 3, [2.0] * 4) == (0.0, 0.0)
    low, high = bootstrap_diff_interval([0.1] * 3, [0.1] * 5, n_boot=200)
    assert low == high == pytest.approx(0.0, abs=1e-12)  # zero width
    with pytest.raises(ValueError, match="at least 1"):
        bootstrap_diff_interval([], [1.0])
    with pytest.raises(ValueError, match="level"):
        bootstrap_diff_interval([1.0], [1.0], level=1.0)


def _run(arm, seed, fid, acc, threads=2, images=400_000):
    ev = {"n": 2000, "fid": fid, "floor": 3.0, "class_accuracy": acc, "histogram_deviation": 0.01}
    ev.update(sampler="ddim", steps=25)
    return {
        "arm": arm,
        "seed": seed,
        "steps": images // 64,
        "images": images,
        "images_per_sec": images / 1200,
        "threads": threads,
        "precision": "bf16",
        "hardware": "CPU test",
        "eval": {"ema w=1.25": ev},
    }


def test_speedrun_tables_and_target_verdict():
    runs = {
        f"recipe | seed {s} | 20 min, 2 threads": _run("recipe", s, f, a)
        for s, (f, a) in enumerate([(5.0, 0.975), (5.5, 0.98), (6.0, 0.97)])
    }
    runs.update(
        {
            f"constant lr | seed {s} | 20 min, 2 threads": _run("constant lr", s, f, 0.96)
            for s, f in enumerate([9.0, 9.5, 10.0])
        }
    )
    runs["recipe | seed 0 | 20 min, 1 thread"] = _run("recipe", 0, 9.0, 0.9, threads=1)
    assert summary_budget(runs) == "20 min, 2 threads"  # the student's: most threads
    text = target_summary(runs)
    assert "3 seeds" in text and "FID-LeNet 5.50 +- 0.50 (worst seed 6.00" in text
    assert "met at ema w=1.25" in text and "stretch not met" in text
    table = tables(runs)
    assert "### 20 min, 2 threads" in table and "### 20 min, 1 thread" in table
    assert "+4.00, p < 0.001" in table  # constant lr (9.5) vs recipe (5.5), Welch
    runs["recipe | seed 2 | 20 min, 2 threads"] = _run("recipe", 2, 9.0, 0.95)
    assert "not met. Closest: ema w=1.25" in target_summary(runs)


def test_speedrun_summary_compares_live_and_ema_weights_of_the_same_runs():
    runs = {}
    for s, (f_ema, f_live) in enumerate([(5.0, 4.0), (5.5, 4.4), (6.0, 5.1)]):
        r = _run("recipe", s, f_ema, 0.975)
        r["eval"]["live w=1.25"] = dict(r["eval"]["ema w=1.25"], fid=f_live)
        runs[f"recipe | seed {s} | 20 min, 2 threads"] = r
    text = target_summary(runs)
    p = paired([4.0, 4.4, 5.1], [5.0, 5.5, 6.0])["p"]
    assert (
        f"live minus EMA weights at w=1.25, same runs: FID-LeNet -1.00 (paired t-test over 3 seeds, p = {p:.3f})"
        in text
    )
    assert "met at ema w=1.25" in text  # the verdict is the EMA's, as before


def test_lever_verdicts_say_shown_only_below_the_threshold():
    runs = {
        f"recipe | seed {s} | 800 steps, 1 thread": _run("recipe", s, f, 0.9)
        for s, f in enumerate([20.0, 21.0, 22.0])
    }
    runs.update(
        {
            f"constant lr | seed {s} | 800 steps, 1 thread": _run("constant lr", s, f, 0.95)
            for s, f in enumerate([10.0, 11.0, 12.0])
        }
    )  # far apart: shown
    runs.update(
        {
            f"min-SNR 5 | seed {s} | 800 steps, 1 thread": _run("min-SNR 5", s, f, 0.9)
            for s, f in enumerate([19.0, 23.0])
        }
    )  # inside the noise
    runs["logit-normal | seed 0 | 800 steps, 1 thread"] = _run(
        "logit-normal", 0, 5.0, 0.99
    )  # one seed: no test
    text = lever_verdicts(runs)
    p = welch([10.0, 11.0, 12.0], [20.0, 21.0, 22.0])["p"]
    assert (
        f"- constant lr (3 vs 3 seeds, ema w=1.25): FID-LeNet -10.00, class accuracy +5.0 points; Welch {fmt_p(p)}: "
        "lower FID-LeNet, shown" in text
    )
    assert (
        "- min-SNR 5 (2 vs 3 seeds, ema w=1.25): FID-LeNet +0.00" in text
        and "no difference shown" in text
    )
    assert "logit-normal" not in text and text.startswith("Levers at 800 steps, 1 thread")


def test_mean_sd_and_fmt_p():
    m, sd = mean_sd([5.0, 5.4, 5.2])
    assert m == pytest.approx(5.2) and sd == pytest.approx(0.2)  # n - 1 in the denominator
    m, sd = mean_sd([3.0])
    assert m == 3.0 and math.isnan(sd)
    assert [fmt_p(p) for p in (0.0042, 0.0004, 1.0, None)] == [
        "p = 0.004",
        "p < 0.001",
        "p = 1.000",
        "p n/a",
    ]


def test_an_earlier_form_of_the_recipe_is_compared_not_summarised():
    """Runs stored under "20 min, 2 threads, train.lr=0.001" are the recipe before a change of lr:
    the target verdict judges the recipe as it is, and recipe_changes sets the two side by side."""
    runs = {
        f"recipe | seed {s} | 20 min, 2 threads": _run("recipe", s, f, a)
        for s, (f, a) in enumerate([(4.8, 0.98), (4.9, 0.982), (5.4, 0.975)])
    }
    old = [(5.7, 0.975), (6.0, 0.973), (6.0, 0.97)]
    runs.update(
        {
            f"recipe | seed {s} | 20 min, 2 threads, train.lr=0.001": _run("recipe", s, f, a)
            for s, (f, a) in enumerate(old)
        }
    )
    assert base_keys("20 min, 2 threads, train.lr=0.001") == ["train.lr=0.001"]
    assert base_keys("1500 steps, 1 thread") == []
    assert summary_budget(runs) == "20 min, 2 threads"
    assert "FID-LeNet 5.03 +- 0.32" in target_summary(runs)
    text = recipe_changes(runs)
    t = welch([4.8, 4.9, 5.4], [5.7, 6.0, 6.0])
    ta = welch([98.0, 98.2, 97.5], [97.5, 97.3, 97.0])
    assert text.startswith(
        "The recipe against its earlier form with train.lr=0.001, both at 20 min, 2 threads"
    )
    assert (
        f"- ema w=1.25 (3 vs 3 seeds): FID-LeNet {t['diff']:+.2f} (Welch p = {t['p']:.3f}: "
        f"lower FID-LeNet, shown), class accuracy {ta['diff']:+.1f} points (p = {ta['p']:.3f})"
    ) in text
    assert t["p"] < 0.05
    only_old = {k: v for k, v in runs.items() if "train.lr" in k}
    assert summary_budget(only_old) is None and recipe_changes(only_old) == ""
    lever_runs = {k.replace("20 min, 2 threads", "800 steps, 1 thread"): v for k, v in runs.items()}
    lever_runs.update(
        {
            f"lr 2e-3 | seed {s} | 800 steps, 1 thread, train.lr=0.001": _run("lr 2e-3", s, f, 0.98)
            for s, f in enumerate([4.0, 4.2])
        }
    )
    assert (
        "Levers at 800 steps, 1 thread, each against the recipe with train.lr=0.001"
        in lever_verdicts(lever_runs)
    )
