"""Scan orders (issue 17): permutations with inverses, locality of the continuous orders, the model
config key, equivalence of a random-order model with a raster model on permuted input, and the
default model unchanged."""

from dataclasses import replace

import pytest
import torch

from diffussm_lib import build_model, load_model, scan_order
from diffussm_lib.config import ModelConfig
from diffussm_lib.models import ORDERS, layer_orders, patchify, unpatchify
from diffussm_lib.models.scan_orders import _cells

SIZES = [
    (1, 1),
    (1, 5),
    (4, 1),
    (2, 3),
    (4, 4),
    (5, 5),
    (4, 5),
    (7, 7),
    (14, 14),
    (6, 9),
    (16, 16),
    (28, 28),
]


@pytest.mark.parametrize("name", ORDERS)
@pytest.mark.parametrize("h, w", SIZES)
def test_every_order_is_a_permutation_with_its_inverse(name, h, w):
    perm, inv = scan_order(name, h, w)
    assert perm.dtype == torch.long and perm.shape == inv.shape == (h * w,)
    assert torch.equal(perm.sort().values, torch.arange(h * w))
    assert torch.equal(perm[inv], torch.arange(h * w)) and torch.equal(
        inv[perm], torch.arange(h * w)
    )
    x = torch.randn(2, h * w, 3)
    assert torch.equal(x[:, inv][:, perm], x), "to sequence order and back"


def _steps(name, h, w):
    _, inv = scan_order(name, h, w)
    r, c = inv // w, inv % w
    return (r[1:] - r[:-1]).abs() + (c[1:] - c[:-1]).abs(), (r[1:] - r[:-1]).abs().maximum(
        (c[1:] - c[:-1]).abs()
    )


@pytest.mark.parametrize("name", ["snake", "column_snake", "hilbert"])
@pytest.mark.parametrize(
    "h, w", [(s, s) for s in range(1, 17)] + [(2, 3), (3, 5), (8, 4), (6, 10), (14, 28)]
)
def test_continuous_orders_step_to_a_4_neighbour(name, h, w):
    manhattan, _ = _steps(name, h, w)
    assert bool((manhattan == 1).all()), f"{name} {h}x{w}: a jump in the path"


def test_hilbert_needs_at_most_one_diagonal_step_on_any_grid():
    """Every size up to 16 x 16: 4-neighbour steps, plus exactly one diagonal step when the longer side
    is odd and the shorter side even and >= 4 (the module docstring says so)."""
    for h in range(1, 17):
        for w in range(1, 17):
            manhattan, cheb = _steps("hilbert", h, w)
            assert bool((cheb == 1).all()), f"{h}x{w}: a step longer than one cell"
            diag = int((manhattan == 2).sum())
            lo, hi = min(h, w), max(h, w)
            assert diag == (1 if (hi % 2 and lo % 2 == 0 and lo >= 4) else 0), (h, w, diag)


def test_hilbert_is_the_hilbert_curve_on_powers_of_two():
    assert _cells("hilbert", 2, 2) in (
        [(0, 0), (0, 1), (1, 1), (1, 0)],
        [(0, 0), (1, 0), (1, 1), (0, 1)],
    )
    manhattan, _ = _steps("hilbert", 8, 8)
    assert bool((manhattan == 1).all())
    _, inv = scan_order("hilbert", 8, 8)
    first_quarter = inv[:16]
    assert bool(((first_quarter // 8) < 4).all() & ((first_quarter % 8) < 4).all()), (
        "a quadrant at a time"
    )


def test_locality_differs_by_order():
    """Mean sequence distance between 4-neighbouring cells on 14 x 14: random is far worse than the rest."""

    def mean_gap(name, h=14, w=14):
        perm, _ = scan_order(name, h, w)
        p = perm.reshape(h, w).float()
        return torch.cat(
            [(p[1:] - p[:-1]).abs().flatten(), (p[:, 1:] - p[:, :-1]).abs().flatten()]
        ).mean()

    gaps = {n: float(mean_gap(n)) for n in ORDERS}
    assert gaps["raster"] == pytest.approx((13 * 14 * 1 + 13 * 14 * 14) / (2 * 13 * 14))
    assert gaps["random"] > 3 * max(g for n, g in gaps.items() if n != "random")


def test_bad_names_are_named():
    with pytest.raises(ValueError, match="unknown scan order 'zigzag'"):
        scan_order("zigzag", 4, 4)
    with pytest.raises(ValueError, match="model.scan_order"):
        layer_orders(["raster", "spiral"], 4)
    assert layer_orders(["raster", "column"], 5) == [
        "raster",
        "column",
        "raster",
        "column",
        "raster",
    ]


SMALL = dict(
    arch="diffussm", in_channels=1, image_size=8, hidden_dim=16, depth=3, patch_size=2, ssm_state=8
)


def test_config_key_sets_the_order_per_layer():
    m = build_model(ModelConfig(**SMALL, scan_order=["raster", "column"]))
    assert [b.hourglass.order for b in m.blocks] == ["raster", "column", "raster"]
    m = build_model(ModelConfig(**SMALL, scan_order="hilbert"))
    assert {b.hourglass.order for b in m.blocks} == {"hilbert"}


@pytest.mark.slow
def test_random_order_model_is_a_raster_model_on_permuted_input():
    """With M = 1 (no token grouping), a model that scans every layer in the random order equals, up to
    the permutation, the raster model whose input patches were permuted (same weights)."""
    cfg = ModelConfig(**dict(SMALL, hourglass_ratio=1))
    torch.manual_seed(0)
    raster = build_model(cfg).eval()
    rand = build_model(replace(cfg, scan_order="random")).eval()
    state = {
        k: v + 0.05 * torch.randn_like(v) for k, v in raster.state_dict().items()
    }  # non-zero gates
    raster.load_state_dict(state)
    rand.load_state_dict(state)
    _, inv = scan_order("random", 4, 4)
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([3, 700]), torch.tensor([1, 4])
    x_perm = unpatchify(patchify(x, 2)[:, inv], 2, 8, 8)  # patch tokens in the random order
    with torch.no_grad():
        out_rand = rand(x, t, y)
        out_raster = raster(x_perm, t, y)
    torch.testing.assert_close(
        patchify(out_raster, 2), patchify(out_rand, 2)[:, inv], rtol=1e-4, atol=1e-5
    )
    assert not torch.allclose(raster(x, t, y), out_rand, atol=1e-4), "the order changes the output"


def test_default_raster_model_is_unchanged_and_the_checkpoint_loads():
    """The recorded reference forwards (tests/test_reference_forward.py) cover the default model; here:
    the pretrained checkpoint loads and scans in raster order, and raster adds no permutation."""
    model, cfg, _ = load_model("checkpoints/mnist_diffussm")
    assert cfg.model.scan_order == "raster" and {b.hourglass.order for b in model.blocks} == {
        "raster"
    }
    perm, inv = scan_order("raster", 14, 14)
    assert torch.equal(perm, torch.arange(196)) and torch.equal(inv, torch.arange(196))
