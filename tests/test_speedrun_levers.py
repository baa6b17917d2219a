"""The training levers of the CPU recipe (issue 24), each against its formula on a small hand-computed
case: the decaying learning rate, the timestep densities, Min-SNR loss weights, the EMA ramp switch,
``precision: auto``; the recipe config itself trains; a bad value in any new key is one clear line."""

import math

import pytest
import torch
import yaml

from _train_helpers import REPO, one_thread, synthetic_dataset, tiny_config  # noqa: F401 (fixture)
from diffussm_lib.config import ConfigError, config_to_dict, load_config
from diffussm_lib.diffusion import NoiseSchedule, diffusion_loss, loss_weights
from diffussm_lib.training import Trainer, lr_at
from diffussm_lib.training.step import sample_timesteps

pytestmark = pytest.mark.usefixtures("one_thread")
SPEEDRUN = REPO / "configs" / "mnist_speedrun.yaml"


def test_lr_schedules_follow_their_formulas():
    # warm-up 2 steps, then the decay over the run's progress p
    assert lr_at(0, 1.0, 2, "cosine", 0.0) == 0.5
    assert lr_at(5, 1.0, 2, "cosine", 0.5) == pytest.approx(0.5)  # (1 + cos(pi/2)) / 2
    assert lr_at(5, 1.0, 2, "cosine", 0.25) == pytest.approx((1 + math.sqrt(0.5)) / 2)
    assert lr_at(5, 2.0, 0, "linear", 0.75) == pytest.approx(0.5)
    assert lr_at(5, 1.0, 0, "cosine", 1.0) == pytest.approx(0.0, abs=1e-12)
    assert lr_at(5, 1.0, 0, "constant", 0.9) == 1.0
    assert lr_at(5, 1.0, 0, "linear", 1.7) == 0.0  # progress is clamped to [0, 1]
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_at(0, 1.0, 0, "step", 0.0)


def test_trainer_decays_over_the_time_budget_or_the_steps():
    tr = Trainer(
        tiny_config(max_steps=8, lr_schedule="linear", warmup_steps=0),
        None,
        dataset=synthetic_dataset(tiny_config()),
        progress=False,
        log=lambda m: None,
    )
    tr.step, tr.train_seconds = 2, 30.0
    assert tr.progress() == 0.25  # 2 of 8 steps
    tr.max_seconds = 60.0
    assert tr.progress() == 0.5  # half of the time budget
    tr.max_seconds = None
    x, y = tr.dataset.x[:8], tr.dataset.y[:8]
    assert tr.train_step(x, y)[2] == pytest.approx(
        tiny_config().train.lr * (1 - 2 / 8)
    )  # step 2 of 8


def test_min_snr_weights_for_v_and_eps():
    s = NoiseSchedule.cosine(1000)
    t = torch.tensor([0, 500, 999])
    snr = s.snr[t]
    gamma = 5.0
    w_v = loss_weights(s, t, "v", "min_snr", gamma)
    w_eps = loss_weights(s, t, "eps", "min_snr", gamma)
    for i in range(3):
        clipped = min(float(snr[i]), gamma)
        assert float(w_v[i]) == pytest.approx(clipped / (float(snr[i]) + 1), rel=1e-5)
        assert float(w_eps[i]) == pytest.approx(clipped / float(snr[i]), rel=1e-5)
    # a hand case: SNR = 1 exactly (alpha_bar = 1/2): v weight 1/2, eps weight 1
    half = NoiseSchedule(torch.tensor([0.5]))
    assert float(loss_weights(half, torch.tensor([0]), "v", "min_snr")) == pytest.approx(0.5)
    assert float(loss_weights(half, torch.tensor([0]), "eps", "min_snr")) == pytest.approx(1.0)
    assert torch.equal(loss_weights(s, t, "v", "none"), torch.ones(3))
    # the variant for v: min(SNR + 1, gamma) / (SNR + 1); at SNR = 1: min(2, 5) / 2 = 1; at SNR = 9 with
    # gamma 5: 5 / 10; at high noise (t = 999, SNR ~ 0) weight 1 where the paper's goes to 0
    assert float(loss_weights(half, torch.tensor([0]), "v", "min_snr_plus_one")) == pytest.approx(
        1.0
    )
    nine = NoiseSchedule(torch.tensor([0.1]))  # beta 0.1: alpha_bar 0.9, SNR = 0.9 / 0.1 = 9
    assert float(loss_weights(nine, torch.tensor([0]), "v", "min_snr_plus_one")) == pytest.approx(
        0.5
    )
    assert float(loss_weights(s, torch.tensor([999]), "v", "min_snr_plus_one")) == pytest.approx(
        1.0
    )
    assert float(loss_weights(s, torch.tensor([999]), "v", "min_snr")) < 1e-3
    assert torch.equal(
        loss_weights(s, t, "eps", "min_snr_plus_one"), w_eps
    )  # for eps: the same as min_snr
    with pytest.raises(ValueError, match="loss_weighting"):
        loss_weights(s, t, "v", "max_snr")


def test_weighted_loss_is_the_weighted_mean_of_per_sample_errors():
    s = NoiseSchedule.cosine(100)
    x0, noise = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    t = torch.tensor([1, 50, 99])
    model = lambda x, t, y: torch.zeros_like(x)  # noqa: E731 (predicts 0)
    got = diffusion_loss(model, s, x0, None, prediction="v", t=t, noise=noise, weighting="min_snr")
    a, b = s.sqrt_alpha_bar[t].view(3, 1, 1, 1), s.sqrt_one_minus_alpha_bar[t].view(3, 1, 1, 1)
    v = a * noise - b * x0
    want = (loss_weights(s, t, "v", "min_snr") * v.pow(2).mean(dim=(1, 2, 3))).mean()
    assert float(got) == pytest.approx(float(want), rel=1e-6)


def test_timestep_densities():
    g = torch.Generator().manual_seed(0)
    t = sample_timesteps(200_000, 1000, g, "uniform")
    assert t.min() == 0 and t.max() == 999 and abs(t.float().mean().item() - 499.5) < 3
    g = torch.Generator().manual_seed(0)
    t = sample_timesteps(200_000, 1000, g, "logit_normal", mean=0.0, std=1.0)
    # P(t < T/2) = P(u < 0) = 1/2; P(t < T sigmoid(1)) = P(u < 1) = Phi(1) = 0.8413
    assert (t < 500).float().mean().item() == pytest.approx(0.5, abs=0.005)
    assert (t < int(1000 / (1 + math.exp(-1)))).float().mean().item() == pytest.approx(
        0.8413, abs=0.005
    )
    g = torch.Generator().manual_seed(0)
    u = torch.randn(5, generator=g)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(sample_timesteps(5, 10, g, "logit_normal"), (torch.sigmoid(u) * 10).long())
    with pytest.raises(ValueError, match="timestep_sampling"):
        sample_timesteps(2, 10, None, "beta")


def test_ema_warmup_switch():
    cfg = tiny_config(max_steps=2, ema_decay=0.9, ema_warmup=False)
    tr = Trainer(cfg, None, dataset=synthetic_dataset(cfg), progress=False, log=lambda m: None)
    tr.train()
    assert tr.ema.last_decay == 0.9 and tr.history[-1]["ema_decay"] == 0.9
    cfg = tiny_config(max_steps=2, ema_decay=0.9)
    tr = Trainer(cfg, None, dataset=synthetic_dataset(cfg), progress=False, log=lambda m: None)
    tr.train()
    assert tr.ema.last_decay == pytest.approx(2 / 11)  # (1 + n) / (10 + n) at n = 1


def test_precision_auto_picks_and_says_which(tmp_path):
    cfg = tiny_config(max_steps=2, precision="auto")
    said = []
    tr = Trainer(
        cfg, tmp_path / "run", dataset=synthetic_dataset(cfg), progress=False, log=said.append
    )
    tr.train()
    assert tr.precision in ("fp32", "bf16")
    line = [m for m in said if m.startswith("precision auto:")]
    assert len(line) == 1 and line[0].endswith(f"-> {tr.precision}") and "fp32" in line[0]
    assert set(tr.precision_times) <= {"fp32", "bf16"} and "fp32" in tr.precision_times
    assert (
        f"fp32 {1e3 * tr.precision_times['fp32']:.0f} ms" in line[0]
    )  # the log says what was measured
    assert tr.step == 2 and tr.train_seconds > 0
    from diffussm_lib.training import load_checkpoint

    assert load_checkpoint(tmp_path / "run").extra["precision"] == tr.precision


def test_the_recipe_config_loads_and_trains_a_few_steps():
    cfg = load_config(SPEEDRUN)
    assert (cfg.train.lr_schedule, cfg.train.precision) == ("cosine", "auto")
    assert (
        cfg.model.arch,
        cfg.model.ssm_core,
        cfg.model.bidirectional,
        cfg.model.hourglass_ratio,
    ) == ("diffussm", "s4d", True, 2)
    from dataclasses import replace

    cfg = replace(cfg, train=replace(cfg.train, batch_size=8, checkpoint_every=0))
    tr = Trainer(cfg, None, dataset=synthetic_dataset(cfg), progress=False, log=lambda m: None)
    res = tr.train(max_steps=2)
    assert res.step == 2 and math.isfinite(res.history[-1]["loss"])


BAD = [  # (key, bad value, what the one line says)
    ("lr_schedule", "step", "must be one of"),
    ("loss_weighting", "snr", "must be one of"),
    ("min_snr_gamma", 0, "must be > 0"),
    ("min_snr_gamma", "5", "quoted number"),
    ("timestep_sampling", "normal", "must be one of"),
    ("logit_mean", "zero", "must be a number"),
    ("logit_std", -1.0, "must be > 0"),
    ("ema_warmup", "yes", "true or false"),
    ("ema_decay", 1.0, "must be < 1.0"),
    ("precision", "fp16", "must be one of"),
    ("lr", 0, "must be > 0"),
    ("label_dropout", 1.5, "must be <= 1.0"),
]


@pytest.mark.parametrize("key,value,says", BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_bad_value_in_a_recipe_key_is_one_clear_line(tmp_path, key, value, says):
    d = config_to_dict(load_config(SPEEDRUN))
    d["train"][key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(d))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert "\n" not in msg and f"'train.{key}'" in msg and says in msg and str(path) in msg


def test_faster_precision_interleaves_and_keeps_full_precision_on_a_tie(monkeypatch):
    """On a fake clock that advances by each call's cost, so the rule is checked, not the machine's
    noise (a real 2 ms sleep drifts by more than the 5% margin on a busy machine)."""
    import types

    from diffussm_lib.training import step
    from diffussm_lib.training.step import faster_precision

    calls, now = [], [0.0]
    monkeypatch.setattr(step, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))

    def work(cost):
        def fb(c):
            calls.append(c)
            now[0] += cost[c]

        return fb

    pick, med = faster_precision(work({"fp32": 0.004, "bf16": 0.001}), rounds=2)
    assert pick == "bf16" and med["bf16"] < med["fp32"]
    assert calls == ["fp32", "bf16"] * 3  # interleaved, 1 warm-up + 2 rounds
    pick, _ = faster_precision(work({"fp32": 0.002, "bf16": 0.002}), rounds=2)
    assert pick == "fp32"  # no clear gain: full precision
    assert faster_precision(work({"fp32": 0.001}), candidates=("fp32",), rounds=1)[0] == "fp32"
