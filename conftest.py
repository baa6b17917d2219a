"""Repository-wide pytest setup (loaded for tests/ and notebooks/ alike; nbval's kernels inherit it).

* Small sizes by default: ``pytest`` runs every notebook in fast mode (``DIFFUSSM_FAST=1``, about 10
  minutes on 2 CPU cores for the whole suite). ``DIFFUSSM_FULL=1 pytest`` runs them at the sizes a
  student gets when opening a notebook (hours on a CPU). An explicit ``DIFFUSSM_FAST`` wins over both.
* Data: tests and notebooks read MNIST from the sibling folder ``../shared/data`` when it exists and
  ``DIFFUSSM_DATA_DIR`` is unset; elsewhere the loader uses its cache directory and downloads.
"""
import os
from pathlib import Path

from diffussm_lib.env import FAST_ENV_VAR, env_flag

FULL_ENV_VAR = "DIFFUSSM_FULL"

if env_flag(FULL_ENV_VAR):
    os.environ.setdefault(FAST_ENV_VAR, "0")
else:
    os.environ.setdefault(FAST_ENV_VAR, "1")

_shared = Path(__file__).resolve().parent.parent / "shared" / "data"
if not os.environ.get("DIFFUSSM_DATA_DIR") and (_shared / "mnist").is_dir():
    os.environ["DIFFUSSM_DATA_DIR"] = str(_shared)
