"""Test helpers shared by the unit tests (the data directory is set by the root conftest.py)."""
import importlib
import os

import pytest

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
