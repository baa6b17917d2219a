"""Checkpoints: safetensors files written atomically, loaded without ever running code from them.

One training checkpoint is ONE safetensors file (``checkpoint.safetensors`` in the run's folder):

* tensors ``model/<name>`` (the live weights), ``ema/<name>`` (the EMA weights) and
  ``optim/<param index>/<state name>`` (AdamW's moments and step counters);
* string metadata in the safetensors header: ``format`` / ``format_version``, ``step``, the resolved
  experiment ``config`` (JSON), the optimizer's non-tensor state and param groups (``optimizer``,
  JSON), ``extra`` (JSON: EMA update count, training wall time, hardware, ...) and ``sha256`` (a
  checksum of every tensor's bytes, checked on load: a damaged file is refused, not half-used).

A *weights file* (what ``export_weights`` writes, e.g. the course's pretrained model) has the same
format with only the ``ema/`` tensors (or only ``model/``): it is enough to sample or fine-tune.

Why this format
---------------
* **No pickle.** ``torch.save`` files are pickles, and unpickling can execute arbitrary code. A
  safetensors file is a JSON header plus raw little-endian numbers; reading it runs nothing. The
  optimizer state, which ``torch.save`` would pickle, is flattened here into tensors + JSON.
  ``load_checkpoint`` checks the first bytes and refuses pickles and ``torch.save`` zip archives
  with an error saying so; this module never calls ``torch.load``.
* **Atomic** (``diffussm_lib.atomic``). A checkpoint is written to a temporary file in the same
  folder, flushed to disk, then renamed over the old one: a process killed at any moment, SIGKILL
  included, leaves either the old complete checkpoint or the new complete one.
* **Self-describing.** The config travels with the weights, so ``diffussm sample --checkpoint``
  needs nothing else, and loading weights into a model of another config fails with an error that
  names the mismatched config keys (or state-dict keys and shapes): ``loading.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import torch
import safetensors.torch
from safetensors import safe_open

from ..atomic import atomic_write
from ..errors import UserError
from ..config import ConfigError, ExperimentConfig, config_from_dict, config_to_dict, save_config

FORMAT = "diffussm-checkpoint"
FORMAT_VERSION = "1"
CHECKPOINT_NAME = "checkpoint.safetensors"  # a training run's latest checkpoint
WEIGHTS_NAME = "model.safetensors"  # an exported weights file (e.g. the pretrained model)
CONFIG_NAME = "config.yaml"  # a human-readable copy of the config beside it


class CheckpointError(UserError):
    """A checkpoint file is missing, is not a safetensors checkpoint, or does not fit the model.
    The message names the file and, for a mismatch, the config keys or state-dict keys."""


@dataclass
class Checkpoint:
    """A loaded checkpoint. All tensors are on CPU (or ``map_location``).

    model / ema: state dicts (name -> tensor) or None when the file holds no such weights.
    optimizer:   an optimizer ``state_dict()`` (ready for ``optimizer.load_state_dict``) or None.
    """

    path: Path
    config: ExperimentConfig
    step: int
    model: Optional[Dict[str, torch.Tensor]] = None
    ema: Optional[Dict[str, torch.Tensor]] = None
    optimizer: Optional[Dict[str, Any]] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    def weights(self, which: str = "ema") -> Dict[str, torch.Tensor]:
        """The state dict to sample with: ``which`` = "ema" (falls back to "model" when the file has
        no EMA, e.g. a run stopped before its first update) or "model"."""
        if which not in ("ema", "model"):
            raise UserError(f"which must be 'ema' or 'model', got {which!r}")
        if which == "ema" and self.ema is not None:
            return self.ema
        if self.model is not None:
            return self.model
        raise CheckpointError(
            f"{self.path}: holds no '{which}' weights (it has: "
            f"{', '.join(k for k in ('model', 'ema') if getattr(self, k) is not None)})"
        )


# --------------------------------------------------------------------------------------------
# Optimizer state <-> tensors + JSON (so that no pickle is ever needed)
# --------------------------------------------------------------------------------------------
def flatten_optimizer_state(
    state: Dict[str, Any],
) -> tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """``optimizer.state_dict()`` -> (tensors ``{"<param index>/<name>": tensor}``, JSON-able dict).

    Tensor entries of the per-parameter state become tensors; everything else (numbers, flags,
    param groups) goes to JSON. Tuples (AdamW's ``betas``) are remembered so that they come back
    as tuples.
    """
    tensors: Dict[str, torch.Tensor] = {}
    scalars: Dict[str, Dict[str, Any]] = {}
    for pid, entry in state["state"].items():
        for name, value in entry.items():
            if "/" in str(name):
                raise CheckpointError(f"optimizer state name {name!r} contains '/'")
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}/{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = _to_json(
                    value, f"optimizer state {pid}.{name}"
                )
    groups, tuples = [], []
    for gi, group in enumerate(state["param_groups"]):
        g = {}
        for k, v in group.items():
            if isinstance(v, tuple):
                tuples.append([gi, k])
            g[k] = _to_json(v, f"optimizer param_groups[{gi}].{k}")
        groups.append(g)
    meta = {
        "param_ids": [str(pid) for pid in state["state"]],
        "scalars": scalars,
        "param_groups": groups,
        "tuples": tuples,
    }
    return tensors, meta


def unflatten_optimizer_state(
    tensors: Dict[str, torch.Tensor], meta: Dict[str, Any]
) -> Dict[str, Any]:
    """The inverse of ``flatten_optimizer_state``: a dict for ``optimizer.load_state_dict``."""
    state: Dict[int, Dict[str, Any]] = {int(pid): {} for pid in meta["param_ids"]}
    for key, value in tensors.items():
        pid, name = key.split("/", 1)
        state.setdefault(int(pid), {})[name] = value
    for pid, entry in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(entry)
    groups = [dict(g) for g in meta["param_groups"]]
    for gi, k in meta["tuples"]:
        groups[gi][k] = tuple(groups[gi][k])
    return {"state": state, "param_groups": groups}


def _to_json(value, what: str):
    if isinstance(value, (list, tuple)):
        return [_to_json(v, what) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    raise CheckpointError(f"cannot store {what} of type {type(value).__name__} in a checkpoint")


# --------------------------------------------------------------------------------------------
# Writing (atomically: diffussm_lib.atomic)
# --------------------------------------------------------------------------------------------
def _cpu_tensors(prefix: str, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """CPU, contiguous versions of the tensors of ``state``, keys prefixed with ``prefix``."""
    out = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"state entry {prefix}{k} is a {type(v).__name__}, not a tensor")
        out[prefix + k] = v.detach().to("cpu").contiguous()
    return out


def _unshare(tensors: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Clone tensors that share memory with an earlier one (tied weights, or the same state dict
    saved as both model and EMA): safetensors stores each tensor on its own."""
    seen, out = set(), {}
    for k, t in tensors.items():
        if t.numel():
            ptr = t.untyped_storage().data_ptr()
            if ptr in seen:
                t = t.clone()
            seen.add(t.untyped_storage().data_ptr())
        out[k] = t
    return out


def save_checkpoint(
    path: str | os.PathLike,
    *,
    config: ExperimentConfig,
    step: int,
    model: Optional[Dict[str, torch.Tensor]] = None,
    ema: Optional[Dict[str, torch.Tensor]] = None,
    optimizer: Optional[Dict[str, Any]] = None,
    extra: Optional[Dict[str, Any]] = None,
) -> Path:
    """Write a checkpoint atomically (see the module docstring). ``model`` / ``ema``: state dicts;
    ``optimizer``: ``optimizer.state_dict()``; ``extra``: JSON-able. Returns the path."""
    if model is None and ema is None:
        raise CheckpointError("save_checkpoint needs model and/or ema weights")
    tensors: Dict[str, torch.Tensor] = {}
    if model is not None:
        tensors.update(_cpu_tensors("model/", model))
    if ema is not None:
        tensors.update(_cpu_tensors("ema/", ema))
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "step": str(int(step)),
        "config": json.dumps(config_to_dict(config)),
        "extra": json.dumps(extra or {}),
    }
    if optimizer is not None:
        opt_tensors, opt_meta = flatten_optimizer_state(optimizer)
        tensors.update(_cpu_tensors("optim/", opt_tensors))
        metadata["optimizer"] = json.dumps(opt_meta)
    tensors = _unshare(tensors)
    metadata["sha256"] = tensors_sha256(tensors)
    return atomic_write(
        path, lambda tmp: safetensors.torch.save_file(tensors, tmp, metadata=metadata)
    )


def tensors_sha256(tensors: Dict[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and raw bytes of ``tensors`` (in name order): stored in
    the header, it lets ``load_checkpoint`` refuse a file whose numbers were damaged (a flipped bit)."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().to("cpu").contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_config_atomic(config: ExperimentConfig, path: str | os.PathLike) -> Path:
    """``config.save_config`` through ``atomic_write``."""
    return atomic_write(path, lambda tmp: save_config(config, tmp))


# --------------------------------------------------------------------------------------------
# Reading, safely
# --------------------------------------------------------------------------------------------
def resolve_checkpoint_path(path: str | os.PathLike) -> Path:
    """A file, or a folder holding ``checkpoint.safetensors`` (a training run) or ``model.safetensors``
    (exported weights), in that order."""
    p = Path(path).expanduser()
    if p.is_dir():
        for name in (CHECKPOINT_NAME, WEIGHTS_NAME):
            if (p / name).is_file():
                return p / name
        raise CheckpointError(
            f"no checkpoint in folder {p}: expected {CHECKPOINT_NAME} (a training run) "
            f"or {WEIGHTS_NAME} (exported weights)"
        )
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    return p


def check_safetensors_file(path: str | os.PathLike) -> None:
    """Refuse anything that is not a safetensors file, before any parser sees it.

    Recognises pickles (``pickle`` / ``torch.save`` legacy format, first byte 0x80) and zip archives
    (``torch.save``'s default format, whose ``data.pkl`` is a pickle) and says so; nothing in the
    file is ever executed.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) == 9:
        (n,) = struct.unpack("<Q", head[:8])
        if n <= size - 8 and head[8:9] == b"{":
            return  # the safetensors layout (its first byte is part of a length: it may be anything)
    pickled = True
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:  # pickle protocols 2-5 start so
        kind = "a Python pickle (e.g. written by torch.save or pickle.dump)"
    elif head[:4] == b"PK\x03\x04":
        kind = "a zip archive (torch.save's format, which contains a pickle)"
    else:
        pickled = False
        kind = (
            f"too short ({size} bytes)"
            if len(head) < 9
            else "not in the safetensors layout (8-byte header length, then a JSON header): random or damaged bytes"
        )
    if pickled:
        raise CheckpointError(
            f"{path} is not a safetensors checkpoint: it is {kind}. diffussm never unpickles files, because "
            "unpickling can execute arbitrary code hidden in them. If you trust the file, convert it once "
            "in a separate session: safetensors.torch.save_file(torch.load(f, weights_only=True), "
            "'model.safetensors')."
        )
    raise CheckpointError(
        f"{path} is not a safetensors checkpoint: it is {kind}. Point --checkpoint at a "
        "checkpoint.safetensors / model.safetensors written by diffussm (or their folder); "
        "if this was one, it is damaged: use an earlier copy."
    )


def read_metadata(path: str | os.PathLike) -> Dict[str, str]:
    """The string metadata of a safetensors file (cheap: reads only the header)."""
    path = Path(path)
    check_safetensors_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(
            f"{path}: unreadable safetensors file ({e}); it may be truncated"
        ) from e


def _read_header(
    path: str | os.PathLike,
) -> tuple[Path, Dict[str, str], ExperimentConfig, int, dict]:
    """(path, metadata, config, step, extra) of a checkpoint (``path`` may be a folder), from the
    header alone; raises ``CheckpointError`` (or the config's ``ConfigError``) naming the file."""
    path = resolve_checkpoint_path(path)
    meta = read_metadata(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: a safetensors file, but not a diffussm checkpoint (its "
            f"metadata has no format={FORMAT!r}; it has {sorted(meta)}). To load "
            "bare weights into a model use load_state_strict(model, "
            "safetensors.torch.load_file(path))."
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {meta.get('format_version')!r}, "
            f"this library reads version {FORMAT_VERSION}"
        )
    try:
        config = config_from_dict(json.loads(meta["config"]), source=f"{path} (embedded config)")
        step = int(meta["step"])
        extra = json.loads(meta.get("extra", "{}"))
    except (KeyError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise CheckpointError(f"{path}: malformed checkpoint metadata ({e})") from e
    return path, meta, config, step, extra


def read_config(path: str | os.PathLike) -> ExperimentConfig:
    """The config of the checkpoint at ``path`` (a file or a folder holding one), from its header
    alone: cheap, for checks before the weights are loaded."""
    return _read_header(path)[2]


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> Checkpoint:
    """Load a checkpoint or weights file (``path`` may be a run folder). Never executes code from
    the file: pickles are refused (``check_safetensors_file``); the config is parsed strictly."""
    path, meta, config, step, extra = _read_header(path)
    groups: Dict[str, Dict[str, torch.Tensor]] = {}
    device = str(map_location)
    try:
        with safe_open(str(path), framework="pt", device=device) as f:
            for key in f.keys():
                prefix, _, name = key.partition("/")
                groups.setdefault(prefix, {})[name] = f.get_tensor(key)
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable tensors ({e}); the file may be truncated") from e
    if "sha256" in meta:
        flat = {f"{g}/{k}": t for g, d in groups.items() for k, t in d.items()}
        if tensors_sha256(flat) != meta["sha256"]:
            raise CheckpointError(
                f"{path}: the tensors do not match the checksum in the header: the file is "
                "damaged (a changed byte); use an earlier copy"
            )
    unknown = sorted(set(groups) - {"model", "ema", "optim"})
    if unknown:
        raise CheckpointError(
            f"{path}: unexpected tensor groups {unknown} (expected model/, ema/, optim/)"
        )
    optimizer = None
    if "optimizer" in meta:
        optimizer = unflatten_optimizer_state(
            groups.get("optim", {}), json.loads(meta["optimizer"])
        )
    return Checkpoint(
        path=path,
        config=config,
        step=step,
        model=groups.get("model"),
        ema=groups.get("ema"),
        optimizer=optimizer,
        extra=extra,
    )
