"""The selective scan: our fast scan == our sequential scan (float64) == mamba-ssm's selective_scan_ref.

Outputs and last state for L in {1, 7, 64, 784}; gradients of every input for L <= 64 against the
reference (its autograd backward is slow), and up to L = 1024 for our own fast-vs-sequential check.
Every combination of the optional inputs D, z, delta_bias and delta_softplus is covered.
"""
import itertools

import pytest
import torch

from diffussm_lib.ssm import selective_scan, selective_scan_sequential, selective_scan_torch
from oracles import load_selective_scan_ref

# (use D, use z, use delta_bias, delta_softplus): all 16 combinations
OPTIONS = list(itertools.product([False, True], repeat=4))
OPT_IDS = ["".join(n for n, on in zip(("D", "z", "b", "s"), o) if on) or "plain" for o in OPTIONS]


def make_inputs(L, options, b=2, d=3, n=4, dtype=torch.float64, seed=0):
    """Random scan inputs (list in selective_scan argument order) and the flag delta_softplus."""
    use_D, use_z, use_bias, softplus = options
    g = torch.Generator().manual_seed(seed + L)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)
    u, z = r(b, d, L), r(b, d, L)
    # positive step sizes if no softplus is applied; raw values (either sign) if it is
    delta = r(b, d, L) if softplus else torch.rand(b, d, L, generator=g, dtype=dtype) * 0.5 + 0.01
    A = -(torch.rand(d, n, generator=g, dtype=dtype) * 2 + 0.1)
    B, C = r(b, n, L), r(b, n, L)
    D, bias = r(d), torch.rand(d, generator=g, dtype=dtype) * 0.2
    args = [u, delta, A, B, C, D if use_D else None, z if use_z else None, bias if use_bias else None]
    return [a.requires_grad_() if a is not None else None for a in args], softplus


def run(fn, args, softplus, seed=1):
    """Outputs, last state and gradients of every given input for a random cotangent."""
    y, last = fn(*args, delta_softplus=softplus, return_last_state=True)
    g = torch.Generator().manual_seed(seed)
    loss = (y * torch.randn(y.shape, generator=g, dtype=y.dtype)).sum() \
        + (last * torch.randn(last.shape, generator=g, dtype=last.dtype)).sum()
    given = [a for a in args if a is not None]
    return y, last, torch.autograd.grad(loss, given)


def assert_close_all(a, b, rtol, atol, what):
    (ya, la, ga), (yb, lb, gb) = a, b
    torch.testing.assert_close(ya, yb, rtol=rtol, atol=atol, msg=lambda m: f"{what}: y\n{m}")
    torch.testing.assert_close(la, lb, rtol=rtol, atol=atol, msg=lambda m: f"{what}: last state\n{m}")
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    for i, (x, y) in enumerate(zip(ga, gb)):
        torch.testing.assert_close(x, y, rtol=rtol, atol=atol, msg=lambda m: f"{what}: grad #{i}\n{m}")


# ----------------------------------------------------------------------------- ours vs ours
@pytest.mark.parametrize("options", OPTIONS, ids=OPT_IDS)
@pytest.mark.parametrize("L", [1, 7, 64, 100])
def test_fast_equals_sequential_float64(L, options):
    args, sp = make_inputs(L, options)
    fast = run(selective_scan_torch, args, sp)
    seq = run(selective_scan_sequential, args, sp)
    assert_close_all(fast, seq, rtol=1e-10, atol=1e-10, what=f"L={L}")


@pytest.mark.parametrize("options", [(True, True, True, True), (False, False, False, False)], ids=["all", "plain"])
def test_fast_equals_sequential_long_with_gradients(options):
    args, sp = make_inputs(1024, options, b=1, d=2, n=3)
    assert_close_all(run(selective_scan_torch, args, sp), run(selective_scan_sequential, args, sp),
                     rtol=1e-9, atol=1e-9, what="L=1024")


@pytest.mark.parametrize("block", [1, 5, 32, 200])
def test_block_size_does_not_change_results(block):
    args, sp = make_inputs(77, (True, True, True, True))
    ref = run(lambda *a, **k: selective_scan_torch(*a, **k, block=32), args, sp)
    got = run(lambda *a, **k: selective_scan_torch(*a, **k, block=block), args, sp)
    assert_close_all(got, ref, rtol=1e-11, atol=1e-11, what=f"block={block}")


def test_float32_in_float32_out_and_accuracy():
    args64, sp = make_inputs(300, (True, True, True, True), b=2, d=4, n=8)
    args32 = [a.detach().float() if a is not None else None for a in args64]
    y32 = selective_scan_torch(*args32, delta_softplus=sp)
    y64 = selective_scan_sequential(*args64, delta_softplus=sp)
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y64.detach(), rtol=1e-4, atol=1e-4)


def test_large_steps_stay_finite_and_exact():
    """Large delta (decays near 0) and tiny delta (decays near 1): no overflow, no loss of accuracy."""
    args, _ = make_inputs(200, (True, False, False, False))
    u, delta, A, B, C, D = args[:6]
    for scale in (1e-4, 50.0):
        d = (delta.detach() * scale).requires_grad_()
        a = [u, d, A, B, C, D, None, None]
        fast, seq = run(selective_scan_torch, a, False), run(selective_scan_sequential, a, False)
        assert all(torch.isfinite(t).all() for t in (fast[0], *fast[2]))
        assert_close_all(fast, seq, rtol=1e-10, atol=1e-10, what=f"delta*{scale}")


def test_bad_shapes_raise_clear_errors():
    (u, delta, A, B, C, *_), _ = make_inputs(5, (False,) * 4)
    with pytest.raises(ValueError, match="B must be"):
        selective_scan(u, delta, A, B[:, :, :3], C, backend="torch")
    with pytest.raises(ValueError, match="A must be"):
        selective_scan(u, delta, A.T, B, C, backend="torch")
    with pytest.raises(ValueError, match="u must be"):
        selective_scan(u[0], delta, A, B, C, backend="torch")
    with pytest.raises(ValueError, match="backend must be"):
        selective_scan(u, delta, A, B, C, backend="fast")


# ----------------------------------------------------------------------------- vs mamba-ssm
@pytest.mark.oracle
@pytest.mark.parametrize("options", OPTIONS, ids=OPT_IDS)
@pytest.mark.parametrize("L", [1, 7, 64, 784])
def test_outputs_equal_mamba_reference(L, options):
    ref = load_selective_scan_ref()
    args, sp = make_inputs(L, options, b=2, d=4, n=8, dtype=torch.float32)
    with torch.no_grad():
        want_y, want_last = ref(*args, delta_softplus=sp, return_last_state=True)
        for fn in (selective_scan_torch, selective_scan_sequential):
            y, last = fn(*args, delta_softplus=sp, return_last_state=True)
            torch.testing.assert_close(y, want_y, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(last, want_last, rtol=1e-4, atol=1e-4)


@pytest.mark.oracle
@pytest.mark.parametrize("options", OPTIONS, ids=OPT_IDS)
@pytest.mark.parametrize("L", [1, 7, 64])
def test_gradients_equal_mamba_reference(L, options):
    ref = load_selective_scan_ref()
    args, sp = make_inputs(L, options, b=2, d=3, n=4, dtype=torch.float32)
    want = run(ref, args, sp)
    for fn in (selective_scan_torch, selective_scan_sequential):
        assert_close_all(run(fn, args, sp), want, rtol=2e-4, atol=2e-4, what=f"{fn.__name__} vs ref, L={L}")


@pytest.mark.parametrize("L", [1, 7])
def test_inputs_are_not_modified(L):
    args, sp = make_inputs(L, (True, True, True, True))
    before = [a.detach().clone() for a in args]
    run(selective_scan_torch, args, sp)
    for a, b in zip(args, before):
        assert torch.equal(a.detach(), b)
