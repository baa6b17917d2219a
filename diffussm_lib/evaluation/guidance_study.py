"""The guidance study's results (issue 29, notebook 07): what the guidance scale w trades, measured
on the pretrained model.

    runs (the "runs" of benchmarks/results/guidance.json: {"w W | seed s | sampler S | n N": result})
      -> select        w -> the runs at one N, sampler and step count, sorted by seed
      -> table_rows    per w: mean +- SD over seeds of every metric, then the real-data reference
      -> seconds_rows  per w and machine: the median sampling seconds (they compare only there)
      -> tradeoff      how each metric moves from w = 1 to the largest w (guidance) and from w = 0
                       to w = 1 (the label): a paired t-test over the seeds both ends share (a seed
                       draws the same x_T at every w), Holm's correction over all the tests printed
      -> markdown / plot

A result holds ``fid``, ``floor``, ``class_accuracy``, ``precision``, ``recall``, ``density``,
``coverage`` (each of the last four also as ``real_*``: the N real training images the seed draws,
what a perfect model scores at this N), ``guidance``, ``seed``, ``sampler``, ``steps``, ``n``,
``sample_seconds``, ``threads`` and ``hardware`` (the machine that sampled it).

Left out: the histogram deviation (with class-balanced labels it is nearly implied by class
accuracy) and any test between neighbouring w (the statement tests the ends of the sweep only, so
that the family stays small).
"""

from __future__ import annotations

import math
import statistics
import textwrap
from pathlib import Path

from .precision_recall import DENSITY_COVERAGE_K, PRECISION_RECALL_K
from .sampler_study import nan0
from .stats import fmt_p, holm, mean_sd, paired

MANIFOLD = ("precision", "recall", "density", "coverage")
# (key in a run, column title, name in sentences, format of one value); class accuracy in percent
METRICS = [
    ("fid", "FID-LeNet", "FID-LeNet", "{:.3f}"),
    ("class_accuracy", "class acc. %", "class accuracy (%)", "{:.2f}"),
    ("precision", "precision", "precision", "{:.3f}"),
    ("recall", "recall", "recall", "{:.3f}"),
    ("density", "density", "density", "{:.3f}"),
    ("coverage", "coverage", "coverage", "{:.3f}"),
]
ALPHA = 0.05  # a change counts as shown at a Holm-adjusted p below this
UNKNOWN_MACHINE = "machine not recorded"


def run_id(w: float, seed: int, sampler: str, steps: int, n: int) -> str:
    return f"w {w:g} | seed {seed} | {sampler} {steps} | n {n}"


def value(run: dict, key: str) -> float:
    """A run's number for the tables (class accuracy in percent)."""
    return 100 * run[key] if key == "class_accuracy" else run[key]


def select(runs: dict, n: int, sampler: str, steps: int) -> dict:
    """w -> the stored runs at that w with this N, sampler and steps; sorted by w, then seed."""
    groups: dict = {}
    for r in runs.values():
        if (r["n"], r["sampler"], r["steps"]) == (n, sampler, steps):
            groups.setdefault(r["guidance"], []).append(r)
    return {w: sorted(groups[w], key=lambda r: r["seed"]) for w in sorted(groups)}


def settings(report: dict, n: int, sampler: str, steps: int) -> str:
    """How the runs at one setting were made, in one line (the report's checkpoint and k)."""
    return (
        f"{report.get('checkpoint', '?')} (step {report.get('checkpoint_step', '?')}), "
        f"{sampler} {steps} steps, N = {n} class-balanced samples per run, "
        f"precision / recall k = {report.get('k_pr', PRECISION_RECALL_K)}, "
        f"density / coverage k = {report.get('k_dc', DENSITY_COVERAGE_K)}"
    )


def main_setting(runs: dict) -> tuple[int, str, int]:
    """The (N, sampler, steps) with the most stored runs (the sweep's)."""
    counts: dict = {}
    for r in runs.values():
        key = (r["n"], r["sampler"], r["steps"])
        counts[key] = counts.get(key, 0) + 1
    return max(counts, key=counts.get)


def readme_block(report: dict) -> str:
    """The README's block: the main setting's line, the table and the trade-off."""
    setting = main_setting(report["runs"])
    groups = select(report["runs"], *setting)
    return (
        f"Settings: {settings(report, *setting)}; mean +- SD over seeds.\n\n"
        f"{markdown_table(*table_rows(groups))}\n\n{tradeoff(groups)}"
    )


def cell(values: list, fmt: str) -> str:
    """ "m +- sd" (sample SD), or "m" for one value."""
    m, sd = mean_sd(values)
    return fmt.format(m) + ("" if math.isnan(sd) else " +- " + fmt.format(sd))


def _real(groups: dict) -> list[dict]:
    """One run per seed: each seed's real-data reference (the same at every w)."""
    return list({r["seed"]: r for rs in groups.values() for r in rs}.values())


def table_rows(groups: dict) -> tuple[list, list]:
    """The table as (header, rows of cells): one row per w, then the real-data reference (the floor
    in the FID column, the real training images' precision / recall / density / coverage)."""
    header = ["w", "seeds"] + [title for _, title, _, _ in METRICS]
    rows = [
        [f"{w:g}", str(len(rs))] + [cell([value(r, k) for r in rs], f) for k, _, _, f in METRICS]
        for w, rs in groups.items()
    ]
    real = _real(groups)
    rows.append(
        ["real data", str(len(real)), cell([r["floor"] for r in real], "{:.3f}") + " (floor)", "-"]
        + [cell([r["real_" + k] for r in real], "{:.3f}") for k in MANIFOLD]
    )
    return header, rows


def seconds_rows(groups: dict) -> tuple[list, list]:
    """Sampling seconds as (header, rows): per w, per machine (``hardware`` of the runs), the median
    over that machine's runs and how many there are. Seconds on two machines never share a cell."""
    machines = sorted({r.get("hardware", UNKNOWN_MACHINE) for rs in groups.values() for r in rs})
    header = ["w"] + machines
    rows = []
    for w, rs in groups.items():
        row = [f"{w:g}"]
        for m in machines:
            s = [r["sample_seconds"] for r in rs if r.get("hardware", UNKNOWN_MACHINE) == m]
            row.append(f"{statistics.median(s):.0f} ({len(s)})" if s else "-")
        rows.append(row)
    return header, rows


def text_table(header: list, rows: list) -> str:
    widths = [max(len(x[i]) for x in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(n) for c, n in zip(cells, widths)).rstrip() for cells in [header, *rows]
    )


def markdown_table(header: list, rows: list) -> str:
    def line(cells: list) -> str:
        return "| " + " | ".join(cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header))] + [line(r) for r in rows])


def pairs(groups: dict) -> list[tuple[float, float, str]]:
    """The ends the trade-off compares: the smallest w >= 1 (the conditional model) against the
    largest w (guidance), and w = 0 (no label) against that smallest w (the label)."""
    conditional = [w for w in groups if w >= 1]
    out = []
    if len(conditional) > 1:
        out.append((conditional[0], conditional[-1], "guidance"))
    if 0 in groups and conditional:
        out.append((0.0, conditional[0], "the label"))
    return out


def changes(groups: dict) -> list[dict]:
    """Every (pair of w, metric) of ``pairs``: the means at both ends over all their seeds, and the
    paired t-test (b minus a) over the seeds both ends have (None below 2 shared seeds), with the
    Holm-adjusted p over every test made here."""
    out = []
    for a, b, what in pairs(groups):
        by_seed_a = {r["seed"]: r for r in groups[a]}
        by_seed_b = {r["seed"]: r for r in groups[b]}
        shared = sorted(set(by_seed_a) & set(by_seed_b))
        for key, _, name, fmt in METRICS:
            test = None
            if len(shared) >= 2:
                test = paired(
                    [value(by_seed_b[s], key) for s in shared],
                    [value(by_seed_a[s], key) for s in shared],
                )
            out.append(
                dict(
                    a=a,
                    b=b,
                    what=what,
                    key=key,
                    name=name,
                    fmt=fmt,
                    mean_a=statistics.mean(value(r, key) for r in groups[a]),
                    mean_b=statistics.mean(value(r, key) for r in groups[b]),
                    seeds=len(shared),
                    test=test,
                )
            )
    tested = [c for c in out if c["test"] is not None]
    adjusted = holm([c["test"]["p"] for c in tested], ALPHA)
    for c, q, shown in zip(tested, adjusted["adjusted"], adjusted["rejected"]):
        c.update(holm_p=q, shown=shown)
    return out


def change_text(c: dict) -> str:
    """One change in words: "recall falls from 0.879 to 0.601 (-0.278, paired p = 0.002 over 3
    seeds, Holm p = 0.02: shown)"."""
    fmt, ma, mb = c["fmt"], c["mean_a"], c["mean_b"]
    if mb == ma:
        text = f"{c['name']} stays at {fmt.format(ma)} (+0"
    else:
        way = "rises" if mb > ma else "falls"
        text = f"{c['name']} {way} from {fmt.format(ma)} to {fmt.format(mb)} ({mb - ma:+.3g}"
    if c["test"] is None:
        return text + f"; {c['seeds']} seed(s) at both ends: no test)"
    word = "shown" if c["shown"] else "not shown"
    return (
        text + f", paired {fmt_p(c['test']['p'])} over {c['seeds']} seeds, "
        f"Holm {fmt_p(c['holm_p'])}: {word})"
    )


def tradeoff(groups: dict) -> str:
    """The trade-off statement, computed from the runs."""
    fids = {w: statistics.mean(r["fid"] for r in rs) for w, rs in groups.items()}
    best = min(fids, key=fids.get)
    lines = [f"- FID-LeNet is lowest at w = {best:g} ({fids[best]:.3f}; the mean over seeds)."]
    cs = changes(groups)
    for a, b, what in pairs(groups):
        lines.append(f"- From w = {a:g} to w = {b:g} ({what}):")
        lines += [f"  - {change_text(c)}" for c in cs if (c["a"], c["b"]) == (a, b)]
    tested = sum(c["test"] is not None for c in cs)
    if tested:
        lines.append(
            f"- Shown: Holm-adjusted p < {ALPHA:g} over the {tested} tests above (paired by seed: "
            f"a seed draws the same x_T and the same real images at every w); with 3 seeds a "
            f"paired test has 2 degrees of freedom and sees only large, consistent changes."
        )
    return "\n".join(lines)


def plot(groups: dict, path: Path, title: str) -> None:
    """FID-LeNet with its floor (left); precision, recall, density, coverage and class accuracy
    (right), each against w with error bars of one SD over seeds; dotted: the real-data reference.
    """
    from matplotlib.figure import Figure  # no pyplot: a notebook that calls this keeps its backend

    ws = list(groups)
    real = _real(groups)

    def stats(key: str) -> list[tuple[float, float]]:
        return [mean_sd([value(r, key) for r in groups[w]]) for w in ws]

    fig = Figure(figsize=(12, 5.2))
    left, right = fig.subplots(1, 2)
    fid = stats("fid")
    left.errorbar(ws, [m for m, _ in fid], yerr=[nan0(s) for _, s in fid], marker="o", capsize=3)
    floor = statistics.mean(r["floor"] for r in real)
    left.axhline(floor, color="k", ls=":", lw=1, label=f"real-vs-real floor ({floor:.2f})")
    left.set(xlabel="guidance scale w", ylabel="FID-LeNet (lower is better)", title="FID-LeNet")
    left.legend(fontsize=8)
    curves = [("precision", "o"), ("recall", "s"), ("density", "^"), ("coverage", "D")]
    for key, marker in curves + [("class_accuracy", "v")]:
        s = stats(key)
        scale = 0.01 if key == "class_accuracy" else 1.0  # percent back to a fraction
        line = right.errorbar(
            ws,
            [scale * m for m, _ in s],
            yerr=[scale * nan0(sd) for _, sd in s],
            marker=marker,
            capsize=3,
            label=key.replace("_", " "),
        )
        if key in MANIFOLD:
            ref = statistics.mean(r["real_" + key] for r in real)
            right.axhline(ref, color=line[0].get_color(), ls=":", lw=1)
    right.plot([], [], color="grey", ls=":", lw=1, label="dotted: real images, same N")
    right.set(
        xlabel="guidance scale w",
        ylabel="fraction (density: real balls per sample / k)",
        title="fidelity (precision, density) and variety (recall, coverage)",
    )
    right.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    for ax in (left, right):
        ax.set_xticks(ws)
        ax.set_xticklabels([f"{w:g}" for w in ws], fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(textwrap.fill(title, 150), fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def markdown(out_name: str, settings_line: str, groups: dict, figure: str | None) -> str:
    """The report from the stored runs: how they were made, the table, the seconds per machine, the
    trade-off, the figure (``figure``: its file name beside the report, or None)."""
    threads = sorted({r["threads"] for rs in groups.values() for r in rs})
    fig = f"\n![the metrics against w]({figure})\n" if figure else ""
    return f"""# Guidance measured (issue 29)

Written by `python benchmarks/bench_guidance.py` from the runs stored in `{out_name}`, after every
run (`--table` rewrites it, `--plot` draws the figure).

Settings: {settings_line}; mean +- SD over seeds (sample SD), each run sampled with its own seed.

FID-LeNet, precision, recall, density and coverage are measured on the fixed LeNet's features
against the 10,000 MNIST test images. The "real data" row holds the real-vs-real floor (N training
images, drawn with the run's seed, against the test set) and the precision, recall, density and
coverage of those N real images: what real data (a perfect model) scores at this N; all five depend
on N. Class accuracy: the fraction the LeNet reads as the digit asked for (at w = 0 the label is
ignored, so chance level).

{markdown_table(*table_rows(groups))}

Trade-off, computed from the runs:

{tradeoff(groups)}
{fig}
Sampling seconds per run (median over runs, the number of runs in brackets), on each machine that
sampled, torch threads {", ".join(map(str, threads))}; other processes often ran beside them, so
they compare only roughly, and only within one machine (w = 0 and 1 take one forward pass per
step, other w two, in one batch of 2B):

{markdown_table(*seconds_rows(groups))}
"""
