"""Shared by tests/test_train.py, test_cli.py, test_checkpoint.py, test_ddp.py (not a test module).

The tiny config is ``configs/tiny.yaml`` with its train section overridden per test (few steps,
small batch), so every training test stays within seconds on 2 CPU cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from diffussm_lib.config import ExperimentConfig, config_to_dict, load_config
from diffussm_lib.data import ImageDataset

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny.yaml"

FAST_TRAIN = dict(
    max_steps=4, batch_size=8, warmup_steps=2, log_every=2, sample_every=0, checkpoint_every=2
)


@pytest.fixture(autouse=False)
def one_thread():
    """Tiny models run fastest on one thread, and much faster than on two when the 2 cores are
    shared (no OpenMP spinning); restored afterwards. Subprocesses get OMP_NUM_THREADS=1 too."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_config(**train) -> ExperimentConfig:
    """configs/tiny.yaml with ``FAST_TRAIN`` and then ``train`` overriding its train section."""
    cfg = load_config(TINY)
    return replace(cfg, train=replace(cfg.train, **{**FAST_TRAIN, **train}))


def with_model(cfg: ExperimentConfig, **model) -> ExperimentConfig:
    return replace(cfg, model=replace(cfg.model, **model))


def write_config(cfg: ExperimentConfig, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return path


def synthetic_dataset(cfg: ExperimentConfig, n: int = 48, seed: int = 0) -> ImageDataset:
    """Random uint8 images of the model's size and random labels: no MNIST needed."""
    g = torch.Generator().manual_seed(seed)
    m = cfg.model
    images = torch.randint(
        0, 256, (n, m.image_size, m.image_size, m.in_channels), generator=g, dtype=torch.uint8
    )
    labels = torch.randint(0, m.num_classes, (n,), generator=g)
    return ImageDataset(images, labels)


def cli_env(**extra) -> dict:
    """Environment for a ``python -m diffussm_lib`` subprocess: the repo importable, one thread per
    process (as ``one_thread``), the data directory inherited from conftest."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_cli(args, timeout=300, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "diffussm_lib", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(**env),
        cwd=REPO,
    )
