"""Comparisons at equal training compute (notebook 07, ``benchmarks/bench_quality.py``).

One idea: give every model the **same training-time budget** on the same machine (not the same
number of steps: a cheaper model may take more of them), then measure each with the same metric.

* ``variant(cfg, name, **model)``: a config with some model keys changed (the ablations).
* ``ABLATIONS``: the paper's design choices, each changed alone from the DiffuSSM config.
* ``train_for_budget(cfg, seconds)``: train with the library's ``Trainer`` until the budget is spent.
* ``evaluate_run(run, ...)``: sample from the run's EMA weights and measure FID-LeNet, the real-vs-real
  floor at the same N, class accuracy and the class histogram (``diffussm_lib.evaluate``).
* ``results_table(runs)``: one markdown table; ``as_json(runs)``: the same as data.

Dimension letters: the glossary in ``diffussm_lib/__init__.py`` (here N is a number of samples).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from ..config import ExperimentConfig, ModelConfig, config_to_dict
from ..diffusion import DEFAULT_SAMPLER, default_steps
from ..models import count_params
from ..training import Trainer
from .evaluate import sample_and_evaluate

# name -> model keys changed from the DiffuSSM config (everything else, training included, is equal); the
# paper ablated patching, M and the direction; the selective core is the course's own extra variant
ABLATIONS: Dict[str, Dict] = {
    "DiffuSSM (S4D, M=2, patch 2, bidirectional)": {},
    "selective (Mamba) core": {"ssm_core": "selective"},
    "M = 1 (no hourglass)": {"hourglass_ratio": 1},
    "M = 4": {"hourglass_ratio": 4},
    "patch 1 (L = 784)": {"patch_size": 1},
    "causal (one direction)": {"bidirectional": False},
}


def variant(cfg: ExperimentConfig, name: Optional[str] = None, **model) -> ExperimentConfig:
    """``cfg`` with the given ``model`` keys replaced (unknown keys raise, naming them)."""
    known = set(ModelConfig.__dataclass_fields__)
    bad = sorted(set(model) - known)
    if bad:
        raise ValueError(f"variant: unknown model keys {bad} (known: {sorted(known)})")
    return replace(cfg, name=name or cfg.name, model=replace(cfg.model, **model))


@dataclass
class BudgetRun:
    """A model trained for a time budget: its config, EMA model, and what the run measured."""

    name: str
    config: ExperimentConfig
    ema_model: nn.Module
    params: int
    steps: int
    train_seconds: float
    images_per_sec: float
    final_loss: Optional[float]
    evaluations: List[Dict] = field(default_factory=list)
    last_images: Optional[torch.Tensor] = field(
        default=None, repr=False
    )  # (N, 1, H, W) of the last evaluation

    def summary(self) -> Dict:
        return {
            "name": self.name,
            "arch": self.config.model.arch,
            "params": self.params,
            "steps": self.steps,
            "train_seconds": round(self.train_seconds, 1),
            "images_per_sec": round(self.images_per_sec, 1),
            "final_loss": self.final_loss,
            "evaluations": self.evaluations,
        }


def train_for_budget(
    cfg: ExperimentConfig,
    seconds: Optional[float] = None,
    *,
    max_steps: Optional[int] = None,
    dataset=None,
    name: Optional[str] = None,
    device=None,
    log: Optional[Callable[[str], None]] = None,
) -> BudgetRun:
    """Train ``cfg`` (no files written) until ``seconds`` of training time or ``max_steps`` updates,
    whichever comes first (at least one of them must be given; ``max_steps`` defaults to a bound
    that the budget always reaches first). ``dataset``: share one loaded dataset between runs."""
    if seconds is None and max_steps is None:
        raise ValueError("train_for_budget needs seconds or max_steps")
    steps = max_steps if max_steps is not None else 10**9
    cfg = replace(
        cfg, train=replace(cfg.train, max_steps=steps, sample_every=0, checkpoint_every=0)
    )
    trainer = Trainer(
        cfg, None, dataset=dataset, device=device, progress=False, log=log or (lambda m: None)
    )
    res = trainer.train(max_seconds=seconds)
    return BudgetRun(
        name=name or cfg.name,
        config=cfg,
        ema_model=trainer.ema.module.eval(),
        params=count_params(trainer.bare_model),
        steps=res.step,
        train_seconds=res.train_seconds,
        images_per_sec=res.images_per_sec,
        final_loss=res.history[-1]["loss"] if res.history else None,
    )


def evaluate_run(
    run: BudgetRun,
    n: int,
    *,
    guidance: float = 1.0,
    sampler: str = DEFAULT_SAMPLER,
    steps: Optional[int] = None,
    seed: int = 0,
    batch_size: Optional[int] = None,
) -> Dict:
    """Sample ``n`` images (every class in equal numbers) from the run's EMA model and evaluate them
    (``evaluate.sample_and_evaluate``). Appends to and returns ``run.evaluations[-1]``: the
    ``EvalReport`` fields plus the sampling settings and ``sample_seconds`` (sampling and evaluation)."""
    t0 = time.perf_counter()
    report, run.last_images = sample_and_evaluate(
        run.ema_model,
        run.config,
        n,
        sampler=sampler,
        steps=steps,
        guidance=guidance,
        seed=seed,
        batch_size=batch_size,
    )
    out = dict(
        report.as_dict(),
        sampler=sampler,
        steps=default_steps(sampler, run.config.diffusion.timesteps, steps),
        guidance=guidance,
        seed=seed,
        sample_seconds=round(time.perf_counter() - t0, 1),
    )
    run.evaluations.append(out)
    return out


def results_table(runs: Sequence[BudgetRun]) -> str:
    """Markdown: one row per (run, evaluation)."""
    rows = [
        "| model | params | train time | steps | images/s | final loss | guidance w | N | FID-LeNet "
        "| floor (same N) | class acc. | hist. dev. |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        loss = "n/a" if r.final_loss is None else f"{r.final_loss:.4f}"
        head = (
            f"| {r.name} | {r.params / 1e6:.2f} M | {r.train_seconds / 60:.1f} min | {r.steps} | "
            f"{r.images_per_sec:.1f} | {loss} |"
        )
        for ev in r.evaluations or [{}]:
            if not ev:
                rows.append(head + " | | | | | |")
                continue
            acc = (
                "n/a" if ev.get("class_accuracy") is None else f"{100 * ev['class_accuracy']:.1f}%"
            )
            floor = "n/a" if ev.get("floor") is None else f"{ev['floor']:.2f}"
            rows.append(
                head + f" {ev['guidance']} | {ev['n']} | {ev['fid']:.2f} | {floor} | {acc} | "
                f"{ev['histogram_deviation']:.3f} |"
            )
    return "\n".join(rows)


def as_json(runs: Sequence[BudgetRun]) -> List[Dict]:
    """JSON-ready summaries (configs included) of the runs."""
    return [dict(r.summary(), config=config_to_dict(r.config)) for r in runs]


__all__ = [
    "ABLATIONS",
    "BudgetRun",
    "variant",
    "train_for_budget",
    "evaluate_run",
    "results_table",
    "as_json",
]
