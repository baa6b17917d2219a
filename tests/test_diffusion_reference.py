"""The samplers (directly and through ``generate``) and the loss give the outputs recorded from the
code before the sampler rewrite of issue 28: ``tests/data/diffusion_reference.safetensors``, made by
``tests/data/make_diffusion_reference.py`` (which holds the cases and the fixed random denoiser).
Same arithmetic, so equal to float32 rounding (1e-6; seen: exactly equal)."""

import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location(
    "make_diffusion_reference", HERE / "data" / "make_diffusion_reference.py"
)
make = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make)


@pytest.fixture(scope="module")
def ref():
    return load_file(make.FILE)


def _same(got: dict, ref: dict):
    assert got, "no outputs"
    for key, value in got.items():
        want = ref[key]
        assert value.shape == want.shape and value.dtype == want.dtype, key
        err = (value.double() - want.double()).abs().max().item() if value.numel() else 0.0
        tol = 1e-6 * (1 + want.double().abs().max().item())
        assert err <= tol, f"{key}: max |difference| {err:.3g}"


@pytest.mark.parametrize("name", sorted(make.CASES))
def test_sampler_gives_the_recorded_samples(ref, name):
    with torch.no_grad():
        _same(make.run_case(name), ref)


@pytest.mark.parametrize("name", sorted(make.GENERATE))
def test_generate_gives_the_recorded_samples(ref, name):
    _same(make.run_generate(name), ref)


@pytest.mark.parametrize("name", sorted(make.LOSSES))
def test_loss_gives_the_recorded_value(ref, name):
    _same(make.run_loss(name), ref)
