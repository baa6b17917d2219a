"""The denoisers give the outputs recorded from the code before the speed work (issue 15), to float
tolerance: ``tests/data/reference_forward.safetensors`` (made by ``tests/data/make_reference_forward.py``)."""
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from diffussm_lib import build_model, load_model
from diffussm_lib.config import ModelConfig

HERE = Path(__file__).resolve().parent
REF = HERE / "data" / "reference_forward.safetensors"
ROOT = HERE.parent
with safe_open(str(REF), framework="pt") as _f:
    CASES = json.loads(_f.metadata()["cases"])


@pytest.fixture(scope="module")
def ref():
    return load_file(REF)


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_weights_give_the_recorded_output(ref, name):
    model = build_model(ModelConfig(**CASES[name])).eval()
    prefix = f"{name}/w/"
    model.load_state_dict({k[len(prefix):]: v for k, v in ref.items() if k.startswith(prefix)})
    with torch.no_grad():
        out = model(ref["x"], ref["t"], ref["y"])
    want = ref[f"{name}/out"]
    assert out.shape == want.shape
    torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_pretrained_checkpoint_gives_the_recorded_output(ref):
    model, _, _ = load_model(ROOT / "checkpoints" / "mnist_diffussm")
    with torch.no_grad():
        out, uncond = model(ref["x"], ref["t"], ref["y"]), model(ref["x"], ref["t"], None)
    for got, key in ((out, "pretrained/out"), (uncond, "pretrained/out_uncond")):
        want = ref[key]
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
