"""Shared test setup.

Tests (and the notebooks nbval executes, which inherit this environment) read MNIST from the
repository's sibling folder ``../shared/data`` when it exists and ``DIFFUSSM_DATA_DIR`` is unset;
elsewhere the loader uses its cache directory and downloads.
"""
import importlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_shared = REPO.parent / "shared" / "data"
if not os.environ.get("DIFFUSSM_DATA_DIR") and (_shared / "mnist").is_dir():
    os.environ["DIFFUSSM_DATA_DIR"] = str(_shared)

REQUIRE_ORACLES = os.environ.get("DIFFUSSM_REQUIRE_ORACLES", "") == "1"


def import_oracle(name: str):
    """Import a test-only reference package, skipping if absent, unless CI demands it
    (``DIFFUSSM_REQUIRE_ORACLES=1``): then a missing oracle fails the test."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        if REQUIRE_ORACLES:
            pytest.fail(f"oracle package '{name}' is required (DIFFUSSM_REQUIRE_ORACLES=1) but does not import: {e}")
        pytest.skip(f"oracle package '{name}' not installed")
