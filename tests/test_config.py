"""Strict YAML configs: each kind of error names the key and the file."""

import pytest

from diffussm_lib.config import (
    ConfigError,
    ExperimentConfig,
    ModelConfig,
    config_from_dict,
    load_config,
    save_config,
)

GOOD = """
name: demo
model:
  arch: diffussm
  depth: 3
data:
  name: mnist
train:
  lr: 0.001
"""


def write(tmp_path, text):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_good_config_loads_typed(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert isinstance(cfg, ExperimentConfig) and isinstance(cfg.model, ModelConfig)
    assert cfg.model.depth == 3 and cfg.train.lr == 0.001 and cfg.data.name == "mnist"


def test_unknown_key_is_named(tmp_path):
    p = write(tmp_path, GOOD.replace("depth: 3", "depht: 3"))
    with pytest.raises(ConfigError, match=r"cfg\.yaml.*unknown key 'model\.depht'"):
        load_config(p)


def test_missing_required_key_is_named(tmp_path):
    p = write(tmp_path, GOOD.replace("  arch: diffussm\n", ""))
    with pytest.raises(ConfigError, match=r"cfg\.yaml.*missing required key 'model\.arch'"):
        load_config(p)
    with pytest.raises(ConfigError, match="missing required key 'data'"):
        config_from_dict({"name": "x", "model": {"arch": "dit"}})


@pytest.mark.parametrize(
    "old,new,key",
    [
        ("depth: 3", "depth: three", "model.depth"),
        ("depth: 3", "depth: 3.5", "model.depth"),
        ("lr: 0.001", "lr: fast", "train.lr"),
        ("arch: diffussm", "arch: unet", "model.arch"),
        ("depth: 3", "bidirectional: 1", "model.bidirectional"),
    ],
)
def test_wrong_type_is_named(tmp_path, old, new, key):
    with pytest.raises(ConfigError, match=rf"cfg\.yaml.*'{key}'"):
        load_config(write(tmp_path, GOOD.replace(old, new)))


def test_round_trip_and_missing_file(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    save_config(cfg, tmp_path / "out.yaml")
    assert load_config(tmp_path / "out.yaml") == cfg
    with pytest.raises(ConfigError, match="not found.*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
