"""Record reference forwards of the denoisers, to check that later changes keep outputs unchanged.

Run once, with the code whose outputs are the reference (it was run at commit 8f76dc4, before the
speed work of issue 15):  ``PYTHONPATH=<that checkout> python tests/data/make_reference_forward.py``.
It writes ``tests/data/reference_forward.safetensors``: for each case the model's weights
(``<case>/w/<name>``), its inputs and its output; ``tests/test_reference_forward.py`` rebuilds each
model from its config (the metadata), loads the weights and compares.
"""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from diffussm_lib.config import ModelConfig, load_config
from diffussm_lib.models import build_model

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

SMALL = dict(in_channels=1, image_size=28, hidden_dim=32, depth=2, patch_size=2, num_classes=10)
CASES = {
    "diffussm_s4d": dict(arch="diffussm", **SMALL),
    "diffussm_causal": dict(arch="diffussm", bidirectional=False, **SMALL),
    "diffussm_m1": dict(arch="diffussm", hourglass_ratio=1, **SMALL),
    "diffussm_m4_p1": dict(arch="diffussm", **dict(SMALL, patch_size=1, hourglass_ratio=4)),
    "diffussm_selective": dict(arch="diffussm", ssm_core="selective", **SMALL),
    "diffussm_sigma": dict(arch="diffussm", learn_sigma=True, **SMALL),
    "dit": dict(arch="dit", num_heads=4, **SMALL),
}


def perturbed(model: torch.nn.Module, seed: int) -> dict:
    """The model's state dict with seeded noise on every floating tensor (zero-initialised layers
    would otherwise make the output exactly zero)."""
    g = torch.Generator().manual_seed(seed)
    return {
        k: (v + 0.05 * torch.randn(v.shape, generator=g)).contiguous()
        if v.is_floating_point()
        else v
        for k, v in model.state_dict().items()
    }


def main() -> None:
    tensors, meta = {}, {}
    g = torch.Generator().manual_seed(0)
    B = 4
    x = torch.randn(B, 1, 28, 28, generator=g)
    t = torch.tensor([0, 250, 600, 999])
    y = torch.tensor([3, 10, 7, 0])  # 10 = the null class
    for i, (name, keys) in enumerate(CASES.items()):
        torch.manual_seed(i)
        model = build_model(ModelConfig(**keys)).eval()
        state = perturbed(model, 100 + i)
        model.load_state_dict(state)
        with torch.no_grad():
            out = model(x, t, y)
        tensors.update({f"{name}/w/{k}": v for k, v in state.items()})
        tensors[f"{name}/out"] = out.contiguous()
        meta[name] = keys
    from safetensors.torch import load_file

    cfg = load_config(ROOT / "configs" / "mnist_diffussm.yaml")
    weights = {
        k[len("ema/") :]: v
        for k, v in load_file(ROOT / "checkpoints/mnist_diffussm/model.safetensors").items()
        if k.startswith("ema/")
    }
    model = build_model(cfg.model).eval()
    model.load_state_dict(weights)
    with torch.no_grad():
        tensors["pretrained/out"] = model(x, t, y).contiguous()
        tensors["pretrained/out_uncond"] = model(x, t, None).contiguous()
    tensors.update({"x": x, "t": t, "y": y})
    save_file(tensors, HERE / "reference_forward.safetensors", metadata={"cases": json.dumps(meta)})
    print(
        f"wrote {HERE / 'reference_forward.safetensors'}: {len(CASES)} cases + the pretrained model"
    )


if __name__ == "__main__":
    main()
