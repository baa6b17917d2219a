"""State space layers (notebooks 01-02): S4D, the selective scan, causal conv1d, the bidirectional layer.

Modules
-------
backend        "auto" / "torch" / "cuda": which implementation runs, and the errors when CUDA
               kernels are asked for but unavailable
s4d            S4D: initialisation, ZOH, the Vandermonde kernel (hand-written backward), the ``S4D`` module
fft_conv       FFT convolutions: causal, and both directions from one FFT (hand-written backwards)
scan           the selective scan (mamba-ssm's ``selective_scan_fn`` layout): definition + fast scan
conv1d         the short causal depthwise convolution (causal-conv1d's ``causal_conv1d_fn`` layout)
selective      ``SelectiveSSM``: a Mamba-style selective SSM for one direction
bidirectional  ``BidirectionalSSM``: forward + truly reversed SSM, concatenated ((B, L, D) -> (B, L, 2D))
"""
from .backend import BackendUnavailableError, resolve_backend
from .bidirectional import BidirectionalSSM
from .conv1d import causal_conv1d, causal_conv1d_torch
from .s4d import S4D, fft_causal_conv, s4d_kernel, s4d_kernel_vandermonde, s4d_recurrence
from .scan import selective_scan, selective_scan_sequential, selective_scan_torch
from .selective import SelectiveSSM

__all__ = [
    "BackendUnavailableError", "resolve_backend",
    "BidirectionalSSM", "SelectiveSSM", "S4D",
    "selective_scan", "selective_scan_sequential", "selective_scan_torch",
    "causal_conv1d", "causal_conv1d_torch",
    "fft_causal_conv", "s4d_kernel", "s4d_kernel_vandermonde", "s4d_recurrence",
]
