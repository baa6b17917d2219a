"""Test oracles: the skip/fail rule for reference packages, and test-only access to the pure-PyTorch
references of mamba-ssm and causal-conv1d on a CPU machine.

``selective_scan_ref`` (mamba_ssm.ops.selective_scan_interface) and ``causal_conv1d_ref``
(causal_conv1d.causal_conv1d_interface) are plain PyTorch, but the modules that define them import
the compiled CUDA extensions ``selective_scan_cuda`` / ``causal_conv1d_cuda`` at import time, and
``mamba_ssm/__init__.py`` imports every model in the package (Mamba2, Mamba3, Triton kernels...).
On a CPU install (``MAMBA_SKIP_CUDA_BUILD=TRUE``) the extensions do not exist, so we:

1. register stand-in modules for the missing extensions in ``sys.modules`` (only when the real ones
   do not import; any attribute access on a stand-in raises a clear error);
2. import ``mamba_ssm`` as a bare package (its ``__path__`` only, without running its ``__init__``),
   so that importing the one submodule we need does not drag the whole package in;
3. stand in for ``mamba_ssm.ops.triton.layer_norm`` too if Triton is not installed (the interface
   module imports one helper from it that the reference never calls).

This happens only inside the tests; the library itself never imports mamba_ssm on CPU.

Skip/fail rule: if a package is not installed (or its reference does not import), the test is
skipped -- unless ``DIFFUSSM_REQUIRE_ORACLES=1`` (set by ``.ci/run``), in which case it fails.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types

import pytest

REQUIRE_ENV = "DIFFUSSM_REQUIRE_ORACLES"


def oracles_required() -> bool:
    """True when the environment demands that oracle tests run (CI)."""
    return os.environ.get(REQUIRE_ENV, "").strip() == "1"


def _unavailable(what: str, why: str):
    msg = f"oracle {what} unavailable: {why}"
    if oracles_required():
        pytest.fail(f"{msg} ({REQUIRE_ENV}=1: oracle tests must run here, not skip)", pytrace=False)
    pytest.skip(msg)


def import_oracle(name: str):
    """Import a test-only reference package (e.g. ``diffusers``) under the same skip/fail rule."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        _unavailable(f"package '{name}'", str(e))


class _StandIn(types.ModuleType):
    """A module standing in for a missing compiled extension: importable, unusable."""

    __diffussm_stand_in__ = True

    def __getattr__(self, attr):
        raise AttributeError(f"{self.__name__}.{attr}: this is a test stand-in for a compiled CUDA extension "
                           "that is not installed; only the pure-PyTorch reference functions can be used")


def _stand_in_for(ext: str) -> None:
    """Put a stand-in for the compiled extension ``ext`` in sys.modules unless the real one imports."""
    if ext in sys.modules:
        return
    try:
        importlib.import_module(ext)
    except ImportError:
        sys.modules[ext] = _StandIn(ext)


def _bare_package(name: str) -> None:
    """Register package ``name`` without executing its ``__init__`` (submodules still import)."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    pkg = types.ModuleType(name)
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__spec__ = spec
    sys.modules[name] = pkg


def load_selective_scan_ref():
    """mamba-ssm's ``selective_scan_ref`` (skip or fail if mamba-ssm is not installed)."""
    if importlib.util.find_spec("mamba_ssm") is None:
        _unavailable("mamba_ssm.selective_scan_ref", "mamba-ssm is not installed")
    try:
        _stand_in_for("selective_scan_cuda")
        _stand_in_for("causal_conv1d_cuda")        # the interface optionally imports causal_conv1d
        _bare_package("mamba_ssm")
        if importlib.util.find_spec("triton") is None and "mamba_ssm.ops.triton.layer_norm" not in sys.modules:
            for pkg in ("mamba_ssm.ops", "mamba_ssm.ops.triton"):
                importlib.import_module(pkg)
            ln = _StandIn("mamba_ssm.ops.triton.layer_norm")
            ln._layer_norm_fwd = None               # imported by name, never called by the reference
            sys.modules["mamba_ssm.ops.triton.layer_norm"] = ln
        module = importlib.import_module("mamba_ssm.ops.selective_scan_interface")
        return module.selective_scan_ref
    except Exception as e:  # noqa: BLE001
        _unavailable("mamba_ssm.selective_scan_ref", f"{type(e).__name__}: {e}")


def load_causal_conv1d_ref():
    """causal-conv1d's ``causal_conv1d_ref`` (skip or fail if causal-conv1d is not installed)."""
    if importlib.util.find_spec("causal_conv1d") is None:
        _unavailable("causal_conv1d.causal_conv1d_ref", "causal-conv1d is not installed")
    try:
        _stand_in_for("causal_conv1d_cuda")
        module = importlib.import_module("causal_conv1d.causal_conv1d_interface")
        return module.causal_conv1d_ref
    except Exception as e:  # noqa: BLE001
        _unavailable("causal_conv1d.causal_conv1d_ref", f"{type(e).__name__}: {e}")
