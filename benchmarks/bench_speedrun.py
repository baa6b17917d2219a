"""Train your own DiffuSSM on a laptop CPU (issue 24): the recipe, and what each lever buys.

    python benchmarks/bench_speedrun.py --minutes 20 --seeds 0 1 2          # the recipe at the full budget
    python benchmarks/bench_speedrun.py --steps 800 --arms recipe "constant lr" --seeds 0 1 \\
        --base-set model.hidden_dim=64 --threads 1                          # a lever screen at equal steps
    python benchmarks/bench_speedrun.py --table                             # the stored results as tables

Every arm is the recipe (``configs/mnist_speedrun.yaml``, or ``--config``) with a few keys changed
(``ARMS``; ``--base-set key=value`` changes every arm of the call, and is part of the budget's name so
that different bases never mix). A budget is ``--steps`` (equal steps: for levers that do not change
the cost of a step) or ``--minutes`` of training time as ``diffussm train --max-minutes`` counts it
(for levers that do: width, batch, precision, and the recipe itself).

Each run trains into ``--runs/<budget>/<arm>_s<seed>`` with checkpoints (run the same command again
to continue where it stopped), then is evaluated once: FID-LeNet of ``--num-samples`` class-balanced
EMA samples (DDIM ``--sample-steps``) at every guidance scale of ``--guidance``, and the live
(non-EMA) weights at the first scale, each with its real-vs-real floor and class accuracy. Every
run samples with its own seed (1000 + training seed). Results go into ``--out`` (JSON) as each run
finishes, with the run's config, images seen, images/s, precision and machine; runs another process
stored there meanwhile are kept, so several one-thread processes can share one file.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_scan_orders import store_run

from diffussm_lib.atomic import atomic_write_text
from diffussm_lib.config import config_from_dict, config_to_dict, load_config
from diffussm_lib.data import dataset_from_config
from diffussm_lib.env import environment_report, hardware_description
from diffussm_lib.evaluation import sample_and_evaluate
from diffussm_lib.evaluation.speedrun import (
    lever_verdicts,
    recipe_changes,
    summary_budget,
    tables,
    target_summary,
)
from diffussm_lib.training import Trainer, export_weights, load_checkpoint, load_model

ARMS = {  # name -> the keys that differ from the recipe
    "recipe": {},
    "constant lr": {"train.lr_schedule": "constant"},
    "linear decay": {"train.lr_schedule": "linear"},
    "lr 2e-3": {"train.lr": 2e-3},
    "lr 5e-4": {"train.lr": 5e-4},
    "lr 3e-3": {"train.lr": 3e-3},
    "lr 2e-3, min-SNR+1 5": {"train.lr": 2e-3, "train.loss_weighting": "min_snr_plus_one"},
    "min-SNR 5": {"train.loss_weighting": "min_snr"},
    "min-SNR+1 5": {"train.loss_weighting": "min_snr_plus_one"},
    "logit-normal": {"train.timestep_sampling": "logit_normal"},
    "EMA 0.995": {"train.ema_decay": 0.995},
    "EMA 0.9995": {"train.ema_decay": 0.9995},
    "label dropout 0.2": {"train.label_dropout": 0.2},
    "fp32": {"train.precision": "fp32"},
    "batch 32": {"train.batch_size": 32},
    "batch 128": {"train.batch_size": 128},
    "width 96": {"model.hidden_dim": 96},
    "width 64": {"model.hidden_dim": 64},
    "depth 6": {"model.depth": 6},
    "patch 2": {
        "model.patch_size": 2,
        "model.image_size": 28,
        "data.pad_to": None,
    },  # L = 196 tokens
    "patch 2, width 64": {
        "model.patch_size": 2,
        "model.image_size": 28,
        "data.pad_to": None,
        "model.hidden_dim": 64,
    },
    "old recipe": {
        "train.lr_schedule": "constant",
        "train.warmup_steps": 250,
        "train.precision": "fp32",
    },
}


def parse_sets(pairs: list[str]) -> dict:
    """["train.lr=2e-3", ...] -> {"train.lr": 0.002, ...} (values read as YAML)."""
    out = {}
    for p in pairs:
        if "=" not in p or "." not in p.split("=", 1)[0]:
            raise SystemExit(
                f"--base-set takes section.key=value (e.g. model.hidden_dim=64), got {p!r}"
            )
        k, v = p.split("=", 1)
        out[k] = yaml.safe_load(v)
    return out


def with_keys(cfg, keys: dict, source: str):
    """``cfg`` with dotted keys replaced, checked strictly by the config loader (a bad key names itself)."""
    d = config_to_dict(cfg)
    for k, v in keys.items():
        section, name = k.split(".", 1)
        if section not in d or not isinstance(d[section], dict):
            raise SystemExit(f"{source}: unknown config section in {k!r}")
        d[section][name] = v
    return config_from_dict(d, source=source)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")


def evaluate_run(
    folder: Path, guidances: list[float], n: int, seed: int, sample_steps: int, live: bool
) -> dict:
    """{"ema w=1.0": report dict, ..., "live w=1.0": ...} for the run in ``folder``."""
    out = {}
    for which in ("ema", "model") if live else ("ema",):
        model, mcfg, _ = load_model(folder, which=which)
        for w in guidances if which == "ema" else guidances[:1]:
            t0 = time.perf_counter()
            ev, _ = sample_and_evaluate(
                model, mcfg, n, sampler="ddim", steps=sample_steps, guidance=w, seed=1000 + seed
            )
            key = f"{'ema' if which == 'ema' else 'live'} w={w:g}"
            out[key] = dict(
                ev.as_dict(),
                sampler="ddim",
                steps=sample_steps,
                seconds=round(time.perf_counter() - t0, 1),
            )
            print(
                f"  {key}: FID-LeNet {ev.fid:.2f} (floor {ev.floor:.2f}), class accuracy "
                f"{ev.class_accuracy:.4f}",
                flush=True,
            )
    return out


def run_one(args, cfg, arm: str, seed: int, budget: str, dataset) -> dict:
    folder = Path(args.runs) / slug(budget) / f"{slug(arm)}_s{seed}"
    cfg = replace(
        cfg,
        train=replace(
            cfg.train,
            seed=seed,
            sample_every=0,
            checkpoint_every=250,
            max_steps=args.steps or cfg.train.max_steps,
        ),
    )
    print(f"\n{arm} | seed {seed} | {budget} -> {folder}", flush=True)
    tr = Trainer(
        cfg, folder, dataset=dataset, progress=False, log=lambda m: print("  " + m, flush=True)
    )
    res = tr.train(resume=True, max_seconds=None if args.steps else 60.0 * args.minutes)
    done = res.step >= cfg.train.max_steps or (
        not args.steps and res.train_seconds >= 60.0 * args.minutes
    )
    if not done:
        raise SystemExit(f"{arm} s{seed}: stopped at step {res.step}; run again to continue")
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    tail = [m["loss"] for m in metrics[-10:]]
    return dict(
        arm=arm,
        seed=seed,
        steps=res.step,
        images=res.step * cfg.train.batch_size,
        train_seconds=round(res.train_seconds, 1),
        images_per_sec=round(res.images_per_sec, 1),
        precision=tr.precision,
        precision_ms={c: round(1e3 * m, 1) for c, m in tr.precision_times.items()},
        threads=torch.get_num_threads(),
        final_loss=sum(tail) / len(tail),
        hardware=hardware_description(torch.device("cpu")),
        config=config_to_dict(cfg),
        eval=evaluate_run(
            folder, args.guidance, args.num_samples, seed, args.sample_steps, args.live
        ),
    )


def export_run(runs: dict, seed: int, out_dir: Path, runs_dir: Path) -> None:
    """Export the recipe's run of ``seed`` at the summary's budget as a shareable model: EMA weights,
    config and card (``export_weights``), its stored evaluations as ``evaluations/*.json`` (the fields
    ``diffussm evaluate --json`` writes), its training log, and a note naming the command and the
    other seeds' summary."""
    summary = target_summary(runs)
    rid = f"recipe | seed {seed} | {summary_budget(runs)}"
    if rid not in runs:
        raise SystemExit(f"--export: no stored run {rid!r}")
    r = runs[rid]
    folder = runs_dir / slug(rid.split(" | ")[-1]) / f"recipe_s{seed}"
    ckpt = load_checkpoint(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "evaluations").mkdir(exist_ok=True)
    where = Path(ckpt.path).resolve()
    where = (
        where.relative_to(REPO) if where.is_relative_to(REPO) else where
    )  # no machine's path in the repo
    reports = []
    for key, ev in r["eval"].items():
        if not key.startswith("ema"):
            continue
        w = float(key.split("=")[1])
        rep = dict(
            {k: v for k, v in ev.items() if k != "seconds"},
            checkpoint=str(where),
            step=ckpt.step,
            guidance=w,
            seed=1000 + seed,
            conditional=True,
        )
        atomic_write_text(
            out_dir / "evaluations" / f"{ev['sampler']}{ev['steps']}_w{w:g}_n{ev['n']}.json",
            json.dumps(rep, indent=2) + "\n",
        )
        reports.append(rep)
    export_weights(folder, out_dir, evaluations=reports)
    shutil.copyfile(folder / "metrics.jsonl", out_dir / "metrics.jsonl")
    card = (out_dir / "README.md").read_text()
    note = (
        f"## Notes\n\nThe course's 20-minute CPU model: `configs/mnist_speedrun.yaml` trained by "
        f"`python benchmarks/bench_speedrun.py --minutes 20 --seeds 0 1 2 --threads 2` (this is seed {seed}, "
        f"run id `{rid}`; {r['hardware']}, precision {r['precision']}, "
        f"{r['images_per_sec']:.0f} images/s, {r['images']:,} images). The same command as a student types it: "
        "`diffussm train --config configs/mnist_speedrun.yaml --max-minutes 20`. The evaluations below were "
        "made by the benchmark with `sample_and_evaluate`, the function `diffussm evaluate` runs, with "
        f"sampling seed {1000 + seed}. Every seed, from `benchmarks/results/speedrun.json`:\n\n"
        + summary
        + "\n\n"
    )
    atomic_write_text(
        out_dir / "README.md", card.replace("## Sample quality", note + "## Sample quality", 1)
    )
    print(f"exported {rid} -> {out_dir}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--config", default=str(REPO / "configs" / "mnist_speedrun.yaml"))
    ap.add_argument("--arms", nargs="+", default=["recipe"], help=f"arm names: {', '.join(ARMS)}")
    ap.add_argument(
        "--base-set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="change every arm (e.g. model.hidden_dim=64); part of the budget's name",
    )
    budget = ap.add_mutually_exclusive_group()
    budget.add_argument(
        "--steps", type=int, help="equal steps: train every run for this many updates"
    )
    budget.add_argument(
        "--minutes", type=float, help="equal training time (as --max-minutes counts it)"
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0, 1.25, 1.5])
    ap.add_argument("--num-samples", type=int, default=2000)
    ap.add_argument("--sample-steps", type=int, default=25)
    ap.add_argument(
        "--no-live", dest="live", action="store_false", help="skip the live-weights evaluation"
    )
    ap.add_argument("--threads", type=int)
    ap.add_argument("--runs", default=str(REPO / "runs" / "speedrun"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "speedrun.json"))
    ap.add_argument(
        "--table",
        action="store_true",
        help="print the stored results and the levers' verdicts; train nothing",
    )
    ap.add_argument(
        "--summary",
        action="store_true",
        help="print the recipe's target verdict and the levers' verdicts; train nothing",
    )
    ap.add_argument(
        "--export",
        type=int,
        metavar="SEED",
        help="export the recipe's run of this seed to "
        "--export-dir (weights, config, card, evaluations); train nothing",
    )
    ap.add_argument(
        "--export-dir",
        default="checkpoints/mnist_speedrun",
        help="(relative to the working "
        "directory; run from the repository root so that the card names a path a reader can use)",
    )
    args = ap.parse_args()
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {}
    if args.export is not None:
        export_run(report.get("runs", {}), args.export, Path(args.export_dir), Path(args.runs))
        return
    if args.table or args.summary:
        runs = report.get("runs", {})
        if not runs:
            print(f"no stored runs in {out}")
        else:
            levers = lever_verdicts(runs)
            print(
                "\n\n".join(
                    x
                    for x in (
                        target_summary(runs) if args.summary else tables(runs).rstrip(),
                        recipe_changes(runs),
                        levers,
                    )
                    if x
                )
            )
        return
    if not (args.steps or args.minutes):
        raise SystemExit(
            "give a budget: --steps N (equal steps) or --minutes M (equal training time)"
        )
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown:
        raise SystemExit(f"unknown arms {unknown}; known: {list(ARMS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(environment_report(), flush=True)
    base_keys = parse_sets(args.base_set)
    base = with_keys(load_config(args.config), base_keys, "--base-set")
    threads = torch.get_num_threads()
    budget = (
        (f"{args.steps} steps" if args.steps else f"{args.minutes:g} min")
        + f", {threads} thread{'s' if threads > 1 else ''}"
        + "".join(f", {k}={v}" for k, v in base_keys.items())
    )
    datasets: dict = {}  # one per data section (an arm may pad the digits)
    for seed in args.seeds:
        for arm in args.arms:
            rid = f"{arm} | seed {seed} | {budget}"
            if rid in report.get("runs", {}):
                continue
            cfg = with_keys(base, ARMS[arm], f"arm {arm!r}")
            key = json.dumps(config_to_dict(cfg)["data"], sort_keys=True)
            if key not in datasets:
                datasets[key] = dataset_from_config(cfg.data, "train")
            result = run_one(args, cfg, arm, seed, budget, datasets[key])
            report = json.loads(out.read_text()) if out.is_file() else {}
            store_run(out, report, rid, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
