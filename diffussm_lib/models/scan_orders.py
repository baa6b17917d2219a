"""Scan orders (notebook 08): in which order an SSM reads the tokens of an image grid.

DiffuSSM flattens the h x w grid of (patch) tokens in raster order, so the token below (r + 1, c)
sits w positions after (r, c). A scan order is a permutation of the grid: ``scan_order(name, h, w)``
returns ``(perm, inv)``, LongTensors of length h w, with

    perm[raster position r w + c] = the sequence position of grid cell (r, c),
    inv[sequence position s]      = the raster position read at step s      (inv = perm^-1),

so ``tokens[:, inv]`` puts raster-ordered tokens (B, L, D) into sequence order and ``seq[:, perm]``
puts them back. Orders:

* ``raster``: row by row, left to right (the paper's);
* ``snake``: row by row, every other row right to left (boustrophedon): consecutive positions are
  always grid neighbours;
* ``column`` / ``column_snake``: the same down the columns;
* ``hilbert``: the generalized Hilbert curve ("gilbert", J. Cervenyi's construction, written here
  from its description) for any h, w: a rectangle is split in two (or three) sub-rectangles along
  its long side, recursively, keeping the path continuous; for powers of two it is Hilbert's curve.
  Consecutive positions are 4-neighbours, except for one diagonal step on grids whose longer side
  is odd and shorter side even and at least 4 (e.g. 4 x 5); square grids have none (both checked in
  the tests, for every size up to 16 x 16);
* ``random``: a fixed random permutation (seed 0): the control that destroys locality.

Dimension letters: the glossary in ``diffussm_lib/__init__.py``; here h = H/p and w = W/p.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterator, List, Sequence, Tuple, Union

import torch

ORDERS = ("raster", "snake", "column", "column_snake", "hilbert", "random")


def _sign(v: int) -> int:
    return (v > 0) - (v < 0)


def _gilbert(x: int, y: int, ax: int, ay: int, bx: int, by: int) -> Iterator[Tuple[int, int]]:
    """Cells (x, y) of the rectangle spanned from (x, y) by the major axis (ax, ay) and the minor
    axis (bx, by), in curve order."""
    w, h = abs(ax + ay), abs(bx + by)
    dax, day, dbx, dby = _sign(ax), _sign(ay), _sign(bx), _sign(by)
    if h == 1:  # a single row: walk it
        for _ in range(w):
            yield x, y
            x, y = x + dax, y + day
        return
    if w == 1:  # a single column: walk it
        for _ in range(h):
            yield x, y
            x, y = x + dbx, y + dby
        return
    ax2, ay2, bx2, by2 = ax // 2, ay // 2, bx // 2, by // 2
    w2, h2 = abs(ax2 + ay2), abs(bx2 + by2)
    if 2 * w > 3 * h:  # long and thin: split the major axis
        if w2 % 2 and w > 2:
            ax2, ay2 = ax2 + dax, ay2 + day  # keep both halves of even length
        yield from _gilbert(x, y, ax2, ay2, bx, by)
        yield from _gilbert(x + ax2, y + ay2, ax - ax2, ay - ay2, bx, by)
    else:  # split in three: up, across, back down
        if h2 % 2 and h > 2:
            bx2, by2 = bx2 + dbx, by2 + dby
        yield from _gilbert(x, y, bx2, by2, ax2, ay2)
        yield from _gilbert(x + bx2, y + by2, ax, ay, bx - bx2, by - by2)
        yield from _gilbert(
            x + (ax - dax) + (bx2 - dbx),
            y + (ay - day) + (by2 - dby),
            -bx2,
            -by2,
            -(ax - ax2),
            -(ay - ay2),
        )


def _cells(name: str, h: int, w: int) -> List[Tuple[int, int]]:
    """Grid cells (row, col) in the order ``name`` reads them."""
    if name == "raster":
        return [(r, c) for r in range(h) for c in range(w)]
    if name == "snake":
        return [(r, c if r % 2 == 0 else w - 1 - c) for r in range(h) for c in range(w)]
    if name == "column":
        return [(r, c) for c in range(w) for r in range(h)]
    if name == "column_snake":
        return [(r if c % 2 == 0 else h - 1 - r, c) for c in range(w) for r in range(h)]
    if name == "hilbert":
        xy = _gilbert(0, 0, w, 0, 0, h) if w >= h else _gilbert(0, 0, 0, h, w, 0)
        return [(y, x) for x, y in xy]
    raise AssertionError(name)


@lru_cache(maxsize=64)
def _order(name: str, h: int, w: int, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    if name == "random":
        inv = torch.randperm(h * w, generator=torch.Generator().manual_seed(seed))
    else:
        inv = torch.tensor([r * w + c for r, c in _cells(name, h, w)], dtype=torch.long)
    perm = torch.empty_like(inv)
    perm[inv] = torch.arange(h * w)
    return perm, inv


def scan_order(
    name: str, height: int, width: int, seed: int = 0
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(perm, inv)`` of the order ``name`` on a ``height`` x ``width`` grid (see the module
    docstring): LongTensors (height * width,) on the CPU; ``seed`` only matters for ``random``."""
    if name not in ORDERS:
        raise ValueError(
            f"unknown scan order {name!r}: choose one of {', '.join(ORDERS)} (model.scan_order)"
        )
    if height < 1 or width < 1:
        raise ValueError(
            f"a scan order needs a grid of at least 1 x 1 cells, got {height} x {width}"
        )
    perm, inv = _order(name, int(height), int(width), int(seed))
    return perm.clone(), inv.clone()


def layer_orders(spec: Union[str, Sequence[str]], depth: int) -> List[str]:
    """The order of each of ``depth`` layers: one name for all, or a list that layers cycle through
    (``["raster", "column"]`` alternates rows and columns). Names are checked."""
    names = [spec] if isinstance(spec, str) else list(spec)
    if not names:
        raise ValueError("model.scan_order: an empty list; give a name or a list of names")
    for n in names:
        if n not in ORDERS:
            raise ValueError(
                f"unknown scan order {n!r} in model.scan_order: choose from {', '.join(ORDERS)}"
            )
    return [names[i % len(names)] for i in range(depth)]
