"""environment.yml's pip list and pyproject's dependencies (plus extras) name the same packages."""
import tomllib
from pathlib import Path

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
    assert got == want, f"only in environment.yml: {sorted(got - want)}; only in pyproject: {sorted(want - got)}"


def test_no_exact_pins():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for e in project["optional-dependencies"].values() for r in e]
    assert not [r for r in reqs if "==" in r], "use version floors, not exact pins"
