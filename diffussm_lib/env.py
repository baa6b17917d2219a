"""The environment a notebook or script runs in: one-line report, fast-mode knob, seeding, devices.

Every notebook starts with ``print(environment_report())`` so that a reader knows which torch,
which device and which SSM kernels produced the numbers below it.

The fast-mode knob
------------------
``DIFFUSSM_FAST=1`` (set by CI) shrinks training, sampling and evaluation sizes so that every
notebook executes in seconds to a minute on 2 CPU cores. Without it notebooks run the real sizes.
Use ``by_mode(full=..., fast=...)`` rather than reading the variable yourself.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import random
from pathlib import Path

import numpy as np
import torch

from .errors import UserError
from .ssm.backend import probe_kernels

__version__ = "0.1.0"
FAST_ENV_VAR = "DIFFUSSM_FAST"


def env_flag(name: str) -> bool:
    """True when the environment variable ``name`` is set to a true value (1, true, yes, on)."""
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def fast_mode() -> bool:
    """True when ``DIFFUSSM_FAST`` is set to a true value (1, true, yes, on)."""
    return env_flag(FAST_ENV_VAR)


def by_mode(full, fast):
    """Return ``fast`` in fast mode (CI), else ``full``: the one knob that shrinks the course."""
    return fast if fast_mode() else full


def default_device() -> torch.device:
    """CUDA if available, else CPU. (MPS is not used: the FFT paths are unreliable there.)"""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``device`` when given (e.g. "cpu", "cuda:1"), else ``default_device()``.
    The one place where the library chooses a device. A device this torch cannot use raises
    ``UserError`` naming it and what to use instead (``--device``)."""
    if device is None:
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(
            f"unknown device {str(device)!r}: use cpu, cuda or cuda:N (--device)"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = (
                "a CPU-only build"
                if torch.version.cuda is None
                else f"built for CUDA {torch.version.cuda}"
            )
            raise UserError(
                f"device {str(device)!r}: this torch ({torch.__version__}, {build}) "
                "sees no CUDA GPU; use --device cpu, or install a CUDA build of torch "
                "on a machine with a GPU"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(
                f"device {str(device)!r}: there are only {torch.cuda.device_count()} CUDA devices"
            )
    elif dev.type not in ("cpu", "mps"):
        raise UserError(f"device {str(device)!r} is not supported here: use cpu or cuda (--device)")
    return dev


def model_device(model) -> torch.device:
    """The device of a model's first parameter (CPU for a model without parameters)."""
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def hardware_description(device: torch.device, world_size: int = 1) -> str:
    """e.g. "1 x NVIDIA H100 80GB HBM3" or "CPU AMD EPYC ..., 2 torch threads"."""
    if device.type == "cuda":
        return f"{world_size} x {torch.cuda.get_device_name(device)}"
    procs = f" x {world_size} processes" if world_size > 1 else ""
    return f"CPU {cpu_name()}, {torch.get_num_threads()} torch threads{procs}"


def measured_on(records: dict) -> str:
    """Where timings were measured, from {mode: {"hardware": ...}} (``notebook_times.json``'s rows):
    the machine, or "fast: <machine>; full: <machine>" when the modes ran on different ones."""
    machines = {mode: r["hardware"] for mode, r in records.items()}
    if len(set(machines.values())) == 1:
        return next(iter(machines.values()))
    return "; ".join(f"{mode}: {hw}" for mode, hw in machines.items())


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a CPU ``torch.Generator`` seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def fused_kernels_status() -> tuple[bool, str]:
    """Whether mamba-ssm / causal-conv1d fused CUDA kernels are usable here, and why (not).

    The packages are imported only when a CUDA device exists: on CPU their import needs compiled
    extensions that do not exist, and the library never touches them there.
    """
    if not torch.cuda.is_available():
        return False, "no CUDA device"
    missing = [p for p in ("mamba_ssm", "causal_conv1d") if importlib.util.find_spec(p) is None]
    if missing:
        return False, "not installed: " + ", ".join(missing) + " (pip install -e '.[kernels]')"
    errors = probe_kernels()
    if errors:
        return False, "installed but not importable: " + "; ".join(
            f"{k}: {e}" for k, e in errors.items()
        )
    return True, "mamba-ssm + causal-conv1d"


def environment_report() -> str:
    """One line: torch version, device, fused kernels, fast mode."""
    dev = default_device()
    name = (
        torch.cuda.get_device_name(0)
        if dev.type == "cuda"
        else f"{torch.get_num_threads()} CPU threads"
    )
    ok, why = fused_kernels_status()
    kernels = f"yes ({why})" if ok else f"no ({why}; pure-PyTorch SSM backend)"
    return (
        f"torch {torch.__version__} | device {dev.type} ({name}) | fused SSM kernels: {kernels}"
        f" | fast mode {'on' if fast_mode() else 'off'}"
    )
