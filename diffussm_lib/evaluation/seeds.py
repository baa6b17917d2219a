"""Results over seeds (notebook 08): each variant's mean and standard deviation over seeds, a Welch
test of each variant against the base, Holm's correction over the family, a verdict on each claim.

    runs ({run id: result}, the id "variant | seed s | budget"; benchmarks/results/scan_orders.json)
      -> summarise    {budget: {variant: {metric: (mean, SD), "per_seed", "seeds", "steps", ...}}}
      -> compare      one budget's family: {variant: {metric: {"diff", "t", "df", "p", "holm"}}}
      -> summary_text / markdown_table (the README's): every variant, with its test against the base
      -> conclusions / markdown_verdicts: each of CLAIMS, at the budget of its kind
      -> plot         a panel per budget: every seed, the mean ± SD, the base's band, the floor

Budgets. A budget's name says its kind (``budget_name``, ``budget_kind``): "3000 steps, recipe" is
equal steps (every variant trains as many updates), "10.0 min, recipe" equal training time (each
variant trains for the steps its measured speed gives in that time). The scan orders and the causal
SSM cost about the same per step as the base and are judged at equal steps; the patch and hourglass
claims, whose variants cost more per step, are judged twice: at equal steps (the paper's setting)
and at equal time (the course's equal-cost version).

The rule. Per variant and metric: the mean and the sample standard deviation (SD) over seeds, every
seed's value kept. Each variant is compared with the base (``BASE``, raster) at the same budget by
Welch's two-sided t-test (``stats.welch``): the difference of means (variant minus base) and its
p-value, for FID-LeNet (the verdict's metric), class accuracy and the final training loss. The
comparisons of one budget in which both arms have at least ``MIN_SEEDS`` seeds form a family: they
share the base, and k tests at ``ALPHA`` each would give at least one false verdict with a chance of
up to ``stats.familywise_rate(k)`` (0.30 for k = 7) when no difference is real. Holm's correction
(``stats.holm``) adjusts the family's p-values so that this chance stays at most ``ALPHA``.
A verdict:

* needs at least ``MIN_SEEDS`` seeds in both arms ("not decided: 2 vs 3 seeds" otherwise);
* "holds" / "the other way" when FID-LeNet's Holm-adjusted p is at most ``ALPHA`` and the
  difference goes the predicted / the other way (lower FID-LeNet is better, higher class accuracy);
* "not shown" otherwise: a test that does not reject never says "equal" (with 3 seeds it has little
  power); for a "match" claim (M = 2 does at least as well as M = 1) the same test reads "M = 2
  better", "no difference shown" or "M = 1 better".

Every verdict prints the means ± SD of both arms, the raw Welch p and the Holm-adjusted p, and is
scoped: for this S4D model on MNIST, at this budget.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, NamedTuple

from .stats import familywise_rate, fmt_p, holm, mean_sd, welch

METRICS = {  # key in a stored result -> (label, lower is better)
    "fid": ("FID-LeNet", True),
    "class_accuracy": ("class accuracy", False),
    "final_loss": ("final loss", True),
}
VERDICT_METRIC = "fid"
BASE = "raster"
ALPHA = 0.05
MIN_SEEDS = 3  # per arm, for a verdict
SCOPE = "for this S4D model on MNIST"
KINDS = {"steps": "equal steps", "time": "equal training time"}


class Claim(NamedTuple):
    """A claim tested by one variant against ``BASE`` at the budget kind ``kind`` ("steps" or
    "time").
    ``prediction``: "variant better", "base better" or "match" (the base does at least as well);
    ``labels``: (variant, base) as a "match" verdict names them; ``paper``: where the course's
    version differs from the source's ("" where it does not)."""

    source: str
    claim: str
    variant: str
    prediction: str
    kind: str
    paper: str = ""
    labels: tuple[str, str] = ("", "")


LTI = (
    "the course's core is an LTI (time-invariant) S4D SSM: its kernel does not depend on the input"
)
CLAIMS = [
    Claim(
        "DiffuSSM",
        "a bidirectional SSM beats a causal one",
        "causal",
        "base better",
        "steps",
    ),
    Claim(
        "DiffuSSM",
        "patching costs quality: smaller patches (2x2, L = 256 tokens) beat the recipe's 4x4 "
        "patches (L = 64) at equal width and equal steps",
        "patch 2",
        "variant better",
        "steps",
        paper="the course's version: the paper compares patch 1 with patch 2 on 32x32 latents "
        "(L = 1024 and 256 tokens) by training loss; here patch 2 with patch 4 on 32x32 padded "
        "digits by FID-LeNet (patch 1, L = 1024, costs about 17x the recipe's time per step here)",
    ),
    Claim(
        "DiffuSSM",
        "course's equal-cost version of the patching claim: 2x2 patches, narrowed to the recipe's "
        "FLOPs per image, beat 4x4 patches at equal training time",
        "patch 2 (same cost)",
        "variant better",
        "time",
        paper="the course's version: the paper compares patch sizes at equal width and equal "
        "steps only",
    ),
    Claim(
        "DiffuSSM",
        "the hourglass (M = 2) does at least as well as no hourglass (M = 1) at equal steps, for "
        "less compute",
        "M = 1",
        "match",
        "steps",
        labels=("M = 1", "M = 2"),
    ),
    Claim(
        "DiffuSSM",
        "course's equal-cost version of the hourglass claim: M = 2 does at least as well as "
        "M = 1 at equal training time, where it takes more steps",
        "M = 1",
        "match",
        "time",
        paper="the course's version: the paper compares M = 1 and M = 2 at equal steps",
        labels=("M = 1", "M = 2"),
    ),
    Claim(
        "ZigMa",
        "a continuous (zigzag, here snake) path beats the raster sweep",
        "snake",
        "variant better",
        "steps",
        paper=f"ZigMa ran selective Mamba blocks; {LTI}",
    ),
    Claim(
        "locality",
        "a locality-preserving curve (Hilbert) beats the raster sweep",
        "hilbert",
        "variant better",
        "steps",
        paper=f"an argument from locality, not a paper's result; {LTI}",
    ),
    Claim(
        "DiM / Mamba-ND",
        "alternating row and column directions across layers beats one direction",
        "raster/column",
        "variant better",
        "steps",
        paper=f"DiM and Mamba-ND ran Mamba blocks; {LTI}",
    ),
    Claim(
        "control",
        "an order without locality (random) is worse than raster",
        "random",
        "base better",
        "steps",
    ),
]


# ----------------------------------------------------------------------------- budgets


def budget_of(run_id: str) -> str:
    """The budget a run id ends in: "raster | seed 0 | 3000 steps, recipe" -> "3000 steps,
    recipe"."""
    return run_id.split(" | ")[-1]


def budget_name(
    steps: int | None = None, minutes: float | None = None, base: str = "recipe"
) -> str:
    """A budget's name, its kind first: (steps=3000) -> "3000 steps, recipe", (minutes=10) ->
    "10.0 min, recipe", (minutes=0.05) -> "0.05 min, recipe". Exactly one of ``steps`` and
    ``minutes``."""
    if (steps is None) == (minutes is None):
        raise ValueError("a budget is either steps or minutes")
    if steps is not None:
        return f"{steps} steps, {base}"
    text = f"{float(minutes):.1f}"  # "10.0"; a finer budget keeps its digits ("0.05")
    return f"{text if float(text) == minutes else f'{minutes:g}'} min, {base}"


def budget_kind(budget: str) -> str | None:
    """ "steps" for "3000 steps, ...", "time" for "10.0 min, ...", None for another name."""
    head = budget.split(",")[0].strip()
    return "steps" if head.endswith(" steps") else "time" if head.endswith(" min") else None


# ----------------------------------------------------------------------------- numbers


def _pm(mean: float, sd: float, fmt: str, scale: float = 1.0, unit: str = "") -> str:
    """ "mean ± SD" (one seed: the value)."""
    text = f"{scale * mean:{fmt}}{unit}"
    return text if math.isnan(sd) else f"{text} ± {scale * sd:{fmt}}"


def _fmt(metric: str) -> tuple[str, float, str]:
    """Format, scale and unit of a metric's numbers: class accuracy in percent."""
    return {"fid": (".2f", 1.0, ""), "class_accuracy": (".1f", 100.0, "%")}.get(
        metric, (".4f", 1.0, "")
    )


def eval_setting(result: dict) -> str:
    """How a stored run was evaluated, its seed left out where it is the run's own: "ddim 25
    steps, guidance 1.25, sampling seed 1000 + training seed" (or "..., sampling seed 0")."""
    seed = result.get("sample_seed", 0)
    return (
        f"{result.get('sampler', 'ddim')} {result.get('sample_steps', 25)} steps, guidance "
        f"{result.get('guidance', 1.0):g}, sampling seed "
        + ("1000 + training seed" if seed == 1000 + result["seed"] else str(seed))
    )


def evaluation_text(rows: dict) -> str:
    """How one budget's runs were evaluated: "2000 class-balanced samples, ddim 25 steps, ...";
    runs evaluated differently (not comparable) are named so, with every setting."""
    counts = sorted({s["n"] for s in rows.values()})
    settings = sorted({e for s in rows.values() for e in s["evaluation"]})
    text = f"{' / '.join(map(str, counts))} class-balanced samples, {'; '.join(settings)}"
    mixed = len(counts) > 1 or len(settings) > 1
    return ("MIXED EVALUATIONS, not comparable: " if mixed else "") + text


# ----------------------------------------------------------------------------- summaries


def summarise(runs: dict, order: Iterable[str] = ()) -> dict:
    """{run id: result} -> {budget: {variant: summary}}; variants in ``order`` first, then the rest
    sorted. A summary holds ``metric: (mean, SD)`` for each of METRICS (SD nan for one seed),
    ``per_seed`` ({"seed": [seeds], metric: [values]}, in seed order), ``seeds`` (their count), the
    mean ``steps``, the sample count ``n``, the mean real-vs-real ``floor`` and ``evaluation`` (the
    set of ``eval_setting`` texts of its runs)."""
    order = list(order)
    groups: dict = {}
    for rid, r in runs.items():
        groups.setdefault(budget_of(rid), {}).setdefault(r["variant"], []).append(r)
    out = {}
    for budget, by_variant in groups.items():
        names = [v for v in order if v in by_variant] + sorted(set(by_variant) - set(order))
        out[budget] = {}
        for v in names:
            rs = sorted(by_variant[v], key=lambda r: r["seed"])
            s = {
                "seeds": len(rs),
                "steps": mean_sd([r["steps"] for r in rs])[0],
                "n": rs[0]["n"],
                "floor": mean_sd([r["floor"] for r in rs])[0],
                "evaluation": sorted({eval_setting(r) for r in rs}),
                "per_seed": {"seed": [r["seed"] for r in rs]},
            }
            for m in METRICS:
                vals = s["per_seed"][m] = [r[m] for r in rs]
                s[m] = mean_sd(vals)
            out[budget][v] = s
    return out


def compare(rows: dict) -> dict:
    """One budget's variants against ``BASE``: {variant: {metric: test}} with test = {"diff"
    (variant minus base), "t", "df", "p" (Welch, two-sided), "holm" (the Holm-adjusted p, None
    outside the family), "decided" (both arms have >= MIN_SEEDS seeds: in the family)}. Variants
    with fewer than 2 seeds (or a base with fewer) have no test and no entry. The family, per
    metric: the decided comparisons; Holm's correction runs over them."""
    if BASE not in rows or rows[BASE]["seeds"] < 2:
        return {}
    base = rows[BASE]
    out: dict = {}
    for v, s in rows.items():
        if v == BASE or s["seeds"] < 2:
            continue
        decided = min(s["seeds"], base["seeds"]) >= MIN_SEEDS
        out[v] = {
            m: dict(welch(s["per_seed"][m], base["per_seed"][m]), holm=None, decided=decided)
            for m in METRICS
        }
    family = [v for v in out if out[v][VERDICT_METRIC]["decided"]]
    for m in METRICS:
        adjusted = holm([out[v][m]["p"] for v in family])["adjusted"]
        for v, q in zip(family, adjusted):
            out[v][m]["holm"] = q
    return out


def family_size(tests: dict) -> int:
    """The number of comparisons in a budget's family (``compare``'s decided ones)."""
    return sum(t[VERDICT_METRIC]["decided"] for t in tests.values())


def family_note(k: int, alpha: float = ALPHA) -> str:
    """The family-wise rate of ``k`` uncorrected tests, once, and what Holm's correction does."""
    if k == 0:
        return (
            f"No comparison against {BASE} has {MIN_SEEDS} seeds in both arms yet: nothing is "
            "decided."
        )
    if k == 1:
        return (
            f"1 comparison against {BASE} with {MIN_SEEDS}+ seeds per arm: a family of one, "
            "Holm's p is Welch's."
        )
    return (
        f"{k} comparisons share the {BASE} base (a family): tested at p < {alpha:g} each, the "
        "chance of at least one false verdict when no difference is real would be up to "
        f"{familywise_rate(k, alpha):.2f} (1 - {1 - alpha:g}^{k}); Holm's correction keeps it at "
        f"most {alpha:g}, and the verdicts use the Holm-adjusted p."
    )


def judgement(test: dict | None, metric: str, alpha: float = ALPHA) -> str:
    """A metric's comparison in words: "better, shown" / "worse, shown" (Holm-adjusted p <= alpha),
    "not shown", "no verdict: fewer than 3 seeds" or "no test" (a side with one seed)."""
    if test is None:
        return "no test"
    if not test["decided"]:
        return f"no verdict: fewer than {MIN_SEEDS} seeds"
    if test["holm"] > alpha:
        return "not shown"
    better = (test["diff"] < 0) == METRICS[metric][1]
    return ("better" if better else "worse") + ", shown"


def _test_text(test: dict | None) -> str:
    """ "Welch p = 0.004, Holm p = 0.020" (Holm only inside the family)."""
    if test is None:
        return "no test"
    return f"Welch {fmt_p(test['p'])}" + (
        f", Holm {fmt_p(test['holm'])}" if test["holm"] is not None else ""
    )


def summary_text(table: dict, matched_width: int | None = None) -> str:
    """Every budget: one row per variant (mean ± SD over seeds), then each variant minus the base,
    per metric: the difference, Welch's p, Holm's p and the judgement; the family's note."""
    lines = []
    for budget, rows in table.items():
        kind = budget_kind(budget)
        lines.append(f"\nbudget: {budget} ({KINDS.get(kind, 'unknown kind')})")
        if "patch 2 (same cost)" in rows and matched_width:
            lines.append(
                f"(patch 2 (same cost) runs at width {matched_width}: the width whose forward "
                "FLOPs per image are closest to the base's)"
            )
        lines.append(
            f"{'variant':>22s} | seeds | steps | "
            + " | ".join(f"{METRICS[m][0]:>18s}" for m in METRICS)
            + " | floor (same count)"
        )
        for v, s in rows.items():
            cells = [f"{_pm(*s[m], *_fmt(m)):>18s}" for m in METRICS]
            lines.append(
                f"{v:>22s} | {s['seeds']:5d} | {s['steps']:5.0f} | "
                + " | ".join(cells)
                + f" | {s['floor']:.2f}"
            )
        lines.append(f"(mean ± SD over seeds; FID-LeNet on {evaluation_text(rows)})")
        tests = compare(rows)
        if BASE not in rows:
            lines.append(f"no {BASE} runs at this budget: nothing to compare against")
            continue
        for v in rows:
            if v == BASE:
                continue
            if v not in tests:
                lines.append(f"  {v} minus {BASE}: no test (one seed on a side)")
                continue
            parts = []
            for m, (label, _) in METRICS.items():
                t = tests[v][m]
                fmt, scale, unit = _fmt(m)
                unit = " points" if unit == "%" else unit  # a difference of percentages
                parts.append(
                    f"{label} {scale * t['diff']:+{fmt}}{unit} ({_test_text(t)}: {judgement(t, m)})"
                )
            lines.append(f"  {v} minus {BASE}: " + "; ".join(parts))
        lines.append(family_note(family_size(tests)))
    return "\n".join(lines)


def reference_row(rows: dict) -> dict:
    """The row whose sample count and real-vs-real floor a budget's texts and figure print: the
    base's (the mean floor over its seeds), else the first variant's."""
    return rows.get(BASE) or next(iter(rows.values()))


def markdown_table(table: dict) -> str:
    """The README's table: per budget, one row per variant (mean ± SD over seeds) with its FID-LeNet
    against the base (difference, Welch p, Holm p), and the family's note under it."""
    out = []
    for budget, rows in table.items():
        ref = reference_row(rows)
        tests = compare(rows)
        out.append(
            f"Budget: {budget} ({KINDS.get(budget_kind(budget), 'unknown kind')}); FID-LeNet on "
            f"{evaluation_text(rows)} (real-vs-real floor {ref['floor']:.2f}); mean ± SD over "
            "seeds (one seed: its value); "
            f"against {BASE}: difference of means, Welch's two-sided p, Holm-adjusted p over the "
            f"comparisons with {MIN_SEEDS}+ seeds per arm.\n"
        )
        out.append(
            f"| variant | seeds | steps | FID-LeNet | class accuracy | final loss | FID vs {BASE} |"
        )
        out.append("|---|---|---|---|---|---|---|")
        for v, s in rows.items():
            if v == BASE:
                vs = "(the base)"
            elif BASE not in rows:
                vs = "no base"
            elif v not in tests:
                vs = "no test: one seed on a side"
            else:
                t = tests[v][VERDICT_METRIC]
                vs = f"{t['diff']:+.2f}, {_test_text(t)}: {judgement(t, VERDICT_METRIC)}"
            cells = [_pm(*s[m], *_fmt(m)) for m in METRICS]
            out.append(
                f"| {v} | {s['seeds']} | {s['steps']:.0f} | " + " | ".join(cells) + f" | {vs} |"
            )
        out.append("\n" + family_note(family_size(tests)) + "\n")
    return "\n".join(out).rstrip() + "\n"


# ----------------------------------------------------------------------------- verdicts


def verdict(rows: dict, claim: Claim, tests: dict | None = None) -> tuple[str, dict | None]:
    """A claim's verdict at one budget (its ``rows``) from FID-LeNet, and the test it rests on
    (``compare(rows)[variant]["fid"]``; None where there is none). ``tests``: ``compare(rows)``,
    when already computed."""
    v = claim.variant
    if BASE not in rows or v not in rows:
        return "not in the stored results", None
    s_v, s_b = rows[v], rows[BASE]
    test = (compare(rows) if tests is None else tests).get(v, {}).get(VERDICT_METRIC)
    seeds = f"{s_v['seeds']} vs {s_b['seeds']} seeds"
    means = f"FID-LeNet {_pm(*s_v['fid'], '.2f')} vs {_pm(*s_b['fid'], '.2f')}"
    if min(s_v["seeds"], s_b["seeds"]) < MIN_SEEDS:
        return (
            f"not decided: {seeds} (a verdict needs at least {MIN_SEEDS} per arm; {means})",
            test,
        )
    detail = f"({means}, {seeds}, {_test_text(test)})"
    shown = test["holm"] <= ALPHA
    variant_better = test["diff"] < 0  # lower FID-LeNet is better
    if claim.prediction == "match":
        if not shown:
            return f"no difference shown {detail}", test
        if variant_better:
            return (
                f"{claim.labels[0]} better {detail}: the claim does not hold {SCOPE} at this budget",
                test,
            )
        return f"{claim.labels[1]} better {detail}: the claim holds {SCOPE} at this budget", test
    if not shown:
        return f"not shown at this budget {detail}", test
    if variant_better == (claim.prediction == "variant better"):
        return f"holds {SCOPE} at this budget {detail}", test
    return f"the other way {SCOPE} at this budget {detail}", test


def main_budget(table: dict, kind: str | None = None) -> str | None:
    """The budget (of ``kind``, "steps" or "time", if given) with the most runs: the one the
    claims of that kind are judged at; None when there is none."""
    budgets = [b for b in table if kind is None or budget_kind(b) == kind]
    if not budgets:
        return None
    return max(budgets, key=lambda b: sum(s["seeds"] for s in table[b].values()))


def _judged(table: dict) -> list[tuple[Claim, str | None, str]]:
    """Each of CLAIMS at the main budget of its kind: (claim, budget or None, verdict)."""
    out, tests = [], {}
    for c in CLAIMS:
        budget = main_budget(table, c.kind)
        if budget is None:
            out.append((c, None, f"no stored runs at {KINDS[c.kind]}"))
            continue
        if budget not in tests:
            tests[budget] = compare(table[budget])
        out.append((c, budget, verdict(table[budget], c, tests[budget])[0]))
    return out


def _budget_note(rows: dict) -> str:
    """Under a budget's verdicts: the sample count, the floor, and the family's note."""
    ref = reference_row(rows)
    return (
        f"FID-LeNet on {ref['n']} samples (floor {ref['floor']:.2f}), mean ± SD over seeds. "
        + family_note(family_size(compare(rows)))
    )


def conclusions(table: dict) -> tuple[dict, str]:
    """Each of CLAIMS judged at the main budget of its kind: ({(variant, kind): verdict}, the
    text)."""
    if not table:
        return {}, "No stored runs, so no claim is decided here."
    judged = _judged(table)
    lines = []
    for budget in dict.fromkeys(b for _, b, _ in judged if b is not None):
        lines.append(f"{budget} ({KINDS[budget_kind(budget)]}): {_budget_note(table[budget])}\n")
        for c, b, text in judged:
            if b == budget:
                lines.append(f"[{c.source}] {c.claim} (variant {c.variant}): {text}.")
                if c.paper:
                    lines.append(f"      ({c.paper}.)")
        lines.append("")
    lines += [f"[{c.source}] {c.claim}: {text}." for c, b, text in judged if b is None]
    return {(c.variant, c.kind): text for c, _, text in judged}, "\n".join(lines).rstrip()


def markdown_verdicts(table: dict) -> str:
    """The README's list under the table: per budget kind, each claim, the variant that tests it,
    its verdict and where the course's version differs from the source's."""
    if not table:
        return ""
    judged = _judged(table)
    out = []
    for budget in dict.fromkeys(b for _, b, _ in judged if b is not None):
        out.append(
            f"Verdicts at {budget}, {KINDS[budget_kind(budget)]} "
            f"(`diffussm_lib.evaluation.seeds.conclusions`): {_budget_note(table[budget])}\n"
        )
        for c, b, text in judged:
            if b == budget:
                paper = f" *{c.paper[0].upper() + c.paper[1:]}.*" if c.paper else ""
                out.append(f"- {c.source}: {c.claim} (variant *{c.variant}*): {text}.{paper}")
        out.append("")
    out += [f"- {c.source}: {c.claim}: {text}." for c, b, text in judged if b is None]
    return "\n".join(out).rstrip() + "\n"


def plot(table: dict, path: Path):
    """One panel per budget: FID-LeNet of every seed (dots), the mean (a bar) ± SD (error bar) per
    variant, the base's mean ± SD as a grey band, and the real-vs-real floor dotted; written to
    ``path``, and returned (a matplotlib Figure)."""
    from matplotlib.figure import Figure  # no pyplot: notebook 08 calls this and keeps its backend

    widths = [len(rows) for rows in table.values()]
    fig = Figure(figsize=(1.5 + 0.9 * sum(widths), 4))
    axes = fig.subplots(1, len(table), gridspec_kw={"width_ratios": widths})
    axes = axes if len(table) > 1 else [axes]
    for ax, (budget, rows) in zip(axes, table.items()):
        names = list(rows)
        for i, n in enumerate(names):
            s = rows[n]
            mean, sd = s["fid"]
            ax.bar(i, mean, width=0.6, color="tab:blue" if n != BASE else "grey", alpha=0.35)
            if not math.isnan(sd):
                ax.errorbar(i, mean, yerr=sd, color="k", capsize=4, lw=1)
            ax.plot([i] * s["seeds"], s["per_seed"]["fid"], "k.", ms=8)
        if BASE in rows and rows[BASE]["seeds"] > 1:
            mean, sd = rows[BASE]["fid"]
            ax.axhspan(mean - sd, mean + sd, color="grey", alpha=0.25, lw=0)
        floor = reference_row(rows)["floor"]  # the floor the tables print
        ax.axhline(floor, color="k", ls=":", lw=1, label=f"real-vs-real floor {floor:.2f}")
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right")
        ax.set_title(f"{budget}\n({KINDS.get(budget_kind(budget), '?')})", fontsize=10)
        ax.set_ylabel("FID-LeNet (lower is better)")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig
