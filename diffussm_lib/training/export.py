"""Sharing a model (notebook 05): export a checkpoint's weights, with its config and a model card.

``export_weights`` writes ``model.safetensors`` (only the EMA, or model, tensors; no optimizer),
``config.yaml`` and ``README.md``: the card, filled in from the checkpoint's metadata and from the
``diffussm evaluate --json`` reports of the same step (``quality_table``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Sequence

import yaml

from ..atomic import atomic_write_text
from ..config import config_to_dict
from ..diffusion import steps_label
from ..errors import UserError
from .checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    Checkpoint,
    load_checkpoint,
    save_checkpoint,
    save_config_atomic,
)


def export_weights(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    which: str = "ema",
    model_card: bool = True,
    evaluations: Sequence[dict] = (),
) -> Path:
    """Write a sharable weights file from a training checkpoint: ``out_dir/model.safetensors``
    (only the ``which`` weights, as EMA or model tensors; no optimizer), ``out_dir/config.yaml`` and,
    with ``model_card``, a ``README.md`` filled in from the checkpoint's metadata and from
    ``evaluations``: reports written by ``diffussm evaluate --json`` (each must be of this
    checkpoint's step). Returns the weights path."""
    ckpt = load_checkpoint(path)
    for ev in evaluations:
        if ev.get("step") != ckpt.step:
            raise UserError(
                f"evaluation {ev.get('source', '?')} is of step {ev.get('step')}, but "
                f"checkpoint {ckpt.path} is at step {ckpt.step}: evaluate the "
                "checkpoint you export"
            )
    weights = ckpt.weights(which)
    kind = "ema" if (which == "ema" and ckpt.ema is not None) else "model"
    out_dir = Path(out_dir)
    extra = dict(ckpt.extra, exported_from=str(ckpt.path), weights=kind)
    target = save_checkpoint(
        out_dir / WEIGHTS_NAME, config=ckpt.config, step=ckpt.step, **{kind: weights}, extra=extra
    )
    save_config_atomic(ckpt.config, out_dir / CONFIG_NAME)
    if model_card:
        atomic_write_text(out_dir / "README.md", model_card_text(ckpt, target, evaluations))
    return target


def quality_table(evaluations: Sequence[dict]) -> List[str]:
    """Markdown lines: one row per ``diffussm evaluate --json`` report."""
    if not evaluations:
        return [
            "Not measured yet: run `diffussm evaluate --checkpoint CKPT --json FILE` and export again "
            "with `--evaluation FILE`."
        ]
    metric = " / ".join(sorted({ev.get("metric", "FID-LeNet") for ev in evaluations}))
    rows = [
        f"| samples | sampler | steps | guidance w | {metric} | real-vs-real floor (same N) | class accuracy "
        "| histogram deviation |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for ev in evaluations:
        acc = (
            "n/a (unconditional)"
            if ev.get("class_accuracy") is None
            else f"{100 * ev['class_accuracy']:.2f}%"
        )
        floor = "n/a" if ev.get("floor") is None else f"{ev['floor']:.3f}"
        if ev.get("floor") is not None and ev.get("floor_n", ev["n"]) < ev["n"]:
            floor += f" ({ev['floor_n']} images)"
        rows.append(
            f"| {ev['n']} | {ev.get('sampler')} | {steps_label(ev.get('sampler'), ev.get('steps'))} | {ev.get('guidance')} | {ev['fid']:.3f} | {floor} "
            f"| {acc} | {ev['histogram_deviation']:.4f} |"
        )
    how = (
        "FID-LeNet against the 10,000 MNIST test images; see notebook 07"
        if metric == "FID-LeNet"
        else "FD-classifier: the Frechet distance on the features of a classifier trained on the dataset's own "
        "images, against its reference half; comparable only within that dataset and classifier"
    )
    return rows + [
        "",
        f"Measured by `diffussm evaluate` ({how}), seed "
        + ", ".join(sorted({str(ev.get("seed", 0)) for ev in evaluations}))
        + ".",
    ]


def model_card_text(ckpt: Checkpoint, weights_path: Path, evaluations: Sequence[dict] = ()) -> str:
    """A model card (markdown) for exported weights, with the given evaluation reports."""
    cfg, ex = ckpt.config, ckpt.extra
    train_h = ex.get("train_seconds", 0.0) / 3600.0
    wall_h = ex.get("wall_seconds", ex.get("train_seconds", 0.0)) / 3600.0
    world = ex.get("world_size", 1)
    lines = [
        f"# {cfg.name}: {cfg.model.arch} on {cfg.data.name}",
        "",
        f"Weights: `{weights_path.name}` ({ex.get('weights', 'ema')} weights, safetensors, "
        f"{weights_path.stat().st_size / 1e6:.1f} MB). Config: `{CONFIG_NAME}` (also embedded in the file).",
        "Load with `diffussm_lib.load_model(path)`; sample with "
        f"`diffussm sample --checkpoint {weights_path.parent} --labels all --num-samples 20 --output-dir out`.",
        "",
        "| | |",
        "|---|---|",
        f"| training steps | {ckpt.step} |",
        f"| batch size (global) | {cfg.train.batch_size}"
        + (f" ({world} processes)" if world > 1 else "")
        + " |",
        f"| images seen | {ckpt.step * cfg.train.batch_size} |",
        f"| wall time | {wall_h:.2f} h ({train_h:.2f} h in training steps; the rest: sample grids, checkpoints) |",
        f"| hardware | {ex.get('hardware', 'unknown')} |",
        f"| precision | {cfg.train.precision}"
        + (
            f" (measured at the start: {ex['precision']})"
            if cfg.train.precision == "auto" and "precision" in ex
            else ""
        )
        + " |",
        f"| EMA decay | {cfg.train.ema_decay} |",
        f"| library | diffussm_lib {ex.get('library_version', '?')}, torch {ex.get('torch_version', '?')} |",
        "",
        "## Sample quality",
        "",
        *quality_table(evaluations),
        "",
        "## Config",
        "",
        "```yaml",
        yaml.safe_dump(config_to_dict(cfg), sort_keys=False).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)
