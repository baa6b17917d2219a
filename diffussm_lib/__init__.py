"""diffussm_lib: the library the DiffuSSM course builds. Its folders follow the notebooks.

    ssm/         01-02  S4D, the selective scan, causal conv1d, the bidirectional SSM layer
    models/      03     the DiffuSSM denoiser (start reading at models/diffussm.py), DiT, factory, FLOPs;
                 08     scan orders (models/scan_orders.py)
    diffusion/   04     schedules, losses, DDPM / DDIM samplers, guidance, the sampler registry;
                 06     DPM-Solver++ (diffusion/dpm_solver.py)
    training/    05     the training step and loop, callbacks, EMA, DDP, checkpoints, export
    sampling/    06     generate, image files, the denoising viewer
    evaluation/  07     FID-LeNet, evaluate, comparisons at equal compute, scaling
    env, config, data, atomic, errors, cli: what every chapter uses (environment report and devices,
    strict YAML configs, verified datasets, atomic file writes, ``UserError`` (a mistake in the
    input, told apart from a bug in the library), the ``diffussm`` command).

Glossary of dimension letters
-----------------------------
One meaning per letter, in every module, docstring and notebook (the paper's name in brackets):

    B   batch size
    C   image channels (1 for MNIST)
    H, W  image height and width
    p   patch size (the paper uses none: p = 1)
    L   sequence length the SSM sees, L = H W / p^2                        [L]
    M   hourglass ratio: the dense layers see J = L / M tokens              [M]
    J   shortened length, J = L / M: the residual stream of DiffuSSM        [J]
        (DiT's stream has L tokens; shapes written (B, J, D) read (B, L, D) there)
    D   model width (hidden_dim)                                            [D]
    G   channels of an S4D bank: D, or 2D when one bank holds both directions
    N   SSM state size (ssm_state; S4D keeps N/2 complex modes)            [N]
    T   diffusion steps of the noise schedule (1000)                        [T]
    S   sampling steps of a sampler run (DPM-Solver++ 15 by default)
    F   feature width of a token (C p^2 after patchify)
    K   an SSM's convolution kernel (K_0 ... K_{L-1}); k, l, j, n, t are indices
    E   the SSM's skip (feed-through) term, y = K * u + E u (the code keeps the S4 / mamba-ssm
        name ``D`` for this parameter)
    Q   a block length inside a kernel or scan (about sqrt(L))

Sample counts are written out ("1,000 samples"), never with a letter of this table.

Modules say "dimension letters: the glossary in diffussm_lib/__init__.py" instead of repeating it.
In code a dimension is named by its config key (``hidden_dim`` D, ``hourglass_ratio`` M,
``ssm_state`` N, ``patch_size`` p, ``in_channels`` C), never by an alias.
"""

from .env import __version__  # noqa: I001  (first: the version has no dependencies)
from .env import environment_report, fast_mode, by_mode, seed_everything, resolve_device
from .config import ExperimentConfig, ModelConfig, load_config
from .data import mnist_dataset
from .ssm import S4D, BidirectionalSSM, SelectiveSSM, causal_conv1d, selective_scan
from .models import (
    DiffuSSM,
    DiffuSSMBlock,
    DiT,
    Hourglass,
    build_model,
    count_flops,
    count_params,
    scan_order,
)
from .diffusion import NoiseSchedule, ddim_sample, ddpm_sample, diffusion_loss, q_sample
from .training import EMA, Callback, Trainer, export_weights, load_checkpoint, load_model
from .sampling import compute_frames, denoising_viewer, generate, make_grid, save_gif
from .evaluation import evaluate_checkpoint, evaluate_images, sample_and_evaluate, target_check

__all__ = [
    "__version__",
    "environment_report",
    "fast_mode",
    "by_mode",
    "seed_everything",
    "resolve_device",
    "ExperimentConfig",
    "ModelConfig",
    "load_config",
    "mnist_dataset",
    "S4D",
    "BidirectionalSSM",
    "SelectiveSSM",
    "causal_conv1d",
    "selective_scan",
    "DiffuSSM",
    "DiffuSSMBlock",
    "DiT",
    "Hourglass",
    "build_model",
    "count_flops",
    "count_params",
    "scan_order",
    "NoiseSchedule",
    "ddim_sample",
    "ddpm_sample",
    "diffusion_loss",
    "q_sample",
    "EMA",
    "Callback",
    "Trainer",
    "export_weights",
    "load_checkpoint",
    "load_model",
    "compute_frames",
    "denoising_viewer",
    "generate",
    "make_grid",
    "save_gif",
    "evaluate_checkpoint",
    "evaluate_images",
    "sample_and_evaluate",
    "target_check",
]
