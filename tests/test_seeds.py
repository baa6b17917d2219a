"""Results over seeds (diffussm_lib/evaluation/seeds.py): mean ± SD, Welch's test against the base,
Holm's correction over a budget's family, the verdicts; and the benchmark's report handling."""

import json
import math
import random
import re

import pytest

from diffussm_lib.evaluation import seeds
from diffussm_lib.evaluation.seeds import (
    BASE,
    CLAIMS,
    Claim,
    budget_kind,
    budget_name,
    compare,
    conclusions,
    family_note,
    judgement,
    main_budget,
    markdown_table,
    markdown_verdicts,
    plot,
    summarise,
    summary_text,
    verdict,
)
from diffussm_lib.evaluation.stats import holm, welch

STEPS = "3000 steps, recipe"
TIME = "10.0 min, recipe"
SNAKE = next(c for c in CLAIMS if c.variant == "snake")
RANDOM = next(c for c in CLAIMS if c.variant == "random")
M1_STEPS = next(c for c in CLAIMS if c.variant == "M = 1" and c.kind == "steps")
SNAKE_WORSE = Claim("test", "snake is worse than raster", "snake", "base better", "steps")


def run(variant, seed, fid, acc=0.9, loss=0.12, steps=3000, budget=STEPS):
    return f"{variant} | seed {seed} | {budget}", dict(
        variant=variant,
        seed=seed,
        fid=fid,
        class_accuracy=acc,
        final_loss=loss,
        steps=steps,
        n=2000,
        floor=2.7,
        sampler="ddim",
        sample_steps=25,
        guidance=1.25,
        sample_seed=1000 + seed,
    )


def arm(variant, fids, budget=STEPS, **kw):
    return [run(variant, i, f, budget=budget, **kw) for i, f in enumerate(fids)]


def rows_of(*arms, budget=STEPS):
    runs = dict(r for a in arms for r in a)
    return summarise(runs, order=[BASE, "snake", "random", "M = 1"])[budget]


BASE_FIDS = (18.0, 18.5, 19.0)  # mean 18.5, SD 0.5


def test_mean_and_sample_sd_per_variant_and_budget():
    t = summarise(
        dict(
            arm(BASE, BASE_FIDS)
            + arm("snake", (30.0,))
            + arm(BASE, (50.0, 52.0), budget=TIME, steps=2700)
        ),
        order=[BASE, "snake"],
    )
    assert set(t) == {STEPS, TIME}
    s = t[STEPS][BASE]
    assert s["seeds"] == 3 and s["fid"] == pytest.approx((18.5, 0.5)) and s["steps"] == 3000
    assert s["per_seed"] == {
        "seed": [0, 1, 2],
        "fid": [18.0, 18.5, 19.0],
        "class_accuracy": [0.9] * 3,
        "final_loss": [0.12] * 3,
    }
    assert s["evaluation"] == ["ddim 25 steps, guidance 1.25, sampling seed 1000 + training seed"]
    assert t[TIME][BASE]["fid"] == pytest.approx((51.0, math.sqrt(2.0)))  # SD, not the spread
    assert t[STEPS]["snake"]["fid"][0] == 30.0 and math.isnan(t[STEPS]["snake"]["fid"][1])
    assert list(t[STEPS]) == [BASE, "snake"]


def test_budget_names_say_their_kind():
    assert budget_name(steps=3000) == STEPS and budget_kind(STEPS) == "steps"
    assert budget_name(minutes=10) == TIME and budget_kind(TIME) == "time"
    assert budget_name(minutes=0.05) == "0.05 min, recipe"
    assert budget_kind("20.0 min, width 64, batch 64") == "time"  # the earlier study's
    assert budget_kind("something else") is None
    with pytest.raises(ValueError):
        budget_name(steps=3, minutes=1.0)
    t = summarise(dict(arm(BASE, BASE_FIDS) + arm(BASE, BASE_FIDS, budget=TIME)))
    t_more = summarise(dict(arm(BASE, BASE_FIDS) + arm(BASE, (1, 2, 3, 4), budget=TIME)))
    assert main_budget(t, "steps") == STEPS and main_budget(t_more) == TIME
    assert main_budget(summarise(dict(arm(BASE, BASE_FIDS))), "time") is None


def test_a_clear_difference_with_three_seeds_holds_with_its_p_value():
    rows = rows_of(arm(BASE, BASE_FIDS), arm("snake", (15.0, 15.5, 16.0)))
    # Welch: diff -3, SE sqrt(0.25/3 + 0.25/3), t = -7.35 on 4 df: p = 0.0018; a family of one
    t = compare(rows)["snake"]["fid"]
    assert t["diff"] == pytest.approx(-3.0) and t["p"] == pytest.approx(0.00183, abs=1e-4)
    assert t["holm"] == t["p"] and t["decided"]
    text, test = verdict(rows, SNAKE)
    assert test == t
    assert text == (
        "holds for this S4D model on MNIST at this budget (FID-LeNet 15.50 ± 0.50 vs 18.50 ± 0.50, "
        "3 vs 3 seeds, Welch p = 0.002, Holm p = 0.002)"
    )


def test_no_difference_is_not_shown_and_never_called_equal():
    rows = rows_of(arm(BASE, BASE_FIDS), arm("snake", (18.2, 18.9, 18.4)))
    text, test = verdict(rows, SNAKE)
    assert text.startswith("not shown at this budget (FID-LeNet 18.50 ± 0.36 vs 18.50 ± 0.50")
    assert f"Welch p = {test['p']:.3f}" in text and test["p"] > 0.5
    assert "equal" not in text and "holds" not in text


@pytest.mark.parametrize("n_variant, n_base", [(2, 3), (3, 2), (1, 3)])
def test_fewer_than_three_seeds_decide_nothing(n_variant, n_base):
    rows = rows_of(arm(BASE, BASE_FIDS[:n_base]), arm("snake", (10.0, 10.1, 10.2)[:n_variant]))
    text, _ = verdict(rows, SNAKE)
    assert text.startswith(f"not decided: {n_variant} vs {n_base} seeds")
    tests = compare(rows)
    assert "snake" not in tests or tests["snake"]["fid"]["holm"] is None  # outside the family


def test_holm_runs_over_the_family_of_one_budget():
    base = arm(BASE, (10.0, 11.0, 12.0))
    clear = arm("snake", (13.0, 14.0, 15.0))  # diff +3, t = 3.67 on 4 df: p = 0.021
    others = [arm(v, (10.2, 11.0, 11.8)) for v in ("hilbert", "random")]  # p near 1
    alone = rows_of(base, clear)
    assert verdict(alone, SNAKE_WORSE)[0].startswith("holds")
    family = rows_of(base, clear, *others)
    tests = compare(family)
    raw = [tests[v]["fid"]["p"] for v in ("snake", "hilbert", "random")]
    assert raw[0] == pytest.approx(0.0213, abs=5e-4)
    assert [tests[v]["fid"]["holm"] for v in ("snake", "hilbert", "random")] == pytest.approx(
        holm(raw)["adjusted"]
    )
    assert tests["snake"]["fid"]["holm"] == pytest.approx(3 * raw[0])  # the smallest p, times 3
    text = verdict(family, SNAKE_WORSE)[0]
    assert text.startswith("not shown at this budget") and "Welch p = 0.021, Holm p = 0.064" in text
    # a 2-seed variant is outside the family: it does not change the others' Holm p
    with_two = rows_of(base, clear, *others, arm("causal", (30.0, 31.0)))
    assert compare(with_two)["snake"]["fid"]["holm"] == pytest.approx(3 * raw[0])


def test_a_significant_difference_against_the_prediction_is_the_other_way():
    rows = rows_of(arm(BASE, BASE_FIDS), arm("random", (15.0, 15.5, 16.0)))
    text = verdict(rows, RANDOM)[0]
    assert text.startswith(
        "the other way for this S4D model on MNIST at this budget (FID-LeNet 15.50 ± 0.50 vs 18.50"
    )
    assert verdict(rows_of(arm(BASE, BASE_FIDS), arm("random", (25, 26, 27))), RANDOM)[
        0
    ].startswith("holds for this S4D model on MNIST at this budget")
    assert verdict(rows_of(arm(BASE, BASE_FIDS)), RANDOM)[0] == "not in the stored results"


def test_higher_class_accuracy_and_lower_loss_are_better():
    base = [run(BASE, i, 18.0, acc=a, loss=0.12) for i, a in enumerate((0.80, 0.81, 0.82))]
    snake = [
        run("snake", i, 18.0, acc=a, loss=0.10 + i / 1e3) for i, a in enumerate((0.9, 0.91, 0.92))
    ]
    tests = compare(rows_of(base, snake))["snake"]
    assert judgement(tests["class_accuracy"], "class_accuracy") == "better, shown"
    assert judgement(tests["final_loss"], "final_loss") == "better, shown"
    assert judgement(tests["fid"], "fid") == "not shown"
    worse = [run("snake", i, 18.0, acc=a) for i, a in enumerate((0.70, 0.71, 0.72))]
    assert judgement(
        compare(rows_of(base, worse))["snake"]["class_accuracy"], "class_accuracy"
    ) == ("worse, shown")


@pytest.mark.parametrize(
    "m1_fids, start, end",
    [
        (
            (21.0, 21.5, 22.0),
            "M = 2 better (FID-LeNet 21.50 ± 0.50 vs 18.50 ± 0.50, 3 vs 3 seeds, Welch p = 0.002",
            "): the claim holds for this S4D model on MNIST at this budget",
        ),
        (
            (15.0, 15.5, 16.0),
            "M = 1 better (FID-LeNet 15.50 ± 0.50 vs 18.50 ± 0.50, 3 vs 3 seeds, Welch p = 0.002",
            "): the claim does not hold for this S4D model on MNIST at this budget",
        ),
        ((18.2, 18.9, 18.4), "no difference shown (FID-LeNet 18.50 ± 0.36 vs 18.50 ± 0.50", ")"),
    ],
)
def test_the_match_claim_names_the_better_arm_or_shows_no_difference(m1_fids, start, end):
    text, test = verdict(rows_of(arm(BASE, BASE_FIDS), arm("M = 1", m1_fids)), M1_STEPS)
    assert text.startswith(start) and text.endswith(end)
    assert f"Welch p = {test['p']:.3f}, Holm p = {test['holm']:.3f}" in text
    assert "equal" not in text


def test_each_claim_is_judged_at_the_budget_of_its_kind():
    runs = dict(
        arm(BASE, BASE_FIDS)
        + arm("M = 1", (18.2, 18.9, 18.4))  # equal steps: no difference shown
        + arm("snake", (15.0, 15.5, 16.0))
        + arm(BASE, BASE_FIDS, budget=TIME, steps=2700)
        + arm("M = 1", (21.0, 21.5, 22.0), budget=TIME, steps=1900)  # equal time: M = 2 better
    )
    verdicts, text = conclusions(summarise(runs))
    assert set(verdicts) == {(c.variant, c.kind) for c in CLAIMS}
    assert verdicts[("M = 1", "steps")].startswith("no difference shown")
    assert verdicts[("M = 1", "time")].startswith("M = 2 better")
    assert verdicts[("snake", "steps")].startswith("holds for this S4D model on MNIST")
    assert verdicts[("causal", "steps")] == "not in the stored results"
    assert verdicts[("patch 2 (same cost)", "time")] == "not in the stored results"
    assert text.index(STEPS) < text.index("[ZigMa]") < text.index(TIME)
    assert "ZigMa ran selective Mamba blocks" in text  # where the course's version differs
    assert conclusions({}) == ({}, "No stored runs, so no claim is decided here.")
    only_steps = conclusions(summarise(dict(arm(BASE, BASE_FIDS))))[0]
    assert only_steps[("M = 1", "time")] == "no stored runs at equal training time"


def test_markdown_outputs_carry_the_tests():
    runs = dict(
        arm(BASE, BASE_FIDS)
        + arm("snake", (15.0, 15.5, 16.0))
        + arm("random", (18.2, 18.9, 18.4))
        + arm("hilbert", (17.0,))
    )
    t = summarise(runs, order=[BASE, "snake", "random", "hilbert"])
    md = markdown_table(t).splitlines()
    assert md[2] == (
        "| variant | seeds | steps | FID-LeNet | class accuracy | final loss | FID vs raster |"
    )
    assert md[4] == (
        "| raster | 3 | 3000 | 18.50 ± 0.50 | 90.0% ± 0.0 | 0.1200 ± 0.0000 | (the base) |"
    )
    p_snake = welch([15.0, 15.5, 16.0], list(BASE_FIDS))["p"]
    assert md[5] == (
        "| snake | 3 | 3000 | 15.50 ± 0.50 | 90.0% ± 0.0 | 0.1200 ± 0.0000 | -3.00, Welch p = "
        f"{p_snake:.3f}, Holm p = {min(1, 2 * p_snake):.3f}: better, shown |"
    )
    assert md[7] == "| hilbert | 1 | 3000 | 17.00 | 90.0% | 0.1200 | no test: one seed on a side |"
    assert "2 comparisons share the raster base (a family)" in "\n".join(md)
    verdicts = markdown_verdicts(t)
    assert verdicts.startswith(f"Verdicts at {STEPS}, equal steps")
    assert "(variant *snake*): holds for this S4D model on MNIST at this budget" in verdicts
    assert f"Welch p = {p_snake:.3f}, Holm p = {2 * p_snake:.3f}" in verdicts
    assert "- locality: a locality-preserving curve (Hilbert) beats the raster sweep (variant " in (
        verdicts
    )
    assert "not decided: 1 vs 3 seeds" in verdicts
    assert markdown_verdicts({}) == ""
    text = summary_text(t, matched_width=56)
    snake_line = (
        "snake minus raster: FID-LeNet -3.00 (Welch p = 0.002, Holm p = 0.004: better, shown)"
    )
    assert snake_line in text
    assert "class accuracy +0.0 points" in text and "hilbert minus raster: no test" in text


def test_runs_evaluated_differently_are_flagged():
    other = run("snake", 0, 20.0)
    other[1]["guidance"] = 1.0
    same = markdown_table(summarise(dict(arm(BASE, BASE_FIDS) + arm("snake", (20.0,)))))
    mixed = markdown_table(summarise(dict(arm(BASE, BASE_FIDS) + [other])))
    assert (
        "MIXED" not in same and "2000 class-balanced samples, ddim 25 steps, guidance 1.25," in same
    )
    assert "MIXED EVALUATIONS, not comparable: " in mixed and "guidance 1, sampling" in mixed


def test_the_family_note_states_the_uncorrected_rate_once():
    assert "would be up to 0.30 (1 - 0.95^7)" in family_note(7)
    assert "Holm's correction keeps it at most 0.05" in family_note(7)
    assert family_note(0).startswith("No comparison")


def test_holm_keeps_false_verdicts_of_null_families_near_alpha(monkeypatch):
    """1,500 synthetic experiments with no real difference: 7 variants and raster, 3 seeds each,
    every FID-LeNet N(20, 1). The verdicts' family-wise rate of a false "holds" / "the other way"
    stays at most about alpha (0.05 + Monte-Carlo slack); the uncorrected tests' rate is several
    times it (so the simulation can tell the two apart). The verdicts rest on FID-LeNet alone, so
    only it is summarised and tested here (fast)."""
    monkeypatch.setattr(seeds, "METRICS", {"fid": seeds.METRICS["fid"]})
    rng = random.Random(29)
    claims = [Claim("sim", "x", f"v{i}", "variant better", "steps") for i in range(7)]
    names = [BASE] + [c.variant for c in claims]
    false_verdict = false_raw = 0
    n_exp = 1500
    for _ in range(n_exp):
        runs = {}
        for v in names:
            for s in range(3):
                runs[f"{v} | seed {s} | {STEPS}"] = dict(
                    variant=v,
                    seed=s,
                    fid=rng.gauss(20.0, 1.0),
                    steps=3000,
                    n=2000,
                    floor=2.7,
                )
        rows = summarise(runs)[STEPS]
        tests = compare(rows)
        texts = [verdict(rows, c, tests)[0] for c in claims]
        false_verdict += any(t.startswith(("holds", "the other way")) for t in texts)
        false_raw += any(tests[c.variant]["fid"]["p"] <= 0.05 for c in claims)
    assert false_verdict / n_exp <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / n_exp)  # 0.067 (here 0.03)
    assert false_raw / n_exp > 0.12  # (here about 0.17)


# ----------------------------------------------------------------------------- the benchmark


def load_bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scan_orders.py"
    spec = importlib.util.spec_from_file_location("bench_scan_orders", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_merging_reports_made_in_parallel(tmp_path):
    """``bench_scan_orders.py --merge``: runs made by another process on a copy of the report are
    added; a time budget's different calibration, or the same run id with other results, is
    refused and nothing is written. Equal-steps budgets have no calibration to compare."""
    merge = load_bench().merge_reports
    cal = {TIME: {"raster": {"images_per_sec": 224.4}}}
    main, other = tmp_path / "main.json", tmp_path / "seed1.json"
    main.write_text(json.dumps({"calibration": cal, "runs": dict([run(BASE, 0, 18.0)])}))
    other.write_text(
        json.dumps(
            {
                "calibration": cal,
                "runs": dict(
                    [run(BASE, 0, 18.0), run(BASE, 1, 20.0), run(BASE, 1, 9, budget=TIME)]
                ),
            }
        )
    )
    merge(main, [other])
    assert sorted(json.loads(main.read_text())["runs"]) == sorted(
        [run(BASE, 0, 0)[0], run(BASE, 1, 0)[0], run(BASE, 1, 0, budget=TIME)[0]]
    )
    before = main.read_text()
    other.write_text(json.dumps({"calibration": cal, "runs": dict([run(BASE, 1, 25.0)])}))
    with pytest.raises(SystemExit, match="different results"):
        merge(main, [other])
    other.write_text(
        json.dumps(
            {
                "calibration": {TIME: {"raster": {"images_per_sec": 100.0}}},
                "runs": dict([run("M = 1", 1, 25.0, budget=TIME)]),
            }
        )
    )
    with pytest.raises(SystemExit, match="calibrated differently"):
        merge(main, [other])
    with pytest.raises(SystemExit, match="no such report"):
        merge(main, [tmp_path / "missing.json"])
    assert main.read_text() == before
    other_time = "5.0 min, recipe"  # a time budget new to main: its calibration comes along
    new_cal = {other_time: {"raster": {"images_per_sec": 99.0}}}
    other.write_text(
        json.dumps({"calibration": new_cal, "runs": dict([run(BASE, 0, 30, budget=other_time)])})
    )
    merge(main, [other])
    assert json.loads(main.read_text())["calibration"] == {**cal, **new_cal}


def test_a_finished_run_keeps_the_runs_stored_meanwhile(tmp_path):
    """The benchmark writes each finished run into the report as it is on disk then, so runs that
    another process (or ``--merge``) stored since this one started are not lost."""
    store = load_bench().store_run
    out = tmp_path / "report.json"
    mine = {"calibration": {}, "runs": dict([run(BASE, 0, 18.0)])}  # what this process read
    out.write_text(
        json.dumps({"calibration": {}, "runs": dict([run(BASE, 0, 18.0), run(BASE, 1, 17.7)])})
    )
    rid, result = run("snake", 0, 32.2)
    store(out, mine, rid, result)
    stored = json.loads(out.read_text())["runs"]
    assert (
        sorted(stored) == sorted([run(BASE, 0, 0)[0], run(BASE, 1, 0)[0], rid])
        and stored[rid] == result
    )
    # a calibration another process stored after this one read the report is kept too
    cal = {TIME: {"raster": {"images_per_sec": 230.0}}}
    on_disk = json.loads(out.read_text())
    out.write_text(json.dumps(dict(on_disk, calibration=cal, matched_width=56)))
    store(out, mine, *run("snake", 1, 30.0))
    stored = json.loads(out.read_text())
    assert stored["calibration"] == cal and stored["matched_width"] == 56
    assert len(stored["runs"]) == 4


def test_processes_storing_at_once_lose_no_run(tmp_path):
    """Four writers store 25 runs each into one report at the same time (``file_lock``): every
    run is there at the end (without the lock, one writer's read-fold-write overwrites
    another's)."""
    import threading

    store = load_bench().store_run
    out = tmp_path / "report.json"

    def writer(w):
        for i in range(25):
            rid, result = run(f"v{w}", i, 20.0)
            store(out, {"runs": {}}, rid, result)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(json.loads(out.read_text())["runs"]) == 100


@pytest.mark.parametrize(
    "argv, wrong",
    [
        (["--steps", "3", "--variants", "raster", "patch 2 (same cost)"], "patch 2 (same cost)"),
        (["--minutes", "1", "--variants", "raster", "snake"], "snake"),
    ],
)
def test_each_budget_kind_runs_only_its_variants(monkeypatch, tmp_path, argv, wrong):
    """Equal steps for the orders and the paper's settings, equal time only where costs differ."""
    bench = load_bench()
    assert set(bench.STEPS_VARIANTS) | set(bench.TIME_VARIANTS) == set(bench.VARIANTS)
    assert bench.TIME_VARIANTS == [BASE, "M = 1", "patch 2 (same cost)"]
    monkeypatch.setattr("sys.argv", ["bench", *argv, "--out", str(tmp_path / "r.json")])
    with pytest.raises(SystemExit, match=re.escape(f"variants ['{wrong}'] are not run at")):
        bench.main()


def test_the_plot_has_a_panel_per_budget(tmp_path):
    pytest.importorskip("matplotlib")
    runs = dict(arm(BASE, BASE_FIDS) + arm("snake", (15.0,)) + arm(BASE, (20, 21, 22), budget=TIME))
    runs["snake | seed 0 | " + STEPS]["floor"] = 5.0  # another variant's seeds, another floor
    path = tmp_path / "p.png"
    fig = plot(summarise(runs), path)
    assert path.stat().st_size > 1000
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 2 and "steps" in titles[0] and "equal training time" in titles[1]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [BASE, "snake"]
    # the floor drawn is the tables' (the base's seeds), not a mean over every variant
    assert fig.axes[0].get_legend_handles_labels()[1] == ["real-vs-real floor 2.70"]
