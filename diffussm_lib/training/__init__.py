"""Training (notebook 05): the step, the loop and its callbacks, EMA, DDP, checkpoints and export.

Modules
-------
step          ``lr_at``, ``step_generator``, ``epoch_batches``, ``autocast_context``,
              ``make_optimizer``
ema           ``EMA``: the exponential moving average of the weights diffusion models sample with
distributed   ``torchrun`` process groups and collectives on the training device
callbacks     ``Callback`` and the default ones: ``ProgressBar``, ``MetricsLog`` (the run's one
              record, ``metrics.jsonl``; ``read_metrics``), ``SampleGrids``; ``EMASnapshots``
trainer       ``Trainer``: the loop (resumable, time budgets, DDP-ready, one host sync per log)
checkpoint    the checkpoint file: safetensors, atomic, no pickle
loading       does a checkpoint fit a model or a config; ``load_model``
export        ``export_weights``: weights + config + model card (``quality_table``)
"""

from .callbacks import (
    METRICS_NAME,
    SAMPLES_DIR,
    Callback,
    EMASnapshots,
    MetricsLog,
    ProgressBar,
    SampleGrids,
    read_metrics,
)
from .checkpoint import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    FORMAT,
    FORMAT_VERSION,
    WEIGHTS_NAME,
    Checkpoint,
    CheckpointError,
    check_safetensors_file,
    flatten_optimizer_state,
    load_checkpoint,
    read_config,
    read_metadata,
    resolve_checkpoint_path,
    save_checkpoint,
    save_config_atomic,
    unflatten_optimizer_state,
)
from .distributed import DistInfo, init_distributed, launched_distributed, shutdown_distributed
from .ema import EMA, ema_decay_at, unwrap
from .export import export_weights, model_card_text, quality_table
from .loading import (
    CONFIG_KEYS_ALLOWED_TO_DIFFER,
    CONFIG_SECTIONS_COMPARED,
    check_config_matches,
    check_resumable,
    config_mismatches,
    load_model,
    load_state_strict,
    state_mismatches,
)
from .step import (
    NonFiniteLossError,
    autocast_context,
    epoch_batches,
    lr_at,
    make_optimizer,
    step_batches,
    step_generator,
    step_seed,
)
from .trainer import LogWindow, Trainer, TrainResult, check_labels

__all__ = [
    "METRICS_NAME",
    "SAMPLES_DIR",
    "Callback",
    "EMASnapshots",
    "MetricsLog",
    "ProgressBar",
    "SampleGrids",
    "read_metrics",
    "CHECKPOINT_NAME",
    "CONFIG_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "Checkpoint",
    "CheckpointError",
    "check_safetensors_file",
    "flatten_optimizer_state",
    "load_checkpoint",
    "read_config",
    "read_metadata",
    "resolve_checkpoint_path",
    "save_checkpoint",
    "save_config_atomic",
    "unflatten_optimizer_state",
    "DistInfo",
    "init_distributed",
    "launched_distributed",
    "shutdown_distributed",
    "EMA",
    "ema_decay_at",
    "unwrap",
    "export_weights",
    "model_card_text",
    "quality_table",
    "CONFIG_KEYS_ALLOWED_TO_DIFFER",
    "CONFIG_SECTIONS_COMPARED",
    "check_config_matches",
    "check_resumable",
    "config_mismatches",
    "load_model",
    "load_state_strict",
    "state_mismatches",
    "NonFiniteLossError",
    "autocast_context",
    "epoch_batches",
    "lr_at",
    "make_optimizer",
    "step_batches",
    "step_generator",
    "step_seed",
    "LogWindow",
    "Trainer",
    "TrainResult",
    "check_labels",
]
