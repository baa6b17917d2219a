"""DiffuSSM against DiT on the CPU recipe (issue 29, notebook 07): the rates, the budgets, the verdict.

    runs (the "runs" of benchmarks/results/backbones.json: {run_id(...): result})
      -> best_rate         a model's learning rate of lowest FID-LeNet in the sweep (one seed)
      -> curve_steps       where a run is evaluated along the way (fractions of its steps)
      -> equal_time_steps  a model's steps in the time another takes for S steps (calibrated speeds)
      -> budgets           the two comparisons at S: equal steps, and equal training time
      -> decide            Welch's two-sided t-test of DiT minus DiffuSSM (FID-LeNet, final loss) per
                           budget, Holm-adjusted over every comparison made, and a verdict in words
      -> sweep_table / budget_table / flops_table   the report's markdown
      -> plot              loss and FID-LeNet against steps and against (calibrated) seconds

A result holds ``model`` ("diffussm" or "dit"), ``lr``, ``seed``, ``steps``, ``threads``,
``train_seconds``, ``images_per_sec``, ``precision``, ``final_loss`` (mean of the last 10 logged
losses), ``eval`` (the final ``EvalReport`` dict of the EMA weights), ``curve`` (evaluations along
the run: ``{step, train_seconds, n, fid, floor, class_accuracy, ...}``) and ``loss_curve``
(``[step, train_seconds, loss]`` per log record). A calibration holds each model's training
``images_per_sec`` on the machine (interleaved rounds, median).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from .speedrun import pm
from .stats import holm, mean_sd, welch

MODELS = {"diffussm": "DiffuSSM", "dit": "DiT"}  # key -> name; DiT minus DiffuSSM in every test
MIN_SEEDS = 3  # seeds per model before a comparison is decided
MIN_RATES = 3  # learning rates per model the sweep should have
ALPHA = 0.05  # family-wise level of the Holm-adjusted tests
METRICS = {"fid": "FID-LeNet", "final_loss": "final training loss"}


def threads_label(threads: int) -> str:
    return f"{threads} thread{'s' if threads != 1 else ''}"


def run_id(model: str, lr: float, seed: int, steps: int, threads: int) -> str:
    """The one name of a run: same settings, same id, same run folder (the sweep's seed-0 run at
    the best rate is the equal-steps comparison's seed 0)."""
    return f"{model} | lr {lr:g} | seed {seed} | {steps} steps, {threads_label(threads)}"


def select(runs: dict, **want) -> list[dict]:
    """The stored results whose fields equal ``want`` (e.g. model="dit", steps=3000), by seed."""
    return sorted(
        (r for r in runs.values() if all(r.get(k) == v for k, v in want.items())),
        key=lambda r: (r["seed"], r["lr"]),
    )


def value(result: dict, metric: str) -> float:
    """``fid`` (the final evaluation's FID-LeNet) or ``final_loss`` of a result."""
    return result["eval"]["fid"] if metric == "fid" else result[metric]


def sweep_runs(runs: dict, model: str, steps: int, threads: int, seed: int = 0) -> list[dict]:
    """The sweep of ``model``: its runs of ``seed`` at ``steps``, one per learning rate (by rate)."""
    return sorted(
        select(runs, model=model, steps=steps, threads=threads, seed=seed), key=lambda r: r["lr"]
    )


def best_rate(runs: dict, model: str, steps: int, threads: int, seed: int = 0) -> float | None:
    """The sweep's learning rate of lowest final FID-LeNet (a tie: the lower rate); None without
    runs."""
    rows = sweep_runs(runs, model, steps, threads, seed)
    return min(rows, key=lambda r: (value(r, "fid"), r["lr"]))["lr"] if rows else None


def curve_steps(steps: int, fractions) -> list[int]:
    """The steps at which a run of ``steps`` updates is evaluated along the way: ``round(f * steps)``
    for each fraction f in (0, 1], at least 1, sorted, without repeats."""
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad:
        raise ValueError(f"curve fractions must lie in (0, 1], got {bad}")
    return sorted({max(1, round(f * steps)) for f in fractions})


def equal_time_steps(steps: int, ref_images_per_sec: float, images_per_sec: float) -> int:
    """The steps a model training at ``images_per_sec`` makes in the time a reference model at
    ``ref_images_per_sec`` takes for ``steps`` (same batch): ``round(steps * ips / ref_ips)``, >= 1."""
    if not (ref_images_per_sec > 0 and images_per_sec > 0):
        raise ValueError(
            f"speeds must be > 0, got {ref_images_per_sec} and {images_per_sec} images/s"
        )
    return max(1, round(steps * images_per_sec / ref_images_per_sec))


def budgets(
    runs: dict, steps: int, threads: int, calibration: dict | None, ref: str = "diffussm"
) -> list[dict]:
    """The comparisons at S = ``steps``, each model at its best sweep rate: "equal steps" (S each)
    and, with a ``calibration`` ({model: {"images_per_sec": ...}}), "equal time" (``ref`` at S, the
    other at ``equal_time_steps``). Each: {"budget", "steps": {model: n}, "lr": {model: rate},
    "runs": {model: [results, by seed]}}. Empty when a model has no sweep."""
    lr = {m: best_rate(runs, m, steps, threads) for m in MODELS}
    if None in lr.values():
        return []
    plans = [("equal steps", {m: steps for m in MODELS})]
    if calibration and all(m in calibration for m in MODELS):
        plans.append(
            (
                "equal time",
                {
                    m: equal_time_steps(
                        steps,
                        calibration[ref]["images_per_sec"],
                        calibration[m]["images_per_sec"],
                    )
                    for m in MODELS
                },
            )
        )
    return [
        {
            "budget": name,
            "steps": n,
            "lr": lr,
            "runs": {
                m: select(runs, model=m, lr=lr[m], steps=n[m], threads=threads) for m in MODELS
            },
        }
        for name, n in plans
    ]


def decide(comparisons: list[dict], alpha: float = ALPHA) -> list[dict]:
    """Every test of DiT minus DiffuSSM made on ``comparisons`` (``budgets``' list): per budget and
    metric (FID-LeNet, final loss) Welch's two-sided t-test where both models have ``MIN_SEEDS``
    seeds, else none ("not decided"); the p-values of the tests made are Holm-adjusted together.
    Returns [{"budget", "metric", "seeds": {model: n}, "test": welch dict or None, "adjusted": p or
    None, "family": number of tests made}], in the order of ``comparisons`` then ``METRICS``."""
    out = []
    for c in comparisons:
        for metric in METRICS:
            vals = {m: [value(r, metric) for r in c["runs"][m]] for m in MODELS}
            made = all(len(v) >= MIN_SEEDS for v in vals.values())
            out.append(
                {
                    "budget": c["budget"],
                    "metric": metric,
                    "seeds": {m: len(v) for m, v in vals.items()},
                    "test": welch(vals["dit"], vals["diffussm"]) if made else None,
                    "adjusted": None,
                }
            )
    made = [d for d in out if d["test"] is not None]
    for d, q in zip(made, holm([d["test"]["p"] for d in made], alpha)["adjusted"]):
        d["adjusted"] = q
    for d in out:
        d["family"] = len(made)
    return out


def budget_words(c: dict, threads: int) -> str:
    """'S steps each (equal steps)' or 'DiffuSSM's training time for S steps (DiT: S' steps)'."""
    n = c["steps"]
    if c["budget"] == "equal steps":
        return f"{n['diffussm']} steps each (equal steps)"
    return (
        f"DiffuSSM's training time for {n['diffussm']} steps, {threads_label(threads)} "
        f"(DiT: {n['dit']} steps; equal time)"
    )


def verdict(d: dict, c: dict, threads: int, alpha: float = ALPHA) -> str:
    """One test of ``decide`` in words, naming its budget and models; "lower" is better for both
    metrics. A p above ``alpha`` says "no difference shown", never "equal"."""
    head = f"For this MNIST recipe at {budget_words(c, threads)}, {METRICS[d['metric']]}"
    if d["test"] is None:
        return (
            f"{head}: not decided ({d['seeds']['diffussm']} DiffuSSM and {d['seeds']['dit']} DiT "
            f"seeds; {MIN_SEEDS} per model needed)."
        )
    t, q = d["test"], d["adjusted"]
    stats = (
        f"DiT minus DiffuSSM {t['diff']:+.4g}, Welch p = {t['p']:.3g}, Holm-adjusted p = {q:.3g} "
        f"over {d['family']} comparison{'s' if d['family'] != 1 else ''}"
    )
    if q < alpha:
        better, worse = ("DiT", "DiffuSSM") if t["diff"] < 0 else ("DiffuSSM", "DiT")
        return f"{head}: {better} is better than {worse} ({stats})."
    return f"{head}: no difference shown ({stats}; not shown is not equal)."


# ---------------------------------------------------------------------------- markdown tables
def machine(result: dict) -> str:
    """The CPU (or GPU) a run trained on, short: "CPU AMD EPYC, 1 torch threads" -> "AMD EPYC"."""
    name = result.get("hardware", "unknown machine").split(",")[0].removeprefix("CPU ")
    return name.replace("(R)", "").replace(" Processor", "")


def seconds_cells(rs: list[dict]) -> str:
    """The mean measured training seconds and images/s of ``rs`` and their machine: seconds are
    compared within one machine only, so runs of several machines get no mean."""
    machines = sorted({machine(r) for r in rs})
    if len(machines) > 1:
        return f"machines differ | | {', '.join(machines)}"
    return (
        f"{statistics.mean(r['train_seconds'] for r in rs):.0f} | "
        f"{statistics.mean(r['images_per_sec'] for r in rs):.0f} | {machines[0]}"
    )


def sweep_table(runs: dict, steps: int, threads: int) -> str:
    """The sweep at ``steps``: every model's rates (seed 0 only), the best marked."""
    lines = [
        "| model | lr | FID-LeNet (floor) | class acc. | final loss | train s | images/s | machine | "
        "precision |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for m, name in MODELS.items():
        rows = sweep_runs(runs, m, steps, threads)
        best = best_rate(runs, m, steps, threads)
        for r in rows:
            ev = r["eval"]
            mark = " **best**" if r["lr"] == best else ""
            lines.append(
                f"| {name} | {r['lr']:g}{mark} | {ev['fid']:.2f} ({ev['floor']:.2f}) | "
                f"{100 * ev['class_accuracy']:.1f}% | {r['final_loss']:.4f} | "
                f"{seconds_cells([r])} | {r['precision']} |"
            )
        if len(rows) < MIN_RATES:
            notes.append(
                f"{name} has {len(rows)} rate{'s' if len(rows) != 1 else ''} "
                f"(the study asks for at least {MIN_RATES})."
            )
    return "\n".join(lines + ([""] + notes if notes else []))


def budget_table(c: dict) -> str:
    """One budget: per model its rate, steps, seeds, FID-LeNet and final loss (mean +- SD, worst
    seed), class accuracy, measured training seconds and images/s (means, within one machine),
    the machine, precision."""
    lines = [
        "| model | lr | steps | seeds | FID-LeNet (floor) | worst | class acc. | final loss | worst "
        "| train s | images/s | machine | precision |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, name in MODELS.items():
        rs = c["runs"][m]
        if not rs:
            lines.append(f"| {name} | {c['lr'][m]:g} | {c['steps'][m]} | 0 | | | | | | | | | |")
            continue
        f, fsd = mean_sd([value(r, "fid") for r in rs])
        lo, losd = mean_sd([value(r, "final_loss") for r in rs])
        a, asd = mean_sd([100 * r["eval"]["class_accuracy"] for r in rs])
        lines.append(
            f"| {name} | {c['lr'][m]:g} | {c['steps'][m]} | {len(rs)} | {pm(f, fsd)} "
            f"({statistics.mean(r['eval']['floor'] for r in rs):.2f}) | "
            f"{max(value(r, 'fid') for r in rs):.2f} | {pm(a, asd, '.1f', '%')} | "
            f"{pm(lo, losd, '.4f')} | {max(value(r, 'final_loss') for r in rs):.4f} | "
            f"{seconds_cells(rs)} | {'/'.join(sorted({r['precision'] for r in rs}))} |"
        )
    return "\n".join(lines)


def study_lines(
    runs: dict, steps: int, threads: int, calibration: dict | None, head: str = "###"
) -> list:
    """The markdown of one study (S = ``steps``, ``threads`` per run): the sweep, each budget's
    table, then the verdicts; ``head`` is the heading level of its parts."""
    lines = [
        f"{head} Learning-rate sweep (seed 0 only: one seed per rate; {steps} steps each; the best "
        "rate has the lowest final FID-LeNet)",
        "",
        sweep_table(runs, steps, threads),
    ]
    comps = budgets(runs, steps, threads, calibration)
    for c in comps:
        lines += ["", f"{head} At {budget_words(c, threads)}", "", budget_table(c)]
    lines += ["", f"{head} Verdicts (DiT minus DiffuSSM; lower is better for both metrics)", ""]
    for d in decide(comps):
        c = next(c for c in comps if c["budget"] == d["budget"])
        lines.append("- " + verdict(d, c, threads))
    return lines


def readme_block(report: dict) -> str:
    """The README's block: every study of ``report`` (``study_lines``, level-4 headings), then what
    the FLOP split of the recipe says."""
    runs, cals = report.get("runs", {}), report.get("calibration", {})
    lines = []
    for steps, threads in groups(runs):
        lines += study_lines(runs, steps, threads, cals.get(threads_label(threads)), "####") + [""]
    flops = {k: v for k, v in report.get("flops", {}).items() if k.startswith("L = 64")}
    return "\n".join(lines + [mechanism(flops)] if flops else lines).strip()


def flops_table(flops: dict) -> str:
    """``flops``: {setting: {model: {"attention", "ssm", "dense", "total"}}} (forward FLOPs per
    image) -> a markdown table in MFLOP with each part's share of the model's total."""
    lines = [
        "| setting | model | attention (QK^T, AV) | SSM | dense layers | total |",
        "|---|---|---|---|---|---|",
    ]
    for setting, models in flops.items():
        for name, s in models.items():
            cells = [
                f"{s[k] / 1e6:.1f} ({100 * s[k] / s['total']:.0f}%)"
                for k in ("attention", "ssm", "dense")
            ]
            lines.append(f"| {setting} | {name} | {' | '.join(cells)} | {s['total'] / 1e6:.1f} |")
    return "\n".join(lines)


def mechanism(flops: dict) -> str:
    """What the FLOP split says, per setting, in words (numbers from ``flops``)."""
    lines = []
    for setting, s in flops.items():
        a, b = s["DiffuSSM"], s["DiT"]
        lines.append(
            f"- {setting}: DiffuSSM's forward costs {a['total'] / b['total']:.2f}x DiT's FLOPs per "
            f"image. DiT's attention products are {100 * b['attention'] / b['total']:.0f}% of its "
            f"FLOPs; without them DiT would still cost {(b['total'] - b['attention']) / 1e6:.1f} "
            f"MFLOP, {(b['total'] - b['attention']) / a['total']:.2f}x DiffuSSM's total. Dense layers: "
            f"DiffuSSM {a['dense'] / 1e6:.1f}, DiT {b['dense'] / 1e6:.1f} MFLOP (the hourglass runs "
            f"most of them on J = L/M tokens); DiffuSSM's SSM {100 * a['ssm'] / a['total']:.0f}% of "
            "its FLOPs."
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- curves and the figure
def groups(runs: dict) -> list[tuple[int, int]]:
    """(steps, threads) of every sweep: both models have seed-0 runs there."""
    have = {
        m: {(r["steps"], r["threads"]) for r in runs.values() if r["model"] == m and r["seed"] == 0}
        for m in MODELS
    }
    return sorted(have["diffussm"] & have["dit"])


def curve_mean(series: list[list[tuple[float, float, float]]]) -> tuple[list, list, list]:
    """Per-seed series of (step, seconds, y) -> (steps, mean seconds, mean y) at the steps every
    seed has."""
    common = set.intersection(*[{p[0] for p in s} for s in series])
    by = [{p[0]: p for p in s} for s in series]
    xs = sorted(common)
    return (
        xs,
        [statistics.mean(b[x][1] for b in by) for x in xs],
        [statistics.mean(b[x][2] for b in by) for x in xs],
    )


def seconds_of(run: dict, cal: dict | None, model: str):
    """(step, measured seconds) -> the seconds the plots put on their time axis: with a calibration,
    step x batch / the model's calibrated images/s (the time on the calibration's machine, the
    one the equal-time budget is defined on, whatever machine ran the steps and however loaded it
    was); without one, the measured seconds."""
    if not cal:
        return lambda step, measured: measured
    rate = cal[model]["images_per_sec"] / run["config"]["train"]["batch_size"]  # steps per second
    return lambda step, measured: step / rate


def plot(report: dict, steps: int, threads: int, path: Path) -> None:
    """2 x 2 panels: loss against steps and seconds, FID-LeNet (curve points) against steps and
    seconds; each arm's seeds as thin lines, their mean bold."""
    from matplotlib.figure import Figure  # no pyplot: a notebook that calls this keeps its backend
    from matplotlib.ticker import FormatStrFormatter

    runs = report.get("runs", {})
    cal = report.get("calibration", {}).get(threads_label(threads))
    comps = budgets(runs, steps, threads, cal)
    if not comps:
        raise ValueError(
            f"plot: no sweep of both models at {steps} steps, {threads_label(threads)}"
        )
    arms = [("diffussm", comps[0], "-"), ("dit", comps[0], "-")]
    if len(comps) > 1 and comps[1]["steps"]["dit"] != comps[0]["steps"]["dit"]:
        arms.append(("dit", comps[1], "--"))
    colours = {"diffussm": "tab:blue", "dit": "tab:red"}
    fig = Figure(figsize=(11, 8))
    axes = fig.subplots(2, 2)
    ns = set()
    for m, c, style in arms:
        rs = c["runs"][m]
        if not rs:
            continue
        label = f"{MODELS[m]} lr {c['lr'][m]:g}, {c['steps'][m]} steps ({len(rs)} seed{'s' if len(rs) > 1 else ''})"
        secs = seconds_of(rs[0], cal, m)
        loss = [[(p[0], secs(p[0], p[1]), p[2]) for p in r["loss_curve"]] for r in rs]
        n = max((p["n"] for r in rs for p in r["curve"]), default=None)
        fid = [
            [
                (p["step"], secs(p["step"], p["train_seconds"]), p["fid"])
                for p in r["curve"]
                if p["n"] == n
            ]
            for r in rs
        ]
        fid = [f for f in fid if f]
        ns.add(n)
        for row, series, marker in ((0, loss, "." if len(loss[0]) < 5 else None), (1, fid, "o")):
            if not series:
                continue
            for col in (0, 1):
                ax = axes[row][col]
                for s in series:
                    ax.plot(
                        [p[col] for p in s],
                        [p[2] for p in s],
                        style,
                        color=colours[m],
                        lw=0.7,
                        alpha=0.35,
                        marker=marker,
                        ms=3,
                    )
                xs, secs, ys = curve_mean(series)
                ax.plot(
                    xs if col == 0 else secs,
                    ys,
                    style,
                    color=colours[m],
                    lw=2,
                    marker=marker,
                    label=label if (row, col) == (0, 0) else None,
                )
    first = comps[0]["runs"]["diffussm"] or comps[0]["runs"]["dit"]
    cfg = first[0]["config"] if first else None
    for row, name in enumerate(
        (
            "training loss" + (f" (mean of {cfg['train']['log_every']} steps)" if cfg else ""),
            f"FID-LeNet (N = {', '.join(str(n) for n in sorted(ns - {None}))})",
        )
    ):
        seconds_axis = (
            f"training seconds at the calibrated speed\n({cal['hardware']})"
            if cal
            else "training seconds (measured)"
        )
        for col, x in enumerate(("steps", seconds_axis)):
            ax = axes[row][col]
            ax.set_xlabel(x)
            ax.set_ylabel(name)
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
            ax.tick_params(axis="y", which="minor", labelsize=7)
            ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=8)
    tokens = (
        f" (L = {(cfg['model']['image_size'] // cfg['model']['patch_size']) ** 2})" if cfg else ""
    )
    fig.suptitle(
        f"DiffuSSM vs DiT, CPU recipe{tokens}, {threads_label(threads)} per run: bold = mean over "
        "seeds, thin = each seed; dashed = DiT at DiffuSSM's time",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
