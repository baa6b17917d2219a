"""The training loop (notebook 05): AdamW with linear warm-up, label dropout, EMA, gradient clipping,
optional bf16 autocast, checkpoints, sample grids, and DistributedDataParallel under ``torchrun``.

One training step, at step number ``s`` (0-based; ``s`` updates have been made so far)::

    g      = step_generator(seed, s, rank)          # all randomness of this step
    y'     = drop_labels(y, p=label_dropout, null)  # classifier-free guidance: sometimes "no label"
    loss   = diffusion_loss(model, schedule, x, y', generator=g)   # t ~ U{0..T-1}, eps ~ N(0, I)
    loss.backward(); clip the gradient norm to grad_clip
    lr     = lr_at(s, lr, warmup_steps)             # linear warm-up, then constant (as DiT)
    AdamW step; ema.update(model)

Reproducibility and resuming
----------------------------
Nothing random is carried from one step to the next: step ``s`` draws its timesteps, noise and
label dropout from a generator seeded with ``(seed, s, rank)``, and epoch ``e`` visits the data in
the order of ``DistributedSampler(seed=seed).set_epoch(e)``. The data position follows from the
step (epoch ``s // steps_per_epoch``, batch ``s % steps_per_epoch``). So the state of a run is
exactly (weights, EMA, AdamW state, step): that is what a checkpoint holds, and a run killed at any
moment and resumed from its last checkpoint continues as if it had never stopped, losing only the
steps since that checkpoint. (The same computation, up to floating-point rounding: on one machine
the result is usually bit-identical, but BLAS kernels may round differently from one process to
the next, e.g. with different memory alignment.)

Distributed training
--------------------
Launched by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the trainer joins the process
group (NCCL for CUDA devices, gloo for CPU), wraps the model in DistributedDataParallel, gives each
of the ``W`` processes its own shard of every epoch (``DistributedSampler``) and ``batch_size / W``
images per step, so ``train.batch_size`` is the *global* batch and a config trains the same way on
any number of processes. Only rank 0 logs, writes checkpoints, metrics and sample grids.

Files in the output folder (rank 0): ``checkpoint.safetensors`` (latest, atomic), ``config.yaml``,
``metrics.jsonl`` (one JSON record per log interval) and ``samples/step_NNNNNNN.png``.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .checkpoint import (CHECKPOINT_NAME, CONFIG_NAME, CheckpointError, check_config_matches, config_mismatches,
                         load_checkpoint, load_state_strict, save_checkpoint, save_config_atomic)
from .config import ExperimentConfig
from .diffusion import NoiseSchedule, diffusion_loss, drop_labels
from .ema import EMA, unwrap

METRICS_NAME = "metrics.jsonl"
SAMPLES_DIR = "samples"
# train.* keys whose change between a checkpoint and a resumed run is not worth a notice
_TRAIN_KEYS_FREE_TO_CHANGE = ("max_steps", "log_every", "sample_every", "checkpoint_every", "num_workers")


class NonFiniteLossError(RuntimeError):
    """The loss (or gradient norm) became NaN or infinite; training stopped before that update."""


# --------------------------------------------------------------------------------------------
# Small pieces the notebook derives one by one
# --------------------------------------------------------------------------------------------
def lr_at(step: int, base_lr: float, warmup_steps: int) -> float:
    """Learning rate for update number ``step`` (0-based): linear warm-up over ``warmup_steps``
    updates, ``base_lr * (step + 1) / warmup_steps``, then constant ``base_lr``."""
    if warmup_steps <= 0:
        return base_lr
    return base_lr * min(1.0, (step + 1) / warmup_steps)


def step_seed(seed: int, step: int, rank: int = 0) -> int:
    """A well-mixed 63-bit seed for (run seed, step, rank) (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(seed), int(step), int(rank)]).generate_state(1, np.uint64)[0] >> 1)


def step_generator(seed: int, step: int, rank: int = 0, device: str | torch.device = "cpu") -> torch.Generator:
    """The ``torch.Generator`` (on ``device``) that step ``step`` of process ``rank`` draws from."""
    g = torch.Generator(device=device)
    g.manual_seed(step_seed(seed, step, rank))
    return g


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1) -> List[List[int]]:
    """The index batches (each of ``batch_size`` = per-process batch) of ``epoch`` for ``rank``:
    ``DistributedSampler(shuffle=True, seed=seed, drop_last=True)`` at ``set_epoch(epoch)``, cut
    into full batches (the incomplete last one is dropped)."""
    sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                 drop_last=True)
    sampler.set_epoch(epoch)
    idx = list(sampler)
    nb = len(idx) // batch_size
    return [idx[i * batch_size:(i + 1) * batch_size] for i in range(nb)]


def autocast_context(device: torch.device, precision: str):
    """``torch.autocast`` to bfloat16 for ``precision="bf16"``, a no-op for "fp32"."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise ValueError(f"train.precision must be 'fp32' or 'bf16', got {precision!r}")


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over all trainable parameters (DiT's optimiser: betas (0.9, 0.999), constant lr)."""
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                             weight_decay=weight_decay, betas=(0.9, 0.999))


def hardware_description(device: torch.device, world_size: int = 1) -> str:
    """e.g. "1 x NVIDIA H100 80GB HBM3" or "CPU x86_64, 2 threads"."""
    if device.type == "cuda":
        return f"{world_size} x {torch.cuda.get_device_name(device)}"
    procs = f" x {world_size} processes" if world_size > 1 else ""
    return f"CPU {_cpu_name()}, {torch.get_num_threads()} torch threads{procs}"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


# --------------------------------------------------------------------------------------------
# Distributed
# --------------------------------------------------------------------------------------------
@dataclass
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` (``local_rank`` on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_distributed() -> bool:
    """True when started by ``torchrun`` (or similar) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: Optional[torch.device] = None) -> tuple[DistInfo, torch.device]:
    """Join the process group if launched by ``torchrun``; pick this process's device.

    Device: ``device`` if given, else ``cuda:LOCAL_RANK`` when CUDA exists, else CPU. Backend: NCCL
    for CUDA, gloo for CPU. Without ``torchrun``: ``DistInfo()`` (rank 0 of 1) and the device.
    """
    if not launched_distributed():
        if device is None:
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return DistInfo(), torch.device(device)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = torch.device(f"cuda:{local}" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device(f"cuda:{local}")
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local), device


def shutdown_distributed() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def weights_checksum(model: nn.Module) -> float:
    """A float summary of all weights (sum of |w| weighted by position), to compare across ranks."""
    total = 0.0
    for i, p in enumerate(unwrap(model).state_dict().values()):
        if p.is_floating_point():
            total += float(p.detach().double().abs().sum()) * (1 + 1e-3 * i)
    return total


# --------------------------------------------------------------------------------------------
# Callbacks
# --------------------------------------------------------------------------------------------
class Callback:
    """Hooks called on rank 0 (subclass and override what you need; the notebook draws live plots)."""

    def on_log(self, trainer: "Trainer", record: Dict) -> None:
        """Every ``log_every`` steps: record = {step, loss, lr, grad_norm, images_per_sec, epoch, ...}."""

    def on_sample(self, trainer: "Trainer", step: int, images: torch.Tensor) -> None:
        """After a sample grid: images float (N, C, H, W) in [-1, 1] from the EMA model."""

    def on_checkpoint(self, trainer: "Trainer", path: Path) -> None:
        """After a checkpoint was written."""


@dataclass
class TrainResult:
    """What ``Trainer.train`` returns. history: the logged records (rank 0)."""

    step: int
    history: List[Dict] = field(default_factory=list)
    checkpoint: Optional[Path] = None
    train_seconds: float = 0.0
    images_per_sec: float = 0.0


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------
class Trainer:
    """Train ``cfg`` (an ``ExperimentConfig``); see the module docstring.

    cfg:        the experiment (model, diffusion, data, train sections).
    output_dir: where checkpoints / metrics / grids go (rank 0); None = keep everything in memory.
    device:     default: CUDA (``cuda:LOCAL_RANK`` under torchrun) if available, else CPU.
    dataset:    default ``dataset_from_config(cfg.data, "train")``; items (x (C, H, W), y ()).
    model:      default ``build_model(cfg.model)``; must have the denoiser interface.
    init_from:  a checkpoint / weights file to start from (its EMA weights, else its model weights,
                initialise both the model and the EMA; the optimizer and the step start fresh).
    progress:   show a tqdm progress bar (rank 0).
    grid_*:     the sample grids every ``train.sample_every`` steps: ``grid_size`` images of the
                EMA model, labels 0, 1, ..., DDIM with ``grid_steps`` steps, guidance ``grid_guidance``,
                always from the same noise (seed ``train.seed``) so grids are comparable over time.
    log:        function for text messages (rank 0); default: ``print`` (via tqdm.write).
    """

    def __init__(self, cfg: ExperimentConfig, output_dir: Optional[str | os.PathLike] = None, *,
                 device: Optional[str | torch.device] = None, dataset: Optional[Dataset] = None,
                 model: Optional[nn.Module] = None, init_from: Optional[str | os.PathLike] = None,
                 callbacks: Sequence[Callback] = (), progress: bool = True, grid_size: int = 20,
                 grid_steps: int = 50, grid_guidance: float = 2.0, log: Optional[Callable[[str], None]] = None):
        self.cfg = cfg
        tc = cfg.train
        self.dist, self.device = init_distributed(torch.device(device) if device is not None else None)
        if tc.batch_size % self.dist.world_size:
            raise ValueError(f"train.batch_size={tc.batch_size} (the global batch) must be divisible by the "
                             f"number of processes ({self.dist.world_size})")
        self.local_batch = tc.batch_size // self.dist.world_size
        if tc.precision == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("train.precision=bf16 but this GPU does not support bfloat16; use fp32")
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.callbacks = list(callbacks)
        self.progress = progress
        self.grid_size, self.grid_steps, self.grid_guidance = grid_size, grid_steps, grid_guidance
        self._log = log

        if dataset is None:
            from .data import dataset_from_config
            dataset = dataset_from_config(cfg.data, "train")
        self.dataset = dataset
        x0, _ = dataset[0]
        want = (cfg.model.in_channels, cfg.model.image_size, cfg.model.image_size)
        if tuple(x0.shape) != want:
            raise ValueError(f"the data gives images of shape {tuple(x0.shape)} (C, H, W) but the model expects "
                             f"{want} (model.in_channels, model.image_size): check data.pad_to / data.name "
                             "against the model section")
        if len(dataset) < tc.batch_size:
            raise ValueError(f"the dataset has {len(dataset)} images, fewer than train.batch_size={tc.batch_size}")

        torch.manual_seed(tc.seed)   # the initial weights (identical on every rank)
        if model is None:
            from .models import build_model
            model = build_model(cfg.model)
        self.model = model.to(self.device)
        self.null_class = getattr(unwrap(model), "null_class", cfg.model.num_classes)
        self.schedule = NoiseSchedule.from_config(cfg.diffusion).to(self.device)
        self.ema = EMA(self.model, tc.ema_decay)
        if init_from is not None:
            self._init_weights(init_from)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP
            self.model = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimizer = make_optimizer(self.model, tc.lr, tc.weight_decay)
        self.step = 0
        self.train_seconds = 0.0      # time spent in training steps, over all runs of this model
        self.wall_seconds = 0.0       # including checkpoints and sample grids
        self.history: List[Dict] = []
        self.last_checkpoint: Optional[Path] = None
        self.last_checkpoint_step: Optional[int] = None

    # ------------------------------------------------------------------ helpers
    @property
    def bare_model(self) -> nn.Module:
        """The model without its DDP wrapper."""
        return unwrap(self.model)

    @property
    def checkpoint_path(self) -> Optional[Path]:
        return self.output_dir / CHECKPOINT_NAME if self.output_dir is not None else None

    @property
    def steps_per_epoch(self) -> int:
        return (len(self.dataset) // self.dist.world_size) // self.local_batch

    def log(self, msg: str) -> None:
        if not self.dist.is_main:
            return
        if self._log is not None:
            self._log(msg)
            return
        from tqdm.auto import tqdm
        tqdm.write(msg)

    def _init_weights(self, path) -> None:
        ckpt = load_checkpoint(path)
        check_config_matches(ckpt.config, self.cfg, f"checkpoint {ckpt.path}", sections=("model",))
        state = ckpt.weights("ema")
        load_state_strict(self.model, state, f"checkpoint {ckpt.path}", ckpt.config, self.cfg)
        self.ema.load_state_dict(state, num_updates=ckpt.extra.get("ema_updates", 0))
        self.log(f"initialised from {ckpt.path} (step {ckpt.step}, "
                 f"{'EMA' if ckpt.ema is not None else 'model'} weights); optimizer and step start fresh")

    def batches(self, start_step: int) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(epoch, x (b, C, H, W), y (b,)) for steps start_step, start_step + 1, ... (b = per-process batch)."""
        spe = self.steps_per_epoch
        if spe < 1:
            raise ValueError(f"the dataset ({len(self.dataset)} images) is too small for a batch of "
                             f"{self.local_batch} per process")
        epoch, offset = divmod(start_step, spe)
        ds = self.dataset
        direct = isinstance(getattr(ds, "x", None), torch.Tensor) and isinstance(getattr(ds, "y", None), torch.Tensor)
        while True:
            batches = epoch_batches(len(ds), self.local_batch, self.cfg.train.seed, epoch, self.dist.rank,
                                    self.dist.world_size)[offset:]
            if direct:
                for b in batches:
                    idx = torch.tensor(b)
                    yield epoch, ds.x[idx], ds.y[idx]
            else:
                loader = DataLoader(ds, batch_sampler=batches, num_workers=self.cfg.train.num_workers)
                for x, y in loader:
                    yield epoch, x, y
            epoch, offset = epoch + 1, 0

    # ------------------------------------------------------------------ one step
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
        """One update on a batch x (b, C, H, W), y (b,) at step ``self.step``; returns (loss, grad
        norm before clipping, lr). Raises ``NonFiniteLossError`` (without updating) on NaN / inf."""
        tc = self.cfg.train
        s = self.step
        g = step_generator(tc.seed, s, self.dist.rank, self.device)
        lr = lr_at(s, tc.lr, tc.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        self.model.train()
        with autocast_context(self.device, tc.precision):
            y_in = drop_labels(y, tc.label_dropout, self.null_class, generator=g)
            loss = diffusion_loss(self.model, self.schedule, x, y_in, generator=g,
                                  prediction=self.cfg.diffusion.prediction)
        self._check_finite(loss.detach(), "loss")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = tc.grad_clip if tc.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self._check_finite(grad_norm.detach(), "gradient norm")
        self.optimizer.step()
        self.ema.update(self.model)
        self.step += 1
        return float(loss.detach()), float(grad_norm), lr

    def _check_finite(self, value: torch.Tensor, what: str) -> None:
        bad = (~torch.isfinite(value)).float().reshape(1)
        if self.dist.enabled:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if bad.item() > 0:
            where = (f"The last good checkpoint is kept: {self.last_checkpoint} (step {self.last_checkpoint_step})."
                     if self.last_checkpoint is not None else "No checkpoint had been written yet.")
            raise NonFiniteLossError(
                f"non-finite {what} ({value.item() if value.numel() == 1 else value}) at step {self.step}: "
                f"training stopped before this update. {where} Common causes: too high train.lr, no "
                "train.grad_clip, bad input data.")

    # ------------------------------------------------------------------ checkpoints
    def state_extra(self) -> Dict:
        from . import __version__
        return {"ema_updates": self.ema.num_updates, "train_seconds": self.train_seconds,
                "wall_seconds": self.wall_seconds, "images_seen": self.step * self.cfg.train.batch_size,
                "world_size": self.dist.world_size, "hardware": hardware_description(self.device, self.dist.world_size),
                "torch_version": torch.__version__, "library_version": __version__}

    def save_checkpoint(self, path: Optional[str | os.PathLike] = None) -> Optional[Path]:
        """Write the checkpoint (rank 0; atomically). Default path: ``output_dir/checkpoint.safetensors``."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None:
            raise ValueError("no output_dir: pass a path to save_checkpoint")
        if self.dist.is_main:
            save_checkpoint(path, config=self.cfg, step=self.step, model=self.bare_model.state_dict(),
                            ema=self.ema.state_dict(), optimizer=self.optimizer.state_dict(), extra=self.state_extra())
            self.last_checkpoint, self.last_checkpoint_step = path, self.step
            for cb in self.callbacks:
                cb.on_checkpoint(self, path)
        if self.dist.enabled:
            dist.barrier()
        return path

    def resume(self, path: Optional[str | os.PathLike] = None) -> bool:
        """Load model, EMA, optimizer and step from ``path`` (default: the output folder's checkpoint).
        Returns False (and starts from scratch) when there is none. The model/diffusion/data sections
        must match (an error names the mismatched keys); changed train settings are reported."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None or not path.exists():
            self.log(f"resume: no checkpoint at {path}; starting from step 0")
            return False
        ckpt = load_checkpoint(path)
        check_config_matches(ckpt.config, self.cfg, f"checkpoint {ckpt.path}")
        changed = [d for d in config_mismatches(ckpt.config, self.cfg, ("train",))
                   if d.split(":")[0].split(".")[1] not in _TRAIN_KEYS_FREE_TO_CHANGE]
        if changed:
            self.log("note: train settings differ from the checkpoint's (the run continues with the new ones):\n  "
                     + "\n  ".join(changed))
        if ckpt.model is None or ckpt.optimizer is None:
            raise CheckpointError(f"{ckpt.path} holds no model / optimizer state (an exported weights file?): "
                                  "it cannot be resumed; use it as init_from (--init-from) instead")
        load_state_strict(self.bare_model, ckpt.model, f"checkpoint {ckpt.path}", ckpt.config, self.cfg)
        self.ema.load_state_dict(ckpt.ema if ckpt.ema is not None else ckpt.model, ckpt.extra.get("ema_updates", 0))
        self.optimizer.load_state_dict(ckpt.optimizer)
        self.step = ckpt.step
        self.train_seconds = float(ckpt.extra.get("train_seconds", 0.0))
        self.wall_seconds = float(ckpt.extra.get("wall_seconds", 0.0))
        self.last_checkpoint, self.last_checkpoint_step = ckpt.path, ckpt.step
        self._truncate_metrics(ckpt.step)
        self.log(f"resumed from {ckpt.path} at step {ckpt.step}")
        return True

    def _truncate_metrics(self, step: int) -> None:
        """Drop metric records written after the checkpoint we resume from (they will be redone)."""
        if not self.dist.is_main or self.output_dir is None:
            return
        path = self.output_dir / METRICS_NAME
        if not path.exists():
            return
        keep = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                pass   # a line cut short by a kill
        from .checkpoint import atomic_write
        atomic_write(path, lambda tmp: Path(tmp).write_text("".join(k + "\n" for k in keep)))

    # ------------------------------------------------------------------ samples
    def sample_grid(self, n: Optional[int] = None) -> torch.Tensor:
        """``n`` (default ``grid_size``) EMA samples, labels 0, 1, 2, ...: float (n, C, H, W) in [-1, 1]."""
        from .sampling import generate
        n = n or self.grid_size
        k = self.cfg.model.num_classes
        labels = torch.arange(n) % k if k > 0 else None
        return generate(self.ema.module, self.schedule, n, labels, image_size=self.cfg.model.image_size,
                        channels=self.cfg.model.in_channels, sampler="ddim", steps=self.grid_steps,
                        guidance=self.grid_guidance if labels is not None else 1.0, seed=self.cfg.train.seed,
                        prediction=self.cfg.diffusion.prediction, device=self.device)

    def _write_grid(self) -> None:
        from .sampling import make_grid, save_png
        images = self.sample_grid()
        if self.output_dir is not None:
            save_png(make_grid(images, ncol=min(10, len(images))),
                     self.output_dir / SAMPLES_DIR / f"step_{self.step:07d}.png", scale=2)
        for cb in self.callbacks:
            cb.on_sample(self, self.step, images)

    # ------------------------------------------------------------------ the loop
    def train(self, max_steps: Optional[int] = None, resume: bool = False,
              max_seconds: Optional[float] = None) -> TrainResult:
        """Train until ``max_steps`` total updates (default ``train.max_steps``), continuing from the
        current step (after ``resume=True``: from the output folder's checkpoint, if any).

        ``max_seconds``: a training-time budget. The run also stops (and checkpoints) after the first
        update that brings ``train_seconds`` (time spent in training steps, summed over resumed
        sessions) to at least this. Equal budgets make equal-compute comparisons (notebook 07)."""
        if max_seconds is not None and not max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
        tc = self.cfg.train
        if max_steps is not None and max_steps != tc.max_steps:
            self.cfg = replace(self.cfg, train=replace(tc, max_steps=int(max_steps)))
            tc = self.cfg.train
        if resume:
            self.resume()
        main = self.dist.is_main
        if main and self.output_dir is not None:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            save_config_atomic(self.cfg, self.output_dir / CONFIG_NAME)
        if self.step >= tc.max_steps:
            self.log(f"already at step {self.step} >= max_steps {tc.max_steps}: nothing to do")
            return self._result()
        if max_seconds is not None and self.train_seconds >= max_seconds:
            self.log(f"already at {self.train_seconds:.0f} s of training >= the budget of {max_seconds:.0f} s: "
                     "nothing to do")
            return self._result()
        self.log(f"training {self.cfg.name}: {sum(p.numel() for p in self.bare_model.parameters()):,} parameters, "
                 f"steps {self.step} -> {tc.max_steps}, global batch {tc.batch_size}"
                 + (f" on {self.dist.world_size} processes" if self.dist.enabled else "")
                 + f", {self.device.type}, {tc.precision}"
                 + (f", time budget {max_seconds:.0f} s" if max_seconds is not None else ""))
        bar = None
        if self.progress and main:
            from tqdm.auto import tqdm
            bar = tqdm(total=tc.max_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True)
        window: List[float] = []
        window_t, window_n = 0.0, 0
        t_wall = time.perf_counter()
        metrics = (self.output_dir / METRICS_NAME) if (main and self.output_dir is not None) else None
        try:
            for epoch, x, y in self.batches(self.step):
                t0 = time.perf_counter()
                loss, gnorm, lr = self.train_step(x, y)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                dt = time.perf_counter() - t0
                self.train_seconds += dt
                window.append(loss)
                window_t += dt
                window_n += 1
                s = self.step
                if bar is not None:
                    bar.update(1)
                out_of_time = self._budget_spent(max_seconds)
                last = s >= tc.max_steps or out_of_time
                if s % tc.log_every == 0 or last:
                    mean = torch.tensor([sum(window) / len(window)], dtype=torch.float64)
                    if self.dist.enabled:
                        dist.all_reduce(mean)
                        mean /= self.dist.world_size
                    rec = {"step": s, "epoch": epoch, "loss": float(mean), "lr": lr, "grad_norm": gnorm,
                           "images_per_sec": tc.batch_size * window_n / max(window_t, 1e-9),
                           "train_seconds": round(self.train_seconds, 3)}
                    window, window_t, window_n = [], 0.0, 0
                    if main:
                        self.history.append(rec)
                        if bar is not None:
                            bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{lr:.2e}")
                        if metrics is not None:
                            with open(metrics, "a") as f:
                                f.write(json.dumps(rec) + "\n")
                        for cb in self.callbacks:
                            cb.on_log(self, rec)
                if tc.sample_every > 0 and s % tc.sample_every == 0 and main:
                    self._write_grid()
                if self.output_dir is not None and (
                        (tc.checkpoint_every > 0 and s % tc.checkpoint_every == 0) or last):
                    self.wall_seconds += time.perf_counter() - t_wall
                    t_wall = time.perf_counter()
                    self.save_checkpoint()
                if last:
                    if out_of_time and s < tc.max_steps:
                        self.log(f"time budget reached: {self.train_seconds:.0f} s of training >= {max_seconds:.0f} s "
                                 f"at step {s}")
                    break
        finally:
            self.wall_seconds += time.perf_counter() - t_wall
            if bar is not None:
                bar.close()
        return self._result()

    def _budget_spent(self, max_seconds: Optional[float]) -> bool:
        """True once ``train_seconds`` reaches ``max_seconds``; under DDP rank 0's clock decides for all
        ranks (so that they stop after the same update)."""
        if max_seconds is None:
            return False
        spent = self.train_seconds >= max_seconds
        if not self.dist.enabled:
            return spent
        flag = torch.tensor([1.0 if spent else 0.0], device=self.device)
        dist.broadcast(flag, src=0)
        return bool(flag.item())

    def _result(self) -> TrainResult:
        ips = self.step * self.cfg.train.batch_size / self.train_seconds if self.train_seconds else 0.0
        return TrainResult(step=self.step, history=list(self.history), checkpoint=self.last_checkpoint,
                           train_seconds=self.train_seconds, images_per_sec=ips)
