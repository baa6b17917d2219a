"""The DiffuSSM denoiser (notebook 03), from the smallest layer to the full model.

    x (B, C, H, W) -> p x p patches, raster order (B, L, C p^2) -> group M tokens, Linear (B, J, D)
                   -> depth x DiffuSSMBlock (dense layers on J tokens, bidirectional SSM on L)
                   -> adaLN + Linear back to M patches per stream token -> (B, C or 2C, H, W)
    c = TimestepEmbedder(t) + LabelEmbedder(y) (B, D) conditions every block (DiT's adaLN-Zero)

The paper's block (Sec. 4), ``J = L / M``, ``l = jM + k``, act = GELU (as in BiGS):
    up:   U_l = act(W^up_k act(W^0 I_j))              U (L, D)
    SSM:  Y = BidirectionalSSM(U)                      Y (L, 2D)
    down: chunk k of I'_j = act(W^down_k Y_{jM+k})     I' (J, 2D)
    gate: O_j = W^3 (act(W^2 I'_j) * act(W^1 I_j))     O (J, D)
Our reading of its ambiguous points (notebook 03 discusses each): the residual stream holds J tokens,
shortened once by the input projection (this reproduces the paper's ``13 J D^2 + L D^2``); the down
step concatenates the M offsets; skip and conditioning are ``h = I + gate(c) * Hourglass(LN(I) *
(1 + scale(c)) + shift(c))``, the identity at init. No positional embedding: the SSM knows the order.
Left out: the paper's latent input (an SD-VAE encoder; the course works on pixels) and its sizes.
Dimension letters: the glossary in ``diffussm_lib/__init__.py`` (DiT's stream: L tokens where J is written).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..ssm import BidirectionalSSM
from .offset_linear import offset_linear
from .scan_orders import layer_orders, scan_order

TIMESTEP_FREQ_DIM = 256  # width of the sinusoidal timestep features (DiT's choice)
LABEL_INIT_STD = 1.0     # std of the class table at init (DiT uses 0.02; see LabelEmbedder)


# ------------------------------------------------------------------------------ conditioning
def timestep_features(t: torch.Tensor, dim: int = TIMESTEP_FREQ_DIM, max_period: float = 10_000.0) -> torch.Tensor:
    """t (B,) int or float -> (B, dim): ``[cos(t w_0), ..., cos(t w_{h-1}), sin(t w_0), ...]`` with
    ``w_i = max_period^(-i/h)``, ``h = dim // 2`` (a zero column is appended when ``dim`` is odd)."""
    if t.ndim != 1:
        raise ValueError(f"timesteps must have shape (B,), got {tuple(t.shape)}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]                                    # (B, h)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)                # (B, 2h)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepEmbedder(nn.Module):
    """t (B,) -> (B, D): sinusoidal features, Linear, SiLU, Linear."""

    def __init__(self, dim: int, freq_dim: int = TIMESTEP_FREQ_DIM):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t (B,) long or float -> (B, D)."""
        return self.mlp(timestep_features(t, self.freq_dim).to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Labels (B,) in ``[0, num_classes]`` -> (B, D); row ``num_classes`` is the null class. Init
    N(0, 1), not DiT's 0.02: with 0.02 a class row's norm is about 0.02 sqrt(D) (0.2 at D = 128), the
    timestep embedding soon outgrows it in training, and CPU-budget MNIST models ignored their labels
    (``tests/test_train.py`` checks a task that only the label can solve; notebook 03 prints the norms)."""

    def __init__(self, num_classes: int, dim: int, init_std: float = LABEL_INIT_STD):
        super().__init__()
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.num_classes = num_classes
        self.null_class = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)
        nn.init.normal_(self.table.weight, std=init_std)

    def forward(self, y: torch.Tensor | None, batch: int | None = None) -> torch.Tensor:
        """y (B,) integer, or None (then ``batch`` is required: all null) -> (B, D)."""
        if y is None:
            if batch is None:
                raise ValueError("LabelEmbedder: y is None, so the batch size must be given")
            y = torch.full((batch,), self.null_class, dtype=torch.long, device=self.table.weight.device)
        if y.ndim != 1 or y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"class labels must be an integer tensor of shape (B,), got {tuple(y.shape)} {y.dtype}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) > self.null_class):
            raise ValueError(f"class labels must lie in [0, {self.null_class}] ({self.num_classes} classes + "
                             f"null class {self.null_class}), got min {int(y.min())} max {int(y.max())}")
        return self.table(y.long())


class ConditionEmbedder(nn.Module):
    """``c = TimestepEmbedder(t) + LabelEmbedder(y)``: t (B,), y (B,) or None -> c (B, D)."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.t_embed = TimestepEmbedder(dim)
        self.y_embed = LabelEmbedder(num_classes, dim)

    def forward(self, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if y is not None and y.shape != t.shape:
            raise ValueError(f"timesteps {tuple(t.shape)} and labels {tuple(y.shape)} must both have shape (B,)")
        return self.t_embed(t) + self.y_embed(y, batch=t.shape[0])


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Adaptive layer-norm affine: x (B, J, D), shift (B, D), scale (B, D) -> ``x * (1 + scale) + shift``
    (one fused pass over x)."""
    return torch.addcmul(shift[:, None, :], x, 1 + scale[:, None, :])


def gated_residual(x: torch.Tensor, gate: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """adaLN-Zero's skip: x (B, J, D), gate (B, D), h (B, J, D) -> ``x + gate * h`` (one fused pass)."""
    return torch.addcmul(x, gate[:, None, :], h)


class AdaLNZero(nn.Module):
    """c (B, D) -> ``chunks`` modulation vectors (B, D) each: SiLU, then a zero-initialised Linear,
    so at initialisation shift = scale = gate = 0 and a block ``x + gate * F(...)`` is the identity."""

    def __init__(self, dim: int, chunks: int):
        super().__init__()
        self.chunks = chunks
        self.linear = nn.Linear(dim, chunks * dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.linear(F.silu(c)).chunk(self.chunks, dim=-1)


# ------------------------------------------------------------------------------ tokens
def check_image_size(H: int, W: int, patch_size: int = 1, ratio: int = 1) -> int:
    """Return ``L = H W / p^2``; raise ``ValueError`` naming H, W, p and M when H or W is not a
    multiple of p, or L not a multiple of M (so that ``J = L / M`` is an integer)."""
    p, M = int(patch_size), int(ratio)
    if p < 1 or M < 1:
        raise ValueError(f"patch size p={p} and hourglass ratio M={M} must be >= 1")
    if H < 1 or W < 1:
        raise ValueError(f"image size H={H}, W={W} must be positive")
    if H % p or W % p:
        raise ValueError(f"image size H={H}, W={W} is not divisible by the patch size p={p} (H and W must be "
                         f"multiples of p; with M={M}, H*W must be a multiple of M*p*p={M * p * p})")
    L = (H // p) * (W // p)
    if L % M:
        raise ValueError(f"image size H={H}, W={W} with patch size p={p} gives L=H*W/p^2={L} tokens, not divisible "
                         f"by the hourglass ratio M={M} (H*W={H * W} must be a multiple of M*p*p={M * p * p})")
    return L


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """x (B, C, H, W) -> tokens (B, L, C p^2): patch (r, s) becomes token ``r (W/p) + s`` (raster
    order), its values ordered (channel, row in patch, column in patch). p = 1: one token per pixel."""
    B, C, H, W = x.shape
    p = patch_size
    check_image_size(H, W, p)
    h, w = H // p, W // p
    x = x.reshape(B, C, h, p, w, p).permute(0, 2, 4, 1, 3, 5)        # (B, h, w, C, p, p)
    return x.reshape(B, h * w, C * p * p)                           # (B, L, C p^2)


def unpatchify(tokens: torch.Tensor, patch_size: int, H: int, W: int) -> torch.Tensor:
    """tokens (B, L, C p^2) -> image (B, C, H, W); the inverse of ``patchify``."""
    B, L, F_ = tokens.shape
    p = patch_size
    check_image_size(H, W, p)
    h, w = H // p, W // p
    if L != h * w or F_ % (p * p):
        raise ValueError(f"unpatchify: tokens {tuple(tokens.shape)} do not fit an image {H}x{W} with patch size {p}")
    x = tokens.reshape(B, h, w, F_ // (p * p), p, p).permute(0, 3, 1, 4, 2, 5)   # (B, C, h, p, w, p)
    return x.reshape(B, -1, H, W)


def group_tokens(tokens: torch.Tensor, ratio: int) -> torch.Tensor:
    """(B, L, F) -> (B, J, M F): stream token j concatenates raster tokens jM, ..., jM + M - 1."""
    B, L, F_ = tokens.shape
    if L % ratio:
        raise ValueError(f"group_tokens: L={L} tokens is not divisible by the hourglass ratio M={ratio}")
    return tokens.reshape(B, L // ratio, ratio * F_)


def ungroup_tokens(tokens: torch.Tensor, ratio: int) -> torch.Tensor:
    """(B, J, M F) -> (B, L, F), the inverse of ``group_tokens``."""
    B, J, MF = tokens.shape
    if MF % ratio:
        raise ValueError(f"ungroup_tokens: feature width {MF} is not divisible by M={ratio}")
    return tokens.reshape(B, J * ratio, MF // ratio)


class PatchEmbed(nn.Module):
    """Input projection: image (B, C, H, W) -> stream (B, J, D): patchify, group ``group`` (M for
    DiffuSSM, 1 for DiT) consecutive tokens, one Linear(M C p^2 -> D)."""

    def __init__(self, in_channels: int, dim: int, patch_size: int = 1, group: int = 1):
        super().__init__()
        self.in_channels, self.patch_size, self.group = in_channels, patch_size, group
        self.proj = nn.Linear(group * in_channels * patch_size * patch_size, dim)
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} image channels, got x of shape {tuple(x.shape)}")
        check_image_size(x.shape[2], x.shape[3], self.patch_size, self.group)
        return self.proj(group_tokens(patchify(x, self.patch_size), self.group))   # (B, J, D)


class FinalLayer(nn.Module):
    """Output head: tokens (B, J, D), c (B, D) -> image (B, C_out, H, W). adaLN (shift, scale) +
    LayerNorm, then a zero-initialised Linear to the M patches of each stream token (predicts 0 at init)."""

    def __init__(self, dim: int, out_channels: int, patch_size: int = 1, group: int = 1):
        super().__init__()
        self.out_channels, self.patch_size, self.group = out_channels, patch_size, group
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = AdaLNZero(dim, 2)
        self.linear = nn.Linear(dim, group * out_channels * patch_size * patch_size)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, tokens: torch.Tensor, c: torch.Tensor, H: int, W: int) -> torch.Tensor:
        shift, scale = self.ada(c)
        out = self.linear(modulate(self.norm(tokens), shift, scale))          # (B, J, M C_out p^2)
        return unpatchify(ungroup_tokens(out, self.group), self.patch_size, H, W)


# ------------------------------------------------------------------------------ the hourglass block
def act(x: torch.Tensor) -> torch.Tensor:
    """The paper's sigma: GELU (exact erf form)."""
    return F.gelu(x)


class OffsetLinear(nn.Module):
    """M independent linear maps, one per offset k: x (..., M, F_in) -> (..., M, F_out).
    ``weight`` (M, F_out, F_in), ``bias`` (M, F_out), initialised like ``nn.Linear``."""

    def __init__(self, ratio: int, in_features: int, out_features: int):
        super().__init__()
        self.ratio, self.in_features, self.out_features = ratio, in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(ratio, out_features, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(ratio, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # = torch.einsum("...kf,kgf->...kg", x, self.weight) + self.bias, without its copies
        y = offset_linear(x.reshape(-1, *x.shape[-2:]), self.weight, self.bias)   # (N, M, F_out)
        return y.reshape(*x.shape[:-1], self.out_features)


class Hourglass(nn.Module):
    """The paper's block body (no norm, no skip): I (B, J, D) -> O (B, J, D), the SSM on L = J M.

    ``ssm``: any module (B, L, D) -> (B, L, ssm.out_dim) (2D bidirectional, D causal); W^down_k maps
    ``out_dim -> 2D/M`` so I' always has width 2D. ``w_up``'s output chunk k is W^up_k.
    """

    def __init__(self, dim: int, ratio: int, ssm: nn.Module, order: str = "raster"):
        super().__init__()
        if ratio < 1:
            raise ValueError(f"hourglass ratio M must be >= 1, got {ratio}")
        self.order = layer_orders(order, 1)[0]     # the SSM reads the L tokens in this order (scan_orders.py)
        self._orders: dict = {}
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
        return out.reshape(B, J, 2 * self.dim)                    # (B, J, 2D)

    def gate(self, i_prime: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """I' (B, J, 2D), I (B, J, D) -> O (B, J, D) = W^3 (act(W^2 I') * act(W^1 I))."""
        return self.w3(act(self.w2(i_prime)) * act(self.w1(i)))

    def forward(self, i: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """I (B, J, D) -> O (B, J, D); ``grid`` = (h, w), the token grid (needed for a non-raster order)."""
        if i.ndim != 3 or i.shape[-1] != self.dim:
            raise ValueError(f"Hourglass expects (B, J, D={self.dim}), got {tuple(i.shape)}")
        u = self.up(i)                                       # (B, L, D), raster order
        if self.order == "raster":
            return self.gate(self.down(self.ssm(u)), i)
        perm, inv = self.permutation(grid, u.device)
        return self.gate(self.down(self.ssm(u[:, inv])[:, perm]), i)   # scan in order, back to raster

    def permutation(self, grid: tuple[int, int] | None, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(perm, inv) of this layer's scan order on the token grid, cached per grid and device."""
        if grid is None:
            raise ValueError(f"scan order {self.order!r} needs the token grid (h, w): call the model, or pass grid=")
        key = (tuple(grid), str(device))
        if key not in self._orders:
            self._orders[key] = tuple(t.to(device) for t in scan_order(self.order, *grid))
        return self._orders[key]


def block_ssm(dim: int, core: str = "s4d", bidirectional: bool = True, d_state: int | None = None,
              backend: str = "auto", init: str = "lin") -> BidirectionalSSM:
    """The SSM module of one DiffuSSM block: (B, L, D) -> (B, L, 2D), or (B, L, D) when causal.
    ``init`` ("lin" / "inv") is S4D's initialisation; the selective core has its own."""
    if core != "s4d" and init != "lin":
        raise ValueError(f"ssm_init={init!r} is an S4D initialisation; the {core!r} core has its own")
    return BidirectionalSSM(dim, core=core, bidirectional=bidirectional, d_state=d_state, backend=backend,
                            **({"init": init} if core == "s4d" else {}))


class DiffuSSMBlock(nn.Module):
    """One DiffuSSM layer around the SSM module ``ssm`` (e.g. ``BidirectionalSSM(dim)``), scanning in
    ``order``: x (B, J, D), c (B, D) -> ``x + gate * Hourglass(modulate(LN(x), shift, scale))``."""

    def __init__(self, dim: int, ratio: int, ssm: nn.Module, order: str = "raster"):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = AdaLNZero(dim, 3)
        self.hourglass = Hourglass(dim, ratio, ssm, order)

    def forward(self, x: torch.Tensor, c: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        shift, scale, gate = self.ada(c)
        return gated_residual(x, gate, self.hourglass(modulate(self.norm(x), shift, scale), grid))


# ------------------------------------------------------------------------------ the denoisers
class Denoiser(nn.Module):
    """The skeleton DiffuSSM and DiT share; subclasses fill ``self.blocks`` (each
    ``block(h (B, J, D), c (B, D)) -> (B, J, D)``). x (B, C, H, W), t (B,), y (B,) or None ->
    (B, C_out, H, W), C_out = C, or 2C with ``learn_sigma`` (the variance interpolation of improved
    DDPM / DiT). ``group``: raster tokens per stream token (M or 1); ``null_class`` = num_classes."""

    def __init__(self, *, in_channels: int, hidden_dim: int, patch_size: int, group: int, num_classes: int,
                 learn_sigma: bool):
        super().__init__()
        if in_channels < 1 or hidden_dim < 1:
            raise ValueError(f"in_channels={in_channels} and hidden_dim={hidden_dim} must be >= 1")
        self.in_channels, self.hidden_dim, self.patch_size, self.group = in_channels, hidden_dim, patch_size, group
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.learn_sigma = learn_sigma
        self.num_classes = num_classes
        self.null_class = num_classes
        self.embed = PatchEmbed(in_channels, hidden_dim, patch_size, group)
        self.cond = ConditionEmbedder(hidden_dim, num_classes)
        self.blocks = nn.ModuleList()
        self.final = FinalLayer(hidden_dim, self.out_channels, patch_size, group)

    def check_size(self, H: int, W: int) -> int:
        """Raise a clear ValueError if (H, W) does not fit p and M; return L."""
        return check_image_size(H, W, self.patch_size, self.group)

    def add_positions(self, tokens: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """Hook for positional information: tokens (B, J, D) -> (B, J, D). Default: none."""
        return tokens

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected x of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        B, _, H, W = x.shape
        if t.ndim == 0:
            t = t.expand(B)
        if t.shape != (B,):
            raise ValueError(f"expected timesteps t of shape ({B},), got {tuple(t.shape)}")
        self.check_size(H, W)
        c = self.cond(t, y)                                   # (B, D)
        h = self.add_positions(self.embed(x), H, W)           # (B, J, D)
        grid = (H // self.patch_size, W // self.patch_size)  # the token grid (h, w)
        for block in self.blocks:
            h = block(h, c, grid)                             # (B, J, D)
        return self.final(h, c, H, W)                         # (B, C_out, H, W)


class DiffuSSM(Denoiser):
    """DiffuSSM: ``depth`` hourglass blocks over a stream of J = L / M tokens, each block with its own
    ``BidirectionalSSM(hidden_dim, core=ssm_core, bidirectional=..., d_state=ssm_state,
    backend=ssm_backend)`` (S4D initialised by ``ssm_init``: "lin" or "inv"), reading the tokens in
    ``scan_order`` (a name, or a list the layers cycle through). H, W: multiples of p; L of M."""

    def __init__(self, in_channels: int = 1, hidden_dim: int = 128, depth: int = 6, patch_size: int = 1,
                 hourglass_ratio: int = 2, num_classes: int = 10, learn_sigma: bool = False,
                 ssm_core: str = "s4d", ssm_state: int | None = None, bidirectional: bool = True,
                 ssm_backend: str = "auto", ssm_init: str = "lin", scan_order: str | Sequence[str] = "raster"):
        super().__init__(in_channels=in_channels, hidden_dim=hidden_dim, patch_size=patch_size,
                         group=hourglass_ratio, num_classes=num_classes, learn_sigma=learn_sigma)
        self.hourglass_ratio = hourglass_ratio
        self.bidirectional = bidirectional
        self.blocks = nn.ModuleList(
            DiffuSSMBlock(hidden_dim, hourglass_ratio,
                          block_ssm(hidden_dim, ssm_core, bidirectional, ssm_state, ssm_backend, ssm_init), order)
            for order in layer_orders(scan_order, depth))

    @property
    def ssm_backend_used(self) -> str | None:
        """Which SSM implementation ran in the last forward ("torch" / "cuda"), None before any."""
        used = {getattr(b.hourglass.ssm, "backend_used", None) for b in self.blocks} - {None}
        return ", ".join(sorted(used)) if used else None
