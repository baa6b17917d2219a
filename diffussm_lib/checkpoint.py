"""Checkpoints: safetensors files written atomically, loaded without ever running code from them.

One training checkpoint is ONE safetensors file (``checkpoint.safetensors`` in the run's folder):

* tensors ``model/<name>`` (the live weights), ``ema/<name>`` (the EMA weights) and
  ``optim/<param index>/<state name>`` (AdamW's moments and step counters);
* string metadata in the safetensors header: ``format`` / ``format_version``, ``step``, the resolved
  experiment ``config`` (JSON), the optimizer's non-tensor state and param groups (``optimizer``,
  JSON) and ``extra`` (JSON: EMA update count, training wall time, hardware, ...).

A *weights file* (what ``export_weights`` writes, e.g. the course's pretrained model) has the same
format with only the ``ema/`` tensors (or only ``model/``): it is enough to sample or fine-tune.

Why this format
---------------
* **No pickle.** ``torch.save`` files are pickles, and unpickling can execute arbitrary code. A
  safetensors file is a JSON header plus raw little-endian numbers; reading it runs nothing. The
  optimizer state, which ``torch.save`` would pickle, is flattened here into tensors + JSON.
  ``load_checkpoint`` checks the first bytes and refuses pickles and ``torch.save`` zip archives
  with an error saying so; this module never calls ``torch.load``.
* **Atomic.** A checkpoint is written to a temporary file in the same folder, flushed to disk, then
  renamed over the old one (``os.replace``, atomic on POSIX and Windows). A process killed at any
  moment, SIGKILL included, leaves either the old complete checkpoint or the new complete one.
* **Self-describing.** The config travels with the weights, so ``diffussm sample --checkpoint``
  needs nothing else, and loading weights into a model of another config fails with an error that
  names the mismatched config keys (or state-dict keys and shapes).
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import torch
from torch import nn

from .config import ConfigError, ExperimentConfig, config_from_dict, config_to_dict, save_config

FORMAT = "diffussm-checkpoint"
FORMAT_VERSION = "1"
CHECKPOINT_NAME = "checkpoint.safetensors"   # a training run's latest checkpoint
WEIGHTS_NAME = "model.safetensors"           # an exported weights file (e.g. the pretrained model)
CONFIG_NAME = "config.yaml"                  # a human-readable copy of the config beside it

# Config keys that may differ between a checkpoint and the model / run it is loaded into.
CONFIG_KEYS_ALLOWED_TO_DIFFER = ("data.path",)
# Sections compared when loading a checkpoint for a given config (the train section may change:
# e.g. a larger max_steps to continue a run).
CONFIG_SECTIONS_COMPARED = ("model", "diffusion", "data")


class CheckpointError(ValueError):
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
            raise ValueError(f"which must be 'ema' or 'model', got {which!r}")
        if which == "ema" and self.ema is not None:
            return self.ema
        if self.model is not None:
            return self.model
        raise CheckpointError(f"{self.path}: holds no '{which}' weights (it has: "
                              f"{', '.join(k for k in ('model', 'ema') if getattr(self, k) is not None)})")


# --------------------------------------------------------------------------------------------
# Optimizer state <-> tensors + JSON (so that no pickle is ever needed)
# --------------------------------------------------------------------------------------------
def flatten_optimizer_state(state: Dict[str, Any]) -> tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
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
                scalars.setdefault(str(pid), {})[name] = _to_json(value, f"optimizer state {pid}.{name}")
    groups, tuples = [], []
    for gi, group in enumerate(state["param_groups"]):
        g = {}
        for k, v in group.items():
            if isinstance(v, tuple):
                tuples.append([gi, k])
            g[k] = _to_json(v, f"optimizer param_groups[{gi}].{k}")
        groups.append(g)
    meta = {"param_ids": [str(pid) for pid in state["state"]], "scalars": scalars, "param_groups": groups,
            "tuples": tuples}
    return tensors, meta


def unflatten_optimizer_state(tensors: Dict[str, torch.Tensor], meta: Dict[str, Any]) -> Dict[str, Any]:
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
# Writing, atomically
# --------------------------------------------------------------------------------------------
def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, flush it to disk, then rename it
    to ``path`` in one step. If anything fails (or the process dies) ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp (and some writers) make 0600; use the usual permissions
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    try:  # make the rename itself durable (POSIX; not possible on Windows)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


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


def save_checkpoint(path: str | os.PathLike, *, config: ExperimentConfig, step: int,
                    model: Optional[Dict[str, torch.Tensor]] = None, ema: Optional[Dict[str, torch.Tensor]] = None,
                    optimizer: Optional[Dict[str, Any]] = None, extra: Optional[Dict[str, Any]] = None) -> Path:
    """Write a checkpoint atomically (see the module docstring). ``model`` / ``ema``: state dicts;
    ``optimizer``: ``optimizer.state_dict()``; ``extra``: JSON-able. Returns the path."""
    from safetensors.torch import save_file

    if model is None and ema is None:
        raise CheckpointError("save_checkpoint needs model and/or ema weights")
    tensors: Dict[str, torch.Tensor] = {}
    if model is not None:
        tensors.update(_cpu_tensors("model/", model))
    if ema is not None:
        tensors.update(_cpu_tensors("ema/", ema))
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "step": str(int(step)),
                "config": json.dumps(config_to_dict(config)), "extra": json.dumps(extra or {})}
    if optimizer is not None:
        opt_tensors, opt_meta = flatten_optimizer_state(optimizer)
        tensors.update(_cpu_tensors("optim/", opt_tensors))
        metadata["optimizer"] = json.dumps(opt_meta)
    tensors = _unshare(tensors)
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


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
        raise CheckpointError(f"no checkpoint in folder {p}: expected {CHECKPOINT_NAME} (a training run) "
                              f"or {WEIGHTS_NAME} (exported weights)")
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
            return   # the safetensors layout (its first byte is part of a length: it may be anything)
    if head[:1] == b"\x80":
        kind = "a Python pickle (e.g. written by torch.save or pickle.dump)"
    elif head[:4] == b"PK\x03\x04":
        kind = "a zip archive (torch.save's format, which contains a pickle)"
    elif len(head) < 9:
        kind = f"too short ({size} bytes)"
    else:
        kind = "not in the safetensors layout (8-byte header length, then a JSON header)"
    raise CheckpointError(
        f"{path} is not a safetensors checkpoint: it is {kind}. diffussm never unpickles files, because "
        "unpickling can execute arbitrary code hidden in them. If you trust the file, convert it once "
        "in a separate session: safetensors.torch.save_file(torch.load(f, weights_only=True), "
        "'model.safetensors').")


def read_metadata(path: str | os.PathLike) -> Dict[str, str]:
    """The string metadata of a safetensors file (cheap: reads only the header)."""
    from safetensors import safe_open

    path = Path(path)
    check_safetensors_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: unreadable safetensors file ({e}); it may be truncated") from e


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint or weights file (``path`` may be a run folder). Never executes code from
    the file: pickles are refused (``check_safetensors_file``); the config is parsed strictly."""
    from safetensors import safe_open

    path = resolve_checkpoint_path(path)
    meta = read_metadata(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: a safetensors file, but not a diffussm checkpoint (its metadata has no "
                              f"format={FORMAT!r}; it has {sorted(meta)}). To load bare weights into a model use "
                              "load_state_strict(model, safetensors.torch.load_file(path)).")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {meta.get('format_version')!r}, this library "
                              f"reads version {FORMAT_VERSION}")
    try:
        config = config_from_dict(json.loads(meta["config"]), source=f"{path} (embedded config)")
        step = int(meta["step"])
        extra = json.loads(meta.get("extra", "{}"))
    except (KeyError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise CheckpointError(f"{path}: malformed checkpoint metadata ({e})") from e
    groups: Dict[str, Dict[str, torch.Tensor]] = {}
    device = str(map_location)
    try:
        with safe_open(str(path), framework="pt", device=device) as f:
            for key in f.keys():
                prefix, _, name = key.partition("/")
                groups.setdefault(prefix, {})[name] = f.get_tensor(key)
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable tensors ({e}); the file may be truncated") from e
    unknown = sorted(set(groups) - {"model", "ema", "optim"})
    if unknown:
        raise CheckpointError(f"{path}: unexpected tensor groups {unknown} (expected model/, ema/, optim/)")
    optimizer = None
    if "optimizer" in meta:
        optimizer = unflatten_optimizer_state(groups.get("optim", {}), json.loads(meta["optimizer"]))
    return Checkpoint(path=path, config=config, step=step, model=groups.get("model"), ema=groups.get("ema"),
                      optimizer=optimizer, extra=extra)


# --------------------------------------------------------------------------------------------
# Does a checkpoint fit a model / a config?
# --------------------------------------------------------------------------------------------
def config_mismatches(saved: ExperimentConfig, current: ExperimentConfig,
                      sections: Iterable[str] = CONFIG_SECTIONS_COMPARED,
                      ignore: Iterable[str] = CONFIG_KEYS_ALLOWED_TO_DIFFER) -> List[str]:
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


def check_config_matches(saved: ExperimentConfig, current: ExperimentConfig, source: str = "checkpoint",
                         sections: Iterable[str] = CONFIG_SECTIONS_COMPARED) -> None:
    """Raise ``CheckpointError`` naming every mismatched key (see ``config_mismatches``)."""
    diffs = config_mismatches(saved, current, sections)
    if diffs:
        raise CheckpointError(f"{source} does not match the config: mismatched keys:\n  " + "\n  ".join(diffs))


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
            out.append(f"{k}: checkpoint shape {tuple(state[k].shape)}, model shape {tuple(v.shape)}")
    return out


def _few(keys: List[str], n: int = 6) -> str:
    more = f" ... and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_state_strict(module: nn.Module, state: Dict[str, torch.Tensor], source: str = "checkpoint",
                      saved_config: Optional[ExperimentConfig] = None,
                      current_config: Optional[ExperimentConfig] = None) -> None:
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


# --------------------------------------------------------------------------------------------
# Convenience: a ready model from a checkpoint; exporting the weights to share
# --------------------------------------------------------------------------------------------
def load_model(path: str | os.PathLike, which: str = "ema", device: str | torch.device = "cpu",
               config: Optional[ExperimentConfig] = None):
    """Build the model a checkpoint describes and load its ``which`` ("ema" / "model") weights.

    ``config``: build this config's model instead (an error naming mismatched keys if it differs).
    Returns ``(model in eval mode on device, config, checkpoint)``.
    """
    from .models import build_model

    ckpt = load_checkpoint(path)
    cfg = config if config is not None else ckpt.config
    if config is not None:
        check_config_matches(ckpt.config, config, f"checkpoint {ckpt.path}", sections=("model",))
    model = build_model(cfg.model)
    load_state_strict(model, ckpt.weights(which), f"checkpoint {ckpt.path}", ckpt.config, cfg)
    return model.to(device).eval(), cfg, ckpt


def export_weights(path: str | os.PathLike, out_dir: str | os.PathLike, which: str = "ema",
                   model_card: bool = True, evaluations: Sequence[dict] = ()) -> Path:
    """Write a sharable weights file from a training checkpoint: ``out_dir/model.safetensors``
    (only the ``which`` weights, as EMA or model tensors; no optimizer), ``out_dir/config.yaml`` and,
    with ``model_card``, a ``README.md`` filled in from the checkpoint's metadata and from
    ``evaluations``: reports written by ``diffussm evaluate --json`` (each must be of this
    checkpoint's step). Returns the weights path."""
    ckpt = load_checkpoint(path)
    for ev in evaluations:
        if ev.get("step") != ckpt.step:
            raise ValueError(f"evaluation {ev.get('source', '?')} is of step {ev.get('step')}, but checkpoint "
                             f"{ckpt.path} is at step {ckpt.step}: evaluate the checkpoint you export")
    weights = ckpt.weights(which)
    kind = "ema" if (which == "ema" and ckpt.ema is not None) else "model"
    out_dir = Path(out_dir)
    extra = dict(ckpt.extra, exported_from=str(ckpt.path), weights=kind)
    target = save_checkpoint(out_dir / WEIGHTS_NAME, config=ckpt.config, step=ckpt.step,
                             **{kind: weights}, extra=extra)
    save_config_atomic(ckpt.config, out_dir / CONFIG_NAME)
    if model_card:
        card = out_dir / "README.md"
        text = model_card_text(ckpt, target, evaluations)
        atomic_write(card, lambda tmp: Path(tmp).write_text(text))
    return target


def quality_table(evaluations: Sequence[dict]) -> List[str]:
    """Markdown lines: one row per ``diffussm evaluate --json`` report."""
    from .sampling import steps_label

    if not evaluations:
        return ["Not measured yet: run `diffussm evaluate --checkpoint CKPT --json FILE` and export again "
                "with `--evaluation FILE`."]
    rows = ["| samples | sampler | steps | guidance w | FID-LeNet | real-vs-real floor (same N) | class accuracy "
            "| histogram deviation |",
            "|---|---|---|---|---|---|---|---|"]
    for ev in evaluations:
        acc = "n/a (unconditional)" if ev.get("class_accuracy") is None else f"{100 * ev['class_accuracy']:.2f}%"
        floor = "n/a" if ev.get("floor") is None else f"{ev['floor']:.3f}"
        rows.append(f"| {ev['n']} | {ev.get('sampler')} | {steps_label(ev.get('sampler'), ev.get('steps'))} | {ev.get('guidance')} | {ev['fid']:.3f} | {floor} "
                    f"| {acc} | {ev['histogram_deviation']:.4f} |")
    return rows + ["", "Measured by `diffussm evaluate` (FID-LeNet against the 10,000 MNIST test images; "
                       "see notebook 07), seed " + ", ".join(sorted({str(ev.get('seed', 0)) for ev in evaluations}))
                   + "."]


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
        "Load with `diffussm_lib.checkpoint.load_model(path)`; sample with "
        f"`diffussm sample --checkpoint {weights_path.parent} --labels all --num-samples 20 --output-dir out`.",
        "",
        "| | |",
        "|---|---|",
        f"| training steps | {ckpt.step} |",
        f"| batch size (global) | {cfg.train.batch_size}"
        + (f" ({world} processes)" if world > 1 else "") + " |",
        f"| images seen | {ckpt.step * cfg.train.batch_size} |",
        f"| wall time | {wall_h:.2f} h ({train_h:.2f} h in training steps; the rest: sample grids, checkpoints) |",
        f"| hardware | {ex.get('hardware', 'unknown')} |",
        f"| precision | {cfg.train.precision} |",
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
        _yaml_dump(config_to_dict(cfg)).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def _yaml_dump(d) -> str:
    import yaml

    return yaml.safe_dump(d, sort_keys=False)
