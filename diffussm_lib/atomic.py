"""Atomic file writes, used by checkpoints, config copies, sample files, figures and the MNIST download.

``atomic_write(path, write)`` calls ``write(tmp)`` on a temporary file beside ``path``, flushes it to
disk, then renames it over ``path`` in one step (``os.replace``, atomic on POSIX and Windows). A
process killed at any moment, SIGKILL included, leaves either the old complete file or the new one,
never a half-written file under the real name.

Benchmark reports (a JSON file of runs that several one-thread processes fill at once) add a lock:
``file_lock(path)`` serialises one read-modify-write of ``path`` between processes, and
``store_runs(out, report, runs)`` writes ``report`` with its runs joined to those another process
stored in ``out`` meanwhile, under that lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)``, flush ``tmp_path`` to disk and rename it to ``path``. If anything
    fails (or the process dies) ``path`` is untouched and the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(
            tmp, 0o666 & ~umask
        )  # mkstemp (and some writers) make 0600; use the usual permissions
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    try:  # make the rename itself durable (POSIX; not possible on Windows)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """``atomic_write`` of a bytes object."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """``atomic_write`` of a string (UTF-8)."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


@contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock for a read-modify-write of ``path``, shared by every process of this
    machine that locks the same path (``flock`` on a lock file in the temporary folder, named by the
    path: nothing lands beside it). Where ``fcntl`` is missing (Windows) there is no lock."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    key = hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"diffussm_{key}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def store_runs(out: str | os.PathLike, report: dict, runs: dict) -> dict:
    """Write ``report`` (JSON) to ``out`` atomically, its ``"runs"`` the stored runs of ``out``
    joined with ``runs`` (``runs`` win where both have an id), under ``file_lock(out)``; returns
    the joined runs. Several processes can store into one report without losing a run."""
    out = Path(out)
    with file_lock(out):
        if out.is_file():
            runs = {**json.loads(out.read_text()).get("runs", {}), **runs}
        report["runs"] = runs
        atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    return runs
