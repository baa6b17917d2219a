"""Sampler quality against cost (issue 27): DDIM and DPM-Solver++(2M) on the pretrained checkpoint.

    python benchmarks/bench_samplers.py --threads 2 --plot              # the stored run (about 1-2 h on 2 cores)
    python benchmarks/bench_samplers.py --table --plot                  # the stored runs: table, verdict, figure
    python benchmarks/bench_samplers.py --configs ddim:25 dpm_solver++:8 --seeds 0 --num-samples 20 \\
        --out /tmp/samplers.json                                        # a smoke run

Every config (``sampler:steps``; default DDIM at 10 / 25 / 50 steps and DPM-Solver++ at 5 / 8 / 10 / 15 /
20) samples ``--num-samples`` class-balanced digits (every class equally often) from the EMA weights of
``--checkpoint`` at guidance ``--guidance`` (default 1.2, the course's setting: README, model card) with
each of ``--seeds`` (the seed draws x_T; both samplers are deterministic given it), and measures
FID-LeNet against the MNIST test set, its real-vs-real floor at the same N, class accuracy and the
seconds spent sampling (not evaluating). A step is one model evaluation (a batch of 2B with guidance),
so model evaluations = steps for both samplers. The batch size is measured once, before the first run
(``fastest_batch_size``), and used for all; an untimed one-step run warms the model up.

The JSON report (``--out``, default benchmarks/results/samplers.json) is written atomically after every
run; run the same command again to continue an interrupted run (done runs are kept, not redone). The
table gives, per config, mean and SD over seeds and the sampling time relative to DDIM 25; the verdict
checks the issue's target: DPM-Solver++ at <= 10 steps with mean FID-LeNet <= DDIM 25's mean + its SD
over seeds, sampling in <= 40% of DDIM 25's time. Times compare only within one process ("session"):
the table says when the rows it compares come from different sessions. ``--time-rounds R`` times the
configs instead, interleaved, on ``--time-samples`` images per round (default ``--num-samples``); sampling
time is linear in the number of images at a fixed batch size, so the medians are scaled to N for the table.
``--markdown`` prints the README's block. The tables, tests and the choice of default live in
``diffussm_lib.evaluation.sampler_study`` (notebook 06 reads them from there); this script samples.

Because every config samples the same x_T for the same seed, the configs are compared with DDIM 25 seed
by seed (a paired t-test over seeds; ``diffussm_lib.evaluation.stats.paired``) beside the means. The
default the course keeps: the config with the fewest model evaluations whose mean FID-LeNet is within
DDIM 25's mean + SD (the target's own criterion, at any step count), else DDIM 25.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from diffussm_lib.atomic import store_runs
from diffussm_lib.diffusion import SAMPLERS, NoiseSchedule
from diffussm_lib.env import environment_report, hardware_description, resolve_device
from diffussm_lib.evaluation import evaluate_images
from diffussm_lib.evaluation.sampler_study import (
    apply_timing,
    markdown,
    plot,
    summarise,
    table,
    timing_table,
    verdict,
)
from diffussm_lib.sampling import fastest_batch_size, generate, parse_labels
from diffussm_lib.training import load_model

DEFAULT_CONFIGS = [
    "ddim:10",
    "ddim:25",
    "ddim:50",
    "dpm_solver++:5",
    "dpm_solver++:8",
    "dpm_solver++:10",
    "dpm_solver++:15",
    "dpm_solver++:20",
]


def parse_config(text: str) -> tuple[str, int]:
    """'sampler:steps' -> (sampler, steps)."""
    sampler, _, steps = text.rpartition(":")
    if sampler not in SAMPLERS or not steps.isdigit() or int(steps) < 1:
        raise SystemExit(
            f"--configs: {text!r} is not sampler:steps with a sampler in {tuple(SAMPLERS)} and steps >= 1"
        )
    return sampler, int(steps)


def run_id(sampler: str, steps: int, seed: int, n: int, w: float) -> str:
    return f"{sampler} {steps} | seed {seed} | n {n} | w {w:g}"


def sampling_setup(args, report: dict, out: Path, guided: bool) -> tuple:
    """What a sampling benchmark needs before its runs (also bench_guidance's): torch threads, the
    environment line, the EMA model of ``args.checkpoint`` (refused if ``out`` holds runs of another
    checkpoint), its schedule, ``args.num_samples`` class-balanced labels, and ``generate``'s keyword
    arguments with the batch size (``args.batch_size``, else measured once: ``fastest_batch_size``).
    Returns (model, ckpt, device, schedule, labels, kw)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(environment_report(), f"| torch threads: {torch.get_num_threads()}", flush=True)
    model, cfg, ckpt = load_model(args.checkpoint, device=device)
    if report.get("checkpoint", str(ckpt.path)) != str(ckpt.path):
        raise SystemExit(
            f"{out} holds runs of {report['checkpoint']}, not {ckpt.path}: give another --out"
        )
    schedule = NoiseSchedule.from_config(cfg.diffusion)
    labels = parse_labels("all", args.num_samples, cfg.model.num_classes)
    shape = (cfg.model.in_channels, cfg.model.image_size, cfg.model.image_size)
    batch = args.batch_size or fastest_batch_size(
        model, shape, args.num_samples, guided=guided, device=device
    )
    kw = dict(
        image_size=cfg.model.image_size,
        channels=cfg.model.in_channels,
        prediction=cfg.diffusion.prediction,
        batch_size=batch,
        device=device,
    )
    return model, ckpt, device, schedule, labels, kw


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "mnist_diffussm"))
    ap.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, metavar="SAMPLER:STEPS")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument(
        "--num-samples", type=int, default=2000, help="N per run, a multiple of the class count"
    )
    ap.add_argument("--guidance", type=float, default=1.2)
    ap.add_argument(
        "--batch-size", type=int, help="default: the fastest here, measured once before the runs"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "samplers.json"))
    ap.add_argument(
        "--time-rounds",
        type=int,
        metavar="R",
        help="time the configs instead: R interleaved rounds, no evaluation",
    )
    ap.add_argument(
        "--time-samples",
        type=int,
        metavar="N",
        help="images per timed round (default --num-samples; the table scales the medians to N)",
    )
    ap.add_argument(
        "--table",
        action="store_true",
        help="print the stored runs' table and verdict; sample nothing",
    )
    ap.add_argument(
        "--markdown",
        action="store_true",
        help="print the stored runs as the README's block (markdown); sample nothing",
    )
    ap.add_argument(
        "--plot",
        nargs="?",
        const=str(REPO / "benchmarks" / "results" / "samplers.png"),
        metavar="PNG",
        help="also draw FID-LeNet against model evaluations (default path: benchmarks/results/samplers.png)",
    )
    args = ap.parse_args()
    configs = [parse_config(c) for c in args.configs]
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {}
    runs = report.setdefault("runs", {})
    if not (args.table or args.markdown):
        model, ckpt, device, schedule, labels, kw = sampling_setup(
            args, report, out, guided=args.guidance not in (0, 1)
        )
        batch = kw["batch_size"]
        kw["guidance"] = args.guidance
        generate(
            model, schedule, batch, labels[:batch], sampler="ddim", steps=1, **kw
        )  # warm-up, not timed
        session = time.strftime("%Y-%m-%d %H:%M:%S")
        report.update(
            checkpoint=str(ckpt.path),
            checkpoint_step=ckpt.step,
            hardware=hardware_description(device),
            environment=environment_report(),
        )
        if args.time_rounds:
            seconds: dict = {f"{s}:{k}": [] for s, k in configs}
            n_time = args.time_samples or args.num_samples
            for r in range(args.time_rounds):
                for sampler, steps in configs:
                    t0 = time.perf_counter()
                    generate(
                        model,
                        schedule,
                        n_time,
                        labels[:n_time],
                        sampler=sampler,
                        steps=steps,
                        seed=r,
                        **kw,
                    )
                    seconds[f"{sampler}:{steps}"].append(round(time.perf_counter() - t0, 2))
                    print(
                        f"round {r}: {sampler} {steps}: {seconds[f'{sampler}:{steps}'][-1]:.1f} s",
                        flush=True,
                    )
            report["timing"] = dict(
                session=session,
                rounds=args.time_rounds,
                n=n_time,
                guidance=args.guidance,
                threads=torch.get_num_threads(),
                batch_size=batch,
                seconds=seconds,
                median={c: statistics.median(v) for c, v in seconds.items()},
                hardware=hardware_description(device),
            )
            runs = store_runs(out, report, runs)
            print(timing_table(report["timing"], args.num_samples))
        for seed in [] if args.time_rounds else args.seeds:
            for sampler, steps in configs:
                rid = run_id(sampler, steps, seed, args.num_samples, args.guidance)
                if rid in runs:
                    continue
                t0 = time.perf_counter()
                images = generate(
                    model,
                    schedule,
                    args.num_samples,
                    labels,
                    sampler=sampler,
                    steps=steps,
                    seed=seed,
                    **kw,
                )
                seconds = time.perf_counter() - t0
                ev = evaluate_images(images, labels, seed=seed)
                runs[rid] = dict(
                    ev.as_dict(),
                    sampler=sampler,
                    steps=steps,
                    model_evaluations=steps,
                    seed=seed,
                    guidance=args.guidance,
                    sample_seconds=round(seconds, 2),
                    batch_size=batch,
                    threads=torch.get_num_threads(),
                    session=session,
                )
                print(
                    f"{rid}: FID-LeNet {ev.fid:.3f} (floor {ev.floor:.3f}), class accuracy {ev.class_accuracy:.4f}, "
                    f"{seconds:.1f} s sampling",
                    flush=True,
                )
                runs = store_runs(out, report, runs)
    summary = summarise(runs, args.num_samples, args.guidance)
    if not summary:
        raise SystemExit(f"no runs with N = {args.num_samples} and w = {args.guidance:g} in {out}")
    timing = report.get("timing")
    if timing and timing["guidance"] != args.guidance:
        timing = None
    summary = apply_timing(summary, timing, args.num_samples)
    if args.markdown:
        print(markdown(summary, report, timing, args.num_samples, args.guidance), end="")
        return
    print("\n" + table(summary, args.num_samples, args.guidance), flush=True)
    if timing:
        print("\n" + timing_table(timing, args.num_samples))
    print("\n" + verdict(summary), flush=True)
    if args.plot:
        plot(summary, Path(args.plot), args.num_samples, args.guidance)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
