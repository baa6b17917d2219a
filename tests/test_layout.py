"""The library's layout: folders per chapter, no import cycles, one public face. (Module size is judged
by one idea per module, not by a line count, as issue 28 asks.)"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import diffussm_lib

PKG = Path(diffussm_lib.__file__).resolve().parent
MODULES = sorted(p for p in PKG.rglob("*.py"))


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def intra_package_imports(path: Path) -> set[str]:
    """The diffussm_lib modules that ``path`` imports, anywhere in the file (module level or not)."""
    tree = ast.parse(path.read_text())
    name = module_name(path)
    package = name if is_package(path) else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "diffussm_lib":
                continue
            for alias in node.names:  # `from . import x` may name a module
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in ALL_NAMES else target)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "diffussm_lib")
    out.discard(name)
    return {m for m in out if m in ALL_NAMES}


ALL_NAMES = {module_name(p) for p in MODULES}


def test_folders_mirror_the_chapters():
    folders = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == {"ssm", "models", "diffusion", "training", "sampling", "evaluation"}
    top = {p.stem for p in PKG.glob("*.py")}
    assert top == {"__init__", "__main__", "env", "config", "data", "cli", "atomic", "errors"}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the directed graph (as a path that returns to its start), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n) :] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_cycles():
    """Every import of a diffussm_lib module, at module level or inside a function, is an edge; the
    graph must be acyclic (a package's __init__ importing its own modules is an edge like any other,
    so a module importing its own package's __init__ is a cycle)."""
    graph = {module_name(p): intra_package_imports(p) for p in MODULES}
    assert graph["diffussm_lib.training.checkpoint"] >= {
        "diffussm_lib.atomic",
        "diffussm_lib.config",
    }
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


@pytest.mark.slow
def test_every_module_imports_on_its_own():
    """Each module, imported first in a fresh interpreter (one per module would take a minute; here
    every diffussm_lib entry of sys.modules is dropped between imports, torch stays loaded)."""
    code = (
        "import importlib, sys\n"
        f"names = {sorted(n for n in ALL_NAMES if not n.endswith('__main__'))!r}\n"
        "bad = []\n"
        "for n in names:\n"
        "    for k in [k for k in sys.modules if k == 'diffussm_lib' or k.startswith('diffussm_lib.')]:\n"
        "        del sys.modules[k]\n"
        "    try:\n"
        "        importlib.import_module(n)\n"
        "    except Exception as e:\n"
        "        bad.append(f'{n}: {type(e).__name__}: {e}')\n"
        "print('\\n'.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_public_face():
    from diffussm_lib import (
        S4D,
        BidirectionalSSM,
        DiffuSSM,
        DiffuSSMBlock,
        DiT,
        Trainer,
        build_model,
        causal_conv1d,
        denoising_viewer,
        evaluate_checkpoint,
        generate,
        load_model,
        selective_scan,
    )

    names = (
        S4D,
        BidirectionalSSM,
        DiffuSSM,
        DiffuSSMBlock,
        DiT,
        Trainer,
        build_model,
        causal_conv1d,
    )
    names += (denoising_viewer, evaluate_checkpoint, generate, load_model, selective_scan)
    assert all(callable(n) for n in names)

    assert set(diffussm_lib.__all__) <= set(dir(diffussm_lib))
    for sub in ("ssm", "models", "diffusion", "training", "sampling", "evaluation"):
        mod = getattr(diffussm_lib, sub)
        missing = [n for n in mod.__all__ if not hasattr(mod, n)]
        assert not missing, f"diffussm_lib.{sub}.__all__ names what it lacks: {missing}"


def test_one_glossary_of_dimension_letters():
    """The glossary lives in the package docstring; no other module repeats one."""
    doc = diffussm_lib.__doc__
    for letter in ("B ", "C ", "H, W", "p ", "L ", "M ", "J ", "D ", "N ", "T "):
        assert f"\n    {letter}" in doc, f"glossary lacks {letter.strip()}"
    repeats = [
        str(p.relative_to(PKG))
        for p in MODULES
        if p != PKG / "__init__.py" and "Dimension glossary" in p.read_text()
    ]
    assert not repeats, f"these modules repeat a glossary: {repeats}"
