"""The oracle rule of tests/oracles.py: a missing mamba-ssm / causal-conv1d skips the oracle
tests, except under DIFFUSSM_REQUIRE_ORACLES=1 (CI), where it fails them."""
import importlib.util

import pytest

import oracles


@pytest.mark.parametrize("loader", [oracles.load_selective_scan_ref, oracles.load_causal_conv1d_ref])
@pytest.mark.parametrize("required", [False, True])
def test_missing_package_skips_or_fails(monkeypatch, loader, required):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("mamba_ssm", "causal_conv1d") else real(name, *a))
    if required:
        monkeypatch.setenv(oracles.REQUIRE_ENV, "1")
        with pytest.raises(pytest.fail.Exception, match="must run here"):
            loader()
    else:
        monkeypatch.delenv(oracles.REQUIRE_ENV, raising=False)
        with pytest.raises(pytest.skip.Exception, match="not installed"):
            loader()
