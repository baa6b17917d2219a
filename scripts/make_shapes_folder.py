"""Write a small image folder to try "Train on your own images" with: 3 classes of drawn shapes.

    python scripts/make_shapes_folder.py --output data/shapes_colour [--grey] [--size 32] [--per-class 200] [--seed 0]

``<output>/<class>/<i>.png`` for the classes ``circle``, ``square`` and ``triangle``: one filled shape
per image, of random size, place and colour (grey level with ``--grey``, which writes 1-channel PNGs)
on a random background. The layout is the one ``data.name: folder`` reads; put your own images in the
same layout instead. Seeded: the same flags write the same files. Refuses a folder that is not empty.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle")


def shape_image(kind: str, size: int, grey: bool, rng: np.random.Generator) -> Image.Image:
    """One ``size`` x ``size`` image: a filled ``kind`` on a background of another colour."""
    mode = "L" if grey else "RGB"

    def colour(lo, hi):
        v = rng.integers(lo, hi, 1 if grey else 3)
        return int(v[0]) if grey else tuple(int(c) for c in v)

    dark_on_light = rng.random() < 0.5
    img = Image.new(mode, (size, size), colour(150, 256) if dark_on_light else colour(0, 100))
    fill = colour(0, 100) if dark_on_light else colour(150, 256)
    r = rng.uniform(0.2, 0.4) * size  # half the shape's width
    cx, cy = rng.uniform(r, size - r, 2)
    draw = ImageDraw.Draw(img)
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif kind == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    return img


def write_shapes_folder(
    output: str | Path, size: int = 32, per_class: int = 200, grey: bool = False, seed: int = 0
) -> Path:
    """Write the folder (see the module docstring); returns its path."""
    out = Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SystemExit(f"{out} exists and is not an empty folder: choose another --output")
    rng = np.random.default_rng(seed)
    for kind in CLASSES:
        (out / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape_image(kind, size, grey, rng).save(out / kind / f"{i:04d}.png")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--output", required=True, help="the folder to write (created; must not hold anything yet)"
    )
    ap.add_argument(
        "--size", type=int, default=32, help="height = width of every image (default 32)"
    )
    ap.add_argument("--per-class", type=int, default=200, help="images per class (default 200)")
    ap.add_argument("--grey", action="store_true", help="grey 1-channel images (default: colour)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.size < 4 or args.per_class < 1:
        ap.error("--size must be >= 4 and --per-class >= 1")
    out = write_shapes_folder(args.output, args.size, args.per_class, args.grey, args.seed)
    print(
        f"wrote {len(CLASSES)} classes x {args.per_class} {'grey' if args.grey else 'colour'} "
        f"{args.size}x{args.size} images to {out}",
        file=sys.stdout,
    )


if __name__ == "__main__":
    main()
