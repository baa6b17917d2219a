"""Learned vs fixed reverse variance (notebook 04, issue 14): two models trained for the same number
of steps from the same config, one with ``learn_sigma`` (the hybrid loss of Improved DDPM), one
without; both sampled with DDPM at the same numbers of steps and measured with FID-LeNet at the same N.

    python benchmarks/bench_variance.py                          # the stored run (about 45 min on 2 cores)
    python benchmarks/bench_variance.py --steps 20 --num-samples 40 --sample-steps 5 --out /tmp/v.json

Each model is trained once into ``--runs/<name>`` (a normal run folder with its checkpoint); run the
command again with ``--resume`` to continue an interrupted run, or to re-evaluate trained models.
Writes the JSON report after every evaluation; ``--out`` default: benchmarks/results/learned_variance.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from diffussm_lib.atomic import atomic_write_text
from diffussm_lib.config import load_config
from diffussm_lib.env import environment_report, hardware_description
from diffussm_lib.evaluation import sample_and_evaluate
from diffussm_lib.training import Trainer, load_model


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--config", default=str(REPO / "configs" / "mnist_diffussm.yaml"))
    ap.add_argument(
        "--hidden-dim", type=int, default=64, help="model width (default 64: a small model)"
    )
    ap.add_argument("--steps", type=int, default=2000, help="training steps of each model")
    ap.add_argument("--num-samples", type=int, default=1000, help="N for FID-LeNet (same for all)")
    ap.add_argument("--sample-steps", type=int, nargs="+", default=[25, 100], help="DDPM steps")
    ap.add_argument("--runs", default=str(REPO / "runs" / "variance"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "learned_variance.json"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--resume", action="store_true", help="continue / reuse the run folders")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(environment_report(), flush=True)
    base = load_config(args.config)
    base = replace(
        base,
        model=replace(base.model, hidden_dim=args.hidden_dim),
        train=replace(
            base.train,
            max_steps=args.steps,
            sample_every=0,
            checkpoint_every=max(1, min(500, args.steps)),
        ),
    )
    report = {
        "config": args.config,
        "hidden_dim": args.hidden_dim,
        "steps": args.steps,
        "num_samples": args.num_samples,
        "hardware": hardware_description(torch.device("cpu")),
        "models": {},
        "evaluations": [],
    }
    out = Path(args.out)
    variants = {
        "fixed variance (simple loss)": dict(learn_sigma=False),
        "learned variance (hybrid loss)": dict(learn_sigma=True),
    }
    for name, keys in variants.items():
        cfg = replace(
            base, name=name.split(" (")[0].replace(" ", "_"), model=replace(base.model, **keys)
        )
        run = Path(args.runs) / cfg.name
        t0 = time.perf_counter()
        trainer = Trainer(cfg, run, progress=False, log=lambda m: print(m, flush=True))
        res = trainer.train(resume=args.resume)
        report["models"][name] = {
            "learn_sigma": keys["learn_sigma"],
            "steps": res.step,
            "train_seconds": round(res.train_seconds, 1),
            "final_loss": res.history[-1]["loss"] if res.history else None,
            "wall_seconds_this_call": round(time.perf_counter() - t0, 1),
        }
        model, cfg, _ = load_model(run)
        variances = (
            ["learned_range", "fixed_small"]
            if keys["learn_sigma"]
            else ["fixed_small", "fixed_large"]
        )
        for S in args.sample_steps:
            for var in variances:
                t0 = time.perf_counter()
                ev, _ = sample_and_evaluate(
                    model, cfg, args.num_samples, sampler="ddpm", steps=S, variance=var
                )
                row = dict(
                    ev.as_dict(),
                    model=name,
                    variance=var,
                    sampler="ddpm",
                    sample_steps=S,
                    seconds=round(time.perf_counter() - t0, 1),
                )
                report["evaluations"].append(row)
                print(json.dumps(row), flush=True)
                atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
