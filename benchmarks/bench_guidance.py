"""Guidance measured (issue 29): what the guidance scale w trades, on the pretrained checkpoint.

    python benchmarks/bench_guidance.py --threads 1 --plot   # the stored sweep (5-6 h, see below)
    python benchmarks/bench_guidance.py --table --plot       # the stored runs: table, figure
    python benchmarks/bench_guidance.py --num-samples 20 --seeds 0 --guidance 1 2 --steps 2 \\
        --out /tmp/g.json                                    # a smoke run

Every guidance scale w (``--guidance``; default 0, 1, 1.25, 1.5, 2, 3, 4: 0 is the unconditional
model, the null label; 1 the plain conditional one; above 1 guided) samples ``--num-samples``
class-balanced digits (every class equally often) from the EMA weights of ``--checkpoint`` with each
of ``--seeds`` (the seed draws x_T), with ``--sampler`` and ``--steps`` (default: the course's
setting, ``diffussm_lib.diffusion.DEFAULT_SAMPLER`` and ``DEFAULT_STEPS``). Each run measures, on
FID-LeNet's features: FID-LeNet (against the 10,000 MNIST test images) with its real-vs-real floor
at the same N, class accuracy (the fraction LeNet reads as the digit asked for; at w = 0 the label
is ignored, so about 1/10), improved precision and recall (k = 3) and density and coverage (k = 5)
against the 10,000 test images (``evaluation.precision_recall``; ``evaluate_manifold`` says why not
N of them), the same four for N real training images (the floor's draw: what real data scores at
this N), and the seconds spent sampling (w = 0 and 1 take one forward pass per step, other w two,
in one batch of 2B). The batch size is measured once, before the first run
(``fastest_batch_size``), and used for all; an untimed one-step run warms the model up.

The JSON report (``--out``, default benchmarks/results/guidance.json) is written atomically after
every run, joined with runs another process stored there meanwhile; run the same command again to
continue an interrupted sweep (done runs are kept, not redone). After every run, and with
``--table``, the markdown report beside it (``--report``, default: ``--out`` with .md) is rewritten
from all stored runs. The table gives, per w, mean +- SD over seeds (sample SD) of every metric; the
trade-off statement below it is computed from the runs: the w of the lowest FID-LeNet, and how each
metric moves from the smallest w >= 1 (by default 1, the conditional model) to the largest w, and
from w = 0 to that smallest w, each difference with a two-sided Welch t-test over seeds
(``evaluation.stats.welch``).

Cost (1 CPU thread, N = 2000): a guided run samples in about 15-20 min with DDIM 25 (about 60% of
that with DPM-Solver++ 15), a run at w = 0 or 1 in about half that (one forward pass per step);
evaluating takes under a minute. The default sweep, 7 w x 3 seeds, takes hours: run it in the
background, one process per seed if you like (they share the JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_samplers import sampling_setup
from diffussm_lib.atomic import atomic_write_text, store_runs
from diffussm_lib.diffusion import DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLERS
from diffussm_lib.env import environment_report, hardware_description
from diffussm_lib.evaluation import evaluate_images, evaluate_manifold, real_manifold
from diffussm_lib.evaluation.precision_recall import DENSITY_COVERAGE_K, PRECISION_RECALL_K
from diffussm_lib.evaluation.stats import mean_sd, welch
from diffussm_lib.sampling import generate

DEFAULT_GUIDANCE = [0.0, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0]
RESULTS = REPO / "benchmarks" / "results"
MANIFOLD = ("precision", "recall", "density", "coverage")
# (key in a run, column title, name in sentences, format of one value); class accuracy in percent
METRICS = [
    ("fid", "FID-LeNet", "FID-LeNet", "{:.3f}"),
    ("class_accuracy", "class acc. %", "class accuracy (%)", "{:.2f}"),
    ("precision", "precision", "precision", "{:.3f}"),
    ("recall", "recall", "recall", "{:.3f}"),
    ("density", "density", "density", "{:.3f}"),
    ("coverage", "coverage", "coverage", "{:.3f}"),
    ("sample_seconds", "seconds", "sampling seconds", "{:.1f}"),
]
SHOWN_AT = 0.05  # a difference counts as shown at Welch p < 0.05


def run_id(w: float, seed: int, sampler: str, steps: int, n: int) -> str:
    return f"w {w:g} | seed {seed} | {sampler} {steps} | n {n}"


def value(run: dict, key: str) -> float:
    """A run's number for the table (class accuracy in percent)."""
    return 100 * run[key] if key == "class_accuracy" else run[key]


def select(runs: dict, n: int, sampler: str, steps: int) -> dict:
    """w -> the stored runs at that w with this N, sampler and steps; sorted by w, then seed."""
    groups: dict = {}
    for r in runs.values():
        if (r["n"], r["sampler"], r["steps"]) == (n, sampler, steps):
            groups.setdefault(r["guidance"], []).append(r)
    return {w: sorted(groups[w], key=lambda r: r["seed"]) for w in sorted(groups)}


def cell(values: list, fmt: str) -> str:
    m, sd = mean_sd(values)
    return fmt.format(m) + ("" if math.isnan(sd) else " +- " + fmt.format(sd))


def table_rows(groups: dict) -> tuple[list, list]:
    """The table as (header, rows of cells): one row per w, then the real-data reference (the floor
    in the FID column, the real training images' precision / recall / density / coverage)."""
    header = ["w", "seeds"] + [title for _, title, _, _ in METRICS]
    rows = []
    for w, rs in groups.items():
        rows.append(
            [f"{w:g}", str(len(rs))]
            + [cell([value(r, k) for r in rs], f) for k, _, _, f in METRICS]
        )
    every = [r for rs in groups.values() for r in rs]
    real = list({r["seed"]: r for r in every}.values())  # one reference per seed
    rows.append(
        ["real data", str(len(real)), cell([r["floor"] for r in real], "{:.3f}") + " (floor)", "-"]
        + [cell([r["real_" + k] for r in real], "{:.3f}") for k in MANIFOLD]
        + ["-"]
    )
    return header, rows


def text_table(header: list, rows: list) -> str:
    widths = [max(len(x[i]) for x in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(n) for c, n in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header)] + [line(r) for r in rows])


def markdown_table(header: list, rows: list) -> str:
    line = lambda cells: "| " + " | ".join(cells) + " |"  # noqa: E731
    return "\n".join([line(header), line(["---"] * len(header))] + [line(r) for r in rows])


def change(groups: dict, key: str, name: str, fmt: str, a: float, b: float) -> str:
    """How ``key`` moves from w = a to w = b: means, difference, Welch p over seeds."""
    va, vb = [value(r, key) for r in groups[a]], [value(r, key) for r in groups[b]]
    ma, mb = statistics.mean(va), statistics.mean(vb)
    if mb == ma:
        text = f"{name} stays at {fmt.format(ma)} (+0"
    else:
        way = "rises" if mb > ma else "falls"
        text = f"{name} {way} from {fmt.format(ma)} to {fmt.format(mb)} ({mb - ma:+.3g}"
    if min(len(va), len(vb)) < 2:
        return text + "; fewer than 2 seeds at one end: no test)"
    p = welch(vb, va)["p"]
    return text + f", Welch p = {p:.2g}: {'shown' if p < SHOWN_AT else 'not shown'})"


def tradeoff(groups: dict) -> str:
    """The trade-off statement, computed from the runs."""
    lines = []
    fids = {w: statistics.mean(r["fid"] for r in rs) for w, rs in groups.items()}
    best = min(fids, key=fids.get)
    lines.append(f"- FID-LeNet is lowest at w = {best:g} ({fids[best]:.3f}).")
    conditional = [w for w in groups if w >= 1]
    pairs = []
    if len(conditional) > 1:
        pairs.append((conditional[0], conditional[-1], "guidance"))
    if 0 in groups and conditional:
        pairs.append((0.0, conditional[0], "the label"))
    for a, b, what in pairs:
        lines.append(f"- From w = {a:g} to w = {b:g} ({what}):")
        for key, _, name, fmt in METRICS[:-1]:
            lines.append(f"  - {change(groups, key, name, fmt, a, b)}")
    if pairs:
        lines.append(
            f"- A difference counts as shown at Welch p < {SHOWN_AT}; few seeds test weakly."
        )
    return "\n".join(lines)


def plot(groups: dict, path: Path, title: str) -> None:
    """FID-LeNet with its floor (left); precision, recall, density, coverage and class accuracy
    (right), each against w with error bars of one SD over seeds; dotted: the real-data reference.
    """
    from matplotlib.figure import Figure  # no pyplot: a notebook that calls this keeps its backend

    ws = list(groups)
    every = [r for rs in groups.values() for r in rs]
    real = list({r["seed"]: r for r in every}.values())  # one reference per seed
    stats = lambda key: [mean_sd([value(r, key) for r in groups[w]]) for w in ws]  # noqa: E731
    nan0 = lambda x: 0.0 if math.isnan(x) else x  # noqa: E731
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
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def checkpoint_name(report: dict) -> str:
    """The stored checkpoint's path, relative to the repository where it lies inside it."""
    path = Path(report.get("checkpoint", "?"))
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def settings(report: dict, n: int, sampler: str, steps: int) -> str:
    return (
        f"{checkpoint_name(report)} (step {report.get('checkpoint_step', '?')}), "
        f"{sampler} {steps} steps, N = {n} class-balanced samples per run, "
        f"precision / recall k = {report.get('k_pr', PRECISION_RECALL_K)}, "
        f"density / coverage k = {report.get('k_dc', DENSITY_COVERAGE_K)}"
    )


def write_markdown(path: Path, out: Path, report: dict, groups: dict, settings_line: str, png):
    """The report from the stored runs: how they were made, the table, the trade-off, the figure."""
    threads = sorted({r["threads"] for rs in groups.values() for r in rs})
    figure = ""
    if png is not None and Path(png).resolve().parent == path.resolve().parent:
        figure = f"\n![the metrics against w]({Path(png).name})\n"
    text = f"""# Guidance measured (issue 29)

Written by `python benchmarks/bench_guidance.py` from the runs stored in `{out.name}`, after every
run (`--table` rewrites it, `--plot` draws the figure).

Settings: {settings_line}; mean +- SD over seeds (sample SD), each run sampled with its own seed.

FID-LeNet, precision, recall, density and coverage are measured on the fixed LeNet's features
against the 10,000 MNIST test images. The "real data" row holds the real-vs-real floor (N training
images, drawn with the run's seed, against the test set) and the precision, recall, density and
coverage of those N real images: what real data (a perfect model) scores at this N; all five depend
on N. Class accuracy: the fraction the LeNet reads as the digit asked for (at w = 0 the label is
ignored, so chance level). Seconds: sampling only, on {report.get("hardware", "?")}, torch threads
of the runs: {", ".join(map(str, threads))}; they compare only within one machine and thread count.

{markdown_table(*table_rows(groups))}

Trade-off, computed from the runs:

{tradeoff(groups)}
{figure}
Environment (last session): {report.get("environment", "?")}
"""
    atomic_write_text(path, text)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "mnist_diffussm"))
    ap.add_argument("--guidance", type=float, nargs="+", default=DEFAULT_GUIDANCE, metavar="W")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--num-samples", type=int, default=2000, help="N per run, a multiple of the class count"
    )
    ap.add_argument("--sampler", default=DEFAULT_SAMPLER, choices=tuple(SAMPLERS))
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    ap.add_argument(
        "--batch-size", type=int, help="default: the fastest here, measured once before the runs"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--out", default=str(RESULTS / "guidance.json"))
    ap.add_argument("--report", help="the markdown report (default: --out with the suffix .md)")
    ap.add_argument(
        "--table",
        action="store_true",
        help="print the stored runs' table and trade-off; sample nothing",
    )
    ap.add_argument(
        "--plot",
        nargs="?",
        const=str(RESULTS / "guidance.png"),
        metavar="PNG",
        help="also draw the metrics against w (default path: benchmarks/results/guidance.png)",
    )
    args = ap.parse_args()
    if any(w < 0 for w in args.guidance) or args.steps < 1:
        raise SystemExit("--guidance values must be >= 0 and --steps >= 1")
    out = Path(args.out)
    md = Path(args.report) if args.report else out.with_suffix(".md")
    report = json.loads(out.read_text()) if out.is_file() else {}
    runs = report.setdefault("runs", {})
    key = (args.num_samples, args.sampler, args.steps)
    if not args.table:
        guided = any(w not in (0, 1) for w in args.guidance)
        model, ckpt, device, schedule, labels, kw = sampling_setup(args, report, out, guided)
        batch = kw["batch_size"]
        warm = max(args.guidance)  # warm-up, not timed
        generate(
            model, schedule, batch, labels[:batch], sampler="ddim", steps=1, guidance=warm, **kw
        )
        session = time.strftime("%Y-%m-%d %H:%M:%S")
        report.update(
            checkpoint=str(ckpt.path),
            checkpoint_step=ckpt.step,
            k_pr=PRECISION_RECALL_K,
            k_dc=DENSITY_COVERAGE_K,
            hardware=hardware_description(device),
            environment=environment_report(),
        )
        real: dict = {}  # seed -> the real training images' four numbers (the same for every w)
        for seed in args.seeds:
            for w in args.guidance:
                rid = run_id(w, seed, args.sampler, args.steps, args.num_samples)
                if rid in runs:
                    continue
                t0 = time.perf_counter()
                images = generate(
                    model,
                    schedule,
                    args.num_samples,
                    labels,
                    sampler=args.sampler,
                    steps=args.steps,
                    guidance=w,
                    seed=seed,
                    **kw,
                )
                seconds = time.perf_counter() - t0
                ev = evaluate_images(images, labels, seed=seed)
                fake = evaluate_manifold(images)
                if seed not in real:
                    real[seed] = real_manifold(args.num_samples, seed)
                runs[rid] = dict(
                    ev.as_dict(),
                    **fake.as_dict(),
                    **{f"real_{k}": v for k, v in real[seed].as_dict().items()},
                    sampler=args.sampler,
                    steps=args.steps,
                    seed=seed,
                    guidance=w,
                    sample_seconds=round(seconds, 2),
                    eval_seconds=round(time.perf_counter() - t0 - seconds, 2),
                    batch_size=batch,
                    threads=torch.get_num_threads(),
                    session=session,
                )
                print(
                    f"{rid}: FID-LeNet {ev.fid:.3f} (floor {ev.floor:.3f}), class accuracy "
                    f"{ev.class_accuracy:.4f}, precision {fake.precision:.3f}, recall "
                    f"{fake.recall:.3f}, density {fake.density:.3f}, coverage {fake.coverage:.3f}; "
                    f"{seconds:.1f} s sampling",
                    flush=True,
                )
                runs = store_runs(out, report, runs)
                groups = select(runs, *key)
                write_markdown(md, out, report, groups, settings(report, *key), args.plot)
    groups = select(runs, *key)
    if not groups:
        stored = sorted({f"N {r['n']}, {r['sampler']} {r['steps']}" for r in runs.values()})
        raise SystemExit(
            f"no runs with N = {args.num_samples}, {args.sampler} {args.steps} steps in {out}; "
            f"stored: {'; '.join(stored) or 'none'} (give --num-samples, --sampler, --steps)"
        )
    line = settings(report, *key)
    print(f"\n{line}; mean +- SD over seeds\n" + text_table(*table_rows(groups)), flush=True)
    print("\ntrade-off, computed from the runs:\n" + tradeoff(groups), flush=True)
    write_markdown(md, out, report, groups, line, args.plot)
    if args.plot:
        plot(groups, Path(args.plot), line)


if __name__ == "__main__":
    main()
