"""Speed of DiffuSSM and its same-size DiT baseline, side by side, in one run (issue 15).

    python benchmarks/bench_train.py --threads 2                 # patch 2 (the course) and patch 1 (the paper)
    python benchmarks/bench_train.py --threads 2 --no-patch1     # patch 2 only (about 2 minutes)
    python benchmarks/bench_train.py --precision bf16            # bf16 autocast instead of fp32

For each model: **training** images/s (the library's ``Trainer.train_step``: AdamW, label dropout,
loss, backward, clipping, EMA; batch ``--batch-size``, random images of the config's size) and
**sampling** images/s (one guided forward the way ``generate`` calls the model: x twice, the labels
and the null class, a batch of 2B). Both are also given as counted GFLOP/s (``count_flops``: 2 x
multiply-adds of the matrix products, FFTs at 2.5 n log2 n; element-wise work is not counted) and
as a fraction of the fp32 GEMM rate this run measures itself (a 1024^3 matrix product). Every
round measures the GEMM rate and then every model once, in turn, so that a busy machine slows all
of them alike; images/s are medians over ``--rounds`` rounds, and the ratios (DiffuSSM / DiT, and a
model's FLOP rate / the GEMM rate) are medians of the ratios within each round, printed with their
range, which is what a shared, noisy machine leaves comparable. Last, the top operators of a
profiled DiffuSSM training step and forward. Ratios are only meaningful within one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from diffussm_lib.config import load_config
from diffussm_lib.data import ImageDataset
from diffussm_lib.diffusion import diffusion_loss, guided_eps
from diffussm_lib.env import environment_report
from diffussm_lib.models import count_flops, count_params
from diffussm_lib.training import Trainer


def random_dataset(cfg, n: int) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    m = cfg.model
    images = torch.randint(
        0, 256, (n, m.image_size, m.image_size, m.in_channels), generator=g, dtype=torch.uint8
    )
    return ImageDataset(images, torch.randint(0, m.num_classes, (n,), generator=g))


class Case:
    """One model: a Trainer on random data, a fixed sampling batch, and its counted FLOPs."""

    def __init__(self, name: str, cfg, batch: int, precision: str, device):
        train = replace(
            cfg.train,
            precision=precision,
            batch_size=batch,
            sample_every=0,
            checkpoint_every=0,
            log_every=10**9,
        )
        self.name, self.cfg = name, replace(cfg, train=train)
        self.trainer = Trainer(
            self.cfg,
            None,
            dataset=random_dataset(self.cfg, 2 * batch),
            device=device,
            progress=False,
            log=lambda m: None,
        )
        m, B = self.cfg.model, batch
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(B, m.in_channels, m.image_size, m.image_size, generator=g).to(
            self.trainer.device
        )
        self.t = torch.randint(0, self.cfg.diffusion.timesteps, (B,), generator=g).to(
            self.trainer.device
        )
        self.y = torch.randint(0, m.num_classes, (B,), generator=g).to(self.trainer.device)
        self.batches = self.trainer.dataset
        model = self.trainer.bare_model
        x2, t2 = torch.cat([self.x, self.x]), torch.cat([self.t, self.t])
        y2 = torch.cat([self.y, torch.full_like(self.y, model.null_class)])
        with torch.no_grad():
            self.sample_flops = count_flops(model, x2, t2, y2)  # one guided forward
        self.train_flops = count_flops(
            lambda: diffusion_loss(
                model,
                self.trainer.schedule,
                self.x,
                self.y,
                generator=torch.Generator(self.trainer.device).manual_seed(0),
                prediction=self.cfg.diffusion.prediction,
            ),
            backward=True,
        )
        self.train_rates, self.sample_rates = [], []

    def train_round(self, steps: int) -> None:
        tr = self.trainer
        t0 = time.perf_counter()
        for _ in range(steps):
            tr.train_step(
                self.batches.x[: self.cfg.train.batch_size],
                self.batches.y[: self.cfg.train.batch_size],
            )
        self._sync()
        self.train_rates.append(steps * self.cfg.train.batch_size / (time.perf_counter() - t0))

    @torch.no_grad()
    def sample_round(self, steps: int) -> None:
        model = self.trainer.ema.module.eval()
        t0 = time.perf_counter()
        for _ in range(steps):
            guided_eps(model, self.x, self.t, self.y, 2.0, model.null_class)
        self._sync()
        self.sample_rates.append(steps * len(self.x) / (time.perf_counter() - t0))

    def _sync(self) -> None:
        if self.trainer.device.type == "cuda":
            torch.cuda.synchronize(self.trainer.device)


def gemm_rate(device, n: int = 1024, reps: int = 3) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def top_ops(fn, k: int = 5) -> list[str]:
    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [
        f"{e.key:<28} {100 * e.self_cpu_time_total / total:5.1f}%  ({e.count} calls)"
        for e in events[:k]
    ]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--configs",
        nargs=2,
        default=["configs/mnist_diffussm.yaml", "configs/mnist_dit.yaml"],
        help="the DiffuSSM config and the DiT config; the ratio is first / second",
    )
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument(
        "--steps",
        type=int,
        default=3,
        help="training steps (and guided forwards) per round, patch 2",
    )
    ap.add_argument(
        "--steps-patch1", type=int, default=1, help="the same at patch 1 (L = 784: slow for DiT)"
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-patch1", action="store_true", help="skip the paper's setting (patch 1)")
    ap.add_argument("--device", help="default: CUDA if available, else CPU")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(environment_report())
    cfgs = [load_config(REPO / c if not Path(c).is_absolute() else c) for c in args.configs]
    patches = [cfgs[0].model.patch_size] + (
        [] if args.no_patch1 or cfgs[0].model.patch_size == 1 else [1]
    )
    cases = {}
    for p in patches:
        for cfg in cfgs:
            c = replace(cfg, model=replace(cfg.model, patch_size=p))
            cases[(cfg.model.arch, p)] = Case(
                f"{cfg.name} p{p}", c, args.batch_size, args.precision, args.device
            )
    device = next(iter(cases.values())).trainer.device
    for c in cases.values():  # warm-up
        c.train_round(1)
        c.sample_round(1)
        c.train_rates.clear()
        c.sample_rates.clear()
    gemm = []
    for _ in range(args.rounds):
        gemm.append(gemm_rate(device))
        for (arch, p), c in cases.items():
            steps = args.steps if p != 1 or patches == [1] else args.steps_patch1
            c.train_round(steps)
            c.sample_round(steps)
    g = statistics.median(gemm)
    print(
        f"\nbatch {args.batch_size}, {args.precision}, {device.type}, torch threads {torch.get_num_threads()}; "
        f"median of {args.rounds} rounds; fp32 GEMM rate {g:.1f} GFLOP/s (rounds: "
        + ", ".join(f"{x:.0f}" for x in gemm)
        + "); fractions of GEMM: medians of the per-round fractions"
    )
    print(
        f"{'model':<22} {'params':>9} {'train img/s':>11} {'GFLOP/s':>8} {'of GEMM':>8} "
        f"{'sample img/s':>12} {'GFLOP/s':>8} {'of GEMM':>8}   GFLOP per train image / sampled image"
    )
    for c in cases.values():
        tr, sa = statistics.median(c.train_rates), statistics.median(c.sample_rates)
        per_image = (
            c.train_flops / args.batch_size / 1e9,
            c.sample_flops / args.batch_size / 1e9,
        )  # GFLOP
        # (a guided forward is 2B model inputs for B images)
        ftr = statistics.median(r * per_image[0] / gr for r, gr in zip(c.train_rates, gemm))
        fsa = statistics.median(r * per_image[1] / gr for r, gr in zip(c.sample_rates, gemm))
        print(
            f"{c.name:<22} {count_params(c.trainer.bare_model):>9,} {tr:>11.1f} {tr * per_image[0]:>8.1f} "
            f"{ftr:>7.0%} {sa:>12.1f} {sa * per_image[1]:>8.1f} {fsa:>7.0%}   {per_image[0]:.3f} / {per_image[1]:.3f}"
        )
    print()
    for p in patches:
        a, b = cases[("diffussm", p)], cases[("dit", p)]
        line = [f"patch {p}: DiffuSSM / DiT"]
        for what, ra, rb in (
            ("training", a.train_rates, b.train_rates),
            ("sampling", a.sample_rates, b.sample_rates),
        ):
            ratios = [x / y for x, y in zip(ra, rb)]  # within each round
            line.append(
                f"{what} {statistics.median(ratios):.2f}x (rounds {min(ratios):.2f}-{max(ratios):.2f})"
            )
        print("   ".join(line) + " images per second")
    c = cases[("diffussm", patches[0])]
    tr = c.trainer
    print(f"\nprofile of one DiffuSSM training step ({c.name}), top operators by self CPU time:")
    for line in top_ops(
        lambda: tr.train_step(c.batches.x[: args.batch_size], c.batches.y[: args.batch_size])
    ):
        print("  " + line)
    print(f"profile of one guided DiffuSSM forward (batch {2 * args.batch_size}):")
    model = tr.ema.module.eval()
    with torch.no_grad():
        for line in top_ops(lambda: guided_eps(model, c.x, c.t, c.y, 2.0, model.null_class)):
            print("  " + line)


if __name__ == "__main__":
    main()
