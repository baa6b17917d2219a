"""DiffuSSM against DiT on the CPU recipe (issue 29): the DiT recipe config, EMA snapshots along a run,
the FLOP split, and the pure pieces of benchmarks/bench_backbones.py (diffussm_lib.evaluation.backbones):
best rate, curve steps, equal-time steps, budgets, the tests and the verdicts in words."""

import json
import math
from dataclasses import replace

import pytest
import torch

from _train_helpers import REPO, one_thread, synthetic_dataset, tiny_config  # noqa: F401 (fixture)
from diffussm_lib.config import config_to_dict, load_config
from diffussm_lib.evaluation.backbones import (
    best_rate,
    budget_table,
    budgets,
    curve_steps,
    decide,
    equal_time_steps,
    machine,
    mechanism,
    readme_block,
    run_id,
    seconds_cells,
    study_lines,
    sweep_table,
    verdict,
)
from diffussm_lib.evaluation.stats import holm, welch
from diffussm_lib.models import build_model, count_flops, dit_block_flops_formula, flop_split
from diffussm_lib.training import EMASnapshots, Trainer, load_model
from diffussm_lib.training.step import pick_faster

pytestmark = pytest.mark.usefixtures("one_thread")
CONFIGS = REPO / "configs"


# ---------------------------------------------------------------------------- the DiT recipe
def test_the_dit_recipe_is_the_recipe_with_the_backbone_swapped():
    ssm, dit = (
        load_config(CONFIGS / "mnist_speedrun.yaml"),
        load_config(CONFIGS / "mnist_speedrun_dit.yaml"),
    )
    a, b = config_to_dict(ssm), config_to_dict(dit)
    assert {k: v for k, v in a.items() if k not in ("model", "name")} == {
        k: v for k, v in b.items() if k not in ("model", "name")
    }
    assert dit.model.arch == "dit"
    for key in ("in_channels", "image_size", "patch_size", "hidden_dim", "depth", "num_classes"):
        assert getattr(dit.model, key) == getattr(ssm.model, key), key
    course_dit = load_config(CONFIGS / "mnist_dit.yaml").model
    assert (dit.model.num_heads, dit.model.mlp_ratio, dit.model.learn_sigma) == (
        course_dit.num_heads,
        course_dit.mlp_ratio,
        course_dit.learn_sigma,
    )
    cfg = replace(dit, train=replace(dit.train, batch_size=8, checkpoint_every=0))
    tr = Trainer(cfg, None, dataset=synthetic_dataset(cfg), progress=False, log=lambda m: None)
    res = tr.train(max_steps=2)
    assert res.step == 2 and math.isfinite(res.history[-1]["loss"])


def test_the_precision_rule_the_calibration_applies_once_per_model():
    """bf16 only when it takes less than 0.95 of fp32's time (the trainer's ``precision: auto``)."""
    assert pick_faster({"fp32": 1.0, "bf16": 0.90}) == "bf16"
    assert pick_faster({"fp32": 1.0, "bf16": 0.96}) == "fp32"  # no clear gain: full precision
    assert pick_faster({"fp32": 1.0, "bf16": 1.20}) == "fp32"
    assert pick_faster({"fp32": 1.0}) == "fp32"


# ---------------------------------------------------------------------------- snapshots
def test_ema_snapshots_change_nothing_and_hold_the_step_weights(tmp_path):
    """A run with snapshots ends with the same weights as one without, and the snapshot at step 2
    holds the EMA weights of step 2 (of the run that goes on to step 4). Stopping at step 2 and
    continuing instead would make another run: the cosine schedule's end moves to the stop."""
    cfg = tiny_config(max_steps=4, lr_schedule="cosine", warmup_steps=0, checkpoint_every=0)
    data = synthetic_dataset(cfg)

    class Keep:  # the EMA weights after step 2, from a run without snapshots
        def on_step(self, trainer, step):
            if step == 2:
                self.state = {k: v.clone() for k, v in trainer.ema.state_dict().items()}

    keep = Keep()
    plain = Trainer(cfg, None, dataset=data, progress=False, callbacks=[keep], log=lambda m: None)
    plain.train()
    snap = Trainer(
        cfg,
        tmp_path / "run",
        dataset=data,
        progress=False,
        callbacks=[EMASnapshots([2], tmp_path / "run")],
        log=lambda m: None,
    )
    snap.train()
    for k, v in plain.bare_model.state_dict().items():
        assert torch.equal(v, snap.bare_model.state_dict()[k]), k
    path = EMASnapshots.path(tmp_path / "run", 2)
    model, _, ckpt = load_model(path)
    assert ckpt.step == 2 and 0 < ckpt.extra["train_seconds"] < snap.train_seconds
    for k, v in model.state_dict().items():
        assert torch.equal(v, keep.state[k]), k
    assert not EMASnapshots.path(tmp_path / "run", 3).exists()
    stopped = Trainer(cfg, None, dataset=data, progress=False, log=lambda m: None)
    stopped.train(max_steps=2)
    stopped.train(max_steps=4)
    assert not all(
        torch.equal(v, stopped.bare_model.state_dict()[k])
        for k, v in plain.bare_model.state_dict().items()
    )


# ---------------------------------------------------------------------------- FLOPs
def test_flop_split_attention_is_the_l_squared_part_and_the_parts_sum_to_the_count():
    cfg = load_config(CONFIGS / "tiny.yaml").model
    B = 3
    x, t = torch.zeros(B, 1, cfg.image_size, cfg.image_size), torch.zeros(B, dtype=torch.long)
    L, D = (cfg.image_size // cfg.patch_size) ** 2, cfg.hidden_dim
    dit = build_model(replace(cfg, arch="dit")).eval()
    s = flop_split(dit, x, t, t)
    assert s["attention"] == cfg.depth * B * 4 * L * L * D  # QK^T and AV
    assert s["ssm"] == 0 and s["total"] == count_flops(dit, x, t, t)
    assert s["attention"] + s["dense"] + s["ssm"] == s["total"]
    with torch.no_grad():
        outside = count_flops(dit, x, t, t) - sum(
            count_flops(b, torch.zeros(B, L, D), torch.zeros(B, D)) for b in dit.blocks
        )
    per_block = dit_block_flops_formula(L, D, cfg.mlp_ratio) - 4 * L * L * D  # dense, per sample
    ada = 2 * D * 6 * D  # adaLN-Zero's linear, per sample
    assert s["dense"] == outside + cfg.depth * B * (per_block + ada)
    ssm_model = build_model(cfg).eval()
    s = flop_split(ssm_model, x, t, t)
    assert s["attention"] == 0 and s["total"] == count_flops(ssm_model, x, t, t)
    with torch.no_grad():
        alone = sum(
            count_flops(b.hourglass.ssm, torch.zeros(B, L, D)) for b in ssm_model.blocks
        )  # the SSM modules run on their own: (B, L, D) -> (B, L, 2D)
    assert s["ssm"] == alone > 0 and s["dense"] == s["total"] - alone


# ---------------------------------------------------------------------------- the study's pieces
def result(model, lr, seed, fid, loss=0.1, steps=3000, threads=1, acc=0.9):
    return run_id(model, lr, seed, steps, threads), dict(
        model=model,
        lr=lr,
        seed=seed,
        steps=steps,
        threads=threads,
        final_loss=loss,
        train_seconds=600.0,
        images_per_sec=300.0,
        precision="bf16",
        eval=dict(fid=fid, floor=2.5, class_accuracy=acc, n=2000),
        curve=[],
    )


def test_run_id_names_every_setting():
    assert run_id("dit", 1e-3, 2, 3000, 1) == "dit | lr 0.001 | seed 2 | 3000 steps, 1 thread"
    assert run_id("diffussm", 5e-4, 0, 10, 2).endswith("10 steps, 2 threads")


def test_best_rate_is_the_lowest_fid_of_the_sweep_at_its_steps_and_seed_0():
    runs = dict(
        [
            result("dit", 5e-4, 0, 9.0),
            result("dit", 1e-3, 0, 7.0),
            result("dit", 2e-3, 0, 8.0),
            result("dit", 3e-3, 1, 1.0),  # another seed: not the sweep
            result("dit", 3e-3, 0, 1.0, steps=1500),  # other steps: another sweep
            result("dit", 3e-3, 0, 1.0, threads=2),  # other threads: another sweep
            result("diffussm", 1e-3, 0, 6.0),
            result("diffussm", 2e-3, 0, 6.0),  # a tie: the lower rate
        ]
    )
    assert best_rate(runs, "dit", 3000, 1) == 1e-3
    assert best_rate(runs, "diffussm", 3000, 1) == 1e-3
    assert best_rate(runs, "dit", 1500, 1) == 3e-3
    assert best_rate(runs, "dit", 999, 1) is None
    table = sweep_table(runs, 3000, 1)
    assert "| DiT | 0.001 **best** | 7.00 (2.50) |" in table
    assert "DiffuSSM has 2 rates (the study asks for at least 3)." in table
    assert "DiT has" not in table


def test_curve_steps():
    assert curve_steps(3000, [0.25, 0.5, 0.75, 1.0]) == [750, 1500, 2250, 3000]
    assert curve_steps(4, [0.25, 0.5, 0.75, 1.0]) == [1, 2, 3, 4]
    assert curve_steps(2, [0.1, 0.25, 1.0]) == [1, 2]  # at least step 1, no repeats
    with pytest.raises(ValueError, match="fractions"):
        curve_steps(10, [0.0, 1.0])


def test_equal_time_steps_scale_by_the_speed_ratio():
    assert equal_time_steps(3000, 300.0, 150.0) == 1500
    assert equal_time_steps(3000, 117.0, 65.0) == round(3000 * 65 / 117)
    assert equal_time_steps(100, 100.0, 250.0) == 250
    assert equal_time_steps(1, 1000.0, 1.0) == 1
    with pytest.raises(ValueError, match="> 0"):
        equal_time_steps(10, 0.0, 1.0)


CAL = {"diffussm": {"images_per_sec": 300.0}, "dit": {"images_per_sec": 200.0}}


def study(ssm_fids, dit_fids, dit_time_fids=(), ssm_loss=0.10, dit_loss=0.10):
    """Stored runs: a sweep (DiffuSSM best 1e-3, DiT best 2e-3), then seeds at the best rates;
    seed 0 at equal steps is the sweep's run."""
    rows = [
        result("diffussm", 5e-4, 0, 50.0),
        result("diffussm", 2e-3, 0, 40.0),
        result("dit", 5e-4, 0, 50.0),
        result("dit", 1e-3, 0, 45.0),
    ]
    rows += [
        result("diffussm", 1e-3, s, f, loss=ssm_loss + 0.001 * s) for s, f in enumerate(ssm_fids)
    ]
    rows += [result("dit", 2e-3, s, f, loss=dit_loss + 0.001 * s) for s, f in enumerate(dit_fids)]
    rows += [result("dit", 2e-3, s, f, steps=2000) for s, f in enumerate(dit_time_fids)]
    return dict(rows)


def test_budgets_pair_the_best_rates_at_equal_steps_and_equal_time():
    runs = study([10.0, 11.0, 12.0], [12.0, 13.0], [20.0])
    eq_steps, eq_time = budgets(runs, 3000, 1, CAL)
    assert eq_steps["lr"] == eq_time["lr"] == {"diffussm": 1e-3, "dit": 2e-3}
    assert eq_steps["steps"] == {"diffussm": 3000, "dit": 3000}
    assert eq_time["steps"] == {"diffussm": 3000, "dit": 2000}  # 3000 x 200 / 300
    assert [r["seed"] for r in eq_steps["runs"]["dit"]] == [0, 1]
    assert eq_time["runs"]["diffussm"] == eq_steps["runs"]["diffussm"]  # one set of runs for both
    assert [r["eval"]["fid"] for r in eq_time["runs"]["dit"]] == [20.0]
    assert [c["budget"] for c in budgets(runs, 3000, 1, None)] == ["equal steps"]
    assert budgets(runs, 1234, 1, CAL) == []
    table = budget_table(eq_steps)
    assert "| DiT | 0.002 | 3000 | 2 | 12.50 +- 0.71 (2.50) | 13.00 |" in table


def test_seconds_are_averaged_within_one_machine_only():
    epyc = {
        "hardware": "CPU AMD EPYC, 1 torch threads",
        "train_seconds": 30.0,
        "images_per_sec": 2.0,
    }
    xeon = {"hardware": "CPU Intel(R) Xeon(R) Processor, 1 torch threads"}
    xeon |= {"train_seconds": 10.0, "images_per_sec": 6.0}
    assert machine(xeon) == "Intel Xeon" and machine(epyc) == "AMD EPYC"
    assert seconds_cells([xeon, dict(xeon, train_seconds=20.0)]) == "15 | 6 | Intel Xeon"
    assert seconds_cells([epyc, xeon]) == "machines differ | | AMD EPYC, Intel Xeon"


def test_fewer_than_3_seeds_is_not_decided():
    runs = study([10.0, 11.0, 12.0], [12.0, 13.0])
    comps = budgets(runs, 3000, 1, CAL)
    tests = decide(comps)
    assert [(d["budget"], d["metric"]) for d in tests] == [
        ("equal steps", "fid"),
        ("equal steps", "final_loss"),
        ("equal time", "fid"),
        ("equal time", "final_loss"),
    ]
    assert all(d["test"] is None and d["family"] == 0 for d in tests)
    assert verdict(tests[0], comps[0], 1) == (
        "For this MNIST recipe at 3000 steps each (equal steps), FID-LeNet: not decided "
        "(3 DiffuSSM and 2 DiT seeds; 3 per model needed)."
    )
    assert verdict(tests[2], comps[1], 1).startswith(
        "For this MNIST recipe at DiffuSSM's training time for 3000 steps, 1 thread (DiT: 2000 "
        "steps; equal time), FID-LeNet: not decided (3 DiffuSSM and 0 DiT seeds"
    )


def test_verdicts_name_the_better_model_only_after_holm():
    ssm, dit = [10.0, 10.5, 11.0], [14.0, 14.5, 15.2]
    runs = study(ssm, dit, ssm_loss=0.10, dit_loss=0.10)  # equal losses: no difference
    comps = budgets(runs, 3000, 1, None)  # equal steps only: a family of 2 tests
    fid, loss = decide(comps)
    t = welch(dit, ssm)
    assert fid["test"]["diff"] == pytest.approx(t["diff"]) and fid["test"]["p"] == pytest.approx(
        t["p"]
    )
    assert [fid["adjusted"], loss["adjusted"]] == pytest.approx(
        holm([fid["test"]["p"], loss["test"]["p"]])["adjusted"]
    )
    assert fid["family"] == 2 and fid["adjusted"] < 0.05
    words = verdict(fid, comps[0], 1)
    assert words.startswith(
        "For this MNIST recipe at 3000 steps each (equal steps), FID-LeNet: DiffuSSM is better "
        "than DiT (DiT minus DiffuSSM +4.067"
    )
    assert "Holm-adjusted p = " in words and "over 2 comparisons" in words
    assert verdict(loss, comps[0], 1).startswith(
        "For this MNIST recipe at 3000 steps each (equal steps), final training loss: no "
        "difference shown (DiT minus DiffuSSM +0"
    )
    # DiT lower: DiT is better; a p below 0.05 that Holm lifts above it: not shown
    fid, _ = decide(budgets(study(dit, ssm), 3000, 1, None))
    assert "DiT is better than DiffuSSM" in verdict(fid, comps[0], 1)
    close_ssm, close_dit = [10.0, 10.6, 11.0], [11.2, 11.6, 12.1]
    p = welch(close_dit, close_ssm)["p"]
    assert 0.025 < p < 0.05  # shown alone, not once the family of 4 tests adjusts it
    comps = budgets(study(close_ssm, close_dit, close_dit), 3000, 1, CAL)  # equal time: the same
    fid = decide(comps)[0]
    assert fid["family"] == 4 and fid["adjusted"] > 0.05
    assert "no difference shown" in verdict(fid, comps[0], 1)


def test_the_report_and_the_readme_block_hold_the_sweep_the_budgets_and_the_verdicts():
    runs = study([10.0, 10.5, 11.0], [14.0, 14.5, 15.2], [20.0, 21.0, 22.0])
    lines = study_lines(runs, 3000, 1, CAL, head="####")
    text = "\n".join(lines)
    comps = budgets(runs, 3000, 1, CAL)
    assert sweep_table(runs, 3000, 1) in text
    assert all(budget_table(c) in text for c in comps)
    verdicts = [line for line in lines if line.startswith("- For this MNIST recipe")]
    assert verdicts == ["- " + verdict(d, comps[i // 2], 1) for i, d in enumerate(decide(comps))]
    assert "#### At DiffuSSM's training time for 3000 steps, 1 thread (DiT: 2000 steps" in text
    flops = {"L = 64 (test)": {"DiffuSSM": _split(60, 0, 4), "DiT": _split(100, 8, 0)}}
    block = readme_block({"runs": runs, "calibration": {"1 thread": CAL}, "flops": flops})
    assert block.startswith("#### Learning-rate sweep") and text in block
    assert block.endswith(mechanism(flops))
    assert readme_block({"runs": runs}).count("#### At ") == 1  # no calibration: equal steps only


def _split(dense, attention, ssm):
    return {"dense": dense, "attention": attention, "ssm": ssm, "total": dense + attention + ssm}


def test_the_readme_backbones_block_is_the_stored_runs():
    """The README's DiT block is ``bench_backbones.py --readme`` of the stored report."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("<!-- backbones -->\n", 1)[1].split("<!-- /backbones -->", 1)[0]
    report = json.loads((REPO / "benchmarks" / "results" / "backbones.json").read_text())
    assert block.strip() == readme_block(report).strip(), (
        "run `python benchmarks/bench_backbones.py --readme` into the README"
    )


# ---------------------------------------------------------------------------- the plot
def _fake_run(model, seed, ips, steps=40, batch=8):
    """A stored result of ``model`` with its loss and FID curves; measured seconds at ``ips``."""
    secs = lambda s: s * batch / ips  # noqa: E731
    return {
        "model": model,
        "lr": 1e-3,
        "seed": seed,
        "steps": steps,
        "threads": 1,
        "hardware": "CPU test",
        "train_seconds": secs(steps),
        "images_per_sec": ips,
        "precision": "fp32",
        "final_loss": 0.1 + 0.01 * seed,
        "eval": {"fid": 10.0 + seed + (5 if model == "dit" else 0), "n": 20},
        "config": {
            "train": {"batch_size": batch, "log_every": 10},
            "model": {"image_size": 32, "patch_size": 4},
        },
        "loss_curve": [[s, secs(s), 1.0 / s] for s in (10, 20, 30, 40)],
        "curve": [
            {"step": s, "train_seconds": secs(s), "n": 20, "fid": 100.0 / s} for s in (20, 40)
        ],
    }


def test_the_plot_puts_runs_at_their_calibrated_time(tmp_path):
    """The plot's time axis: step x batch / the model's calibrated images/s, not the seconds a run
    measured (here measured at another speed, as on another or a loaded machine)."""
    from diffussm_lib.evaluation import backbones as bench

    cal = {
        "diffussm": {"images_per_sec": 16.0},
        "dit": {"images_per_sec": 8.0},
        "hardware": "CPU ref",
    }
    run = _fake_run("dit", 0, ips=100.0)
    assert bench.seconds_of(run, cal, "dit")(40, run["train_seconds"]) == pytest.approx(
        40 * 8 / 8.0
    )
    assert bench.seconds_of(run, None, "dit")(40, 3.2) == 3.2  # no calibration: measured
    runs = {
        run_id(m, 1e-3, s, 40, 1): _fake_run(m, s, ips=100.0)
        for m in ("diffussm", "dit")
        for s in range(3)
    }
    report = {"runs": runs, "calibration": {"1 thread": cal}}
    bench.plot(report, 40, 1, tmp_path / "b.png")
    assert (tmp_path / "b.png").stat().st_size > 20_000
