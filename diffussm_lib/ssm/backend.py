"""Which implementation of each SSM kernel runs: the readable form, our fast kernels, mamba-ssm's.

Four names, one rule each:

``"reference"``  the readable form everywhere (``s4d.py``, ``fft_conv.py``, ``scan.py``, the
                 offset linear of ``models/diffussm.py``), as the notebooks derive it,
                 differentiated by autograd; any device. Slow: the definition the fast kernels
                 are tested against.
``"torch"``      our fast pure-PyTorch kernels (``ssm/kernels/``: hand-written backwards, blocks
                 and chunks sized for a CPU cache); any device; the same results to rounding.
``"cuda"``       mamba-ssm's ``selective_scan_fn`` / causal-conv1d's ``causal_conv1d_fn``. Asking
                 for them when the tensors are not on CUDA, or when the packages do not import, is
                 an error that names the problem; there is never a silent fallback.
``"auto"``       ``"cuda"`` when the tensors are on CUDA (in a dtype the kernels take) and the
                 packages import, else ``"torch"``. If a package is installed but its compiled
                 kernels fail to import, ``"auto"`` runs ``"torch"`` and warns once, naming the
                 import error (``kernel_import_errors()`` lists them; the environment report
                 shows them).

Kernels with no fused CUDA version (the S4D kernel, the FFT convolutions, the offset linear) run
``"reference"`` when asked for and ``"torch"`` otherwise (``torch_form``). The layers record what
ran in ``backend_used``.

The library never imports ``mamba_ssm`` / ``causal_conv1d`` unless the tensors are on a CUDA
device: on a CPU machine their import needs compiled extensions that do not exist.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings

import torch

from ..errors import UserError

BACKENDS = ("auto", "reference", "torch", "cuda")

# The fused kernels take these input dtypes (float64 is not among them).
_CUDA_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# Which package provides which function, and from which module we take it.
_KERNELS = {
    "selective_scan": ("mamba-ssm", "mamba_ssm.ops.selective_scan_interface", "selective_scan_fn"),
    "causal_conv1d": ("causal-conv1d", "causal_conv1d", "causal_conv1d_fn"),
}
_cache: dict[str, object] = {}
_import_errors: dict[str, str] = {}  # kernel -> why its installed package did not import
_warned: set[str] = set()  # kernels whose fallback "auto" has warned about


class KernelFallbackWarning(UserWarning):
    """backend="auto" ran the PyTorch path because an installed fused kernel failed to import."""


class BackendUnavailableError(UserError, RuntimeError):
    """``backend="cuda"`` was asked for and cannot be honoured (package missing, CPU tensors...)."""


def check_backend_name(backend: str) -> str:
    """Return ``backend`` if it is one of ``BACKENDS``; raise otherwise."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def torch_form(backend: str) -> str:
    """For a kernel with no fused CUDA version: ``"reference"`` (the readable form) if ``backend``
    asks for it, else ``"torch"`` (our fast kernel)."""
    return "reference" if check_backend_name(backend) == "reference" else "torch"


def _load(kernel: str):
    """Import and return the fused function for ``kernel``; raise ``ImportError`` naming the
    package."""
    if kernel in _cache:
        return _cache[kernel]
    package, module, attr = _KERNELS[kernel]
    top = module.split(".")[0]
    if importlib.util.find_spec(top) is None:
        raise ImportError(f"package {package!r} is not installed (pip install -e '.[kernels]')")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except Exception as e:  # noqa: BLE001 - a broken install raises all sorts of things
        _import_errors[kernel] = f"{type(e).__name__}: {e}"
        raise ImportError(
            f"package {package!r} is installed but its CUDA kernels do not import: {e}"
        ) from e
    _cache[kernel] = fn
    return fn


def resolve_backend(backend: str, kernel: str, *tensors: torch.Tensor | None) -> str:
    """Decide which implementation of ``kernel`` runs on ``tensors``: ``"reference"``, ``"torch"``
    or ``"cuda"``. Host-side only (devices and dtypes): no tensor value is read.

    Args:
        backend: one of ``BACKENDS``.
        kernel: ``"selective_scan"`` or ``"causal_conv1d"``.
        tensors: the inputs (``None`` entries are ignored); the first one decides the device.
    Raises:
        BackendUnavailableError: ``backend="cuda"`` and the tensors are not CUDA tensors of a dtype
            the kernels take, or the package is missing / does not import.
    """
    if check_backend_name(backend) in ("reference", "torch"):
        return backend
    ts = [t for t in tensors if t is not None]
    on_cuda = bool(ts) and all(t.is_cuda for t in ts)
    dtype_ok = bool(ts) and ts[0].dtype in _CUDA_DTYPES
    package = _KERNELS[kernel][0]
    if backend == "cuda":
        if not on_cuda:
            devices = sorted({str(t.device) for t in ts})
            raise BackendUnavailableError(
                f"backend='cuda' asks for {package}'s fused {kernel} kernel, which needs CUDA "
                f"tensors; got tensors on {devices}. Use backend='torch' or 'auto' on this device."
            )
        if not dtype_ok:
            raise BackendUnavailableError(
                f"backend='cuda': {package}'s {kernel} kernel takes "
                f"{[str(d) for d in _CUDA_DTYPES]}, got {ts[0].dtype}. Use backend='torch' for "
                "this dtype."
            )
        try:
            _load(kernel)
        except ImportError as e:
            raise BackendUnavailableError(f"backend='cuda' needs {package}: {e}") from e
        return "cuda"
    # auto: never touch the packages unless the tensors are on CUDA.
    if not (on_cuda and dtype_ok):
        return "torch"
    try:
        _load(kernel)
    except ImportError as e:
        if kernel in _import_errors and kernel not in _warned:
            _warned.add(kernel)
            warnings.warn(
                f"backend='auto': {e}; running the pure-PyTorch {kernel} instead "
                "(slower). Fix the install, or pass backend='torch' to choose it "
                "explicitly.",
                KernelFallbackWarning,
                stacklevel=3,
            )
        return "torch"
    return "cuda"


def kernel_import_errors() -> dict[str, str]:
    """{kernel: import error} for fused kernels whose package is installed but failed to import
    (filled as the library tries them; ``probe_kernels()`` tries them all)."""
    return dict(_import_errors)


def probe_kernels() -> dict[str, str]:
    """Try to import every fused kernel whose package is installed; return
    ``kernel_import_errors()``. Only on a CUDA machine: on CPU the packages' compiled parts do not
    exist and are never imported."""
    if torch.cuda.is_available():
        for kernel, (_, module, _) in _KERNELS.items():
            if importlib.util.find_spec(module.split(".")[0]) is not None:
                try:
                    _load(kernel)
                except ImportError:
                    pass
    return kernel_import_errors()


def cuda_kernel(kernel: str):
    """The fused function for ``kernel`` (call only after ``resolve_backend`` returned
    ``"cuda"``)."""
    return _load(kernel)
