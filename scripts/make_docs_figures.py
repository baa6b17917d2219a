"""Write the README's pictures of the pretrained model into docs/ (for readers on GitHub).

    python scripts/make_docs_figures.py [--checkpoint checkpoints/mnist_diffussm] [--out docs]

* ``docs/pretrained_samples.png``: 100 samples, ten of each class (rows), DDIM 50 steps, guidance ``--guidance``;
* ``docs/denoising.gif``: the denoising viewer's frames (x_t and predicted x_0 for the digits 0-9) as a GIF,
  made by the same ``compute_frames`` / ``save_gif`` that notebook 06 uses.
Seeded: the same checkpoint gives the same pictures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from diffussm_lib.diffusion import NoiseSchedule
from diffussm_lib.sampling import (
    compute_frames,
    generate,
    make_grid,
    parse_labels,
    save_gif,
    save_png,
)
from diffussm_lib.training import load_model


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "mnist_diffussm"))
    ap.add_argument("--out", default=str(REPO / "docs"))
    ap.add_argument("--guidance", type=float, default=1.2)
    ap.add_argument("--steps", type=int, default=50, help="DDIM steps")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, cfg, ckpt = load_model(args.checkpoint)
    schedule = NoiseSchedule.from_config(cfg.diffusion)
    k = cfg.model.num_classes
    labels = (
        parse_labels("all", 10 * k, k).view(-1, k).T.reshape(-1)
    )  # row r: ten samples of class r
    images = generate(
        model,
        schedule,
        len(labels),
        labels,
        image_size=cfg.model.image_size,
        channels=cfg.model.in_channels,
        sampler="ddim",
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        prediction=cfg.diffusion.prediction,
    )
    grid = save_png(make_grid(images, ncol=10), out / "pretrained_samples.png", scale=2)
    frames = compute_frames(
        model,
        schedule,
        torch.arange(k),
        image_size=cfg.model.image_size,
        sampler="ddim",
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        prediction=cfg.diffusion.prediction,
    )
    gif = save_gif(frames, out / "denoising.gif", fps=10)
    print(
        f"checkpoint {ckpt.path} (step {ckpt.step}): wrote {grid} and {gif} ({len(frames)} frames)"
    )


if __name__ == "__main__":
    main()
