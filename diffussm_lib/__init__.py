"""diffussm_lib: the library the DiffuSSM course builds, one module per idea.

Modules
-------
env        environment report, the fast-mode knob, seeding, device choice
data       MNIST (download + md5 verification, no torchvision) and 1/3-channel image datasets
config     typed dataclass configs loaded from YAML, with strict key/type checking
ssm        S4D, selective scan, causal conv1d, the bidirectional SSM layer   (notebooks 01-02)
diffusion  noise schedules, q_sample, losses, DDPM/DDIM samplers, guidance      (notebook 04)

Sub-modules are imported lazily by name, e.g. ``from diffussm_lib.data import load_mnist``.
"""

__version__ = "0.1.0"
