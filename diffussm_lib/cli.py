"""The ``diffussm`` command (also ``python -m diffussm_lib``): one command, one subcommand per task.

    diffussm train  --config configs/mnist_diffussm.yaml [--output-dir DIR] [--max-steps N]
                    [--max-minutes M] [--resume]
    diffussm sample --checkpoint CKPT --output-dir DIR [--num-samples N]
                    [--sampler ddim|ddpm|dpm_solver++] [--steps S] [--guidance W]
                    [--labels 0,1,...|all] [--seed S]
    diffussm export --checkpoint CKPT --output-dir DIR      (EMA weights + config + model card)
    diffussm evaluate --checkpoint CKPT [--num-samples N] [--sampler ...] [--steps S] [--guidance W]
                      (FID-LeNet for MNIST; for a model of an image folder, FD-classifier: see
                      ``evaluation/folder_metric.py``)

``train`` writes ``checkpoint.safetensors`` (atomically, every ``train.checkpoint_every`` steps and
at the end), ``config.yaml``, ``metrics.jsonl`` and ``samples/*.png`` into its output folder
(default ``runs/<config name>``). Killed at any moment, ``--resume`` continues from the last
checkpoint. Under ``torchrun --nproc_per_node=K -m diffussm_lib train ...`` it trains with
DistributedDataParallel on K processes (one per GPU, or gloo on CPU).

``sample`` writes ``samples.npz`` (``images`` uint8 (N, H, W, C), ``labels`` (N,), -1 where
unconditional) and ``grid.png``. ``--checkpoint`` is a checkpoint file or a folder holding one (a
run folder, or exported weights such as ``checkpoints/mnist_diffussm``).

Errors in the input (config, checkpoint, data, labels, devices, files: ``errors.UserError``) print
one clear line and exit with status 2 (``--debug`` or ``DIFFUSSM_DEBUG=1`` for the traceback); a
non-finite loss exits with status 3; Ctrl-C with 130, saying what was kept (the last checkpoint; no
half-written file). Any other exception is a bug in the library: the traceback, a line saying where
to report it, and status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from .atomic import atomic_write_text
from .config import load_config
from .diffusion import (
    DEFAULT_SAMPLER,
    DDIM_DEFAULT_STEPS,
    DPM_SOLVER_DEFAULT_STEPS,
    SAMPLERS,
    NoiseSchedule,
    step_times,
    steps_label,
)
from .env import resolve_device
from .errors import REPORT_BUGS, UserError
from .evaluation import evaluate_checkpoint, missing_report_fields, report_from_dict
from .sampling import generate, grid_columns, parse_labels, save_samples
from .training import (
    CHECKPOINT_NAME,
    NonFiniteLossError,
    Trainer,
    export_weights,
    load_checkpoint,
    load_model,
    read_config,
    shutdown_distributed,
)

EXIT_BUG = 1  # an internal error: a bug in the library (traceback + where to report)
EXIT_USAGE = 2
EXIT_NONFINITE = 3
EXIT_INTERRUPTED = 130  # the shell's convention for Ctrl-C (128 + SIGINT)
STEPS_HELP = (
    f"sampling steps (default: {DDIM_DEFAULT_STEPS} for ddim, {DPM_SOLVER_DEFAULT_STEPS} "
    "for dpm_solver++, all T for ddpm)"
)
BATCH_HELP = "images per sampler run (default: the fastest here, measured)"
CHECKPOINT_HELP = "checkpoint file, run folder, or exported weights folder"


# --------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------
def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        help="experiment YAML (e.g. configs/mnist_diffussm.yaml); optional "
        "with --resume (then the run's own config is used)",
    )
    p.add_argument("--output-dir", help="run folder (default: runs/<config name>)")
    p.add_argument(
        "--max-steps",
        type=int,
        help="train until this many updates in total (overrides train.max_steps)",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        help="training-time budget: stop once the time spent in training steps "
        "(summed over resumed sessions) reaches this, or at max steps, whichever "
        "comes first",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the run folder's checkpoint (starts from scratch if there is none)",
    )
    p.add_argument(
        "--init-from",
        metavar="CKPT",
        help="start from these weights (e.g. checkpoints/mnist_diffussm); fresh optimizer and step",
    )
    p.add_argument(
        "--device",
        help="cpu, cuda, cuda:1, ... (default: CUDA if available; cuda:LOCAL_RANK under torchrun)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_train(args: argparse.Namespace) -> int:
    out = Path(args.output_dir) if args.output_dir else None
    if args.config:
        cfg = load_config(args.config)
    elif args.resume and out is not None and (out / CHECKPOINT_NAME).exists():
        cfg = load_checkpoint(out / CHECKPOINT_NAME).config
    else:
        raise UsageError(
            "train needs --config (or --resume with an --output-dir that holds a checkpoint)"
        )
    out = out or Path("runs") / cfg.name
    if args.max_steps is not None and args.max_steps < 0:
        raise UsageError(f"--max-steps must be >= 0, got {args.max_steps}")
    if args.max_minutes is not None and not args.max_minutes > 0:
        raise UsageError(f"--max-minutes must be > 0, got {args.max_minutes}")
    if (out / CHECKPOINT_NAME).exists() and not args.resume:
        raise UsageError(
            f"{out} already holds a checkpoint ({out / CHECKPOINT_NAME}); pass "
            "--resume to continue that run, or choose another --output-dir"
        )
    if args.resume and args.init_from:
        raise UsageError("--resume and --init-from exclude each other")
    check_writable(out, "--output-dir")
    trainer = None
    try:
        trainer = Trainer(
            cfg, out, device=args.device, init_from=args.init_from, progress=not args.no_progress
        )
        budget = None if args.max_minutes is None else 60.0 * args.max_minutes
        res = trainer.train(max_steps=args.max_steps, resume=args.resume, max_seconds=budget)
        if trainer.dist.is_main:
            history = res.history
            last = f"{history[-1]['loss']:.4f}" if history else "n/a"
            print(
                f"done: step {res.step}, last logged loss {last}, {res.images_per_sec:.1f} "
                f"images/s; checkpoint {res.checkpoint}",
                flush=True,
            )
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_kept(trainer, out)) from None
    except OSError as e:
        raise OSError(f"{e}; {_kept(trainer, out)}") from e
    finally:
        shutdown_distributed()
    return 0


def _kept(trainer: Optional[Trainer], out: Path) -> str:
    """What a stopped training run leaves: its last complete checkpoint (written atomically)."""
    if trainer is None or trainer.last_checkpoint is None:
        return f"no checkpoint had been written in {out} yet"
    return (
        f"at step {trainer.step}; the last checkpoint (step {trainer.last_checkpoint_step}, "
        f"{trainer.last_checkpoint}) is complete and kept: continue with "
        f"`diffussm train --output-dir {out} --resume`"
    )


def check_writable(folder: Path, flag: str) -> None:
    """Create ``folder`` and a file in it, before any long work: a folder that cannot be written (or
    a file in its place) fails now, naming ``flag``, not after an hour of training or sampling.
    Leaves nothing behind (the folders it made are removed again), so bad input found later writes
    nothing. Under torchrun only rank 0 checks: it is the one process that writes files."""
    if os.environ.get("RANK", "0") != "0":
        return
    made = []
    try:
        missing = folder
        while not missing.exists() and missing != missing.parent:
            made.append(missing)
            missing = missing.parent
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".diffussm-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UsageError(
            f"{flag} {folder}: cannot write there ({type(e).__name__}: {e.strerror or e})"
        ) from None
    finally:
        for d in made:  # deepest first
            try:
                d.rmdir()
            except OSError:
                pass


# --------------------------------------------------------------------------------------------
# sample
# --------------------------------------------------------------------------------------------
def add_sample_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument("--output-dir", required=True, help="where samples.npz and grid.png go")
    p.add_argument("--num-samples", type=int, default=8, help="number of images N (default 8)")
    p.add_argument(
        "--sampler",
        choices=tuple(SAMPLERS),
        default=DEFAULT_SAMPLER,
        help=f"default {DEFAULT_SAMPLER}",
    )
    p.add_argument("--steps", type=int, help=STEPS_HELP)
    p.add_argument(
        "--guidance",
        type=float,
        default=1.0,
        help="classifier-free guidance scale w (1 = plain conditional; needs --labels)",
    )
    p.add_argument(
        "--labels",
        help="'all' (every class in equal numbers) or a list like 0,1,7 "
        "(repeated cyclically); omitted = unconditional",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eta", type=float, default=0.0, help="DDIM noise (0 = deterministic)")
    p.add_argument(
        "--weights", choices=("ema", "model"), default="ema", help="which weights (default ema)"
    )
    p.add_argument("--batch-size", type=int, help=BATCH_HELP)
    p.add_argument(
        "--no-clip", action="store_true", help="do not clip the predicted x_0 to [-1, 1]"
    )
    p.add_argument("--device", help="default: CUDA if available, else CPU")
    p.add_argument("--no-progress", action="store_true")


def run_sample(args: argparse.Namespace) -> int:
    check_sampling_args(args)
    device = resolve_device(args.device)
    model, cfg, ckpt = load_model(args.checkpoint, which=args.weights, device=device)
    check_steps_fit(args, cfg.diffusion.timesteps)
    labels = labels_arg(args.labels, args.num_samples, cfg.model.num_classes)
    if labels is None and args.guidance != 1.0:
        raise UsageError(
            f"--guidance {args.guidance:g} needs class labels (pass --labels); "
            "unconditional sampling uses no guidance (1)"
        )
    check_writable(Path(args.output_dir), "--output-dir")
    schedule = NoiseSchedule.from_config(cfg.diffusion)
    try:
        images = generate(
            model,
            schedule,
            args.num_samples,
            labels,
            image_size=cfg.model.image_size,
            channels=cfg.model.in_channels,
            sampler=args.sampler,
            steps=args.steps,
            guidance=args.guidance,
            seed=args.seed,
            prediction=cfg.diffusion.prediction,
            eta=args.eta,
            clip_x0=not args.no_clip,
            batch_size=args.batch_size,
            device=device,
            progress=not args.no_progress,
        )
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            f"no files were written to {args.output_dir} (samples are saved "
            "only when all are done); earlier files there are "
            "untouched"
        ) from None
    npz, grid = save_samples(
        args.output_dir,
        images,
        labels,
        ncol=grid_columns(labels, cfg.model.num_classes, args.num_samples),
    )
    info = {
        "checkpoint": str(ckpt.path),
        "step": ckpt.step,
        "weights": args.weights,
        "sampler": args.sampler,
        "steps": args.steps,
        "guidance": args.guidance,
        "labels": args.labels,
        "seed": args.seed,
        "eta": args.eta,
        "num_samples": args.num_samples,
        "clip_x0": not args.no_clip,
    }
    atomic_write_text(Path(args.output_dir) / "sample_args.json", json.dumps(info, indent=2) + "\n")
    print(
        f"wrote {args.num_samples} samples from {ckpt.path} (step {ckpt.step}) to {npz} and {grid}",
        flush=True,
    )
    return 0


def labels_arg(spec: Optional[str], n: int, num_classes: int):
    """``--labels`` for ``n`` samples of a model with ``num_classes`` classes: None or long (n,)
    (``parse_labels``: it only reads the user's text, so what it refuses is a ``UsageError``)."""
    try:
        return parse_labels(spec, n, num_classes)
    except ValueError as e:
        raise UsageError(str(e)) from None


def check_steps_fit(args: argparse.Namespace, T: int) -> None:
    """``--steps`` against the checkpoint's T (``diffusion.timesteps``), by the sampler's own rule
    (``diffusion.step_times``); ``--eta`` is DDIM's alone."""
    if args.steps is not None:
        try:
            step_times(args.sampler, T, args.steps)
        except ValueError as e:
            raise UsageError(
                f"--steps {args.steps} does not fit {args.sampler} on this checkpoint "
                f"(diffusion.timesteps T = {T}): {e}"
            ) from None
    if getattr(args, "eta", 0.0) and args.sampler != "ddim":
        raise UsageError(
            f"--eta is DDIM's noise; the {args.sampler} sampler takes none (drop --eta)"
        )


def check_sampling_args(args: argparse.Namespace) -> None:
    """--num-samples, --steps, --guidance and --batch-size of sample / evaluate, checked before any
    work (``check_steps_fit`` once the checkpoint's T is known)."""
    if args.num_samples < 1:
        raise UsageError(f"--num-samples must be >= 1, got {args.num_samples}")
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    if args.guidance < 0:
        raise UsageError(
            f"--guidance must be >= 0 (0 = unconditional, 1 = no guidance, > 1 = "
            f"guided), got {args.guidance}"
        )
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if getattr(args, "eta", 0.0) < 0:
        raise UsageError(f"--eta must be >= 0 (0 = deterministic DDIM), got {args.eta}")


# --------------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------------
def add_export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="training checkpoint (file or run folder)")
    p.add_argument(
        "--output-dir", required=True, help="folder for model.safetensors, config.yaml, README.md"
    )
    p.add_argument("--weights", choices=("ema", "model"), default="ema")
    p.add_argument("--no-model-card", action="store_true", help="do not write README.md")
    p.add_argument(
        "--evaluation",
        nargs="+",
        default=[],
        metavar="JSON",
        help="reports from `diffussm evaluate --json` of this checkpoint: their numbers "
        "go into the model card's sample-quality table",
    )


def run_export(args: argparse.Namespace) -> int:
    check_writable(Path(args.output_dir), "--output-dir")
    evaluations = []
    for f in args.evaluation:
        try:
            ev = json.loads(Path(f).read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"--evaluation {f}: cannot read it as JSON ({e})") from e
        missing = missing_report_fields(ev, also=("step",))
        if missing:
            raise UsageError(
                f"--evaluation {f}: not a `diffussm evaluate --json` report (missing {missing})"
            )
        evaluations.append(dict(ev, source=f))
    path = export_weights(
        args.checkpoint,
        args.output_dir,
        which=args.weights,
        model_card=not args.no_model_card,
        evaluations=evaluations,
    )
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)", flush=True)
    return 0


# --------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------
def add_evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help=CHECKPOINT_HELP)
    p.add_argument(
        "--num-samples",
        type=int,
        default=10000,
        help="N (default 10000); FID is compared at equal N",
    )
    p.add_argument(
        "--sampler",
        choices=tuple(SAMPLERS),
        default=DEFAULT_SAMPLER,
        help=f"default {DEFAULT_SAMPLER}",
    )
    p.add_argument("--steps", type=int, help=STEPS_HELP)
    p.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale w")
    p.add_argument(
        "--unconditional",
        action="store_true",
        help="sample without labels (default: every class in equal numbers)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, help=BATCH_HELP)
    p.add_argument("--device", help="default: CUDA if available, else CPU")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    p.add_argument("--no-progress", action="store_true")


def run_evaluate(args: argparse.Namespace) -> int:
    if args.num_samples < 2:
        raise UsageError(
            f"--num-samples must be >= 2 (FID needs a covariance), got {args.num_samples}"
        )
    if args.unconditional and args.guidance != 1.0:
        raise UsageError("--guidance needs class labels: drop --unconditional or use --guidance 1")
    check_sampling_args(args)
    cfg = read_config(args.checkpoint)  # the header only: checked before the weights are loaded
    check_steps_fit(args, cfg.diffusion.timesteps)
    k = cfg.model.num_classes
    if not args.unconditional and k < 1:
        raise UsageError(
            "this model has no class conditioning (model.num_classes = 0): evaluate "
            "it with --unconditional"
        )
    if not args.unconditional and args.num_samples % k:
        raise UsageError(
            f"--num-samples {args.num_samples}: a conditional evaluation samples "
            f"every class in equal numbers, so it must be a multiple of {k} (the "
            "model's classes), or pass --unconditional"
        )
    if args.json:
        check_writable(Path(args.json).resolve().parent, "--json")
    info = evaluate_checkpoint(
        args.checkpoint,
        args.num_samples,
        conditional=not args.unconditional,
        sampler=args.sampler,
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.no_progress,
    )
    print(
        f"checkpoint {info['checkpoint']} (step {info['step']}), {args.sampler} "
        f"{steps_label(args.sampler, args.steps)} steps, guidance {args.guidance}"
    )
    print(report_from_dict(info), flush=True)
    if args.json:
        atomic_write_text(args.json, json.dumps(info, indent=2) + "\n")
    return 0


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------
class UsageError(UserError):
    """A wrong command-line option, or a wrong combination of them."""


# name -> (help, add arguments, run). Each subcommand registers here.
AddArgs = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]
SUBCOMMANDS: Dict[str, tuple[str, AddArgs, Run]] = {
    "train": ("train a model from a config (resumable, torchrun-ready)", add_train_args, run_train),
    "sample": (
        "sample images from a checkpoint into samples.npz + grid.png",
        add_sample_args,
        run_sample,
    ),
    "export": (
        "write a checkpoint's EMA weights + config + model card for sharing",
        add_export_args,
        run_export,
    ),
    "evaluate": (
        "FID-LeNet (MNIST) or FD-classifier (an image folder: a classifier trained on it, "
        "cached), real-vs-real floor, class accuracy, mode histogram of a checkpoint's "
        "samples",
        add_evaluate_args,
        run_evaluate,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    about = "DiffuSSM course: train, sample, export, evaluate."
    parser = argparse.ArgumentParser(prog="diffussm", description=about)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (help_, add, run) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        add(p)
        p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
        p.set_defaults(_run=run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``diffussm`` console script. Returns the exit status: 0, ``EXIT_USAGE``
    (2) for bad input (a ``UserError``, or a file system error), ``EXIT_NONFINITE`` (3),
    ``EXIT_INTERRUPTED`` (130, Ctrl-C), each with one line on stderr; ``EXIT_BUG`` (1) for any other
    exception: a bug in the library, printed with its traceback and where to report it. ``--debug``
    (or ``DIFFUSSM_DEBUG=1``) re-raises every error with its traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = args.debug or os.environ.get("DIFFUSSM_DEBUG", "") not in ("", "0")
    try:
        return int(args._run(args) or 0)
    except BaseException as e:  # noqa: BLE001 - each failure is reported by its kind
        if debug or isinstance(e, SystemExit):
            raise
        status, what = _failure(e)
        if status == EXIT_BUG:
            traceback.print_exc(file=sys.stderr)
            line = f"{what} ({type(e).__name__}): {REPORT_BUGS}"
        else:
            line = f"{what}: {str(e) or type(e).__name__}"
        print(f"diffussm {args.command}: {line}", file=sys.stderr, flush=True)
        return status


def _failure(e: BaseException) -> tuple[int, str]:
    """(exit status, words) of an exception: user errors, a non-finite loss, Ctrl-C, file system
    errors and running out of memory are reported in one line; everything else is an internal
    error (``EXIT_BUG``)."""
    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(e, NonFiniteLossError):
        return EXIT_NONFINITE, "stopped"
    if isinstance(e, UserError):
        return EXIT_USAGE, "error"
    if isinstance(e, OSError):  # a full disk, a folder that cannot be written, a file there
        return EXIT_USAGE, "error (file system)"
    if isinstance(e, (MemoryError, torch.cuda.OutOfMemoryError)):
        return EXIT_USAGE, "error (out of memory: lower --batch-size or train.batch_size)"
    return EXIT_BUG, "internal error"


if __name__ == "__main__":
    raise SystemExit(main())
