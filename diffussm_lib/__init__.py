"""diffussm_lib: the library the DiffuSSM course builds, one module per idea.

Modules
-------
env        environment report, the fast-mode knob, seeding, device choice
data       MNIST (download + md5 verification, no torchvision) and 1/3-channel image datasets
config     typed dataclass configs loaded from YAML, with strict key/type checking
ssm           S4D, selective scan, causal conv1d, the bidirectional SSM layer  (notebooks 01-02)
conditioning  timestep/class embeddings (with the null class), adaLN-Zero       (notebook 03)
patches       patchify/unpatchify in raster order, size checks, input/output heads
hourglass     the DiffuSSM block: up, bidirectional SSM, down, gate, skip
denoiser      the skeleton shared by DiffuSSM and DiT
diffussm      the DiffuSSM denoiser;   dit: the DiT baseline of the same interface
models        build_model(ModelConfig), parameter and FLOP counts
diffusion     noise schedules, q_sample, losses, DDPM/DDIM samplers, guidance  (notebook 04)
ema, checkpoint, trainer, sampling, cli   training, atomic safetensors checkpoints, the CLI (notebook 05)
viewer        the denoising viewer (ipywidgets) and its GIF                      (notebook 06)
lenet, fid    FID-LeNet: fixed MNIST feature extractor, Fréchet distance, class checks

Sub-modules are imported lazily by name, e.g. ``from diffussm_lib.data import load_mnist``.
"""

__version__ = "0.1.0"
