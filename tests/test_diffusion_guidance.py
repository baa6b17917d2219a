"""Classifier-free guidance: the limits 0 and 1, the batched formula, label dropout."""

import pytest
import torch

from diffussm_lib.diffusion import (
    NoiseSchedule,
    cfg_combine,
    ddim_sample,
    drop_labels,
    guided_eps,
    guided_output,
)


class Toy(torch.nn.Module):
    """A label-dependent toy denoiser that counts its forward calls and batch sizes."""

    def __init__(self, out_channels=1):
        super().__init__()
        self.emb = torch.nn.Embedding(11, 1)
        torch.nn.init.normal_(self.emb.weight, generator=torch.Generator().manual_seed(0))
        self.out_channels, self.calls = out_channels, []

    def forward(self, x, t, y):
        self.calls.append(x.shape[0])
        lab = 0 if y is None else self.emb(y).view(-1, 1, 1, 1)
        out = torch.tanh(x * (1 + lab)) + 1e-3 * t.view(-1, 1, 1, 1)
        return out.repeat(1, self.out_channels, 1, 1)


def _inputs():
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(4, 1, 6, 6, generator=g),
        torch.tensor([5, 100, 7, 999]),
        torch.tensor([0, 3, 9, 10]),
    )


def test_w0_is_unconditional_and_w1_conditional():
    m = Toy()
    x, t, y = _inputs()
    cond, uncond = m(x, t, y), m(x, t, torch.full_like(y, 10))
    assert torch.equal(guided_output(m, x, t, y, 1.0, 10), cond)
    assert torch.equal(guided_output(m, x, t, y, 0.0, 10), uncond)
    # the general (batched) path gives the same limits, up to rounding
    assert torch.allclose(cfg_combine(cond, uncond, 1.0), cond, atol=1e-6)
    assert torch.allclose(cfg_combine(cond, uncond, 0.0), uncond, atol=0)
    assert torch.allclose(guided_output(m, x, t, y, 1.0 + 1e-12, 10), cond, atol=1e-6)
    assert torch.allclose(guided_output(m, x, t, y, 1e-12, 10), uncond, atol=1e-6)


def test_guided_formula_in_one_batched_forward():
    m = Toy()
    x, t, y = _inputs()
    cond, uncond = m(x, t, y), m(x, t, torch.full_like(y, 10))
    m.calls.clear()
    out = guided_output(m, x, t, y, 3.0, 10)
    assert m.calls == [8], "cond and uncond must share one forward pass of batch 2B"
    assert torch.allclose(out, uncond + 3.0 * (cond - uncond), atol=1e-6)


def test_learned_variance_channels_pass_through_unguided():
    m = Toy(out_channels=2)
    x, t, y = _inputs()
    cond = m(x, t, y)
    out = guided_output(m, x, t, y, 4.0, 10)
    assert out.shape == (4, 2, 6, 6) and torch.equal(out[:, 1:], cond[:, 1:])


def test_unconditional_model():
    m = Toy()
    x, t, _ = _inputs()
    assert torch.equal(guided_output(m, x, t, None, 1.0, 10), m(x, t, None))
    # guidance without labels is refused once, where a sampling run starts, not at each model call
    with pytest.raises(ValueError, match="guidance 2.0 needs class labels"):
        ddim_sample(m, NoiseSchedule.cosine(100), (4, 1, 6, 6), None, steps=2, guidance=2.0)
    assert guided_eps is guided_output, "the old name stays importable"


def test_drop_labels_rate_and_determinism():
    y = torch.arange(10).repeat(2000)
    a = drop_labels(y, 0.1, 10, torch.Generator().manual_seed(0))
    b = drop_labels(y, 0.1, 10, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.dtype == torch.long
    dropped = a == 10
    assert abs(dropped.float().mean().item() - 0.1) < 0.01
    assert torch.equal(a[~dropped], y[~dropped])
    assert torch.equal(drop_labels(y, 0.0, 10), y) and (drop_labels(y, 1.0, 10) == 10).all()
    with pytest.raises(ValueError, match="probability"):
        drop_labels(y, 1.5)
