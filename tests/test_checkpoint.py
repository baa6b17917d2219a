"""Checkpoints: exact round trip (weights, EMA, AdamW state), atomic writes, refusal of pickles
(a payload that would run code is never run), clear errors for files that do not fit the model."""

import pickle
import struct
from pathlib import Path

import pytest
import torch

from _train_helpers import one_thread, tiny_config, with_model  # noqa: F401 (fixture)
from diffussm_lib import training as C
from diffussm_lib.training import EMA
from diffussm_lib.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _trained_state(cfg, steps=2):
    """A tiny model + EMA + AdamW after ``steps`` updates on random data."""
    torch.manual_seed(0)
    model = build_model(cfg.model)
    ema = EMA(model, 0.9)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99))
    x = torch.randn(2, cfg.model.in_channels, cfg.model.image_size, cfg.model.image_size)
    for _ in range(steps):
        loss = model(x, torch.tensor([3, 50]), torch.tensor([1, 2])).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(model)
    return model, ema, opt, x


def test_round_trip_is_exact_and_optimizer_continues_identically(tmp_path):
    cfg = tiny_config()
    model, ema, opt, x = _trained_state(cfg)
    path = C.save_checkpoint(
        tmp_path / "ck.safetensors",
        config=cfg,
        step=7,
        model=model.state_dict(),
        ema=ema.state_dict(),
        optimizer=opt.state_dict(),
        extra={"ema_updates": 2},
    )
    ck = C.load_checkpoint(path)
    assert ck.path == path and ck.step == 7 and ck.config == cfg and ck.extra["ema_updates"] == 2
    for k, v in model.state_dict().items():
        assert torch.equal(ck.model[k], v)
    for k, v in ema.state_dict().items():
        assert torch.equal(ck.ema[k], v)
    assert ck.optimizer["param_groups"][0]["betas"] == (0.9, 0.99)

    # a fresh model + optimizer loaded from the file takes exactly the same next step
    model2 = build_model(cfg.model)
    model2.load_state_dict(ck.model)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-3, betas=(0.9, 0.99))
    opt2.load_state_dict(ck.optimizer)
    for m, o in ((model, opt), (model2, opt2)):
        loss = m(x, torch.tensor([3, 50]), torch.tensor([1, 2])).square().mean()
        o.zero_grad()
        loss.backward()
        o.step()
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(a, b), k


def test_folder_resolution_and_missing_files(tmp_path):
    cfg = tiny_config()
    model = build_model(cfg.model)
    C.save_checkpoint(tmp_path / C.CHECKPOINT_NAME, config=cfg, step=1, model=model.state_dict())
    assert C.load_checkpoint(tmp_path).path.name == C.CHECKPOINT_NAME
    with pytest.raises(C.CheckpointError, match="checkpoint not found"):
        C.load_checkpoint(tmp_path / "nope.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(C.CheckpointError, match="no checkpoint in folder"):
        C.load_checkpoint(tmp_path / "empty")


def test_atomic_write_keeps_the_old_checkpoint_when_writing_fails(tmp_path, monkeypatch):
    cfg = tiny_config()
    model = build_model(cfg.model)
    path = C.save_checkpoint(
        tmp_path / "ck.safetensors", config=cfg, step=1, model=model.state_dict()
    )
    before = path.read_bytes()

    import safetensors.torch as st

    def dying_save(tensors, filename, metadata=None):  # writes half a file, then "the process dies"
        Path(filename).write_bytes(b"\x00" * 100)
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(st, "save_file", dying_save)
    with pytest.raises(KeyboardInterrupt):
        C.save_checkpoint(path, config=cfg, step=2, model=model.state_dict())
    assert path.read_bytes() == before and C.load_checkpoint(path).step == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck.safetensors"], "temporary file left behind"


class _Payload:
    """Unpickling this runs ``exec`` of code that creates a marker file (what an attacker would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


@pytest.mark.parametrize("kind", ["pickle", "torch.save"])
@pytest.mark.parametrize("name", ["evil.safetensors", "evil.pt"])
def test_pickle_with_code_payload_is_refused_and_never_run(tmp_path, kind, name):
    marker = tmp_path / "MARKER"
    path = tmp_path / name
    if kind == "pickle":
        path.write_bytes(pickle.dumps({"model": _Payload(marker)}, protocol=4))
    else:
        torch.save({"model": _Payload(marker)}, path)
    for load in (C.load_checkpoint, C.read_metadata, C.load_model):
        with pytest.raises(
            C.CheckpointError, match=r"not a safetensors checkpoint.*(pickle|zip).*never unpickles"
        ):
            load(path)
    assert not marker.exists(), "the payload ran"
    # control: the payload is live, i.e. the test would have caught a loader that unpickles
    if kind == "pickle":
        pickle.loads(path.read_bytes())
        assert marker.exists()


def test_any_header_length_is_accepted(tmp_path):
    """The first byte of a safetensors file is the low byte of its header length: 0x80 (a pickle's
    first byte) or b"P" (a zip's) must not be mistaken for those formats."""
    cfg = tiny_config()
    state = {"w": torch.zeros(1)}
    firsts = set()
    for k in range(0, 520, 8):
        path = C.save_checkpoint(
            tmp_path / "ck.safetensors", config=cfg, step=1, model=state, extra={"pad": "x" * k}
        )
        first = path.read_bytes()[0]
        firsts.add(first)
        assert C.load_checkpoint(path).extra["pad"] == "x" * k
    assert 0x80 in firsts and ord("P") in firsts


def test_not_a_checkpoint_or_truncated(tmp_path):
    from safetensors.torch import save_file

    bare = tmp_path / "bare.safetensors"
    save_file({"w": torch.zeros(2)}, bare)
    with pytest.raises(C.CheckpointError, match="not a diffussm checkpoint"):
        C.load_checkpoint(bare)
    cfg = tiny_config()
    good = C.save_checkpoint(
        tmp_path / "good.safetensors", config=cfg, step=1, model=build_model(cfg.model).state_dict()
    )
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(C.CheckpointError, match="cut.safetensors"):
        C.load_checkpoint(cut)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(struct.pack("<Q", 10**9) + b"{}")
    with pytest.raises(C.CheckpointError, match="not a safetensors checkpoint"):
        C.load_checkpoint(junk)


def test_mismatched_config_names_the_keys(tmp_path):
    cfg = tiny_config()
    model = build_model(cfg.model)
    path = C.save_checkpoint(
        tmp_path / "ck.safetensors",
        config=cfg,
        step=3,
        model=model.state_dict(),
        ema=model.state_dict(),
    )
    other = with_model(cfg, hidden_dim=cfg.model.hidden_dim * 2, depth=cfg.model.depth + 1)
    with pytest.raises(C.CheckpointError, match=r"model\.depth: checkpoint 2, config 3") as e:
        C.load_model(path, config=other)
    assert "model.hidden_dim" in str(e.value)
    # bare weights into a model of another size: config keys and state-dict keys / shapes are named
    with pytest.raises(C.CheckpointError) as e:
        C.load_state_strict(build_model(other.model), C.load_checkpoint(path).ema, "ck", cfg, other)
    msg = str(e.value)
    assert (
        "model.hidden_dim: checkpoint 32, config 64" in msg
        and "missing in checkpoint: blocks.2" in msg
    )
    assert "shape" in msg


def test_export_weights_and_load_model(tmp_path):
    cfg = tiny_config()
    model, ema, opt, x = _trained_state(cfg)
    C.save_checkpoint(
        tmp_path / "run" / C.CHECKPOINT_NAME,
        config=cfg,
        step=5,
        model=model.state_dict(),
        ema=ema.state_dict(),
        optimizer=opt.state_dict(),
        extra={"train_seconds": 7.0},
    )
    w = C.export_weights(tmp_path / "run", tmp_path / "exp")
    assert w.name == C.WEIGHTS_NAME and (tmp_path / "exp" / "config.yaml").exists()
    card = (tmp_path / "exp" / "README.md").read_text()
    assert "| training steps | 5 |" in card and "arch: diffussm" in card
    ck = C.load_checkpoint(tmp_path / "exp")
    assert ck.model is None and ck.optimizer is None and ck.step == 5
    m, cfg2, _ = C.load_model(tmp_path / "exp")
    assert cfg2 == cfg and not m.training
    for k, v in ema.state_dict().items():
        assert torch.equal(m.state_dict()[k], v)
    with pytest.raises(C.CheckpointError, match="holds no 'model' weights"):
        C.load_model(tmp_path / "exp", which="model")
    assert "Not measured yet" in card


def test_model_card_takes_evaluation_reports_of_the_same_step(tmp_path):
    cfg = tiny_config()
    model, ema, opt, x = _trained_state(cfg)
    C.save_checkpoint(
        tmp_path / "run" / C.CHECKPOINT_NAME,
        config=cfg,
        step=5,
        model=model.state_dict(),
        ema=ema.state_dict(),
        optimizer=opt.state_dict(),
    )
    ev = dict(
        n=1000,
        fid=3.456,
        floor=1.234,
        class_accuracy=0.9876,
        histogram_deviation=0.0123,
        step=5,
        sampler="ddim",
        steps=25,
        guidance=2.0,
        seed=0,
    )
    C.export_weights(tmp_path / "run", tmp_path / "exp", evaluations=[ev])
    card = (tmp_path / "exp" / "README.md").read_text()
    assert "| 1000 | ddim | 25 | 2.0 | 3.456 | 1.234 | 98.76% | 0.0123 |" in card
    with pytest.raises(ValueError, match="step 4, but checkpoint .* at step 5"):
        C.export_weights(tmp_path / "run", tmp_path / "exp2", evaluations=[dict(ev, step=4)])
    assert not (tmp_path / "exp2").exists()
