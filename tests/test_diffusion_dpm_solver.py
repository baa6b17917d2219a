"""DPM-Solver++(2M): first order = DDIM, the update written out from the paper's equations (float64),
exactness with an oracle denoiser, the orders of convergence against the exact ODE solution for
Gaussian data, the sampler registry, and bad input. Equation numbers as in dpm_solver.py (notebook
06's); diffusers' scheduler is the oracle in test_diffusion_oracle_diffusers.py."""

import math

import pytest
import torch

from diffussm_lib.diffusion import (
    SAMPLERS,
    NoiseSchedule,
    check_sampler,
    ddim_sample,
    ddim_step,
    default_steps,
    dpm_solver_sample,
    dpm_solver_step,
    dpm_solver_step_times,
    eps_from_x0,
    run_sampler,
    spaced_step_times,
    steps_label,
    v_from_x0_eps,
)
from diffussm_lib.sampling import compute_frames, generate, parse_labels, viewer_labels

SHAPE = (3, 1, 8, 8)
SCHEDULES = {"cosine": NoiseSchedule.cosine(1000), "linear": NoiseSchedule.linear(1000)}


class Toy(torch.nn.Module):
    """A fixed, smooth, label-dependent stand-in for a trained denoiser (eps or v output)."""

    def __init__(self, num_classes=None):
        super().__init__()
        if num_classes is not None:
            self.num_classes = num_classes

    def forward(self, x, t, y):
        lab = 0.0 if y is None else (y.to(x.dtype) / 10).view(-1, 1, 1, 1)
        return 0.5 * torch.tanh(x + lab) + 0.1 * torch.sin(t.to(x.dtype) / 100).view(-1, 1, 1, 1)


def gaussian_data_model(s, mu, sd):
    """The exact eps-denoiser for data x_0 ~ N(mu, sd^2) per pixel: x0_hat = E[x_0 | x_t] is linear in x_t."""

    def model(x, t, y):
        ab = s.alpha_bar[t].view(-1, 1, 1, 1)
        x0 = mu + ab.sqrt() * sd**2 / (ab * sd**2 + 1 - ab) * (x - ab.sqrt() * mu)
        return eps_from_x0(s, x, t, x0)

    return model


def close(a, b, tol):
    """|a - b| <= tol (1 + |b|) everywhere (torch.testing.assert_close costs seconds on its first call)."""
    excess = ((a - b).abs() / (1 + b.abs())).max().item()
    assert excess <= tol, f"max |a - b| / (1 + |b|) = {excess:.3g} > {tol:g}"


def rand(seed, shape=SHAPE):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------ the update
@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("x0_mode", [None, "clip", "dynamic"])
def test_first_order_step_is_the_ddim_step(name, prediction, x0_mode):
    """Eq. (3) = DDIM with eta = 0 (eps recomputed from the clipped x0, the library's default), also
    for order 2 when there is no history or the step lands on the clean image."""
    s = SCHEDULES[name]
    kw = dict(
        prediction=prediction,
        clip_x0=x0_mode == "clip",
        dynamic_threshold=0.9 if x0_mode == "dynamic" else None,
    )
    for i, (t, t_prev) in enumerate(((999, 888), (500, 250), (40, 0), (5, -1), (0, -1))):
        out, x = 3 * rand(i), rand(100 + i)
        ddim = ddim_step(s, out, t, x, t_prev=t_prev, eta=0.0, **kw)
        for order, last in ((1, (t + 7, rand(7))), (2, None)):
            mine = dpm_solver_step(s, out, t, x, t_prev=t_prev, order=order, last=last, **kw)
            close(mine.x_prev, ddim.x_prev, 1e-12)
            assert torch.equal(mine.x0_pred, ddim.x0_pred)
        if t_prev == -1:  # the last step is first order even with a history: it returns x_theta
            last_step = dpm_solver_step(s, out, t, x, t_prev=-1, last=(t + 7, rand(7)), **kw)
            assert torch.equal(last_step.x_prev, ddim.x0_pred)


@pytest.mark.parametrize("name", SCHEDULES)
def test_second_order_step_from_the_papers_equations(name):
    """Eq. (4) in float64, written with the schedule's alpha_bar only: sigma_s / sigma_t =
    sqrt((1 - ab_s) / (1 - ab_t)), e^{-h} = sqrt(ab_t (1 - ab_s) / (ab_s (1 - ab_t))), r = h_last / h."""
    s = SCHEDULES[name]
    ab = s.alpha_bar.tolist()
    lam = lambda t: 0.5 * math.log(ab[t] / (1 - ab[t]))  # noqa: E731
    for i, (t_last, t, t_prev) in enumerate(((999, 899, 799), (600, 500, 100), (120, 80, 3))):
        out, x, x0_last = rand(i), rand(10 + i), rand(20 + i)
        h, h_last = lam(t_prev) - lam(t), lam(t) - lam(t_last)
        x0 = (x - math.sqrt(1 - ab[t]) * out) / math.sqrt(ab[t])
        D = (1 + h / (2 * h_last)) * x0 - h / (2 * h_last) * x0_last
        e_minus_h = math.sqrt(ab[t] * (1 - ab[t_prev]) / (ab[t_prev] * (1 - ab[t])))
        by_hand = (
            math.sqrt((1 - ab[t_prev]) / (1 - ab[t])) * x
            + math.sqrt(ab[t_prev]) * (1 - e_minus_h) * D
        )
        mine = dpm_solver_step(s, out, t, x, t_prev=t_prev, last=(t_last, x0_last))
        close(mine.x_prev, by_hand, 1e-12)
        first = dpm_solver_step(s, out, t, x, t_prev=t_prev, order=1)
        assert (mine.x_prev - first.x_prev).abs().max() > 1e-3, (
            "the correction must change the step"
        )
        same = dpm_solver_step(
            s, out, t, x, t_prev=t_prev, last=(t_last, x0)
        )  # constant x_theta: D = x0
        close(same.x_prev, first.x_prev, 1e-12)


def test_first_order_sampler_is_ddim_on_any_grid():
    s, y = SCHEDULES["cosine"], torch.tensor([1, 4, 10])
    x_T = rand(0)
    for grid in (spaced_step_times(1000, 9), dpm_solver_step_times(1000, 9)):
        kw = dict(x_T=x_T, step_times=grid, guidance=2.5, clip_x0=True, prediction="v")
        close(
            dpm_solver_sample(Toy(), s, None, y, order=1, **kw),
            ddim_sample(Toy(), s, None, y, **kw),
            1e-12,
        )


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_oracle_denoiser_lands_on_x0(prediction):
    """A model that knows x_0 has a constant x_theta: every step is exact, whatever the step sizes."""
    s = SCHEDULES["cosine"]
    x0 = torch.rand(SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1

    def oracle(x, t, y):
        eps = eps_from_x0(s, x, t, x0)
        return eps if prediction == "eps" else v_from_x0_eps(s, x0, eps, t)

    for steps in (1, 3, 10):
        out = dpm_solver_sample(
            oracle, s, None, x_T=rand(steps), steps=steps, prediction=prediction
        )
        close(out, x0, 1e-9)


@pytest.mark.parametrize("name", SCHEDULES)
def test_orders_of_convergence_on_gaussian_data(name):
    """For x_0 ~ N(mu, sd^2) the probability-flow ODE moves each x along x_t = alpha_t mu +
    sqrt(alpha_t^2 sd^2 + sigma_t^2) z, z fixed by x_T. On DDIM's grid, which ends at t = 0 for every
    number of steps, the exact answer is that x_0 denoised by the last step (x_theta at t = 0).
    Doubling the steps halves the error of order 1 (DDIM) and quarters that of DPM-Solver++(2M)."""
    s, mu, sd = SCHEDULES[name], 0.3, 0.5
    x_T = rand(0, (16, 1, 4, 4))
    ab_T, ab_0 = float(s.alpha_bar[-1]), float(s.alpha_bar[0])
    z = (x_T - math.sqrt(ab_T) * mu) / math.sqrt(ab_T * sd**2 + 1 - ab_T)
    x_at_0 = math.sqrt(ab_0) * mu + math.sqrt(ab_0 * sd**2 + 1 - ab_0) * z
    exact = mu + math.sqrt(ab_0) * sd**2 / (ab_0 * sd**2 + 1 - ab_0) * (
        x_at_0 - math.sqrt(ab_0) * mu
    )
    model = gaussian_data_model(s, mu, sd)

    def error(n, order):
        grid = spaced_step_times(1000, n)
        out = dpm_solver_sample(model, s, None, x_T=x_T, step_times=grid, order=order)
        return (out - exact).abs().max().item()

    errors = {order: [error(n, order) for n in (40, 80, 160)] for order in (1, 2)}
    rates = {order: [math.log2(e[i] / e[i + 1]) for i in range(2)] for order, e in errors.items()}
    assert all(0.9 < r < 1.1 for r in rates[1]), rates
    assert all(1.8 < r < 2.2 for r in rates[2]), rates
    assert errors[2][-1] < errors[1][-1] / 2, errors


def test_grid():
    assert dpm_solver_step_times(1000, 10).tolist() == [
        999,
        899,
        799,
        699,
        599,
        500,
        400,
        300,
        200,
        100,
    ]
    assert dpm_solver_step_times(1000, 1).tolist() == [999]
    for T, n in ((1000, 999), (1000, 333), (100, 99), (2, 1)):
        ts = dpm_solver_step_times(T, n)
        assert len(ts) == n and ts[0] == T - 1 and ts[-1] >= 1 and (ts[1:] < ts[:-1]).all()


# ------------------------------------------------------------------ the sampler loop
def test_trajectory_guidance_and_determinism():
    s, y = SCHEDULES["cosine"], torch.tensor([4, 5, 6])
    calls = []

    def model(x, t, yy):
        calls.append(yy.tolist())
        return Toy()(x, t, yy)

    res = dpm_solver_sample(
        model,
        s,
        SHAPE,
        y,
        steps=6,
        guidance=3.0,
        null_class=10,
        return_trajectory=True,
        generator=torch.Generator().manual_seed(5),
    )
    assert calls == [[4, 5, 6, 10, 10, 10]] * 6, "one batched pass of 2B per step"
    assert res.step_times.tolist() == dpm_solver_step_times(1000, 6).tolist()
    assert res.xs.shape == res.x0_preds.shape == (6, *SHAPE) and res.y.tolist() == [4, 5, 6]
    assert torch.equal(res.xs[0], torch.randn(SHAPE, generator=torch.Generator().manual_seed(5)))
    again = dpm_solver_sample(
        Toy(), s, SHAPE, y, steps=6, guidance=3.0, generator=torch.Generator().manual_seed(5)
    )
    assert torch.equal(again, res.images)


def test_registry_generate_and_viewer_frames():
    s, y = NoiseSchedule.cosine(100), torch.tensor([0, 3, 7, 9, 2, 5])
    assert "dpm_solver++" in SAMPLERS and check_sampler("dpm_solver++") == "dpm_solver++"
    assert default_steps("dpm_solver++", 100) == 15 and steps_label("dpm_solver++", None) == "15"
    assert default_steps("ddim", 100) == 50, "the defaults are unchanged"
    x_T = rand(3, (6, 1, 8, 8)).float()
    direct = dpm_solver_sample(Toy(), s, None, y, x_T=x_T, steps=15, guidance=2.0, clip_x0=True)
    via = run_sampler("dpm_solver++", Toy(), s, None, y, x_T=x_T, guidance=2.0, clip_x0=True)
    assert torch.equal(direct, via)
    with pytest.raises(
        ValueError,
        match="eta=0.5 is a DDIM option; the dpm_solver\\+\\+ sampler is a deterministic",
    ):
        run_sampler("dpm_solver++", Toy(), s, None, y, eta=0.5, x_T=x_T)
    kw = dict(
        image_size=8,
        channels=1,
        sampler="dpm_solver++",
        steps=5,
        guidance=2.0,
        seed=1,
        device="cpu",
    )
    a = generate(Toy(10), s, 6, y, batch_size=6, **kw)
    b = generate(Toy(10), s, 6, y, batch_size=4, **kw)
    close(a, b, 1e-6)  # deterministic: any batch size, same images
    frames = compute_frames(
        Toy(10), s, y, x_T=x_T, sampler="dpm_solver++", steps=5, guidance=2.0, image_size=8
    )
    assert frames.timesteps.tolist() == [*dpm_solver_step_times(100, 5).tolist(), -1]
    assert frames.sampler == "dpm_solver++"
    direct = dpm_solver_sample(Toy(), s, None, y, x_T=x_T, steps=5, guidance=2.0, clip_x0=True)
    assert torch.equal(frames.final, direct)


# ------------------------------------------------------------------ bad input: one clear line each
def test_bad_input():
    s, y = SCHEDULES["cosine"], torch.tensor([1, 2, 3])
    with pytest.raises(
        ValueError, match="sampler must be one of .*'dpm_solver\\+\\+'.*got 'euler'"
    ):
        check_sampler("euler")
    for steps in (0, 1000, 2.5):
        with pytest.raises(
            ValueError,
            match=f"DPM-Solver\\+\\+ steps must be an integer in \\[1, T-1 = 999\\].*{steps}",
        ):
            dpm_solver_sample(Toy(), s, SHAPE, y, steps=steps)
    with pytest.raises(ValueError, match="order must be one of \\(1, 2\\), got 3"):
        dpm_solver_sample(Toy(), s, SHAPE, y, order=3)
    with pytest.raises(ValueError, match="either clip_x0=True or dynamic_threshold"):
        dpm_solver_sample(Toy(), s, SHAPE, y, clip_x0=True, dynamic_threshold=0.99)
    kw = dict(image_size=8, channels=1, sampler="dpm_solver++", steps=3, batch_size=3)
    with pytest.raises(ValueError, match="guidance must be >= 0.*got -1"):
        generate(Toy(10), s, 3, y, guidance=-1.0, **kw)
    with pytest.raises(
        ValueError, match="class 12 is outside \\[0, 9\\] \\(the model has 10 classes\\)"
    ):
        generate(Toy(10), s, 3, torch.tensor([1, 12, 3]), **kw)
    with pytest.raises(ValueError, match="class -1 is outside"):
        generate(Toy(10), s, 3, torch.tensor([1, -1, 3]), **kw)
    no_classes = "this model has no class conditioning \\(model.num_classes = 0\\)"
    with pytest.raises(ValueError, match=no_classes):
        generate(Toy(0), s, 3, y, **kw)
    for spec in ("all", "3", [3]):
        with pytest.raises(ValueError, match=no_classes):
            parse_labels(spec, 10, 0)
    with pytest.raises(ValueError, match="class selector needs a class-conditional model"):
        viewer_labels(-1, 4, num_classes=0)
