"""What the paper, the S4D reference and DiT say, and what the docstrings promise (issue 14, items 1-5, 7)."""

import ast
import math
import re
import types
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import diffussm_lib
from diffussm_lib import build_model
from diffussm_lib.config import ModelConfig
from diffussm_lib.diffusion import (
    NoiseSchedule,
    ddim_sample,
    ddpm_sample,
    diffusion_loss,
    learned_log_variance,
    normal_kl,
    vlb_terms,
)
from diffussm_lib.ssm import S4D, BidirectionalSSM, backend
from diffussm_lib.ssm.s4d import s4d_init_A
from diffussm_lib.training import DistInfo, Trainer
from diffussm_lib.training import distributed as D

from _train_helpers import synthetic_dataset, tiny_config

PKG = Path(diffussm_lib.__file__).resolve().parent


# ------------------------------------------------------------------ 1. collectives on the training device
@pytest.mark.parametrize(
    "helper, value", [(D.all_mean, 2.5), (D.all_max, 1.0), (D.broadcast_flag, True)]
)
def test_collectives_build_their_tensor_on_the_given_device(monkeypatch, helper, value):
    """Under NCCL a CPU tensor handed to a collective raises ("No backend type associated with device
    type cpu"); here the stand-in device is ``meta`` and the collectives only record what they get."""
    seen = []
    monkeypatch.setattr(dist, "all_reduce", lambda t, op=None: seen.append(t.device))
    monkeypatch.setattr(dist, "broadcast", lambda t, src=0: seen.append(t.device))
    with pytest.raises(RuntimeError, match="meta"):  # .item() on meta: the tensor never had a value
        helper(value, DistInfo(rank=0, world_size=2), torch.device("meta"))
    assert seen == [torch.device("meta")]


def test_trainer_hands_every_collective_a_tensor_on_its_device(tmp_path, monkeypatch):
    """The loop under a stand-in process group of 2: every tensor given to all_reduce / broadcast is on
    the trainer's device (the old code built the logged loss mean as a CPU tensor)."""
    cfg = tiny_config(max_steps=4)
    cfg = replace(cfg, train=replace(cfg.train, log_every=2, checkpoint_every=0, sample_every=0))
    tr = Trainer(cfg, None, dataset=synthetic_dataset(cfg), progress=False, log=lambda m: None)
    tr.dist = DistInfo(rank=0, world_size=2)
    seen = []

    def record(t, *args, **kw):
        seen.append(t.device)

    monkeypatch.setattr(dist, "all_reduce", record)
    monkeypatch.setattr(dist, "broadcast", record)
    tr.train(max_seconds=3600.0)
    assert seen and set(seen) == {tr.device}, seen
    # and the trainer calls no collective except through the helpers that take its device
    src = (PKG / "training" / "trainer.py").read_text()
    calls = {
        n.func.attr
        for n in ast.walk(ast.parse(src))
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and isinstance(n.func.value, ast.Attribute)
        and n.func.value.attr == "distributed"
    }
    assert calls <= {"barrier"}, calls


# ------------------------------------------------------------------ 2. S4D-Inv as published
def test_s4d_inv_is_the_published_formula():
    N = 64
    _, imag = s4d_init_A(3, N, "inv")
    want = torch.tensor([(N / math.pi) * (N / (2 * n + 1) - 1) for n in range(N // 2)])
    torch.testing.assert_close(imag[0].double(), want.double(), rtol=1e-6, atol=1e-4)
    assert abs(float(imag[0, 0]) - 1283.4) < 0.1 and abs(float(imag[0, 31]) - 0.32) < 0.01
    assert (imag > 0).all(), "every imaginary part is positive"


def test_the_model_config_chooses_the_s4d_init():
    base = ModelConfig(arch="diffussm", hidden_dim=8, depth=1, image_size=8, ssm_state=8)
    inits = {
        init: build_model(replace(base, ssm_init=init)).blocks[0].hourglass.ssm.s4d
        for init in ("lin", "inv")
    }
    assert inits["lin"].init == "lin" and inits["inv"].init == "inv"
    assert not torch.equal(inits["lin"].A_imag, inits["inv"].A_imag)
    with pytest.raises(ValueError, match="S4D initialisation"):
        build_model(replace(base, ssm_core="selective", ssm_init="inv"))


# ------------------------------------------------------------------ 3. a learned variance that is learned
def test_vlb_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(5, generator=g), torch.randn(5, generator=g)
    lv1, lv2 = torch.randn(5, generator=g), torch.randn(5, generator=g)
    ref = torch.distributions.kl_divergence(
        torch.distributions.Normal(m1, (0.5 * lv1).exp()),
        torch.distributions.Normal(m2, (0.5 * lv2).exp()),
    )
    torch.testing.assert_close(normal_kl(m1, lv1, m2, lv2), ref)


def test_vlb_term_is_the_kl_of_the_posteriors_in_bits():
    """L_t for t >= 1 against an independent computation: the true posterior q(x_{t-1} | x_t, x0) and
    the model's Gaussian, built from the schedule's betas by hand, KL by torch.distributions."""
    s = NoiseSchedule.linear(50)
    g = torch.Generator().manual_seed(1)
    x0, x_t = torch.rand(2, 1, 3, 3, generator=g) * 2 - 1, torch.randn(2, 1, 3, 3, generator=g)
    x0_pred, v = (
        torch.rand(2, 1, 3, 3, generator=g) * 2 - 1,
        torch.rand(2, 1, 3, 3, generator=g) * 2 - 1,
    )
    t = torch.tensor([7, 30])
    got = vlb_terms(s, x0, x_t, t, x0_pred, v)
    betas = s.betas.double()
    ab = torch.cumprod(1 - betas, 0)
    for i, ti in enumerate(t.tolist()):
        ab_t, ab_p, b = ab[ti], ab[ti - 1], betas[ti]
        c0, ct = b * ab_p.sqrt() / (1 - ab_t), (1 - ab_p) * (1 - b).sqrt() / (1 - ab_t)
        var_q = b * (1 - ab_p) / (1 - ab_t)
        f = (v[i].double() + 1) / 2
        logvar_p = f * b.log() + (1 - f) * var_q.log()
        q = torch.distributions.Normal(c0 * x0[i].double() + ct * x_t[i].double(), var_q.sqrt())
        p = torch.distributions.Normal(
            c0 * x0_pred[i].double() + ct * x_t[i].double(), (0.5 * logvar_p).exp()
        )
        want = torch.distributions.kl_divergence(q, p).mean() / math.log(2)
        assert abs(float(got[i]) - float(want)) < 1e-4 * max(1.0, float(want))
    assert float(vlb_terms(s, x0, x_t, t, x0, torch.full_like(v, -1.0)).abs().max()) < 1e-5, (
        "the exact mean with the posterior variance has L_t = 0"
    )


def test_variance_channels_are_trained(tmp_path):
    cfg = tiny_config(max_steps=5)
    cfg = replace(
        cfg,
        model=replace(cfg.model, learn_sigma=True),
        train=replace(cfg.train, checkpoint_every=0, sample_every=0, warmup_steps=1),
    )
    tr = Trainer(cfg, None, dataset=synthetic_dataset(cfg), progress=False, log=lambda m: None)
    m, C = tr.bare_model, cfg.model.in_channels

    def var_rows():  # head rows: (offset k, channel, pixel in patch); channels C.. are the variance
        w = m.final.linear.weight.detach()
        w = w.reshape(m.hourglass_ratio, 2 * C, m.patch_size**2, -1)
        return w[:, C:].clone()

    before = var_rows()
    assert float(before.abs().max()) == 0.0
    tr.train()
    assert float((var_rows() - before).abs().max()) > 0, "the variance channels never moved"


def test_hybrid_loss_adds_the_bound_only_for_a_learned_variance():
    s = NoiseSchedule.cosine(100)
    x0 = torch.rand(3, 1, 8, 8) * 2 - 1
    mc = ModelConfig(
        arch="diffussm", hidden_dim=8, depth=1, image_size=8, ssm_state=8, learn_sigma=True
    )
    model = build_model(mc)
    kw = dict(t=torch.tensor([0, 40, 99]), noise=torch.randn(3, 1, 8, 8), prediction="v")
    simple = diffusion_loss(model, s, x0, None, vlb_weight=0.0, **kw)
    hybrid = diffusion_loss(model, s, x0, None, **kw)
    assert float(hybrid.detach()) > float(simple.detach())
    model.zero_grad()
    (hybrid - simple).backward()
    # the bound trains only the variance: no gradient reaches the prediction rows of the head
    C = 1
    g = model.final.linear.weight.grad
    g = g.reshape(model.hourglass_ratio, 2 * C, model.patch_size**2, -1)
    assert float(g[:, :C].abs().max()) == 0.0 and float(g[:, C:].abs().max()) > 0


@pytest.mark.parametrize("sampler", [ddpm_sample, ddim_sample])
def test_sampling_with_a_learned_variance(sampler):
    s = NoiseSchedule.cosine(20)
    model = build_model(
        ModelConfig(
            arch="diffussm", hidden_dim=8, depth=1, image_size=8, ssm_state=8, learn_sigma=True
        )
    ).eval()
    with torch.no_grad():
        model.final.linear.weight.normal_(0, 0.1)
    kw = dict(variance="learned_range") if sampler is ddpm_sample else {}
    out = sampler(
        model, s, (2, 1, 8, 8), None, steps=5, generator=torch.Generator().manual_seed(0), **kw
    )
    assert out.shape == (2, 1, 8, 8) and torch.isfinite(out).all()
    logvar = learned_log_variance(s, torch.zeros(1, 1, 2, 2), torch.tensor([5]))
    assert torch.isfinite(logvar).all()


# ------------------------------------------------------------------ 4. every dtype the docstrings promise
@pytest.mark.parametrize("core", ["s4d", "selective"])
def test_cores_run_with_bfloat16_parameters(core):
    torch.manual_seed(0)
    layer = BidirectionalSSM(8, core=core, ssm_state=8)
    x = torch.randn(2, 12, 8)
    with torch.no_grad():
        ref = layer(x)
        out = layer.to(torch.bfloat16)(x.bfloat16())
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    assert float((out.float() - ref).abs().max()) < 0.1 * float(ref.abs().max()) + 0.05


def test_s4d_with_half_parameters_returns_the_input_dtype():
    layer = S4D(4, 8).half()
    out = layer(torch.randn(1, 4, 10).half())
    assert out.dtype == torch.float16 and torch.isfinite(out.float()).all()


# ------------------------------------------------------------------ 5. no silent fallback
def test_auto_warns_once_when_installed_kernels_do_not_import(monkeypatch):
    monkeypatch.setattr(backend, "_cache", {})
    monkeypatch.setattr(backend, "_import_errors", {})
    monkeypatch.setattr(backend, "_warned", set())
    real_find = backend.importlib.util.find_spec
    monkeypatch.setattr(
        backend.importlib.util,
        "find_spec",
        lambda name, *a: object() if name == "mamba_ssm" else real_find(name, *a),
    )

    def broken(name, *a, **k):
        raise ImportError("libcudart.so.12: cannot open shared object file")

    monkeypatch.setattr(backend.importlib, "import_module", broken)
    cuda_like = types.SimpleNamespace(is_cuda=True, dtype=torch.float32, device="cuda:0")
    with pytest.warns(backend.KernelFallbackWarning, match="libcudart"):
        assert backend.resolve_backend("auto", "selective_scan", cuda_like) == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert backend.resolve_backend("auto", "selective_scan", cuda_like) == "torch"  # once only
    assert "libcudart" in backend.kernel_import_errors()["selective_scan"]
    # the environment report names it on a CUDA machine
    import diffussm_lib.env as env

    monkeypatch.setattr(env.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(env.torch.cuda, "get_device_name", lambda *a: "stand-in GPU")
    monkeypatch.setattr(env.importlib.util, "find_spec", lambda name, *a: object())
    report = env.environment_report()
    assert "installed but not importable" in report and "libcudart" in report


# ------------------------------------------------------------------ 7. docstrings say what the code does
def test_no_docstring_says_dit_used_a_warm_up():
    bad = []
    for p in PKG.rglob("*.py"):
        text = re.sub(r"\s+", " ", p.read_text())
        if re.search(r"warm-?up[^.]{0,40}\bas (in )?DiT\b", text, re.I):
            bad.append(str(p.relative_to(PKG)))
    assert not bad, bad
