"""Training throughput (images per second) of DiffuSSM and its same-size DiT baseline, side by side.

    python benchmarks/bench_train.py                       # the two default MNIST configs, fp32
    python benchmarks/bench_train.py --precision both      # fp32 and bf16 autocast
    python benchmarks/bench_train.py --steps 10 --rounds 3 --batch-size 64 --threads 1

Each config is trained by the library's own ``Trainer`` (the exact loop ``diffussm train`` runs:
AdamW, label dropout, loss, backward, clipping, EMA) on random images of the config's size (data
loading is not what is measured). After ``--warmup`` untimed steps, the configs take turns for
``--rounds`` rounds of ``--steps`` steps each, so that a busy machine slows all of them alike; the
median round is reported. One run prints one table; ratios are only meaningful within it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from diffussm_lib.config import load_config  # noqa: E402
from diffussm_lib.data import ImageDataset  # noqa: E402
from diffussm_lib.env import environment_report  # noqa: E402
from diffussm_lib.models import count_params  # noqa: E402
from diffussm_lib.training import Trainer  # noqa: E402


def random_dataset(cfg, n: int) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    m = cfg.model
    images = torch.randint(0, 256, (n, m.image_size, m.image_size, m.in_channels), generator=g, dtype=torch.uint8)
    return ImageDataset(images, torch.randint(0, m.num_classes, (n,), generator=g))


def make_trainer(path: str, precision: str, batch_size: int | None, device: str | None) -> Trainer:
    cfg = load_config(path)
    train = replace(cfg.train, precision=precision, batch_size=batch_size or cfg.train.batch_size,
                    sample_every=0, checkpoint_every=0, log_every=10**9)
    cfg = replace(cfg, train=train)
    return Trainer(cfg, None, dataset=random_dataset(cfg, 4 * train.batch_size), device=device, progress=False,
                   log=lambda m: None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["configs/mnist_diffussm.yaml", "configs/mnist_dit.yaml"],
                    help="configs to compare; the ratio is first / others")
    ap.add_argument("--precision", choices=("fp32", "bf16", "both"), default="fp32")
    ap.add_argument("--batch-size", type=int, help="override train.batch_size")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", help="default: CUDA if available, else CPU")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice); 1 is the "
                                                "robust choice on a machine shared with other jobs")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(environment_report())
    precisions = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
    runs = [(Path(c).stem, p, make_trainer(str(REPO / c) if not Path(c).is_absolute() else c, p,
                                           args.batch_size, args.device))
            for c in args.configs for p in precisions]
    for _, _, tr in runs:
        tr.train(max_steps=args.warmup)
    rates = {i: [] for i in range(len(runs))}
    for _ in range(args.rounds):
        for i, (_, _, tr) in enumerate(runs):
            t0, s0 = tr.train_seconds, tr.step
            tr.train(max_steps=s0 + args.steps)
            rates[i].append(args.steps * tr.cfg.train.batch_size / (tr.train_seconds - t0))
    med = {i: statistics.median(r) for i, r in rates.items()}

    print(f"\ntraining throughput, batch {runs[0][2].cfg.train.batch_size}, median of {args.rounds} rounds "
          f"x {args.steps} steps ({runs[0][2].device.type}, torch threads: {torch.get_num_threads()})")
    print(f"{'config':<18} {'precision':<9} {'params':>10} {'images/s':>10} {'ms/step':>9}  rounds (images/s)")
    for i, (name, p, tr) in enumerate(runs):
        ms = 1000 * tr.cfg.train.batch_size / med[i]
        print(f"{name:<18} {p:<9} {count_params(tr.bare_model):>10,} {med[i]:>10.1f} {ms:>9.0f}  "
              + ", ".join(f"{r:.1f}" for r in rates[i]))
    print()
    for p in precisions:
        idx = [i for i, (_, q, _) in enumerate(runs) if q == p]
        first = idx[0]
        for j in idx[1:]:
            print(f"ratio {runs[first][0]} / {runs[j][0]} ({p}): {med[first] / med[j]:.2f}x images per second")
    if len(precisions) == 2:
        for name in dict.fromkeys(n for n, _, _ in runs):
            f32 = next(i for i, (n, p, _) in enumerate(runs) if n == name and p == "fp32")
            b16 = next(i for i, (n, p, _) in enumerate(runs) if n == name and p == "bf16")
            print(f"bf16 autocast / fp32, {name}: {med[b16] / med[f32]:.2f}x")


if __name__ == "__main__":
    main()
