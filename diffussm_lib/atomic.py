"""Atomic file writes, used by checkpoints, config copies, sample files, figures and the MNIST download.

``atomic_write(path, write)`` calls ``write(tmp)`` on a temporary file beside ``path``, flushes it to
disk, then renames it over ``path`` in one step (``os.replace``, atomic on POSIX and Windows). A
process killed at any moment, SIGKILL included, leaves either the old complete file or the new one,
never a half-written file under the real name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


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
