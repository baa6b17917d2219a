"""Conditioning: timestep and class embeddings, and adaLN-Zero modulation (as in DiT).

Both backbones (DiffuSSM and the DiT baseline) condition every block the same way:

1. the timestep ``t`` becomes a sinusoidal feature vector, then a 2-layer MLP gives ``(B, D)``;
2. the class ``y`` looks up a table with ``num_classes + 1`` rows; the last row is the *null*
   class used for classifier-free guidance (``y = None`` means "all null"); its rows start at
   std 1, not DiT's 0.02 (see ``LabelEmbedder`` for the measurement behind that);
3. their sum ``c`` (B, D) feeds, in every block, a zero-initialised linear layer that produces a
   shift, a scale and a gate per channel: ``h = x + gate * F(modulate(LN(x), shift, scale))``.
   With the gate at zero the block starts as the identity (adaLN-Zero).

Shapes: ``B`` batch, ``D`` width, ``S`` any number of tokens.
"""
from __future__ import annotations

import math

import torch
from torch import nn

TIMESTEP_FREQ_DIM = 256  # width of the sinusoidal timestep features (DiT's choice)


def timestep_features(t: torch.Tensor, dim: int = TIMESTEP_FREQ_DIM, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal features of (possibly fractional) timesteps.

    ``t`` (B,) int or float -> (B, dim): ``[cos(t w_0), ..., cos(t w_{h-1}), sin(t w_0), ...]`` with
    ``w_i = max_period^(-i/h)``, ``h = dim // 2`` (a zero column is appended when ``dim`` is odd).
    """
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
    """``t`` (B,) -> (B, D): sinusoidal features, Linear, SiLU, Linear."""

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


LABEL_INIT_STD = 1.0  # std of the class table at init (DiT uses 0.02; see LabelEmbedder)


class LabelEmbedder(nn.Module):
    """Class labels (B,) in ``[0, num_classes]`` -> (B, D); index ``num_classes`` is the null class.

    Label dropout for classifier-free guidance is done by the trainer (replace ``y`` by
    ``null_class``); this module only looks labels up and checks their range.

    Init: N(0, ``init_std``^2) with ``init_std = 1`` (torch's ``nn.Embedding`` default, as in the
    guided-diffusion U-Net), not DiT's 0.02. Measured in this course: with 0.02 the timestep
    embedding grows to norm ~10-20 within a few hundred steps while the class rows stay at norm ~0.2,
    so ``c = t_emb + y_emb`` carries almost no class signal, the zero-initialised adaLN layers learn
    only timestep directions, and MNIST models of a CPU budget ignore their labels (12% class
    accuracy after 2,000 steps; chance is 10%). DiT gets away with 0.02 over hundreds of thousands of
    steps. ``tests/test_train.py`` trains tiny models on a task that only the label can solve.
    """

    def __init__(self, num_classes: int, dim: int, init_std: float = LABEL_INIT_STD):
        super().__init__()
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0, got {num_classes}")
        self.num_classes = num_classes
        self.null_class = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)
        nn.init.normal_(self.table.weight, std=init_std)

    def null_labels(self, batch: int, device=None) -> torch.Tensor:
        """(batch,) long filled with the null class."""
        return torch.full((batch,), self.null_class, dtype=torch.long, device=device)

    def forward(self, y: torch.Tensor | None, batch: int | None = None) -> torch.Tensor:
        """y (B,) long, or None (then ``batch`` is required: all null) -> (B, D)."""
        if y is None:
            if batch is None:
                raise ValueError("LabelEmbedder: y is None, so the batch size must be given")
            y = self.null_labels(batch, self.table.weight.device)
        if y.ndim != 1 or y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"class labels must be an integer tensor of shape (B,), got {tuple(y.shape)} {y.dtype}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) > self.null_class):
            raise ValueError(f"class labels must lie in [0, {self.null_class}] ({self.num_classes} classes + "
                             f"null class {self.null_class}), got min {int(y.min())} max {int(y.max())}")
        return self.table(y.long())


class ConditionEmbedder(nn.Module):
    """``c = TimestepEmbedder(t) + LabelEmbedder(y)``: (B,), (B,) or None -> (B, D)."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.t_embed = TimestepEmbedder(dim)
        self.y_embed = LabelEmbedder(num_classes, dim)

    def forward(self, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """t (B,), y (B,) or None -> c (B, D)."""
        if y is not None and y.shape != t.shape:
            raise ValueError(f"timesteps {tuple(t.shape)} and labels {tuple(y.shape)} must both have shape (B,)")
        return self.t_embed(t) + self.y_embed(y, batch=t.shape[0])


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Adaptive layer-norm affine: x (B, S, D), shift (B, D), scale (B, D) -> ``x * (1 + scale) + shift``."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


class AdaLNZero(nn.Module):
    """Produces ``chunks`` modulation vectors of width D from ``c``: SiLU then a zero-initialised Linear.

    ``c`` (B, D) -> tuple of ``chunks`` tensors (B, D). At initialisation every output is exactly
    zero, so shift = scale = gate = 0 and a block ``x + gate * F(...)`` is the identity.
    """

    def __init__(self, dim: int, chunks: int):
        super().__init__()
        self.chunks = chunks
        self.linear = nn.Linear(dim, chunks * dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """c (B, D) -> ``chunks`` x (B, D)."""
        return self.linear(nn.functional.silu(c)).chunk(self.chunks, dim=-1)
