"""On a CUDA machine with mamba-ssm / causal-conv1d built: our torch scan equals the fused kernels.
Skipped elsewhere."""
import sys

import pytest
import torch

from diffussm_lib.env import fused_kernels_status

pytestmark = [pytest.mark.cuda]
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device", allow_module_level=True)
# the oracle tests may have put stand-ins for missing compiled extensions in sys.modules
if any(getattr(sys.modules.get(m), "__diffussm_stand_in__", False) for m in ("selective_scan_cuda", "causal_conv1d_cuda")):
    pytest.skip("compiled mamba-ssm / causal-conv1d extensions are not installed", allow_module_level=True)
ok, why = fused_kernels_status()
if not ok:
    pytest.skip(f"fused kernels unavailable: {why}", allow_module_level=True)

from diffussm_lib.ssm import BidirectionalSSM, causal_conv1d, selective_scan  # noqa: E402


@pytest.mark.parametrize("L", [1, 7, 64, 784, 1024])
@pytest.mark.parametrize("full", [False, True])
def test_torch_scan_equals_fused_kernel(L, full):
    g = torch.Generator(device="cuda").manual_seed(L)
    b, d, n = 2, 16, 8
    r = lambda *s: torch.randn(*s, device="cuda", generator=g)
    u, delta, z = r(b, d, L), r(b, d, L), r(b, d, L)
    A, B, C = -torch.rand(d, n, device="cuda", generator=g) - 0.1, r(b, n, L), r(b, n, L)
    D, bias = r(d), torch.rand(d, device="cuda", generator=g)
    extra = dict(D=D, z=z, delta_bias=bias, delta_softplus=True) if full else dict(delta_softplus=True)
    ins = [t.requires_grad_() for t in (u, delta, A, B, C)]
    outs = {}
    for backend in ("torch", "cuda"):
        y, last = selective_scan(*ins, **extra, return_last_state=True, backend=backend)
        grads = torch.autograd.grad((y * torch.cos(y.detach())).sum(), ins)
        outs[backend] = (y, last, grads)
    (y0, l0, g0), (y1, l1, g1) = outs["torch"], outs["cuda"]
    torch.testing.assert_close(y0, y1, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(l0, l1, rtol=1e-3, atol=1e-3)
    for a, c in zip(g0, g1):
        torch.testing.assert_close(a, c, rtol=5e-3, atol=5e-3)


def test_torch_conv_equals_fused_kernel():
    x, w, bias = torch.randn(2, 16, 100, device="cuda"), torch.randn(16, 4, device="cuda"), torch.randn(16, device="cuda")
    torch.testing.assert_close(causal_conv1d(x, w, bias, "silu", backend="torch"),
                               causal_conv1d(x, w, bias, "silu", backend="cuda"), rtol=1e-4, atol=1e-4)


def test_layer_reports_cuda_backend():
    layer = BidirectionalSSM(16, core="selective").cuda()
    layer(torch.randn(2, 50, 16, device="cuda"))
    assert layer.backend_used == "cuda"
