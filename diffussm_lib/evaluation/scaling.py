"""How the two backbones scale with the input size (notebook 07, ``benchmarks/bench_quality.py``).

``scaling_rows`` counts forward FLOPs (``count_flops``, per image) and measures the median forward
time of each model config from 28x28 to 256x256 inputs, keeping its patch size, width and depth;
``scaling_table`` prints them as markdown.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from ..config import ModelConfig
from ..models import build_model, count_flops, count_params


# --------------------------------------------------------------------------------------------
def _forward_seconds(model: nn.Module, x, t, y, repeats: int) -> float:
    """Median time of ``repeats`` forwards (the caller has already run one: no extra warm-up)."""
    with torch.inference_mode():
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x, t, y)
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def scaling_rows(
    configs: Dict[str, ModelConfig],
    sizes: Sequence[int] = (28, 32, 64, 128, 256),
    *,
    batch: int = 1,
    repeats: int = 3,
    measure_time: bool = True,
    max_seconds: Optional[float] = None,
) -> List[Dict]:
    """Forward FLOPs (``count_flops``, per image) and median measured forward time (batch ``batch``)
    of each model config at each image size H = W (the config's patch size, width and depth kept).

    ``max_seconds``: skip timing a model at larger sizes once one forward took longer than this
    (the FLOPs are still counted). Returns one dict per (config, size).
    """
    rows = []
    slow = set()
    for size in sizes:
        for name, mc in configs.items():
            mc = replace(mc, image_size=size)
            torch.manual_seed(0)
            model = build_model(mc).eval()
            x = torch.randn(batch, mc.in_channels, size, size)
            t = torch.full((batch,), 500, dtype=torch.long)
            y = torch.zeros(batch, dtype=torch.long)
            with torch.inference_mode():
                flops = count_flops(
                    model, x[:1], t[:1], y[:1]
                )  # per image; also the timing's warm-up
            seconds = None
            if measure_time and name not in slow:
                seconds = _forward_seconds(model, x, t, y, repeats)
                if max_seconds is not None and seconds > max_seconds:
                    slow.add(name)
            rows.append(
                {
                    "model": name,
                    "size": size,
                    "tokens": (size // mc.patch_size) ** 2,
                    "gflops": flops / 1e9,
                    "seconds": seconds,
                    "params": count_params(model),
                }
            )
    return rows


def scaling_table(rows: Sequence[Dict]) -> str:
    """Markdown: sizes as rows, models as column pairs (GFLOPs, forward time)."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    by = {(r["model"], r["size"]): r for r in rows}
    head = "| input | tokens L | " + " | ".join(f"{m} GFLOP | {m} forward" for m in models) + " |"
    out = [head, "|---|---|" + "---|---|" * len(models)]
    for s in sizes:
        cells = []
        for m in models:
            r = by[(m, s)]
            t = "not timed" if r["seconds"] is None else f"{1000 * r['seconds']:.0f} ms"
            cells.append(f"{r['gflops']:.2f} | {t}")
        out.append(f"| {s}x{s} | {by[(models[0], s)]['tokens']} | " + " | ".join(cells) + " |")
    return "\n".join(out)
