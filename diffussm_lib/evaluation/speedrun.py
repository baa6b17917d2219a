"""Results of the CPU training recipe over seeds (issue 24, notebook 05): tables and the target verdict.

    runs (the "runs" of benchmarks/results/speedrun.json: {"arm | seed s | budget": result})
      -> tables          one markdown table per budget: each arm's FID-LeNet and class accuracy at each
                         evaluation (EMA at each guidance scale, live weights), mean +- SD over seeds,
                         the worst seed, and a Welch t-test of its FID against the recipe's
      -> target_summary  the recipe at its longest time budget against the target, in words
      -> lever_verdicts  each arm against the recipe at the same budget: what the test shows, in words
      -> recipe_changes  the recipe against its earlier forms at the same time budget, in words

A budget reads "1500 steps, 1 thread" or "20 min, 2 threads", followed by the config keys the runs
changed in every arm (``bench_speedrun.py --base-set``): "20 min, 2 threads, train.lr=0.001" holds
runs of the recipe with lr 1e-3, the recipe before it moved to 2e-3 (each run stores its config).

A result holds ``arm``, ``seed``, ``steps``, ``images``, ``images_per_sec``, ``precision``, ``threads``,
``hardware`` and ``eval``: {"ema w=1": EvalReport dict, ..., "live w=1": ...}.
"""

from __future__ import annotations

import statistics

from .seeds import budget_of
from .stats import fmt_p, mean_sd, paired, welch


def _eval_order(key: str) -> tuple:
    """EMA evaluations first, each by guidance scale: "ema w=1", "ema w=1.25", ..., "live w=1"."""
    return key.startswith("live"), float(key.split("=")[1])


def pm(mean: float, sd: float, fmt: str = ".2f", unit: str = "") -> str:
    """ "mean +- sd", or "mean (1 seed)" when there is no SD; ``unit`` follows the mean."""
    return f"{mean:{fmt}}{unit} (1 seed)" if sd != sd else f"{mean:{fmt}}{unit} +- {sd:{fmt}}"


def by_budget(runs: dict) -> dict:
    """{budget: {arm: [result, ...]}}: the stored runs grouped by budget, then by arm (seeds in a list)."""
    out: dict = {}
    for rid, r in runs.items():
        out.setdefault(budget_of(rid), {}).setdefault(r["arm"], []).append(r)
    return out


def tables(runs: dict, base_arm: str = "recipe") -> str:
    """One markdown table per budget: each arm's FID-LeNet and class accuracy (mean +- SD over seeds,
    the worst seed), and a Welch t-test of its FID against ``base_arm``'s at the same budget and scale."""
    out = []
    for budget, arms in by_budget(runs).items():
        keys = sorted({k for rs in arms.values() for r in rs for k in r["eval"]}, key=_eval_order)
        out.append(f"### {budget}\n")
        out.append(
            "| arm | seeds | steps | images/s | eval | FID-LeNet (floor) | worst | class acc. | "
            f"vs {base_arm}: diff, Welch p |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|")
        for arm, rs in sorted(arms.items(), key=lambda kv: (kv[0] != base_arm, kv[0])):
            for i, k in enumerate(keys):
                ev = [r["eval"][k] for r in rs if k in r["eval"]]
                if not ev:
                    continue
                f, fsd = mean_sd([e["fid"] for e in ev])
                a, asd = mean_sd([100 * e["class_accuracy"] for e in ev])
                floor = statistics.mean(e["floor"] for e in ev)
                test = ""
                base = [r["eval"][k]["fid"] for r in arms.get(base_arm, []) if k in r["eval"]]
                if arm != base_arm and len(base) >= 2 and len(ev) >= 2:
                    t = welch([e["fid"] for e in ev], base)
                    test = f"{t['diff']:+.2f}, {fmt_p(t['p'])}"
                head = (
                    (
                        f"| {arm} | {len(rs)} | {statistics.mean(r['steps'] for r in rs):.0f} | "
                        f"{statistics.mean(r['images_per_sec'] for r in rs):.0f} |"
                    )
                    if i == 0
                    else "| | | | |"
                )
                out.append(
                    f"{head} {k} | {pm(f, fsd)} ({floor:.2f}) | {max(e['fid'] for e in ev):.2f} | "
                    f"{pm(a, asd, '.1f', '%')} | {test} |"
                )
        out.append("")
    return "\n".join(out)


TARGET = (
    6.0,
    0.97,
)  # FID-LeNet <= 6 and class accuracy >= 97% at one guidance scale (mean over seeds)
STRETCH = (4.0, 0.98)


def base_keys(budget: str) -> list[str]:
    """The config keys a budget's runs changed in every arm: "20 min, 2 threads, train.lr=0.001" ->
    ["train.lr=0.001"]; [] for the recipe as it is."""
    return budget.split(", ")[2:]


def summary_budget(runs: dict, arm: str = "recipe") -> str | None:
    """The budget ``target_summary`` judges ``arm`` at: its longest time budget ("20 min, ..."), and
    among equal times the one with the most threads per run (a student's single run); budgets with
    changed keys (earlier forms of the recipe) do not count. None if none."""
    timed = {
        rid: r
        for rid, r in runs.items()
        if r["arm"] == arm
        and budget_of(rid).split(",")[0].endswith(" min")
        and not base_keys(budget_of(rid))
    }
    if not timed:
        return None
    return max(
        {budget_of(rid) for rid in timed},
        key=lambda b: (
            float(b.split()[0]),
            max(r["threads"] for rid, r in timed.items() if budget_of(rid) == b),
        ),
    )


def target_summary(runs: dict, arm: str = "recipe") -> str:
    """The target verdict for ``arm`` at its longest time budget: per EMA guidance scale the mean +- SD
    over seeds and the worst seed, then whether one scale meets the target (and the stretch)."""
    budget = summary_budget(runs, arm)
    if budget is None:
        return f"no timed runs of {arm!r} stored"
    rs = [r for rid, r in runs.items() if r["arm"] == arm and budget_of(rid) == budget]
    settings = {
        f"{e['n']:,} class-balanced samples per run, {e['sampler'].upper()} {e['steps']} steps"
        for r in rs
        for e in r["eval"].values()
    }
    lines = [
        f"{arm} at {budget} of training time per run, {len(rs)} seed{'s' if len(rs) > 1 else ''}; "
        f"{'; '.join(sorted({r['hardware'] for r in rs}))}; precision "
        f"{'/'.join(sorted({r['precision'] for r in rs}))}; "
        f"{statistics.mean(r['images_per_sec'] for r in rs):.0f} images/s, "
        f"{statistics.mean(r['images'] for r in rs):,.0f} images seen (mean over seeds); "
        f"FID-LeNet on {'; '.join(sorted(settings))}, each run sampled with its own seed",
        "",
    ]
    meets = []
    for k in sorted({k for r in rs for k in r["eval"]}, key=_eval_order):
        ev = [r["eval"][k] for r in rs if k in r["eval"]]
        f, fsd = mean_sd([e["fid"] for e in ev])
        a, asd = mean_sd([e["class_accuracy"] for e in ev])
        worst_f, worst_a = max(e["fid"] for e in ev), min(e["class_accuracy"] for e in ev)
        lines.append(
            f"- {k}: FID-LeNet {pm(f, fsd)} (worst seed {worst_f:.2f}; floor "
            f"{statistics.mean(e['floor'] for e in ev):.2f}), class accuracy {pm(100 * a, 100 * asd, '.1f', '%')} "
            f"(worst seed {100 * worst_a:.1f}%)"
        )
        if k.startswith("ema"):
            meets.append((k, f, a))
    for k in sorted({k for r in rs for k in r["eval"] if k.startswith("live")}, key=_eval_order):
        ema = "ema" + k[len("live") :]
        both = [r for r in rs if k in r["eval"] and ema in r["eval"]]
        if len(both) >= 2:
            t = paired([r["eval"][k]["fid"] for r in both], [r["eval"][ema]["fid"] for r in both])
            lines.append(
                f"- live minus EMA weights at {k[len('live ') :]}, same runs: FID-LeNet {t['diff']:+.2f} "
                f"(paired t-test over {len(both)} seeds, {fmt_p(t['p'])})"
            )
    ok = [(k, f, a) for k, f, a in meets if f <= TARGET[0] and a >= TARGET[1]]
    stretch = [(k, f, a) for k, f, a in ok if f <= STRETCH[0] and a >= STRETCH[1]]
    lines.append("")
    if ok:
        lines.append(
            f"Target (FID-LeNet <= {TARGET[0]:g} and class accuracy >= {100 * TARGET[1]:g}% at one scale, "
            f"mean over seeds): met at {', '.join(k for k, _, _ in ok)}"
            + (
                f"; stretch (<= {STRETCH[0]:g}, >= {100 * STRETCH[1]:g}%) met at "
                f"{', '.join(k for k, _, _ in stretch)}."
                if stretch
                else "; stretch not met."
            )
        )
    else:
        gap = min(
            meets,
            key=lambda m: (
                max(m[1] - TARGET[0], 0) / TARGET[0] + max(TARGET[1] - m[2], 0) / (1 - TARGET[1])
            ),
        )
        lines.append(
            f"Target (FID-LeNet <= {TARGET[0]:g} and class accuracy >= {100 * TARGET[1]:g}% at one scale, "
            f"mean over seeds): not met. Closest: {gap[0]}, FID-LeNet {gap[1]:.2f} "
            f"({gap[1] - TARGET[0]:+.2f} against {TARGET[0]:g}), class accuracy {100 * gap[2]:.1f}% "
            f"({100 * (gap[2] - TARGET[1]):+.1f} points against {100 * TARGET[1]:g}%)."
        )
    return "\n".join(lines)


ALPHA = 0.05  # a difference is "shown" when Welch's two-sided p is below this


def verdict(test: dict) -> str:
    """A FID-LeNet test in words: "lower FID-LeNet, shown" / "higher ..." at p < ALPHA, else "no
    difference shown" (a p above ALPHA never says "equal")."""
    if test["p"] >= ALPHA:
        return "no difference shown"
    return ("lower" if test["diff"] < 0 else "higher") + " FID-LeNet, shown"


def shared_ema_keys(a: list[dict], b: list[dict]) -> list[str]:
    """The EMA evaluations ("ema w=1.25", ...) that every run of both groups has, by guidance scale."""
    every = a + b
    keys = {k for r in every for k in r["eval"] if k.startswith("ema")}
    return sorted((k for k in keys if all(k in r["eval"] for r in every)), key=_eval_order)


def compare_at(a: list[dict], b: list[dict], key: str) -> tuple[dict, dict]:
    """Welch's two-sided tests of ``a`` minus ``b`` at the evaluation ``key``: FID-LeNet, and class
    accuracy in percentage points."""
    fid = welch([r["eval"][key]["fid"] for r in a], [r["eval"][key]["fid"] for r in b])
    acc = welch(
        [100 * r["eval"][key]["class_accuracy"] for r in a],
        [100 * r["eval"][key]["class_accuracy"] for r in b],
    )
    return fid, acc


def lever_verdicts(runs: dict, base_arm: str = "recipe") -> str:
    """For every budget where ``base_arm`` has at least 2 seeds, each other arm with at least 2 seeds
    against it at the first EMA evaluation both have: the FID-LeNet and class-accuracy differences
    (arm minus base, means over seeds), Welch's p for the FID, and the verdict: lower / higher FID
    "shown" (p < ALPHA) or "not shown" (a p above ALPHA never says "equal")."""
    out = []
    for budget, arms in by_budget(runs).items():
        base = arms.get(base_arm, [])
        lines = []
        for arm, rs in sorted(arms.items()):
            if arm == base_arm or len(rs) < 2 or len(base) < 2:
                continue
            keys = shared_ema_keys(rs, base)
            if not keys:
                continue
            k = keys[0]
            t, ta = compare_at(rs, base, k)
            word = verdict(t)
            lines.append(
                f"- {arm} ({len(rs)} vs {len(base)} seeds, {k}): FID-LeNet {t['diff']:+.2f}, class accuracy "
                f"{ta['diff']:+.1f} points; Welch {fmt_p(t['p'])}: {word}"
            )
        if lines:
            out += (
                [
                    f"Levers at {', '.join(budget.split(', ')[:2])}, each against the {base_arm}"
                    + (f" with {', '.join(base_keys(budget))}" if base_keys(budget) else "")
                    + f" (arm minus {base_arm}, means over seeds; "
                    f'"shown" at p < {ALPHA:g}):',
                    "",
                ]
                + lines
                + [""]
            )
    return "\n".join(out).rstrip()


def recipe_changes(runs: dict, arm: str = "recipe") -> str:
    """``arm`` at its summary budget against each earlier form of it stored at the same time budget
    ("20 min, 2 threads" against "20 min, 2 threads, train.lr=0.001"), both with at least 2 seeds,
    at every EMA evaluation both have: the FID-LeNet and class-accuracy differences (now minus then),
    Welch's p of each, and the verdict on the FID as in ``lever_verdicts``."""
    budget = summary_budget(runs, arm)
    if budget is None:
        return ""
    groups = by_budget(runs)
    now = groups[budget].get(arm, [])
    lines = []
    for other, arms in groups.items():
        then = arms.get(arm, [])
        if not other.startswith(budget + ", ") or len(then) < 2 or len(now) < 2:
            continue
        shared = shared_ema_keys(now, then)
        if not shared:
            continue
        lines.append(
            f"The {arm} against its earlier form with {', '.join(base_keys(other))}, both at "
            f"{budget} (now minus then, means over seeds):"
        )
        for k in shared:
            t, ta = compare_at(now, then, k)
            word = verdict(t)
            lines.append(
                f"- {k} ({len(now)} vs {len(then)} seeds): FID-LeNet {t['diff']:+.2f} (Welch "
                f"{fmt_p(t['p'])}: {word}), class accuracy {ta['diff']:+.1f} points ({fmt_p(ta['p'])})"
            )
    return "\n".join(lines)
