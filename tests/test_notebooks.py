"""Every notebook is a jupytext pair (.py:percent source + .ipynb that nbval executes), in sync, with
pinned metadata, and opens the same way (title, Colab badge, objectives, setup, report). The course's
notebooks and their solutions are committed with the outputs of a run of ``scripts/execute_notebooks.py``
(what a reader sees on GitHub: a solution's prose cites numbers its cells print)."""

import re
from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.py"))
SOLUTIONS = sorted(p for p in (NOTEBOOKS / "solutions").glob("[0-9][0-9]_*.py"))


def test_there_are_notebooks():
    assert SOURCES, "no notebooks/NN_*.py found"


KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
RECORD = re.compile(
    r"^\*Outputs shown: executed in (full|fast) mode on \d{4}-\d\d-\d\d, .+, in [\d.]+ (min|s)\.\*$",
    re.M,
)
MAX_NOTEBOOK_BYTES = 1_500_000


@pytest.mark.parametrize("src", SOURCES + SOLUTIONS, ids=lambda p: p.stem)
def test_pair_in_sync_with_pinned_metadata(src):
    """Sources equal; the kernelspec is the one JupyterLab writes and the header carries no jupytext
    version, so opening and running a notebook changes nothing but its outputs."""
    ipynb = src.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run `jupytext --sync {src.name}`"
    text = [c.source for c in jupytext.read(src).cells]
    nb = nbformat.read(ipynb, as_version=4)
    assert [c.source for c in nb.cells] == text, (
        f"{ipynb.name} is out of sync with {src.name}: run `jupytext --sync`"
    )
    assert nb.metadata.get("kernelspec") == KERNELSPEC, (
        f"{ipynb.name}: kernelspec {nb.metadata.get('kernelspec')}"
    )
    header = src.read_text().split("# ---", 2)[1]
    assert "display_name: Python 3 (ipykernel)" in header and "jupytext_version:" not in header, (
        src.name
    )
    assert "-jupytext.text_representation.jupytext_version" in header, (
        f"{src.name}: no metadata filter"
    )


@pytest.mark.parametrize("src", SOURCES + SOLUTIONS, ids=lambda p: p.stem)
def test_notebook_is_committed_with_its_outputs(src):
    """Every code cell was executed and none ended in an error; the first cell records when, where
    and in which mode; the file stays small enough for GitHub to show (PNG figures, modest size)."""
    ipynb = src.with_suffix(".ipynb")
    nb = nbformat.read(ipynb, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), (
        f"{ipynb.name}: not executed: run scripts/execute_notebooks.py"
    )
    assert sum(len(c.outputs) for c in code) >= len(code) // 2, f"{ipynb.name}: too few outputs"
    errors = [o.get("ename") for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{ipynb.name}: error outputs {errors}"
    assert RECORD.search(nb.cells[0].source), (
        f"{ipynb.name}: no '*Outputs shown: ...*' record in the first cell"
    )
    assert ipynb.stat().st_size <= MAX_NOTEBOOK_BYTES, (
        f"{ipynb.name}: {ipynb.stat().st_size:,} bytes"
    )
    if any("plt.show()" in c.source for c in code):  # executed with MPLBACKEND=Agg?
        assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs), (
            f"{ipynb.name}: draws figures but shows none: execute it with the inline backend"
        )


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_notebook_opens_the_same_way(src):
    cells = jupytext.read(src).cells
    head, setup = cells[0].source, cells[1].source
    number = src.stem[:2]
    assert head.startswith(f"# {number} ·"), "first cell: '# NN · Title'"
    assert "colab.research.google.com/github/" in head and src.stem + ".ipynb" in head, (
        "Colab badge for this notebook"
    )
    assert "Objectives" in head
    assert "google.colab" in setup and "print(environment_report())" in setup, (
        "setup cell + environment report"
    )


def _markdown(src) -> list[str]:
    return [c.source for c in jupytext.read(src).cells if c.cell_type == "markdown"]


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_exercises_questions_references_and_solutions(src):
    """Every notebook: 2-4 exercises, each with a hint; three check-your-understanding questions; a
    references cell; and a solutions notebook (executed by CI) with one solution per exercise and the
    answers to the questions."""
    md = "\n".join(_markdown(src))
    exercises = re.findall(r"^\*\*Exercise (\d+)", md, flags=re.M)
    assert 2 <= len(exercises) <= 4, f"{src.name}: {len(exercises)} exercises (want 2-4)"
    assert exercises == [str(i + 1) for i in range(len(exercises))], exercises
    assert md.count("*Hint:*") >= len(exercises), f"{src.name}: every exercise needs a '*Hint:*'"
    assert "## Check your understanding" in md
    questions = md.split("## Check your understanding", 1)[1]
    assert all(re.search(rf"^{i}\. ", questions, flags=re.M) for i in (1, 2, 3)), (
        "three numbered questions"
    )
    assert "## References" in md, f"{src.name}: no references cell"
    sols = [p for p in SOLUTIONS if p.stem.startswith(src.stem[:2])]
    assert len(sols) == 1, (
        f"{src.name}: want one notebooks/solutions/{src.stem[:2]}_*.py, found {sols}"
    )
    cells = jupytext.read(sols[0]).cells
    sol_md = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    for i in exercises:
        assert re.search(rf"^## Solution {i}\b", sol_md, flags=re.M), (
            f"{sols[0].name}: no '## Solution {i}'"
        )
    assert "## Answers" in sol_md, f"{sols[0].name}: no '## Answers' to the questions"
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    assert code.count("assert ") >= len(exercises), (
        f"{sols[0].name}: each solution checks itself with asserts"
    )


@pytest.mark.parametrize("src", SOLUTIONS, ids=lambda p: p.stem)
def test_solutions_open_the_same_way(src):
    cells = jupytext.read(src).cells
    assert cells[0].source.startswith(f"# {src.stem[:2]} · Solutions"), (
        "first cell: '# NN · Solutions: ...'"
    )
    assert (
        "colab.research.google.com/github/" in cells[0].source
        and f"notebooks/solutions/{src.stem}.ipynb" in cells[0].source
    ), "Colab badge for this solutions notebook"
    assert "google.colab" in cells[1].source and "print(environment_report())" in cells[1].source


STUCK_BAR = re.compile(
    r"(?<!\d)0%\|[^|\n]*\| *0/"
)  # tqdm's first state, e.g. "train:   0%|          | 0/300"


def _output_texts(cell) -> list[str]:
    """The text a reader sees of a code cell's outputs: streams and the text/plain of displays."""
    texts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            texts.append(out.text)
        elif "data" in out:
            texts.append(out.data.get("text/plain", ""))
    return texts


@pytest.mark.parametrize("src", SOURCES + SOLUTIONS, ids=lambda p: p.stem)
def test_outputs_hold_no_stuck_progress_bar_or_profiler_lines(src):
    """GitHub shows a tqdm widget in its first state ("0%|          | 0/100"), as if stuck, and some torch
    builds print "USDT: ... profiler_start" on stderr; scripts/execute_notebooks.py keeps both out of what it
    writes (issue 25)."""
    ipynb = src.with_suffix(".ipynb")
    nb = nbformat.read(ipynb, as_version=4)
    found = [
        (i, text.strip().splitlines()[0][:70])
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code"
        for text in _output_texts(c)
        if STUCK_BAR.search(text) or "USDT:" in text
    ]
    assert not found, (
        f"{ipynb.name}: cells {found}: re-execute it with scripts/execute_notebooks.py"
    )


def test_execute_notebooks_drops_progress_bars_and_profiler_lines():
    """``clean_outputs`` drops a tqdm widget, the text bar's redraws and USDT lines; it keeps the rest."""
    import sys

    sys.path.insert(0, str(NOTEBOOKS.parent / "scripts"))
    try:
        from execute_notebooks import clean_outputs
    finally:
        sys.path.pop(0)
    v4 = nbformat.v4
    widget = "application/vnd.jupyter.widget-view+json"
    cell = v4.new_code_cell(
        "run()",
        outputs=[
            v4.new_output(
                "display_data",
                data={
                    widget: {"model_id": "a"},
                    "text/plain": "train:   0%|          | 0/300 [00:00<?, ?step/s]",
                },
            ),
            v4.new_output(
                "display_data",
                data={
                    widget: {"model_id": "b"},
                    "text/plain": "VBox(children=(IntSlider(value=0),))",
                },
            ),
            v4.new_output(
                "stream",
                name="stderr",
                text="USDT:2026-12-01 23:47:57 SyncActivityProfilerHandler.cpp:52] "
                "profiler_start\nUSDT:2026-12-01 23:47:57 SyncActivityProfilerHandler.cpp:59] profiler_stop\n",
            ),
            v4.new_output(
                "stream",
                name="stderr",
                text="sampling:   0%|          | 0/10 [00:00<?, ?it/s]\r"
                "sampling: 100%|##########| 10/10 [00:01<00:00,  9.9it/s]\nUserWarning: kept\n",
            ),
            v4.new_output("stream", name="stdout", text="loss 0.50 -> 0.12 (100%)\n"),
        ],
    )
    nb = v4.new_notebook(cells=[v4.new_markdown_cell("# title"), cell])
    assert clean_outputs(nb) == 3
    kept = cell.outputs
    assert [o.output_type for o in kept] == ["display_data", "stream", "stream"]
    assert kept[0].data["text/plain"].startswith("VBox") and kept[1].text == "UserWarning: kept\n"
    assert kept[2].text == "loss 0.50 -> 0.12 (100%)\n"
    assert not any(STUCK_BAR.search(t) or "USDT:" in t for t in _output_texts(cell))


def test_grey_figures_are_stored_as_grey_pngs_without_losing_a_pixel():
    """``shrink_grey_pngs`` re-encodes an opaque grey RGBA PNG as 8-bit grey with the same pixels, and
    leaves a colour PNG (and one with transparency) as it was."""
    import base64
    import io
    import sys

    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(NOTEBOOKS.parent / "scripts"))
    try:
        from execute_notebooks import shrink_grey_pngs
    finally:
        sys.path.pop(0)

    def png(px):
        buf = io.BytesIO()
        Image.fromarray(px, mode="RGBA").save(buf, format="PNG")
        return base64.b64encode(buf.getvalue()).decode("ascii")

    rng = np.random.default_rng(0)
    grey = np.repeat(rng.integers(0, 256, (20, 30, 1), dtype=np.uint8), 3, axis=2)
    grey = np.concatenate([grey, np.full((20, 30, 1), 255, np.uint8)], axis=2)
    colour, see_through = grey.copy(), grey.copy()
    colour[3, 4, 0] ^= 1
    see_through[0, 0, 3] = 0
    v4 = nbformat.v4
    outs = [
        v4.new_output("display_data", data={"image/png": png(px)})
        for px in (grey, colour, see_through)
    ]
    nb = v4.new_notebook(cells=[v4.new_code_cell("plot()", outputs=outs)])
    before = [o.data["image/png"] for o in outs]
    assert shrink_grey_pngs(nb) == 1
    after = nb.cells[0].outputs
    img = Image.open(io.BytesIO(base64.b64decode(after[0].data["image/png"])))
    assert img.mode == "L" and np.array_equal(np.asarray(img.convert("RGBA")), grey)
    assert [o.data["image/png"] for o in after[1:]] == before[1:]


@pytest.mark.slow
@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_notebook_runs_twice_in_one_kernel(src, monkeypatch):
    """Students re-run cells: every code cell top to bottom, then all of them again in the same kernel
    (fast mode), ends without an error (a resumed run, a re-registered callback, a file that exists)."""
    from nbclient import NotebookClient

    monkeypatch.setenv("DIFFUSSM_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    nb = jupytext.read(src)
    code = [c for c in nb.cells if c.cell_type == "code"]
    nb.cells = code + [nbformat.v4.new_code_cell(c.source) for c in code]
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    assert all(c.get("execution_count") for c in nb.cells)
