"""The guidance study's analysis (diffussm_lib.evaluation.guidance_study) on synthetic runs whose
answer is known: a large, consistent change is shown, a change inside the seed noise is not, the
tests are paired by seed and Holm-corrected over the statement, seconds never mix machines."""

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from diffussm_lib.evaluation import guidance_study as gs
from diffussm_lib.evaluation.stats import holm, paired

ROOT = Path(__file__).resolve().parents[1]
XEON, EPYC = "CPU Intel(R) Xeon(R) Processor, 1 torch threads", "CPU AMD EPYC, 1 torch threads"


def fake_run(w, seed, rng, **over):
    """A result as bench_guidance stores it: recall falls with w by far more than the noise,
    coverage moves by less than the noise; class accuracy rises; the seed shifts every metric a
    little at every w (the same x_T), which the paired test removes."""
    shift = 0.01 * seed
    run = dict(
        n=2000,
        sampler="dpm_solver++",
        steps=15,
        seed=seed,
        guidance=w,
        fid=3.0 + 5.0 * abs(w - 1) + rng.gauss(0, 0.1) + 10 * shift,
        floor=2.7 + rng.gauss(0, 0.1),
        class_accuracy=min(1.0, 0.1 + 0.87 * min(w, 1) + 0.01 * max(w - 1, 0)) - shift,
        precision=0.6 + 0.1 * w + rng.gauss(0, 0.005),
        recall=0.9 - 0.1 * w + rng.gauss(0, 0.002) + shift,
        density=0.4 + 0.3 * w + rng.gauss(0, 0.01),
        coverage=0.5 + rng.gauss(0, 0.02),
        sample_seconds=100.0 * (2 if w not in (0, 1) else 1) + seed,
        threads=1,
        hardware=XEON,
    )
    run.update({f"real_{k}": 0.9 for k in gs.MANIFOLD})
    run.update(over)
    return run


def fake_runs(ws=(0.0, 1.0, 3.0), seeds=(0, 1, 2), seed=0, **over):
    rng = random.Random(seed)
    return {
        gs.run_id(w, s, "dpm_solver++", 15, 2000): fake_run(w, s, rng, **over)
        for w in ws
        for s in seeds
    }


def test_select_groups_by_w_and_filters_the_setting():
    runs = fake_runs()
    runs["other"] = dict(fake_run(1.0, 5, random.Random(1)), steps=25)
    groups = gs.select(runs, 2000, "dpm_solver++", 15)
    assert list(groups) == [0.0, 1.0, 3.0]
    assert [r["seed"] for r in groups[1.0]] == [0, 1, 2]  # the DPM 25 run is not here


def test_changes_are_paired_by_seed_and_holm_corrected():
    groups = gs.select(fake_runs(), 2000, "dpm_solver++", 15)
    cs = gs.changes(groups)
    assert [(c["a"], c["b"]) for c in cs] == [(1.0, 3.0)] * 6 + [(0.0, 1.0)] * 6
    by = {(c["a"], c["key"]): c for c in cs}
    # the test is the paired t-test of b minus a over the shared seeds, computed here independently
    rec = by[(1.0, "recall")]
    a = [r["recall"] for r in groups[1.0]]
    b = [r["recall"] for r in groups[3.0]]
    assert rec["test"]["p"] == pytest.approx(paired(b, a)["p"])
    assert rec["mean_b"] - rec["mean_a"] == pytest.approx(-0.2, abs=0.01)
    # Holm over all twelve tests, in the order made
    expected = holm([c["test"]["p"] for c in cs])["adjusted"]
    assert [c["holm_p"] for c in cs] == pytest.approx(expected)
    assert rec["shown"]  # -0.2 against noise of 0.002: shown
    assert not by[(1.0, "coverage")]["shown"]  # no true change: not shown here
    text = gs.tradeoff(groups)
    assert "FID-LeNet is lowest at w = 1 " in text
    assert "recall falls from" in text and "Holm" in text and "over 3 seeds" in text


def test_a_change_without_two_shared_seeds_is_not_tested():
    runs = fake_runs(ws=(1.0,), seeds=(0, 1, 2))
    runs.update(fake_runs(ws=(2.0,), seeds=(0,)))
    groups = gs.select(runs, 2000, "dpm_solver++", 15)
    cs = gs.changes(groups)
    assert all(c["test"] is None and c["seeds"] == 1 for c in cs)
    assert "1 seed(s) at both ends: no test" in gs.tradeoff(groups)


def test_no_true_change_is_shown_rarely():
    """Over many simulated sweeps with no change from w = 1 to w = 2 in any metric, some change is
    shown in at most about 5% of them (Holm keeps the family-wise rate at 5%)."""
    false = 0
    trials = 300
    for i in range(trials):
        rng = random.Random(100 + i)
        runs = {}
        for w in (1.0, 2.0):
            for s in range(3):
                r = fake_run(1.0, s, rng)  # every w the same model
                runs[gs.run_id(w, s, "dpm_solver++", 15, 2000)] = dict(r, guidance=w)
        cs = gs.changes(gs.select(runs, 2000, "dpm_solver++", 15))
        false += any(c["shown"] for c in cs)
    assert false / trials <= 0.09


def test_seconds_never_share_a_cell_across_machines():
    runs = fake_runs(ws=(1.0,), seeds=(0, 1))
    runs.update(
        {
            k + " epyc": dict(r, hardware=EPYC, sample_seconds=400.0)
            for k, r in fake_runs(ws=(1.0,), seeds=(2,)).items()
        }
    )
    header, rows = gs.seconds_rows(gs.select(runs, 2000, "dpm_solver++", 15))
    assert header == ["w", EPYC, XEON]
    assert rows == [["1", "400 (1)", "100 (2)"]]  # median of 100 and 101, rounded


def test_markdown_and_plot(tmp_path):
    groups = gs.select(fake_runs(), 2000, "dpm_solver++", 15)
    text = gs.markdown("guidance.json", "a setting", groups, "guidance.png")
    assert "| real data | 3 |" in text and "![the metrics against w](guidance.png)" in text
    gs.plot(groups, tmp_path / "g.png", "title")
    assert (tmp_path / "g.png").stat().st_size > 10_000


def test_the_stored_report_is_the_stored_runs():
    """benchmarks/results/guidance.md is what --table writes from guidance.json today."""
    out = ROOT / "benchmarks" / "results" / "guidance.json"
    md = out.with_suffix(".md")
    report = json.loads(out.read_text())
    assert all("hardware" in r for r in report["runs"].values())
    r0 = next(iter(report["runs"].values()))
    groups = gs.select(report["runs"], r0["n"], r0["sampler"], r0["steps"])
    assert gs.tradeoff(groups) in md.read_text()
    assert gs.markdown_table(*gs.table_rows(groups)) in md.read_text()


def test_bench_guidance_table_runs(tmp_path):
    """The script's --table path on a stored report: it prints the table and the trade-off."""
    out = tmp_path / "g.json"
    out.write_text(json.dumps({"runs": fake_runs(), "environment": "test"}))
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_guidance.py"), "--table"]
        + ["--out", str(out), "--plot", str(tmp_path / "g.png")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "trade-off, computed from the runs" in done.stdout
    assert (tmp_path / "g.md").is_file() and (tmp_path / "g.png").is_file()


def test_the_readme_guidance_block_is_the_stored_runs():
    """The README's guidance block is ``bench_guidance.py --readme`` of the stored report."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- guidance -->\n", 1)[1].split("<!-- /guidance -->", 1)[0].strip()
    report = json.loads((ROOT / "benchmarks" / "results" / "guidance.json").read_text())
    assert block == gs.readme_block(report).strip(), (
        "run `python benchmarks/bench_guidance.py --readme` into the README"
    )
