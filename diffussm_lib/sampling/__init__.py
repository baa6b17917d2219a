"""Sampling from a trained model (notebook 06): labels, batched generation, images, the denoising viewer.

Modules
-------
generate   ``parse_labels`` and ``generate`` (any sampler of the registry, batch after batch)
images     uint8 arrays, ``make_grid``, ``save_png``, ``save_samples`` (what ``diffussm sample`` writes)
frames     ``ViewerFrames`` and ``compute_frames``: one sampling run with its trajectory, the guidance
           direction (``guidance_directions``) and the noise level (``log_snr``) of each frame
render     frames as pictures (panels, caption, ``noise_timeline``), PNG bytes, ``save_gif`` and
           ``strip_figure`` (static fallbacks)
viewer     ``denoising_viewer``: every frame in the page, a t slider and Play linked in the browser,
           sampler / steps / class / guidance / new-noise controls (ipywidgets)
"""

from .frames import (
    ALL_CLASSES,
    ViewerFrames,
    compute_frames,
    frames_from_result,
    guidance_directions,
    log_snr,
    viewer_labels,
)
from .generate import BATCH_CANDIDATES, fastest_batch_size, generate, parse_labels
from .images import (
    UNCONDITIONAL_LABEL,
    grid_columns,
    make_grid,
    save_png,
    save_samples,
    to_uint8_nhwc,
)
from .render import frame_png, noise_timeline, render_frame, render_frames, save_gif, strip_figure
from .viewer import DenoisingViewer, denoising_viewer

__all__ = [
    "ALL_CLASSES",
    "ViewerFrames",
    "compute_frames",
    "frames_from_result",
    "guidance_directions",
    "log_snr",
    "viewer_labels",
    "BATCH_CANDIDATES",
    "fastest_batch_size",
    "generate",
    "parse_labels",
    "UNCONDITIONAL_LABEL",
    "grid_columns",
    "make_grid",
    "save_png",
    "save_samples",
    "to_uint8_nhwc",
    "frame_png",
    "noise_timeline",
    "render_frame",
    "render_frames",
    "save_gif",
    "strip_figure",
    "DenoisingViewer",
    "denoising_viewer",
]
