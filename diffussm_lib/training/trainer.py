"""The training loop (notebook 05): one small loop; the rest is step functions and callbacks.

``train_step`` makes one update (learning rate, forward and loss, backward and clipping, AdamW and
EMA; the pieces are in ``step.py``); ``train`` repeats it and decides when to log and checkpoint;
progress bar, metrics log and sample grids are callbacks (``callbacks.py``). A run's state is
exactly (weights, EMA, AdamW state, step): a checkpoint holds it, so a run killed at any moment and
resumed continues as if it had never stopped (up to floating-point rounding between processes),
losing only the steps since its last checkpoint. Under ``torchrun`` the model is wrapped in
DistributedDataParallel; only rank 0 logs and writes files (``checkpoint.safetensors``,
``config.yaml``, ``metrics.jsonl``, ``samples/step_NNNNNNN.png``).

Host syncs. On a GPU the Python loop runs ahead of the device, queueing work; every ``.item()`` or
``float(tensor)`` makes it wait until the queue is empty. The loop syncs once per log interval
(``LogWindow.sync``: the losses and gradient norms of the interval, checked for NaN / inf there, as
nanoGPT reads its loss at the log interval) and before each checkpoint, nowhere else; under DDP a
time budget adds one broadcast per update (every process must stop after the same update).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..config import ConfigError, ExperimentConfig, ModelConfig
from ..data import DataError, dataset_from_config
from ..diffusion import (
    DEFAULT_SAMPLER,
    DEFAULT_STEPS,
    NoiseSchedule,
    diffusion_loss,
    drop_labels,
    null_class_of,
)
from ..env import __version__, hardware_description
from ..errors import UserError
from ..models import build_model, count_params
from ..sampling import generate
from .callbacks import METRICS_NAME, SAMPLES_DIR, Callback, MetricsLog, ProgressBar, SampleGrids
from .checkpoint import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    load_checkpoint,
    save_checkpoint,
    save_config_atomic,
)
from .distributed import DistInfo, all_max, all_mean_, broadcast_flag, init_distributed
from .ema import EMA, unwrap
from .loading import check_config_matches, check_resumable, load_state_strict
from .step import (
    NonFiniteLossError,
    autocast_context,
    faster_precision,
    lr_at,
    make_optimizer,
    sample_timesteps,
    step_batches,
    step_generator,
)

WARMUP_CHECK_STEPS = 10  # under a time budget, the warm-up is checked against the first 10 updates


# ---------------------------------------------------------------------- the data boundary
def check_labels(y: torch.Tensor, num_classes: int, what: str = "the data") -> None:
    """Class labels y (n,) must be integers in 0..num_classes-1 (index num_classes is the null class
    of guidance); a model without classes (num_classes 0) ignores them. The trainer checks them
    where they enter training (a dataset's ``y`` once, other datasets' batches on the host), so
    the model need not: a check inside the forward pass is a host sync per step. Raises
    ``DataError``."""
    if num_classes <= 0 or not len(y):
        return
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise DataError(
            f"{what} has labels of dtype {y.dtype}; class labels are integers 0...{num_classes - 1}"
        )
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise DataError(
            f"{what} has labels {lo}..{hi} but model.num_classes is {num_classes} "
            f"(labels must lie in 0..{num_classes - 1}; {num_classes} is the null "
            "class of guidance)"
        )


def check_data_fits_model(dataset: Dataset, m: ModelConfig) -> None:
    """The first image of ``dataset`` (C, H, W) must be (model.in_channels, model.image_size,
    model.image_size) and its labels (where the dataset exposes a tensor ``y``) must pass
    ``check_labels``. Raises ``DataError`` (a ``UserError``) naming the keys that fix it."""
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
        raise DataError(
            f"the data gives images of shape {tuple(x0.shape)} (C, H, W) but the model "
            f"expects {want} (model.in_channels, model.image_size): set "
            f"{' or '.join(fix)}"
        )
    y = getattr(dataset, "y", None)
    if isinstance(y, torch.Tensor):
        check_labels(y, m.num_classes)


# ---------------------------------------------------------------------- the log interval
class LogWindow:
    """The updates since the last log record. Their losses and gradient norms (0-d tensors) stay on
    the device until ``sync``; their seconds are host time (``add_seconds``)."""

    def __init__(self) -> None:
        self.pending: List[tuple[torch.Tensor, torch.Tensor]] = []  # (loss, grad norm), on device
        self.losses: List[float] = []  # synced: each update's loss (averaged over processes)
        self.grad_norm = math.nan  # synced: the last update's gradient norm before clipping
        self.seconds = 0.0
        self.bad: Optional[tuple[int, str, float]] = None  # the first non-finite value, once seen

    def add(self, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        self.pending.append((loss, grad_norm))

    def sync(self, dist: DistInfo, step: int) -> Optional[tuple[int, str, float]]:
        """Bring the pending values to the host: THE host sync of a log interval (one all-reduce of
        the losses under DDP; the gradient norm is the same on every process). ``step``: the updates
        made so far. Returns (step, "loss" or "gradient norm", value) of the first NaN / inf, else
        None; once one is seen it is returned by every later call."""
        if self.pending and self.bad is None:
            loss = all_mean_(torch.stack([p[0] for p in self.pending]).double(), dist)  # (n,)
            norm = torch.stack([p[1] for p in self.pending]).double()  # (n,)
            values = torch.stack((loss, norm), 1).tolist()  # <- the sync: waits for the queue
            first = step - len(values)  # the step of the first pending update
            self.pending = []
            for i, (lo, gn) in enumerate(values):
                if not (math.isfinite(lo) and math.isfinite(gn)):
                    self.bad = (
                        (first + i, "loss", lo)
                        if not math.isfinite(lo)
                        else (first + i, "gradient norm", gn)
                    )
                    break
                self.losses.append(lo)
                self.grad_norm = gn
        return self.bad


@dataclass
class TrainResult:
    """What ``Trainer.train`` returns: the step reached, the last checkpoint, the training time
    (summed over resumed sessions) and speed. ``history``: the run's log records, read back from its
    metrics log (``metrics.jsonl`` with an output folder; on rank 0, ``[]`` on the others)."""

    step: int
    checkpoint: Optional[Path] = None
    train_seconds: float = 0.0
    images_per_sec: float = 0.0
    metrics: Optional[MetricsLog] = field(default=None, repr=False, compare=False)

    @property
    def history(self) -> List[Dict]:
        return self.metrics.records if self.metrics is not None else []


class Trainer:
    """Train ``cfg`` (an ``ExperimentConfig``). ``output_dir``: where checkpoints / metrics / grids
    go (rank 0; None = nothing is written). ``device``: default ``env.resolve_device()``
    (``cuda:LOCAL_RANK`` under torchrun). ``dataset`` / ``model``: default ``dataset_from_config``
    and ``build_model`` of the config. ``init_from``: a checkpoint whose EMA (else model) weights
    start model and EMA (optimizer and step start fresh). ``callbacks`` are added to the defaults
    (``ProgressBar`` if ``progress``, ``MetricsLog`` (``metrics.jsonl`` with an output folder),
    ``SampleGrids`` if ``train.sample_every > 0``: ``grid_size`` EMA images, ``grid_sampler`` at
    ``grid_steps`` steps (the course's default sampler), guidance ``grid_guidance``, always the same
    noise). ``log``: text messages (default
    ``tqdm.write``)."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        output_dir: Optional[str | os.PathLike] = None,
        *,
        device: Optional[str | torch.device] = None,
        dataset: Optional[Dataset] = None,
        model: Optional[nn.Module] = None,
        init_from: Optional[str | os.PathLike] = None,
        callbacks: Sequence[Callback] = (),
        progress: bool = True,
        grid_size: int = 20,
        grid_sampler: str = DEFAULT_SAMPLER,
        grid_steps: int = DEFAULT_STEPS,
        grid_guidance: float = 2.0,
        log: Optional[Callable[[str], None]] = None,
    ):
        self.cfg = cfg
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.grid_size, self.grid_guidance = grid_size, grid_guidance
        self.grid_sampler, self.grid_steps = grid_sampler, grid_steps
        self._log = log
        self.dist, self.device = init_distributed(device)
        self.local_batch = self._local_batch_size()
        self.precision = self._check_precision()  # "auto": resolved by pick_precision() at step 0
        self.precision_times: dict = {}  # {"fp32": s, "bf16": s}: pick_precision's medians
        self.max_seconds: Optional[float] = None  # the time budget of the current train() call
        self.dataset = self._build_dataset(dataset)
        self.model, self.ema, self.optimizer = self._build_model(model)
        self.null_class = null_class_of(self.bare_model)
        self.schedule = NoiseSchedule.from_config(cfg.diffusion).to(self.device)
        self.step = 0
        self.train_seconds = 0.0  # time spent in training steps, over all runs of this model
        self.wall_seconds = 0.0  # including checkpoints and sample grids
        self.last_checkpoint: Optional[Path] = None
        self.last_checkpoint_step: Optional[int] = None
        self.window = LogWindow()  # the updates since the last log record
        self.metrics = MetricsLog(None if output_dir is None else self.output_dir / METRICS_NAME)
        self.callbacks: List[Callback] = self._default_callbacks(progress) + list(callbacks)
        if init_from is not None:
            self.load(init_from, resume=False)

    # ------------------------------------------------------------------ building it
    def _local_batch_size(self) -> int:
        """This process's share of the global ``train.batch_size``."""
        bs, world = self.cfg.train.batch_size, self.dist.world_size
        if bs % world:
            raise UserError(
                f"train.batch_size={bs} (the global batch) must be divisible by the "
                f"number of processes ({world})"
            )
        return bs // world

    def _check_precision(self) -> str:
        """``train.precision``, checked against the device (TF32 matmuls are allowed on CUDA)."""
        precision = self.cfg.train.precision
        cuda = self.device.type == "cuda"
        if precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
            raise UserError("train.precision=bf16 but this GPU does not support bfloat16; use fp32")
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        return precision

    def _build_dataset(self, dataset: Optional[Dataset]) -> Dataset:
        """The training data (``dataset_from_config`` unless given), checked against the model once:
        image shape, labels (``check_labels``), at least one global batch."""
        cfg = self.cfg
        if dataset is None:
            dataset = dataset_from_config(
                cfg.data, "train", channels=cfg.model.in_channels, num_classes=cfg.model.num_classes
            )
        check_data_fits_model(dataset, cfg.model)
        if len(dataset) < cfg.train.batch_size:
            raise DataError(
                f"the dataset has {len(dataset)} images, fewer than train.batch_size="
                f"{cfg.train.batch_size}: lower train.batch_size"
            )
        self._labels_checked = isinstance(getattr(dataset, "y", None), torch.Tensor)
        return dataset

    def _build_model(self, model: Optional[nn.Module]) -> tuple[nn.Module, EMA, torch.optim.AdamW]:
        """(model, EMA, AdamW): ``model`` (default: the config's, initialised from ``train.seed``,
        the same on every process) on the device, wrapped in DDP under torchrun."""
        tc = self.cfg.train
        torch.manual_seed(tc.seed)
        if model is None:
            try:
                model = build_model(self.cfg.model)
            except UserError:
                raise
            except ValueError as e:  # the factory's checks of a combination of model keys
                raise ConfigError(f"the config's model section: {e}") from e
        model = model.to(self.device)
        ema = EMA(model, tc.ema_decay, warmup=tc.ema_warmup)
        if self.dist.enabled:
            model = DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        return model, ema, make_optimizer(model, tc.lr, tc.weight_decay)

    def _default_callbacks(self, progress: bool) -> List[Callback]:
        """Rank 0's bookkeeping: progress bar, the metrics log, sample grids."""
        if not self.dist.is_main:
            return []
        every = self.cfg.train.sample_every
        grids = self.output_dir / SAMPLES_DIR if self.output_dir is not None else None
        return (
            ([ProgressBar()] if progress else [])
            + [self.metrics]
            + ([SampleGrids(every, grids)] if every > 0 else [])
        )

    # ------------------------------------------------------------------ small helpers
    @property
    def bare_model(self) -> nn.Module:
        """The model without its DDP wrapper."""
        return unwrap(self.model)

    @property
    def checkpoint_path(self) -> Optional[Path]:
        return self.output_dir / CHECKPOINT_NAME if self.output_dir is not None else None

    @property
    def history(self) -> List[Dict]:
        """The run's log records (rank 0; ``[]`` on the others), read back from the metrics log."""
        return self.metrics.records if self.dist.is_main else []

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
    def train_step(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, float]:
        """One update on a batch x (b, C, H, W), y (b,) at step ``self.step``. Returns (loss, grad
        norm before clipping) as 0-d tensors on the device, and the learning rate. No host sync:
        ``float(loss)`` waits for the device; the loop reads them once per log interval."""
        tc, s = self.cfg.train, self.step
        g = step_generator(tc.seed, s, self.dist.rank, self.device)  # all randomness of this step
        # learning rate (constant: no clock, no collective)
        lr = lr_at(
            s,
            tc.lr,
            tc.warmup_steps,
            tc.lr_schedule,
            0.0 if tc.lr_schedule == "constant" else self.progress(),
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        # forward, loss and backward
        loss = self._loss(x, y, g)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), tc.grad_clip if tc.grad_clip > 0 else math.inf
        )
        # optimizer and EMA
        self.optimizer.step()
        self.ema.update(self.model)
        self.step += 1
        return loss.detach(), grad_norm.detach(), lr

    def _loss(
        self, x: torch.Tensor, y: torch.Tensor, g: torch.Generator, precision: Optional[str] = None
    ) -> torch.Tensor:
        """The training loss (0-d) of a batch x (b, C, H, W), y (b,): label dropout, t from
        ``train.timestep_sampling``, the loss weighted by ``train.loss_weighting``; every random
        draw from ``g``."""
        tc, dc = self.cfg.train, self.cfg.diffusion
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        self.model.train()
        with autocast_context(self.device, precision or self.precision):
            y_in = drop_labels(y, tc.label_dropout, self.null_class, generator=g)
            t = sample_timesteps(
                x.shape[0],
                self.schedule.T,
                g,
                tc.timestep_sampling,
                tc.logit_mean,
                tc.logit_std,
                device=self.device,
            )
            return diffusion_loss(
                self.model,
                self.schedule,
                x,
                y_in,
                generator=g,
                t=t,
                prediction=dc.prediction,
                vlb_weight=dc.vlb_weight,
                weighting=tc.loss_weighting,
                min_snr_gamma=tc.min_snr_gamma,
            )

    def progress(self) -> float:
        """How much of the run is done, in [0, 1]: the larger of step / max_steps and, under a time
        budget, train_seconds / budget (what a decaying ``train.lr_schedule`` follows)."""
        p = self.step / max(self.cfg.train.max_steps, 1)
        if self.max_seconds:  # every process must use the same rate: the slowest clock (under DDP
            # one collective per update, only with a decaying schedule and a time budget)
            p = max(p, all_max(self.train_seconds, self.dist, self.device) / self.max_seconds)
        return min(p, 1.0)

    def pick_precision(self, x: torch.Tensor, y: torch.Tensor) -> str:
        """Resolve ``train.precision: auto`` on the batch x (b, C, H, W), y (b,) with
        ``faster_precision`` (forward + backward, no update; the time counts towards
        ``train_seconds``: it is part of the budget). Under DDP rank 0's measurement decides.
        Returns the precision and sets ``self.precision``."""
        if self.cfg.train.precision != "auto":
            return self.precision
        cuda = self.device.type == "cuda"
        cands = ["fp32", "bf16"] if not cuda or torch.cuda.is_bf16_supported() else ["fp32"]
        g = step_generator(self.cfg.train.seed, 0, self.dist.rank, self.device)  # step 0 redraws
        sync = (lambda: torch.cuda.synchronize(self.device)) if cuda else None
        t0 = time.perf_counter()
        pick, med = faster_precision(
            lambda c: self._loss(x, y, g, precision=c).backward(), cands, sync=sync
        )
        self.optimizer.zero_grad(set_to_none=True)
        self.train_seconds += time.perf_counter() - t0
        if self.dist.enabled:
            pick = "bf16" if broadcast_flag(pick == "bf16", self.dist, self.device) else "fp32"
        self.precision, self.precision_times = pick, dict(med)
        self.log(
            "precision auto: "
            + ", ".join(f"{c} {1e3 * m:.0f} ms" for c, m in med.items())
            + f" per forward + backward of {len(x)} images -> {pick}"
        )
        return pick

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: Optional[str | os.PathLike] = None) -> Optional[Path]:
        """Write the checkpoint (rank 0; atomically). Default path: ``output_dir/checkpoint.
        safetensors``. Never of weights that took a non-finite update (checked first: a sync)."""
        path = Path(path) if path is not None else self.checkpoint_path
        if path is None:
            raise UserError("no output_dir: pass a path to save_checkpoint")
        self._sync()
        if self.dist.is_main:
            extra = {
                "ema_updates": self.ema.num_updates,
                "train_seconds": self.train_seconds,
                "wall_seconds": self.wall_seconds,
                "images_seen": self.step * self.cfg.train.batch_size,
                "world_size": self.dist.world_size,
                "precision": self.precision,
                "hardware": hardware_description(self.device, self.dist.world_size),
                "torch_version": torch.__version__,
                "library_version": __version__,
            }
            save_checkpoint(
                path,
                config=self.cfg,
                step=self.step,
                model=self.bare_model.state_dict(),
                ema=self.ema.state_dict(),
                optimizer=self.optimizer.state_dict(),
                extra=extra,
            )
            self.last_checkpoint, self.last_checkpoint_step = path, self.step
            self.emit("on_checkpoint", path)
        if self.dist.enabled:
            torch.distributed.barrier()
        return path

    def load(self, path: str | os.PathLike, resume: bool) -> None:
        """The one load path. ``resume=True``: model, EMA, optimizer, step and clocks from a
        training checkpoint whose model / diffusion / data sections match (changed train settings
        are reported). ``resume=False`` (``init_from``): the EMA (else model) weights start both
        the model and the EMA of a matching model section; optimizer and step stay fresh."""
        ckpt = load_checkpoint(path)
        if resume:
            check_resumable(ckpt, self.cfg, self.log)
        else:
            check_config_matches(
                ckpt.config, self.cfg, f"checkpoint {ckpt.path}", sections=("model",)
            )
        model_state = ckpt.model if resume else ckpt.weights("ema")
        load_state_strict(
            self.bare_model, model_state, f"checkpoint {ckpt.path}", ckpt.config, self.cfg
        )
        ema_state = (ckpt.ema if ckpt.ema is not None else ckpt.model) if resume else model_state
        self.ema.load_state_dict(ema_state, ckpt.extra.get("ema_updates", 0))
        if not resume:
            self.log(
                f"initialised from {ckpt.path} (step {ckpt.step}, "
                f"{'EMA' if ckpt.ema is not None else 'model'} weights); optimizer and step "
                "start fresh"
            )
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
        """``n`` (default ``grid_size``) EMA samples, labels 0, 1, 2, ...: float (n, C, H, W) in
        [-1, 1]."""
        n = n or self.grid_size
        m = self.cfg.model
        labels = torch.arange(n) % m.num_classes if m.num_classes > 0 else None
        return generate(
            self.ema.module,
            self.schedule,
            n,
            labels,
            image_size=m.image_size,
            channels=m.in_channels,
            sampler=self.grid_sampler,
            steps=self.grid_steps,
            guidance=self.grid_guidance if labels is not None else 1.0,
            seed=self.cfg.train.seed,
            prediction=self.cfg.diffusion.prediction,
            device=self.device,
        )

    # ------------------------------------------------------------------ the loop
    def train(
        self,
        max_steps: Optional[int] = None,
        resume: bool = False,
        max_seconds: Optional[float] = None,
    ) -> TrainResult:
        """Train until ``max_steps`` total updates (default ``train.max_steps``), continuing from
        the current step (with ``resume=True``: from the output folder's checkpoint, if any).

        ``max_seconds``: a training-time budget. The run also stops (and checkpoints) after the
        first update that brings ``train_seconds`` (time spent in training steps, summed over
        resumed sessions) to at least this. Equal budgets make equal-compute comparisons
        (notebook 07)."""
        if not self._begin(max_steps, resume, max_seconds):
            return self._result()
        tc = self.cfg.train
        self.emit("on_train_begin")
        try:
            for epoch, x, y in self._batches():
                if self.precision == "auto":
                    self.pick_precision(x, y)
                t0 = time.perf_counter()
                loss, grad_norm, lr = self.train_step(x, y)  # queued on the device: no host sync
                self.window.add(loss, grad_norm)
                s = self.step
                if s % tc.log_every == 0 or s >= tc.max_steps:
                    self._sync()  # THE host sync of a log interval; timed: it waits for the queue
                self._count_time(time.perf_counter() - t0)
                self.emit("on_step", s)  # progress bar, sample grids
                last = s >= tc.max_steps or self._out_of_time()
                if s % tc.log_every == 0 or last:
                    self._log_record(epoch, lr)
                if self.output_dir is not None and (last or self._checkpoint_due(s)):
                    self._tick_wall()
                    self.save_checkpoint()
                if last:
                    break
        finally:
            self._tick_wall()
            self.emit("on_train_end")
        return self._result()

    # ------------------------------------------------------------------ the loop's helpers
    def _begin(self, max_steps: Optional[int], resume: bool, max_seconds: Optional[float]) -> bool:
        """Set up a ``train`` call: the budget and ``max_steps``, resume, ``config.yaml``, the
        banner and warm-up warning, the clocks. False when there is nothing to do."""
        if max_seconds is not None and not max_seconds > 0:
            raise UserError(f"max_seconds must be > 0, got {max_seconds}")
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
            return False
        if max_seconds is not None and self.train_seconds >= max_seconds:
            self.log(
                f"already at {self.train_seconds:.0f} s of training >= the budget of "
                f"{max_seconds:.0f} s: nothing to do"
            )
            return False
        self.log(
            f"training {self.cfg.name}: {count_params(self.bare_model):,} parameters, steps "
            f"{self.step} -> {tc.max_steps}, global batch {tc.batch_size}"
            + (f" on {self.dist.world_size} processes" if self.dist.enabled else "")
            + f", {self.device.type}, {tc.precision}"
            + (f", lr schedule {tc.lr_schedule}" if tc.lr_schedule != "constant" else "")
            + (f", time budget {max_seconds:.0f} s" if max_seconds is not None else "")
        )
        if self.step < tc.warmup_steps and tc.warmup_steps > tc.max_steps:
            self._warn_long_warmup(
                f"the run's {tc.max_steps} steps (train.max_steps / --max-steps)"
            )
        self.window = LogWindow()
        self._session_steps, self._session_seconds = 0, 0.0  # this call's timed updates
        self._wall_mark = time.perf_counter()
        return True

    def _batches(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """(epoch, x (b, C, H, W), y (b,)) of this process from step ``self.step`` on
        (``step_batches``); labels that were not checked with the dataset are checked here, on the
        host (before they reach the device)."""
        tc = self.cfg.train
        for epoch, x, y in step_batches(
            self.dataset,
            self.local_batch,
            tc.seed,
            self.step,
            self.dist.rank,
            self.dist.world_size,
            tc.num_workers,
        ):
            if not self._labels_checked and y.device.type == "cpu":
                check_labels(y, self.cfg.model.num_classes, "a batch of the data")
            yield epoch, x, y

    def _sync(self) -> None:
        """The log window's values reach the host (``LogWindow.sync``); a NaN / inf among them stops
        the run, before a log record or a checkpoint could hold it."""
        bad = self.window.sync(self.dist, self.step)
        if bad is None:
            return
        step, what, value = bad
        where = (
            f"The last good checkpoint is kept: {self.last_checkpoint} (step "
            f"{self.last_checkpoint_step})."
            if self.last_checkpoint is not None
            else "No checkpoint had been written yet."
        )
        raise NonFiniteLossError(
            f"non-finite {what} ({value}) at step {step}: training stopped at step {self.step} "
            f"(the loop checks once per log interval, train.log_every, and before each checkpoint; "
            f"the weights in memory took the updates since). {where} Common causes: too high "
            "train.lr, no train.grad_clip, bad input data."
        )

    def _count_time(self, seconds: float) -> None:
        """Add an update's seconds to the run's clock, the log window and this call's session; after
        the session's first updates, check the warm-up against the time budget."""
        self.train_seconds += seconds
        self.window.seconds += seconds
        self._session_steps, self._session_seconds = (
            self._session_steps + 1,
            self._session_seconds + seconds,
        )
        if self.max_seconds is not None and self._session_steps == WARMUP_CHECK_STEPS:
            self._check_warmup_fits_budget(
                self._session_seconds / self._session_steps, self.max_seconds
            )

    def _out_of_time(self) -> bool:
        """Has the last update spent the time budget? Rank 0's clock decides: under DDP a broadcast
        (a host sync per update: every process must stop after the same update)."""
        if self.max_seconds is None:
            return False
        out = broadcast_flag(self.train_seconds >= self.max_seconds, self.dist, self.device)
        if out:
            self.log(
                f"time budget reached: {self.train_seconds:.0f} s of training >= "
                f"{self.max_seconds:.0f} s at step {self.step}"
            )
        return out

    def _log_record(self, epoch: int, lr: float) -> None:
        """The record of the updates since the last one (loss: their mean, over processes too) to
        the callbacks: the metrics log, the progress bar, yours. Starts a new window."""
        self._sync()
        w, bs = self.window, self.cfg.train.batch_size
        rec = {
            "step": self.step,
            "epoch": epoch,
            "loss": sum(w.losses) / len(w.losses),
            "lr": lr,
            "grad_norm": w.grad_norm,
            "ema_decay": self.ema.last_decay,
            "images_per_sec": bs * len(w.losses) / max(w.seconds, 1e-9),
            "train_seconds": round(self.train_seconds, 3),
        }
        self.window = LogWindow()
        self.emit("on_log", rec)

    def _checkpoint_due(self, s: int) -> bool:
        every = self.cfg.train.checkpoint_every
        return every > 0 and s % every == 0

    def _tick_wall(self) -> None:
        """Add the wall-clock time since the last tick to ``wall_seconds`` (in checkpoints)."""
        now = time.perf_counter()
        self.wall_seconds += now - self._wall_mark
        self._wall_mark = now

    def _check_warmup_fits_budget(self, seconds_per_step: float, max_seconds: float) -> None:
        """Under a time budget, once the first updates are timed: warn when the warm-up outlasts the
        steps the budget allows at that speed (a warm-up longer than max_steps was warned of at the
        start)."""
        tc = self.cfg.train
        if not self.step < tc.warmup_steps <= tc.max_steps:
            return
        expected = self.step + (max_seconds - self.train_seconds) / max(seconds_per_step, 1e-9)
        if tc.warmup_steps > expected:
            self._warn_long_warmup(
                f"the about {expected:.0f} steps the time budget of "
                f"{max_seconds:.0f} s allows at the measured "
                f"{1e3 * seconds_per_step:.0f} ms per step"
            )

    def _warn_long_warmup(self, run: str) -> None:
        tc = self.cfg.train
        self.log(
            f"warning: train.warmup_steps={tc.warmup_steps} is longer than {run}: the "
            f"learning rate never reaches train.lr={tc.lr:g} (and a decaying schedule never "
            "starts); lower train.warmup_steps"
        )

    def _result(self) -> TrainResult:
        images = self.step * self.cfg.train.batch_size
        ips = images / self.train_seconds if self.train_seconds else 0.0
        return TrainResult(
            step=self.step,
            checkpoint=self.last_checkpoint,
            train_seconds=self.train_seconds,
            images_per_sec=ips,
            metrics=self.metrics if self.dist.is_main else None,
        )
