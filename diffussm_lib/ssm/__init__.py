"""State space layers (notebooks 01-02): S4D, the selective scan, causal conv1d, the bidirectional
layer. Each module reads like its notebook; the fast CPU kernels live beside them in ``kernels/``.

Modules (reading order)
-----------------------
s4d            S4D: initialisation, ZOH, the Vandermonde kernel, the recurrence, the ``S4D`` module
fft_conv       FFT convolutions: causal, and both directions from one FFT of the input
scan           the selective scan (mamba-ssm's ``selective_scan_fn`` layout): the sequential
               definition, and ``selective_scan``, which runs the backend's implementation
conv1d         the short causal depthwise convolution (causal-conv1d's ``causal_conv1d_fn`` layout)
selective      ``SelectiveSSM``: a Mamba-style selective SSM for one direction
bidirectional  ``BidirectionalSSM``: forward + truly reversed SSM, concatenated
               ((B, L, D) -> (B, L, 2D))
backend        "auto" / "reference" / "torch" / "cuda": which implementation runs, and the errors
               when the fused CUDA kernels are asked for but unavailable
kernels/       the fast CPU kernels ("torch", the default on a CPU): the factored S4D kernel, the
               FFT convolutions and the blocked scan with hand-written backwards, the offset linear;
               each tested equal to its readable form
"""

from .backend import BACKENDS, BackendUnavailableError, resolve_backend
from .bidirectional import BidirectionalSSM
from .conv1d import causal_conv1d, causal_conv1d_torch
from .fft_conv import bidirectional_fft_conv, fft_causal_conv, fft_length
from .kernels import selective_scan_torch
from .s4d import S4D, s4d_kernel_vandermonde, s4d_recurrence
from .scan import selective_scan, selective_scan_sequential
from .selective import SelectiveSSM

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "resolve_backend",
    "BidirectionalSSM",
    "SelectiveSSM",
    "S4D",
    "selective_scan",
    "selective_scan_sequential",
    "selective_scan_torch",
    "causal_conv1d",
    "causal_conv1d_torch",
    "bidirectional_fft_conv",
    "fft_causal_conv",
    "fft_length",
    "s4d_kernel_vandermonde",
    "s4d_recurrence",
]
