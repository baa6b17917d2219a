"""Generating images from a trained model (notebook 06): which labels, then batched sampling.

``generate`` runs any sampler of the registry (``diffussm_lib.diffusion.registry``) batch after
batch from one seeded generator; ``images.py`` turns the result into files.

Labels
------
``parse_labels(spec, n, num_classes)``: ``None`` -> unconditional (the model gets the null class);
``"all"`` -> every class in equal numbers, ``0, 1, ..., 9, 0, 1, ...`` (n must be a multiple of
the number of classes); ``"3,1,4"`` -> that list repeated cyclically to n labels.
"""

from __future__ import annotations

import math
import time
from typing import Optional, Sequence, Union

import torch
from torch import nn
from tqdm.auto import tqdm

from ..diffusion import DEFAULT_SAMPLER, NoiseSchedule, check_sampler, null_class_of, run_sampler
from ..env import model_device
from ..errors import UserError

NO_CLASSES = (
    "this model has no class conditioning (model.num_classes = 0): sample it without "
    "labels (diffussm sample: no --labels; diffussm evaluate: --unconditional)"
)


def parse_labels(
    spec: Union[None, str, Sequence[int]], n: int, num_classes: int
) -> Optional[torch.Tensor]:
    """The labels for ``n`` samples: None (unconditional) or long (n,). See the module docstring."""
    if n < 1:
        raise UserError(f"the number of samples must be >= 1, got {n}")
    if spec is None:
        return None
    if num_classes < 1:
        raise UserError(NO_CLASSES)
    if isinstance(spec, str):
        s = spec.strip().lower()
        if s == "all":
            if n % num_classes:
                raise UserError(
                    f"--labels all asks for every one of the {num_classes} classes in "
                    f"equal numbers: the number of samples ({n}) must be a "
                    f"multiple of {num_classes}"
                )
            return torch.arange(n, dtype=torch.long) % num_classes
        items = [p.strip() for p in s.split(",") if p.strip()]
        if not items:
            raise UserError(
                f"--labels: expected 'all' or a comma-separated list of classes, got {spec!r}"
            )
        values = []
        for it in items:
            try:
                values.append(int(it))
            except ValueError:
                raise UserError(
                    f"--labels: {it!r} is not an integer class (expected 'all' or e.g. '0,1,7')"
                ) from None
    else:
        values = [int(v) for v in spec]
        if not values:
            raise UserError("labels: empty list")
    bad = [v for v in values if not 0 <= v < num_classes]
    if bad:
        raise UserError(
            f"--labels: class {bad[0]} is outside [0, {num_classes - 1}] (the model "
            f"has {num_classes} classes)"
        )
    base = torch.tensor(values, dtype=torch.long)
    return base.repeat(math.ceil(n / len(values)))[:n]


@torch.no_grad()
def generate(
    model: nn.Module,
    schedule: NoiseSchedule,
    n: int,
    labels: Optional[torch.Tensor] = None,
    *,
    image_size: int,
    channels: int,
    sampler: str = DEFAULT_SAMPLER,
    steps: Optional[int] = None,
    guidance: float = 1.0,
    seed: int = 0,
    prediction: str = "eps",
    eta: float = 0.0,
    clip_x0: bool = True,
    batch_size: Optional[int] = None,
    device: Union[str, torch.device, None] = None,
    progress: bool = False,
    variance: Optional[str] = None,
) -> torch.Tensor:
    """``n`` samples from ``model`` as float (n, C, H, W) in [-1, 1] (clipped), on CPU.

    labels: long (n,) or None (unconditional; then ``guidance`` must be 1), each a class of the
    model. sampler "dpm_solver++" (DPM-Solver++(2M), default 15 steps, deterministic: the course's
    default, ``DEFAULT_SAMPLER``), "ddim" (default 50 steps, deterministic with eta = 0) or "ddpm"
    (default all T steps; fewer = respaced). variance: DDPM's reverse variance (default: "learned_range" for a ``learn_sigma``
    model, else "fixed_small"). batch_size: images per sampler run; None = ``fastest_batch_size``
    (measured once per model and machine).

    All randomness comes from one ``torch.Generator`` seeded with ``seed`` on the sampling device:
    the initial noise of all n images first, then (DDPM, or DDIM with eta > 0) the step noise batch
    after batch. So DDIM with eta = 0 and DPM-Solver++ give the same images for any batch size (to
    float rounding); a stochastic sampler gives the same images for the same seed and batch size.

    Checked here: the sampler's name and the labels (shape, classes of the model). The sampler's
    own arguments (steps, guidance, prediction, eta, variance) are checked by its entry
    (``diffusion.sampler_base.start``), once per batch and never per step.
    """
    check_sampler(sampler)
    if labels is not None and labels.shape != (n,):
        raise UserError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    check_classes(model, labels)
    device = torch.device(device) if device is not None else model_device(model)
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    options = dict(
        guidance=guidance,
        null_class=null_class_of(model),
        prediction=prediction,
        clip_x0=clip_x0,
        generator=g,
        device=device,
    )
    sched = schedule.to(device)
    was_training = model.training
    model.eval()
    if batch_size is None:
        guided = labels is not None and guidance not in (0.0, 1.0)
        batch_size = fastest_batch_size(
            model, (channels, image_size, image_size), n, guided=guided, device=device
        )
    # all the initial noise first
    x_T = torch.randn((n, channels, image_size, image_size), generator=g, device=device)
    out = []
    starts = range(0, n, batch_size)
    if progress:
        starts = tqdm(starts, desc=f"sampling ({sampler})", unit="batch")
    try:
        for s in starts:
            b = min(batch_size, n - s)
            y = None if labels is None else labels[s : s + b].to(device)
            x = run_sampler(
                sampler,
                model,
                sched,
                None,
                y,
                steps=steps,
                eta=eta,
                variance=variance,
                x_T=x_T[s : s + b],
                **options,
            )
            out.append(x.float().clamp(-1, 1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)


def check_classes(model: nn.Module, labels: Optional[torch.Tensor]) -> None:
    """Raise if ``labels`` (n,) asks for a class that ``model`` (with a ``num_classes`` attribute,
    inside a DDP wrapper too) does not have; a model without the attribute is not checked."""
    k = getattr(getattr(model, "module", model), "num_classes", None)
    if labels is None or k is None or not labels.numel():
        return
    if k < 1:
        raise UserError(NO_CLASSES)
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= k:
        raise UserError(
            f"class {lo if lo < 0 else hi} is outside [0, {k - 1}] (the model has {k} classes)"
        )


_FASTEST: dict = {}
BATCH_CANDIDATES = (16, 32, 64, 128, 256)


@torch.no_grad()
def fastest_batch_size(
    model: nn.Module,
    image_shape: Sequence[int],
    n: int,
    *,
    guided: bool = True,
    device: Union[str, torch.device, None] = None,
) -> int:
    """The batch size at which ``model`` samples the most images per second here, for ``n`` images
    of shape (C, H, W): on a GPU min(n, 1024); on a CPU a short measurement of one forward (two
    with guidance) at each of ``BATCH_CANDIDATES`` up to n, done once per model shape, device and
    thread count (forward throughput on CPUs falls past a cache-sized batch)."""
    device = torch.device(device) if device is not None else model_device(model)
    if device.type != "cpu":
        return max(1, min(n, 1024))
    cands = [b for b in BATCH_CANDIDATES if b <= n]
    if len(cands) < 2:
        return max(1, min(n, BATCH_CANDIDATES[0]))
    key = (
        type(model).__name__,
        sum(p.numel() for p in model.parameters()),
        tuple(image_shape),
        guided,
        torch.get_num_threads(),
        cands[-1],
    )
    if key not in _FASTEST:
        null = null_class_of(model)
        rates = {}
        for b in cands:
            x = torch.randn((b, *image_shape), device=device)
            t = torch.full((b,), 500, dtype=torch.long, device=device)
            y = torch.zeros(b, dtype=torch.long, device=device)
            args = (x, t, y)
            if guided:
                args = (
                    torch.cat([x, x]),
                    torch.cat([t, t]),
                    torch.cat([y, torch.full_like(y, null)]),
                )
            model(*args)  # warm-up at this size
            t0 = time.perf_counter()
            model(*args)
            rates[b] = b / (time.perf_counter() - t0)
        _FASTEST[key] = max(rates, key=rates.get)
    return _FASTEST[key]
