"""Record reference outputs of the samplers and the loss, to check that later changes keep them.

Run once, with the code whose outputs are the reference (it was run at commit 55c7edb, before the
sampler rewrite of issue 28):
``PYTHONPATH=<that checkout> python tests/data/make_diffusion_reference.py``.
It writes ``tests/data/diffusion_reference.safetensors``: for each case of ``CASES`` and
``GENERATE`` the samples (and for trajectory cases the recorded x_t and x_0 predictions), and for
each case of ``LOSSES`` the loss.
``tests/test_diffusion_reference.py`` runs the same cases with the code of today and compares.

The denoiser is ``RandomDenoiser``: a fixed function of (x, t, y) whose weights come from a seeded
generator (no ``nn.Module`` initialiser, no model code of the library), so only the diffusion code
is under test. The cases call the samplers through their oldest spellings (``guidance_scale=``,
``timesteps=``), which stay accepted, and through ``generate``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
FILE = HERE / "diffusion_reference.safetensors"
SHAPE = (8, 1, 8, 8)
LABELS = torch.tensor([0, 1, 2, 3, 4, 5, 6, 10])


class RandomDenoiser(torch.nn.Module):
    """out = conv3x3(tanh(x)) + emb[y] + 0.1 sin(t / 150): (B, C or 2C, H, W) for x (B, C, H, W)
    (with 2C, tanh of the last C: the learned-variance channels)."""

    def __init__(self, channels: int = 1, learn_sigma: bool = False, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        out = 2 * channels if learn_sigma else channels
        self.weight = torch.nn.Parameter(0.3 * torch.randn(out, channels, 3, 3, generator=g))
        self.emb = torch.nn.Parameter(0.5 * torch.randn(11, out, generator=g))
        self.num_classes, self.null_class = 10, 10
        self.learn_sigma, self.in_channels = learn_sigma, channels

    def forward(self, x, t, y):
        C = x.shape[1]
        h = F.conv2d(torch.tanh(x), self.weight.to(x.dtype), padding=1)
        lab = 0.0 if y is None else self.emb.to(x.dtype)[y].view(x.shape[0], -1, 1, 1)
        out = h + lab + 0.1 * torch.sin(t.to(x.dtype) / 150).view(-1, 1, 1, 1)
        if self.learn_sigma:  # the variance channels (Improved DDPM's nu) live in [-1, 1]
            out = torch.cat([out[:, :C], torch.tanh(out[:, C:])], 1)
        return out


def schedules():
    from diffussm_lib.diffusion import NoiseSchedule

    return {"cosine": NoiseSchedule.cosine(1000), "linear100": NoiseSchedule.linear(100, 1e-3, 0.1)}


# name -> (sampler function name, schedule, learn_sigma, labels?, keyword arguments)
CASES = {
    "ddim_eps_w2_clip": (
        "ddim_sample",
        "cosine",
        False,
        True,
        dict(steps=10, guidance_scale=2.0, clip_x0=True),
    ),
    "ddim_v_eta_dyn_traj": (
        "ddim_sample",
        "cosine",
        False,
        True,
        dict(
            steps=12,
            eta=0.5,
            prediction="v",
            guidance_scale=3.0,
            dynamic_threshold=0.9,
            return_trajectory=True,
            trajectory_stride=5,
        ),
    ),
    "ddim_clip_keep_eps": (
        "ddim_sample",
        "cosine",
        False,
        True,
        dict(steps=7, clip_x0=True, eps_from_clipped_x0=False, guidance_scale=0.0),
    ),
    "ddim_uncond_grid": (
        "ddim_sample",
        "cosine",
        False,
        False,
        dict(timesteps=[990, 700, 300, 40, 3]),
    ),
    "ddpm_small_w1.5_clip": (
        "ddpm_sample",
        "cosine",
        False,
        True,
        dict(steps=20, guidance_scale=1.5, clip_x0=True),
    ),
    "ddpm_large_v_all": (
        "ddpm_sample",
        "linear100",
        False,
        False,
        dict(variance="fixed_large", prediction="v", return_trajectory=True, trajectory_stride=9),
    ),
    "ddpm_learned": (
        "ddpm_sample",
        "cosine",
        True,
        True,
        dict(steps=10, variance="learned_range", guidance_scale=2.0),
    ),
    "dpm2_eps_w2_clip": (
        "dpm_solver_sample",
        "cosine",
        False,
        True,
        dict(steps=8, guidance_scale=2.0, clip_x0=True, return_trajectory=True),
    ),
    "dpm1_v_dyn": (
        "dpm_solver_sample",
        "cosine",
        False,
        True,
        dict(steps=6, order=1, prediction="v", dynamic_threshold=0.95, guidance_scale=4.0),
    ),
    "dpm2_ddim_grid_linear": (
        "dpm_solver_sample",
        "linear100",
        True,
        True,
        dict(timesteps=[99, 80, 51, 20, 7, 0], guidance_scale=2.5),
    ),
}

# name -> (sampler, learn_sigma, keyword arguments of generate)
GENERATE = {
    "generate_ddim": ("ddim", False, dict(steps=9, guidance=2.0, batch_size=3)),
    "generate_ddim_eta": ("ddim", False, dict(steps=9, guidance=2.0, eta=0.3, batch_size=8)),
    "generate_ddpm": ("ddpm", True, dict(steps=15, guidance=1.5, batch_size=5)),
    "generate_dpm": (
        "dpm_solver++",
        False,
        dict(steps=6, guidance=3.0, prediction="v", batch_size=8),
    ),
}

# name -> (learn_sigma, keyword arguments of diffusion_loss)
LOSSES = {
    "loss_eps": (False, dict(prediction="eps")),
    "loss_v_min_snr": (False, dict(prediction="v", weighting="min_snr")),
    "loss_v_min_snr_plus_one": (False, dict(prediction="v", weighting="min_snr_plus_one")),
    "loss_eps_min_snr": (False, dict(prediction="eps", weighting="min_snr", min_snr_gamma=3.0)),
    "loss_hybrid_v": (True, dict(prediction="v")),
    "loss_hybrid_eps": (True, dict(prediction="eps", vlb_weight=0.01)),
}


def x_T():
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(1234))


def run_case(name: str) -> dict:
    import diffussm_lib.diffusion as D

    fn, sched, sigma, labelled, kw = CASES[name]
    out = getattr(D, fn)(
        RandomDenoiser(learn_sigma=sigma),
        schedules()[sched],
        None,
        LABELS if labelled else None,
        x_T=x_T(),
        generator=torch.Generator().manual_seed(7),
        **kw,
    )
    if not kw.get("return_trajectory"):
        return {name: out}
    return {
        name: out.images,
        f"{name}/xs": out.xs,
        f"{name}/x0_preds": out.x0_preds,
        f"{name}/steps": out.timesteps,
    }


def run_generate(name: str) -> dict:
    from diffussm_lib.sampling import generate

    sampler, sigma, kw = GENERATE[name]
    return {
        name: generate(
            RandomDenoiser(learn_sigma=sigma),
            schedules()["cosine"],
            8,
            LABELS.clamp(max=9),
            image_size=8,
            channels=1,
            sampler=sampler,
            seed=11,
            device="cpu",
            **kw,
        )
    }


def run_loss(name: str) -> dict:
    from diffussm_lib.diffusion import diffusion_loss

    sigma, kw = LOSSES[name]
    x0 = torch.rand(SHAPE, generator=torch.Generator().manual_seed(3)) * 2 - 1
    loss = diffusion_loss(
        RandomDenoiser(learn_sigma=sigma),
        schedules()["cosine"],
        x0,
        LABELS,
        generator=torch.Generator().manual_seed(5),
        **kw,
    )
    return {name: loss.detach().reshape(1)}


def everything() -> dict:
    out = {}
    with torch.no_grad():
        for name in CASES:
            out.update(run_case(name))
        for name in GENERATE:
            out.update(run_generate(name))
    for name in LOSSES:
        out.update(run_loss(name))
    assert all(torch.isfinite(v.double()).all() for v in out.values())
    assert not math.isnan(sum(float(v.double().abs().sum()) for v in out.values()))
    return out


if __name__ == "__main__":
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in everything().items()}
    save_file(tensors, str(FILE))
    print(f"wrote {len(tensors)} tensors to {FILE}")
