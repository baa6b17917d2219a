"""Guidance measured (issue 29): what the guidance scale w trades, on the pretrained checkpoint.

    python benchmarks/bench_guidance.py --threads 1 --plot   # the stored sweep (about 1 h, see below)
    python benchmarks/bench_guidance.py --table --plot       # the stored runs: table, figure
    python benchmarks/bench_guidance.py --readme             # the README's block
    python benchmarks/bench_guidance.py --num-samples 20 --seeds 0 --guidance 1 2 --steps 2 \\
        --out /tmp/g.json                                    # a smoke run

Every guidance scale w (``--guidance``; default 0, 1, 1.2, 1.5, 2, 3: 0 is the unconditional
model, the null label; 1 the plain conditional one; above 1 guided) samples ``--num-samples``
class-balanced digits (every class equally often) from the EMA weights of ``--checkpoint`` with each
of ``--seeds`` (the seed draws x_T), with ``--sampler`` and ``--steps`` (default: the course's
setting, ``diffussm_lib.diffusion.DEFAULT_SAMPLER`` and ``DEFAULT_STEPS``). Each run measures, on
FID-LeNet's features: FID-LeNet (against the 10,000 MNIST test images) with its real-vs-real floor
at the same N, class accuracy (the fraction LeNet reads as the digit asked for; at w = 0 the label
is ignored, so about 1/10), improved precision and recall (k = 3) and density and coverage (k = 5)
against the 10,000 test images (``evaluation.precision_recall``; ``evaluate_manifold`` says why not
N of them), the same four for N real training images (the floor's draw: what real data scores at
this N), and the seconds spent sampling (w = 0 and 1 take one forward pass per step, other w two,
in one batch of 2B). The batch size is measured once, before the first run
(``fastest_batch_size``), and used for all; an untimed one-step run warms the model up.

The JSON report (``--out``, default benchmarks/results/guidance.json) is written atomically after
every run, joined with runs another process stored there meanwhile; run the same command again to
continue an interrupted sweep (done runs are kept, not redone). After every run, and with
``--table``, the markdown report beside it (``--report``, default: ``--out`` with .md) is rewritten
from all stored runs by ``diffussm_lib.evaluation.guidance_study`` (the notebook reads the same
functions): per w, mean +- SD over seeds (sample SD) of every metric; the trade-off statement,
computed from the runs: the w of the lowest FID-LeNet, and how each metric moves from the smallest
w >= 1 (by default 1, the conditional model) to the largest w, and from w = 0 to that smallest w,
each change with a paired t-test over the seeds both ends share and Holm's correction over all of
them; the sampling seconds per w and machine (each run stores the machine that sampled it).

Cost (1 CPU thread, N = 2000, DPM-Solver++ 15): a guided run samples in about 3 min on the Intel
Xeon kind of machine, a run at w = 0 or 1 in about half that (one forward pass per step);
evaluating takes under a minute; the AMD EPYC kind is slower (its stored runs ran beside other work:
the report's seconds table). The default sweep, 6 w x 3 seeds, takes about an hour on a Xeon: run
it in the background, one process per seed if you like (they share the JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_samplers import sampling_setup
from diffussm_lib.atomic import atomic_write_text, store_runs
from diffussm_lib.diffusion import DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLERS
from diffussm_lib.env import environment_report, hardware_description
from diffussm_lib.evaluation import evaluate_images, evaluate_manifold, real_manifold
from diffussm_lib.evaluation.guidance_study import (
    markdown,
    plot,
    readme_block,
    run_id,
    select,
    settings,
    table_rows,
    text_table,
    tradeoff,
)
from diffussm_lib.evaluation.precision_recall import DENSITY_COVERAGE_K, PRECISION_RECALL_K
from diffussm_lib.sampling import generate

DEFAULT_GUIDANCE = [0.0, 1.0, 1.2, 1.5, 2.0, 3.0]  # the stored sweep
RESULTS = REPO / "benchmarks" / "results"


def checkpoint_name(path) -> str:
    """A checkpoint's path, relative to the repository where it lies inside it (no machine's path
    in a stored report)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def write_markdown(path: Path, out: Path, report: dict, groups: dict, settings_line: str, png):
    """The report from the stored runs (``guidance_study.markdown``), with the environment."""
    figure = None
    if png is not None and Path(png).resolve().parent == path.resolve().parent:
        figure = Path(png).name
    text = markdown(out.name, settings_line, groups, figure)
    text += f"\nEnvironment (last session): {report.get('environment', '?')}\n"
    atomic_write_text(path, text)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "mnist_diffussm"))
    ap.add_argument("--guidance", type=float, nargs="+", default=DEFAULT_GUIDANCE, metavar="W")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--num-samples", type=int, default=2000, help="N per run, a multiple of the class count"
    )
    ap.add_argument("--sampler", default=DEFAULT_SAMPLER, choices=tuple(SAMPLERS))
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    ap.add_argument(
        "--batch-size", type=int, help="default: the fastest here, measured once before the runs"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--out", default=str(RESULTS / "guidance.json"))
    ap.add_argument("--report", help="the markdown report (default: --out with the suffix .md)")
    ap.add_argument(
        "--table",
        action="store_true",
        help="print the stored runs' table and trade-off; sample nothing",
    )
    ap.add_argument(
        "--readme",
        action="store_true",
        help="print the README's block (the main setting's table and trade-off); sample nothing",
    )
    ap.add_argument(
        "--plot",
        nargs="?",
        const=str(RESULTS / "guidance.png"),
        metavar="PNG",
        help="also draw the metrics against w (default path: benchmarks/results/guidance.png)",
    )
    args = ap.parse_args()
    if any(w < 0 for w in args.guidance) or args.steps < 1:
        raise SystemExit("--guidance values must be >= 0 and --steps >= 1")
    out = Path(args.out)
    md = Path(args.report) if args.report else out.with_suffix(".md")
    report = json.loads(out.read_text()) if out.is_file() else {}
    runs = report.setdefault("runs", {})
    key = (args.num_samples, args.sampler, args.steps)
    if args.readme:
        if not runs:
            raise SystemExit(f"no stored runs in {out}")
        print(readme_block(report))
        return
    if not args.table:
        guided = any(w not in (0, 1) for w in args.guidance)
        model, ckpt, device, schedule, labels, kw = sampling_setup(args, report, out, guided)
        batch = kw["batch_size"]
        warm = max(args.guidance)  # warm-up, not timed
        generate(
            model, schedule, batch, labels[:batch], sampler="ddim", steps=1, guidance=warm, **kw
        )
        session = time.strftime("%Y-%m-%d %H:%M:%S")
        report.update(
            checkpoint=checkpoint_name(ckpt.path),
            checkpoint_step=ckpt.step,
            k_pr=PRECISION_RECALL_K,
            k_dc=DENSITY_COVERAGE_K,
            hardware=hardware_description(device),
            environment=environment_report(),
        )
        real: dict = {}  # seed -> the real training images' four numbers (the same for every w)
        for seed in args.seeds:
            for w in args.guidance:
                rid = run_id(w, seed, args.sampler, args.steps, args.num_samples)
                if rid in runs:
                    continue
                t0 = time.perf_counter()
                images = generate(
                    model,
                    schedule,
                    args.num_samples,
                    labels,
                    sampler=args.sampler,
                    steps=args.steps,
                    guidance=w,
                    seed=seed,
                    **kw,
                )
                seconds = time.perf_counter() - t0
                ev = evaluate_images(images, labels, seed=seed)
                fake = evaluate_manifold(images)
                if seed not in real:
                    real[seed] = real_manifold(args.num_samples, seed)
                runs[rid] = dict(
                    ev.as_dict(),
                    **fake.as_dict(),
                    **{f"real_{k}": v for k, v in real[seed].as_dict().items()},
                    sampler=args.sampler,
                    steps=args.steps,
                    seed=seed,
                    guidance=w,
                    sample_seconds=round(seconds, 2),
                    eval_seconds=round(time.perf_counter() - t0 - seconds, 2),
                    batch_size=batch,
                    threads=torch.get_num_threads(),
                    hardware=report["hardware"],
                    session=session,
                )
                print(
                    f"{rid}: FID-LeNet {ev.fid:.3f} (floor {ev.floor:.3f}), class accuracy "
                    f"{ev.class_accuracy:.4f}, precision {fake.precision:.3f}, recall "
                    f"{fake.recall:.3f}, density {fake.density:.3f}, coverage {fake.coverage:.3f}; "
                    f"{seconds:.1f} s sampling",
                    flush=True,
                )
                runs = store_runs(out, report, runs)
                groups = select(runs, *key)
                write_markdown(md, out, report, groups, settings(report, *key), args.plot)
    groups = select(runs, *key)
    if not groups:
        stored = sorted({f"N {r['n']}, {r['sampler']} {r['steps']}" for r in runs.values()})
        raise SystemExit(
            f"no runs with N = {args.num_samples}, {args.sampler} {args.steps} steps in {out}; "
            f"stored: {'; '.join(stored) or 'none'} (give --num-samples, --sampler, --steps)"
        )
    line = settings(report, *key)
    print(f"\n{line}; mean +- SD over seeds\n" + text_table(*table_rows(groups)), flush=True)
    print("\ntrade-off, computed from the runs:\n" + tradeoff(groups), flush=True)
    write_markdown(md, out, report, groups, line, args.plot)
    if args.plot:
        plot(groups, Path(args.plot), line)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
