"""DDPM and DDIM samplers: exactness with an oracle denoiser, determinism, trajectories, options."""

import pytest
import torch

from diffussm_lib.diffusion import (
    NoiseSchedule,
    SampleResult,
    clip_x0,
    ddim_sample,
    ddim_step,
    ddpm_sample,
    ddpm_step,
    dynamic_threshold,
    eps_from_x0,
    run_sampler,
    spaced_step_times,
    v_from_x0_eps,
)

SHAPE = (3, 1, 8, 8)


class KnowsX0(torch.nn.Module):
    """An oracle denoiser: it knows the clean images x0 and returns the eps (or v) that is exactly
    consistent with the x_t it is given."""

    def __init__(self, sched, x0, prediction="eps"):
        super().__init__()
        self.s, self.x0, self.prediction = sched, x0, prediction

    def forward(self, x, t, y):
        assert x.shape == self.x0.shape and t.shape == (x.shape[0],) and t.dtype == torch.long
        eps = eps_from_x0(self.s, x, t, self.x0)
        return eps if self.prediction == "eps" else v_from_x0_eps(self.s, self.x0, eps, t)


class Toy(torch.nn.Module):
    """A fixed, smooth, label-dependent stand-in for a trained denoiser."""

    def forward(self, x, t, y):
        lab = 0.0 if y is None else (y.float() / 10).view(-1, 1, 1, 1)
        return 0.5 * torch.tanh(x + lab) + 0.1 * torch.sin(t.float() / 100).view(-1, 1, 1, 1)


@pytest.fixture(scope="module")
def sched():
    return NoiseSchedule.cosine(1000)


@pytest.fixture(scope="module")
def x0():
    return torch.rand(SHAPE, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_10_steps_with_oracle_returns_x0(sched, x0, prediction, eta):
    out = ddim_sample(
        KnowsX0(sched, x0, prediction),
        sched,
        SHAPE,
        steps=10,
        eta=eta,
        prediction=prediction,
        generator=torch.Generator().manual_seed(1),
    )
    assert torch.allclose(out, x0, atol=1e-5)


def test_ddpm_with_oracle_returns_x0(sched, x0):
    out = ddpm_sample(KnowsX0(sched, x0), sched, SHAPE, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(out, x0, atol=1e-5)
    out = ddpm_sample(
        KnowsX0(sched, x0),
        sched,
        SHAPE,
        steps=25,
        variance="fixed_large",
        generator=torch.Generator().manual_seed(1),
    )
    assert torch.allclose(out, x0, atol=1e-5)


def test_spaced_step_times():
    assert spaced_step_times(1000, 10).tolist() == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    assert torch.equal(spaced_step_times(50, 50), torch.arange(49, -1, -1))
    assert spaced_step_times(1000, 1).tolist() == [999]
    for n in (2, 3, 7, 333, 999):
        ts = spaced_step_times(1000, n)
        assert len(ts) == n and ts[0] == 999 and ts[-1] == 0 and (ts[1:] < ts[:-1]).all()
    with pytest.raises(ValueError, match="sampling steps"):
        spaced_step_times(10, 11)


def test_deterministic_given_generator(sched):
    y = torch.tensor([1, 2, 10])
    for kw in (dict(eta=0.0), dict(eta=0.5)):
        a = ddim_sample(
            Toy(),
            sched,
            SHAPE,
            y,
            steps=20,
            guidance=2.0,
            generator=torch.Generator().manual_seed(7),
            **kw,
        )
        b = ddim_sample(
            Toy(),
            sched,
            SHAPE,
            y,
            steps=20,
            guidance=2.0,
            generator=torch.Generator().manual_seed(7),
            **kw,
        )
        c = ddim_sample(
            Toy(),
            sched,
            SHAPE,
            y,
            steps=20,
            guidance=2.0,
            generator=torch.Generator().manual_seed(8),
            **kw,
        )
        assert torch.equal(a, b) and not torch.allclose(a, c)
    a = ddpm_sample(Toy(), sched, SHAPE, y, steps=30, generator=torch.Generator().manual_seed(7))
    b = ddpm_sample(Toy(), sched, SHAPE, y, steps=30, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_ddim_eta1_is_ddpm_fixed_small(sched):
    """DDIM with eta = 1 is the DDPM ancestral sampler (posterior variance), step for step:
    same generator, same draws, same samples (here on a respaced 40-step chain and on all T steps)."""
    small = NoiseSchedule.linear(100, 1e-3, 0.1)
    for s, steps in ((sched, 40), (small, 100)):
        a = ddim_sample(
            Toy(), s, SHAPE, steps=steps, eta=1.0, generator=torch.Generator().manual_seed(3)
        )
        b = ddpm_sample(Toy(), s, SHAPE, steps=steps, generator=torch.Generator().manual_seed(3))
        assert torch.allclose(a, b, atol=1e-5)


def test_trajectory(sched, x0):
    res = ddim_sample(
        KnowsX0(sched, x0),
        sched,
        SHAPE,
        steps=10,
        return_trajectory=True,
        generator=torch.Generator().manual_seed(0),
    )
    assert isinstance(res, SampleResult)
    assert res.step_times.tolist() == spaced_step_times(1000, 10).tolist()
    assert res.xs.shape == res.x0_preds.shape == (10, *SHAPE) and res.images.shape == SHAPE
    # the oracle is always right (up to float32 rounding amplified by 1/sqrt(alpha_bar) ~ 2e4 at t = 999)
    assert torch.allclose(res.x0_preds[1:], x0.expand(9, *SHAPE), atol=1e-5)
    assert torch.allclose(res.x0_preds[0], x0, atol=1e-2)
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    assert torch.equal(res.xs[0], x_T), "xs[0] is the initial noise"
    # the same run without a trajectory gives the same images; a stride keeps the last step
    plain = ddim_sample(KnowsX0(sched, x0), sched, SHAPE, steps=10, x_T=x_T)
    assert torch.equal(plain, res.images)
    strided = ddpm_sample(
        Toy(),
        sched,
        SHAPE,
        torch.tensor([0, 1, 2]),
        steps=10,
        trajectory_stride=4,
        return_trajectory=True,
        generator=torch.Generator().manual_seed(0),
    )
    assert strided.step_times.tolist() == [999, 555, 111, 0] and strided.xs.shape[0] == 4
    assert strided.y.tolist() == [0, 1, 2]


def test_guidance_in_sampler(sched):
    """w = 1 needs one conditional pass per step; other w a single batched pass of 2B."""
    calls = []

    def model(x, t, y):
        calls.append((x.shape[0], None if y is None else y.tolist()))
        return Toy()(x, t, y)

    y = torch.tensor([4, 5, 6])
    ddim_sample(model, sched, SHAPE, y, steps=3, guidance=1.0, generator=torch.Generator())
    assert calls == [(3, [4, 5, 6])] * 3
    calls.clear()
    ddim_sample(
        model, sched, SHAPE, y, steps=3, guidance=4.0, null_class=10, generator=torch.Generator()
    )
    assert calls == [(6, [4, 5, 6, 10, 10, 10])] * 3


def test_learned_variance_output_uses_first_channels(sched, x0):
    def two_c(x, t, y):
        eps = eps_from_x0(sched, x, t, x0)
        return torch.cat([eps, torch.full_like(eps, 0.3)], 1)

    out = ddim_sample(two_c, sched, SHAPE, steps=5)
    assert torch.allclose(out, x0, atol=1e-5)
    out = ddpm_sample(
        two_c, sched, SHAPE, steps=5, variance="learned_range", generator=torch.Generator()
    )
    assert torch.allclose(out, x0, atol=1e-5)


def test_clipping_and_dynamic_thresholding():
    x = torch.tensor([[-3.0, -0.5, 0.2, 2.0]]).view(1, 1, 2, 2)
    assert clip_x0(x).flatten().tolist() == [-1.0, -0.5, pytest.approx(0.2), 1.0]
    # percentile 1.0: s = max |x| = 3: everything scaled by 1/3, nothing clipped
    assert torch.allclose(dynamic_threshold(x, 1.0), x / 3)
    # inside [-1, 1] already: s is floored at 1, nothing changes
    small = torch.rand(2, 1, 4, 4) * 2 - 1
    assert torch.equal(dynamic_threshold(small, 0.995), small)
    # per image: each image gets its own s
    two = torch.stack([x[0], x[0] / 3])
    out = dynamic_threshold(two, 1.0)
    assert torch.allclose(out[0], x[0] / 3) and torch.allclose(out[1], x[0] / 3)
    q = torch.quantile(x.abs().flatten(), 0.5).item()  # 1.25
    assert torch.allclose(dynamic_threshold(x, 0.5), x.clamp(-q, q) / q)


def test_clipped_samplers_stay_in_range(sched):
    wild = lambda x, t, y: 5 * torch.ones_like(x)  # noqa: E731  (predicts a far-out x0)
    for kw in (dict(clip_x0=True), dict(dynamic_threshold=0.9)):
        res = ddim_sample(
            wild, sched, SHAPE, steps=8, return_trajectory=True, generator=torch.Generator(), **kw
        )
        assert res.x0_preds.abs().max() <= 1 + 1e-6 and res.images.abs().max() <= 1 + 1e-5
    out = ddpm_sample(wild, sched, SHAPE, steps=8, clip_x0=True, generator=torch.Generator())
    assert out.abs().max() <= 1 + 1e-5


def test_steps_and_errors(sched, x0):
    m = KnowsX0(
        sched, x0.double()
    )  # one jump from t = 999: float64 (float32 would lose ~1e-3 there)
    x_T = torch.randn(SHAPE, dtype=torch.float64)
    assert torch.allclose(ddim_sample(m, sched, None, steps=1, x_T=x_T), x0.double(), atol=1e-9)
    m = KnowsX0(sched, x0)
    assert torch.allclose(ddim_sample(m, sched, SHAPE, step_times=[900, 400, 3]), x0, atol=1e-5)
    old_keyword = ddim_sample(m, sched, SHAPE, timesteps=[900, 400, 3], x_T=x_T.float())
    new_keyword = ddim_sample(m, sched, SHAPE, step_times=[900, 400, 3], x_T=x_T.float())
    assert torch.equal(new_keyword, old_keyword)
    with pytest.raises(ValueError, match="strictly decreasing"):
        ddim_sample(m, sched, SHAPE, step_times=[3, 400])
    with pytest.raises(ValueError, match="either clip_x0=True or dynamic_threshold"):
        ddim_sample(m, sched, SHAPE, clip_x0=True, dynamic_threshold=0.99)
    with pytest.raises(ValueError, match="variance must be one of"):
        ddpm_sample(m, sched, SHAPE, variance="learned")
    with pytest.raises(ValueError, match="labels y must have shape"):
        ddim_sample(Toy(), sched, SHAPE, torch.tensor([1, 2]), steps=2)
    with pytest.raises(ValueError, match="guidance 3.0 needs class labels"):
        ddim_sample(Toy(), sched, SHAPE, None, steps=2, guidance=3.0)
    with pytest.raises(ValueError, match="guidance must be >= 0.*got -0.5"):
        ddpm_sample(Toy(), sched, SHAPE, torch.tensor([1, 2, 3]), steps=2, guidance=-0.5)
    with pytest.raises(ValueError, match="prediction must be one of .*got 'x0'"):
        ddim_sample(Toy(), sched, SHAPE, prediction="x0")
    with pytest.raises(ValueError, match="eta must be >= 0"):
        ddim_sample(Toy(), sched, SHAPE, eta=-1.0)
    with pytest.raises(
        ValueError, match="sampling steps must be an integer in \\[1, T=1000\\], got 0"
    ):
        ddpm_sample(Toy(), sched, SHAPE, steps=0)
    # the step times are checked at the entry, once (a step checks nothing)
    with pytest.raises(ValueError, match="strictly decreasing integers in \\[0, 1000\\)"):
        ddim_sample(m, sched, SHAPE, step_times=[5, 5])
    with pytest.raises(
        ValueError, match="strictly decreasing integers in \\[0, 1000\\), got \\[1000, 3\\]"
    ):
        ddpm_sample(m, sched, SHAPE, step_times=[1000, 3])
    with pytest.raises(ValueError, match="trajectory_stride must be >= 1"):
        ddim_sample(m, sched, SHAPE, return_trajectory=True, trajectory_stride=0)
    with pytest.raises(ValueError, match="dynamic threshold percentile must be in \\(0, 1\\]"):
        ddim_sample(m, sched, SHAPE, dynamic_threshold=1.5)
    with pytest.raises(TypeError, match="both guidance= and its old name guidance_scale="):
        ddim_sample(m, sched, SHAPE, guidance=1.0, guidance_scale=1.0)
    with pytest.raises(ValueError, match="learned_range' needs"):
        ddpm_step(sched, torch.zeros(SHAPE), 5, torch.zeros(SHAPE), variance="learned_range")
    with pytest.raises(ValueError, match="shape must be"):
        ddim_sample(m, sched, (3, 8, 8))


def test_steps_read_no_schedule_tensor():
    """A step's coefficients are python floats from the schedule's host copy: with the schedule's
    tensors on the "meta" device (shapes without values: any read fails) every sampler still runs
    and gives the same samples. On a GPU this means no host-device sync per step."""
    cpu = NoiseSchedule.cosine(1000)
    meta = cpu.to("meta")
    assert meta.alpha_bar.device.type == "meta"
    x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([1, 2, 3])
    options = {"ddim": dict(eta=0.5), "ddpm": dict(variance="fixed_large"), "dpm_solver++": {}}
    for sampler, kw in options.items():
        runs = [
            run_sampler(
                sampler,
                Toy(),
                s,
                None,
                y,
                x_T=x_T,
                steps=6,
                guidance=2.0,
                clip_x0=True,
                prediction="v",
                generator=torch.Generator().manual_seed(1),
                **kw,
            )
            for s in (meta, cpu)
        ]
        assert torch.equal(*runs), sampler


def test_explicit_noise_argument(sched):
    x, out, z = torch.randn(SHAPE), torch.randn(SHAPE), torch.randn(SHAPE)
    a = ddpm_step(sched, out, 500, x, noise=z).x_prev
    g = torch.Generator().manual_seed(0)
    z2 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(
        ddpm_step(sched, out, 500, x, noise=z2).x_prev,
        ddpm_step(sched, out, 500, x, generator=g).x_prev,
    )
    b = ddim_step(sched, out, 500, x, eta=1.0, noise=z).x_prev
    assert torch.allclose(a, b, atol=1e-6), "one DDIM eta=1 step is one DDPM fixed_small step"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_sampling_deterministic_and_matches_cpu_schedule(
    sched,
):  # pragma: no cover - needs a GPU
    dev = torch.device("cuda")
    x0 = torch.rand(SHAPE, device=dev) * 2 - 1
    s = sched.to(dev)
    runs = [
        ddim_sample(
            KnowsX0(s, x0),
            s,
            SHAPE,
            steps=10,
            eta=1.0,
            generator=torch.Generator(dev).manual_seed(0),
        )
        for _ in range(2)
    ]
    assert runs[0].device.type == "cuda" and torch.equal(runs[0], runs[1])
    assert torch.allclose(runs[0], x0, atol=1e-4)
    with pytest.raises(ValueError, match="generator lives on"):
        ddim_sample(
            Toy(), sched, SHAPE, x_T=torch.zeros(SHAPE, device=dev), generator=torch.Generator()
        )
