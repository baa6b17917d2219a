"""DiffuSSM against DiT on the CPU recipe (issue 29): a learning-rate sweep, seeds, equal steps and
equal time, curves, and where the FLOPs go.

    python benchmarks/bench_backbones.py --calibrate --threads 1            # both speeds, stored once
    python benchmarks/bench_backbones.py --sweep --models dit --rates 1e-3 2e-3 3e-3 --threads 1
    python benchmarks/bench_backbones.py --sweep --models diffussm --rates 1e-3 2e-3 3e-3 --threads 1
        # one process per line, side by side, as many as there are cores; where the best rate is
        # the largest swept, sweep further (the stored sweep: 1e-3 2e-3 3e-3 5e-3 8e-3)
    python benchmarks/bench_backbones.py --seeds 1 --models dit --threads 1      # } the main runs,
    python benchmarks/bench_backbones.py --seeds 2 --models dit --threads 1      # } one process per
    python benchmarks/bench_backbones.py --seeds 0 --models dit --threads 1      # } (seed, model);
    python benchmarks/bench_backbones.py --seeds 1 2 --models diffussm --threads 1   # } seed 0 reuses
    python benchmarks/bench_backbones.py --seeds 0 --models diffussm --threads 1     # } the sweep's run
    python benchmarks/bench_backbones.py --table --plot                     # backbones.md and .png
    python benchmarks/bench_backbones.py --flops                            # the FLOP split only
    python benchmarks/bench_backbones.py --readme                           # the README's block
    python benchmarks/bench_backbones.py --sweep --rates 1e-3 2e-3 --steps 4 --num-samples 20 \
        --curve-samples 10 --out /tmp/b.json --runs /tmp/b --threads 1     # a smoke run (then
                                                                            # --seeds 0 1 2, --table)

Both models are the recipe (``configs/mnist_speedrun.yaml``: 32x32 padded MNIST, 4x4 patches so
L = 64 tokens, width 128, depth 4, cosine decay to the end of the run, ``precision: auto``, EMA)
with only the backbone changed (``configs/mnist_speedrun_dit.yaml``); the script refuses configs
that differ elsewhere. The learning rate is swept for each model (``--sweep``: ``--rates`` at
seed 0, ``--steps`` each; one seed per rate); the best rate of each (lowest final FID-LeNet) then
trains ``--seeds`` at two budgets: equal steps (S = ``--steps`` for both) and equal training time
(DiffuSSM at S steps, DiT at S x its images/s / DiffuSSM's, from ``--calibrate``: both models'
training speed in fp32 and bf16 measured in interleaved rounds, the medians stored once per thread
count). The recipe's ``precision: auto`` is resolved there, once per model, by the trainer's own
rule (bf16 where it is clearly faster), and every run of that model trains in it: a pick per run,
made on one batch, can differ between seeds of one model when the two are close. A run is
named by its settings (``run_id``), so the sweep's seed-0 run at the best rate is the equal-steps
seed 0, and DiffuSSM's runs serve both budgets.

Every run trains into ``--runs/<run id>`` with checkpoints (run the same command again to continue)
and writes its EMA weights at ``--curve-points`` (fractions of its steps) as snapshots, without
stopping (stopping would move the end of the cosine schedule). After training: the final EMA
weights are evaluated once on ``--num-samples`` class-balanced samples (the sweep's number), and
in the main runs every curve point on ``--curve-samples`` (one N along the whole curve: FID-LeNet
is biased by N). Sampling: ``--sampler`` / ``--sample-steps`` (the course's defaults), guidance
``--guidance`` (the recipe's), seed 1000 + the training seed. Results go into ``--out`` after
every run and every curve point, under a lock, joined with what other processes stored there, so
several one-thread processes can share one file. ``--table`` writes the markdown report
(``--md``) from the stored runs: the FLOP split, the calibration, the sweep, each budget's mean
+- SD over seeds and worst seed, and Welch's test of DiT minus DiffuSSM (FID-LeNet, final loss),
Holm-adjusted over the comparisons made, with a verdict in words; ``--plot`` draws loss and
FID-LeNet against steps and against seconds: the seconds at the calibrated speed (step x batch /
the model's calibrated images/s), the time the equal-time budget is defined in. A run is a number of
steps in the calibrated precision, so any machine can run it (each stores its ``hardware`` and
measured seconds; the same code and precision on another CPU differs only in how its kernels round
float sums); its place on the time axis is that of the calibration's machine, not what a loaded or
different machine measured.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_scan_orders import store_run

from diffussm_lib.atomic import atomic_write_text, file_lock
from diffussm_lib.config import config_to_dict, load_config
from diffussm_lib.data import dataset_from_config
from diffussm_lib.diffusion import DEFAULT_SAMPLER, DEFAULT_STEPS
from diffussm_lib.env import environment_report, hardware_description
from diffussm_lib.evaluation import sample_and_evaluate
from diffussm_lib.evaluation.backbones import (
    MIN_RATES,
    MODELS,
    budget_words,
    budgets,
    best_rate,
    curve_steps,
    flops_table,
    groups,
    mechanism,
    plot,
    readme_block,
    run_id,
    study_lines,
    sweep_runs,
    sweep_table,
    threads_label,
)
from diffussm_lib.models import build_model, count_params, flop_split
from diffussm_lib.training import (
    EMASnapshots,
    Trainer,
    load_checkpoint,
    load_model,
    read_metrics,
)
from diffussm_lib.training.step import pick_faster

FLOP_SETTINGS = {  # the L = 64 recipe, and the course's L = 196 configs
    "recipe": ("mnist_speedrun.yaml", "mnist_speedrun_dit.yaml"),
    "course": ("mnist_diffussm.yaml", "mnist_dit.yaml"),
}
PRECISIONS = ("fp32", "bf16")  # full precision first (pick_faster keeps it on a tie)
FLOP_BATCH = 64  # FLOPs per image in a batch of this size (the S4D kernel is made once per batch)


# ---------------------------------------------------------------------------- the report file
def read_report(out: Path) -> dict:
    return json.loads(out.read_text()) if out.is_file() else {}


def store(out: Path, rid: str, result: dict) -> None:
    """Store one run's result (new or extended), keeping every run other processes stored."""
    # store_run takes file_lock(out) and joins the runs stored meanwhile
    store_run(out, read_report(out), rid, result)


def store_section(out: Path, path: tuple[str, ...], value, keep_stored: bool) -> object:
    """Set ``report[path[0]]...[path[-1]] = value`` in ``out`` and return what is stored there: with
    ``keep_stored``, a value another process stored first wins (one calibration for all)."""
    with file_lock(out):
        report = read_report(out)
        section = report
        for key in path[:-1]:
            section = section.setdefault(key, {})
        if not (keep_stored and path[-1] in section):
            section[path[-1]] = value
            atomic_write_text(out, json.dumps(report, indent=2) + "\n")
        return section[path[-1]]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")


# ---------------------------------------------------------------------------- configs
def load_pair(args) -> dict:
    """{"diffussm": cfg, "dit": cfg}; everything but the model section and the name must agree."""
    cfgs = {"diffussm": load_config(args.diffussm_config), "dit": load_config(args.dit_config)}
    rest = [
        {k: v for k, v in config_to_dict(c).items() if k not in ("model", "name")}
        for c in cfgs.values()
    ]
    if rest[0] != rest[1]:
        diff = sorted(
            f"{s}.{k}"
            for s in rest[0]
            for k in set(rest[0][s]) | set(rest[1].get(s, {}))
            if rest[0][s].get(k) != rest[1].get(s, {}).get(k)
        )
        raise SystemExit(
            f"the two configs must differ only in the model section; also differ: {diff}"
        )
    for m, c in cfgs.items():
        if c.model.arch != m:
            raise SystemExit(f"--{m}-config has model.arch {c.model.arch!r}, expected {m!r}")
    return cfgs


def run_config(cfg, cal: dict, lr: float, seed: int, steps: int):
    """A run of ``cfg`` at this rate, seed and length, in the model's calibrated precision."""
    train = replace(
        cfg.train,
        lr=lr,
        seed=seed,
        max_steps=steps,
        precision=cal[cfg.model.arch]["precision"],
        sample_every=0,
        checkpoint_every=250,
    )
    return replace(cfg, train=train)


# ---------------------------------------------------------------------------- FLOPs
def flop_report() -> dict:
    """{setting: {"DiffuSSM" / "DiT": flop_split per image}} at the recipe's L and the course's."""
    out = {}
    for names in FLOP_SETTINGS.values():
        cfgs = [load_config(REPO / "configs" / n) for n in names]
        mc = cfgs[0].model
        L = (mc.image_size // mc.patch_size) ** 2
        setting = (
            f"L = {L} ({mc.image_size}x{mc.image_size}, patch {mc.patch_size}; {', '.join(names)})"
        )
        out[setting] = {}
        for c in cfgs:
            m = c.model
            x = torch.zeros(FLOP_BATCH, m.in_channels, m.image_size, m.image_size)
            t = torch.zeros(FLOP_BATCH, dtype=torch.long)
            split = flop_split(build_model(m).eval(), x, t, t)
            out[setting][MODELS[m.arch]] = {k: v / FLOP_BATCH for k, v in split.items()}
            out[setting][MODELS[m.arch]]["params"] = count_params(build_model(m))
    return out


# ---------------------------------------------------------------------------- calibration
def calibrate(args, cfgs: dict, dataset, threads: int) -> dict:
    """Both models' training images/s on this machine, in each precision: a warm-up, then
    ``--calibrate-rounds`` rounds of ``--calibrate-steps`` steps of each (model, precision),
    interleaved; the median per pair. Each model's precision is the trainer's rule for
    ``precision: auto`` (``pick_faster``) applied to these medians, once: every run of the model
    then trains in it (a pick per run, on one batch, can differ between seeds), and its speed is
    the calibrated one."""
    trainers = {
        (m, p): Trainer(
            replace(c, train=replace(c.train, checkpoint_every=0, precision=p)),
            None,
            dataset=dataset,
            progress=False,
            log=lambda msg: None,
        )
        for m, c in cfgs.items()
        for p in PRECISIONS
    }
    for tr in trainers.values():
        tr.train(max_steps=2)  # warm-up
    rates = {k: [] for k in trainers}
    for _ in range(args.calibrate_rounds):
        for k, tr in trainers.items():
            s0, t0 = tr.step, tr.train_seconds
            tr.train(max_steps=s0 + args.calibrate_steps)
            batch = tr.cfg.train.batch_size
            rates[k].append(round(args.calibrate_steps * batch / (tr.train_seconds - t0), 2))
    cal = {}
    for m in cfgs:
        by = {p: statistics.median(rates[m, p]) for p in PRECISIONS}
        pick = pick_faster({p: 1.0 / by[p] for p in PRECISIONS})
        cal[m] = {
            "precision": pick,
            "images_per_sec": by[pick],
            "by_precision": {
                p: {"images_per_sec": by[p], "rounds": rates[m, p]} for p in PRECISIONS
            },
        }
    cal.update(
        steps_per_round=args.calibrate_steps,
        threads=threads,
        hardware=hardware_description(torch.device("cpu")),
        torch=torch.__version__,
    )
    return cal


def get_calibration(args, cfgs, dataset, threads: int) -> dict:
    key = threads_label(threads)
    cal = read_report(Path(args.out)).get("calibration", {}).get(key)
    if cal is None:
        print(f"calibrating both models' training speed at {key} ...", flush=True)
        cal = calibrate(args, cfgs, dataset, threads)
        cal = store_section(Path(args.out), ("calibration", key), cal, keep_stored=True)
    for m in MODELS:
        print(
            f"  {MODELS[m]:<9} trains in {cal[m]['precision']}: "
            + ", ".join(
                f"{p} {v['images_per_sec']:.1f} images/s (median of {v['rounds']})"
                for p, v in cal[m]["by_precision"].items()
            ),
            flush=True,
        )
    return cal


# ---------------------------------------------------------------------------- runs
def evaluate(path: Path, n: int, seed: int, args) -> dict:
    """The EMA weights at ``path`` (a run folder or a snapshot): FID-LeNet of ``n`` class-balanced
    samples, with the step and training seconds they were taken at."""
    model, mcfg, ckpt = load_model(path)
    t0 = time.perf_counter()
    ev, _ = sample_and_evaluate(
        model,
        mcfg,
        n,
        sampler=args.sampler,
        steps=args.sample_steps,
        guidance=args.guidance,
        seed=1000 + seed,
    )
    out = dict(
        ev.as_dict(),
        step=ckpt.step,
        train_seconds=round(float(ckpt.extra.get("train_seconds", float("nan"))), 1),
        seconds=round(time.perf_counter() - t0, 1),
    )
    print(
        f"  step {out['step']}, N = {n}: FID-LeNet {ev.fid:.2f} (floor {ev.floor:.2f}), class "
        f"accuracy {ev.class_accuracy:.4f} ({out['seconds']:.0f} s)",
        flush=True,
    )
    return out


def train_run(args, cfg, folder: Path, dataset, threads: int) -> dict:
    """Train (or continue) one run to its ``max_steps`` with EMA snapshots at the curve points;
    returns its result without evaluations."""
    steps = cfg.train.max_steps
    snaps = [s for s in curve_steps(steps, args.curve_points) if s < steps]
    tr = Trainer(
        cfg,
        folder,
        dataset=dataset,
        progress=False,
        callbacks=[EMASnapshots(snaps, folder)],
        log=lambda m: print("  " + m, flush=True),
    )
    res = tr.train(resume=True)
    if res.step < steps:
        raise SystemExit(f"{folder}: stopped at step {res.step} of {steps}; run again to continue")
    ckpt = load_checkpoint(folder)
    records = read_metrics(folder / "metrics.jsonl")
    tail = [r["loss"] for r in records[-10:]]
    return dict(
        model=cfg.model.arch,
        lr=cfg.train.lr,
        seed=cfg.train.seed,
        steps=steps,
        threads=threads,
        images=steps * cfg.train.batch_size,
        train_seconds=round(res.train_seconds, 1),
        images_per_sec=round(res.images_per_sec, 1),
        precision=ckpt.extra.get("precision", tr.precision),
        final_loss=sum(tail) / len(tail),
        loss_curve=[
            [r["step"], round(r["train_seconds"], 1), round(r["loss"], 5)] for r in records
        ],
        hardware=hardware_description(torch.device("cpu")),
        config=config_to_dict(cfg),
        sampling=dict(
            sampler=args.sampler,
            steps=args.sample_steps,
            guidance=args.guidance,
            seed=1000 + cfg.train.seed,
        ),
        curve=[],
    )


def ensure_run(args, cfg, dataset, threads: int, with_curve: bool) -> dict:
    """The stored result of the run ``cfg`` describes: trained, evaluated at the end and (with
    ``with_curve``) at every curve point, each piece stored as soon as it is done."""
    m, tc = cfg.model.arch, cfg.train
    rid = run_id(m, tc.lr, tc.seed, tc.max_steps, threads)
    folder = Path(args.runs) / slug(rid)
    out = Path(args.out)
    result = read_report(out).get("runs", {}).get(rid)
    if result is None:
        print(f"\n{rid} -> {folder}", flush=True)
        result = train_run(args, cfg, folder, dataset, threads)
        result["eval"] = evaluate(folder, args.num_samples, tc.seed, args)
        store(out, rid, result)
    if not with_curve:
        return result
    for s in curve_steps(tc.max_steps, args.curve_points):
        if any(p["step"] == s and p["n"] == args.curve_samples for p in result["curve"]):
            continue
        if s == tc.max_steps and result["eval"]["n"] == args.curve_samples:
            point = dict(result["eval"])
        else:
            path = folder if s == tc.max_steps else EMASnapshots.path(folder, s)
            if not path.exists():
                raise SystemExit(
                    f"{rid}: no EMA snapshot at step {s} ({path}); it was trained with other "
                    "--curve-points"
                )
            print(f"{rid}: curve point at step {s}", flush=True)
            point = evaluate(path, args.curve_samples, tc.seed, args)
        result["curve"] = sorted(result["curve"] + [point], key=lambda p: (p["step"], p["n"]))
        store(out, rid, result)
    return result


def sweep(args, cfgs, dataset, threads: int) -> None:
    cal = get_calibration(args, cfgs, dataset, threads)
    for lr in args.rates:
        for m in args.models:
            ensure_run(args, run_config(cfgs[m], cal, lr, 0, args.steps), dataset, threads, False)


def main_runs(args, cfgs, dataset, threads: int) -> None:
    runs = read_report(Path(args.out)).get("runs", {})
    for m in MODELS:
        rows = sweep_runs(runs, m, args.steps, threads)
        if not rows:
            raise SystemExit(
                f"no sweep of {MODELS[m]} at {args.steps} steps, {threads_label(threads)} in "
                f"{args.out}: run --sweep first"
            )
        print(
            f"{MODELS[m]}: best rate {best_rate(runs, m, args.steps, threads):g} of "
            f"{[r['lr'] for r in rows]}"
            + (f" (fewer than {MIN_RATES} rates swept)" if len(rows) < MIN_RATES else ""),
            flush=True,
        )
    print(sweep_table(runs, args.steps, threads), flush=True)
    cal = get_calibration(args, cfgs, dataset, threads)
    plans = budgets(runs, args.steps, threads, cal)
    todo = []  # (model, lr, steps) in budget order, without repeats
    for c in plans:
        print(f"{c['budget']}: {budget_words(c, threads)}", flush=True)
        for m in MODELS:
            arm = (m, c["lr"][m], c["steps"][m])
            if m in args.models and arm not in todo:
                todo.append(arm)
    for seed in args.seeds:
        for m, lr, steps in todo:
            ensure_run(args, run_config(cfgs[m], cal, lr, seed, steps), dataset, threads, True)


# ---------------------------------------------------------------------------- report
def markdown(report: dict, out: Path, plot: Path, md: Path) -> str:
    """The report: FLOP split, then per sweep (steps, threads) the calibration, the sweep, each
    budget's table and the verdicts, and the figure if ``plot`` exists."""
    runs, cals = report.get("runs", {}), report.get("calibration", {})
    any_run = next(iter(runs.values()), None)
    lines = [
        "# DiffuSSM against DiT on the CPU recipe (issue 29)",
        "",
        f"Written by `python benchmarks/bench_backbones.py --table` from `{out.name}`; how the runs "
        "were made: the script's docstring.",
    ]
    if any_run:
        s = any_run["sampling"]
        hw = sorted({r["hardware"] for r in runs.values()})
        lines += [
            "",
            f"Both models: the recipe `configs/mnist_speedrun.yaml` and its DiT twin "
            f"`configs/mnist_speedrun_dit.yaml` (only the model section differs). FID-LeNet of the "
            f"final EMA weights on {'/'.join(f'{n:,}' for n in sorted({r['eval']['n'] for r in runs.values()}))} class-balanced samples ({s['sampler']}, "
            f"{s['steps']} steps, guidance {s['guidance']:g}, sampling seed 1000 + training seed), "
            "with its real-vs-real floor at the same N; final loss: the mean of the last 10 logged "
            f"training losses. Machine: {'; '.join(hw)}.",
        ]
    if report.get("flops"):
        lines += [
            "",
            f"## Where the FLOPs go (forward, per image in a batch of {FLOP_BATCH}, MFLOP)",
            "",
            flops_table(report["flops"]),
            "",
            mechanism(report["flops"]),
        ]
    for steps, threads in groups(runs):
        key = threads_label(threads)
        cal = cals.get(key)
        lines += ["", f"## {steps} steps, {key} per run", ""]
        if cal:
            lines.append(
                f"Calibration ({key}, {cal['hardware']}; interleaved rounds of "
                f"{cal['steps_per_round']} steps of each model in each precision, median "
                "images/s; each model trains in its faster precision, picked once by the "
                "trainer's rule for `precision: auto`): "
                + "; ".join(
                    f"{MODELS[m]} "
                    + ", ".join(
                        f"{p} {v['images_per_sec']:.1f} (rounds {v['rounds']})"
                        for p, v in cal[m]["by_precision"].items()
                    )
                    + f" -> {cal[m]['precision']}"
                    for m in MODELS
                )
                + f". DiT / DiffuSSM = {cal['dit']['images_per_sec'] / cal['diffussm']['images_per_sec']:.3f}."
            )
        else:
            lines.append("No calibration stored: no equal-time budget yet.")
        lines += [""] + study_lines(runs, steps, threads, cal)
    if plot.is_file():
        lines += [
            "",
            f"![loss and FID-LeNet against steps and seconds]({os.path.relpath(plot, md.parent)})",
        ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--diffussm-config", default=str(REPO / "configs" / "mnist_speedrun.yaml"))
    ap.add_argument("--dit-config", default=str(REPO / "configs" / "mnist_speedrun_dit.yaml"))
    ap.add_argument("--sweep", action="store_true", help="the learning-rate sweep (seed 0)")
    ap.add_argument("--calibrate", action="store_true", help="measure both speeds; train nothing")
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--rates", type=float, nargs="+", default=[1e-3, 2e-3, 3e-3, 5e-3, 8e-3])
    ap.add_argument("--steps", type=int, default=3000, help="S: the sweep's and equal steps' steps")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--curve-points", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    ap.add_argument("--curve-samples", type=int, default=1000)
    ap.add_argument("--num-samples", type=int, default=2000)
    ap.add_argument("--guidance", type=float, default=1.25)
    ap.add_argument("--sampler", default=DEFAULT_SAMPLER)
    ap.add_argument("--sample-steps", type=int, default=DEFAULT_STEPS)
    ap.add_argument("--calibrate-steps", type=int, default=5)
    ap.add_argument("--calibrate-rounds", type=int, default=5)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--runs", default=str(REPO / "runs" / "backbones"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "backbones.json"))
    ap.add_argument("--md", help="the markdown report (default: --out with .md)")
    ap.add_argument("--table", action="store_true", help="write --md from the stored runs")
    ap.add_argument("--readme", action="store_true", help="print the README's block; train nothing")
    ap.add_argument(
        "--plot",
        nargs="?",
        const=str(REPO / "benchmarks" / "results" / "backbones.png"),
        metavar="PNG",
        help="draw the curves (default benchmarks/results/backbones.png)",
    )
    ap.add_argument("--flops", action="store_true", help="print the FLOP split; train nothing")
    args = ap.parse_args()
    out = Path(args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    if args.flops or args.table:
        flops = store_section(out, ("flops",), flop_report(), keep_stored=False)
        if args.flops:
            print(flops_table(flops) + "\n\n" + mechanism(flops))
    if args.table or args.plot:
        report = read_report(out)
        found = groups(report.get("runs", {}))
        pick = [g for g in found if g[0] == args.steps and (not args.threads or g[1] == threads)]
        if args.plot and (pick or found):
            plot(report, *(pick or found)[0], Path(args.plot))
            print(f"wrote {args.plot}")
        if args.table:
            md = Path(args.md) if args.md else out.with_suffix(".md")
            png = Path(args.plot) if args.plot else md.with_suffix(".png")
            atomic_write_text(md, markdown(report, out, png, md))
            print("\n" + md.read_text() + f"\nwrote {md}")
    if args.readme:
        print(readme_block(read_report(out)))
    if args.flops or args.table or args.plot or args.readme:
        return
    print(environment_report(), flush=True)
    cfgs = load_pair(args)
    dataset = dataset_from_config(cfgs["diffussm"].data, "train")
    if args.calibrate:
        get_calibration(args, cfgs, dataset, threads)
    elif args.sweep:
        sweep(args, cfgs, dataset, threads)
    else:
        main_runs(args, cfgs, dataset, threads)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
