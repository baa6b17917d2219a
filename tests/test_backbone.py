"""The backbone pieces: conditioning, patches, the hourglass equations, the DiffuSSM and DiT
blocks."""

import math

import pytest
import torch

from diffussm_lib.models import (
    AdaLNZero,
    ConditionEmbedder,
    LabelEmbedder,
    TimestepEmbedder,
    modulate,
    timestep_features,
)
from diffussm_lib.models import DiTBlock, sincos_2d
from diffussm_lib.models import DiffuSSMBlock, Hourglass, OffsetLinear, act
from diffussm_lib.models import (
    FinalLayer,
    PatchEmbed,
    check_image_size,
    group_tokens,
    patchify,
    ungroup_tokens,
    unpatchify,
)
from diffussm_lib.ssm import BidirectionalSSM


# ------------------------------------------------------------------ conditioning
def test_timestep_features_formula_and_fractional_t():
    t = torch.tensor([0, 3, 999])
    f = timestep_features(t, 8)
    assert f.shape == (3, 8)
    w = torch.exp(-math.log(10_000) * torch.arange(4) / 4)
    torch.testing.assert_close(f[1], torch.cat([torch.cos(3 * w), torch.sin(3 * w)]))
    assert timestep_features(torch.tensor([2.5]), 7).shape == (1, 7)  # odd width, float t


def test_label_embedder_null_class_and_range():
    """The embedder reads no label back from the device: a label out of range is the table's
    index error (the range is checked where labels enter: sampling.generate, the datasets)."""
    emb = LabelEmbedder(10, 8)
    assert emb.null_class == 10 and emb.table.num_embeddings == 11
    torch.testing.assert_close(emb(None, batch=3), emb(torch.full((3,), 10)))
    with pytest.raises(IndexError):
        emb(torch.tensor([11]))
    c = ConditionEmbedder(8, 10)(torch.tensor([1, 2]), None)
    assert c.shape == (2, 8)
    assert TimestepEmbedder(8)(torch.tensor([1.5, 2.0])).shape == (2, 8)


def test_adaln_zero_starts_at_zero_and_modulate():
    ada = AdaLNZero(4, 3)
    outs = ada(torch.randn(2, 4))
    assert len(outs) == 3 and all(o.shape == (2, 4) and torch.all(o == 0) for o in outs)
    x, shift, scale = torch.randn(2, 5, 4), torch.randn(2, 4), torch.randn(2, 4)
    torch.testing.assert_close(modulate(x, shift, scale), x * (1 + scale[:, None]) + shift[:, None])


# ------------------------------------------------------------------ patches
@pytest.mark.parametrize("C,H,W,p", [(1, 28, 28, 1), (3, 32, 32, 2), (1, 6, 8, 2)])
def test_patchify_raster_order_and_roundtrip(C, H, W, p):
    x = torch.randn(2, C, H, W)
    tok = patchify(x, p)
    assert tok.shape == (2, H * W // p**2, C * p * p)
    r, s = 1, 2  # patch row 1, column 2 -> token r * (W/p) + s
    patch = x[:, :, r * p : (r + 1) * p, s * p : (s + 1) * p].reshape(2, -1)
    torch.testing.assert_close(tok[:, r * (W // p) + s], patch)
    torch.testing.assert_close(unpatchify(tok, p, H, W), x)
    g = group_tokens(tok, 2)
    torch.testing.assert_close(g[:, 1], torch.cat([tok[:, 2], tok[:, 3]], -1))
    torch.testing.assert_close(ungroup_tokens(g, 2), tok)


def test_bad_sizes_give_clear_errors():
    with pytest.raises(ValueError, match=r"H=27, W=27.*p=1.*M=2"):
        check_image_size(27, 27, 1, 2)
    with pytest.raises(ValueError, match=r"H=29, W=28.*patch size p=2"):
        check_image_size(29, 28, 2, 1)
    with pytest.raises(ValueError, match=r"L=.*49.*M=2"):
        check_image_size(14, 14, 2, 2)
    assert check_image_size(28, 28, 2, 4) == 196


def test_patch_embed_and_final_layer_shapes():
    x = torch.randn(2, 3, 8, 8)
    h = PatchEmbed(3, 16, patch_size=2, hourglass_ratio=2)(x)
    assert h.shape == (2, 8, 16)
    out = FinalLayer(16, 6, patch_size=2, hourglass_ratio=2)(h, torch.randn(2, 16), 8, 8)
    assert out.shape == (2, 6, 8, 8) and torch.all(out == 0)  # zero-initialised head


# ------------------------------------------------------------------ the hourglass equations
class _Ident(torch.nn.Module):
    """A stand-in 'SSM' that returns [u, 2u] (width 2D): lets us check the dense equations alone."""

    def __init__(self, d):
        super().__init__()
        self.out_dim = 2 * d

    def forward(self, u):
        return torch.cat([u, 2 * u], dim=-1)


@pytest.mark.parametrize("M", [1, 2, 4])
def test_hourglass_matches_the_equations_loop_by_loop(M):
    torch.manual_seed(0)
    D, J, B = 8, 3, 2
    hg = Hourglass(D, M, _Ident(D))
    I = torch.randn(B, J, D)
    L = J * M
    # up: U_{jM+k} = act(W^up_k act(W^0 I_j)), W^up_k = rows kD..kD+D-1 of w_up
    U = torch.empty(B, L, D)
    for j in range(J):
        a = act(hg.w0(I[:, j]))
        for k in range(M):
            Wk, bk = hg.w_up.weight[k * D : (k + 1) * D], hg.w_up.bias[k * D : (k + 1) * D]
            U[:, j * M + k] = act(a @ Wk.T + bk)
    torch.testing.assert_close(hg.up(I), U)
    Y = hg.ssm(U)
    # down: chunk k (width 2D/M) of I'_j = act(W^down_k Y_{jM+k})
    Dm = 2 * D // M
    Ip = torch.empty(B, J, 2 * D)
    for j in range(J):
        for k in range(M):
            Wk, bk = hg.w_down.weight[k], hg.w_down.bias[k]
            Ip[:, j, k * Dm : (k + 1) * Dm] = act(Y[:, j * M + k] @ Wk.T + bk)
    torch.testing.assert_close(hg.down(Y), Ip)
    # gate: O_j = W^3 (act(W^2 I'_j) * act(W^1 I_j)), hidden width 2D
    O = hg.w3(act(hg.w2(Ip)) * act(hg.w1(I)))
    assert hg.w1.out_features == hg.w2.out_features == 2 * D
    torch.testing.assert_close(hg(I), O)


def test_hourglass_works_at_any_length_and_checks_width():
    hg = Hourglass(8, 2, _Ident(8))
    for J in (1, 5, 17):  # per-offset matrices: no parameter depends on L
        assert hg(torch.randn(1, J, 8)).shape == (1, J, 8)
    with pytest.raises(ValueError, match="divisible by the hourglass ratio"):
        Hourglass(5, 4, _Ident(5))
    off = OffsetLinear(3, 4, 2)
    assert off(torch.randn(2, 7, 3, 4)).shape == (2, 7, 3, 2)


@pytest.mark.parametrize("M", [1, 3])
def test_offset_linear_reference_is_the_einsum_and_the_kernel_equals_it(M):
    """OffsetLinear with backend "reference" is the einsum; the default runs the copy-free kernel
    of ssm/kernels/offset_linear.py: same outputs and gradients (float64)."""
    torch.manual_seed(0)
    ref = OffsetLinear(M, 5, 4, backend="reference").double()
    fast = OffsetLinear(M, 5, 4).double()
    fast.load_state_dict(ref.state_dict())
    x = torch.randn(2, 7, M, 5, dtype=torch.float64, requires_grad=True)
    want = torch.einsum("bjkf,kgf->bjkg", x, ref.weight) + ref.bias
    got = []
    for m in (ref, fast):
        y = m(x)
        torch.testing.assert_close(y, want)
        got.append(torch.autograd.grad(y.sin().sum(), (x, m.weight, m.bias)))
    for a, b in zip(*got):
        torch.testing.assert_close(a, b)
    assert (ref.form, fast.form) == ("reference", "torch")


# ------------------------------------------------------------------ blocks
@pytest.mark.parametrize("core", ["s4d", "selective"])
@pytest.mark.parametrize("M", [1, 2, 4])
def test_diffussm_block_is_identity_at_init(core, M):
    torch.manual_seed(0)
    block = DiffuSSMBlock(16, M, BidirectionalSSM(16, core=core, ssm_state=8))
    x, c = torch.randn(2, 5, 16), torch.randn(2, 16)
    assert torch.equal(block(x, c), x)
    assert block.hourglass.ssm.out_dim == 32


def test_dit_block_is_identity_at_init():
    block = DiTBlock(16, num_heads=4)
    x, c = torch.randn(2, 10, 16), torch.randn(2, 16)
    assert torch.equal(block(x, c), x)


def test_block_leaves_identity_once_modulation_is_trained():
    torch.manual_seed(0)
    block = DiffuSSMBlock(16, 2, BidirectionalSSM(16, core="s4d", ssm_state=8))
    torch.nn.init.normal_(block.ada.linear.weight, std=0.5)
    x, c = torch.randn(2, 5, 16), torch.randn(2, 16)
    assert not torch.allclose(block(x, c), x)


def test_causal_ablation_block_uses_width_d_ssm():
    block = DiffuSSMBlock(16, 2, BidirectionalSSM(16, core="s4d", bidirectional=False, ssm_state=8))
    assert block.hourglass.ssm.out_dim == 16 and block.hourglass.w_down.in_features == 16
    assert block(torch.randn(1, 4, 16), torch.randn(1, 16)).shape == (1, 4, 16)


def test_sincos_2d_positions():
    pe = sincos_2d(3, 4, 8)
    assert pe.shape == (12, 8)
    torch.testing.assert_close(pe[5, :4], pe[6, :4])  # same row (1) -> same row features
    torch.testing.assert_close(pe[1, 4:], pe[5, 4:])  # same column (1) -> same features
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(2, 2, 6)
