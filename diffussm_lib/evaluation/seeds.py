"""Results over seeds (notebook 08): the mean and spread of each variant, which differences from the
base are larger than the seed spread, and what that says of a claim.

    runs (the "runs" of benchmarks/results/scan_orders.json: {run id: result}, the id ending in its budget)
      -> summarise -> {budget: {variant: {metric: (mean, spread), "seeds": n, "steps", "n", "floor"}}}
      -> summary_text / markdown_table (the README's) / conclusions (CLAIMS, one verdict each)
      -> markdown_verdicts (the README's list of them)

The rule: the spread of a metric is max - min over seeds (with 2 seeds, the distance between them). A
difference of means between a variant and the base counts as real only when it is larger than the
spread of both (``max(spread_variant, spread_base)``) and both have at least 2 seeds: a rough rule, not
a significance test. Lower is better for FID-LeNet and the final loss, higher for class accuracy.
"""

from __future__ import annotations

import statistics
from typing import Iterable

METRICS = {
    "fid": ("FID-LeNet", True),
    "class_accuracy": ("class acc.", False),
    "final_loss": ("final loss", True),
}
BASE = "raster"

# Every claim is judged at equal CPU time (the benchmark's budget). Where a paper made its claim in
# another form, the text says so and names the course's version: DiffuSSM compares patch sizes at equal
# width and equal steps (by training loss) and M = 1 with M = 2 at equal steps; the scan orders of ZigMa
# and DiM ran in selective Mamba blocks, the course's in its LTI (time-invariant) S4D core.
CLAIMS = [  # (source, claim, variant, prediction: "variant better" / "base better" / "match")
    ("DiffuSSM", "a bidirectional SSM beats a causal one", "causal", "base better"),
    (
        "DiffuSSM",
        "course's equal-cost version of the patching claim: no patching (patch 1), narrowed to the "
        "base's FLOPs per image, beats 2x2 patches at equal CPU time (the paper compares at equal "
        "width and equal steps, by training loss)",
        "patch 1 (same cost)",
        "variant better",
    ),
    (
        "DiffuSSM",
        "course's equal-cost version of the hourglass claim: M = 2 does at least as well as M = 1 at "
        "equal CPU time, where it takes more steps (the paper: M = 2 roughly matches M = 1 at equal "
        "steps, for less compute)",
        "M = 1",
        "match",
    ),
    (
        "ZigMa",
        "with an LTI S4D core (ZigMa used selective Mamba), a continuous (zigzag) path beats the raster "
        "sweep",
        "snake",
        "variant better",
    ),
    (
        "locality",
        "with an LTI S4D core, a locality-preserving curve (Hilbert) beats the raster sweep",
        "hilbert",
        "variant better",
    ),
    (
        "DiM / Mamba-ND",
        "with an LTI S4D core, alternating row and column directions across layers beats one "
        "direction",
        "raster/column",
        "variant better",
    ),
    ("control", "an order without locality (random) is worse than raster", "random", "base better"),
]


def budget_of(run_id: str) -> str:
    """The budget a run id ends in: "raster | seed 0 | 20.0 min, width 64, batch 64" -> "20.0 min, ..."."""
    return run_id.split(" | ")[-1]


def summarise(runs: dict, order: Iterable[str] = ()) -> dict:
    """{run id: result} -> {budget: {variant: summary}}; variants in ``order`` first, then the rest sorted.
    A summary holds ``metric: (mean, spread)`` for each of METRICS, ``per_seed`` (metric: the seeds'
    values), and ``seeds``, mean ``steps``, the sample count ``n`` and the mean real-vs-real ``floor``."""
    order = list(order)
    groups: dict = {}
    for rid, r in runs.items():
        groups.setdefault(budget_of(rid), {}).setdefault(r["variant"], []).append(r)
    out = {}
    for budget, by_variant in groups.items():
        names = [v for v in order if v in by_variant] + sorted(set(by_variant) - set(order))
        out[budget] = {}
        for v in names:
            rs = by_variant[v]
            s = {
                "seeds": len(rs),
                "steps": statistics.mean(r["steps"] for r in rs),
                "n": rs[0]["n"],
                "floor": statistics.mean(r["floor"] for r in rs),
                "per_seed": {},
            }
            for m in METRICS:
                vals = s["per_seed"][m] = [r[m] for r in rs]
                s[m] = (statistics.mean(vals), max(vals) - min(vals))
            out[budget][v] = s
    return out


def versus(s_v: dict, s_b: dict, metric: str) -> tuple[float, float, bool | None]:
    """One metric of a variant against the base: (difference of means, spread, decided by the rule);
    decided is None when either side has fewer than 2 seeds (no spread to judge by)."""
    diff = s_v[metric][0] - s_b[metric][0]
    spread = max(s_v[metric][1], s_b[metric][1])
    return diff, spread, (abs(diff) > spread if min(s_v["seeds"], s_b["seeds"]) >= 2 else None)


def judgement(s_v: dict, s_b: dict, metric: str) -> str:
    """'better / worse beyond the spread', 'within the spread', or 'one seed, no spread'."""
    diff, _, decided = versus(s_v, s_b, metric)
    if decided is None:
        return "one seed, no spread"
    if not decided:
        return "within the spread"
    return ("better" if (diff < 0) == METRICS[metric][1] else "worse") + " beyond the spread"


def summary_text(table: dict, matched_width: int | None = None) -> str:
    """Every budget: one row per variant (mean ± half the spread), then each variant minus the base."""
    lines = []
    for budget, rows in table.items():
        lines.append(f"\nbudget: {budget}")
        if "patch 1 (same cost)" in rows and matched_width:
            lines.append(
                f"(patch 1 runs at width {matched_width}: the width whose forward FLOPs per image are "
                "closest to the base's)"
            )
        lines.append(
            f"{'variant':>22s} | seeds | steps | "
            + " | ".join(f"{METRICS[m][0]:>16s}" for m in METRICS)
            + " | floor (same count)"
        )
        for v, s in rows.items():
            cells = [f"{s[m][0]:8.3f} ± {s[m][1] / 2:5.3f}" for m in METRICS]
            lines.append(
                f"{v:>22s} | {s['seeds']:5d} | {s['steps']:5.0f} | "
                + " | ".join(cells)
                + f" | {s['floor']:.2f}"
            )
        lines.append(f"(± half the spread; FID-LeNet on {next(iter(rows.values()))['n']} samples)")
        if BASE not in rows:
            lines.append(f"no {BASE} runs at this budget: nothing to compare against")
            continue
        for v, s in rows.items():
            if v == BASE:
                continue
            parts = []
            for m, (label, _) in METRICS.items():
                diff, spread, _ = versus(s, rows[BASE], m)
                parts.append(
                    f"{label} {diff:+.3f} (spread {spread:.3f}: {judgement(s, rows[BASE], m)})"
                )
            lines.append(f"  {v} minus {BASE}: " + "; ".join(parts))
    return "\n".join(lines)


def markdown_table(table: dict) -> str:
    """The README's table: per budget, one row per variant, FID-LeNet with its judgement against the base."""
    out = []
    for budget, rows in table.items():
        first = next(iter(rows.values()))
        out.append(
            f"Budget: {budget}; FID-LeNet on {first['n']} samples (real-vs-real floor "
            f"{first['floor']:.2f}); mean ± half the spread over seeds (one seed: its value).\n"
        )
        out.append(
            f"| variant | seeds | steps | FID-LeNet | class accuracy | final loss | FID vs {BASE} |"
        )
        out.append("|---|---|---|---|---|---|---|")
        for v, s in rows.items():
            vs = (
                "(the base)"
                if v == BASE
                else (judgement(s, rows[BASE], "fid") if BASE in rows else "no base")
            )
            pm = s["seeds"] >= 2  # one seed: no spread to show
            cells = [
                f"{s['fid'][0]:.2f}" + (f" ± {s['fid'][1] / 2:.2f}" if pm else ""),
                f"{100 * s['class_accuracy'][0]:.1f}%"
                + (f" ± {50 * s['class_accuracy'][1]:.1f}" if pm else ""),
                f"{s['final_loss'][0]:.4f}" + (f" ± {s['final_loss'][1] / 2:.4f}" if pm else ""),
            ]
            out.append(
                f"| {v} | {s['seeds']} | {s['steps']:.0f} | " + " | ".join(cells) + f" | {vs} |"
            )
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def verdict(rows: dict, v: str, prediction: str) -> tuple[str, float | None]:
    """A claim's verdict at one budget from FID-LeNet, and the difference of means (variant - base)."""
    if BASE not in rows or v not in rows:
        return "not in the stored results", None
    diff, _, decided = versus(rows[v], rows[BASE], "fid")
    if decided is None:
        return "cannot be decided: fewer than 2 seeds", diff
    if prediction == "match":
        if not decided:
            return "consistent: the difference is within the seed spread", diff
        return (
            f"holds: M = 2 is better beyond the spread, with {rows[BASE]['steps']:.0f} steps against M = 1's "
            f"{rows[v]['steps']:.0f} in the same time"
            if diff > 0
            else "does not hold at this budget: M = 1 is better beyond the spread"
        ), diff
    if not decided:
        return "cannot be decided at this budget: the difference is within the seed spread", diff
    return (
        "holds at this budget"
        if (diff < 0) == (prediction == "variant better")
        else "does not hold at this budget: the difference goes the other way, beyond the seed spread"
    ), diff


def main_budget(table: dict) -> str:
    """The budget with the most runs: the one the claims are judged at."""
    return max(table, key=lambda b: sum(s["seeds"] for s in table[b].values()))


def _judged(table: dict) -> tuple[str, list[tuple[str, str, str, str, float | None]]]:
    """The budget with the most runs, and each of CLAIMS there: (source, claim, variant, verdict, diff)."""
    budget = main_budget(table)
    return budget, [
        (source, claim, v, *verdict(table[budget], v, prediction))
        for source, claim, v, prediction in CLAIMS
    ]


def conclusions(table: dict) -> tuple[dict, str]:
    """Each of CLAIMS judged at the budget with the most runs: ({variant: verdict}, the text)."""
    if not table:
        return {}, "No stored runs, so no claim is decided here."
    budget, judged = _judged(table)
    rows = table[budget]
    first = next(iter(rows.values()))
    lines = [f"budget: {budget}; FID-LeNet on {first['n']} samples (floor {first['floor']:.2f})\n"]
    for source, claim, v, text, diff in judged:
        detail = ""
        if diff is not None:
            s_v, s_b = rows[v], rows[BASE]
            detail = (
                f"\n      {v}: FID-LeNet {s_v['fid'][0]:.2f} (spread {s_v['fid'][1]:.2f}, {s_v['steps']:.0f} steps, "
                f"class acc. {s_v['class_accuracy'][0]:.3f}); {BASE}: {s_b['fid'][0]:.2f} "
                f"(spread {s_b['fid'][1]:.2f}, {s_b['steps']:.0f} steps, class acc. {s_b['class_accuracy'][0]:.3f})"
            )
        lines.append(f"[{source}] {claim}: {text}.{detail}")
    return {v: text for _, _, v, text, _ in judged}, "\n".join(lines)


def markdown_verdicts(table: dict) -> str:
    """The README's list under the table: each claim, the variant that tests it, and its verdict."""
    if not table:
        return ""
    budget, judged = _judged(table)
    return (
        f"Verdicts at {budget} (the rule above, `diffussm_lib.evaluation.seeds.conclusions`):\n\n"
        + "\n".join(
            f"- {source}: {claim} (variant *{v}*): {text}." for source, claim, v, text, _ in judged
        )
        + "\n"
    )
