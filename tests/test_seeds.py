"""Results over seeds (diffussm_lib/evaluation/seeds.py): means, spreads, the spread rule, verdicts."""

import pytest

from diffussm_lib.evaluation.seeds import (
    BASE,
    CLAIMS,
    conclusions,
    judgement,
    markdown_table,
    markdown_verdicts,
    summarise,
    summary_text,
    verdict,
    versus,
)

BUDGET = "20.0 min, width 64, batch 64"


def run(variant, seed, fid, acc=0.9, loss=0.12, steps=4000, budget=BUDGET):
    return f"{variant} | seed {seed} | {budget}", dict(
        variant=variant,
        seed=seed,
        fid=fid,
        class_accuracy=acc,
        final_loss=loss,
        steps=steps,
        n=2000,
        floor=2.7,
    )


def table_of(*rows):
    return summarise(dict(rows), order=[BASE, "snake", "random", "causal", "M = 1"])


def test_mean_and_spread_per_variant_and_budget():
    t = table_of(
        run(BASE, 0, 18.0),
        run(BASE, 1, 20.0, steps=4100),
        run("snake", 0, 30.0),
        run(BASE, 0, 50.0, budget="1.0 min, width 64, batch 64"),
    )
    assert set(t) == {BUDGET, "1.0 min, width 64, batch 64"}
    s = t[BUDGET][BASE]
    assert s["seeds"] == 2 and s["fid"] == (19.0, 2.0) and s["steps"] == 4050 and s["n"] == 2000
    assert list(t[BUDGET]) == [BASE, "snake"]  # the given order first
    assert t[BUDGET]["snake"]["fid"] == (30.0, 0.0)


@pytest.mark.parametrize(
    "snake_fids, say",
    [
        ((30.0, 31.0), "worse beyond the spread"),
        ((14.0, 15.0), "better beyond the spread"),
        ((17.0, 22.0), "within the spread"),
        ((30.0,), "one seed, no spread"),
    ],
)
def test_a_difference_counts_only_beyond_the_seed_spread(snake_fids, say):
    t = table_of(
        run(BASE, 0, 18.0),
        run(BASE, 1, 20.0),
        *(run("snake", i, f) for i, f in enumerate(snake_fids)),
    )
    rows = t[BUDGET]
    assert judgement(rows["snake"], rows[BASE], "fid") == say
    diff, spread, decided = versus(rows["snake"], rows[BASE], "fid")
    assert diff == pytest.approx(sum(snake_fids) / len(snake_fids) - 19.0)
    assert decided == (None if "one seed" in say else "beyond" in say)


def test_higher_class_accuracy_is_better():
    t = table_of(
        run(BASE, 0, 18.0, acc=0.80),
        run(BASE, 1, 18.0, acc=0.81),
        run("snake", 0, 18.0, acc=0.90),
        run("snake", 1, 18.0, acc=0.91),
    )
    assert (
        judgement(t[BUDGET]["snake"], t[BUDGET][BASE], "class_accuracy")
        == "better beyond the spread"
    )


def test_verdicts_follow_the_predicted_direction():
    t = table_of(
        run(BASE, 0, 18.0),
        run(BASE, 1, 19.0),
        run("causal", 0, 25.0),
        run("causal", 1, 26.0),
        run("random", 0, 12.0),
        run("random", 1, 13.0),
        run("M = 1", 0, 18.2),
        run("M = 1", 1, 19.4),
        run("snake", 0, 30.0),
    )
    rows = t[BUDGET]
    assert verdict(rows, "causal", "base better")[0] == "holds at this budget"
    assert verdict(rows, "random", "base better")[0].startswith("does not hold")
    assert verdict(rows, "M = 1", "match")[0].startswith("consistent")
    assert verdict(rows, "snake", "variant better")[0].startswith(
        "cannot be decided: fewer than 2 seeds"
    )
    assert verdict(rows, "hilbert", "variant better")[0] == "not in the stored results"
    verdicts, text = conclusions(t)
    assert (
        set(verdicts) == {v for _, _, v, _ in CLAIMS}
        and verdicts["causal"] == "holds at this budget"
    )
    assert "[DiffuSSM] a bidirectional SSM beats a causal one: holds at this budget." in text
    assert conclusions({}) == ({}, "No stored runs, so no claim is decided here.")
    md = markdown_verdicts(t).splitlines()
    assert md[0].startswith(f"Verdicts at {BUDGET}") and len(md) == 2 + len(CLAIMS)
    assert (
        "- DiffuSSM: a bidirectional SSM beats a causal one (variant *causal*): holds at this budget."
        in md
    )
    assert (
        "- control: an order without locality (random) is worse than raster (variant *random*): does not hold"
        in "\n".join(md)
    )
    assert markdown_verdicts({}) == ""


def test_tables_show_every_variant():
    t = table_of(run(BASE, 0, 18.0), run(BASE, 1, 20.0), run("snake", 0, 30.0))
    md = markdown_table(t).splitlines()
    assert md[2].startswith("| variant | seeds | steps | FID-LeNet |")
    assert (
        md[4] == "| raster | 2 | 4000 | 19.00 ± 1.00 | 90.0% ± 0.0 | 0.1200 ± 0.0000 | (the base) |"
    )
    assert md[5] == "| snake | 1 | 4000 | 30.00 | 90.0% | 0.1200 | one seed, no spread |"
    text = summary_text(t)
    assert "snake minus raster: FID-LeNet +11.000 (spread 2.000: one seed, no spread)" in text


def load_bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scan_orders.py"
    spec = importlib.util.spec_from_file_location("bench_scan_orders", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_merging_reports_made_in_parallel(tmp_path):
    """``bench_scan_orders.py --merge``: runs made by another process on a copy of the report are added;
    a different calibration, or the same run id with other results, is refused and nothing is written."""
    import json

    merge = load_bench().merge_reports
    cal = {BUDGET: {"raster": {"images_per_sec": 224.4}}}
    main, other = tmp_path / "main.json", tmp_path / "seed1.json"
    main.write_text(json.dumps({"calibration": cal, "runs": dict([run(BASE, 0, 18.0)])}))
    other.write_text(
        json.dumps({"calibration": cal, "runs": dict([run(BASE, 0, 18.0), run(BASE, 1, 20.0)])})
    )
    merge(main, [other])
    assert sorted(json.loads(main.read_text())["runs"]) == sorted(
        [run(BASE, 0, 0)[0], run(BASE, 1, 0)[0]]
    )
    before = main.read_text()
    other.write_text(json.dumps({"calibration": cal, "runs": dict([run(BASE, 1, 25.0)])}))
    with pytest.raises(SystemExit, match="different results"):
        merge(main, [other])
    other.write_text(
        json.dumps(
            {
                "calibration": {BUDGET: {"raster": {"images_per_sec": 100.0}}},
                "runs": dict([run("snake", 1, 25.0)]),
            }
        )
    )
    with pytest.raises(SystemExit, match="calibrated differently"):
        merge(main, [other])
    with pytest.raises(SystemExit, match="no such report"):
        merge(main, [tmp_path / "missing.json"])
    assert main.read_text() == before


def test_a_finished_run_keeps_the_runs_stored_meanwhile(tmp_path):
    """The benchmark writes each finished run into the report as it is on disk then, so runs that
    another process (or ``--merge``) stored since this one started are not lost."""
    import json

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
