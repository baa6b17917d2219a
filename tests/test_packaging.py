"""environment.yml's pip list and pyproject's dependencies (plus extras) name the same packages."""

import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    want = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        want |= set(extra)
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    got = {p for p in pip if not p.startswith("-e")}
    assert got == want, (
        f"only in environment.yml: {sorted(got - want)}; only in pyproject: {sorted(want - got)}"
    )


def test_no_exact_pins():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [
        r for e in project["optional-dependencies"].values() for r in e
    ]
    assert not [r for r in reqs if "==" in r], "use version floors, not exact pins"


@pytest.mark.slow
def test_pytest_runs_small_sizes_unless_full_is_asked_for():
    """The README's test command, plain ``pytest``, runs the notebooks in fast mode; ``DIFFUSSM_FULL=1``
    is the opt-in for full sizes; an explicit ``DIFFUSSM_FAST`` wins (conftest.py, run here as pytest
    would, in a clean environment)."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    code = f"import runpy, os; runpy.run_path({str(root / 'conftest.py')!r}); print(os.environ['DIFFUSSM_FAST'])"
    base = {k: v for k, v in os.environ.items() if k not in ("DIFFUSSM_FAST", "DIFFUSSM_FULL")}
    for extra, want in (
        ({}, "1"),
        ({"DIFFUSSM_FULL": "1"}, "0"),
        ({"DIFFUSSM_FAST": "0"}, "0"),
        ({"DIFFUSSM_FULL": "1", "DIFFUSSM_FAST": "1"}, "1"),
    ):
        out = subprocess.run(
            [sys.executable, "-c", code], env={**base, **extra}, capture_output=True, text=True
        )
        assert out.stdout.strip() == want, (extra, out.stdout, out.stderr)


def test_slow_tests_are_marked_and_still_run_by_default():
    """``slow`` is a registered marker, and nothing deselects it by default: CI's plain ``pytest``
    runs every slow test (``pytest -m "not slow"`` is the quick loop)."""
    opts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert any(m.startswith("slow:") for m in opts["markers"])
    assert "-m" not in opts.get("addopts", "").split() and "not slow" not in opts.get("addopts", "")
