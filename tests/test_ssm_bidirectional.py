"""The bidirectional layer: shapes for any L, a true reversed direction with its own parameters,
concatenation order, and who sees whom (gradients)."""

import pytest
import torch

from diffussm_lib.ssm import BidirectionalSSM

CORES = ["s4d", "selective"]


@pytest.mark.parametrize("L", [1, 7, 196, 200])
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("core", CORES)
def test_shapes_any_length(core, bidirectional, L):
    torch.manual_seed(0)
    layer = BidirectionalSSM(6, core=core, bidirectional=bidirectional)
    assert layer.out_dim == (12 if bidirectional else 6)
    y = layer(torch.randn(3, L, 6))
    assert y.shape == (3, L, layer.out_dim) and torch.isfinite(y).all()


@pytest.mark.parametrize("core", CORES)
def test_default_state_sizes_and_kwargs(core):
    layer = BidirectionalSSM(4, core=core)
    assert layer.ssm_state == (64 if core == "s4d" else 16)
    if core == "s4d":
        assert layer.s4d.C.shape == (8, 32, 2)  # 2 directions x 4 channels, 32 complex modes
        assert BidirectionalSSM(4, core="s4d", init="inv", ssm_state=8).s4d.init == "inv"
    else:
        assert layer.fwd.A_log.shape == (4, 16) and layer.bwd is not layer.fwd
        assert BidirectionalSSM(4, core="selective", expand=2).fwd.d_inner == 8
    with pytest.raises(ValueError, match="core must be"):
        BidirectionalSSM(4, core="attention")
    with pytest.raises(ValueError, match=r"\(B, L>=1, D=4\)"):
        layer(torch.randn(2, 5, 3))


def test_selective_halves_are_forward_then_truly_reversed():
    torch.manual_seed(0)
    layer = BidirectionalSSM(5, core="selective")
    x = torch.randn(2, 11, 5)
    y = layer(x)
    torch.testing.assert_close(y[..., :5], layer.fwd(x))
    torch.testing.assert_close(y[..., 5:], layer.bwd(x.flip(1)).flip(1))
    assert not torch.allclose(y[..., :5], y[..., 5:]), "each direction has its own parameters"


def test_s4d_halves_are_forward_then_truly_reversed():
    """Forward half = a causal S4D with the first D channels' parameters; reversed half = flip, the
    other channels' S4D, flip back."""
    torch.manual_seed(0)
    D = 3
    bi = BidirectionalSSM(D, core="s4d", ssm_state=8).double()
    fwd, rev = (
        BidirectionalSSM(D, core="s4d", bidirectional=False, ssm_state=8).double(),
        BidirectionalSSM(D, core="s4d", bidirectional=False, ssm_state=8).double(),
    )
    with torch.no_grad():
        for name, p in bi.s4d.named_parameters():
            getattr(fwd.s4d, name).copy_(p[:D])
            getattr(rev.s4d, name).copy_(p[D:])
    x = torch.randn(2, 13, D, dtype=torch.float64)
    y = bi(x)
    torch.testing.assert_close(y[..., :D], fwd(x))
    torch.testing.assert_close(y[..., D:], rev(x.flip(1)).flip(1))


@pytest.mark.parametrize("core", CORES)
def test_who_sees_whom(core):
    """d y[0] / d x[L-1]: non-zero for the bidirectional layer, zero for the causal one.

    The selective core is causal to the bit (exactly zero). The S4D core's FFT convolution is causal
    in exact arithmetic; in floating point the FFT spreads round-off (about 1e-16 relative in
    float64) to every position, so there we check that the leak is at round-off level.
    """
    torch.manual_seed(0)
    L, D = 49, 4
    for bidirectional in (True, False):
        layer = BidirectionalSSM(D, core=core, bidirectional=bidirectional).double()
        x = torch.randn(2, L, D, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(layer(x)[:, 0].sum(), x)
        last, first = g[:, -1].abs().max().item(), g[:, 0].abs().max().item()
        if bidirectional:
            assert last > 1e-8 * first and last > 0, "the reversed direction sees the last input"
        elif core == "selective":
            assert last == 0.0, "the causal selective layer must not see the future at all"
            assert (g[:, 1:] == 0).all()
        else:
            assert last <= 1e-12 * first, f"causal S4D leaks beyond round-off: {last} vs {first}"


@pytest.mark.parametrize("core", CORES)
def test_bf16_autocast_runs_and_stays_close(core):
    torch.manual_seed(0)
    layer = BidirectionalSSM(8, core=core)
    x = torch.randn(2, 20, 8)
    y32 = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y16 = layer(x)
    assert y16.shape == y32.shape
    torch.testing.assert_close(y16.float(), y32, rtol=0.1, atol=0.1)


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("core", CORES)
def test_reference_backend_equals_the_fast_kernels(core, bidirectional):
    """backend "reference" runs the readable forms (Vandermonde kernel, FFT convolutions left to
    autograd, the sequential scan); "torch" the kernels of ssm/kernels/: same outputs and
    gradients (float64), and each layer reports what ran."""
    torch.manual_seed(0)
    ref = BidirectionalSSM(
        4, core=core, bidirectional=bidirectional, ssm_state=8, backend="reference"
    ).double()
    fast = BidirectionalSSM(
        4, core=core, bidirectional=bidirectional, ssm_state=8, backend="torch"
    ).double()
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(2, 23, 4, dtype=torch.float64)
    got = []
    for layer in (ref, fast):
        y = layer(x)
        y.sin().sum().backward()
        got.append([y] + [p.grad for p in layer.parameters()])
    for a, b in zip(*got):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    assert (ref.backend_used, fast.backend_used) == ("reference", "torch")
