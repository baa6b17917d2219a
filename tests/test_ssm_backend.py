"""Backends: "cuda" on CPU tensors is a clear error, "auto" on CPU picks "torch", mamba_ssm is never
imported by the library on CPU."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffussm_lib.ssm import (
    BackendUnavailableError,
    BidirectionalSSM,
    causal_conv1d,
    resolve_backend,
    selective_scan,
)

REPO = Path(__file__).resolve().parents[1]


def scan_args(L=5, b=1, d=2, n=3):
    return (
        torch.randn(b, d, L),
        torch.rand(b, d, L),
        -torch.rand(d, n),
        torch.randn(b, n, L),
        torch.randn(b, n, L),
    )


def test_cuda_backend_on_cpu_tensors_is_a_clear_error():
    with pytest.raises(BackendUnavailableError, match="needs CUDA tensors.*cpu"):
        selective_scan(*scan_args(), backend="cuda")
    with pytest.raises(BackendUnavailableError, match="causal-conv1d.*CUDA tensors"):
        causal_conv1d(torch.randn(1, 2, 5), torch.randn(2, 4), backend="cuda")
    layer = BidirectionalSSM(4, core="selective", backend="cuda")
    with pytest.raises(BackendUnavailableError, match="CUDA tensors"):
        layer(torch.randn(1, 5, 4))


def test_auto_on_cpu_picks_torch():
    assert resolve_backend("auto", "selective_scan", torch.randn(2)) == "torch"
    assert resolve_backend("auto", "causal_conv1d", torch.randn(2)) == "torch"
    for core in ("s4d", "selective"):
        layer = BidirectionalSSM(4, core=core, backend="auto")
        assert layer.backend_used is None
        layer(torch.randn(1, 5, 4))
        assert layer.backend_used == "torch"


def test_auto_gives_the_torch_result_on_cpu():
    args = scan_args()
    torch.testing.assert_close(
        selective_scan(*args, backend="auto"), selective_scan(*args, backend="torch")
    )


def test_unknown_backend_and_s4d_cuda_are_errors():
    with pytest.raises(ValueError, match="backend must be one of"):
        BidirectionalSSM(4, backend="triton")
    with pytest.raises(ValueError, match="no fused CUDA kernel"):
        BidirectionalSSM(4, core="s4d", backend="cuda")


@pytest.mark.slow
def test_library_never_imports_mamba_ssm_on_cpu():
    """In a fresh interpreter: run both cores with backend auto/torch, then check sys.modules."""
    if torch.cuda.is_available():
        pytest.skip("the rule is about machines without CUDA")
    code = (
        "import sys, torch\n"
        "from diffussm_lib.ssm import BidirectionalSSM\n"
        "for core in ('s4d', 'selective'):\n"
        "    for backend in ('auto', 'torch'):\n"
        "        BidirectionalSSM(4, core=core, backend=backend)(torch.randn(1, 6, 4)).sum().backward()\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('mamba_ssm', 'causal_conv1d', 'selective_scan_cuda', 'causal_conv1d_cuda')]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
