"""The bidirectional SSM layer of DiffuSSM: (B, L, D) -> (B, L, 2D).

An SSM is causal: output t sees inputs 0..t only. For an image flattened in raster order that
means a pixel never sees the rows below it. The bidirectional layer adds a second SSM, with its own
parameters, run on the *reversed* sequence: flip along L, scan, flip back (for S4D the same is done
without flipping, as one correlation: ``S4D.bidirectional``), so that its output t sees inputs
t..L-1 (BiGS, which DiffuSSM follows, also runs two directions, but multiplies their projected
outputs). Here the two directions are **concatenated** along the feature axis (forward first, then
reversed), not summed: the paper's Y = Bidirectional-SSM(U) lives in R^{L x 2D}, and keeping both
halves lets the next projection (the hourglass down-projection) weigh past and future context
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
        hidden_dim: D, the feature width of the input.
        core: ``"s4d"`` (diagonal time-invariant SSM by FFT convolution, as in the paper) or
            ``"selective"`` (Mamba-style selective SSM with a short causal conv and gating).
        bidirectional: True for two directions (out_dim = 2D), False for one causal SSM (D).
        ssm_state: N; default 64 for ``"s4d"`` (as in BiGS; 32 complex modes), 16 for
            ``"selective"``.
        backend: ``"auto"``, ``"reference"``, ``"torch"`` or ``"cuda"`` (see ``backend.py``). Only
            the selective core has fused CUDA kernels (mamba-ssm, causal-conv1d); the S4D core is
            an FFT convolution in PyTorch on any device, so ``"cuda"`` with ``core="s4d"`` is an
            error.
        core_kwargs: passed to the core: ``init``, ``dt_min``, ``dt_max`` for S4D (see ``S4D``);
            ``d_conv``, ``expand``, ``dt_rank``, ``gate``, ``dt_min``, ``dt_max`` for the selective
            core (see ``SelectiveSSM``).
    Forward: x (B, L, D) float -> (B, L, out_dim); any L >= 1.
    After a forward, ``backend_used`` says which implementation ran (``"reference"``, ``"torch"``
    or ``"cuda"``).
    """

    def __init__(
        self,
        hidden_dim: int,
        core: str = "s4d",
        bidirectional: bool = True,
        ssm_state: int | None = None,
        backend: str = "auto",
        **core_kwargs,
    ):
        super().__init__()
        if core not in CORES:
            raise ValueError(f"core must be one of {CORES}, got {core!r}")
        check_backend_name(backend)
        self.hidden_dim, self.core, self.bidirectional = hidden_dim, core, bidirectional
        self.backend = backend
        self.n_dir = 2 if bidirectional else 1
        self.out_dim = self.n_dir * hidden_dim
        self.backend_used: str | None = None
        if core == "s4d":
            self.ssm_state = 64 if ssm_state is None else ssm_state
            # one S4D bank holds both directions: channels [0, D) forward, [D, 2D) reversed
            self.s4d = S4D(self.n_dir * hidden_dim, self.ssm_state, backend=backend, **core_kwargs)
        else:
            self.ssm_state = 16 if ssm_state is None else ssm_state
            make = lambda: SelectiveSSM(
                hidden_dim,
                self.ssm_state,
                backend=backend,  # noqa: E731
                **core_kwargs,
            )
            self.fwd = make()
            self.bwd = make() if bidirectional else None

    def extra_repr(self) -> str:
        return (
            f"hidden_dim={self.hidden_dim}, core={self.core!r}, "
            f"bidirectional={self.bidirectional}, ssm_state={self.ssm_state}, "
            f"out_dim={self.out_dim}, backend={self.backend!r}"
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, L, D) -> (B, L, 2D) ([forward, reversed]), or (B, L, D) when causal."""
        if x.dim() != 3 or x.shape[-1] != self.hidden_dim or x.shape[1] < 1:
            raise ValueError(
                f"BidirectionalSSM expects x of shape (B, L>=1, D={self.hidden_dim}), "
                f"got {tuple(x.shape)}"
            )
        B, L, D = x.shape
        if self.core == "s4d":
            u = x.transpose(1, 2)  # (B, D, L), a view
            self.backend_used = self.s4d.form
            if not self.bidirectional:
                return self.s4d(u).transpose(1, 2).contiguous()  # (B, L, D)
            y = self.s4d.bidirectional(u)  # (B, 2, D, L)
            return y.permute(0, 3, 1, 2).reshape(B, L, 2 * D)  # (B, L, 2D)
        y = self.fwd(x)  # (B, L, D)
        if self.bidirectional:
            y = torch.cat([y, self.bwd(x.flip(1)).flip(1)], dim=-1)  # (B, L, 2D)
        self.backend_used = self.fwd.backend_used
        return y
