"""The DiffuSSM block: a gated hourglass around a bidirectional SSM, with adaLN-Zero conditioning.

The paper's equations (Yan, Gu, Rush 2023, Sec. 4), ratio M, ``J = L / M``, ``l = jM + k``:

    up:    U_l = act(W^up_k act(W^0 I_j))                      U in R^{L x D}
    SSM:   Y = BidirectionalSSM(U)                              Y in R^{L x 2D}
    down:  I'_{j, k-th chunk} = act(W^down_k Y_{jM+k})          I' in R^{J x 2D}  (M chunks of 2D/M)
    gate:  O_j = W^3 (act(W^2 I'_j) * act(W^1 I_j))             O in R^{J x D}

Our reading of the ambiguous points (the notebook 03 discusses each one):

* The block's input and output are **J tokens of width D**, as the equations index ``I_j`` and
  ``O_j``. The residual stream of the whole denoiser therefore has J tokens: the L -> J shortening
  happens once, in the input projection (``PatchEmbed`` with ``group = M``: stream token j holds the
  M consecutive raster tokens jM..jM+M-1). Inside every block the SSM sees all L positions, built by
  the per-offset up-projections. This reading reproduces the paper's per-layer FLOP count
  ``13 J D^2 + L D^2`` (multiply-adds): W^0 J D^2, W^up L D^2, W^down 4 J D^2, W^1 2 J D^2,
  W^2 4 J D^2, W^3 2 J D^2, so the gate's hidden width is 2D.
* ``act`` (the paper's sigma) is GELU everywhere, as in BiGS; W^3 has no activation.
* The down step **concatenates** the M offsets on features (each W^down_k maps 2D -> 2D/M), as the
  equation's index ``D_m k : D_m (k+1)`` says; it does not sum or average them.
* Both gate branches read the same (normalised, modulated) block input; the skip connection and the
  conditioning follow DiT's adaLN-Zero:
  ``h = I + gate(c) * Hourglass(LN(I) * (1 + scale(c)) + shift(c))``, with shift/scale/gate from a
  zero-initialised Linear, so every block is exactly the identity at initialisation.

Shapes: ``B`` batch, ``L`` SSM length, ``M`` ratio, ``J = L/M`` stream length, ``D`` width.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .conditioning import AdaLNZero, modulate


def act(x: torch.Tensor) -> torch.Tensor:
    """The paper's sigma: GELU (exact erf form)."""
    return F.gelu(x)


class OffsetLinear(nn.Module):
    """M independent linear maps, one per offset k: x (..., M, F_in) -> (..., M, F_out).

    ``weight`` (M, F_out, F_in), ``bias`` (M, F_out); offset k uses ``weight[k]``. Initialised like
    ``nn.Linear`` (uniform in +-1/sqrt(F_in)).
    """

    def __init__(self, ratio: int, in_features: int, out_features: int):
        super().__init__()
        self.ratio, self.in_features, self.out_features = ratio, in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(ratio, out_features, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(ratio, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., M, F_in) -> (..., M, F_out)."""
        return torch.einsum("...kf,kgf->...kg", x, self.weight) + self.bias


class Hourglass(nn.Module):
    """The paper's block body (no norm, no skip): I (B, J, D) -> O (B, J, D), SSM on L = J M tokens.

    ``ssm`` is any module mapping (B, L, D) -> (B, L, ssm.out_dim) (2D when bidirectional, D for the
    causal ablation); W^down_k then maps ``ssm.out_dim -> 2D/M`` so I' always has width 2D.

    Parameters: ``w0`` Linear(D, D); ``w_up`` Linear(D, M D) whose output chunk k (rows kD..kD+D-1)
    is W^up_k; ``w_down`` OffsetLinear(M, out_dim, 2D/M); ``w1`` Linear(D, 2D); ``w2`` Linear(2D, 2D);
    ``w3`` Linear(2D, D).
    """

    def __init__(self, dim: int, ratio: int, ssm: nn.Module):
        super().__init__()
        if ratio < 1:
            raise ValueError(f"hourglass ratio M must be >= 1, got {ratio}")
        if (2 * dim) % ratio:
            raise ValueError(f"width 2D={2 * dim} must be divisible by the hourglass ratio M={ratio} "
                             f"(each W^down_k maps to 2D/M features)")
        if not hasattr(ssm, "out_dim"):
            raise TypeError("the SSM module must expose `out_dim` (its output width)")
        self.dim, self.ratio = dim, ratio
        self.w0 = nn.Linear(dim, dim)
        self.w_up = nn.Linear(dim, ratio * dim)
        self.ssm = ssm
        self.w_down = OffsetLinear(ratio, ssm.out_dim, 2 * dim // ratio)
        self.w1 = nn.Linear(dim, 2 * dim)
        self.w2 = nn.Linear(2 * dim, 2 * dim)
        self.w3 = nn.Linear(2 * dim, dim)

    def up(self, i: torch.Tensor) -> torch.Tensor:
        """I (B, J, D) -> U (B, L, D), ``U_{jM+k} = act(W^up_k act(W^0 I_j))``."""
        B, J, D = i.shape
        u = act(self.w_up(act(self.w0(i))))                  # (B, J, M D): chunk k = offset k
        return u.reshape(B, J * self.ratio, D)               # (B, L, D), l = jM + k

    def down(self, y: torch.Tensor) -> torch.Tensor:
        """Y (B, L, F) -> I' (B, J, 2D): chunk k of I'_j is ``act(W^down_k Y_{jM+k})``."""
        B, L, Fy = y.shape
        J = L // self.ratio
        out = act(self.w_down(y.reshape(B, J, self.ratio, Fy)))   # (B, J, M, 2D/M)
        return out.reshape(B, J, 2 * self.dim)

    def gate(self, i_prime: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """I' (B, J, 2D), I (B, J, D) -> O (B, J, D) = W^3 (act(W^2 I') * act(W^1 I))."""
        return self.w3(act(self.w2(i_prime)) * act(self.w1(i)))

    def forward(self, i: torch.Tensor) -> torch.Tensor:
        """I (B, J, D) -> O (B, J, D)."""
        if i.ndim != 3 or i.shape[-1] != self.dim:
            raise ValueError(f"Hourglass expects (B, J, D={self.dim}), got {tuple(i.shape)}")
        return self.gate(self.down(self.ssm(self.up(i))), i)


def make_ssm(dim: int, core: str = "s4d", bidirectional: bool = True, d_state: int | None = None,
             backend: str = "auto") -> nn.Module:
    """The library's ``BidirectionalSSM`` (imported lazily): (B, L, D) -> (B, L, 2D or D)."""
    from .ssm import BidirectionalSSM
    return BidirectionalSSM(dim, core=core, bidirectional=bidirectional, d_state=d_state, backend=backend)


class DiffuSSMBlock(nn.Module):
    """One DiffuSSM layer: ``h = I + gate * Hourglass(modulate(LN(I), shift, scale))``.

    I (B, J, D), c (B, D) -> (B, J, D). shift, scale, gate come from ``AdaLNZero(c)`` (zero at init,
    so the block is the identity at init). Pass ``ssm`` to use a given module; otherwise the
    library's BidirectionalSSM is built from ``core``, ``bidirectional``, ``d_state``, ``backend``.
    """

    def __init__(self, dim: int, ratio: int = 2, ssm: nn.Module | None = None, *, core: str = "s4d",
                 bidirectional: bool = True, d_state: int | None = None, backend: str = "auto"):
        super().__init__()
        if ssm is None:
            ssm = make_ssm(dim, core, bidirectional, d_state, backend)
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = AdaLNZero(dim, 3)
        self.hourglass = Hourglass(dim, ratio, ssm)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x (B, J, D), c (B, D) -> (B, J, D)."""
        shift, scale, gate = self.ada(c)
        return x + gate[:, None, :] * self.hourglass(modulate(self.norm(x), shift, scale))
