"""The DiffuSSM denoiser: N hourglass blocks over a residual stream of J = L / M tokens.

    x (B, C, H, W) -> p x p patches in raster order (B, L, C p^2)
                   -> group M consecutive tokens, Linear -> stream (B, J, D)
                   -> N x DiffuSSMBlock (each runs its dense layers on J tokens, its SSM on L)
                   -> adaLN + Linear back to M patches per stream token -> (B, C or 2C, H, W)

No positional embedding: the SSM's convolution (or scan) already knows the order of the tokens.
With p = 1 (the paper's setting) the SSM runs on every pixel: the long-range path is not patched.

Shapes: ``B`` batch, ``C`` channels, ``H, W`` image size, ``p`` patch, ``L = H W / p^2``, ``M`` ratio,
``J = L / M``, ``D`` width, ``N`` SSM state size.
"""
from __future__ import annotations

from typing import Callable, Optional

from torch import nn

from .denoiser import Denoiser
from .hourglass import DiffuSSMBlock, make_ssm


class DiffuSSM(Denoiser):
    """DiffuSSM denoiser: x (B, C, H, W), t (B,), y (B,) or None -> (B, C or 2C, H, W).

    ``ssm_factory(dim) -> module`` overrides how each block's SSM is built (default: the library's
    ``BidirectionalSSM(dim, core=ssm_core, bidirectional=..., d_state=ssm_state, backend=ssm_backend)``).
    Images must satisfy: H, W multiples of p and L = H W / p^2 a multiple of M.
    """

    def __init__(self, in_channels: int = 1, hidden_dim: int = 128, depth: int = 6, patch_size: int = 1,
                 hourglass_ratio: int = 2, num_classes: int = 10, learn_sigma: bool = False,
                 ssm_core: str = "s4d", ssm_state: Optional[int] = None, bidirectional: bool = True,
                 ssm_backend: str = "auto", ssm_factory: Optional[Callable[[int], nn.Module]] = None):
        super().__init__(in_channels=in_channels, hidden_dim=hidden_dim, patch_size=patch_size,
                         group=hourglass_ratio, num_classes=num_classes, learn_sigma=learn_sigma)
        self.hourglass_ratio = hourglass_ratio
        self.bidirectional = bidirectional
        if ssm_factory is None:
            def ssm_factory(dim: int) -> nn.Module:
                return make_ssm(dim, ssm_core, bidirectional, ssm_state, ssm_backend)
        self.blocks = nn.ModuleList(DiffuSSMBlock(hidden_dim, hourglass_ratio, ssm_factory(hidden_dim))
                                    for _ in range(depth))

    @property
    def ssm_backend_used(self) -> str | None:
        """Which SSM implementation ran in the last forward ("torch" / "cuda"), None before any."""
        used = {getattr(b.hourglass.ssm, "backend_used", None) for b in self.blocks} - {None}
        return ", ".join(sorted(used)) if used else None
