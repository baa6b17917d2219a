"""The fast CPU kernels, beside the readable forms they replace (``backend="torch"``, the default).

Each module holds one idea, and a test proves it equal to the readable form it replaces (outputs
and gradients, float64): read the readable form first, then open these.

Modules (and the readable form each replaces)
-------
s4d_kernel     the S4D kernel as a factored Vandermonde product, z^(Qa+b) = z^b z^(Qa), with a
               hand-written backward (``ssm.s4d.s4d_kernel_vandermonde``)
fft_conv       the causal and the bidirectional FFT convolutions with hand-written backwards, the
               bidirectional one in batch chunks sized for a CPU cache (``ssm.fft_conv``)
scan           the blocked selective scan with a hand-written backward
               (``ssm.scan.selective_scan_sequential``)
offset_linear  the hourglass's M per-offset linear maps without copies (the einsum of
               ``models.diffussm.OffsetLinear``)

``ssm.backend`` says which form runs: ``"reference"`` the readable one, ``"torch"`` these,
``"cuda"`` mamba-ssm's fused kernels, ``"auto"`` the fastest available.
"""

from .fft_conv import bidirectional_fft_conv_fast, fft_causal_conv_fast
from .offset_linear import offset_linear_fast
from .s4d_kernel import s4d_kernel_fast
from .scan import selective_scan_torch

__all__ = [
    "bidirectional_fft_conv_fast",
    "fft_causal_conv_fast",
    "offset_linear_fast",
    "s4d_kernel_fast",
    "selective_scan_torch",
]
