"""Notebook 06's denoising viewer in a real browser: JupyterLab + headless Chromium (Playwright).

The test starts JupyterLab on 127.0.0.1 (a free port, a random token, fresh temporary config,
data, runtime and workspace folders), opens a copy of notebook 06 and runs all its cells (fast mode,
``DIFFUSSM_FAST=1``). Then, with the kernel alive, it moves the viewer's t slider with the keyboard
(the picture changes) and picks another sampler (the kernel samples new frames: the picture
changes); then it **shuts the kernel down** and checks that the viewer still works from what is in
the page alone: the slider changes the picture, and Play steps through the frames to the final
sample. A screenshot of each state, the server log and the browser console go to
``test-artifacts/browser/``. The server is always shut down at the end (its kernels with it).

Needs Debian's ``chromium`` (``/usr/bin/chromium``, or ``$DIFFUSSM_CHROMIUM``) and Playwright's
Python package, which drives that chromium (Playwright's own browser download is never used). Both
are installed by ``.ci/install_browser.sh``. Without them the test is skipped, unless
``DIFFUSSM_REQUIRE_BROWSER=1`` (set by ``.ci/run``): then it fails.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "06_sampling_and_viewer.ipynb"
ARTIFACTS = REPO / "test-artifacts" / "browser"
REQUIRE = os.environ.get("DIFFUSSM_REQUIRE_BROWSER", "") == "1"

# Chromium as the machines here run it: no sandbox as root, no GPU, and no background connections
# (the closed network refuses them, and chromium would keep retrying).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RUN_ALL_TIMEOUT_S = 240  # notebook 06 runs in well under a minute in fast mode on 2 cores


def _unavailable(why: str):
    if REQUIRE:
        pytest.fail(
            f"browser test required (DIFFUSSM_REQUIRE_BROWSER=1) but {why}; run .ci/install_browser.sh"
        )
    pytest.skip(why)


def _chromium() -> str:
    exe = os.environ.get("DIFFUSSM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        _unavailable(f"no chromium executable ({exe})")
    return exe


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(url: str, method: str = "GET", timeout: float = 5.0):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


class LabServer:
    """``jupyter lab`` on 127.0.0.1:<free port> with a random token, in its own folders."""

    def __init__(self, root: Path, home: Path, log_path: Path):
        self.root, self.home, self.log_path = root, home, log_path
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.proc = None
        self._log = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict:
        env = dict(os.environ)
        h = self.home
        env.update(
            {
                "JUPYTER_CONFIG_DIR": str(h / "config"),
                "JUPYTER_DATA_DIR": str(h / "data"),
                "JUPYTER_RUNTIME_DIR": str(h / "runtime"),
                "JUPYTERLAB_SETTINGS_DIR": str(h / "lab-settings"),
                "JUPYTERLAB_WORKSPACES_DIR": str(h / "lab-workspaces"),
                "IPYTHONDIR": str(h / "ipython"),
                "DIFFUSSM_FAST": "1",  # the notebook at CI sizes
                "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
                "OMP_NUM_THREADS": "1",
            }
        )
        env.pop("MPLBACKEND", None)  # let the kernel draw figures inline
        return env

    def start(self) -> None:
        for d in (
            "config/labconfig",
            "data",
            "runtime",
            "lab-settings",
            "lab-workspaces",
            "ipython",
        ):
            (self.home / d).mkdir(parents=True, exist_ok=True)
        # no "get Jupyter news?" notification over the page
        (self.home / "config" / "labconfig" / "page_config.json").write_text(
            json.dumps(
                {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}
            )
        )
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")  # CI containers run as root
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            cmd,
            cwd=self.root,
            env=self.env(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"jupyter lab exited with status {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                if _http(f"{self.base}/api/status?token={self.token}")[0] == 200:
                    return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise RuntimeError(
            f"jupyter lab did not answer on {self.base} within 90 s:\n{self.log_tail()}"
        )

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text()[-n:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Ask the server to shut down (it stops its kernels), then make sure its process is gone."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                _http(f"{self.base}/api/shutdown?token={self.token}", method="POST")
            except (urllib.error.URLError, OSError):
                pass
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
                    try:
                        os.killpg(self.proc.pid, sig)  # the server's own process group only
                    except ProcessLookupError:
                        break
                    try:
                        self.proc.wait(timeout=wait)
                        break
                    except subprocess.TimeoutExpired:
                        continue
        if self._log is not None:
            self._log.close()


def test_viewer_plays_in_jupyterlab_after_the_kernel_is_gone(tmp_path):
    chromium = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright (the Python package) is not installed")
    if importlib.util.find_spec("jupyterlab") is None:
        _unavailable("jupyterlab is not installed")
    assert NOTEBOOK.is_file(), f"{NOTEBOOK} missing"

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*"):
        if old.is_file():
            old.unlink()
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)  # JupyterLab autosaves outputs: never into the repo
    server = LabServer(root, tmp_path / "jupyter", ARTIFACTS / "jupyter-server.log")
    console: list = []
    try:
        server.start()
        with sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),
                executable_path=chromium,
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": 1400, "height": 1000},
            )
            try:
                page = ctx.pages[0] if ctx.pages else ctx.new_page()
                page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
                _run_notebook_and_use_viewer(page, server)
            except Exception:
                try:
                    page.screenshot(path=str(ARTIFACTS / "failure.png"))
                except Exception:  # noqa: BLE001 - best effort, the original error matters
                    pass
                raise
            finally:
                ctx.close()
    except Exception as e:
        if "jupyter lab" in str(e):  # the server's own failure already carries its log
            raise
        raise AssertionError(f"{e}\n--- jupyter server log (tail) ---\n{server.log_tail()}") from e
    finally:
        server.stop()
        (ARTIFACTS / "browser-console.log").write_text("\n".join(console))
    assert server.proc.poll() is not None, "the jupyter server is still running"


def _kernel_ids(server: LabServer) -> list:
    status, body = _http(f"{server.base}/api/kernels?token={server.token}")
    assert status == 200
    return [k["id"] for k in json.loads(body)]


def _shut_down_kernels(server: LabServer) -> None:
    """Shut down every kernel of the server (the notebook's) through its REST API; wait until none runs."""
    for kid in _kernel_ids(server):
        req = urllib.request.Request(
            f"{server.base}/api/kernels/{kid}?token={server.token}", method="DELETE"
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 204, f"DELETE kernel {kid}: HTTP {r.status}"
    deadline = time.monotonic() + 30
    while _kernel_ids(server):
        assert time.monotonic() < deadline, "the kernel is still running 30 s after its shutdown"
        time.sleep(0.5)


class ViewerPage:
    """The viewer's parts in the page, found by the CSS classes the library gives them."""

    def __init__(self, page):
        self.page = page
        self.box = page.locator(".diffussm-viewer")
        self.image = page.locator(".diffussm-viewer .diffussm-viewer-image")
        self.readout = page.locator(".diffussm-viewer-step .widget-readout")
        self.handle = page.locator(".diffussm-viewer-step .noUi-handle")
        self.status = page.locator(".diffussm-viewer-status")

    def t(self) -> str:
        """The t slider's readout ("t = 400", ..., "final"), once it is drawn."""
        self.page.wait_for_function(
            "() => { const r = document.querySelector('.diffussm-viewer-step .widget-readout');"
            " return r && r.textContent.trim().length > 0; }",
            timeout=10_000,
        )
        return self.readout.text_content().strip()

    def src(self) -> str:
        src = self.image.get_attribute("src")
        assert src, "the viewer's image has no src"
        return src

    def wait_loaded(self) -> None:
        self.page.wait_for_function(
            "() => { const i = document.querySelector('.diffussm-viewer .diffussm-viewer-image');"
            " return i && i.complete && i.naturalWidth > 0; }"
        )

    def wait_src_change(self, old: str, timeout_ms: int = 20_000) -> str:
        self.page.wait_for_function(
            "(old) => { const i = document.querySelector('.diffussm-viewer .diffussm-viewer-image');"
            " return i && i.src !== old; }",
            arg=old,
            timeout=timeout_ms,
        )
        self.wait_loaded()
        return self.src()

    def shot(self, name: str) -> bytes:
        """A screenshot of the viewer (returned) and of the whole page, saved as ARTIFACTS/<name>.png."""
        self.page.screenshot(path=str(ARTIFACTS / f"notebook-{name}.png"))
        return self.box.screenshot(path=str(ARTIFACTS / f"viewer-{name}.png"))

    def arrow(self, key: str, times: int = 1) -> None:
        self.handle.focus()
        for _ in range(times):
            self.page.keyboard.press(key)


def _run_notebook_and_use_viewer(page, server: LabServer) -> None:
    page.set_default_timeout(60_000)
    page.goto(f"{server.base}/lab/tree/{NOTEBOOK.name}?token={server.token}")
    # the notebook's content is in when its title is rendered; its kernel is up when the status bar says Idle
    page.locator(".jp-NotebookPanel .jp-RenderedMarkdown h1", has_text="06").first.wait_for(
        timeout=120_000
    )
    page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"\|\s*Idle")).first.wait_for(
        timeout=120_000
    )
    n_code = page.locator(".jp-NotebookPanel .jp-CodeCell").count()
    assert n_code > 5, f"notebook 06 shows only {n_code} code cells"

    # Run > Run All Cells, through the menu as a reader would
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

    # every code cell gets an execution count when all ran without error (an error stops the run)
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')];
            return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
        }""",
        timeout=RUN_ALL_TIMEOUT_S * 1000,
        polling=1000,
    )
    errors = page.locator(
        ".jp-NotebookPanel .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
    ).filter(has_text="Traceback")
    assert errors.count() == 0, f"a cell raised: {errors.first.inner_text()[:2000]}"

    v = ViewerPage(page)
    v.image.wait_for(state="visible", timeout=30_000)
    v.box.scroll_into_view_if_needed()
    v.wait_loaded()

    # 1. as built: an informative frame (signal >= noise), not frame 0 (t = T-1, pure noise)
    start = v.t()
    assert re.fullmatch(r"t = \d+", start) and start != "t = 999", f"the viewer opens at {start!r}"
    v.status.filter(has_text="DPM-Solver++").wait_for(timeout=10_000)
    src_start, shot_start = v.src(), v.shot("1-built")

    # 2. kernel alive: the slider moves to the next frame
    v.arrow("ArrowRight")
    src_next = v.wait_src_change(src_start)
    after = v.t()
    assert after != start and (
        after == "final" or int(after.split()[-1]) < int(start.split()[-1])
    ), (start, after)
    assert v.shot("2-slider") != shot_start, "the viewer looks the same after moving the t slider"

    # 3. kernel alive: another sampler samples new frames and the Stack's children are replaced
    page.locator(".diffussm-viewer-sampler select").select_option(label="DDIM")
    v.status.filter(has_text="DDIM").wait_for(timeout=120_000)
    v.wait_src_change(src_next, timeout_ms=30_000)
    t_ddim = v.t()
    assert abs(int(t_ddim.split()[-1]) - int(after.split()[-1])) <= 60, (
        f"t slider at {t_ddim!r}, not near {after!r}"
    )
    shot_ddim = v.shot("3-ddim")
    assert shot_ddim != shot_start
    # the caption is part of each picture; the frames differ: compare with DPM-Solver++'s at the same t
    page.locator(".diffussm-viewer-sampler select").select_option(label="DPM-Solver++")
    v.status.filter(has_text="DPM-Solver++").wait_for(timeout=60_000)
    v.wait_loaded()
    page.wait_for_timeout(500)
    assert v.box.screenshot() != shot_ddim, "DDIM's frame looks like DPM-Solver++'s"

    # 4. the kernel is gone: everything below happens in the page alone
    _shut_down_kernels(server)
    page.locator(
        ".jp-StatusBar-Widget", has_text=re.compile(r"No Kernel|Unknown|Dead|Disconnected")
    ).first.wait_for(timeout=30_000)
    src_dead, shot_dead = v.src(), v.shot("4-kernel-gone")
    v.arrow("ArrowLeft", 2)
    src_back = v.wait_src_change(src_dead)
    back = v.t()
    assert (
        int(back.split()[-1]) > int(after.split()[-1]) if after != "final" else back != "final"
    ), (after, back)
    assert v.shot("5-slider-no-kernel") != shot_dead, (
        "the slider does not change the picture without a kernel"
    )

    # 5. Play without a kernel: the frames run to the final sample
    seen = {src_back}
    page.locator(".diffussm-viewer-play button").first.click()
    deadline = time.monotonic() + 30
    while v.t() != "final":
        assert time.monotonic() < deadline, (
            f"Play stopped at {v.readout.inner_text()!r} without a kernel"
        )
        seen.add(v.src())
        page.wait_for_timeout(50)
    v.wait_loaded()
    seen.add(v.src())
    assert len(seen) >= 3, f"Play showed only {len(seen)} pictures"
    assert v.shot("6-played-no-kernel") != shot_dead
    assert not _kernel_ids(server), "a kernel was started again"
