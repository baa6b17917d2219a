# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Solutions: Training DiffuSSM on MNIST
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/diffussm-course/diffussm-course/blob/main/notebooks/solutions/05_training_loop_solutions.ipynb)
#
# Solutions to the exercises of notebook 05, each checked with `assert`s, and answers to its
# "Check your understanding" questions. The training runs use the tiny config (`configs/tiny.yaml`,
# batch 16), so every solution takes seconds on a CPU.
#
# *Outputs shown: executed in full mode on 2026-12-03, CPU AMD EPYC, 2 torch threads, in 7 s.*

# %%
# Setup (the same in every notebook). In a clone the library is two folders up; in Colab this cell
# clones (or updates) the course and installs the library itself, nothing Colab already has.
import importlib.util, os, subprocess, sys
REPO_URL = os.environ.get("DIFFUSSM_REPO_URL", "https://github.com/diffussm-course/diffussm-course")
try:
    import google.colab  # noqa: F401  (importable only in Colab)
    IN_COLAB = True
except ImportError:
    IN_COLAB = False
if IN_COLAB and importlib.util.find_spec("diffussm_lib") is None:
    CLONE = os.path.join("/content" if os.path.isdir("/content") else os.getcwd(), "diffussm-course")
    if os.path.isdir(os.path.join(CLONE, ".git")):
        subprocess.run(["git", "-C", CLONE, "pull", "-q", "--ff-only"], check=True)
    else:
        subprocess.run(["git", "clone", "-q", "--depth=1", REPO_URL, CLONE], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", CLONE],
                   check=True)
    sys.path.insert(0, CLONE)
    from google.colab import output
    output.enable_custom_widget_manager()          # the viewer's sliders (ipywidgets) in Colab
elif importlib.util.find_spec("diffussm_lib") is None:
    sys.path.insert(0, os.path.abspath(os.path.join("..", "..")))
from diffussm_lib.env import environment_report, by_mode, seed_everything
print(environment_report())

# %%
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

import diffussm_lib
from diffussm_lib.config import load_config
from diffussm_lib.data import dataset_from_config
from diffussm_lib.training import METRICS_NAME, Callback, Trainer, ema_decay_at, lr_at

seed_everything(0)
torch.set_num_threads(by_mode(full=torch.get_num_threads(), fast=1))  # CI shares 2 cores
ROOT = Path(diffussm_lib.__file__).resolve().parents[1]
_tmp = tempfile.TemporaryDirectory(prefix="diffussm05_solutions_")   # scratch run folders, removed at exit
RUNS = Path(_tmp.name)
device = torch.device("cpu")
START = time.perf_counter()

default_cfg = load_config(ROOT / "configs" / "mnist_diffussm.yaml")
tiny = load_config(ROOT / "configs" / "tiny.yaml")
tiny = replace(tiny, train=replace(tiny.train, batch_size=16, sample_every=0, log_every=1))
data = dataset_from_config(tiny.data, "train")
print(f"tiny config: width {tiny.model.hidden_dim}, depth {tiny.model.depth}, batch {tiny.train.batch_size}, "
      f"T = {tiny.diffusion.timesteps}")

# %% [markdown]
# ## Solution 1
#
# Update number $s$ (0-based) uses $\text{lr}\cdot\min\big(1, (s+1)/w\big)$ with $w$ = `warmup_steps`.
# Over the warm-up the rates are $\text{lr}\cdot 1/w, 2/w, \dots, w/w$, whose sum is
# $\text{lr}\cdot\frac{w(w+1)/2}{w} = \text{lr}\,\frac{w+1}{2}$: the warm-up's $w$ updates move the weights
# about as far as $(w+1)/2$ updates at the full rate, a fraction $(w+1)/(2w)$, just over half.

# %%
tc = default_cfg.train
steps = torch.arange(1000, dtype=torch.float64)
lr_vec = tc.lr * torch.clamp((steps + 1) / tc.warmup_steps, max=1.0)
lr_loop = torch.tensor([lr_at(int(s), tc.lr, tc.warmup_steps) for s in steps], dtype=torch.float64)
assert torch.allclose(lr_vec, lr_loop, rtol=1e-15, atol=0)
w = tc.warmup_steps
spent = lr_vec[:w].sum().item() / (w * tc.lr)
print(f"lr {tc.lr:g}, warm-up {w} updates: first update lr {lr_vec[0].item():.2e}, update {w - 1}: "
      f"{lr_vec[w - 1].item():.2e}; warm-up spends {spent:.4f} of w * lr (closed form (w+1)/(2w) = "
      f"{(w + 1) / (2 * w):.4f})")
assert abs(spent - (w + 1) / (2 * w)) < 1e-12
assert lr_vec[w - 1].item() == tc.lr and (lr_vec[w:] == tc.lr).all()

# %% [markdown]
# ## Solution 2
#
# The callback keeps $\theta_0$ in `on_train_begin`, the distance between EMA and live weights in
# `on_step`, the gradient norms in `on_log` (called after `on_step` at every logged step), and raises
# `StopRun` from `on_log` once the step reaches 5. The exception leaves `Trainer.train` through its
# `finally`, which still calls `on_train_end`.

# %%
class StopRun(Exception):
    """Raised by a callback to end a run early."""


def flat(params):
    return torch.cat([p.detach().flatten() for p in params])


class Watch(Callback):
    """Records gradient norms and the EMA-live distance; stops the run after update ``stop_at``."""

    def __init__(self, stop_at):
        self.stop_at, self.grad_norms, self.ema_distance = stop_at, [], []
        self.theta0, self.first_move, self.ended = None, None, False

    def on_train_begin(self, trainer):
        self.theta0 = flat(trainer.bare_model.parameters()).clone()

    def on_step(self, trainer, step):
        live, ema = flat(trainer.bare_model.parameters()), flat(trainer.ema.module.parameters())
        self.ema_distance.append((ema - live).norm().item())
        if step == 1:
            self.first_move = (live - self.theta0).norm().item()

    def on_log(self, trainer, record):
        self.grad_norms.append(record["grad_norm"])
        if record["step"] >= self.stop_at:
            raise StopRun(f"stopped by the callback at step {record['step']}")

    def on_train_end(self, trainer):
        self.ended = True


watch = Watch(stop_at=5)
trainer = Trainer(tiny, None, dataset=data, device=device, progress=False, log=lambda m: None, callbacks=[watch])
try:
    trainer.train(max_steps=20)
except StopRun as e:
    print(e)
print("gradient norms (before clipping):", [round(g, 3) for g in watch.grad_norms])
print("EMA - live distance after each update:", [round(d, 4) for d in watch.ema_distance])
ratio = watch.ema_distance[0] / watch.first_move
print(f"after update 1: |ema - theta_1| / |theta_1 - theta_0| = {ratio:.6f} "
      f"(ema_decay_at(0) = {ema_decay_at(0, tiny.train.ema_decay):.6f})")
assert trainer.step == 5 and len(watch.grad_norms) == 5 and watch.ended
assert watch.grad_norms == [r["grad_norm"] for r in trainer.history]
assert abs(ratio - ema_decay_at(0, tiny.train.ema_decay)) < 1e-4

# %% [markdown]
# ## Solution 3
#
# `Interrupt` raises at step 7, after the checkpoint of step 5 (checkpoints are written at the end of
# the iteration of a step that is a multiple of `checkpoint_every`). A fresh `Trainer` with
# `resume=True` loads that checkpoint and redoes steps 6 and 7: their batches and random numbers
# follow from the step number, so it repeats exactly what the lost steps did.

# %%
class SmallData:
    """The first ``n`` images of a dataset: ``x`` (n, C, H, W), ``y`` (n,)."""

    def __init__(self, dataset, n):
        self.x, self.y = dataset.x[:n], dataset.y[:n]

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class Interrupt(Callback):
    def __init__(self, at):
        self.at = at

    def on_step(self, trainer, step):
        if step == self.at:
            raise StopRun(f"simulated crash after update {step}")


small = SmallData(data, 64)                                   # 4 steps of 16 per epoch
cfg3 = replace(tiny, train=replace(tiny.train, checkpoint_every=5, log_every=1))
quiet = dict(dataset=small, device=device, progress=False, log=lambda m: None)

straight = Trainer(cfg3, None, **quiet)
straight.train(max_steps=12)

run_dir = RUNS / "resume_exercise"
try:
    Trainer(cfg3, run_dir, callbacks=[Interrupt(7)], **quiet).train(max_steps=12)
except StopRun as e:
    print(e)
resumed = Trainer(cfg3, run_dir, **quiet)
resumed.train(max_steps=12, resume=True)

for name, a, b in (("model", straight.bare_model.state_dict(), resumed.bare_model.state_dict()),
                   ("EMA", straight.ema.state_dict(), resumed.ema.state_dict())):
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=f"{name} {k}")
opt_a, opt_b = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
assert opt_a.keys() == opt_b.keys()
for i in opt_a:
    for key in ("step", "exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(opt_a[i][key], opt_b[i][key], rtol=1e-5, atol=1e-8, msg=f"AdamW {i} {key}")
loss_straight = [r["loss"] for r in straight.history if r["step"] > 5]
loss_resumed = [r["loss"] for r in resumed.history if r["step"] > 5]   # metrics.jsonl, read back
assert max(abs(a - b) for a, b in zip(loss_straight, loss_resumed)) < 1e-5
logged = [json.loads(line)["step"] for line in (run_dir / METRICS_NAME).read_text().splitlines()]
assert logged == list(range(1, 13)) == [r["step"] for r in resumed.history], logged
print(f"resumed at step 5, redid 6-7, ended at step {resumed.step}: model, EMA and AdamW state equal the "
      f"uninterrupted run's; losses of steps 6-12 agree to "
      f"{max(abs(a - b) for a, b in zip(loss_straight, loss_resumed)):.1e}; metrics.jsonl steps {logged}")

# %% [markdown]
# For question 3: what the stored 20-minute runs of the recipe (notebook 05, section 13) say about
# the EMA against the live weights, each run sampled both ways from the same noise.

# %%
from diffussm_lib.evaluation.speedrun import target_summary

stored = json.loads((ROOT / "benchmarks" / "results" / "speedrun.json").read_text())["runs"]
summary = target_summary(stored).splitlines()
print("\n".join(line for line in summary if "w=1.25" in line))
ema_decay_end = ema_decay_at(7000, default_cfg.train.ema_decay, True)
print(f"EMA decay after 7,000 updates, with the ramp: {ema_decay_end:.4f}")

# %%
print(f"solutions ran in {time.perf_counter() - START:.0f} s")

# %% [markdown]
# ## Answers
#
# 1. The output layer is zero-initialised and every block starts as the identity (adaLN-Zero), so
#    the network outputs exactly 0 at step 0 and the squared error is the target's own mean square.
#    For `eps` that is $E[\epsilon^2] = 1$. For `v`, $E[v^2] = \bar\alpha_t + (1 - \bar\alpha_t)E[x_0^2]$
#    (the cross term vanishes because $\epsilon$ has mean 0 and is independent of $x_0$); MNIST in
#    [-1, 1] is mostly background at $-1$, so $E[x_0^2]$ is about 0.93 (notebook 05 prints it) and the
#    initial v-loss is between that and 1.
# 2. (a) All randomness of step $s$ (label dropout, timesteps, noise) comes from a generator seeded
#    with (seed, $s$, rank), created afresh each step; (b) the batch of step $s$ follows from $s$ alone
#    (epoch $s$ // steps_per_epoch of a permutation seeded with (seed, epoch)); (c) the checkpoint
#    holds everything else the next step depends on: weights, EMA (and its update count, which sets
#    the decay warm-up), AdamW's moments and step counters, and the step. Drawing from the global RNG
#    (whose state is not saved), a data loader that shuffles without a seed, or a checkpoint without
#    the optimizer state would each make the resumed run diverge.
# 3. The live weights carry the noise of the last few minibatches; their exponential average over
#    about $1/(1-d)$ steps is smoother and samples better. With $d = 0.999$ the average would remember
#    the random initialisation for thousands of steps, so a short run's EMA would be mostly the
#    initial weights; the ramp $\min(d, (1+n)/(10+n))$ lets it follow the live weights closely early
#    on and reach the full decay later. The stored 20-minute runs (printed above) qualify the first
#    part: there the live weights sample no worse than the EMA (the paired test over the three seeds
#    says whether the small difference is shown). The recipe's learning rate decays to zero at the
#    end of the budget, so its last updates are tiny and the last weights are already an average of
#    sorts, while the EMA, still below 0.999 after 7,000 updates, also remembers weights from the
#    larger steps before them.
