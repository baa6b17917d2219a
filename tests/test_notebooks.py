"""Every notebook is a jupytext pair (.py:percent source + .ipynb that nbval executes), in sync,
committed without outputs, and opens the same way (title, Colab badge, objectives, setup, report)."""
from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.py"))


def test_there_are_notebooks():
    assert SOURCES, "no notebooks/NN_*.py found"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_pair_in_sync_and_clean(src):
    ipynb = src.with_suffix(".ipynb")
    assert ipynb.exists(), f"{ipynb.name} missing: run `jupytext --sync {src.name}`"
    text = [c.source for c in jupytext.read(src).cells]
    nb = nbformat.read(ipynb, as_version=4)
    assert [c.source for c in nb.cells] == text, f"{ipynb.name} is out of sync with {src.name}: run `jupytext --sync`"
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{ipynb.name} has outputs"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.stem)
def test_notebook_opens_the_same_way(src):
    cells = jupytext.read(src).cells
    head, setup = cells[0].source, cells[1].source
    number = src.stem[:2]
    assert head.startswith(f"# {number} ·"), "first cell: '# NN · Title'"
    assert f"colab.research.google.com/github/" in head and src.stem + ".ipynb" in head, "Colab badge for this notebook"
    assert "Objectives" in head
    assert "google.colab" in setup and "print(environment_report())" in setup, "setup cell + environment report"
