"""Callbacks: what the training loop does besides training, small pieces a notebook can add or drop.

The loop (``Trainer.train``) calls, on rank 0 only:

* ``on_train_begin(trainer)`` before the first step of a run, ``on_train_end(trainer)`` after the
  last (also when it stops with an error);
* ``on_step(trainer, step)`` after every update (``step`` = updates made so far);
* ``on_log(trainer, record)`` every ``train.log_every`` updates and after the last one:
  ``record = {step, epoch, loss, lr, grad_norm, ema_decay, images_per_sec, train_seconds}``;
* ``on_sample(trainer, step, images)`` after a sample grid (float (N, C, H, W) in [-1, 1], EMA);
* ``on_checkpoint(trainer, path)`` after a checkpoint was written;
* ``on_resume(trainer, step)`` after a checkpoint was loaded to continue from step ``step``.

The trainer installs ``ProgressBar`` (with ``progress=True``), ``MetricsLog`` (the one record of the
run: ``metrics.jsonl`` in the output folder, in memory without one) and ``SampleGrids`` (when
``train.sample_every > 0``); ``Trainer(callbacks=[...])`` adds more, e.g. ``EMASnapshots`` (the EMA
weights at chosen steps, to evaluate along a run without stopping it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

import torch
from tqdm.auto import tqdm

from ..atomic import atomic_write_text
from ..sampling import make_grid, save_png
from .checkpoint import save_checkpoint

METRICS_NAME = "metrics.jsonl"
SAMPLES_DIR = "samples"


class Callback:
    """Base class: every hook does nothing; override the ones you need (``trainer``: the loop)."""

    def on_train_begin(self, trainer) -> None: ...
    def on_train_end(self, trainer) -> None: ...
    def on_step(self, trainer, step: int) -> None: ...
    def on_log(self, trainer, record: Dict) -> None: ...
    def on_sample(self, trainer, step: int, images: torch.Tensor) -> None: ...
    def on_checkpoint(self, trainer, path: Path) -> None: ...
    def on_resume(self, trainer, step: int) -> None: ...


class ProgressBar(Callback):
    """A tqdm bar over the run, showing the step, the last logged loss and learning rate. Without a
    time budget it counts steps up to ``train.max_steps``; under one (``--max-minutes``) it counts
    seconds of training up to the budget (or the steps' share of the run, if ``max_steps`` ends it
    first), so its total and ETA are those of the run that will actually happen."""

    def __init__(self) -> None:
        self.bar: Optional[tqdm] = None
        self.postfix: Dict[str, object] = {}

    @staticmethod
    def position(trainer) -> float:
        """Where the run is, in the bar's units: steps, or seconds of the time budget."""
        max_steps, budget = trainer.cfg.train.max_steps, trainer.max_seconds
        if not budget:
            return trainer.step
        done = max(trainer.step / max(max_steps, 1), trainer.train_seconds / budget)
        return budget * min(1.0, done)

    def on_train_begin(self, trainer):
        self.postfix = {}
        if trainer.max_seconds:
            self.bar = tqdm(
                total=trainer.max_seconds,
                initial=self.position(trainer),
                desc="train",
                unit="s",
                dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s of training "
                "[{elapsed}<{remaining}{postfix}]",
            )
        else:
            self.bar = tqdm(
                total=trainer.cfg.train.max_steps,
                initial=trainer.step,
                desc="train",
                unit="step",
                dynamic_ncols=True,
            )

    def on_step(self, trainer, step):
        if trainer.max_seconds:
            self.postfix["step"] = step
            self.bar.set_postfix(self.postfix, refresh=False)
        self.bar.update(self.position(trainer) - self.bar.n)

    def on_log(self, trainer, record):
        self.postfix.update(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
        self.bar.set_postfix(self.postfix)

    def on_train_end(self, trainer):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def read_metrics(path: str | Path) -> List[Dict]:
    """The records of a ``metrics.jsonl`` file, in order (a line cut short by a kill is skipped)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return records


class MetricsLog(Callback):
    """The one record of the run: one JSON record per log interval, appended to ``path``
    (``metrics.jsonl`` in the output folder) or, with ``path=None``, kept in memory. ``records``
    reads it back (``Trainer.history`` and ``TrainResult.history`` are that). When a run starts or
    resumes at step s, the records after s (steps that will be redone) are dropped."""

    def __init__(self, path: Optional[str | Path] = None):
        self.path = Path(path) if path is not None else None
        self._memory: List[Dict] = []  # the records when there is no file

    @property
    def records(self) -> List[Dict]:
        """The records so far, oldest first (read back from the file when there is one)."""
        if self.path is None:
            return [dict(r) for r in self._memory]
        return read_metrics(self.path) if self.path.exists() else []

    def on_log(self, trainer, record):
        if self.path is None:
            self._memory.append(dict(record))
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def on_train_begin(self, trainer):
        self.rewind(trainer.step)

    def on_resume(self, trainer, step):
        self.rewind(step)

    def rewind(self, step: int) -> None:
        """Drop the records after ``step`` (and lines cut short by a kill); the file is rewritten
        atomically, and only when something is dropped."""
        if self.path is None:
            self._memory = [r for r in self._memory if r.get("step", 0) <= step]
            return
        if not self.path.exists():
            return
        lines = self.path.read_text().splitlines()
        keep = []
        for line in lines:
            try:
                if json.loads(line).get("step", 0) <= step:
                    keep.append(line)
            except json.JSONDecodeError:
                pass  # a line cut short by a kill
        if len(keep) < len(lines):
            atomic_write_text(self.path, "".join(k + "\n" for k in keep))


class SampleGrids(Callback):
    """Every ``train.sample_every`` steps: ``trainer.sample_grid()`` (EMA model, always the same
    noise), saved as ``samples/step_NNNNNNN.png`` when there is an output folder, and handed to
    every callback's ``on_sample``."""

    def __init__(self, every: int, folder: Optional[Path] = None):
        self.every, self.folder = every, folder

    def on_step(self, trainer, step):
        if step % self.every:
            return
        images = trainer.sample_grid()
        if self.folder is not None:
            grid = make_grid(images, ncol=min(10, len(images)))
            save_png(grid, self.folder / f"step_{step:07d}.png", scale=2)
        trainer.emit("on_sample", step, images)


class EMASnapshots(Callback):
    """After each of ``steps``: the EMA weights, as ``folder/ema_step_NNNNNNN.safetensors`` (a
    checkpoint file with EMA weights only, and ``train_seconds`` / ``images_seen`` of that step in
    its extra), so that a run can be evaluated along the way (``load_model(path)``) after it ends.
    Stopping a run at step k and continuing it would not do: ``train(max_steps=k)`` moves the end
    of a decaying learning-rate schedule to k. Writing a snapshot changes nothing in the run."""

    def __init__(self, steps, folder: str | Path):
        self.steps, self.folder = set(int(s) for s in steps), Path(folder)

    @staticmethod
    def path(folder: str | Path, step: int) -> Path:
        return Path(folder) / f"ema_step_{step:07d}.safetensors"

    def on_step(self, trainer, step):
        if step not in self.steps:
            return
        save_checkpoint(
            self.path(self.folder, step),
            config=trainer.cfg,
            step=step,
            ema=trainer.ema.state_dict(),
            extra={
                "ema_updates": trainer.ema.num_updates,
                "train_seconds": trainer.train_seconds,
                "images_seen": step * trainer.cfg.train.batch_size,
                "precision": trainer.precision,
            },
        )
