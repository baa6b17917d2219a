"""The sampler study's results (issue 27, notebook 06): DDIM and DPM-Solver++ on the pretrained model,
FID-LeNet against model evaluations, and the default sampling the measurements support.

    runs (the "runs" of benchmarks/results/samplers.json: {"sampler steps | seed s | n N | w W": result})
      -> summarise        (sampler, steps) -> mean / SD over seeds of FID-LeNet, class accuracy, floor, seconds
      -> apply_timing     the interleaved timing's medians (``--time-rounds``) in place of one-off seconds
      -> versus_baseline  each config minus DDIM 25, paired by seed (every config samples the same x_T
                          for a seed), with the paired t-test's two-sided p
      -> chosen_default   the config with the fewest model evaluations whose mean FID-LeNet is within
                          DDIM 25's mean + SD (the issue's criterion of "within the sampling noise")
      -> table / verdict / markdown (the README's block) / plot (FID-LeNet against model evaluations)

A result holds ``fid``, ``floor``, ``class_accuracy``, ``sampler``, ``steps``, ``seed``, ``guidance``,
``sample_seconds`` and ``session`` (one process; times compare only within one).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from .stats import fmt_p, paired

BASELINE = ("ddim", 25)
TARGET_STEPS, TARGET_TIME = 10, 0.40  # DPM-Solver++ at <= 10 steps, <= 40% of DDIM 25's time


def nan0(x: float) -> float:
    return 0.0 if math.isnan(x) else x


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
    from matplotlib.figure import (
        Figure,
    )  # no pyplot: the caller's backend and figures stay as they are
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
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
