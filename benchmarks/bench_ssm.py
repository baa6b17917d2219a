"""Benchmark: our fast selective scan against mamba-ssm's sequential reference, and S4D's FFT
convolution against its recurrence, measured in one run on this machine.

    python benchmarks/bench_ssm.py                 # full run (the reference's backward at L=1024 takes ~1 min)
    python benchmarks/bench_ssm.py --quick         # small sizes, for a smoke test
    python benchmarks/bench_ssm.py --threads 2     # pin the number of torch threads

What it prints, per sequence length L:
- forward and forward+backward time (best of a few runs; a single run for the slow reference
  backward), their ratio reference / ours;
- peak memory of each (rise of the process's peak resident set size during the work; every
  implementation runs in its own fresh worker process so the numbers do not mix);
- our effective memory traffic as a fraction of this machine's copy bandwidth (measured first in
  the same run). "Traffic" counts the bytes that must move at least once: forward reads the inputs
  and writes y; backward re-reads the inputs, reads dy and writes one gradient per input;
- whether results agree (outputs, last state, and gradients where the reference backward ran).
Then the targets of issue #3, each PASS or FAIL with its number.

The scan is benchmarked in Mamba's configuration: D skip, z gate, delta_bias, delta_softplus.
mamba-ssm's reference is reached through tests/oracles.py (stand-ins for the missing compiled
extensions); the library itself never imports mamba-ssm on CPU. Timings on a shared machine are
noisy: run it when the machine is otherwise idle.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import torch

# ----------------------------------------------------------------------------- workloads


def _proc_status(key: str) -> int:
    """A value from /proc/self/status in bytes (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def scan_inputs(L, b, d, n, seed=0):
    """Mamba-configuration scan inputs: u, delta, A, B, C, D, z, delta_bias (float32)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)
    u, delta, z = r(b, d, L), r(b, d, L) - 1.0, r(b, d, L)
    A = -torch.exp(torch.log(torch.arange(1, n + 1, dtype=torch.float32))).repeat(d, 1)
    B, C = r(b, n, L), r(b, n, L)
    D, bias = torch.ones(d), torch.rand(d, generator=g) * 0.1
    return [u, delta, A, B, C, D, z, bias]


def s4d_setup(L, b, h, n, seed=0):
    from diffussm_lib.ssm import S4D

    torch.manual_seed(seed)
    m = S4D(h, n)
    u = torch.randn(b, h, L, generator=torch.Generator().manual_seed(seed + 1))
    return m, u


def _workload(spec: dict, L: int):
    """(forward function returning (y, last or None), list of leaves to differentiate) at length L."""
    kind, impl = spec["kind"], spec["impl"]
    if kind == "scan":
        from diffussm_lib.ssm import selective_scan_torch

        if impl == "ours":
            fn = selective_scan_torch
        else:
            from oracles import load_selective_scan_ref

            fn = load_selective_scan_ref()
        args = scan_inputs(L, spec["b"], spec["d"], spec["n"])
        leaves = [a.requires_grad_() for a in args]
        return (lambda: fn(*args, delta_softplus=True, return_last_state=True)), leaves
    from diffussm_lib.ssm import s4d_recurrence

    m, u = s4d_setup(L, spec["b"], spec["d"], spec["n"])
    u.requires_grad_()

    def fwd():
        if impl == "ours":
            return m(u), None
        _, z, Bbar, C = m.discrete()
        return s4d_recurrence(u, z, Bbar, C) + m.D[:, None] * u, None

    return fwd, [u, *m.parameters()]


def _fwd_bwd(fwd, leaves, cot):
    for p in leaves:
        p.grad = None
    y, last = fwd()
    loss = (y * cot[0]).sum() + ((last * cot[1]).sum() if last is not None else 0)
    loss.backward()


def _cotangents(spec: dict, L: int):
    """Random dy (B, D, L) and, for the scan, d(last state) (B, D, N)."""
    g = torch.Generator().manual_seed(7)
    dy = torch.randn(spec["b"], spec["d"], L, generator=g)
    return dy, (
        torch.randn(spec["b"], spec["d"], spec["n"], generator=g)
        if spec["kind"] == "scan"
        else None
    )


def worker(spec: dict) -> dict:
    """Run one implementation at one size in this (fresh) process; return times and peak memory.

    A tiny warm-up run (L = 8) first initialises the libraries, so that the peak memory (rise of
    VmHWM over VmRSS after the warm-up and the input set-up) measures the workload itself. Forward
    and forward+backward repetitions are interleaved and the best of each is kept, which makes the
    numbers robust against other jobs on a shared machine.
    """
    torch.set_num_threads(spec["threads"])
    fwd, leaves = _workload(spec, 8)
    _fwd_bwd(fwd, leaves, _cotangents(spec, 8))
    fwd, leaves = _workload(spec, spec["L"])
    cot = _cotangents(spec, spec["L"])
    base = _proc_status("VmRSS")
    out = {"fwd_s": math.inf, "fwdbwd_s": math.inf}
    for r in range(max(spec["reps"]["fwd"], spec["reps"]["bwd"] if spec["backward"] else 0)):
        if r < spec["reps"]["fwd"]:
            t = time.perf_counter()
            with torch.no_grad():
                y, last = fwd()
            out["fwd_s"] = min(out["fwd_s"], time.perf_counter() - t)
            if r == 0:
                out["fwd_peak"] = _proc_status("VmHWM") - base
                tensors = {
                    "y": y.contiguous(),
                    **({"last": last.contiguous()} if last is not None else {}),
                }
            del y, last
        if spec["backward"] and r < spec["reps"]["bwd"]:
            t = time.perf_counter()
            _fwd_bwd(fwd, leaves, cot)
            out["fwdbwd_s"] = min(out["fwdbwd_s"], time.perf_counter() - t)
    if spec["backward"]:
        out["fwdbwd_peak"] = _proc_status("VmHWM") - base
        for i, p in enumerate(leaves):
            tensors[f"grad{i}"] = p.grad.contiguous()
    else:
        del out["fwdbwd_s"]
    if spec.get("save"):
        from safetensors.torch import save_file

        save_file(tensors, spec["save"])
    return out


def run_worker(spec: dict) -> dict:
    r = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if r.returncode != 0:
        raise RuntimeError(
            f"worker {spec['kind']}/{spec['impl']}/L={spec['L']} failed:\n{r.stderr[-3000:]}"
        )
    return json.loads(r.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- measurements


def copy_bandwidth(threads: int, mib: int = 256) -> float:
    """Bytes per second of a large tensor copy (read + write counted), best of 5."""
    torch.set_num_threads(threads)
    src = torch.randn(mib * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = math.inf
    for _ in range(5):
        t = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.numel() * 4 / best


def traffic_bytes(kind, L, b, d, n):
    """Compulsory bytes (float32) for forward and for forward+backward; see the module docstring."""
    if kind == "scan":
        inputs = 4 * (
            3 * b * d * L + 2 * b * n * L + 2 * d + d * n
        )  # u, delta, z, B, C, D, bias, A
        outputs = 4 * (b * d * L + b * d * n)  # y, last state
    else:
        inputs = 4 * (b * d * L + d * (2 + 3 * n // 2))  # u and the parameters
        outputs = 4 * b * d * L
    fwd = inputs + outputs
    return fwd, fwd + inputs + outputs + inputs  # + re-read, dy, grads


def compare(path_a, path_b, keys):
    """Max |a - b| / max |b| over the given tensor names present in both files."""
    from safetensors.torch import load_file

    a, b = load_file(path_a), load_file(path_b)
    worst = 0.0
    for k in keys:
        if k in a and k in b:
            worst = max(
                worst, ((a[k] - b[k]).abs().max() / b[k].abs().max().clamp_min(1e-30)).item()
            )
    return worst


def fmt_t(s):
    return "-" if s is None else (f"{s * 1e3:8.1f} ms" if s < 10 else f"{s:8.1f} s ")


def fmt_mb(x):
    return "-" if x is None else f"{x / 2**20:7.1f} MiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument(
        "--quick", action="store_true", help="tiny sizes (smoke test; targets not meaningful)"
    )
    ap.add_argument(
        "--ref-backward-lengths",
        default="196,1024",
        help="lengths at which the reference's (quadratic) backward is timed",
    )
    ap.add_argument("--skip-s4d", action="store_true", help="only the selective scan part")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(json.loads(a.worker))))
        return

    lengths = [64, 128, 256, 512] if a.quick else [196, 784, 1024, 4096]
    b, d, n = (2, 16, 8) if a.quick else (4, 128, 16)
    sb, sh, sn = (2, 16, 16) if a.quick else (4, 128, 64)
    ref_bwd = {int(x) for x in a.ref_backward_lengths.split(",") if x}
    if a.quick:
        ref_bwd = set(lengths)
    key_L, hi_L = (256, 512) if a.quick else (1024, 4096)
    tmp = Path(tempfile.mkdtemp(prefix="bench_ssm_"))

    print(
        f"torch {torch.__version__}, {a.threads} threads, {os.cpu_count()} CPUs visible; "
        f"load average {os.getloadavg()[0]:.1f} (timings are contended if this exceeds the core count)"
    )
    bw = copy_bandwidth(a.threads)
    print(f"copy bandwidth: {bw / 1e9:.1f} GB/s (256 MiB tensor copy, read + write)")

    results = {}
    print(
        f"\n== selective scan: batch {b}, dim {d}, state {n}, float32, D + z + delta_bias + softplus =="
    )
    hdr = (
        f"{'L':>5} | {'impl':<9} | {'forward':>11} | {'fwd+bwd':>11} | {'peak fwd+bwd':>12} | "
        f"{'fwd x':>6} | {'fwd+bwd x':>9} | {'traffic/bw':>10} | agree (max rel err)"
    )
    print(hdr)
    print("-" * len(hdr))
    for L in lengths:
        base = dict(kind="scan", L=L, b=b, d=d, n=n, threads=a.threads)
        ours = run_worker(
            {
                **base,
                "impl": "ours",
                "reps": {"fwd": 7, "bwd": 7},
                "backward": True,
                "save": str(tmp / f"scan_ours_{L}.st"),
            }
        )
        do_ref_bwd = L in ref_bwd
        ref = run_worker(
            {
                **base,
                "impl": "ref",
                "reps": {"fwd": 3 if L <= 1024 else 1, "bwd": 1},
                "backward": do_ref_bwd,
                "save": str(tmp / f"scan_ref_{L}.st"),
            }
        )
        keys = ["y", "last"] + ([f"grad{i}" for i in range(8)] if do_ref_bwd else [])
        err = compare(tmp / f"scan_ours_{L}.st", tmp / f"scan_ref_{L}.st", keys)
        fb, fbb = traffic_bytes("scan", L, b, d, n)
        fx = ref["fwd_s"] / ours["fwd_s"]
        fbx = ref["fwdbwd_s"] / ours["fwdbwd_s"] if do_ref_bwd else None
        results[L] = dict(ours=ours, ref=ref, err=err, fx=fx, fbx=fbx)
        what = "y, last, all grads" if do_ref_bwd else "y, last"
        print(
            f"{L:>5} | {'ours':<9} | {fmt_t(ours['fwd_s']):>11} | {fmt_t(ours['fwdbwd_s']):>11} | "
            f"{fmt_mb(ours['fwdbwd_peak']):>12} | {fx:6.1f} | {('%9.0f' % fbx) if fbx else '        -':>9} | "
            f"{fb / ours['fwd_s'] / bw:5.1%}/{fbb / ours['fwdbwd_s'] / bw:4.1%} | {err:.1e} ({what})"
        )
        print(
            f"{'':>5} | {'reference':<9} | {fmt_t(ref['fwd_s']):>11} | {fmt_t(ref.get('fwdbwd_s')):>11} | "
            f"{fmt_mb(ref.get('fwdbwd_peak')):>12} | {'':>6} | {'':>9} | {'':>10} |"
            + ("" if do_ref_bwd else " (reference backward not timed: quadratic in L)")
        )

    s4d = {}
    print(
        f"\n== S4D: batch {sb}, channels {sh}, state {sn} ({sn // 2} complex modes), float32: FFT conv vs recurrence =="
    )
    print(hdr)
    print("-" * len(hdr))
    for L in [] if a.skip_s4d else lengths:
        base = dict(kind="s4d", L=L, b=sb, d=sh, n=sn, threads=a.threads)
        ours = run_worker(
            {
                **base,
                "impl": "ours",
                "reps": {"fwd": 7, "bwd": 7},
                "backward": True,
                "save": str(tmp / f"s4d_ours_{L}.st"),
            }
        )
        rec = run_worker(
            {
                **base,
                "impl": "recurrence",
                "reps": {"fwd": 1, "bwd": 1},
                "backward": True,
                "save": str(tmp / f"s4d_rec_{L}.st"),
            }
        )
        err = compare(
            tmp / f"s4d_ours_{L}.st",
            tmp / f"s4d_rec_{L}.st",
            ["y"] + [f"grad{i}" for i in range(6)],
        )
        fb, fbb = traffic_bytes("s4d", L, sb, sh, sn)
        fx, fbx = rec["fwd_s"] / ours["fwd_s"], rec["fwdbwd_s"] / ours["fwdbwd_s"]
        s4d[L] = dict(ours=ours, rec=rec, err=err)
        print(
            f"{L:>5} | {'FFT':<9} | {fmt_t(ours['fwd_s']):>11} | {fmt_t(ours['fwdbwd_s']):>11} | "
            f"{fmt_mb(ours['fwdbwd_peak']):>12} | {fx:6.1f} | {fbx:9.1f} | "
            f"{fb / ours['fwd_s'] / bw:5.1%}/{fbb / ours['fwdbwd_s'] / bw:4.1%} | {err:.1e} (y, all grads)"
        )
        print(
            f"{'':>5} | {'recurrence':<9} | {fmt_t(rec['fwd_s']):>11} | {fmt_t(rec['fwdbwd_s']):>11} | "
            f"{fmt_mb(rec['fwdbwd_peak']):>12} | {'':>6} | {'':>9} | {'':>10} |"
        )
    print("(traffic/bw: forward / forward+backward; 'x' columns: reference time / our time)")

    # ------------------------------------------------------------------ targets
    print(f"\n== targets (issue #3), selective scan at L = {key_L}, {a.threads} threads ==")
    r = results[key_L]
    slope = math.log(results[hi_L]["ours"]["fwdbwd_s"] / r["ours"]["fwdbwd_s"]) / math.log(
        hi_L / key_L
    )
    slope_f = math.log(results[hi_L]["ours"]["fwd_s"] / r["ours"]["fwd_s"]) / math.log(hi_L / key_L)
    mem_ratio = (r["ours"]["fwdbwd_peak"] / r["ref"]["fwdbwd_peak"]) if r["fbx"] else None
    checks = [
        (
            "fwd+bwd speed-up >= 100x",
            r["fbx"] is not None and r["fbx"] >= 100,
            f"{r['fbx']:.0f}x" if r["fbx"] else "not run",
        ),
        ("forward speed-up >= 5x", r["fx"] >= 5, f"{r['fx']:.1f}x"),
        ("equal results (rel err <= 1e-4)", r["err"] <= 1e-4, f"{r['err']:.1e}"),
        (
            "peak memory <= 2x reference",
            mem_ratio is not None and mem_ratio <= 2,
            f"{mem_ratio:.3f}x" if mem_ratio is not None else "not run",
        ),
        (
            f"time ~ linear in L (log-log slope {key_L}->{hi_L} <= 1.15)",
            max(slope, slope_f) <= 1.15,
            f"fwd {slope_f:.2f}, fwd+bwd {slope:.2f}",
        ),
    ]
    for name, ok, val in checks:
        print(f"  [{'PASS' if ok else 'FAIL'}] {name}: {val}")
    s = s4d.get(key_L)
    if s:
        print(
            f"  [info] S4D at L = {key_L}: FFT {s['rec']['fwd_s'] / s['ours']['fwd_s']:.0f}x (fwd), "
            f"{s['rec']['fwdbwd_s'] / s['ours']['fwdbwd_s']:.0f}x (fwd+bwd) faster than the recurrence; rel err {s['err']:.1e}"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
