"""The denoisers (DiffuSSM and the DiT baseline), the factory, configs, checkpoints and FLOP
counting."""

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from diffussm_lib.config import ModelConfig, load_config
from diffussm_lib.models import DiffuSSM
from diffussm_lib.models import DiT
from diffussm_lib.models import (
    block_flops,
    build_block,
    build_model,
    count_flops,
    count_params,
    diffussm_block_flops_formula,
    dit_block_flops_formula,
)

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def tiny(arch="diffussm", **kw):
    base = dict(arch=arch, hidden_dim=16, depth=1, ssm_state=8, num_heads=2)
    base.update(kw)
    return build_model(ModelConfig(**base))


def randomize_zero_init(model, std=0.3):
    """Replace the zero-initialised layers (adaLN-Zero modulation, output head) by random
    weights."""
    with torch.no_grad():
        for m in model.modules():
            if hasattr(m, "ada"):
                m.ada.linear.weight.normal_(0, std)
                m.ada.linear.bias.normal_(0, std)
        model.final.linear.weight.normal_(0, std)
    return model


def inputs(B, C, H, W):
    return torch.randn(B, C, H, W), torch.randint(0, 1000, (B,)), torch.randint(0, 10, (B,))


# ------------------------------------------------------------------ shapes
@pytest.mark.parametrize("C", [1, 3])
@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("M", [1, 2, 4])
def test_diffussm_output_shapes(C, size, p, M):
    torch.manual_seed(0)
    model = tiny(in_channels=C, image_size=size, patch_size=p, hourglass_ratio=M)
    x, t, y = inputs(2, C, size, size)
    assert model(x, t, y).shape == (2, C, size, size)


@pytest.mark.parametrize("C", [1, 3])
@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("p", [1, 2])
def test_dit_output_shapes(C, size, p):
    model = tiny("dit", in_channels=C, image_size=size, patch_size=p)
    x, t, y = inputs(2, C, size, size)
    assert model(x, t, y).shape == (2, C, size, size)


@pytest.mark.parametrize("arch", ["diffussm", "dit"])
def test_learn_sigma_doubles_channels_and_interface(arch):
    model = tiny(arch, in_channels=3, learn_sigma=True, image_size=8)
    got = (model.in_channels, model.out_channels, model.num_classes, model.null_class)
    assert got == (3, 6, 10, 10)
    x, t, _ = inputs(2, 3, 8, 12)  # H != W is fine
    assert model(x, t.float() + 0.5, None).shape == (2, 6, 8, 12)  # float t, y = None


# ------------------------------------------------------------------ identity at init
@pytest.mark.parametrize("core", ["s4d", "selective"])
def test_every_block_is_identity_at_init(core):
    torch.manual_seed(0)
    model = tiny(ssm_core=core, depth=3, patch_size=2, image_size=8)
    x, t, y = inputs(2, 1, 8, 8)
    c = model.cond(t, y)
    h = model.embed(x)
    for block in model.blocks:
        assert torch.equal(block(h, c), h)
    assert torch.all(model(x, t, y) == 0)  # zero head + identity blocks


def test_dit_blocks_are_identity_at_init():
    model = tiny("dit", depth=2, image_size=8)
    x, t, y = inputs(2, 1, 8, 8)
    c, h = model.cond(t, y), model.embed(x)
    for block in model.blocks:
        assert torch.equal(block(h, c), h)


# ------------------------------------------------------------------ bidirectionality
def grad_first_from_all(model, H=4, W=4):
    """|d out[first pixel] / d x| over the image: (H, W)."""
    x = torch.randn(2, 1, H, W, requires_grad=True)
    out = model(x, torch.tensor([10, 500]), torch.tensor([1, 2]))
    out[:, :, 0, 0].sum().backward()
    return x.grad.abs().sum((0, 1))


@pytest.mark.parametrize("core", ["s4d", "selective"])
def test_first_pixel_sees_last_pixel_only_when_bidirectional(core):
    # 4x4 image, p = 1, M = 2: pixel 0 and pixel 1 share stream token 0; every other pixel
    # reaches the first output only through the SSM (the dense layers act token by token).
    torch.manual_seed(0)
    bi = randomize_zero_init(tiny(ssm_core=core, depth=2, image_size=4))
    g_bi = grad_first_from_all(bi)
    torch.manual_seed(0)
    causal = randomize_zero_init(tiny(ssm_core=core, depth=2, image_size=4, bidirectional=False))
    g_causal = grad_first_from_all(causal)
    assert g_bi[-1, -1] > 0, "bidirectional: the first pixel must depend on the last"
    assert g_bi[0, 1] > 0 and g_causal[0, 1] > 0  # the same stream token is always visible
    if core == "selective":
        # the scan is exactly causal. (At initialisation the selective core forgets fast: the
        # bidirectional gradient from 15 steps away is small, about 1e-11 here, but not zero.)
        assert torch.all(g_causal.flatten()[2:] == 0)
    else:
        # S4D convolves by FFT: causal up to float32 roundoff (about 1e-11 here; see
        # diffussm_lib.ssm), far below the bidirectional signal.
        leak = g_causal.flatten()[2:].max()
        assert leak < 1e-8 * g_causal.max()
        assert g_bi[-1, -1] > 1e3 * leak


# ------------------------------------------------------------------ class conditioning
@pytest.mark.parametrize("arch", ["diffussm", "dit"])
def test_labels_change_the_output_and_null_class_is_accepted(arch):
    torch.manual_seed(0)
    model = tiny(arch, image_size=8)
    x = torch.randn(2, 1, 8, 8)
    t = torch.tensor([3, 3])
    a, b = model(x, t, torch.tensor([3, 3])), model(x, t, torch.tensor([7, 7]))
    assert torch.equal(a, b)  # zero modulation at init: labels unused yet
    randomize_zero_init(model)
    a, b = model(x, t, torch.tensor([3, 3])), model(x, t, torch.tensor([7, 7]))
    assert not torch.allclose(a, b)
    null = torch.full((2,), model.null_class)
    torch.testing.assert_close(model(x, t, null), model(x, t, None))
    assert not torch.allclose(model(x, t, null), a)
    with pytest.raises(ValueError, match="class labels"):  # shapes and dtypes: no sync
        model(x, t, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="class labels"):
        model(x, t, torch.tensor([1]))
    with pytest.raises(IndexError):  # values: the table's own error (callers check the range)
        model(x, t, torch.tensor([11, 0]))


class _NoSync(torch.Tensor):
    """A tensor that fails any read of its value back to the host (.item(), bool(), int(), ...)."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in ("item", "__bool__", "__int__", "__float__", "__index__", "tolist", "numpy"):
            raise AssertionError(f"host-device sync in a forward pass: {name}")
        return super().__torch_function__(func, types, args, kwargs or {})


@pytest.mark.parametrize(
    "arch,core", [("diffussm", "s4d"), ("diffussm", "selective"), ("dit", "s4d")]
)
def test_forward_reads_no_tensor_value_back(arch, core):
    """No .item() / bool(tensor) / int(tensor) in a forward pass (each is a host-device sync on a
    GPU): the inputs, and everything computed from them, refuse to be read."""
    model = tiny(arch, ssm_core=core, image_size=8, scan_order="snake")
    x, t, y = inputs(2, 1, 8, 8)
    out = model(x.as_subclass(_NoSync), t.as_subclass(_NoSync), y.as_subclass(_NoSync))
    assert out.shape == x.shape


# ------------------------------------------------------------------ errors, checkpoints
@pytest.mark.parametrize("arch", ["diffussm", "dit"])
def test_bad_sizes_give_clear_errors(arch):
    model = tiny(arch, patch_size=2, image_size=8)
    with pytest.raises(ValueError, match=r"H=9, W=8.*p=2"):
        model(*inputs(1, 1, 9, 8))
    if arch == "diffussm":
        with pytest.raises(ValueError, match=r"H=6, W=6.*L=H\*W/p\^2=9.*M=2"):
            model(*inputs(1, 1, 6, 6))
    with pytest.raises(ValueError, match="model.image_size=30"):
        tiny(arch, patch_size=4, image_size=30)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        model(*inputs(1, 3, 8, 8))


@pytest.mark.parametrize(
    "arch,core", [("diffussm", "s4d"), ("diffussm", "selective"), ("dit", "s4d")]
)
def test_state_dict_roundtrips_through_safetensors(tmp_path, arch, core):
    torch.manual_seed(0)
    a = randomize_zero_init(tiny(arch, ssm_core=core, depth=2, image_size=8))
    save_file(a.state_dict(), tmp_path / "m.safetensors")
    torch.manual_seed(1)
    b = tiny(arch, ssm_core=core, depth=2, image_size=8)
    b.load_state_dict(load_file(tmp_path / "m.safetensors"))
    x, t, y = inputs(2, 1, 8, 8)
    assert torch.equal(a(x, t, y), b(x, t, y))


# ------------------------------------------------------------------ configs
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_loads_and_builds(path):
    cfg = load_config(path)
    model = build_model(cfg.model)
    assert count_params(model) > 0
    assert model.in_channels == cfg.model.in_channels


def test_tiny_config_runs_forward_and_backward():
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml").model
    model = build_model(cfg)
    x, t, y = inputs(2, cfg.in_channels, cfg.image_size, cfg.image_size)
    out = model(x, t, y)
    out.square().mean().backward()
    assert out.shape == x.shape


def test_matched_mnist_configs():
    root = Path(__file__).resolve().parents[1] / "configs"
    a = load_config(root / "mnist_diffussm.yaml").model
    b = load_config(root / "mnist_dit.yaml").model
    assert (a.arch, b.arch) == ("diffussm", "dit")
    for key in ("hidden_dim", "depth", "patch_size", "image_size", "in_channels", "num_classes"):
        assert getattr(a, key) == getattr(b, key), key


def test_build_model_types():
    assert isinstance(tiny(), DiffuSSM) and isinstance(tiny("dit"), DiT)
    model = tiny(image_size=8)
    assert model.ssm_backend_used is None
    model(*inputs(1, 1, 8, 8))
    assert model.ssm_backend_used == "torch"


def test_a_model_is_built_from_its_config_section():
    """DiffuSSM(cfg) and DiT(cfg) take the config section; build_model is the same plus the size
    check; every SSM key reaches its layer (from_config is the one place that maps them)."""
    cfg = ModelConfig(
        arch="diffussm",
        hidden_dim=8,
        depth=2,
        ssm_state=6,
        image_size=8,
        hourglass_ratio=4,
        bidirectional=False,
        ssm_init="inv",
        scan_order=["raster", "snake"],
        ssm_backend="reference",
    )
    torch.manual_seed(0)
    a = DiffuSSM(cfg)
    torch.manual_seed(0)
    b = build_model(cfg)
    assert [k for k in a.state_dict()] == [k for k in b.state_dict()]
    ssm = a.blocks[1].hourglass.ssm
    got = (ssm.hidden_dim, ssm.ssm_state, ssm.bidirectional, ssm.backend)
    assert got == (8, 6, False, "reference")
    assert ssm.s4d.init == "inv" and a.blocks[1].hourglass.order == "snake"
    assert a.hourglass_ratio == a.blocks[0].hourglass.hourglass_ratio == 4
    assert a.blocks[0].hourglass.w_down.form == "reference"
    assert isinstance(DiT(replace(cfg, arch="dit", num_heads=2)), DiT)


@pytest.mark.parametrize("core", ["s4d", "selective"])
def test_reference_backend_gives_the_same_model_output(core):
    """ssm_backend "reference" (the readable forms everywhere) and "auto" (the fast kernels on a
    CPU) give the same denoiser output and gradients, and the model reports which ran."""
    torch.manual_seed(0)
    fast = randomize_zero_init(tiny(ssm_core=core, depth=2, image_size=8, hourglass_ratio=2))
    ref = tiny(ssm_core=core, depth=2, image_size=8, hourglass_ratio=2, ssm_backend="reference")
    ref.load_state_dict(fast.state_dict())
    x, t, y = inputs(2, 1, 8, 8)
    got = []
    for m in (fast, ref):
        out = m(x, t, y)
        out.square().mean().backward()
        got.append([out] + [p.grad for p in m.parameters()])
    for a, b in zip(*got):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert (fast.ssm_backend_used, ref.ssm_backend_used) == ("torch", "reference")


# ------------------------------------------------------------------ FLOPs
def test_flop_counter_sees_cpu_attention_and_matches_formulas():
    D, L = 32, 64
    cfg = ModelConfig(arch="dit", hidden_dim=D, num_heads=4)
    block = build_block(cfg)
    counted = count_flops(block, torch.randn(1, L, D), torch.randn(1, D))  # real CPU run
    adaln = 2 * D * 6 * D
    assert counted == dit_block_flops_formula(L, D) + adaln
    assert block_flops(cfg, L) == counted  # meta device
    # DiffuSSM: the dense layers are exactly the paper's 2 (13 J D^2 + L D^2) (+ adaLN); the SSM
    # adds FFTs
    cfg = ModelConfig(arch="diffussm", hidden_dim=D, ssm_state=8)
    dense = count_flops(build_block(cfg), torch.randn(1, L // 2, D), torch.randn(1, D), fft=False)
    kernel = block_flops(cfg, L, fft=False) - dense  # (same thing)
    assert kernel == 0
    assert diffussm_block_flops_formula(L, D, 2) == 2 * (13 * (L // 2) * D * D + L * D * D)
    ssm_kernel_bmm = dense - diffussm_block_flops_formula(L, D, 2) - 2 * D * 3 * D
    assert 0 < ssm_kernel_bmm < 0.1 * dense  # the S4D kernel product
    assert block_flops(cfg, L) > dense  # FFTs counted


def test_flop_backward_counts():
    block = build_block(ModelConfig(arch="dit", hidden_dim=16, num_heads=2))
    x = torch.randn(1, 32, 16, requires_grad=True)
    fwd = count_flops(block, x, torch.randn(1, 16))
    assert count_flops(block, x, torch.randn(1, 16), backward=True) > 2.5 * fwd


@pytest.mark.parametrize("arch", ["diffussm", "dit"])
def test_runs_under_bf16_autocast(arch):
    model = randomize_zero_init(tiny(arch, image_size=8))
    x, t, y = inputs(2, 1, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, t, y)
    out.float().square().mean().backward()
    assert out.shape == x.shape and torch.isfinite(out.float()).all()


def test_offset_linear_equals_the_einsum_and_its_gradient_is_exact():
    """The copy-free down projection (``ssm/kernels/offset_linear.py``) is the einsum it replaces,
    with exact gradients (float64 gradcheck), also for a strided input."""
    from diffussm_lib.ssm.kernels.offset_linear import offset_linear_fast

    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 5, dtype=torch.float64, generator=g)
    w = torch.randn(3, 4, 5, dtype=torch.float64, generator=g)
    b = torch.randn(3, 4, dtype=torch.float64, generator=g)
    torch.testing.assert_close(offset_linear_fast(x, w, b), torch.einsum("nkf,kgf->nkg", x, w) + b)
    xs = torch.randn(6, 3, 10, dtype=torch.float64, generator=g)[..., ::2]  # strided input
    torch.testing.assert_close(
        offset_linear_fast(xs, w, b), torch.einsum("nkf,kgf->nkg", xs, w) + b
    )
    args = (x.requires_grad_(), w.requires_grad_(), b.requires_grad_())
    assert torch.autograd.gradcheck(offset_linear_fast, args)
