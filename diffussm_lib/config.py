"""Typed configs loaded from YAML, strictly.

A config file is YAML whose top-level sections map onto the dataclasses below::

    model:     ModelConfig      the denoiser (DiffuSSM or the DiT baseline)
    diffusion: DiffusionConfig  the noise schedule and training target
    data:      DataConfig       which dataset, image size, padding
    train:     TrainConfig      optimisation, EMA, checkpointing

Nothing is silently ignored: an unknown key, a missing required key or a value of the wrong type
raises ``ConfigError`` naming the key (as a dotted path, e.g. ``model.depth``) and the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Literal, Optional, Union

import yaml

from .errors import UserError


class ConfigError(UserError):
    """A config file (or dict) does not match its dataclass; the message names key and file."""


# --------------------------------------------------------------------------------------------
# The configs
# --------------------------------------------------------------------------------------------
@dataclass
class ModelConfig:
    """The denoiser. ``arch`` picks DiffuSSM (the paper) or the DiT baseline of the same interface.
    The model is built from this section (``DiffuSSM(cfg)``, ``DiT(cfg)``, or ``build_model(cfg)``);
    the code names each dimension by its key: ``hidden_dim`` D, ``hourglass_ratio`` M,
    ``ssm_state`` N (the glossary in ``diffussm_lib/__init__.py``)."""

    arch: Literal["diffussm", "dit"]  # required: which backbone
    in_channels: int = 1  # C
    image_size: int = 32  # H = W
    patch_size: int = 1  # p: 1 = no patching (the paper's default)
    hidden_dim: int = 128  # D
    depth: int = 6  # number of blocks
    num_classes: int = 10  # real classes; one extra "null" class is added for guidance
    learn_sigma: bool = False  # also predict a variance (doubles the output channels)
    # DiffuSSM only
    hourglass_ratio: int = 2  # M: dense layers run on J = L/M tokens
    ssm_core: Literal["s4d", "selective"] = "s4d"
    ssm_state: Optional[int] = None  # N: None = the core's default (64 for S4D, 16 selective)
    ssm_init: Literal["lin", "inv"] = "lin"  # S4D's A at init: S4D-Lin (the course's) or S4D-Inv
    scan_order: Union[str, List[str]] = "raster"  # the SSM's token order, or a list to cycle
    bidirectional: bool = True  # False = the causal ablation
    # which implementation runs (ssm/backend.py): "auto" the fast kernels (fused CUDA ones for CUDA
    # tensors when installed), "reference" the readable forms, "torch" / "cuda" insist on one
    ssm_backend: Literal["auto", "reference", "torch", "cuda"] = "auto"
    # DiT only
    num_heads: int = 4
    mlp_ratio: float = 4.0


@dataclass
class DiffusionConfig:
    """The forward process and what the network predicts."""

    timesteps: int = 1000  # T
    schedule: Literal["linear", "cosine"] = "cosine"
    beta_start: float = 1e-4  # linear schedule only
    beta_end: float = 0.02  # linear schedule only
    prediction: Literal["eps", "v"] = "eps"
    vlb_weight: float = 0.001  # lambda of the hybrid loss (learn_sigma only)


@dataclass
class DataConfig:
    """Which images. ``name`` is "mnist", "cifar10" or "folder" (then ``path`` is required: a folder
    with one sub-folder of images per class, read in ``model.in_channels`` channels: 1 grey, 3 RGB;
    the number of class folders must equal ``model.num_classes``, or that is 0). A relative ``path``
    in a config file is read from the file's folder (``load_config`` makes it absolute)."""

    name: Literal["mnist", "cifar10", "folder"]  # required
    path: Optional[str] = (
        None  # folder: the image folder; mnist / cifar10: the data root (None = the cache)
    )
    pad_to: Optional[int] = 32  # pad 28x28 MNIST to 32x32 (None = keep the native size)


@dataclass
class TrainConfig:
    """Optimisation, classifier-free-guidance label dropout, EMA, logging and checkpoints."""

    max_steps: int = 10_000
    batch_size: int = 64
    lr: float = 3e-4
    lr_schedule: Literal["constant", "cosine", "linear"] = (
        "constant"  # after the warm-up, to 0 at the end
    )
    weight_decay: float = 0.0
    warmup_steps: int = 500
    grad_clip: float = 1.0
    label_dropout: float = 0.1  # probability of replacing the class by the null class
    loss_weighting: Literal["none", "min_snr", "min_snr_plus_one"] = (
        "none"  # per-timestep weights of the loss
    )
    min_snr_gamma: float = 5.0  # gamma of Min-SNR-gamma (loss_weighting: min_snr, min_snr_plus_one)
    timestep_sampling: Literal["uniform", "logit_normal"] = "uniform"  # the density of training t
    logit_mean: float = 0.0  # logit_normal: u ~ N(logit_mean, logit_std), t = sigmoid(u) T
    logit_std: float = 1.0
    ema_decay: float = 0.999
    ema_warmup: bool = True  # decay min(ema_decay, (1 + n) / (10 + n)) at update n
    precision: Literal["fp32", "bf16", "auto"] = (
        "fp32"  # auto: time both on a few steps, keep the faster
    )
    seed: int = 0
    log_every: int = 50
    sample_every: int = 1000
    checkpoint_every: int = 500
    num_workers: int = 0


@dataclass
class ExperimentConfig:
    """A whole experiment: what ``diffussm train --config FILE`` reads."""

    name: str  # required: names the run and its output folder
    model: ModelConfig  # required section
    data: DataConfig  # required section
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# --------------------------------------------------------------------------------------------
# Strict conversion dict -> dataclass
# --------------------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (Union, types.UnionType):
        return " or ".join(
            "null" if a is type(None) else _type_name(a) for a in typing.get_args(tp)
        )
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _described(value: Any) -> str:
    """A wrong value as a user should read it: a string that looks like a number is named as such."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return f"the string {value!r}"
        return f"the string {value!r} (a quoted number: remove the quotes in the YAML)"
    return f"{value!r} ({type(value).__name__})"


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints are accepted for floats)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(
                f"{source}: '{key}' must be a mapping (section {tp.__name__}), got {type(value).__name__}"
            )
        return _from_dict(tp, value, source, prefix=key + ".")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, key, source)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(
            f"{source}: '{key}' has the wrong type: expected {_type_name(tp)}, got {_described(value)}"
        )
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: '{key}' must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{key}' must be a list, got {value!r}")
        inner = args[0] if args else Any
        return [_convert(v, inner, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: '{key}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: '{key}' must be an integer, got {_described(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: '{key}' must be a number, got {_described(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: '{key}' must be a string, got {value!r}")
        return value
    raise ConfigError(f"{source}: '{key}': unsupported annotation {tp!r}")  # pragma: no cover


def _from_dict(cls, data: dict, source: str, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        names = ", ".join(f"'{prefix}{k}'" for k in unknown)
        hints_ = [m for k in unknown for m in difflib.get_close_matches(str(k), list(fields), n=1)]
        guess = f"; did you mean {', '.join(repr(prefix + h) for h in hints_)}?" if hints_ else ""
        guess += "".join(
            f"; {_MOVED[prefix + str(k)]}" for k in unknown if prefix + str(k) in _MOVED
        )
        raise ConfigError(
            f"{source}: unknown key {names}{guess} (allowed in this section: "
            f"{', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, f in fields.items():
        key = prefix + name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{source}: missing required key '{key}'")
            continue
        kwargs[name] = _convert(data[name], hints[name], key, source)
        value = kwargs[name]
        low = _RANGES.get(key)
        if low is not None and value is not None and value < low:
            raise ConfigError(f"{source}: '{key}' must be >= {low}, got {value!r}")
        if key in _POSITIVE and not value > 0:
            raise ConfigError(f"{source}: '{key}' must be > 0, got {value!r}")
        if key in _BELOW:
            high, inclusive = _BELOW[key]
            if value > high or (value == high and not inclusive):
                raise ConfigError(
                    f"{source}: '{key}' must be {'<=' if inclusive else '<'} {high}, got {value!r}"
                )
    return cls(**kwargs)


# Lower bounds of counts and sizes (a zero or negative value fails here, naming the key).
_RANGES = {
    **{
        f"model.{k}": 1
        for k in (
            "in_channels",
            "image_size",
            "patch_size",
            "hidden_dim",
            "depth",
            "hourglass_ratio",
            "num_heads",
        )
    },
    "model.num_classes": 0,
    "model.ssm_state": 2,
    "diffusion.timesteps": 1,
    "train.max_steps": 0,
    "train.batch_size": 1,
    "train.log_every": 1,
    "train.warmup_steps": 0,
    "train.checkpoint_every": 0,
    "train.sample_every": 0,
    "train.num_workers": 0,
    "train.grad_clip": 0.0,
    "train.weight_decay": 0.0,
    "train.label_dropout": 0.0,
    "train.ema_decay": 0.0,
    "diffusion.vlb_weight": 0.0,
    "data.pad_to": 1,
}
# Keys a user may look for where they are not, and where their setting lives.
_MOVED = {
    "data.channels": "an image folder is read in model.in_channels channels (1 grey, 3 RGB)",
    "data.num_classes": "the number of classes is model.num_classes (= the number of class folders)",
}
# Values that must be strictly positive, and upper bounds (inclusive unless noted).
_POSITIVE = {"train.lr", "train.min_snr_gamma", "train.logit_std"}
_BELOW = {"train.label_dropout": (1.0, True), "train.ema_decay": (1.0, False)}  # (bound, inclusive)


def config_from_dict(data: dict, cls=ExperimentConfig, source: str = "<dict>"):
    """Build ``cls`` from a plain dict, strictly (see module docstring)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    return _from_dict(cls, data, source)


def load_config(path: str | Path, cls=ExperimentConfig):
    """Read a YAML file into ``cls`` (default ``ExperimentConfig``). Errors name key and file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(
            f"{path} is a folder; --config takes a YAML file such as configs/mnist_diffussm.yaml"
        )
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path}: not a text file (a YAML config is text; is this a checkpoint?)"
        ) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    cfg = config_from_dict({} if data is None else data, cls, source=str(path))
    return _with_data_path_from(cfg, path) if isinstance(cfg, ExperimentConfig) else cfg


def _with_data_path_from(cfg: ExperimentConfig, path: Path) -> ExperimentConfig:
    """``cfg`` with a relative ``data.path`` made absolute from the folder of the config file ``path``
    (not from the working directory: the config works from wherever it is run). Whether it exists is
    the loader's business (the config must load before its data is there)."""
    if cfg.data.path is None:
        return cfg
    resolved = Path(cfg.data.path).expanduser()
    if not resolved.is_absolute():
        resolved = Path(os.path.abspath(path.parent / resolved))
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=str(resolved)))


def config_to_dict(cfg) -> dict:
    """The inverse of ``config_from_dict``: plain dicts/lists, ready for YAML or JSON."""
    return dataclasses.asdict(cfg)


def save_config(cfg, path: str | Path) -> None:
    """Write ``cfg`` as YAML (round-trips through ``load_config``)."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
