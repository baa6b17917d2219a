"""Noise schedules and the forward process: formulas, closed form vs step by step, posterior."""

import math

import pytest
import torch

from diffussm_lib.config import DiffusionConfig
from diffussm_lib.diffusion import NoiseSchedule, q_sample

SCHEDULES = {
    "linear": lambda T=1000: NoiseSchedule.linear(T, 1e-4, 0.02),
    "cosine": lambda T=1000: NoiseSchedule.cosine(T),
}


def test_linear_alpha_bar_matches_its_formula():
    T, b0, b1 = 1000, 1e-4, 0.02
    s = NoiseSchedule.linear(T, b0, b1)
    betas = [b0 + (b1 - b0) * i / (T - 1) for i in range(T)]
    assert torch.allclose(s.betas, torch.tensor(betas, dtype=torch.float64), rtol=0, atol=1e-15)
    prod, ab = 1.0, []
    for b in betas:
        prod *= 1.0 - b
        ab.append(prod)
    assert torch.allclose(s.alpha_bar, torch.tensor(ab, dtype=torch.float64), rtol=1e-12, atol=0)
    assert s.alpha_bar[-1].item() == pytest.approx(
        4.0358e-5, rel=1e-3
    )  # DDPM's well-known end value


def test_cosine_alpha_bar_matches_its_formula():
    T, s_ = 1000, 0.008
    s = NoiseSchedule.cosine(T)
    f = lambda u: math.cos((u + s_) / (1 + s_) * math.pi / 2) ** 2  # noqa: E731
    want = torch.tensor([f((t + 1) / T) / f(0) for t in range(T)], dtype=torch.float64)
    # beta is clipped at 0.999 only at the last step (where f(1) = 0); elsewhere the formula is exact
    assert (s.betas[:-1] < 0.999).all() and s.betas[-1].item() == pytest.approx(0.999)
    assert torch.allclose(s.alpha_bar[:-1], want[:-1], rtol=1e-10, atol=0)
    assert s.alpha_bar[-1].item() == pytest.approx(0.001 * s.alpha_bar[-2].item())


@pytest.mark.parametrize("name", SCHEDULES)
def test_derived_quantities(name):
    s = SCHEDULES[name]()
    assert s.T == len(s) == 1000
    assert (s.alpha_bar[1:] < s.alpha_bar[:-1]).all(), "alpha_bar must decrease"
    assert torch.allclose(
        s.sqrt_alpha_bar**2 + s.sqrt_one_minus_alpha_bar**2, torch.ones(1000, dtype=torch.float64)
    )
    assert torch.allclose(s.snr, s.alpha_bar / (1 - s.alpha_bar))
    assert torch.allclose(s.sqrt_alphas**2, s.alphas) and torch.allclose(s.sqrt_betas**2, s.betas)
    assert s.alpha_bar_at(-1).item() == 1.0 and s.alpha_bar_at(5) == s.alpha_bar[5]
    assert torch.equal(
        s.alpha_bar_at(torch.tensor([-1, 0, 999])),
        torch.stack([torch.tensor(1.0, dtype=torch.float64), s.alpha_bar[0], s.alpha_bar[999]]),
    )
    assert s.posterior_variance[0] == 0 and torch.isfinite(s.posterior_log_variance_clipped).all()


@pytest.mark.parametrize("name", SCHEDULES)
def test_closed_form_equals_iterated_steps_exactly(name):
    """Iterating x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps from x_0 keeps x_t Gaussian with
    mean m_t x_0 and variance v_t: m_t = sqrt(alpha_t) m_{t-1}, v_t = alpha_t v_{t-1} + beta_t.
    These recursions must reproduce sqrt(alpha_bar_t) and 1 - alpha_bar_t at every t."""
    s = SCHEDULES[name]()
    m, v = 1.0, 0.0
    ms, vs = [], []
    for a, b in zip(s.alphas.tolist(), s.betas.tolist()):
        m, v = math.sqrt(a) * m, a * v + b
        ms.append(m)
        vs.append(v)
    assert torch.allclose(
        torch.tensor(ms, dtype=torch.float64), s.sqrt_alpha_bar, atol=1e-12, rtol=0
    )
    assert torch.allclose(
        torch.tensor(vs, dtype=torch.float64), 1 - s.alpha_bar, atol=1e-12, rtol=0
    )


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("K", [30, 100])
def test_closed_form_equals_iterated_steps_monte_carlo(name, K):
    """The same in distribution, by sampling: N chains iterated K times with q_step vs q_sample at
    t = K-1, both against the closed-form mean and variance. (T = 100 keeps it fast; the linear
    betas are scaled by 1000/T as in Improved DDPM, so that the chain ends near pure noise.)"""
    s = NoiseSchedule.linear(100, 1e-3, 0.2) if name == "linear" else NoiseSchedule.cosine(100)
    N = 8_000  # 32k entries: under torch's per-op parallel grain size, so no thread overhead
    g = torch.Generator().manual_seed(K)
    x0 = (
        torch.tensor([-1.0, -0.3, 0.5, 1.0], dtype=torch.float64)
        .view(1, 1, 2, 2)
        .expand(N, 1, 2, 2)
    )
    x = x0.clone()
    for t in range(K):
        x = s.q_step(x, t, torch.randn(x.shape, generator=g, dtype=x.dtype))
    direct = q_sample(s, x0, torch.full((N,), K - 1), generator=g)
    mean_want = (s.sqrt_alpha_bar[K - 1] * x0[0]).flatten()
    var_want = (1 - s.alpha_bar[K - 1]).item()
    se_mean, se_var = math.sqrt(var_want / N), var_want * math.sqrt(2 / N)
    for samples in (x, direct):
        assert (samples.mean(0).flatten() - mean_want).abs().max() < 5 * se_mean
        assert (samples.var(0).flatten() - var_want).abs().max() < 5 * se_var


@pytest.mark.parametrize("name", SCHEDULES)
def test_posterior_is_bayes_rule(name):
    """q(x_{t-1} | x_t, x_0) from the product of N(x_{t-1}; sqrt(ab_{t-1}) x0, 1 - ab_{t-1}) and
    N(x_t; sqrt(alpha_t) x_{t-1}, beta_t), compared with the schedule's coefficients."""
    s = SCHEDULES[name]()
    g = torch.Generator().manual_seed(1)
    x0, xt = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64).unbind(0)
    x0, xt = x0[None], xt[None]
    for t in (1, 10, 500, 998):
        ab_prev, a, b = s.alpha_bar[t - 1], s.alphas[t], s.betas[t]
        precision = 1 / (1 - ab_prev) + a / b
        var = 1 / precision
        mean = var * (ab_prev.sqrt() * x0 / (1 - ab_prev) + a.sqrt() * xt / b)
        got_mean, got_var = s.q_posterior(x0, xt, t)
        tb_mean, tb_var = s.q_posterior(x0, xt, torch.tensor([t]))  # per-sample t: same values
        assert torch.allclose(tb_mean, got_mean) and tb_var.shape == (1, 1, 1, 1)
        assert torch.allclose(got_mean, mean, atol=1e-10) and got_var == pytest.approx(
            var.item(), rel=1e-10
        )
    mean0, var0 = s.q_posterior(x0, xt, 0)  # x_{-1} is x_0 itself: no uncertainty left
    assert var0 == 0 and torch.allclose(mean0, x0)


def test_q_sample_shapes_and_per_sample_t():
    s = NoiseSchedule.linear(100)
    x0 = torch.randn(3, 1, 8, 8)
    noise = torch.randn(3, 1, 8, 8)
    t = torch.tensor([0, 50, 99])
    xt = s.q_sample(x0, t, noise)
    assert xt.shape == x0.shape and xt.dtype == torch.float32
    for i in range(3):
        assert torch.allclose(xt[i : i + 1], s.q_sample(x0[i : i + 1], int(t[i]), noise[i : i + 1]))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(q_sample(s, x0, t, generator=g1), q_sample(s, x0, t, generator=g2))


def test_from_config_and_errors():
    assert NoiseSchedule.from_config(DiffusionConfig()).name == "cosine"
    lin = NoiseSchedule.from_config(
        DiffusionConfig(timesteps=200, schedule="linear", beta_start=1e-3, beta_end=0.05)
    )
    assert (
        lin.T == 200
        and lin.betas[0].item() == pytest.approx(1e-3)
        and lin.betas[-1].item() == pytest.approx(0.05)
    )
    with pytest.raises(ValueError, match="T must be a positive integer"):
        NoiseSchedule.cosine(0)
    with pytest.raises(ValueError, match="beta_start"):
        NoiseSchedule.linear(10, 0.1, 0.01)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        NoiseSchedule(torch.tensor([0.1, 1.0]))
    with pytest.raises(
        ValueError, match="timestep out of range: expected an integer in \\[0, 200\\), got 200"
    ):
        lin.q_sample(torch.zeros(1, 1, 2, 2), 200, torch.zeros(1, 1, 2, 2))
    # a tensor of timesteps is not read back to be checked (a device sync per training step): on CPU
    # the indexing itself fails
    with pytest.raises(IndexError):
        lin.q_sample(torch.zeros(1, 1, 2, 2), torch.tensor([200]), torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="noise shape"):
        lin.q_sample(torch.zeros(1, 1, 2, 2), 3, torch.zeros(1, 1, 2, 3))


def test_to_device_copies_arrays():
    s = NoiseSchedule.cosine(10).to("cpu")
    assert s.T == 10 and s.alpha_bar.device.type == "cpu" and "cosine" in repr(s)
