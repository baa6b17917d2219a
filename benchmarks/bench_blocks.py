"""Forward+backward time of one DiffuSSM block against one DiT block, as the sequence grows.

    python benchmarks/bench_blocks.py                     # D = 256, batch 8, L = 256 ... 16384
    python benchmarks/bench_blocks.py --lengths 256 1024 --core selective

Both blocks have width D; the DiffuSSM block (hourglass ratio M, SSM core ``--core``) gets a stream
of J = L / M tokens and runs its SSM on L; the DiT block (patch 1: one token per pixel, full
attention through ``scaled_dot_product_attention``) gets L tokens. One run, ratios measured in it:

* target 1: the DiffuSSM block's log-log slope of time against L is at most 1.15 (near linear);
* target 2: the DiffuSSM block is faster than the DiT block from L = 4096 on.

Each time is the minimum over ``--repeats`` timed runs after one warm-up run; a run longer than
``--budget``/4 is measured once (its warm-up run), and repeats stop once ``--budget`` seconds are spent. A measurement that fails (e.g. out of memory) is reported as such, never guessed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from diffussm_lib.config import ModelConfig
from diffussm_lib.env import environment_report, seed_everything
from diffussm_lib.models import block_flops, build_block

SLOPE_TARGET = 1.15
FASTER_FROM = 4096


def time_fwd_bwd(
    block: torch.nn.Module, S: int, D: int, batch: int, repeats: int, budget: float
) -> float:
    """Min seconds of forward + backward of ``block(x (batch, S, D), c (batch, D))``; one warm-up."""
    x = torch.randn(batch, S, D, requires_grad=True)
    c = torch.randn(batch, D)

    def run() -> float:
        block.zero_grad(set_to_none=True)
        x.grad = None
        t0 = time.perf_counter()
        block(x, c).square().mean().backward()
        return time.perf_counter() - t0

    first = run()  # warm-up (allocations, kernel choice)
    if first > budget / 4:  # a long run: its warm-up is a fair measurement
        return first
    times = []
    for _ in range(repeats):
        if times and sum(times) + first > budget:  # long runs: fewer repeats
            break
        times.append(run())
    return min(times) if times else first


def loglog_slope(xs, ys) -> float:
    """Least-squares slope of log(y) against log(x)."""
    lx, ly = [math.log(v) for v in xs], [math.log(v) for v in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def crossover(Ls, t_ssm, t_dit):
    """(first measured L from which DiffuSSM stays faster, log-log interpolated crossover L) or Nones."""
    pairs = [(L, a, b) for L, a, b in zip(Ls, t_ssm, t_dit) if a is not None and b is not None]
    first = None
    for i in range(len(pairs)):
        if all(a < b for _, a, b in pairs[i:]):
            first = pairs[i][0]
            break
    interp = None
    if first is not None:
        i = [p[0] for p in pairs].index(first)
        if i == 0:
            interp = None  # faster at every measured L: crossover below the range
        else:
            (L0, a0, b0), (L1, a1, b1) = pairs[i - 1], pairs[i]
            r0, r1 = math.log(a0 / b0), math.log(a1 / b1)  # r0 >= 0 > r1
            f = r0 / (r0 - r1)
            interp = math.exp(math.log(L0) + f * (math.log(L1) - math.log(L0)))
    return first, interp


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--ratio", type=int, default=2, help="hourglass ratio M")
    ap.add_argument("--core", choices=["s4d", "selective"], default="s4d")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--budget", type=float, default=60.0, help="seconds per measurement before repeats stop"
    )
    ap.add_argument(
        "--dit-max-length",
        type=int,
        default=None,
        help="do not run the DiT block above this L (reported as 'skipped')",
    )
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(0)
    D, B = args.dim, args.batch
    print(environment_report())
    if hasattr(os, "getloadavg"):
        print(
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (timings are contended when it "
            f"exceeds the number of cores; ratios within this one run are what the targets judge)"
        )
    print(
        f"one block, forward+backward, D={D}, batch {B}; DiffuSSM: M={args.ratio}, core={args.core}; "
        f"DiT: patch 1, {args.heads} heads, SDPA full attention; {torch.get_num_threads()} threads"
    )

    cfg_ssm = ModelConfig(
        arch="diffussm", hidden_dim=D, hourglass_ratio=args.ratio, ssm_core=args.core
    )
    cfg_dit = ModelConfig(arch="dit", hidden_dim=D, num_heads=args.heads)
    ssm_block, dit_block = build_block(cfg_ssm), build_block(cfg_dit)
    t_ssm, t_dit = [], []
    header = f"{'L':>7} {'J':>6} | {'DiffuSSM s':>11} {'DiT s':>10} | {'DiT/DiffuSSM':>12} | {'GFLOP fwd DiffuSSM':>18} {'DiT':>8}"
    print(header)
    print("-" * len(header))
    for L in args.lengths:
        if L % args.ratio:
            raise SystemExit(f"L={L} is not divisible by the hourglass ratio M={args.ratio}")
        row_ssm = row_dit = None
        try:
            row_ssm = time_fwd_bwd(ssm_block, L // args.ratio, D, B, args.repeats, args.budget)
        except RuntimeError as e:  # e.g. out of memory
            print(f"  DiffuSSM at L={L} failed: {e}".splitlines()[0])
        if args.dit_max_length is None or L <= args.dit_max_length:
            try:
                row_dit = time_fwd_bwd(dit_block, L, D, B, args.repeats, args.budget)
            except RuntimeError as e:
                print(f"  DiT at L={L} failed: {e}".splitlines()[0])
        t_ssm.append(row_ssm)
        t_dit.append(row_dit)
        f_ssm = block_flops(cfg_ssm, L, batch=B) / 1e9
        f_dit = block_flops(cfg_dit, L, batch=B) / 1e9
        fmt = lambda v: f"{v:11.3f}" if v is not None else f"{'n/a':>11}"  # noqa: E731
        ratio = f"{row_dit / row_ssm:12.2f}" if row_ssm and row_dit else f"{'n/a':>12}"
        dit_s = (
            f"{row_dit:10.3f}"
            if row_dit is not None
            else f"{'skipped' if args.dit_max_length and L > args.dit_max_length else 'failed':>10}"
        )
        print(
            f"{L:7d} {L // args.ratio:6d} | {fmt(row_ssm)} {dit_s} | {ratio} | {f_ssm:18.1f} {f_dit:8.1f}",
            flush=True,
        )

    ok = True
    measured = [(L, t) for L, t in zip(args.lengths, t_ssm) if t is not None]
    if len(measured) >= 2:
        slope = loglog_slope([m[0] for m in measured], [m[1] for m in measured])
        steps = [loglog_slope([a[0], b[0]], [a[1], b[1]]) for a, b in zip(measured, measured[1:])]
        passed = slope <= SLOPE_TARGET
        ok &= passed
        print(
            f"DiffuSSM log-log slope (fit over L={measured[0][0]}..{measured[-1][0]}): {slope:.3f} "
            f"(between neighbours: {', '.join(f'{s:.2f}' for s in steps)})  target <= {SLOPE_TARGET}: "
            f"{'PASS' if passed else 'FAIL'}"
        )
        dit_meas = [(L, t) for L, t in zip(args.lengths, t_dit) if t is not None]
        if len(dit_meas) >= 2:
            print(
                f"DiT log-log slope: {loglog_slope([m[0] for m in dit_meas], [m[1] for m in dit_meas]):.3f}"
            )
    else:
        ok = False
        print("DiffuSSM log-log slope: not enough measurements: FAIL")

    judged = [(L, a, b) for L, a, b in zip(args.lengths, t_ssm, t_dit) if L >= FASTER_FROM]
    if not judged:
        print(
            f"faster than DiT from L={FASTER_FROM}: no length >= {FASTER_FROM} measured: not judged"
        )
    else:
        missing = [L for L, a, b in judged if a is None or b is None]
        faster = all(a is not None and b is not None and a < b for L, a, b in judged)
        ok &= faster
        note = f" (not measured at L={missing})" if missing else ""
        print(f"faster than DiT at every L >= {FASTER_FROM}{note}: {'PASS' if faster else 'FAIL'}")
    first, interp = crossover(args.lengths, t_ssm, t_dit)
    if first is None:
        print("crossover: DiffuSSM is not faster than DiT at the largest measured L")
    elif interp is None:
        print(f"crossover: below L={first} (DiffuSSM faster at every measured L)")
    else:
        print(
            f"crossover: DiffuSSM faster from L={first} on among measured; interpolated crossover L ~ {interp:.0f}"
        )
    print("overall:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
