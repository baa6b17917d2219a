"""The sampler study's summary (diffussm_lib/evaluation/sampler_study.py): means over seeds, the paired
comparison with DDIM 25, the default the runs support, the timing's scaling, the README's block."""

import math

import pytest

from diffussm_lib.evaluation.sampler_study import (
    BASELINE,
    apply_timing,
    chosen_default,
    markdown,
    summarise,
    verdict,
    versus_baseline,
)

N, W = 2000, 1.2


def runs_of(fids: dict, seconds: dict | None = None) -> dict:
    """{(sampler, steps): [fid of seed 0, fid of seed 1, ...]} -> stored runs."""
    out = {}
    for (sampler, steps), per_seed in fids.items():
        for seed, fid in enumerate(per_seed):
            out[f"{sampler} {steps} | seed {seed} | n {N} | w {W:g}"] = dict(
                n=N,
                guidance=W,
                sampler=sampler,
                steps=steps,
                seed=seed,
                fid=fid,
                floor=3.0,
                class_accuracy=0.99,
                sample_seconds=(seconds or {}).get((sampler, steps), 10.0 * steps),
                session="s",
            )
    return out


def test_mean_sd_and_the_paired_difference():
    s = summarise(runs_of({BASELINE: [5.0, 5.4, 5.2], ("dpm_solver++", 10): [5.5, 6.0, 5.6]}), N, W)
    base = s[BASELINE]
    assert base["fid"] == pytest.approx(5.2) and base["fid_sd"] == pytest.approx(0.2)
    t = versus_baseline(s)[("dpm_solver++", 10)]
    # per-seed differences 0.5, 0.6, 0.4: mean 0.5, SD 0.1, t = 0.5 / (0.1 / sqrt 3) = 8.66, df 2
    assert t["diff"] == pytest.approx(0.5) and t["seeds"] == 3
    assert t["t"] == pytest.approx(0.5 / (0.1 / math.sqrt(3)))
    assert 0.01 < t["p"] < 0.02  # two-sided p of t = 8.66 at 2 degrees of freedom: 0.0131
    assert versus_baseline(s)[BASELINE] is None


def test_other_sample_counts_and_guidance_scales_are_left_out():
    runs = runs_of({BASELINE: [5.0, 5.4]})
    runs["ddim 25 | seed 0 | n 500 | w 1.2"] = dict(next(iter(runs.values())), n=500, fid=99.0)
    assert summarise(runs, N, W)[BASELINE]["fid"] == pytest.approx(5.2)
    assert summarise(runs, N, 2.0) == {}


@pytest.mark.parametrize(
    "dpm15, expected",
    [
        ([5.1, 5.5], ("dpm_solver++", 15)),  # within DDIM 25's mean + SD, fewer evaluations
        ([6.1, 6.5], ("dpm_solver++", 20)),  # beyond it: the next cheapest within
    ],
)
def test_the_default_is_the_cheapest_config_within_ddim25s_noise(dpm15, expected):
    s = summarise(
        runs_of(
            {
                BASELINE: [5.0, 5.4],
                ("dpm_solver++", 8): [7.0, 7.4],  # cheaper but worse
                ("dpm_solver++", 15): dpm15,
                ("dpm_solver++", 20): [5.0, 5.3],  # as good, but more evaluations than 15
            }
        ),
        N,
        W,
    )
    assert chosen_default(s) == expected
    assert f"the better default: {expected[0]} {expected[1]} steps" in verdict(s)


def test_ddim25_stays_when_nothing_cheaper_is_within_its_noise():
    s = summarise(runs_of({BASELINE: [5.0, 5.4], ("dpm_solver++", 10): [6.0, 6.4]}), N, W)
    assert chosen_default(s) == BASELINE
    assert verdict(s).endswith("(no cheaper config within DDIM 25's mean + SD)")


def test_a_config_with_one_seed_is_never_the_default():
    s = summarise(runs_of({BASELINE: [5.0, 5.4], ("dpm_solver++", 10): [4.0]}), N, W)
    assert chosen_default(s) == BASELINE


def test_timing_medians_replace_one_off_seconds_scaled_to_n():
    s = summarise(runs_of({BASELINE: [5.0, 5.4], ("dpm_solver++", 15): [5.1, 5.5]}), N, W)
    timing = dict(
        n=500,
        rounds=3,
        threads=2,
        guidance=W,
        batch_size=64,
        session="t",
        median={"ddim:25": 100.0},
        seconds={"ddim:25": [90.0, 100.0, 110.0]},
    )
    s = apply_timing(s, timing, N)
    assert s[BASELINE]["seconds"] == pytest.approx(400.0) and s[BASELINE]["timed"]
    assert "timed" not in s[("dpm_solver++", 15)]
    md = markdown(s, {"checkpoint_step": 7, "hardware": "CPU"}, timing, N, W)
    assert "| dpm_solver++ | 15 | 2 |" in md and "not timed" in md and "400 s (100%)" in md


def test_the_target_is_judged_at_ten_steps_or_fewer():
    fids = {BASELINE: [5.0, 5.4], ("dpm_solver++", 10): [5.1, 5.5]}
    s = summarise(runs_of(fids, seconds={BASELINE: 100.0, ("dpm_solver++", 10): 30.0}), N, W)
    assert verdict(s).splitlines()[-2] == "met at 10 steps (the fewest)"
    s = summarise(runs_of(fids, seconds={BASELINE: 100.0, ("dpm_solver++", 10): 50.0}), N, W)
    assert verdict(s).splitlines()[-2] == "not met"


def test_the_library_default_is_the_one_the_stored_study_supports():
    """DEFAULT_SAMPLER / DEFAULT_STEPS are what benchmarks/results/samplers.json supports by the
    rule above (change one, and the other must follow)."""
    import json
    from pathlib import Path

    from diffussm_lib.diffusion import DEFAULT_SAMPLER, DEFAULT_STEPS

    stored = json.loads(
        (Path(__file__).resolve().parents[1] / "benchmarks/results/samplers.json").read_text()
    )
    assert chosen_default(summarise(stored["runs"], 2000, 1.2)) == (DEFAULT_SAMPLER, DEFAULT_STEPS)
