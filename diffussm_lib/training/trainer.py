"""The training loop (notebook 05): one small loop; the rest is step functions and callbacks.

``train_step`` makes one update (learning rate, forward and loss, backward and clipping, AdamW and
EMA; the pieces are in ``step.py``); ``train`` repeats it and decides when to log and checkpoint;
progress bar, metrics file and sample grids are callbacks (``callbacks.py``). A run's state is
exactly (weights, EMA, AdamW state, step): a checkpoint holds it, so a run killed at any moment and
resumed continues as if it had never stopped (up to floating-point rounding between processes),
losing only the steps since its last checkpoint. Under ``torchrun`` the model is wrapped in
DistributedDataParallel; only rank 0 logs and writes files (``checkpoint.safetensors``,
``config.yaml``, ``metrics.jsonl``, ``samples/step_NNNNNNN.png``).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..config import ExperimentConfig, ModelConfig
from ..data import dataset_from_config
from ..diffusion import DDIM_DEFAULT_STEPS, NoiseSchedule, diffusion_loss, drop_labels, null_class_of
from ..env import __version__, hardware_description
from ..models import build_model, count_params
from ..sampling import generate
from .callbacks import METRICS_NAME, SAMPLES_DIR, Callback, MetricsLog, ProgressBar, SampleGrids
from .checkpoint import CHECKPOINT_NAME, CONFIG_NAME, load_checkpoint, save_checkpoint, save_config_atomic
from .distributed import all_max, all_mean, broadcast_flag, init_distributed
from .ema import EMA, unwrap
from .loading import check_config_matches, check_resumable, load_state_strict
from .step import (NonFiniteLossError, autocast_context, faster_precision, lr_at, make_optimizer, sample_timesteps,
                   step_batches, step_generator)

WARMUP_CHECK_STEPS = 10   # under a time budget, the warm-up is checked against the steps the first 10 predict


def check_data_fits_model(dataset: Dataset, m: ModelConfig) -> None:
    """The first image of ``dataset`` (C, H, W) must be (model.in_channels, model.image_size,
    model.image_size) and its labels (where the dataset exposes ``y``) must be below model.num_classes
    (index num_classes is the null class of guidance). Raises ``ValueError`` naming the keys that fix it."""
    x0, _ = dataset[0]
    c, h, w = x0.shape
    want = (m.in_channels, m.image_size, m.image_size)
    if (c, h, w) != want:
        fix = [f"model.in_channels: {c}"] if c != m.in_channels else []
        if (h, w) != want[1:]:
            if h == w:
                fix.append(f"model.image_size: {h}")
            if h <= m.image_size and w <= m.image_size:
                fix.append(f"data.pad_to: {m.image_size} (pads with the background value)")
            if h != w and not fix:
                fix.append("square images (crop or pad them to one size)")
        raise ValueError(f"the data gives images of shape {tuple(x0.shape)} (C, H, W) but the model expects "
                         f"{want} (model.in_channels, model.image_size): set {' or '.join(fix)}")
    y = getattr(dataset, "y", None)
    if m.num_classes > 0 and isinstance(y, torch.Tensor) and len(y) and not 0 <= y.min() <= y.max() < m.num_classes:
        raise ValueError(f"the data has labels {int(y.min())}..{int(y.max())} but model.num_classes is {m.num_classes} "
                         f"(labels must lie in 0..{m.num_classes - 1}; {m.num_classes} is the null class of guidance)")


@dataclass
class TrainResult:
    """What ``Trainer.train`` returns. history: the logged records (rank 0)."""

    step: int
    history: List[Dict] = field(default_factory=list)
    checkpoint: Optional[Path] = None
    train_seconds: float = 0.0
    images_per_sec: float = 0.0


class Trainer:
    """Train ``cfg`` (an ``ExperimentConfig``). ``output_dir``: where checkpoints / metrics / grids
    go (rank 0; None = nothing is written). ``device``: default ``env.resolve_device()``
    (``cuda:LOCAL_RANK`` under torchrun). ``dataset`` / ``model``: default ``dataset_from_config``
    and ``build_model`` of the config. ``init_from``: a checkpoint whose EMA (else model) weights
    start model and EMA (optimizer and step start fresh). ``callbacks`` are added to the defaults
    (``ProgressBar`` if ``progress``, ``MetricsLog`` with an output folder, ``SampleGrids`` if
    ``train.sample_every > 0``: ``grid_size`` EMA images, DDIM ``grid_steps`` steps, guidance
    ``grid_guidance``, always the same noise). ``log``: text messages (default ``tqdm.write``)."""

    def __init__(self, cfg: ExperimentConfig, output_dir: Optional[str | os.PathLike] = None, *,
                 device: Optional[str | torch.device] = None, dataset: Optional[Dataset] = None,
                 model: Optional[nn.Module] = None, init_from: Optional[str | os.PathLike] = None,
                 callbacks: Sequence[Callback] = (), progress: bool = True, grid_size: int = 20,
                 grid_steps: int = DDIM_DEFAULT_STEPS, grid_guidance: float = 2.0,
                 log: Optional[Callable[[str], None]] = None):
        self.cfg = cfg
        tc = cfg.train
        self.dist, self.device = init_distributed(device)
        if tc.batch_size % self.dist.world_size:
            raise ValueError(f"train.batch_size={tc.batch_size} (the global batch) must be divisible by the "
                             f"number of processes ({self.dist.world_size})")
        self.local_batch = tc.batch_size // self.dist.world_size
        self.precision = tc.precision   # "auto" is resolved by pick_precision() when training starts
        self.precision_times: dict = {}  # {"fp32": seconds, "bf16": seconds}: pick_precision's medians
        self.max_seconds: Optional[float] = None   # the time budget of the current train() call
        if tc.precision == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("train.precision=bf16 but this GPU does not support bfloat16; use fp32")
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.grid_size, self.grid_steps, self.grid_guidance = grid_size, grid_steps, grid_guidance
        self._log = log

        self.dataset = dataset if dataset is not None else dataset_from_config(
            cfg.data, "train", channels=cfg.model.in_channels, num_classes=cfg.model.num_classes)
        check_data_fits_model(self.dataset, cfg.model)
        if len(self.dataset) < tc.batch_size:
            raise ValueError(f"the dataset has {len(self.dataset)} images, fewer than train.batch_size="
                             f"{tc.batch_size}: lower train.batch_size")

        torch.manual_seed(tc.seed)   # the initial weights (identical on every rank)
        self.model = (model if model is not None else build_model(cfg.model)).to(self.device)
        self.null_class = null_class_of(self.model)
        self.schedule = NoiseSchedule.from_config(cfg.diffusion).to(self.device)
        self.ema = EMA(self.model, tc.ema_decay, warmup=tc.ema_warmup)
        if self.dist.enabled:
            self.model = DistributedDataParallel(self.model, device_ids=[self.device.index]
                                                 if self.device.type == "cuda" else None)
        self.optimizer = make_optimizer(self.model, tc.lr, tc.weight_decay)
        self.step = 0
        self.train_seconds = 0.0      # time spent in training steps, over all runs of this model
        self.wall_seconds = 0.0       # including checkpoints and sample grids
        self.history: List[Dict] = []
        self.last_checkpoint: Optional[Path] = None
        self.last_checkpoint_step: Optional[int] = None

        self.callbacks: List[Callback] = []
        if self.dist.is_main:
            if progress:
                self.callbacks.append(ProgressBar())
            if self.output_dir is not None:
                self.callbacks.append(MetricsLog(self.output_dir / METRICS_NAME))
            if tc.sample_every > 0:
                folder = self.output_dir / SAMPLES_DIR if self.output_dir is not None else None
                self.callbacks.append(SampleGrids(tc.sample_every, folder))
        self.callbacks.extend(callbacks)
        if init_from is not None:
            self.load(init_from, resume=False)

    # ------------------------------------------------------------------ helpers
    @property
    def bare_model(self) -> nn.Module:
        """The model without its DDP wrapper."""
        return unwrap(self.model)

    @property
    def checkpoint_path(self) -> Optional[Path]:
        return self.output_dir / CHECKPOINT_NAME if self.output_dir is not None else None

    def log(self, msg: str) -> None:
        if self.dist.is_main:
            (self._log or tqdm.write)(msg)

    def emit(self, hook: str, *args) -> None:
        """Call ``hook`` (e.g. "on_log") on every callback, on rank 0."""
        if self.dist.is_main:
            for cb in self.callbacks:
                fn = getattr(cb, hook, None)
                if fn is not None:
                    fn(self, *args)

    # ------------------------------------------------------------------ one update
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
        """One update on a batch x (b, C, H, W), y (b,) at step ``self.step``; returns (loss, grad
        norm before clipping, lr). Raises ``NonFiniteLossError`` (without updating) on NaN / inf."""
        tc, s = self.cfg.train, self.step
        g = step_generator(tc.seed, s, self.dist.rank, self.device)      # all randomness of this step
        # learning rate
        lr = lr_at(s, tc.lr, tc.warmup_steps, tc.lr_schedule,
                   0.0 if tc.lr_schedule == "constant" else self.progress())   # constant: no clock, no collective
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        # forward, loss and backward
        loss = self._loss(x, y, g)
        self._check_finite(loss.detach(), "loss")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(),
                                                   tc.grad_clip if tc.grad_clip > 0 else math.inf)
        self._check_finite(grad_norm.detach(), "gradient norm")
        # optimizer and EMA
        self.optimizer.step()
        self.ema.update(self.model)
        self.step += 1
        return float(loss.detach()), float(grad_norm), lr

    def _loss(self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator, precision: Optional[str] = None
              ) -> torch.Tensor:
        """The training loss of a batch x (b, C, H, W), y (b,): label dropout, t from
        ``train.timestep_sampling``, the loss weighted by ``train.loss_weighting``; drawn from ``g``."""
        tc = self.cfg.train
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        self.model.train()
        with autocast_context(self.device, precision or self.precision):
            y_in = drop_labels(y, tc.label_dropout, self.null_class, generator=g)
            t = sample_timesteps(x.shape[0], self.schedule.T, g, tc.timestep_sampling, tc.logit_mean, tc.logit_std,
                                 device=self.device)
            return diffusion_loss(self.model, self.schedule, x, y_in, generator=g, t=t,
                                  prediction=self.cfg.diffusion.prediction, vlb_weight=self.cfg.diffusion.vlb_weight,
                                  weighting=tc.loss_weighting, min_snr_gamma=tc.min_snr_gamma)

    def progress(self) -> float:
        """How much of the run is done, in [0, 1]: the larger of step / max_steps and, under a time
        budget, train_seconds / budget (what a decaying ``train.lr_schedule`` follows)."""
        p = self.step / max(self.cfg.train.max_steps, 1)
        if self.max_seconds:   # every process must use the same rate: the slowest clock (one collective under DDP)
            p = max(p, all_max(self.train_seconds, self.dist, self.device) / self.max_seconds)
        return min(p, 1.0)

    def pick_precision(self, x: torch.Tensor, y: torch.Tensor) -> str:
        """Resolve ``train.precision: auto`` on the batch (x, y) with ``faster_precision`` (forward +
        backward, no update; the time counts towards ``train_seconds``: it is part of the budget).
        Under DDP rank 0's measurement decides. Returns the precision and sets ``self.precision``."""
        if self.cfg.train.precision != "auto":
            return self.precision
        cands = ["fp32", "bf16"] if self.device.type == "cpu" or torch.cuda.is_bf16_supported() else ["fp32"]
        g = step_generator(self.cfg.train.seed, 0, self.dist.rank, self.device)   # a copy: step 0 redraws
        sync = (lambda: torch.cuda.synchronize(self.device)) if self.device.type == "cuda" else None
        t0 = time.perf_counter()
        pick, med = faster_precision(lambda c: self._loss(x, y, g, precision=c).backward(), cands, sync=sync)
        self.optimizer.zero_grad(set_to_none=True)
        self.train_seconds += time.perf_counter() - t0
        if self.dist.enabled:
            pick = "bf16" if broadcast_flag(pick == "bf16", self.dist, self.device) else "fp32"
        self.precision, self.precision_times = pick, dict(med)
        self.log("precision auto: " + ", ".join(f"{c} {1e3 * m:.0f} ms" for c, m in med.items())
                 + f" per forward + backward of {len(x)} images -> {pick}")
        return pick

    def _check_finite(self, value: torch.Tensor, what: str) -> None:
        if all_max(float(not torch.isfinite(value).all()), self.dist, self.device) > 0:
            where = (f"The last good checkpoint is kept: {self.last_checkpoint} (step {self.last_checkpoint_step})."
                     if self.last_checkpoint is not None else "No checkpoint had been written yet.")
            raise NonFiniteLossError(
                f"non-finite {what} ({value.item() if value.numel() == 1 else value}) at step {self.step}: "
                f"training stopped before this update. {where} Common causes: too high train.lr, no "
                "train.grad_clip, bad input data.")

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: Optional[str | os.PathLike] = None) -> Optional[Path]:
        """Write the checkpoint (rank 0; atomically). Default path: ``output_dir/checkpoint.safetensors``."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None:
            raise ValueError("no output_dir: pass a path to save_checkpoint")
        if self.dist.is_main:
            extra = {"ema_updates": self.ema.num_updates, "train_seconds": self.train_seconds,
                     "wall_seconds": self.wall_seconds, "images_seen": self.step * self.cfg.train.batch_size,
                     "world_size": self.dist.world_size, "precision": self.precision,
                     "hardware": hardware_description(self.device, self.dist.world_size),
                     "torch_version": torch.__version__, "library_version": __version__}
            save_checkpoint(path, config=self.cfg, step=self.step, model=self.bare_model.state_dict(),
                            ema=self.ema.state_dict(), optimizer=self.optimizer.state_dict(), extra=extra)
            self.last_checkpoint, self.last_checkpoint_step = path, self.step
            self.emit("on_checkpoint", path)
        if self.dist.enabled:
            torch.distributed.barrier()
        return path

    def load(self, path: str | os.PathLike, resume: bool) -> None:
        """The one load path. ``resume=True``: model, EMA, optimizer, step and clocks from a training
        checkpoint whose model / diffusion / data sections match (changed train settings are
        reported). ``resume=False`` (``init_from``): the EMA (else model) weights start both the model
        and the EMA of a matching model section; optimizer and step stay fresh."""
        ckpt = load_checkpoint(path)
        if resume:
            check_resumable(ckpt, self.cfg, self.log)
        else:
            check_config_matches(ckpt.config, self.cfg, f"checkpoint {ckpt.path}", sections=("model",))
        model_state = ckpt.model if resume else ckpt.weights("ema")
        load_state_strict(self.bare_model, model_state, f"checkpoint {ckpt.path}", ckpt.config, self.cfg)
        ema_state = (ckpt.ema if ckpt.ema is not None else ckpt.model) if resume else model_state
        self.ema.load_state_dict(ema_state, ckpt.extra.get("ema_updates", 0))
        if not resume:
            self.log(f"initialised from {ckpt.path} (step {ckpt.step}, "
                     f"{'EMA' if ckpt.ema is not None else 'model'} weights); optimizer and step start fresh")
            return
        self.optimizer.load_state_dict(ckpt.optimizer)
        self.step = ckpt.step
        self.train_seconds = float(ckpt.extra.get("train_seconds", 0.0))
        self.wall_seconds = float(ckpt.extra.get("wall_seconds", 0.0))
        self.last_checkpoint, self.last_checkpoint_step = ckpt.path, ckpt.step
        self.emit("on_resume", ckpt.step)
        self.log(f"resumed from {ckpt.path} at step {ckpt.step}")

    def resume(self, path: Optional[str | os.PathLike] = None) -> bool:
        """``load(path, resume=True)`` from ``path`` (default: the output folder's checkpoint).
        Returns False (and starts from scratch) when there is none."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None or not path.exists():
            self.log(f"resume: no checkpoint at {path}; starting from step 0")
            return False
        self.load(path, resume=True)
        return True

    def sample_grid(self, n: Optional[int] = None) -> torch.Tensor:
        """``n`` (default ``grid_size``) EMA samples, labels 0, 1, 2, ...: float (n, C, H, W) in [-1, 1]."""
        n = n or self.grid_size
        k = self.cfg.model.num_classes
        labels = torch.arange(n) % k if k > 0 else None
        return generate(self.ema.module, self.schedule, n, labels, image_size=self.cfg.model.image_size,
                        channels=self.cfg.model.in_channels, sampler="ddim", steps=self.grid_steps,
                        guidance=self.grid_guidance if labels is not None else 1.0, seed=self.cfg.train.seed,
                        prediction=self.cfg.diffusion.prediction, device=self.device)

    # ------------------------------------------------------------------ the loop
    def train(self, max_steps: Optional[int] = None, resume: bool = False,
              max_seconds: Optional[float] = None) -> TrainResult:
        """Train until ``max_steps`` total updates (default ``train.max_steps``), continuing from the
        current step (with ``resume=True``: from the output folder's checkpoint, if any).

        ``max_seconds``: a training-time budget. The run also stops (and checkpoints) after the first
        update that brings ``train_seconds`` (time spent in training steps, summed over resumed
        sessions) to at least this. Equal budgets make equal-compute comparisons (notebook 07)."""
        if max_seconds is not None and not max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
        self.max_seconds = max_seconds
        if max_steps is not None and max_steps != self.cfg.train.max_steps:
            self.cfg = replace(self.cfg, train=replace(self.cfg.train, max_steps=int(max_steps)))
        tc = self.cfg.train
        if resume:
            self.resume()
        if self.dist.is_main and self.output_dir is not None:
            save_config_atomic(self.cfg, self.output_dir / CONFIG_NAME)
        if self.step >= tc.max_steps:
            self.log(f"already at step {self.step} >= max_steps {tc.max_steps}: nothing to do")
            return self._result()
        if max_seconds is not None and self.train_seconds >= max_seconds:
            self.log(f"already at {self.train_seconds:.0f} s of training >= the budget of {max_seconds:.0f} s: "
                     "nothing to do")
            return self._result()
        self.log(f"training {self.cfg.name}: {count_params(self.bare_model):,} parameters, steps {self.step} -> "
                 f"{tc.max_steps}, global batch {tc.batch_size}"
                 + (f" on {self.dist.world_size} processes" if self.dist.enabled else "")
                 + f", {self.device.type}, {tc.precision}"
                 + (f", lr schedule {tc.lr_schedule}" if tc.lr_schedule != "constant" else "")
                 + (f", time budget {max_seconds:.0f} s" if max_seconds is not None else ""))
        if self.step < tc.warmup_steps and tc.warmup_steps > tc.max_steps:
            self._warn_long_warmup(f"the run's {tc.max_steps} steps (train.max_steps / --max-steps)")
        losses, window_t = [], 0.0          # since the last log record
        session_steps, session_t = 0, 0.0   # timed updates of this call: the budget's expected steps
        t_wall = time.perf_counter()
        self.emit("on_train_begin")
        try:
            for epoch, x, y in step_batches(self.dataset, self.local_batch, tc.seed, self.step, self.dist.rank,
                                            self.dist.world_size, tc.num_workers):
                if self.precision == "auto":
                    self.pick_precision(x, y)
                # one update, timed (time in training steps is the budget)
                t0 = time.perf_counter()
                loss, gnorm, lr = self.train_step(x, y)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                dt = time.perf_counter() - t0
                self.train_seconds += dt
                losses.append(loss)
                window_t += dt
                session_steps, session_t = session_steps + 1, session_t + dt
                s = self.step
                if max_seconds is not None and session_steps == WARMUP_CHECK_STEPS:
                    self._check_warmup_fits_budget(session_t / session_steps, max_seconds)
                self.emit("on_step", s)                       # progress bar, sample grids
                out_of_time = max_seconds is not None and broadcast_flag(
                    self.train_seconds >= max_seconds, self.dist, self.device)   # rank 0's clock decides
                last = s >= tc.max_steps or out_of_time
                # logging: the mean loss since the last record, averaged over processes
                if s % tc.log_every == 0 or last:
                    rec = {"step": s, "epoch": epoch, "loss": all_mean(sum(losses) / len(losses), self.dist,
                                                                       self.device),
                           "lr": lr, "grad_norm": gnorm, "ema_decay": self.ema.last_decay,
                           "images_per_sec": tc.batch_size * len(losses) / max(window_t, 1e-9),
                           "train_seconds": round(self.train_seconds, 3)}
                    losses, window_t = [], 0.0
                    if self.dist.is_main:
                        self.history.append(rec)
                    self.emit("on_log", rec)
                # checkpoint
                if self.output_dir is not None and ((tc.checkpoint_every > 0 and s % tc.checkpoint_every == 0)
                                                    or last):
                    self.wall_seconds += time.perf_counter() - t_wall
                    t_wall = time.perf_counter()
                    self.save_checkpoint()
                if last:
                    if out_of_time and s < tc.max_steps:
                        self.log(f"time budget reached: {self.train_seconds:.0f} s of training >= "
                                 f"{max_seconds:.0f} s at step {s}")
                    break
        finally:
            self.wall_seconds += time.perf_counter() - t_wall
            self.emit("on_train_end")
        return self._result()

    def _check_warmup_fits_budget(self, seconds_per_step: float, max_seconds: float) -> None:
        """Under a time budget, once the first updates are timed: warn when the warm-up outlasts the
        steps the budget allows at that speed (a warm-up longer than max_steps was warned of at the start)."""
        tc = self.cfg.train
        if not self.step < tc.warmup_steps <= tc.max_steps:
            return
        expected = self.step + (max_seconds - self.train_seconds) / max(seconds_per_step, 1e-9)
        if tc.warmup_steps > expected:
            self._warn_long_warmup(f"the about {expected:.0f} steps the time budget of {max_seconds:.0f} s allows "
                                   f"at the measured {1e3 * seconds_per_step:.0f} ms per step")

    def _warn_long_warmup(self, run: str) -> None:
        tc = self.cfg.train
        self.log(f"warning: train.warmup_steps={tc.warmup_steps} is longer than {run}: the learning rate never "
                 f"reaches train.lr={tc.lr:g} (and a decaying schedule never starts); lower train.warmup_steps")

    def _result(self) -> TrainResult:
        ips = self.step * self.cfg.train.batch_size / self.train_seconds if self.train_seconds else 0.0
        return TrainResult(step=self.step, history=list(self.history), checkpoint=self.last_checkpoint,
                           train_seconds=self.train_seconds, images_per_sec=ips)
