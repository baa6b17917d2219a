"""Execute the course's notebooks and write them back with their outputs (issue 18), or just time them.

    python scripts/execute_notebooks.py                    # every notebook, full mode, outputs written
    python scripts/execute_notebooks.py 05 07              # only these
    python scripts/execute_notebooks.py --mode fast --times-only   # time fast mode, write nothing else
    python scripts/execute_notebooks.py --table            # print the README's table of measured times
    python scripts/execute_notebooks.py --solutions 01 04  # the solutions (notebooks/solutions/), executed

Each notebook runs from its paired ``.py`` (the reviewed text) in a fresh ``python3`` kernel, with its
working directory ``notebooks/``, in the mode asked for (``DIFFUSSM_FAST=0`` or ``1``). When it ends
without an error, its first cell's record line (``*Outputs shown: ...*``) is set to the date, the
hardware, the mode and the time it took, and both files of the pair are rewritten from the executed
notebook (so the sources stay equal and the ``.ipynb`` carries the outputs GitHub shows). Every
measured time goes to ``benchmarks/results/notebook_times.json`` (notebook -> mode -> seconds, date,
hardware), which notebook 00 and the README's table read. A notebook that fails is left as it was,
and the script exits 1 naming it. To discard a notebook's outputs instead, see the README.

Progress bars and tool noise stay out of the committed outputs (issue 25). The kernels run with
``TQDM_DISABLE=1``, which the text bars of tqdm >= 4.66 honour; tqdm's Jupyter widget (what
``tqdm.auto`` picks in a kernel with ipywidgets) ignores it, and GitHub would show it in its first
state ("0%|          | 0/100") as if stuck. So before writing, ``clean_outputs`` drops every output
that is a tqdm bar (widget, or text redrawn with carriage returns) and every ``USDT:`` line that some
torch builds print on stderr when a profiler starts or stops.

Figures stay small without losing a pixel: matplotlib writes every PNG as RGBA, and most of the
course's figures are grey (digits, grids); ``shrink_grey_pngs`` stores a PNG whose pixels are all
opaque grey as an 8-bit grey PNG, the same pixels in about a quarter of the bytes. Colour figures
are left as they are. ``--shrink-only`` applies it to committed notebooks without running them.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import io
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import jupytext
import nbformat
from nbclient import NotebookClient

from diffussm_lib.atomic import atomic_write_text
from diffussm_lib.env import hardware_description, measured_on, resolve_device

NOTEBOOKS = REPO / "notebooks"
SOLUTIONS = NOTEBOOKS / "solutions"
TIMES = REPO / "benchmarks" / "results" / "notebook_times.json"
RECORD = re.compile(r"^\*Outputs shown: .*\*$", re.M)
FIGURE_DPI = 72  # PNG figures at a modest resolution: no notebook over about 1.5 MB (tests/test_notebooks.py)
# a tqdm bar as text, e.g. "train:  37%|###7      | 111/300 [00:42<01:12, 2.6step/s]" ("{l_bar}{bar}| n/total ...")
TQDM_BAR = re.compile(r"\d{1,3}%\|[^|\n]*\| *[\d.]+[kMGT]?/[\d.]+[kMGT]?")
NOISE_LINE = re.compile(
    r"^USDT:"
)  # the profiler's "USDT:<date> ... profiler_start" lines of some torch builds
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def notebook_paths(numbers: list[str], folder: Path = NOTEBOOKS) -> list[Path]:
    """The notebooks numbered ``numbers`` in ``folder`` (the notebooks, or ``SOLUTIONS``), in that order
    (a number given twice runs twice: notebook 00 shows the table of times, its own row included, so it
    is worth running last again); all if none."""
    paths = {p.name[:2]: p for p in sorted(folder.glob("[0-9][0-9]_*.py"))}
    unknown = sorted(set(numbers) - set(paths))
    if unknown:
        raise SystemExit(f"no notebook numbered {unknown} in {folder} (have {sorted(paths)})")
    return [paths[n] for n in numbers] if numbers else list(paths.values())


def duration(seconds: float) -> str:
    """42 -> "42 s", 84 -> "1.4 min": seconds below a minute, where "0.0 min" would say nothing."""
    return f"{seconds:.0f} s" if seconds < 59.5 else f"{seconds / 60:.1f} min"


def record_line(mode: str, seconds: float, hardware: str, date: str) -> str:
    return (
        f"*Outputs shown: executed in {mode} mode on {date}, {hardware}, in {duration(seconds)}.*"
    )


def set_record(nb, line: str) -> None:
    """Put ``line`` at the end of the first (title) cell, replacing an earlier record."""
    src = nb.cells[0].source
    nb.cells[0].source = (
        RECORD.sub(line, src) if RECORD.search(src) else src.rstrip("\n") + "\n\n" + line
    )


def is_noise(line: str) -> bool:
    """A line of text output no reader needs: a tqdm bar (any of its ``\\r``-separated redraws) or a USDT line."""
    return bool(NOISE_LINE.match(line)) or any(TQDM_BAR.search(part) for part in line.split("\r"))


def clean_outputs(nb) -> int:
    """Drop progress bars and tool noise from the outputs of ``nb``'s code cells, in place: display
    outputs whose only text is a tqdm bar (its widget), and stream lines for which ``is_noise`` holds
    (a stream left empty goes). Returns how many outputs were dropped or changed."""
    changed = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.outputs:
            if (
                out.output_type == "display_data"
                and WIDGET_VIEW in out.get("data", {})
                and TQDM_BAR.search(out["data"].get("text/plain", ""))
            ):
                changed += 1
                continue
            if out.output_type == "stream":
                text = "\n".join(line for line in out.text.split("\n") if not is_noise(line))
                if text != out.text:
                    changed += 1
                    if not text:
                        continue
                    out.text = text
            kept.append(out)
        cell.outputs = kept
    return changed


def shrink_grey_pngs(nb) -> int:
    """Re-encode, in place, every PNG output whose pixels are all opaque grey (R = G = B, alpha 255)
    as an 8-bit grey PNG: lossless, about 4x smaller. Returns how many were re-encoded."""
    import numpy as np
    from PIL import Image

    changed = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = out.get("data", {})
            if "image/png" not in data:
                continue
            img = Image.open(io.BytesIO(base64.b64decode(data["image/png"])))
            if img.mode not in ("RGB", "RGBA"):
                continue
            px = np.asarray(img.convert("RGBA"))
            if not (
                (px[..., 0] == px[..., 1]).all()
                and (px[..., 1] == px[..., 2]).all()
                and (px[..., 3] == 255).all()
            ):
                continue
            buf = io.BytesIO()
            Image.fromarray(px[..., 0], mode="L").save(buf, format="PNG", optimize=True)
            data["image/png"] = base64.b64encode(buf.getvalue()).decode("ascii")
            changed += 1
    return changed


def load_times() -> dict:
    return json.loads(TIMES.read_text()) if TIMES.exists() else {}


def times_table(times: dict) -> str:
    """The README's markdown table: one row per notebook, its fast- and full-mode minutes, the machine."""
    rows = [
        "| notebook | fast mode (`pytest`, CI) | full mode (opened in Jupyter) | measured on |",
        "|---|---|---|---|",
    ]
    for name, row in sorted(times.items()):
        cell = lambda mode: duration(row[mode]["seconds"]) if mode in row else "not measured"
        rows.append(f"| {name[:2]} | {cell('fast')} | {cell('full')} | {measured_on(row)} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("numbers", nargs="*", help="notebook numbers (00 .. 08); default: all")
    ap.add_argument("--mode", choices=("full", "fast"), default="full")
    ap.add_argument(
        "--times-only",
        action="store_true",
        help="record the times; leave the notebooks as they are",
    )
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per cell (default 3600)")
    ap.add_argument(
        "--table", action="store_true", help="print the table of measured times and exit"
    )
    ap.add_argument(
        "--shrink-only",
        action="store_true",
        help="store the grey figures of the committed "
        "notebooks as grey PNGs (lossless) without running them",
    )
    ap.add_argument(
        "--solutions",
        action="store_true",
        help="execute the solutions (notebooks/solutions/) instead; their times are not recorded",
    )
    args = ap.parse_args()
    if args.table:
        print(times_table(load_times()))
        return 0
    if args.shrink_only:
        for py in notebook_paths(args.numbers, SOLUTIONS if args.solutions else NOTEBOOKS):
            ipynb = py.with_suffix(".ipynb")
            nb = nbformat.read(ipynb, as_version=4)
            before = ipynb.stat().st_size
            if shrink_grey_pngs(nb):
                atomic_write_text(ipynb, nbformat.writes(nb) + "\n")
            print(f"{ipynb.name}: {before:,} -> {ipynb.stat().st_size:,} bytes")
        return 0
    os.environ["DIFFUSSM_FAST"] = "1" if args.mode == "fast" else "0"
    os.environ["TQDM_DISABLE"] = "1"  # no text progress bars in the kernels (tqdm >= 4.66)
    # the inline backend, whatever the shell says: with MPLBACKEND=Agg (as for pytest) the figures
    # would be drawn and dropped, and the committed notebook would show none
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    rc = Path(tempfile.mkdtemp(prefix="diffussm-mplrc-"))
    (rc / "matplotlibrc").write_text(f"figure.dpi: {FIGURE_DPI}\n")
    os.environ["MATPLOTLIBRC"] = str(rc)  # the kernels' matplotlib reads it
    hardware = hardware_description(resolve_device(None))
    failed = []
    folder = SOLUTIONS if args.solutions else NOTEBOOKS
    for py in notebook_paths(args.numbers, folder):
        nb = jupytext.read(py)
        print(f"{py.name}: executing in {args.mode} mode ...", flush=True)
        t0 = time.perf_counter()
        try:
            NotebookClient(
                nb,
                timeout=args.timeout,
                kernel_name="python3",
                resources={"metadata": {"path": str(folder)}},
            ).execute()
        except Exception as e:  # noqa: BLE001 (report, go on)
            print(
                f"{py.name}: FAILED after {time.perf_counter() - t0:.0f} s: {type(e).__name__}: "
                f"{str(e).strip().splitlines()[-1] if str(e).strip() else ''}",
                flush=True,
            )
            failed.append(py.name)
            continue
        seconds = time.perf_counter() - t0
        date = dt.date.today().isoformat()
        if not args.solutions:
            times = load_times()
            times.setdefault(py.stem, {})[args.mode] = {
                "seconds": round(seconds, 1),
                "date": date,
                "hardware": hardware,
            }
            atomic_write_text(TIMES, json.dumps(times, indent=1, sort_keys=True) + "\n")
        print(f"{py.name}: {duration(seconds)}", flush=True)
        if args.times_only:
            continue
        dropped = clean_outputs(nb)
        if dropped:
            print(
                f"{py.name}: {dropped} outputs cleaned of progress bars / profiler lines",
                flush=True,
            )
        shrink_grey_pngs(nb)
        set_record(nb, record_line(args.mode, seconds, hardware, date))
        atomic_write_text(py.with_suffix(".ipynb"), nbformat.writes(nb) + "\n")
        atomic_write_text(py, jupytext.writes(nb, fmt="py:percent"))
    if failed:
        print("failed: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
