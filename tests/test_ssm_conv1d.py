"""causal_conv1d: causal, depthwise, and equal to causal-conv1d's causal_conv1d_ref (outputs + gradients)."""
import pytest
import torch

from diffussm_lib.ssm import causal_conv1d
from oracles import load_causal_conv1d_ref


def make(L, width, bias, b=2, d=5, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed + 31 * L + width)
    x = torch.randn(b, d, L, generator=g, dtype=dtype, requires_grad=True)
    w = torch.randn(d, width, generator=g, dtype=dtype, requires_grad=True)
    bb = torch.randn(d, generator=g, dtype=dtype, requires_grad=True) if bias else None
    return x, w, bb


def test_definition_float64():
    """out[t] = bias + sum_k w[k] x[t - (W-1) + k], written out as a loop."""
    x, w, b = make(9, 3, True, dtype=torch.float64)
    want = torch.zeros_like(x)
    for t in range(9):
        for k in range(3):
            s = t - 2 + k
            if s >= 0:
                want[:, :, t] += w[:, k] * x[:, :, s]
    want = want + b[:, None]
    torch.testing.assert_close(causal_conv1d(x, w, b, backend="torch"), want, rtol=1e-12, atol=1e-12)


def test_is_causal_exactly():
    x, w, b = make(20, 4, True)
    y = causal_conv1d(x, w, b, activation="silu")
    (g,) = torch.autograd.grad(y[:, :, 10].sum(), x)
    assert (g[:, :, 11:] == 0).all() and (g[:, :, 7:11] != 0).any()


def test_bad_arguments():
    x, w, b = make(4, 3, True)
    with pytest.raises(ValueError, match="activation"):
        causal_conv1d(x, w, b, activation="relu")
    with pytest.raises(ValueError, match="weight must be"):
        causal_conv1d(x, w[:2], b)


@pytest.mark.oracle
@pytest.mark.parametrize("activation", [None, "silu"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("width", [2, 3, 4])
@pytest.mark.parametrize("L", [1, 7, 64, 784])
def test_equals_causal_conv1d_ref(L, width, bias, activation):
    ref = load_causal_conv1d_ref()
    x, w, b = make(L, width, bias)
    given = [t for t in (x, w, b) if t is not None]
    got = causal_conv1d(x, w, b, activation=activation, backend="torch")
    want = ref(x, w, b, activation=activation)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    if L <= 64:
        cot = torch.randn(got.shape, generator=torch.Generator().manual_seed(1))
        g_got = torch.autograd.grad((got * cot).sum(), given)
        g_want = torch.autograd.grad((want * cot).sum(), given)
        for a, c in zip(g_got, g_want):
            torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)
