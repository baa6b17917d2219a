"""Does a checkpoint fit a model or a config, and a ready model from a checkpoint (``load_model``).

Loading weights into a model of another config fails with an error that names the mismatched config
keys and the state-dict keys and shapes, never with torch's bare ``load_state_dict`` message.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, Iterable, List, Optional

import torch
from torch import nn

from ..config import ExperimentConfig, config_to_dict
from ..models import build_model
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint

# Config keys that may differ between a checkpoint and the model / run it is loaded into.
CONFIG_KEYS_ALLOWED_TO_DIFFER = ("data.path",)
# Sections compared when loading a checkpoint for a given config (the train section may change:
# e.g. a larger max_steps to continue a run).
CONFIG_SECTIONS_COMPARED = ("model", "diffusion", "data")
# train.* keys whose change between a checkpoint and a resumed run is not worth a notice
TRAIN_KEYS_FREE_TO_CHANGE = (
    "max_steps",
    "log_every",
    "sample_every",
    "checkpoint_every",
    "num_workers",
)


# --------------------------------------------------------------------------------------------
def config_mismatches(
    saved: ExperimentConfig,
    current: ExperimentConfig,
    sections: Iterable[str] = CONFIG_SECTIONS_COMPARED,
    ignore: Iterable[str] = CONFIG_KEYS_ALLOWED_TO_DIFFER,
) -> List[str]:
    """``["model.hidden_dim: checkpoint 32, config 64", ...]`` for every differing key of ``sections``."""
    a, b = config_to_dict(saved), config_to_dict(current)
    out = []
    for sec in sections:
        for k in sorted(set(a.get(sec, {})) | set(b.get(sec, {}))):
            key = f"{sec}.{k}"
            if key in ignore:
                continue
            va, vb = a.get(sec, {}).get(k), b.get(sec, {}).get(k)
            if va != vb:
                out.append(f"{key}: checkpoint {va!r}, config {vb!r}")
    return out


def check_config_matches(
    saved: ExperimentConfig,
    current: ExperimentConfig,
    source: str = "checkpoint",
    sections: Iterable[str] = CONFIG_SECTIONS_COMPARED,
) -> None:
    """Raise ``CheckpointError`` naming every mismatched key (see ``config_mismatches``)."""
    diffs = config_mismatches(saved, current, sections)
    if diffs:
        raise CheckpointError(
            f"{source} does not match the config: mismatched keys:\n  " + "\n  ".join(diffs)
        )


def check_resumable(
    ckpt: Checkpoint, current: ExperimentConfig, log: Callable[[str], None] = print
) -> None:
    """Can a run of config ``current`` continue from ``ckpt``? Its model / diffusion / data sections
    must match and it must hold model and optimizer state (an exported weights file does not);
    changed train settings are reported through ``log`` (the run continues with the new ones)."""
    check_config_matches(ckpt.config, current, f"checkpoint {ckpt.path}")
    changed = [
        d
        for d in config_mismatches(ckpt.config, current, ("train",))
        if d.split(":")[0].split(".")[1] not in TRAIN_KEYS_FREE_TO_CHANGE
    ]
    if changed:
        log(
            "note: train settings differ from the checkpoint's (the run continues with the new ones):\n  "
            + "\n  ".join(changed)
        )
    if ckpt.model is None or ckpt.optimizer is None:
        raise CheckpointError(
            f"{ckpt.path} holds no model / optimizer state (an exported weights file?): "
            "it cannot be resumed; use it as init_from (--init-from) instead"
        )


def state_mismatches(module: nn.Module, state: Dict[str, torch.Tensor]) -> List[str]:
    """Missing keys, unexpected keys and shape mismatches between ``module`` and a state dict."""
    own = module.state_dict()
    out = []
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing:
        out.append(f"missing in checkpoint: {_few(missing)}")
    if unexpected:
        out.append(f"not in the model: {_few(unexpected)}")
    for k, v in own.items():
        if k in state and tuple(state[k].shape) != tuple(v.shape):
            out.append(
                f"{k}: checkpoint shape {tuple(state[k].shape)}, model shape {tuple(v.shape)}"
            )
    return out


def _few(keys: List[str], n: int = 6) -> str:
    more = f" ... and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_state_strict(
    module: nn.Module,
    state: Dict[str, torch.Tensor],
    source: str = "checkpoint",
    saved_config: Optional[ExperimentConfig] = None,
    current_config: Optional[ExperimentConfig] = None,
) -> None:
    """``module.load_state_dict(state)``, but a mismatch raises ``CheckpointError`` naming the
    mismatched config keys (when both configs are given) and the state-dict keys / shapes."""
    problems = state_mismatches(module, state)
    if not problems:
        module.load_state_dict(state)
        return
    msg = f"{source} does not fit the model"
    if saved_config is not None and current_config is not None:
        diffs = config_mismatches(saved_config, current_config, ("model",))
        if diffs:
            msg += ": mismatched config keys:\n  " + "\n  ".join(diffs) + "\nweights"
    raise CheckpointError(msg + ":\n  " + "\n  ".join(problems))


def load_model(
    path: str | os.PathLike,
    which: str = "ema",
    device: str | torch.device = "cpu",
    config: Optional[ExperimentConfig] = None,
):
    """Build the model a checkpoint describes and load its ``which`` ("ema" / "model") weights.

    ``config``: build this config's model instead (an error naming mismatched keys if it differs).
    Returns ``(model in eval mode on device, config, checkpoint)``.
    """
    ckpt = load_checkpoint(path)
    cfg = config if config is not None else ckpt.config
    if config is not None:
        check_config_matches(ckpt.config, config, f"checkpoint {ckpt.path}", sections=("model",))
    model = build_model(cfg.model)
    load_state_strict(model, ckpt.weights(which), f"checkpoint {ckpt.path}", ckpt.config, cfg)
    return model.to(device).eval(), cfg, ckpt
