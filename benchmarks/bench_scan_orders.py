"""Scan orders and the paper's claims on the course's CPU recipe (notebook 08, issues 17 and 29).

    python benchmarks/bench_scan_orders.py --steps 3000 --seeds 0 1 2 --threads 1   # equal steps
    python benchmarks/bench_scan_orders.py --minutes 10 --calibrate-only --threads 1
    python benchmarks/bench_scan_orders.py --minutes 10 --seeds 0 1 2 --threads 1   # equal time
    python benchmarks/bench_scan_orders.py --table          # the README's tables and verdicts
    python benchmarks/bench_scan_orders.py --plot fig.png   # every seed, per budget
    python benchmarks/bench_scan_orders.py --merge other.json   # add runs stored in another report
    python benchmarks/bench_scan_orders.py --steps 3 --num-samples 20 --seeds 0 1 2 \\
        --variants raster snake --out /tmp/s.json --runs /tmp/s         # a smoke run

Every variant changes one thing of the CPU training recipe (``configs/mnist_speedrun.yaml``: 32x32
padded MNIST, 4x4 patches, an 8x8 grid of L = 64 tokens, width 128, depth 4, M = 2, bidirectional
S4D, raster order, a cosine learning rate to the end of the run): the scan order (snake,
raster/column alternating per layer, Hilbert, random), and the paper's claims (causal instead of
bidirectional, M = 1 instead of 2, 2x2 patches). Two kinds of budget, the kind in the budget's name:

* ``--steps S`` (default 3000, about 10 minutes of the recipe on one thread here): equal steps, for
  the variants of (nearly) the same cost per step, the scan orders (same FLOPs and parameters; a
  gather and a scatter of the tokens per layer) and causal, and for the paper's own comparisons of
  patch 2 with patch 4 at equal width and M = 1 with M = 2 (``STEPS_VARIANTS``);
* ``--minutes X``: equal training time, only where the cost per step differs (``TIME_VARIANTS``):
  M = 1, 2x2 patches narrowed to the recipe's forward FLOPs per image ("patch 2 (same cost)", its
  width stored as ``matched_width``), and raster. A calibration measures the training images/s of
  these variants on this machine, interleaved (``--calibrate-steps`` per variant and round,
  ``--calibrate-rounds`` rounds, the median; with ``--threads 1`` per second of the process's CPU
  time, which the load of other processes barely changes), once per budget; each run then trains
  ``minutes x 60 x its rate / batch`` steps, a number no later load on the machine can change (and
  the one the cosine schedule decays to). Calibrate alone (``--calibrate-only``) before starting
  parallel runs.

Each run trains into ``--runs/<budget>/<variant>_s<seed>`` with checkpoints every 250 steps (run the
same command again to continue), then is evaluated once: FID-LeNet of ``--num-samples``
class-balanced EMA samples (``--sampler`` / ``--sample-steps``, default the course's
``diffussm_lib.diffusion.DEFAULT_SAMPLER`` / ``DEFAULT_STEPS``; ``--guidance`` 1.25, the recipe's),
every run sampled with its own seed (1000 + training seed), with its real-vs-real floor at the same
count, class accuracy and the final training loss. The result, with the evaluation setting, the
precision and the config, goes into ``--out`` as the run finishes; runs another process stored
there meanwhile are kept, so two one-thread processes can share one file. ``--merge`` adds the runs
of a report made elsewhere (refusing another calibration of a time budget, or the same run id with
other results). ``--table`` trains nothing: it prints the stored runs' tables and the verdicts on
the claims (``diffussm_lib.evaluation.seeds``: mean ± SD over seeds, Welch's two-sided test against
raster, Holm's correction over the budget's comparisons; a verdict needs 3 seeds per arm).

The earlier study (issue 17: a width-64 DiffuSSM on 28x28 digits with 2x2 patches, two seeds, at
20 CPU-minutes, judged by a spread rule) is kept in
``benchmarks/results/scan_orders_2025_width64.json``; ``--table --out`` that file prints it by
today's rule (two seeds per arm: tests, but no verdict).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from diffussm_lib.atomic import atomic_write_text, file_lock
from diffussm_lib.config import config_to_dict, load_config
from diffussm_lib.data import dataset_from_config
from diffussm_lib.diffusion import DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLERS
from diffussm_lib.env import environment_report, hardware_description
from diffussm_lib.evaluation import sample_and_evaluate, variant
from diffussm_lib.evaluation.seeds import (
    BASE,
    budget_kind,
    budget_name,
    budget_of,
    markdown_table,
    markdown_verdicts,
    plot,
    summarise,
)
from diffussm_lib.models import build_model, count_flops, count_params
from diffussm_lib.training import Trainer, load_model

RECIPE = REPO / "configs" / "mnist_speedrun.yaml"
DEFAULT_BUDGET_STEPS = 3000  # about 10 minutes of the recipe on one thread here
SAME_COST = "patch 2 (same cost)"
VARIANTS = {  # name -> the model keys that differ from the recipe (SAME_COST: + its matched width)
    BASE: {},  # the paper's order, and the base of every comparison
    "snake": {"scan_order": "snake"},
    "raster/column": {"scan_order": ["raster", "column"]},
    "hilbert": {"scan_order": "hilbert"},
    "random": {"scan_order": "random"},
    "causal": {"bidirectional": False},
    "M = 1": {"hourglass_ratio": 1},
    "patch 2": {"patch_size": 2},  # equal width: L = 256 tokens, about 3.5x the recipe's time
    SAME_COST: {"patch_size": 2},  # narrowed by matched_width()
}
STEPS_VARIANTS = [BASE, "snake", "raster/column", "hilbert", "random", "causal", "M = 1", "patch 2"]
TIME_VARIANTS = [BASE, "M = 1", SAME_COST]


def per_image_flops(mc) -> int:
    """Forward FLOPs of one image through the model ``mc`` describes."""
    x = torch.zeros(1, mc.in_channels, mc.image_size, mc.image_size)
    with torch.no_grad():
        return count_flops(
            build_model(mc).eval(),
            x,
            torch.zeros(1, dtype=torch.long),
            torch.zeros(1, dtype=torch.long),
        )


def matched_width(base_mc, keys: dict) -> int:
    """The width (a multiple of 8) at which the variant's forward FLOPs per image are closest to the
    base's."""
    target = per_image_flops(base_mc)
    return min(
        range(8, base_mc.hidden_dim + 1, 8),
        key=lambda d: abs(per_image_flops(replace(base_mc, hidden_dim=d, **keys)) - target),
    )


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")


def fold_runs(report: dict, runs: dict, source: Path | None = None) -> list[str]:
    """Add to ``report`` the ``runs`` it lacks and return their ids. With a ``source`` (a report
    given to ``--merge``), a run id in both with other results is an error; without one, the run
    already in ``report`` is kept."""
    mine, added = report.setdefault("runs", {}), []
    for rid, result in runs.items():
        if rid not in mine:
            mine[rid] = result
            added.append(rid)
        elif source is not None and mine[rid] != result:
            raise SystemExit(
                f"--merge: run {rid!r} is in both reports ({source} and --out) with different "
                "results"
            )
    return added


def fold_stored(report: dict, out: Path) -> None:
    """Take into ``report`` what another process stored in ``out`` meanwhile: its runs, and the
    calibrations (per budget) and ``matched_width`` that ``report`` lacks."""
    if not out.is_file():
        return
    disk = json.loads(out.read_text())
    fold_runs(report, disk.get("runs", {}))
    for budget, cal in disk.get("calibration", {}).items():
        report.setdefault("calibration", {}).setdefault(budget, cal)
    if "matched_width" in disk:
        report.setdefault("matched_width", disk["matched_width"])


def store_run(out: Path, report: dict, rid: str, result: dict) -> None:
    """Write ``report`` with the run ``rid`` to ``out`` (atomically, under ``file_lock``), first
    taking in what another process (``--merge``, or a second run of this script) stored there
    meanwhile (``fold_stored``)."""
    report.setdefault("runs", {})[rid] = result
    with file_lock(out):
        fold_stored(report, out)
        atomic_write_text(out, json.dumps(report, indent=2) + "\n")


def merge_reports(out: Path, others: list[Path]) -> None:
    """Add the runs of ``others`` to the report ``out`` (written atomically); every time budget a
    merged run belongs to must have the same calibration in both reports (one ``out`` lacks is
    taken over), and a run id in both the same results."""
    report = json.loads(out.read_text())
    for path in others:
        if not path.is_file():
            raise SystemExit(f"--merge: no such report: {path}")
        other = json.loads(path.read_text())
        for budget in {budget_of(rid) for rid in other.get("runs", {})}:
            if budget_kind(budget) == "steps":
                continue  # equal steps: no calibration
            mine = report.get("calibration", {}).get(budget)
            theirs = other.get("calibration", {}).get(budget)
            if mine is None and theirs is not None:  # a budget new to --out: take its calibration
                report.setdefault("calibration", {})[budget] = mine = theirs
            if theirs != mine:
                raise SystemExit(
                    f"--merge: {path} was calibrated differently for {budget!r}: its steps are not "
                    f"the same CPU time as those of {out}"
                )
        added = fold_runs(report, other.get("runs", {}), source=path)
        print(f"{path}: added {len(added)} runs" + "".join(f"\n  {rid}" for rid in added))
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")


def calibrate(cfgs: dict, dataset, steps: int, rounds: int) -> dict:
    """{variant: {"images_per_sec" (the median), "rounds", "clock", "wall_rounds", "params",
    "gflop_per_image", "precision", "threads"}}: the training speed of every config, measured
    interleaved (a warm-up step each, then ``rounds`` rounds of ``steps`` steps per variant). With
    one thread the rate is per second of the process's CPU time (``clock`` "cpu": what a second of
    an idle core gives, which other processes on the machine barely change); with more, per second
    of wall-clock time (``clock`` "wall"). ``wall_rounds``: the wall-clock rates, for reference."""
    trainers = {
        n: Trainer(
            replace(cfg, train=replace(cfg.train, checkpoint_every=0)),
            None,
            dataset=dataset,
            progress=False,
            log=lambda m: None,
        )
        for n, cfg in cfgs.items()
    }
    threads = torch.get_num_threads()
    clock = "cpu" if threads == 1 else "wall"
    rates: dict = {n: [] for n in cfgs}
    wall: dict = {n: [] for n in cfgs}
    for tr in trainers.values():
        tr.train(max_steps=1)  # warm-up (and the precision pick)
    for _ in range(rounds):
        for n, tr in trainers.items():
            s0, t0, c0 = tr.step, tr.train_seconds, time.process_time()
            tr.train(max_steps=s0 + steps)
            images = steps * cfgs[n].train.batch_size
            wall[n].append(images / (tr.train_seconds - t0))
            rates[n].append(images / (time.process_time() - c0) if clock == "cpu" else wall[n][-1])
    return {
        n: {
            "images_per_sec": statistics.median(rates[n]),
            "rounds": rates[n],
            "clock": clock,
            "wall_rounds": wall[n],
            "params": count_params(trainers[n].bare_model),
            "gflop_per_image": per_image_flops(cfgs[n].model) / 1e9,
            "precision": trainers[n].precision,
            "threads": threads,
        }
        for n in cfgs
    }


def train_and_evaluate(args, cfg, name: str, seed: int, steps: int, budget: str, dataset) -> dict:
    """Train ``cfg`` (seed ``seed``) for ``steps`` steps (resumable), evaluate its EMA weights once;
    the stored result."""
    folder = Path(args.runs) / slug(budget) / f"{slug(name)}_s{seed}"
    cfg = replace(cfg, train=replace(cfg.train, seed=seed, max_steps=steps))
    print(f"\n{name} | seed {seed} | {budget}: {steps} steps -> {folder}", flush=True)
    tr = Trainer(
        cfg, folder, dataset=dataset, progress=False, log=lambda m: print("  " + m, flush=True)
    )
    res = tr.train(resume=True)
    if res.step < steps:
        raise SystemExit(f"{name} s{seed}: stopped at step {res.step} of {steps}; run again")
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    tail = [m["loss"] for m in metrics[-10:]]
    model, mcfg, _ = load_model(folder)
    t0 = time.perf_counter()
    sample_seed = 1000 + seed
    ev, _ = sample_and_evaluate(
        model,
        mcfg,
        args.num_samples,
        sampler=args.sampler,
        steps=args.sample_steps,
        guidance=args.guidance,
        seed=sample_seed,
    )
    result = dict(
        ev.as_dict(),
        variant=name,
        seed=seed,
        steps=steps,
        images=steps * cfg.train.batch_size,
        train_seconds=round(res.train_seconds, 1),
        images_per_sec=round(res.images_per_sec, 1),
        precision=tr.precision,
        threads=torch.get_num_threads(),
        final_loss=sum(tail) / len(tail),
        sampler=args.sampler,
        sample_steps=args.sample_steps,
        guidance=args.guidance,
        sample_seed=sample_seed,
        eval_seconds=round(time.perf_counter() - t0, 1),
        hardware=hardware_description(torch.device("cpu")),
        config=config_to_dict(cfg),
    )
    print(
        f"  FID-LeNet {ev.fid:.2f} (floor {ev.floor:.2f}), class accuracy "
        f"{ev.class_accuracy:.3f}, final loss {result['final_loss']:.4f}, evaluation "
        f"{result['eval_seconds']:.0f} s",
        flush=True,
    )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--config", default=str(RECIPE))
    budget_group = ap.add_mutually_exclusive_group()
    budget_group.add_argument(
        "--steps", type=int, help=f"equal steps per run (the default: {DEFAULT_BUDGET_STEPS})"
    )
    budget_group.add_argument(
        "--minutes", type=float, help="equal training time per run (calibrated steps)"
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", help="a subset of the budget kind's variants")
    ap.add_argument("--num-samples", type=int, default=2000)
    ap.add_argument("--sampler", default=DEFAULT_SAMPLER, choices=sorted(SAMPLERS))
    ap.add_argument("--sample-steps", type=int, default=DEFAULT_STEPS)
    ap.add_argument("--guidance", type=float, default=1.25, help="the recipe's scale: 1.25")
    ap.add_argument("--calibrate-steps", type=int, default=5)
    ap.add_argument("--calibrate-rounds", type=int, default=5)
    ap.add_argument(
        "--calibrate-only", action="store_true", help="(--minutes) calibrate, store, stop"
    )
    ap.add_argument("--runs", default=str(REPO / "runs" / "scan_orders"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "scan_orders.json"))
    ap.add_argument("--threads", type=int)
    ap.add_argument(
        "--table",
        action="store_true",
        help="print the stored runs as the README's tables and verdicts; train nothing",
    )
    ap.add_argument(
        "--plot", metavar="PNG", help="plot the stored runs (a panel per budget); train nothing"
    )
    ap.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="add the runs of these reports to --out; train nothing",
    )
    args = ap.parse_args()
    out = Path(args.out)
    if args.merge:
        merge_reports(out, [Path(m) for m in args.merge])
        return
    if args.table or args.plot:
        runs = json.loads(out.read_text()).get("runs", {}) if out.is_file() else {}
        if not runs:
            print(f"no stored runs in {out}")
            return
        table = summarise(runs, order=VARIANTS)
        if args.table:
            print(markdown_table(table) + "\n" + markdown_verdicts(table))
        if args.plot:
            plot(table, Path(args.plot))
            print(f"wrote {args.plot}")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    steps_budget = args.steps or (None if args.minutes else DEFAULT_BUDGET_STEPS)
    base_label = "recipe" if Path(args.config).resolve() == RECIPE else Path(args.config).stem
    budget = budget_name(steps=steps_budget, minutes=args.minutes, base=base_label)
    kind_variants = STEPS_VARIANTS if steps_budget else TIME_VARIANTS
    names = args.variants or kind_variants
    wrong = [n for n in names if n not in kind_variants]
    if wrong:
        raise SystemExit(
            f"variants {wrong} are not run at {'equal steps' if steps_budget else 'equal time'}; "
            f"those are: {kind_variants}"
        )
    print(environment_report(), flush=True)
    report = json.loads(out.read_text()) if out.is_file() else {}
    base = load_config(args.config)
    base = replace(
        base, train=replace(base.train, sample_every=0, checkpoint_every=250, log_every=100)
    )
    cfgs = {}
    for name in names:
        keys = dict(VARIANTS[name])
        if name == SAME_COST:
            keys["hidden_dim"] = report.get("matched_width") or matched_width(base.model, keys)
            report["matched_width"] = keys["hidden_dim"]
        cfgs[name] = variant(base, name=name, **keys)
    dataset = dataset_from_config(base.data, "train")

    # equal time: the calibrated steps of each variant, measured once per budget on this machine
    steps_of = {n: steps_budget for n in cfgs}
    if args.minutes:
        cal = report.setdefault("calibration", {}).setdefault(budget, {})
        missing = [n for n in cfgs if n not in cal]
        if missing:
            print(f"calibrating {missing} ...", flush=True)
            cal.update(
                calibrate(
                    {n: cfgs[n] for n in missing},
                    dataset,
                    args.calibrate_steps,
                    args.calibrate_rounds,
                )
            )
            report.update(
                environment=environment_report(),
                hardware=hardware_description(torch.device("cpu")),
            )
            with file_lock(out):
                fold_stored(report, out)
                atomic_write_text(out, json.dumps(report, indent=2) + "\n")
        for n in cfgs:
            c = cal[n]
            steps_of[n] = max(
                1, round(args.minutes * 60 * c["images_per_sec"] / cfgs[n].train.batch_size)
            )
            print(
                f"{n:<22} {c['images_per_sec']:7.1f} images/s ({c.get('clock', 'wall')} clock, "
                f"{c['precision']}, {c['threads']} thread(s))  {c['params']:>9,} parameters  "
                f"{c['gflop_per_image']:.3f} GFLOP/image -> {steps_of[n]} steps",
                flush=True,
            )
        if args.calibrate_only:
            print(f"wrote {out}")
            return

    for seed in args.seeds:
        for n, cfg in cfgs.items():
            rid = f"{n} | seed {seed} | {budget}"
            stored = json.loads(out.read_text()).get("runs", {}) if out.is_file() else {}
            if rid in stored or rid in report.get("runs", {}):
                continue
            result = train_and_evaluate(args, cfg, n, seed, steps_of[n], budget, dataset)
            if args.minutes:
                result["minutes"] = args.minutes
                if result["precision"] != report["calibration"][budget][n]["precision"]:
                    print(
                        f"  note: trained in {result['precision']}, calibrated in "
                        f"{report['calibration'][budget][n]['precision']}",
                        flush=True,
                    )
            store_run(out, report, rid, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
