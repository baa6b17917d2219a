"""From pixels to tokens and back: patchify / unpatchify in raster order, the input projection
(``PatchEmbed``) and the output head (``FinalLayer``), shared by DiffuSSM and the DiT baseline.

Raster order
------------
An image (B, C, H, W) is cut into non-overlapping p x p patches; patch (r, s) (row r, column s of
the (H/p) x (W/p) grid) becomes token ``l = r * (W/p) + s``, a vector of ``C * p * p`` values ordered
(channel, row in patch, column in patch). With p = 1 a token is one pixel (the paper's setting).

Grouping (the hourglass)
------------------------
DiffuSSM's residual stream holds ``J = L / M`` tokens: stream token ``j`` carries the M consecutive
raster tokens ``l = jM + k``, k = 0..M-1 (their values concatenated before the input projection).
``group_tokens`` / ``ungroup_tokens`` do this regrouping; the DiT baseline uses M = 1.

Shapes: ``B`` batch, ``C`` channels, ``H, W`` image size, ``p`` patch size, ``L = H W / p^2``,
``M`` group size (hourglass ratio), ``J = L / M``, ``D`` width.
"""
from __future__ import annotations

import torch
from torch import nn

from .conditioning import AdaLNZero, modulate


def check_image_size(H: int, W: int, patch_size: int = 1, ratio: int = 1) -> int:
    """Validate an image size for patch size p and hourglass ratio M; return ``L = H W / p^2``.

    Raises ``ValueError`` naming H, W, p and M when H or W is not a multiple of p, or when the
    number of tokens L is not a multiple of M (so that ``J = L / M`` is an integer).
    """
    p, M = int(patch_size), int(ratio)
    if p < 1 or M < 1:
        raise ValueError(f"patch size p={p} and hourglass ratio M={M} must be >= 1")
    if H < 1 or W < 1:
        raise ValueError(f"image size H={H}, W={W} must be positive")
    if H % p or W % p:
        raise ValueError(f"image size H={H}, W={W} is not divisible by the patch size p={p} "
                         f"(H and W must be multiples of p; with M={M}, H*W must be a multiple of M*p*p={M * p * p})")
    L = (H // p) * (W // p)
    if L % M:
        raise ValueError(f"image size H={H}, W={W} with patch size p={p} gives L=H*W/p^2={L} tokens, not divisible "
                         f"by the hourglass ratio M={M} (H*W={H * W} must be a multiple of M*p*p={M * p * p})")
    return L


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """x (B, C, H, W) -> tokens (B, L, C p^2), raster order over the patch grid."""
    B, C, H, W = x.shape
    p = patch_size
    check_image_size(H, W, p)
    h, w = H // p, W // p
    x = x.reshape(B, C, h, p, w, p).permute(0, 2, 4, 1, 3, 5)        # (B, h, w, C, p, p)
    return x.reshape(B, h * w, C * p * p)


def unpatchify(tokens: torch.Tensor, patch_size: int, H: int, W: int) -> torch.Tensor:
    """tokens (B, L, C p^2) -> image (B, C, H, W); the inverse of ``patchify``."""
    B, L, F = tokens.shape
    p = patch_size
    check_image_size(H, W, p)
    h, w = H // p, W // p
    if L != h * w or F % (p * p):
        raise ValueError(f"unpatchify: tokens {tuple(tokens.shape)} do not fit an image {H}x{W} with patch size {p}")
    C = F // (p * p)
    x = tokens.reshape(B, h, w, C, p, p).permute(0, 3, 1, 4, 2, 5)   # (B, C, h, p, w, p)
    return x.reshape(B, C, H, W)


def group_tokens(tokens: torch.Tensor, ratio: int) -> torch.Tensor:
    """(B, L, F) -> (B, J, M F): stream token j concatenates raster tokens jM, ..., jM + M - 1."""
    B, L, F = tokens.shape
    if L % ratio:
        raise ValueError(f"group_tokens: L={L} tokens is not divisible by the hourglass ratio M={ratio}")
    return tokens.reshape(B, L // ratio, ratio * F)


def ungroup_tokens(tokens: torch.Tensor, ratio: int) -> torch.Tensor:
    """(B, J, M F) -> (B, L, F), the inverse of ``group_tokens``."""
    B, J, MF = tokens.shape
    if MF % ratio:
        raise ValueError(f"ungroup_tokens: feature width {MF} is not divisible by M={ratio}")
    return tokens.reshape(B, J * ratio, MF // ratio)


class PatchEmbed(nn.Module):
    """Input projection: image (B, C, H, W) -> stream tokens (B, L/M, D).

    Patchify (p x p, raster order), group M consecutive tokens, then one Linear(M C p^2 -> D).
    DiffuSSM uses M = hourglass ratio; DiT uses M = 1.
    """

    def __init__(self, in_channels: int, dim: int, patch_size: int = 1, group: int = 1):
        super().__init__()
        self.in_channels, self.patch_size, self.group = in_channels, patch_size, group
        self.proj = nn.Linear(group * in_channels * patch_size * patch_size, dim)
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) -> (B, J, D) with J = H W / (p^2 M)."""
        if x.ndim != 4:
            raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(x.shape)}")
        B, C, H, W = x.shape
        if C != self.in_channels:
            raise ValueError(f"expected {self.in_channels} image channels, got x of shape {tuple(x.shape)}")
        check_image_size(H, W, self.patch_size, self.group)
        return self.proj(group_tokens(patchify(x, self.patch_size), self.group))


class FinalLayer(nn.Module):
    """Output head: adaLN (shift, scale; zero-initialised) + LayerNorm + Linear back to pixels.

    tokens (B, J, D), c (B, D) -> image (B, C_out, H, W). The Linear maps each stream token to its
    M patches of ``C_out p^2`` values and is zero-initialised (the model predicts 0 at init, as DiT).
    """

    def __init__(self, dim: int, out_channels: int, patch_size: int = 1, group: int = 1):
        super().__init__()
        self.out_channels, self.patch_size, self.group = out_channels, patch_size, group
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = AdaLNZero(dim, 2)
        self.linear = nn.Linear(dim, group * out_channels * patch_size * patch_size)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, tokens: torch.Tensor, c: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """tokens (B, J, D), c (B, D) -> (B, C_out, H, W)."""
        shift, scale = self.ada(c)
        out = self.linear(modulate(self.norm(tokens), shift, scale))          # (B, J, M C_out p^2)
        return unpatchify(ungroup_tokens(out, self.group), self.patch_size, H, W)
