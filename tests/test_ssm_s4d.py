"""S4D: recurrence == Vandermonde kernel == fast kernel == FFT convolution; initialisations;
gradients. Each fast kernel of ``ssm/kernels/`` equals the readable form it replaces."""

import math

import pytest
import torch

from diffussm_lib.ssm import S4D, fft_causal_conv, s4d_kernel_vandermonde, s4d_recurrence
from diffussm_lib.ssm.kernels.fft_conv import fft_causal_conv_fast
from diffussm_lib.ssm.kernels.s4d_kernel import s4d_kernel_fast
from diffussm_lib.ssm.s4d import s4d_init_A


def direct_causal_conv(u, k):
    """y_t = sum_{s<=t} k_{t-s} u_s by a loop over lags (the definition). u (B,G,L), k (G,L)."""
    L = u.shape[-1]
    y = torch.zeros_like(u)
    for j in range(L):
        y[..., j:] += k[:, j, None] * u[..., : L - j]
    return y


@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("init", ["lin", "inv"])
@pytest.mark.parametrize("L", [1, 2, 7, 64, 100, 257, 1000])
def test_recurrence_equals_fft_convolution_float64(L, init, backend):
    torch.manual_seed(L)
    m = S4D(3, 16, init=init, dt_min=1e-3, dt_max=0.5, backend=backend).double()
    u = torch.randn(2, 3, L, dtype=torch.float64)
    _, z, Bbar, C = m.discrete()
    with torch.no_grad():
        want = s4d_recurrence(u, z, Bbar, C) + m.D[:, None] * u
        got = m(u)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("L", [1, 3, 10, 196, 784, 1025])
def test_fast_kernel_equals_vandermonde(L):
    torch.manual_seed(0)
    m = S4D(4, 64, dt_max=0.9).double()
    dtA, z, Bbar, C = m.discrete()
    want = s4d_kernel_vandermonde(z, C * Bbar, L)
    with torch.no_grad():
        torch.testing.assert_close(m.kernel(L), want, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(s4d_kernel_fast(dtA, C * Bbar, L), want, rtol=1e-10, atol=1e-12)
    assert m.form == "torch"  # "auto": the fast kernel
    m.form = "reference"
    torch.testing.assert_close(m.kernel(L), want, rtol=0, atol=0)


@pytest.mark.parametrize("L", [1, 3, 10, 196])
@pytest.mark.slow
def test_fast_kernel_gradient_equals_the_definitions(L):
    """The factored kernel's hand-written backward gives the gradients autograd finds through the
    Vandermonde definition, for every parameter (float64), and passes gradcheck on dtA and CB."""
    torch.manual_seed(1)
    m = S4D(3, 8, dt_max=0.9).double()
    g = torch.randn(3, L, dtype=torch.float64)
    grads = []
    for fast in (True, False):
        m.zero_grad()
        dtA, z, Bbar, C = m.discrete()
        k = m.kernel(L) if fast else s4d_kernel_vandermonde(z, C * Bbar, L)
        (k * g).sum().backward()
        grads.append([p.grad.clone() for p in (m.log_dt, m.log_A_real, m.A_imag, m.C)])
    for fast, slow in zip(*grads):
        torch.testing.assert_close(fast, slow, rtol=1e-9, atol=1e-11)
    dtA, _, Bbar, C = (t.detach().requires_grad_() for t in m.discrete())
    CB = (C * Bbar).detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda d, c: s4d_kernel_fast(d, c, L), (dtA, CB))


@pytest.mark.parametrize("conv", [fft_causal_conv, fft_causal_conv_fast], ids=["readable", "fast"])
@pytest.mark.parametrize("L", [1, 5, 33])
def test_fft_conv_forward_and_backward_equal_direct_convolution(L, conv):
    g = torch.Generator().manual_seed(L)
    u = torch.randn(2, 3, L, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(3, L, generator=g, dtype=torch.float64, requires_grad=True)
    y1, y2 = conv(u, k), direct_causal_conv(u, k)
    torch.testing.assert_close(y1, y2, rtol=1e-11, atol=1e-12)
    cot = torch.randn(y1.shape, generator=g, dtype=torch.float64)
    g1 = torch.autograd.grad((y1 * cot).sum(), (u, k))
    g2 = torch.autograd.grad((y2 * cot).sum(), (u, k))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)
    if L <= 5:  # finite differences: small inputs only
        assert torch.autograd.gradcheck(conv, (u, k))


def test_module_gradcheck_float64():
    torch.manual_seed(0)
    m = S4D(2, 4).double()
    u = torch.randn(1, 2, 9, dtype=torch.float64, requires_grad=True)
    params = tuple(m.parameters())

    def f(u, *ps):
        names = [n for n, _ in m.named_parameters()]
        return torch.func.functional_call(m, dict(zip(names, ps)), (u,))

    assert torch.autograd.gradcheck(f, (u, *params))


def test_initialisations():
    re, im = s4d_init_A(2, 8, "lin")
    assert re.shape == im.shape == (2, 4) and (re == -0.5).all()
    torch.testing.assert_close(im[0], math.pi * torch.arange(4.0))
    re, im = s4d_init_A(1, 8, "inv")
    N = 8  # the full state size (S4D paper, Sec. 4): (N / pi) (N / (2n + 1) - 1), n < N / 2
    want = [N / math.pi * (N / (2 * n + 1) - 1) for n in range(N // 2)]
    torch.testing.assert_close(im[0], torch.tensor(want))
    with pytest.raises(ValueError, match="ssm_state"):
        S4D(3, 7)
    with pytest.raises(ValueError, match="init"):
        S4D(3, 8, init="legs")


def test_stable_kernel_decays():
    torch.manual_seed(0)
    m = S4D(8, 64)
    with torch.no_grad():
        _, z, _, _ = m.discrete()
        assert (z.abs() < 1).all(), "|z| < 1: every mode decays"
        K = m.kernel(4096)
    assert torch.isfinite(K).all()


def test_dtype_and_autocast():
    m = S4D(4, 8)
    u = torch.randn(2, 4, 30)
    assert m(u).dtype == torch.float32
    assert m(u.bfloat16()).dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(u)
    torch.testing.assert_close(y, m(u))


def test_fft_length_is_the_smallest_5_smooth_length_without_wraparound():
    from diffussm_lib.ssm.fft_conv import fft_length

    def smooth(n):
        for p in (2, 3, 5):
            while n % p == 0:
                n //= p
        return n == 1

    for L in range(1, 600):
        n = fft_length(L)
        assert n >= 2 * L - 1 and smooth(n), (L, n)
        assert not any(smooth(m) for m in range(2 * L - 1, n)), (L, n)
    assert fft_length(196) == 400  # not 392 = 8 * 7^2


@pytest.mark.slow
@pytest.mark.parametrize("fast", [False, True], ids=["readable", "fast"])
def test_bidirectional_fft_conv_is_two_convolutions_and_its_gradient_is_exact(fast):
    """One FFT of u for both directions equals the causal conv of u and the flipped causal conv of
    the flipped u; the readable form (autograd) and the fast one (hand-written backward) pass
    gradcheck (float64)."""
    from diffussm_lib.ssm.fft_conv import bidirectional_fft_conv
    from diffussm_lib.ssm.kernels.fft_conv import bidirectional_fft_conv_fast

    conv = bidirectional_fft_conv_fast if fast else bidirectional_fft_conv
    g = torch.Generator().manual_seed(0)
    u = torch.randn(2, 3, 7, dtype=torch.float64, generator=g)
    k = torch.randn(2, 3, 7, dtype=torch.float64, generator=g)
    y = conv(u.transpose(1, 2).contiguous().transpose(1, 2), k)  # strided input too
    torch.testing.assert_close(y[:, 0], fft_causal_conv(u, k[0]))
    torch.testing.assert_close(y[:, 1], fft_causal_conv(u.flip(-1), k[1]).flip(-1))
    assert torch.autograd.gradcheck(conv, (u.requires_grad_(), k.requires_grad_()))
    m = S4D(6, 8, backend="reference" if not fast else "auto").double()
    x = torch.randn(2, 3, 9, dtype=torch.float64, generator=g)
    both = m.bidirectional(x)
    old = m(torch.cat([x, x.flip(-1)], 1))
    want = torch.cat([old[:, :3], old[:, 3:].flip(-1)], 1)
    torch.testing.assert_close(both.reshape(2, 6, 9), want)


@pytest.mark.parametrize("chunk_elements", [1, 2 * 3 * 8 * 2, 2**40])
@pytest.mark.slow
def test_bidirectional_fft_conv_is_the_same_whatever_the_batch_chunk(monkeypatch, chunk_elements):
    """The batch is processed in chunks (``batch_chunk``): one image at a time, uneven chunks (2 + 2
    + 1 of 5) and the whole batch give the same output and the same (gradchecked) gradients; the
    output is laid out as (B, L, 2, D), so the (B, L, 2D) view the next layer reads copies
    nothing."""
    from diffussm_lib.ssm.kernels import fft_conv

    g = torch.Generator().manual_seed(3)
    u = torch.randn(5, 3, 7, dtype=torch.float64, generator=g)
    k = torch.randn(2, 3, 7, dtype=torch.float64, generator=g)
    ref = torch.stack([fft_causal_conv(u, k[0]), fft_causal_conv(u.flip(-1), k[1]).flip(-1)], 1)
    monkeypatch.setattr(fft_conv, "SPECTRUM_CHUNK_ELEMENTS", chunk_elements)
    F = fft_conv.fft_length(7) // 2 + 1
    assert fft_conv.batch_chunk(5, 3, F) == {1: 1, 2 * 3 * 8 * 2: 2, 2**40: 5}[chunk_elements]
    assert fft_conv.batch_chunk(5, 3, F, "cuda") == 5  # a GPU: the whole batch
    y = fft_conv.bidirectional_fft_conv_fast(u, k)
    torch.testing.assert_close(y, ref)
    assert y.permute(0, 3, 1, 2).is_contiguous()
    assert torch.autograd.gradcheck(
        fft_conv.bidirectional_fft_conv_fast, (u.requires_grad_(), k.requires_grad_())
    )


@pytest.mark.parametrize("wants", ["u", "k"])
@pytest.mark.slow
def test_bidirectional_fft_conv_gradient_of_one_input_alone(monkeypatch, wants):
    """The input's spectra are kept for the backward only when the kernels need a gradient: either
    gradient alone passes gradcheck (uneven chunks: 2 + 2 + 1 images)."""
    from diffussm_lib.ssm.kernels import fft_conv

    g = torch.Generator().manual_seed(4)
    u = torch.randn(5, 3, 7, dtype=torch.float64, generator=g).requires_grad_(wants == "u")
    k = torch.randn(2, 3, 7, dtype=torch.float64, generator=g).requires_grad_(wants == "k")
    monkeypatch.setattr(fft_conv, "SPECTRUM_CHUNK_ELEMENTS", 2 * 3 * 8 * 2)
    assert torch.autograd.gradcheck(fft_conv.bidirectional_fft_conv_fast, (u, k))


@pytest.mark.parametrize("L", [1, 7, 196])
def test_reference_and_fast_s4d_agree_with_gradients(L):
    """The whole S4D layer, both directions: backend "reference" (the readable forms of s4d.py and
    fft_conv.py) and "torch" (the kernels) give the same outputs and parameter gradients."""
    torch.manual_seed(0)
    ref, fast = S4D(6, 16, backend="reference").double(), S4D(6, 16, backend="torch").double()
    fast.load_state_dict(ref.state_dict())
    u = torch.randn(2, 3, L, dtype=torch.float64)
    outs = []
    for m in (ref, fast):
        y = m.bidirectional(u)
        y2 = m(torch.cat([u, u], dim=1))
        (y.sin().sum() + y2.cos().sum()).backward()
        outs.append([y, y2] + [p.grad for p in m.parameters()])
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)
    with pytest.raises(ValueError, match="no fused CUDA kernel"):
        S4D(2, 8, backend="cuda")
