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
Our reading of its ambiguous points (notebook 03 discusses each): the residual stream holds J
tokens, shortened once by the input projection (this reproduces the paper's ``13 J D^2 + L D^2``);
the down step concatenates the M offsets; skip and conditioning are ``h = I + gate(c) *
Hourglass(LN(I) * (1 + scale(c)) + shift(c))``, the identity at init. No positional embedding: the
SSM knows the order.
Left out: the paper's latent input (an SD-VAE encoder; the course works on pixels) and its sizes.

The model is built from its config section, ``DiffuSSM(cfg.model)``: ``DiffuSSMBlock.from_config``
is the one place that turns the config's SSM keys into layers. Its inputs are checked once, by
``Denoiser.forward`` (shapes and dtypes only: no tensor value is read, so no host-device sync);
class labels in range are the callers' to check (``sampling.generate`` checks the labels it is
given; a dataset's class count is checked against ``model.num_classes`` when it is loaded).
Dimension letters: the glossary in ``diffussm_lib/__init__.py`` (DiT's stream: L tokens where J is
written); config keys name them in code: ``hidden_dim`` D, ``hourglass_ratio`` M, ``ssm_state`` N.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ModelConfig
from ..ssm import BidirectionalSSM
from ..ssm.backend import torch_form
from ..ssm.kernels.offset_linear import offset_linear_fast
from .scan_orders import layer_orders, scan_order

TIMESTEP_FREQ_DIM = 256  # width of the sinusoidal timestep features (DiT's choice)
LABEL_INIT_STD = 1.0  # std of the class table at init (DiT uses 0.02; see LabelEmbedder)
LABEL_DTYPES = (torch.int64, torch.int32, torch.int16, torch.uint8)


# ------------------------------------------------------------------------------ conditioning
def timestep_features(
    t: torch.Tensor, freq_dim: int = TIMESTEP_FREQ_DIM, max_period: float = 10_000.0
) -> torch.Tensor:
    """t (B,) int or float -> (B, freq_dim): ``[cos(t w_0), ..., cos(t w_{h-1}), sin(t w_0), ...]``
    with ``w_i = max_period^(-i/h)``, ``h = freq_dim // 2`` (a zero column is appended when
    ``freq_dim`` is odd)."""
    half = freq_dim // 2
    i = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(max_period) * i / half)  # (h,)
    args = t.float()[:, None] * freqs[None]  # (B, h)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2h)
    if freq_dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)  # (B, 2h + 1)
    return emb


class TimestepEmbedder(nn.Module):
    """t (B,) -> (B, D): sinusoidal features, Linear, SiLU, Linear."""

    def __init__(self, hidden_dim: int, freq_dim: int = TIMESTEP_FREQ_DIM):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(
            nn.Linear(freq_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim)
        )
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t (B,) long or float -> (B, D)."""
        return self.mlp(timestep_features(t, self.freq_dim).to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Labels (B,) in ``[0, num_classes]`` -> (B, D); row ``num_classes`` is the null class. Init
    N(0, 1), not DiT's 0.02: with 0.02 a class row's norm is about 0.02 sqrt(D) (0.2 at D = 128),
    the timestep embedding soon outgrows it in training, and CPU-budget MNIST models ignored their
    labels (``tests/test_train.py`` checks a task that only the label can solve; notebook 03 prints
    the norms). A label out of range is an index error of the table (``IndexError`` on a CPU):
    the range is checked where labels enter, not here, where it would read them off the device."""

    def __init__(self, num_classes: int, hidden_dim: int, init_std: float = LABEL_INIT_STD):
        super().__init__()
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.num_classes = num_classes
        self.null_class = num_classes
        self.table = nn.Embedding(num_classes + 1, hidden_dim)
        nn.init.normal_(self.table.weight, std=init_std)

    def forward(self, y: torch.Tensor | None, batch: int | None = None) -> torch.Tensor:
        """y (B,) integer, or None (then ``batch`` is required: all null) -> (B, D)."""
        if y is None:
            y = torch.full(
                (batch,), self.null_class, dtype=torch.long, device=self.table.weight.device
            )  # (B,) all null
        return self.table(y.long())  # (B, D)


class ConditionEmbedder(nn.Module):
    """``c = TimestepEmbedder(t) + LabelEmbedder(y)``: t (B,), y (B,) or None -> c (B, D)."""

    def __init__(self, hidden_dim: int, num_classes: int):
        super().__init__()
        self.t_embed = TimestepEmbedder(hidden_dim)
        self.y_embed = LabelEmbedder(num_classes, hidden_dim)

    def forward(self, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.t_embed(t) + self.y_embed(y, batch=t.shape[0])  # (B, D)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Adaptive layer-norm affine: x (B, J, D), shift (B, D), scale (B, D) ->
    ``x * (1 + scale) + shift`` (one fused pass over x)."""
    return torch.addcmul(shift[:, None, :], x, 1 + scale[:, None, :])


def gated_residual(x: torch.Tensor, gate: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """adaLN-Zero's skip: x (B, J, D), gate (B, D), h (B, J, D) -> ``x + gate * h`` (one pass)."""
    return torch.addcmul(x, gate[:, None, :], h)


class AdaLNZero(nn.Module):
    """c (B, D) -> ``chunks`` modulation vectors (B, D) each: SiLU, then a zero-initialised
    Linear, so at initialisation shift = scale = gate = 0 and a block ``x + gate * F(...)`` is the
    identity."""

    def __init__(self, hidden_dim: int, chunks: int):
        super().__init__()
        self.chunks = chunks
        self.linear = nn.Linear(hidden_dim, chunks * hidden_dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.linear(F.silu(c)).chunk(self.chunks, dim=-1)  # chunks x (B, D)


# ------------------------------------------------------------------------------ tokens
def check_image_size(H: int, W: int, patch_size: int = 1, hourglass_ratio: int = 1) -> int:
    """Return ``L = H W / p^2``; raise ``ValueError`` naming H, W, p and M when H or W is not a
    multiple of p, or L not a multiple of M (so that ``J = L / M`` is an integer)."""
    p, M = int(patch_size), int(hourglass_ratio)
    if p < 1 or M < 1:
        raise ValueError(f"patch size p={p} and hourglass ratio M={M} must be >= 1")
    if H < 1 or W < 1:
        raise ValueError(f"image size H={H}, W={W} must be positive")
    if H % p or W % p:
        raise ValueError(
            f"image size H={H}, W={W} is not divisible by the patch size p={p} (H and "
            f"W must be multiples of p; with M={M}, H*W must be a multiple of "
            f"M*p*p={M * p * p})"
        )
    L = (H // p) * (W // p)
    if L % M:
        raise ValueError(
            f"image size H={H}, W={W} with patch size p={p} gives L=H*W/p^2={L} "
            f"tokens, not divisible by the hourglass ratio M={M} (H*W={H * W} must be "
            f"a multiple of M*p*p={M * p * p})"
        )
    return L


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """x (B, C, H, W) -> tokens (B, L, C p^2): patch (r, s) becomes token ``r (W/p) + s`` (raster
    order), its values ordered (channel, row in patch, column in patch). p = 1: one per pixel."""
    B, C, H, W = x.shape
    p = patch_size
    h, w = H // p, W // p
    x = x.reshape(B, C, h, p, w, p).permute(0, 2, 4, 1, 3, 5)  # (B, h, w, C, p, p)
    return x.reshape(B, h * w, C * p * p)  # (B, L, C p^2)


def unpatchify(tokens: torch.Tensor, patch_size: int, H: int, W: int) -> torch.Tensor:
    """tokens (B, L, C p^2) -> image (B, C, H, W); the inverse of ``patchify``."""
    B, L, F_ = tokens.shape
    p = patch_size
    h, w = H // p, W // p
    x = tokens.reshape(B, h, w, F_ // (p * p), p, p)  # (B, h, w, C, p, p)
    x = x.permute(0, 3, 1, 4, 2, 5)  # (B, C, h, p, w, p)
    return x.reshape(B, -1, H, W)  # (B, C, H, W)


def group_tokens(tokens: torch.Tensor, hourglass_ratio: int) -> torch.Tensor:
    """(B, L, F) -> (B, J, M F): stream token j concatenates raster tokens jM, ..., jM + M - 1."""
    B, L, F_ = tokens.shape
    M = hourglass_ratio
    return tokens.reshape(B, L // M, M * F_)  # (B, J, M F)


def ungroup_tokens(tokens: torch.Tensor, hourglass_ratio: int) -> torch.Tensor:
    """(B, J, M F) -> (B, L, F), the inverse of ``group_tokens``."""
    B, J, MF = tokens.shape
    M = hourglass_ratio
    return tokens.reshape(B, J * M, MF // M)  # (B, L, F)


class PatchEmbed(nn.Module):
    """Input projection: image (B, C, H, W) -> stream (B, J, D): patchify, group M consecutive
    tokens (``hourglass_ratio``; 1 for DiT), one Linear(M C p^2 -> D)."""

    def __init__(
        self, in_channels: int, hidden_dim: int, patch_size: int = 1, hourglass_ratio: int = 1
    ):
        super().__init__()
        self.in_channels, self.patch_size = in_channels, patch_size
        self.hourglass_ratio = hourglass_ratio
        self.proj = nn.Linear(hourglass_ratio * in_channels * patch_size * patch_size, hidden_dim)
        nn.init.xavier_uniform_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = patchify(x, self.patch_size)  # (B, L, C p^2)
        return self.proj(group_tokens(tokens, self.hourglass_ratio))  # (B, J, D)


class FinalLayer(nn.Module):
    """Output head: tokens (B, J, D), c (B, D) -> image (B, C_out, H, W). adaLN (shift, scale) +
    LayerNorm, then a zero-initialised Linear to the M patches of each stream token (predicts 0 at
    init)."""

    def __init__(
        self, hidden_dim: int, out_channels: int, patch_size: int = 1, hourglass_ratio: int = 1
    ):
        super().__init__()
        self.out_channels, self.patch_size = out_channels, patch_size
        self.hourglass_ratio = hourglass_ratio
        self.norm = nn.LayerNorm(hidden_dim, elementwise_affine=False, eps=1e-6)
        self.ada = AdaLNZero(hidden_dim, 2)
        self.linear = nn.Linear(hidden_dim, hourglass_ratio * out_channels * patch_size**2)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, tokens: torch.Tensor, c: torch.Tensor, H: int, W: int) -> torch.Tensor:
        shift, scale = self.ada(c)
        out = self.linear(modulate(self.norm(tokens), shift, scale))  # (B, J, M C_out p^2)
        out = ungroup_tokens(out, self.hourglass_ratio)  # (B, L, C_out p^2)
        return unpatchify(out, self.patch_size, H, W)  # (B, C_out, H, W)


# ------------------------------------------------------------------------------ the hourglass block
def act(x: torch.Tensor) -> torch.Tensor:
    """The paper's sigma: GELU (exact erf form)."""
    return F.gelu(x)


class OffsetLinear(nn.Module):
    """M independent linear maps, one per offset k: x (..., M, F_in) -> (..., M, F_out).
    ``weight`` (M, F_out, F_in), ``bias`` (M, F_out), initialised like ``nn.Linear``. The einsum
    below is the definition; with ``backend`` other than ``"reference"`` the same maps run as
    the copy-free kernel ``ssm/kernels/offset_linear.py``."""

    def __init__(
        self, hourglass_ratio: int, in_features: int, out_features: int, backend: str = "auto"
    ):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.form = torch_form(backend)  # "reference" or "torch": what runs
        bound = 1.0 / math.sqrt(in_features)
        M = hourglass_ratio
        weight = torch.empty(M, out_features, in_features).uniform_(-bound, bound)
        self.weight = nn.Parameter(weight)  # (M, F_out, F_in)
        self.bias = nn.Parameter(torch.empty(M, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.form == "reference":
            return torch.einsum("...kf,kgf->...kg", x, self.weight) + self.bias  # (..., M, F_out)
        rows = x.reshape(-1, *x.shape[-2:])  # (n, M, F_in)
        y = offset_linear_fast(rows, self.weight, self.bias)  # (n, M, F_out)
        return y.reshape(*x.shape[:-1], self.out_features)  # (..., M, F_out)


class Hourglass(nn.Module):
    """The paper's block body (no norm, no skip): I (B, J, D) -> O (B, J, D), the SSM on L = J M.

    ``ssm``: any module (B, L, D) -> (B, L, ssm.out_dim) (2D bidirectional, D causal); W^down_k
    maps ``out_dim -> 2D/M`` so I' always has width 2D. ``w_up``'s output chunk k is W^up_k.
    ``order``: the order the SSM reads the L tokens in (``scan_orders.py``); ``backend``: the form
    of the offset linear W^down (``"reference"``: the einsum).
    """

    def __init__(
        self,
        hidden_dim: int,
        hourglass_ratio: int,
        ssm: nn.Module,
        order: str = "raster",
        backend: str = "auto",
    ):
        super().__init__()
        D, M = hidden_dim, hourglass_ratio
        if M < 1:
            raise ValueError(f"hourglass ratio M must be >= 1, got {M}")
        if (2 * D) % M:
            raise ValueError(
                f"width 2D={2 * D} must be divisible by the hourglass ratio M={M} "
                f"(each W^down_k maps to 2D/M features)"
            )
        if not hasattr(ssm, "out_dim"):
            raise TypeError("the SSM module must expose `out_dim` (its output width)")
        self.order = layer_orders(order, 1)[0]
        self._orders: dict = {}
        self.hidden_dim, self.hourglass_ratio = D, M
        self.w0 = nn.Linear(D, D)
        self.w_up = nn.Linear(D, M * D)
        self.ssm = ssm
        self.w_down = OffsetLinear(M, ssm.out_dim, 2 * D // M, backend)
        self.w1 = nn.Linear(D, 2 * D)
        self.w2 = nn.Linear(2 * D, 2 * D)
        self.w3 = nn.Linear(2 * D, D)

    def up(self, i: torch.Tensor) -> torch.Tensor:
        """I (B, J, D) -> U (B, L, D), ``U_{jM+k} = act(W^up_k act(W^0 I_j))``."""
        B, J, D = i.shape
        u = act(self.w_up(act(self.w0(i))))  # (B, J, M D): chunk k = offset k
        return u.reshape(B, J * self.hourglass_ratio, D)  # (B, L, D), l = jM + k

    def down(self, y: torch.Tensor) -> torch.Tensor:
        """Y (B, L, F) -> I' (B, J, 2D): chunk k of I'_j is ``act(W^down_k Y_{jM+k})``."""
        B, L, Fy = y.shape
        M = self.hourglass_ratio
        out = act(self.w_down(y.reshape(B, L // M, M, Fy)))  # (B, J, M, 2D/M)
        return out.reshape(B, L // M, 2 * self.hidden_dim)  # (B, J, 2D)

    def gate(self, i_prime: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """I' (B, J, 2D), I (B, J, D) -> O (B, J, D) = W^3 (act(W^2 I') * act(W^1 I))."""
        return self.w3(act(self.w2(i_prime)) * act(self.w1(i)))

    def forward(self, i: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """I (B, J, D) -> O (B, J, D); ``grid`` = (h, w), the token grid (a non-raster order)."""
        u = self.up(i)  # (B, L, D), raster order
        if self.order == "raster":
            return self.gate(self.down(self.ssm(u)), i)
        perm, inv = self.permutation(grid, u.device)
        y = self.ssm(u[:, inv])[:, perm]  # scan in order, back to raster
        return self.gate(self.down(y), i)

    def permutation(
        self, grid: tuple[int, int] | None, device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(perm, inv) of this layer's scan order on the token grid, cached per grid and device."""
        if grid is None:
            raise ValueError(
                f"scan order {self.order!r} needs the token grid (h, w): call the "
                "model, or pass grid="
            )
        key = (tuple(grid), str(device))
        if key not in self._orders:
            self._orders[key] = tuple(t.to(device) for t in scan_order(self.order, *grid))
        return self._orders[key]


class DiffuSSMBlock(nn.Module):
    """One DiffuSSM layer around the SSM module ``ssm`` (e.g. ``BidirectionalSSM(hidden_dim)``),
    scanning in ``order``: x (B, J, D), c (B, D) -> ``x + gate * Hourglass(modulate(LN(x), shift,
    scale))``. ``DiffuSSMBlock.from_config(cfg)`` builds one from a model config."""

    def __init__(
        self,
        hidden_dim: int,
        hourglass_ratio: int,
        ssm: nn.Module,
        order: str = "raster",
        backend: str = "auto",
    ):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_dim, elementwise_affine=False, eps=1e-6)
        self.ada = AdaLNZero(hidden_dim, 3)
        self.hourglass = Hourglass(hidden_dim, hourglass_ratio, ssm, order, backend)

    @classmethod
    def from_config(cls, cfg: ModelConfig, order: str | None = None) -> "DiffuSSMBlock":
        """The one place the config's SSM keys become layers: a block of width ``cfg.hidden_dim``
        around ``BidirectionalSSM`` (core ``cfg.ssm_core``, N = ``cfg.ssm_state``, backend
        ``cfg.ssm_backend``; S4D initialised by ``cfg.ssm_init``), reading its tokens in ``order``
        (default: the first of ``cfg.scan_order``)."""
        core_kwargs = {}
        if cfg.ssm_core == "s4d":
            core_kwargs["init"] = cfg.ssm_init
        elif cfg.ssm_init != "lin":
            raise ValueError(
                f"ssm_init={cfg.ssm_init!r} is an S4D initialisation; the "
                f"{cfg.ssm_core!r} core has its own"
            )
        ssm = BidirectionalSSM(
            cfg.hidden_dim,
            core=cfg.ssm_core,
            bidirectional=cfg.bidirectional,
            ssm_state=cfg.ssm_state,
            backend=cfg.ssm_backend,
            **core_kwargs,
        )
        order = layer_orders(cfg.scan_order, 1)[0] if order is None else order
        return cls(cfg.hidden_dim, cfg.hourglass_ratio, ssm, order, cfg.ssm_backend)

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, grid: tuple[int, int] | None = None
    ) -> torch.Tensor:
        shift, scale, gate = self.ada(c)  # (B, D) each
        h = self.hourglass(modulate(self.norm(x), shift, scale), grid)  # (B, J, D)
        return gated_residual(x, gate, h)  # (B, J, D)


# ------------------------------------------------------------------------------ the denoisers
class Denoiser(nn.Module):
    """The skeleton DiffuSSM and DiT share, built from a model config; subclasses fill
    ``self.blocks`` (each ``block(h (B, J, D), c (B, D), grid) -> (B, J, D)``).
    x (B, C, H, W), t (B,), y (B,) or None -> (B, C_out, H, W), C_out = C, or 2C with
    ``learn_sigma`` (the variance interpolation of improved DDPM / DiT). ``hourglass_ratio``: raster
    tokens per stream token (M, 1 for DiT); ``null_class`` = num_classes."""

    def __init__(self, cfg: ModelConfig, hourglass_ratio: int):
        super().__init__()
        self.in_channels, self.hidden_dim, self.patch_size = (
            cfg.in_channels,
            cfg.hidden_dim,
            cfg.patch_size,
        )
        self.hourglass_ratio = hourglass_ratio
        self.learn_sigma = cfg.learn_sigma
        self.out_channels = 2 * cfg.in_channels if cfg.learn_sigma else cfg.in_channels
        self.num_classes = cfg.num_classes
        self.null_class = cfg.num_classes
        self.embed = PatchEmbed(cfg.in_channels, cfg.hidden_dim, cfg.patch_size, hourglass_ratio)
        self.cond = ConditionEmbedder(cfg.hidden_dim, cfg.num_classes)
        self.blocks = nn.ModuleList()
        self.final = FinalLayer(cfg.hidden_dim, self.out_channels, cfg.patch_size, hourglass_ratio)

    def check_size(self, H: int, W: int) -> int:
        """Raise a clear ValueError if (H, W) does not fit p and M; return L."""
        return check_image_size(H, W, self.patch_size, self.hourglass_ratio)

    def check_inputs(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None
    ) -> torch.Tensor:
        """The model's one input check, by shapes and dtypes only (no tensor value is read, so no
        host-device sync). Returns t as (B,) (a scalar t is broadcast)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected x of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        B, _, H, W = x.shape
        t = t.expand(B) if t.ndim == 0 else t
        if t.shape != (B,):
            raise ValueError(f"expected timesteps t of shape ({B},), got {tuple(t.shape)}")
        if y is not None and (y.shape != (B,) or y.dtype not in LABEL_DTYPES):
            raise ValueError(
                f"class labels must be an integer tensor of shape ({B},), got "
                f"{tuple(y.shape)} {y.dtype}"
            )
        self.check_size(H, W)
        return t

    def add_positions(self, tokens: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """Hook for positional information: tokens (B, J, D) -> (B, J, D). Default: none."""
        return tokens

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, C, H, W), t (B,) or a scalar, y (B,) integer labels in [0, num_classes] or None
        (all null) -> (B, C_out, H, W)."""
        t = self.check_inputs(x, t, y)
        B, _, H, W = x.shape
        c = self.cond(t, y)  # (B, D)
        h = self.add_positions(self.embed(x), H, W)  # (B, J, D)
        grid = (H // self.patch_size, W // self.patch_size)  # the token grid (h, w)
        for block in self.blocks:
            h = block(h, c, grid)  # (B, J, D)
        return self.final(h, c, H, W)  # (B, C_out, H, W)


class DiffuSSM(Denoiser):
    """DiffuSSM from its config section: ``cfg.depth`` hourglass blocks over a stream of
    J = L / M tokens (M = ``cfg.hourglass_ratio``), each with its own ``BidirectionalSSM``
    (``DiffuSSMBlock.from_config``), reading the tokens in ``cfg.scan_order`` (a name, or a list
    the layers cycle through). H, W: multiples of p; L of M."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, hourglass_ratio=cfg.hourglass_ratio)
        self.bidirectional = cfg.bidirectional
        self.blocks = nn.ModuleList(
            DiffuSSMBlock.from_config(cfg, order)
            for order in layer_orders(cfg.scan_order, cfg.depth)
        )

    @property
    def ssm_backend_used(self) -> str | None:
        """Which SSM implementation ran in the last forward ("reference" / "torch" / "cuda"), None
        before any."""
        used = {getattr(b.hourglass.ssm, "backend_used", None) for b in self.blocks} - {None}
        return ", ".join(sorted(used)) if used else None
