"""Sample quality at equal training compute: DiffuSSM vs DiT, the ablations, and scaling with input size.

    python benchmarks/bench_quality.py compare   --minutes 10 --num-samples 1000 --guidance 1 2
    python benchmarks/bench_quality.py ablations --minutes 5  --num-samples 500  --guidance 2
    python benchmarks/bench_quality.py scaling   --sizes 28 32 64 128 256

``compare`` trains configs/mnist_diffussm.yaml and configs/mnist_dit.yaml (same width, depth, patch size,
data and optimiser; 1.41 M vs 1.27 M parameters) for the same training-time budget each, one after the
other on the same machine (``--threads`` torch threads), then evaluates both with FID-LeNet against the
MNIST test set, the real-vs-real floor at the same N, class accuracy and the class histogram
(``--equal-steps`` adds a DiT run of as many steps as DiffuSSM took, whatever the time).
``ablations`` trains each variant of ``diffussm_lib.evaluation.ABLATIONS`` for the same budget.
``scaling`` counts forward FLOPs and times one forward pass (batch 1) of both backbones from 28x28 to
256x256 inputs (patch 2, width 128, depth 4).

Everything lands in ``--output-dir`` (default runs/bench_quality/<command>): results.json, results.md and a
sample grid per model. One run prints one table; compare numbers only within it (a busy machine slows
every model, but not always alike: run it on an otherwise idle machine).
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

from diffussm_lib.config import load_config
from diffussm_lib.data import dataset_from_config
from diffussm_lib.env import environment_report
from diffussm_lib.evaluation import (
    ABLATIONS,
    as_json,
    evaluate_run,
    results_table,
    scaling_rows,
    scaling_table,
    train_for_budget,
    variant,
)
from diffussm_lib.sampling import make_grid, save_png


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_and_evaluate(jobs, args, out: Path):
    """jobs: [(name, cfg, seconds or None, max_steps or None)] -> runs, each evaluated at every --guidance."""
    dataset = dataset_from_config(jobs[0][1].data, "train")
    runs = []
    for name, cfg, seconds, steps in jobs:
        log(f"training {name}: " + (f"{seconds / 60:.1f} min" if seconds else f"{steps} steps"))
        run = train_for_budget(cfg, seconds, max_steps=steps, dataset=dataset, name=name)
        log(
            f"  {run.steps} steps in {run.train_seconds:.0f} s ({run.images_per_sec:.1f} images/s), "
            f"loss {run.final_loss:.4f}"
        )
        for w in args.guidance:
            ev = evaluate_run(
                run, args.num_samples, guidance=w, steps=args.sample_steps, seed=args.seed
            )
            log(
                f"  w={w}: FID-LeNet {ev['fid']:.2f} (floor {ev['floor']:.2f}), class accuracy "
                f"{ev['class_accuracy']:.3f}, histogram deviation {ev['histogram_deviation']:.3f} "
                f"({ev['sample_seconds']:.0f} s sampling and evaluation)"
            )
        k = min(100, len(run.last_images))
        slug = "".join(c if c.isalnum() else "_" for c in name).strip("_")
        save_png(make_grid(run.last_images[:k], ncol=10), out / f"samples_{slug}.png", scale=2)
        runs.append(run)
    return runs


def write_results(out: Path, title: str, args, table: str, payload) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cmd = "python benchmarks/bench_quality.py " + " ".join(sys.argv[1:])
    (out / "results.json").write_text(
        json.dumps(
            {
                "command": cmd,
                "environment": environment_report(),
                "threads": torch.get_num_threads(),
                "results": payload,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    (out / "results.md").write_text(
        f"## {title}\n\n`{cmd}` ({environment_report()}, "
        f"{torch.get_num_threads()} torch threads)\n\n{table}\n"
    )
    print(f"\n{title}\n{table}\n\nwritten to {out}/results.md and results.json", flush=True)


def cmd_compare(args) -> None:
    out = Path(args.output_dir or "runs/bench_quality/compare")
    out.mkdir(parents=True, exist_ok=True)
    a, b = load_config(args.diffussm), load_config(args.dit)
    seconds = 60.0 * args.minutes
    jobs = [("DiffuSSM", a, seconds, None), ("DiT", b, seconds, None)]
    runs = run_and_evaluate(jobs, args, out)
    if args.equal_steps:
        runs += run_and_evaluate(
            [("DiT, same steps as DiffuSSM", b, None, runs[0].steps)], args, out
        )
    write_results(
        out,
        f"DiffuSSM vs DiT, {args.minutes:g} min of training each",
        args,
        results_table(runs),
        as_json(runs),
    )


def cmd_ablations(args) -> None:
    out = Path(args.output_dir or "runs/bench_quality/ablations")
    out.mkdir(parents=True, exist_ok=True)
    base = load_config(args.diffussm)
    names = args.only or list(ABLATIONS)
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        raise SystemExit(f"--only: unknown ablations {unknown}; known: {list(ABLATIONS)}")
    jobs = [(n, variant(base, **ABLATIONS[n]), 60.0 * args.minutes, None) for n in names]
    runs = run_and_evaluate(jobs, args, out)
    write_results(
        out,
        f"Ablations of DiffuSSM, {args.minutes:g} min of training each",
        args,
        results_table(runs),
        as_json(runs),
    )


def cmd_scaling(args) -> None:
    out = Path(args.output_dir or "runs/bench_quality/scaling")
    configs = {"DiffuSSM": load_config(args.diffussm).model, "DiT": load_config(args.dit).model}
    rows = scaling_rows(
        configs, args.sizes, batch=1, repeats=args.repeats, max_seconds=args.max_seconds
    )
    write_results(
        out,
        "Forward FLOPs and time per image (batch 1) vs input size",
        args,
        scaling_table(rows),
        rows,
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("command", choices=("compare", "ablations", "scaling"))
    ap.add_argument("--diffussm", default="configs/mnist_diffussm.yaml")
    ap.add_argument("--dit", default="configs/mnist_dit.yaml")
    ap.add_argument("--minutes", type=float, default=10.0, help="training-time budget per model")
    ap.add_argument("--num-samples", type=int, default=1000, help="N samples per evaluation")
    ap.add_argument(
        "--guidance", type=float, nargs="+", default=[1.0, 2.0], help="guidance scales to evaluate"
    )
    ap.add_argument("--sample-steps", type=int, default=25, help="DDIM steps per sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--equal-steps", action="store_true", help="compare: also DiT for as many steps as DiffuSSM"
    )
    ap.add_argument("--only", nargs="+", help="ablations: run only these (names as in ABLATIONS)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[28, 32, 64, 128, 256])
    ap.add_argument("--repeats", type=int, default=3, help="scaling: timed forward passes (median)")
    ap.add_argument(
        "--max-seconds", type=float, default=60.0, help="scaling: stop timing a model past this"
    )
    ap.add_argument("--threads", type=int, help="torch.set_num_threads")
    ap.add_argument("--output-dir")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(environment_report(), f"| torch threads: {torch.get_num_threads()}", flush=True)
    {"compare": cmd_compare, "ablations": cmd_ablations, "scaling": cmd_scaling}[args.command](args)


if __name__ == "__main__":
    main()
