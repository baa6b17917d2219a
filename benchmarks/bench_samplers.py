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

Because every config samples the same x_T for the same seed, the configs are compared with DDIM 25 seed
by seed (a paired t-test over seeds; ``diffussm_lib.evaluation.stats.paired``) beside the means. The
default the course keeps: the config with the fewest model evaluations whose mean FID-LeNet is within
DDIM 25's mean + SD (the target's own criterion, at any step count), else DDIM 25.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from diffussm_lib.atomic import atomic_write_text
from diffussm_lib.diffusion import SAMPLERS, NoiseSchedule
from diffussm_lib.env import environment_report, hardware_description, resolve_device
from diffussm_lib.evaluation import evaluate_images
from diffussm_lib.evaluation.stats import paired
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
BASELINE = ("ddim", 25)
TARGET_STEPS, TARGET_TIME = 10, 0.40  # DPM-Solver++ at <= 10 steps, <= 40% of DDIM 25's time


def parse_config(text: str) -> tuple[str, int]:
    """'sampler:steps' -> (sampler, steps)."""
    sampler, _, steps = text.rpartition(":")
    if sampler not in SAMPLERS or not steps.isdigit() or int(steps) < 1:
        raise SystemExit(
            f"--configs: {text!r} is not sampler:steps with a sampler in {tuple(SAMPLERS)} and steps >= 1"
        )
    return sampler, int(steps)


def nan0(x: float) -> float:
    return 0.0 if math.isnan(x) else x


def run_id(sampler: str, steps: int, seed: int, n: int, w: float) -> str:
    return f"{sampler} {steps} | seed {seed} | n {n} | w {w:g}"


def summarise(runs: dict, n: int, w: float) -> dict:
    """(sampler, steps) -> mean / SD over seeds of FID-LeNet, class accuracy, floor and seconds."""
    groups: dict = {}
    for r in runs.values():
        if r["n"] == n and r["guidance"] == w:
            groups.setdefault((r["sampler"], r["steps"]), []).append(r)
    out = {}
    for key, rows in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        col = lambda k: [r[k] for r in rows]  # noqa: E731
        sd = lambda v: statistics.stdev(v) if len(v) > 1 else float("nan")  # noqa: E731
        out[key] = {
            "seeds": col("seed"),
            "per_seed_fid": dict(zip(col("seed"), col("fid"))),
            "fid": statistics.mean(col("fid")),
            "fid_sd": sd(col("fid")),
            "acc": statistics.mean(col("class_accuracy")),
            "acc_sd": sd(col("class_accuracy")),
            "floor": statistics.mean(col("floor")),
            "seconds": statistics.mean(col("sample_seconds")),
            "sessions": sorted(set(col("session"))),
        }
    return out


def table(summary: dict, n: int, w: float) -> str:
    base = summary.get(BASELINE)
    tests = versus_baseline(summary)
    lines = [
        f"N = {n} class-balanced samples, guidance w = {w:g}; mean +- SD over seeds; FID minus DDIM "
        "25's, paired by seed (same x_T), with its two-sided p",
        f"{'sampler':<13} {'steps = evals':>13} {'FID-LeNet':>16} {'floor':>6} {'class acc':>16} "
        f"{'seconds':>8} {'vs ddim 25':>10} {'FID - DDIM 25 (paired p)':>25}  seeds",
    ]
    for (sampler, steps), s in summary.items():
        rel = f"{s['seconds'] / base['seconds']:.0%}" if base else "-"
        t = tests[(sampler, steps)]
        vs = f"{t['diff']:+.3f} ({fmt_p(t['p'])})" if t else "-"
        lines.append(
            f"{sampler:<13} {steps:>13} {s['fid']:>8.3f} +- {s['fid_sd']:<5.3f} {s['floor']:>6.3f} "
            f"{100 * s['acc']:>7.2f}% +- {100 * s['acc_sd']:<4.2f} {s['seconds']:>8.1f} {rel:>10} "
            f"{vs:>25}  {s['seeds']}"
        )
    return "\n".join(lines)


def store(out: Path, report: dict, runs: dict) -> dict:
    """Write ``report`` to ``out`` atomically, its runs joined with those another process stored
    there meanwhile; returns the joined runs."""
    if out.is_file():
        runs = {**json.loads(out.read_text()).get("runs", {}), **runs}
    report["runs"] = runs
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    return runs


def timing_table(timing: dict, n: int) -> str:
    """The interleaved timing: median seconds per config (scaled to ``n`` images) and its ratio to
    DDIM 25's median."""
    base = timing["median"].get(f"{BASELINE[0]}:{BASELINE[1]}")
    scale = n / timing["n"]
    lines = [
        f"timing ({timing['session']}, {timing['rounds']} interleaved rounds of {timing['n']} images, "
        f"{timing['threads']} threads, batch {timing['batch_size']}): median seconds"
        + (f", scaled to N = {n}" if scale != 1 else "")
    ]
    for cfg, med in timing["median"].items():
        rel = f"{med / base:.0%} of ddim:25" if base else ""
        lines.append(
            f"  {cfg:<16} {med * scale:8.1f} s  {rel}   rounds ({timing['n']} images): "
            f"{timing['seconds'][cfg]}"
        )
    return "\n".join(lines)


def apply_timing(summary: dict, timing: dict | None, n: int) -> dict:
    """Replace the one-off seconds of the quality runs by the interleaved medians (scaled to ``n``
    images), where measured."""
    if not timing:
        return summary
    for (sampler, steps), s in summary.items():
        med = timing["median"].get(f"{sampler}:{steps}")
        if med is not None:
            s["seconds"], s["sessions"] = med * n / timing["n"], [timing["session"]]
            s["timed"] = True
    return summary


def fmt_p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def versus_baseline(summary: dict) -> dict:
    """(sampler, steps) -> the paired test of its FID-LeNet minus DDIM 25's over the seeds both have
    (the same x_T per seed), or None with fewer than 2 shared seeds."""
    base = summary.get(BASELINE)
    out = {}
    for key, s in summary.items():
        shared = sorted(set(s["per_seed_fid"]) & set(base["per_seed_fid"])) if base else []
        out[key] = (
            paired(
                [s["per_seed_fid"][k] for k in shared], [base["per_seed_fid"][k] for k in shared]
            )
            | {"seeds": len(shared)}
            if len(shared) >= 2 and key != BASELINE
            else None
        )
    return out


def chosen_default(summary: dict) -> tuple:
    """The default sampling the stored runs support: the config with the fewest model evaluations
    whose mean FID-LeNet is at most DDIM 25's mean + SD (DDIM 25 itself if none is cheaper)."""
    base = summary[BASELINE]
    bar = base["fid"] + nan0(base["fid_sd"])
    within = [k for k, s in summary.items() if s["fid"] <= bar and len(s["seeds"]) >= 2]
    return min(within or [BASELINE], key=lambda k: (k[1], k != BASELINE))


def verdict(summary: dict) -> str:
    """The issue's target, judged on the stored runs."""
    base = summary.get(BASELINE)
    if base is None:
        return "no DDIM 25 runs: nothing to judge against"
    bar = base["fid"] + nan0(base["fid_sd"])
    lines = [
        f"target: DPM-Solver++ at <= {TARGET_STEPS} steps with FID-LeNet <= {bar:.3f} (DDIM 25: {base['fid']:.3f} "
        f"+ SD {base['fid_sd']:.3f}) in <= {TARGET_TIME:.0%} of DDIM 25's time ({base['seconds']:.1f} s)"
    ]
    met = []
    for (sampler, steps), s in summary.items():
        if sampler != "dpm_solver++" or steps > TARGET_STEPS:
            continue
        quality, speed = s["fid"] <= bar, s["seconds"] <= TARGET_TIME * base["seconds"]
        same = set(s["sessions"]) == set(base["sessions"]) and len(base["sessions"]) == 1
        lines.append(
            f"  dpm_solver++ {steps:>2}: FID-LeNet {s['fid']:.3f} ({'within' if quality else 'above'}), "
            f"time {s['seconds'] / base['seconds']:.0%} of DDIM 25's ({'within' if speed else 'above'})"
            + (
                ""
                if same
                else " [times from different sessions: rerun both in one process to compare]"
            )
        )
        if quality and speed:
            met.append(steps)
    lines.append(f"met at {min(met)} steps (the fewest)" if met else "not met")
    sampler, steps = chosen_default(summary)
    s, t = summary[(sampler, steps)], versus_baseline(summary)[(sampler, steps)]
    lines.append(
        f"the better default: {sampler} {steps} steps"
        + (
            f" (FID-LeNet {s['fid']:.3f} +- {s['fid_sd']:.3f}, within DDIM 25's {bar:.3f}; "
            f"{steps / BASELINE[1]:.0%} of its model evaluations, {s['seconds'] / base['seconds']:.0%} of "
            f"its time; paired difference {t['diff']:+.3f}, {fmt_p(t['p'])} over {t['seeds']} seeds)"
            if (sampler, steps) != BASELINE and t
            else " (no cheaper config within DDIM 25's mean + SD)"
        )
    )
    return "\n".join(lines)


def markdown(summary: dict, report: dict, timing: dict | None, n: int, w: float) -> str:
    """The README's block (and benchmarks/results/samplers.md): the table as markdown, then the
    verdict, all from the stored runs."""
    base, tests = summary.get(BASELINE), versus_baseline(summary)
    seconds = (
        f"time for N (median of {timing['rounds']} interleaved rounds of {timing['n']} images, "
        f"{timing['threads']} threads, scaled to N)"
        if timing
        else "time for N (one-off, from the quality runs)"
    )
    lines = [
        f"Pretrained checkpoint (step {report.get('checkpoint_step')}), N = {n} class-balanced "
        f"samples per run, guidance w = {w:g}, every config sampled from the same x_T per seed; "
        f"{report.get('hardware', '?')}. Mean +- SD over seeds; the difference to DDIM 25 is paired "
        "by seed, with its two-sided p.\n",
        f"| sampler | steps = model evaluations | seeds | FID-LeNet | floor | class accuracy | {seconds} "
        "| FID - DDIM 25 (paired p) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (sampler, steps), s in summary.items():
        t = tests[(sampler, steps)]
        rel = f" ({s['seconds'] / base['seconds']:.0%})" if base else ""
        time_cell = f"{s['seconds']:.0f} s{rel}" if s.get("timed") or not timing else "not timed"
        lines.append(
            f"| {sampler} | {steps} | {len(s['seeds'])} | {s['fid']:.2f} +- {nan0(s['fid_sd']):.2f} "
            f"| {s['floor']:.2f} | {100 * s['acc']:.1f}% | {time_cell} | "
            + (f"{t['diff']:+.2f} ({fmt_p(t['p'])})" if t else "-")
            + " |"
        )
    return "\n".join(lines) + "\n\n" + verdict(summary).replace("\n", "  \n") + "\n"


def plot(summary: dict, path: Path, n: int, w: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, ax = plt.subplots(figsize=(6, 4))
    for sampler, marker in (("ddim", "o"), ("dpm_solver++", "s"), ("ddpm", "^")):
        rows = [(steps, s) for (name, steps), s in summary.items() if name == sampler]
        if rows:
            ax.errorbar(
                [r[0] for r in rows],
                [r[1]["fid"] for r in rows],
                yerr=[nan0(r[1]["fid_sd"]) for r in rows],
                marker=marker,
                capsize=3,
                label=sampler,
            )
    if BASELINE in summary:
        b = summary[BASELINE]
        ax.axhspan(
            b["fid"] - nan0(b["fid_sd"]),
            b["fid"] + nan0(b["fid_sd"]),
            color="grey",
            alpha=0.2,
            label="DDIM 25 (mean +- SD)",
        )
    floors = [s["floor"] for s in summary.values()]
    ax.axhline(statistics.mean(floors), color="k", ls=":", lw=1, label="real-vs-real floor")
    ax.set(
        xscale="log",
        xlabel="model evaluations per image (guided: each a batch of 2B)",
        ylabel="FID-LeNet",
        title=f"Samplers on the pretrained DiffuSSM, N = {n}, w = {w:g}",
    )
    ax.set_xticks(sorted({steps for _, steps in summary}))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


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
            model, shape, args.num_samples, guided=args.guidance not in (0, 1), device=device
        )
        kw = dict(
            image_size=cfg.model.image_size,
            channels=cfg.model.in_channels,
            guidance=args.guidance,
            prediction=cfg.diffusion.prediction,
            batch_size=batch,
            device=device,
        )
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
            runs = store(out, report, runs)
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
                runs = store(out, report, runs)
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


if __name__ == "__main__":
    main()
