"""Equal-budget comparisons (diffussm_lib.evaluation): variants, budgets, evaluation rows, scaling."""

import subprocess
import sys

import pytest
import torch

from _train_helpers import REPO, cli_env, one_thread, synthetic_dataset, tiny_config  # noqa: F401 (fixture)
from diffussm_lib.evaluation import (
    ABLATIONS,
    evaluate_run,
    results_table,
    scaling_rows,
    scaling_table,
    train_for_budget,
    variant,
)
from diffussm_lib.config import load_config
from diffussm_lib.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_ablation_builds_and_changes_only_its_keys():
    base = load_config(REPO / "configs" / "mnist_diffussm.yaml")
    seen = set()
    for name, overrides in ABLATIONS.items():
        cfg = variant(base, name, **overrides)
        assert cfg.train == base.train and cfg.diffusion == base.diffusion and cfg.data == base.data
        changed = {k for k in overrides if getattr(cfg.model, k) != getattr(base.model, k)}
        assert changed == set(overrides), name
        model = build_model(cfg.model)
        x = torch.randn(2, 1, 28, 28)
        assert model(x, torch.tensor([3, 900]), torch.tensor([1, 10])).shape == x.shape
        seen.add(tuple(sorted(overrides.items())))
    assert len(seen) == len(ABLATIONS)  # no two ablations are the same model
    with pytest.raises(ValueError, match=r"unknown model keys \['hidden'\]"):
        variant(base, hidden=3)


def test_budget_run_stops_by_steps_and_evaluates():
    cfg = tiny_config()
    run = train_for_budget(cfg, seconds=3600, max_steps=3, dataset=synthetic_dataset(cfg))
    assert (
        run.steps == 3
        and 0 < run.train_seconds < 3600
        and run.params > 0
        and not run.ema_model.training
    )
    ev = evaluate_run(run, 20, guidance=2.0, steps=2)
    assert (
        ev["n"] == 20
        and ev["guidance"] == 2.0
        and ev["steps"] == 2
        and 0 <= ev["class_accuracy"] <= 1
    )
    assert run.last_images.shape == (20, 1, 28, 28) and run.last_images.abs().max() <= 1
    table = results_table([run])
    assert table.count("\n") == 2 and f"| {ev['fid']:.2f} |" in table
    with pytest.raises(ValueError, match="seconds or max_steps"):
        train_for_budget(cfg)


def test_time_budget_stops_the_run():
    cfg = tiny_config()
    run = train_for_budget(cfg, seconds=0.5, dataset=synthetic_dataset(cfg))
    assert run.train_seconds >= 0.5 and run.steps >= 1 and len(run.ema_model.state_dict()) > 0


def test_scaling_rows_count_flops_that_grow_as_expected():
    base = load_config(REPO / "configs" / "mnist_diffussm.yaml").model
    dit = load_config(REPO / "configs" / "mnist_dit.yaml").model
    rows = scaling_rows({"DiffuSSM": base, "DiT": dit}, sizes=(16, 32, 64), measure_time=False)
    f = {(r["model"], r["size"]): r["gflops"] for r in rows}
    assert [r["tokens"] for r in rows if r["model"] == "DiT"] == [64, 256, 1024]
    # DiffuSSM is linear in L (4x tokens -> about 4x FLOPs); DiT's attention makes it superlinear
    assert 3.5 < f["DiffuSSM", 64] / f["DiffuSSM", 32] < 4.6
    assert f["DiT", 64] / f["DiT", 32] > f["DiffuSSM", 64] / f["DiffuSSM", 32] + 0.5
    assert all(r["seconds"] is None for r in rows)
    assert "| 64x64 | 1024 |" in scaling_table(rows) and "not timed" in scaling_table(rows)


@pytest.mark.slow
def test_bench_quality_script_runs_end_to_end(tmp_path):
    out = tmp_path / "cmp"
    cfg_dir = tmp_path
    # the tiny config as both models (arch swapped for the DiT side) keeps this to seconds
    import yaml
    from diffussm_lib.config import config_to_dict

    tiny = config_to_dict(tiny_config())
    (cfg_dir / "a.yaml").write_text(yaml.safe_dump(tiny))
    dit = dict(
        tiny,
        name="tiny_dit",
        model={
            k: v
            for k, v in tiny["model"].items()
            if k not in ("hourglass_ratio", "ssm_core", "ssm_state", "bidirectional", "ssm_backend")
        },
    )
    dit["model"].update(arch="dit", num_heads=2)
    (cfg_dir / "b.yaml").write_text(yaml.safe_dump(dit))
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "bench_quality.py"),
            "compare",
            "--diffussm",
            str(cfg_dir / "a.yaml"),
            "--dit",
            str(cfg_dir / "b.yaml"),
            "--minutes",
            "0.02",
            "--num-samples",
            "20",
            "--guidance",
            "2",
            "--sample-steps",
            "2",
            "--output-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    md = (out / "results.md").read_text()
    assert "| DiffuSSM |" in md and "| DiT |" in md and (out / "samples_DiT.png").exists()
