"""Colab (issue 18): one repository URL everywhere, one setup cell, and notebooks 00 and 06 executed
the way Colab runs them: from an empty working directory, in a kernel that cannot import
``diffussm_lib``, with a stand-in ``google.colab`` module and ``DIFFUSSM_REPO_URL`` pointing at a
local clone of this working tree. The setup cell must clone it, install the library, find the
configs, the data and the pretrained checkpoint from the clone, and run the notebook to the end."""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import jupytext
import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
ALL = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py")) + sorted(
    (NOTEBOOKS / "solutions").glob("[0-9][0-9]_*.py")
)


def canonical_url() -> str:
    urls = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]
    assert urls["Repository"] == urls["Homepage"], urls
    return urls["Repository"]


def test_one_repository_url_everywhere():
    """pyproject's [project.urls], every notebook's badge and setup cell, the README's links and the
    contributors' template name the same repository."""
    url = canonical_url()
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url), url
    slug = url.removeprefix("https://github.com/")
    texts = {
        p: p.read_text() for p in ALL + [REPO / "README.md", NOTEBOOKS / "_template_header.md"]
    }
    for path, text in texts.items():
        for found in re.findall(
            r"github\.com/([\w.-]+/[\w.-]+?)(?:/blob/|\"|\)|\.git\b|/|\s|$)", text
        ):
            assert found == slug, (
                f"{path.name}: repository {found!r}, want {slug!r} (pyproject.toml)"
            )
    readme = texts[REPO / "README.md"]
    for nb in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        badge = f"https://colab.research.google.com/github/{slug}/blob/main/notebooks/{nb.name}"
        assert badge in nb.read_text(), f"{nb.name}: no badge {badge}"
        assert badge in readme, f"README: no badge for {nb.name}"
    for p in ALL:
        assert (
            f'os.environ.get("DIFFUSSM_REPO_URL", "{url}")' in jupytext.read(p).cells[1].source
        ), p.name


def _generic(setup: str) -> str:
    """A setup cell with its one notebook-specific part (where the library is in a clone) blanked."""
    setup = setup.replace('os.path.join("..", "..")', "UP").replace('".."', "UP")
    return setup.replace("two folders up", "WHERE").replace("one folder up", "WHERE")


def test_every_notebook_has_the_same_setup_cell():
    cells = {p.name: _generic(jupytext.read(p).cells[1].source) for p in ALL}
    first = cells[ALL[0].name]
    assert "pip" in first and "--no-deps" in first, (
        "Colab installs the library only (nothing Colab already has)"
    )
    assert "[notebooks]" not in first and "jupyterlab" not in first.lower()
    assert "enable_custom_widget_manager" in first, "the widgets need Colab's custom widget manager"
    for name, cell in cells.items():
        assert cell == first, f"{name}: its setup cell differs from {ALL[0].name}'s"


def _working_tree_as_repository(dest: Path) -> None:
    """A git repository holding this working tree's files (tracked, and untracked but not ignored)."""
    files = (
        subprocess.run(
            [
                "git",
                "-C",
                str(REPO),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ],
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for f in filter(None, files):
        src = REPO / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    git = ["git", "-C", str(dest), "-c", "user.name=ci", "-c", "user.email=ci@localhost"]
    subprocess.run(["git", "init", "-q", str(dest)], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "snapshot"], check=True)


STAND_IN = '''"""Stand-in for Colab's google.colab (tests/test_colab.py): records what the notebook asks of it."""
import os
class output:
    @staticmethod
    def enable_custom_widget_manager():
        open(os.environ["COLAB_STAND_IN_LOG"], "a").write("enable_custom_widget_manager\\n")
'''


@pytest.mark.slow
@pytest.mark.parametrize("number", ["00", "06"])
def test_notebook_runs_in_a_simulated_colab(tmp_path, number):
    from nbclient import NotebookClient

    remote = tmp_path / "remote"
    _working_tree_as_repository(remote)
    # a Python without this project: a new venv that sees this one's packages through a .pth (which
    # does not run the editable install's own .pth), so `import diffussm_lib` fails until the setup cell
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True
    )
    python = tmp_path / "venv" / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "host_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = subprocess.run(
        [str(python), "-c", "import diffussm_lib"], capture_output=True, cwd=tmp_path
    )
    assert probe.returncode != 0, (
        "the simulated Colab kernel can import diffussm_lib before the setup cell"
    )
    stand_in = tmp_path / "stand_in" / "google" / "colab"
    stand_in.mkdir(parents=True)
    (stand_in / "__init__.py").write_text(STAND_IN)
    log = tmp_path / "colab_calls.log"
    kernels = tmp_path / "jupyter" / "kernels" / "colab-sim"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(
        '{"argv": ["%s", "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "colab-sim", '
        '"language": "python"}' % python
    )
    content = tmp_path / "content"  # Colab's working directory: empty
    content.mkdir()
    env = {
        "DIFFUSSM_REPO_URL": str(remote),
        "PYTHONPATH": str(tmp_path / "stand_in"),
        "COLAB_STAND_IN_LOG": str(log),
        "DIFFUSSM_FAST": os.environ.get("DIFFUSSM_FAST", "1"),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "JUPYTER_PATH": str(tmp_path / "jupyter"),
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        nb = jupytext.read(next(NOTEBOOKS.glob(f"{number}_*.py")))
        NotebookClient(
            nb, timeout=900, kernel_name="colab-sim", resources={"metadata": {"path": str(content)}}
        ).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    clone = content / "diffussm-course"
    assert (clone / ".git").is_dir() and (clone / "configs").is_dir(), (
        "the setup cell cloned the course into cwd"
    )
    assert log.read_text().splitlines() == ["enable_custom_widget_manager"]
    report = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    assert "torch " in report and "device " in report, report
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors
    installed = subprocess.run(
        [str(python), "-m", "pip", "show", "-f", "diffussm-course"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert (
        installed.returncode == 0 and "Editable project location: " + str(clone) in installed.stdout
    ), installed.stdout + installed.stderr
    nbformat.validate(nb)
