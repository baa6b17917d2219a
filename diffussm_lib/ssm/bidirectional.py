"""The bidirectional SSM layer of DiffuSSM: (B, L, D) -> (B, L, 2D).

An SSM is causal: output t sees inputs 0..t only. For an image flattened in raster order that
means a pixel never sees the rows below it. The bidirectional layer adds a second SSM, with its own
parameters, run on the *reversed* sequence: flip along L, scan, flip back (for S4D the same is done
without flipping, as one correlation: ``S4D.bidirectional``), so that its output t
sees inputs t..L-1 (BiGS, which DiffuSSM follows, also runs two directions, but multiplies their
projected outputs). Here the two directions are **concatenated** along the feature axis (forward
first, then reversed), not summed: the paper's Y = Bidirectional-SSM(U) lives in R^{L x 2D}, and keeping
both halves lets the next projection (the hourglass down-projection) weigh past and future context
separately; a sum would force one shared weighting of the two.

With ``bidirectional=False`` the layer is a single causal SSM and returns (B, L, D).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .backend import check_backend_name
from .s4d import S4D
from .selective import SelectiveSSM

CORES = ("s4d", "selective")


class BidirectionalSSM(nn.Module):
    """Forward-direction and reversed-direction SSMs, outputs concatenated.

    Args:
        d_model: D, the feature width of the input.
        core: ``"s4d"`` (diagonal time-invariant SSM by FFT convolution, as in the paper) or
            ``"selective"`` (Mamba-style selective SSM with a short causal conv and gating).
        bidirectional: True for two directions (out_dim = 2D), False for one causal SSM (out_dim = D).
        d_state: N; default 64 for ``"s4d"`` (as in BiGS; 32 complex modes), 16 for ``"selective"``.
        backend: ``"auto"``, ``"torch"`` or ``"cuda"``. Only the selective core has fused CUDA kernels
            (mamba-ssm, causal-conv1d); the S4D core is an FFT convolution in PyTorch on any device,
            so ``backend="cuda"`` with ``core="s4d"`` is an error.
        core_kwargs: passed to the core: ``init``, ``dt_min``, ``dt_max`` for S4D (see ``S4D``);
            ``d_conv``, ``expand``, ``dt_rank``, ``gate``, ``dt_min``, ``dt_max`` for the selective
            core (see ``SelectiveSSM``).
    Forward: x (B, L, D) float -> (B, L, out_dim); any L >= 1.
    After a forward, ``backend_used`` says which implementation ran (``"torch"`` or ``"cuda"``).
    """

    def __init__(self, d_model: int, core: str = "s4d", bidirectional: bool = True, d_state: int | None = None,
                 backend: str = "auto", **core_kwargs):
        super().__init__()
        if core not in CORES:
            raise ValueError(f"core must be one of {CORES}, got {core!r}")
        check_backend_name(backend)
        self.d_model, self.core, self.bidirectional, self.backend = d_model, core, bidirectional, backend
        self.n_dir = 2 if bidirectional else 1
        self.out_dim = self.n_dir * d_model
        self.backend_used: str | None = None
        if core == "s4d":
            if backend == "cuda":
                raise ValueError("core='s4d' has no fused CUDA kernel (it is an FFT convolution in PyTorch "
                                 "and runs on any device); use backend='auto' or 'torch', or core='selective'")
            self.d_state = 64 if d_state is None else d_state
            # one S4D bank holds both directions: channels [0, D) forward, [D, 2D) reversed
            self.s4d = S4D(self.n_dir * d_model, self.d_state, **core_kwargs)
        else:
            self.d_state = 16 if d_state is None else d_state
            self.fwd = SelectiveSSM(d_model, self.d_state, backend=backend, **core_kwargs)
            self.bwd = SelectiveSSM(d_model, self.d_state, backend=backend, **core_kwargs) if bidirectional else None

    def extra_repr(self) -> str:
        return (f"d_model={self.d_model}, core={self.core!r}, bidirectional={self.bidirectional}, "
                f"d_state={self.d_state}, out_dim={self.out_dim}, backend={self.backend!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.d_model or x.shape[1] < 1:
            raise ValueError(f"BidirectionalSSM expects x of shape (B, L>=1, D={self.d_model}), got {tuple(x.shape)}")
        D = self.d_model
        if self.core == "s4d":
            B, L, _ = x.shape
            u = x.transpose(1, 2)                                              # (B, D, L), a view
            self.backend_used = "torch"
            if not self.bidirectional:
                return self.s4d(u).transpose(1, 2).contiguous()                # (B, L, D)
            y = self.s4d.bidirectional(u)                                      # (B, 2, D, L): both from one FFT of u
            return y.permute(0, 3, 1, 2).reshape(B, L, 2 * D)                  # (B, L, 2D): [forward, reversed]
        y = self.fwd(x)                                                        # (B, L, D)
        used = self.fwd.backend_used
        if self.bidirectional:
            y = torch.cat([y, self.bwd(x.flip(1)).flip(1)], dim=-1)           # (B, L, 2D)
        self.backend_used = used
        return y
