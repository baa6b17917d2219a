"""Scan orders and the paper's claims at course scale (notebook 08, issue 17).

    python benchmarks/bench_scan_orders.py --minutes 20 --seeds 0 1       # the stored run (hours; resumable)
    python benchmarks/bench_scan_orders.py --table                        # the README's table and verdicts of the stored runs
    python benchmarks/bench_scan_orders.py --merge runs/scan_orders/seed1.json   # add runs made elsewhere
    python benchmarks/bench_scan_orders.py --minutes 0.2 --seeds 0 --num-samples 100 --variants raster snake \
        --out /tmp/s.json --runs /tmp/s                                   # a smoke run

Every variant changes one thing of a small DiffuSSM (``--width`` 64, depth 4, 2x2 patches, M = 2,
bidirectional S4D, raster order, 28x28 MNIST): the scan order (snake, raster/column alternating per
layer, Hilbert, random), and the paper's three claims (patch 1 at a width that costs the same per
image as the base, causal instead of bidirectional, M = 1 instead of 2).

Equal CPU time, reproducibly: a calibration first measures every variant's training images/s on
this machine, interleaved (``--calibrate-steps`` steps per variant, ``--calibrate-rounds`` rounds,
median); each run then trains for ``minutes x 60 x its rate`` images, a number of steps that no
later load on the machine can change. Runs write checkpoints (every 250 steps) into
``--runs/<variant>_s<seed>``; run the same command again to continue (``--resume`` is implied).
Each finished run is evaluated once: FID-LeNet of ``--num-samples`` class-balanced EMA samples
(DDIM 25 steps, no guidance, sampling seed 0), its real-vs-real floor at the same count, class
accuracy and the final training loss, and written into the JSON report as it is on disk then (so
runs another process stored there meanwhile are kept). ``--table`` trains nothing: it prints the
stored runs' table and the verdict on each claim (``diffussm_lib.evaluation.seeds``) for the README.
Runs can be made in parallel (say one process per seed, ``--threads 1`` each, on a copy of the JSON,
so that the calibration is shared: ``--out`` the copy) and then added with ``--merge``, which refuses a
file whose calibration differs, or whose run of the same id has other results.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from diffussm_lib.atomic import atomic_write_text
from diffussm_lib.config import config_to_dict, load_config
from diffussm_lib.data import dataset_from_config
from diffussm_lib.env import environment_report, hardware_description
from diffussm_lib.evaluation import sample_and_evaluate, variant
from diffussm_lib.evaluation.seeds import budget_of, markdown_table, markdown_verdicts, summarise
from diffussm_lib.models import build_model, count_flops, count_params
from diffussm_lib.training import Trainer, load_model

ORDER_VARIANTS = {
    "raster": {},  # the paper (and the base of every variant)
    "snake": {"scan_order": "snake"},
    "raster/column": {"scan_order": ["raster", "column"]},
    "hilbert": {"scan_order": "hilbert"},
    "random": {"scan_order": "random"},
}
CLAIM_VARIANTS = {
    "patch 1 (same cost)": {"patch_size": 1},  # width set by matched_width()
    "causal": {"bidirectional": False},
    "M = 1": {"hourglass_ratio": 1},
}


def per_image_flops(mc) -> int:
    x = torch.zeros(1, mc.in_channels, mc.image_size, mc.image_size)
    with torch.no_grad():
        return count_flops(
            build_model(mc).eval(),
            x,
            torch.zeros(1, dtype=torch.long),
            torch.zeros(1, dtype=torch.long),
        )


def matched_width(base_mc, keys: dict) -> int:
    """The width (a multiple of 8) at which the variant's forward FLOPs per image are closest to the base's."""
    target = per_image_flops(base_mc)
    best = min(
        range(8, base_mc.hidden_dim + 1, 8),
        key=lambda d: abs(per_image_flops(replace(base_mc, hidden_dim=d, **keys)) - target),
    )
    return best


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
                f"--merge: run {rid!r} is in both reports ({source} and --out) with different results"
            )
    return added


def store_run(out: Path, report: dict, rid: str, result: dict) -> None:
    """Write ``report`` with the run ``rid`` to ``out`` (atomically), first taking in the runs that
    another process (``--merge``, or a second run of this script) stored there meanwhile."""
    report.setdefault("runs", {})[rid] = result
    if out.is_file():
        fold_runs(report, json.loads(out.read_text()).get("runs", {}))
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")


def merge_reports(out: Path, others: list[Path]) -> None:
    """Add the runs of ``others`` to the report ``out`` (written atomically); every budget a merged run
    belongs to must have the same calibration in both reports, and a run id in both the same results."""
    report = json.loads(out.read_text())
    for path in others:
        if not path.is_file():
            raise SystemExit(f"--merge: no such report: {path}")
        other = json.loads(path.read_text())
        for budget in {budget_of(rid) for rid in other.get("runs", {})}:
            if other.get("calibration", {}).get(budget) != report.get("calibration", {}).get(
                budget
            ):
                raise SystemExit(
                    f"--merge: {path} was calibrated differently for {budget!r}: its steps are not "
                    f"the same CPU time as those of {out}"
                )
        added = fold_runs(report, other.get("runs", {}), source=path)
        print(f"{path}: added {len(added)} runs" + "".join(f"\n  {rid}" for rid in added))
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--config", default=str(REPO / "configs" / "mnist_diffussm.yaml"))
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument(
        "--minutes", type=float, default=20.0, help="training CPU minutes per run (2 cores)"
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--variants", nargs="+", help="a subset of the variant names")
    ap.add_argument("--num-samples", type=int, default=2000)
    ap.add_argument("--calibrate-steps", type=int, default=3)
    ap.add_argument("--calibrate-rounds", type=int, default=3)
    ap.add_argument("--runs", default=str(REPO / "runs" / "scan_orders"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "scan_orders.json"))
    ap.add_argument("--threads", type=int)
    ap.add_argument(
        "--table",
        action="store_true",
        help="print the stored runs as the README's table; train nothing",
    )
    ap.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="add the runs of these reports to --out; train nothing",
    )
    args = ap.parse_args()
    if args.merge:
        merge_reports(Path(args.out), [Path(m) for m in args.merge])
        return
    if args.table:
        runs = (
            json.loads(Path(args.out).read_text()).get("runs", {})
            if Path(args.out).is_file()
            else {}
        )
        table = summarise(runs, order={**ORDER_VARIANTS, **CLAIM_VARIANTS})
        print(
            markdown_table(table) + "\n" + markdown_verdicts(table)
            if runs
            else f"no stored runs in {args.out}"
        )
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    print(environment_report(), flush=True)
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {}
    base = load_config(args.config)
    base = replace(
        base,
        model=replace(base.model, hidden_dim=args.width),
        train=replace(
            base.train, max_steps=10**9, sample_every=0, checkpoint_every=250, log_every=50
        ),
    )
    variants = {**ORDER_VARIANTS, **CLAIM_VARIANTS}
    if args.variants:
        unknown = sorted(set(args.variants) - set(variants))
        if unknown:
            raise SystemExit(f"unknown variants {unknown}; known: {sorted(variants)}")
        variants = {k: v for k, v in variants.items() if k in args.variants}
    cfgs = {}
    for name, keys in variants.items():
        keys = dict(keys)
        if name.startswith("patch 1"):
            keys["hidden_dim"] = report.get("matched_width") or matched_width(base.model, keys)
            report["matched_width"] = keys["hidden_dim"]
        cfgs[name] = variant(base, name=name, **keys)
    dataset = dataset_from_config(base.data, "train")

    # 1. calibration: training images/s of every variant, interleaved, on this machine
    key = f"{args.minutes} min, width {args.width}, batch {base.train.batch_size}"
    cal = report.setdefault("calibration", {}).setdefault(key, {})
    missing = [n for n in cfgs if n not in cal]
    if missing:
        trainers = {
            n: Trainer(
                replace(cfgs[n], train=replace(cfgs[n].train, checkpoint_every=0)),
                None,
                dataset=dataset,
                progress=False,
                log=lambda m: None,
            )
            for n in missing
        }
        rates = {n: [] for n in missing}
        for n, tr in trainers.items():
            tr.train(max_steps=1)  # warm-up
        for _ in range(args.calibrate_rounds):
            for n, tr in trainers.items():
                s0, t0 = tr.step, tr.train_seconds
                tr.train(max_steps=s0 + args.calibrate_steps)
                rates[n].append(
                    args.calibrate_steps * base.train.batch_size / (tr.train_seconds - t0)
                )
        for n in missing:
            cal[n] = {
                "images_per_sec": statistics.median(rates[n]),
                "rounds": rates[n],
                "params": count_params(trainers[n].bare_model),
                "gflop_per_image": per_image_flops(cfgs[n].model) / 1e9,
            }
        report.update(
            environment=environment_report(), hardware=hardware_description(torch.device("cpu"))
        )
        atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    for n in cfgs:
        print(
            f"{n:<22} {cal[n]['images_per_sec']:7.1f} images/s  {cal[n]['params']:>9,} parameters  "
            f"{cal[n]['gflop_per_image']:.3f} GFLOP/image",
            flush=True,
        )

    # 2. the runs: equal CPU time = the calibrated number of steps; resumable; evaluated once
    results = report.setdefault("runs", {})
    for seed in args.seeds:
        for n, cfg in cfgs.items():
            rid = f"{n} | seed {seed} | {key}"
            if rid in results:
                continue
            steps = max(
                1, round(args.minutes * 60 * cal[n]["images_per_sec"] / cfg.train.batch_size)
            )
            cfg = replace(cfg, train=replace(cfg.train, seed=seed, max_steps=steps))
            folder = Path(args.runs) / f"{n.replace(' ', '_').replace('/', '-')}_s{seed}"
            print(f"\n{rid}: {steps} steps -> {folder}", flush=True)
            tr = Trainer(
                cfg,
                folder,
                dataset=dataset,
                progress=False,
                log=lambda m: print("  " + m, flush=True),
            )
            res = tr.train(resume=True)
            if res.step < steps:
                raise SystemExit(
                    f"{rid}: stopped at step {res.step} of {steps}; run again to continue"
                )
            metrics = [
                json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()
            ]
            tail = [m["loss"] for m in metrics[-10:]]
            model, mcfg, _ = load_model(folder)
            t0 = time.perf_counter()
            ev, _ = sample_and_evaluate(
                model, mcfg, args.num_samples, sampler="ddim", steps=25, guidance=1.0, seed=0
            )
            results[rid] = dict(
                ev.as_dict(),
                variant=n,
                seed=seed,
                steps=steps,
                minutes=args.minutes,
                final_loss=sum(tail) / len(tail),
                eval_seconds=round(time.perf_counter() - t0, 1),
                config=config_to_dict(cfg),
            )
            print(
                f"  FID-LeNet {ev.fid:.2f} (floor {ev.floor:.2f}), class accuracy {ev.class_accuracy:.3f}, "
                f"final loss {results[rid]['final_loss']:.4f}",
                flush=True,
            )
            store_run(out, report, rid, results[rid])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
