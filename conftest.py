"""Repository-wide pytest setup (loaded for tests/ and notebooks/ alike).

Tests, and the notebooks nbval executes (their kernels inherit this environment), read MNIST from
the sibling folder ``../shared/data`` when it exists and ``DIFFUSSM_DATA_DIR`` is unset; elsewhere
the loader uses its cache directory and downloads.
"""
import os
from pathlib import Path

_shared = Path(__file__).resolve().parent.parent / "shared" / "data"
if not os.environ.get("DIFFUSSM_DATA_DIR") and (_shared / "mnist").is_dir():
    os.environ["DIFFUSSM_DATA_DIR"] = str(_shared)
