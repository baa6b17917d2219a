"""Bad input, tried the way a user would (issue 14, item 6): every case gets one clear message that
names the problem and what to change, no traceback (unless --debug), a non-zero exit status, and
nothing lost (the last good checkpoint and earlier output stay intact). Config mistakes are one
table against the config loader (issue 28); the other boundaries (checkpoint files, command-line
flags, data folders, files that cannot be written, Ctrl-C, downloads) go through the command."""

import errno
import http.server
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image

from _train_helpers import REPO, cli_env, one_thread, tiny_config, with_model, write_config  # noqa: F401
from diffussm_lib import data as D
from diffussm_lib.cli import main
from diffussm_lib.config import ConfigError, load_config
from diffussm_lib.errors import UserError
from diffussm_lib.training import CHECKPOINT_NAME, Trainer, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")
PRETRAINED = REPO / "checkpoints" / "mnist_diffussm"
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


def fails(capsys, argv, *needles, status=2):
    """Run ``diffussm argv`` in-process: it must exit with ``status`` and print one line (no traceback)
    to stderr containing every needle. Returns that line."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert rc == status, err
    assert "Traceback" not in err and len(err.splitlines()) <= 3, err
    for n in needles:
        assert n in err, f"{n!r} not in: {err}"
    return err


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny run trained for 4 steps (checkpoints at 2 and 4) by ``diffussm train``, and its config file."""
    d = tmp_path_factory.mktemp("bad")
    cfg = write_config(tiny_config(max_steps=4, checkpoint_every=2), d / "tiny.yaml")
    assert (
        main(["train", "--config", str(cfg), "--output-dir", str(d / "run"), "--no-progress"]) == 0
    )
    return d, cfg


# ------------------------------------------------------------------ configs
TINY_YAML = (REPO / "configs" / "tiny.yaml").read_text()


def _yaml(old=None, new=None, text=None):
    """A config file: tiny.yaml with ``old`` replaced by ``new``, or ``text``."""

    def make(tmp_path):
        assert old is None or old in TINY_YAML, old
        p = tmp_path / "c.yaml"
        p.write_text(text if text is not None else TINY_YAML.replace(old, new))
        return p

    return make


# (case, the config file, what its one message must say). Run against the loader: milliseconds each;
# test_misspelt_config_key_through_the_command is the same check end to end.
BAD_CONFIGS = [
    (
        "misspelt key",
        _yaml("  depth: 2", "  depht: 2"),
        ["'model.depht'", "did you mean 'model.depth'"],
    ),
    ("misspelt section", _yaml("train:", "trian:"), ["'trian'", "did you mean 'train'"]),
    (
        "key in the wrong section",
        _yaml("  pad_to: null", "  pad_to: null\n  channels: 3"),
        ["'data.channels'", "model.in_channels"],
    ),
    (
        "quoted number",
        _yaml("  depth: 2", "  depth: '2'"),
        ["'model.depth'", "the string '2'", "remove the quotes"],
    ),
    (
        "word for a number",
        _yaml("batch_size: 8", "batch_size: eight"),
        ["'train.batch_size' must be an integer"],
    ),
    (
        "float for an integer",
        _yaml("batch_size: 8", "batch_size: 8.5"),
        ["'train.batch_size'", "integer"],
    ),
    (
        "zero batch size",
        _yaml("batch_size: 8", "batch_size: 0"),
        ["'train.batch_size' must be >= 1"],
    ),
    (
        "negative warm-up",
        _yaml("warmup_steps: 5", "warmup_steps: -1"),
        ["'train.warmup_steps' must be >= 0"],
    ),
    (
        "zero learning rate",
        _yaml("warmup_steps: 5", "warmup_steps: 5\n  lr: 0"),
        ["'train.lr' must be > 0"],
    ),
    (
        "label dropout above 1",
        _yaml("warmup_steps: 5", "warmup_steps: 5\n  label_dropout: 1.5"),
        ["'train.label_dropout' must be <= 1.0"],
    ),
    (
        "EMA decay of 1",
        _yaml("warmup_steps: 5", "warmup_steps: 5\n  ema_decay: 1.0"),
        ["'train.ema_decay' must be < 1.0"],
    ),
    (
        "unknown choice",
        _yaml("arch: diffussm", "arch: unet"),
        ["'model.arch' must be one of", "'unet'"],
    ),
    (
        "unknown schedule",
        _yaml("timesteps: 100", "timesteps: 100\n  schedule: sqrt"),
        ["'diffusion.schedule' must be one of"],
    ),
    (
        "number for a switch",
        _yaml("  depth: 2", "  depth: 2\n  bidirectional: 1"),
        ["'model.bidirectional' must be true or false"],
    ),
    (
        "missing required key",
        _yaml("  arch: diffussm\n", ""),
        ["missing required key 'model.arch'"],
    ),
    (
        "missing section",
        _yaml("data:\n  name: mnist\n  pad_to: null\n", ""),
        ["missing required key 'data'"],
    ),
    (
        "section not a mapping",
        _yaml("diffusion:\n  timesteps: 100", "diffusion: 100"),
        ["'diffusion' must be a mapping"],
    ),
    ("top level a list", _yaml(text="- name: tiny\n"), ["the top level must be a mapping"]),
    ("not YAML", _yaml(text="model: [unclosed"), ["not valid YAML"]),
    (
        "missing file",
        lambda tmp_path: tmp_path / "nope.yaml",
        ["config file not found", "nope.yaml"],
    ),
    ("a folder", lambda tmp_path: tmp_path, ["is a folder", "YAML file"]),
    ("a binary file", lambda tmp_path: PRETRAINED / "model.safetensors", ["not a text file"]),
]


@pytest.mark.parametrize("make, needles", [pytest.param(m, n, id=i) for i, m, n in BAD_CONFIGS])
def test_bad_config_gives_one_clear_error(tmp_path, make, needles):
    """Each kind of config mistake: a ``ConfigError`` (a ``UserError``) naming file and key."""
    path = make(tmp_path)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert isinstance(e.value, UserError) and path.name in msg, msg
    for n in needles:
        assert n in msg, f"{n!r} not in: {msg}"


def test_misspelt_config_key_through_the_command(tmp_path, capsys):
    p = _yaml("  depth: 2", "  depht: 2")(tmp_path)
    err = fails(
        capsys,
        ["train", "--config", p, "--output-dir", tmp_path / "r"],
        "model.depht",
        "did you mean 'model.depth'",
        "c.yaml",
    )
    assert err.startswith("diffussm train: error: ") and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------ checkpoints
def test_missing_checkpoint(tmp_path, capsys):
    fails(
        capsys,
        ["sample", "--checkpoint", tmp_path / "nope.safetensors", "--output-dir", tmp_path / "o"],
        "checkpoint not found",
        "nope.safetensors",
    )


def test_folder_without_checkpoint(tmp_path, capsys):
    fails(
        capsys,
        ["sample", "--checkpoint", tmp_path, "--output-dir", tmp_path / "o"],
        "no checkpoint in folder",
        CHECKPOINT_NAME,
    )


def test_random_binary_checkpoint(tmp_path, capsys):
    p = tmp_path / "model.safetensors"
    p.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)))
    err = fails(
        capsys,
        ["sample", "--checkpoint", p, "--output-dir", tmp_path / "o"],
        "random or damaged bytes",
    )
    assert "pickle" not in err, "a random file is not a pickle"


def test_pickle_checkpoint(tmp_path, capsys):
    p = tmp_path / "model.pt"
    p.write_bytes(pickle.dumps({"w": [1, 2]}, protocol=4))
    fails(
        capsys,
        ["sample", "--checkpoint", p, "--output-dir", tmp_path / "o"],
        "Python pickle",
        "never unpickles",
    )


def test_truncated_checkpoint(tmp_path, capsys):
    p = tmp_path / "model.safetensors"
    p.write_bytes((PRETRAINED / "model.safetensors").read_bytes()[:3_000_000])
    fails(capsys, ["sample", "--checkpoint", p, "--output-dir", tmp_path / "o"], "truncated")


def test_bit_flipped_checkpoint(tmp_path, capsys):
    raw = bytearray((PRETRAINED / "model.safetensors").read_bytes())
    raw[len(raw) // 2] ^= 0x10  # one bit inside the tensor data
    p = tmp_path / "model.safetensors"
    p.write_bytes(bytes(raw))
    fails(
        capsys, ["sample", "--checkpoint", p, "--output-dir", tmp_path / "o"], "checksum", "damaged"
    )


def test_checkpoint_of_another_model(run, tmp_path, capsys):
    d, _ = run
    other = write_config(with_model(tiny_config(), hidden_dim=48), tmp_path / "other.yaml")
    fails(
        capsys,
        ["train", "--config", other, "--output-dir", tmp_path / "r", "--init-from", d / "run"],
        "model.hidden_dim: checkpoint 32, config 48",
    )


def test_checkpoint_of_another_image_size(run, tmp_path, capsys):
    d, _ = run
    cfg = with_model(tiny_config(), image_size=32)
    other = write_config(replace(cfg, data=replace(cfg.data, pad_to=32)), tmp_path / "other.yaml")
    fails(
        capsys,
        ["train", "--config", other, "--output-dir", tmp_path / "r", "--init-from", d / "run"],
        "model.image_size: checkpoint 28, config 32",
    )


# ------------------------------------------------------------------ sampling arguments
def test_labels_out_of_range(run, tmp_path, capsys):
    fails(
        capsys,
        [
            "sample",
            "--checkpoint",
            run[0] / "run",
            "--output-dir",
            tmp_path / "o",
            "--labels",
            "12",
        ],
        "class 12 is outside [0, 9]",
    )


@pytest.mark.parametrize(
    "flag, value",
    [("--num-samples", 0), ("--num-samples", -3), ("--steps", 0), ("--batch-size", 0)],
)
def test_zero_or_negative_counts(run, tmp_path, capsys, flag, value):
    fails(
        capsys,
        ["sample", "--checkpoint", run[0] / "run", "--output-dir", tmp_path / "o", flag, value],
        flag,
        ">= 1",
    )


def test_negative_max_steps(run, tmp_path, capsys):
    fails(
        capsys,
        ["train", "--config", run[1], "--output-dir", tmp_path / "r", "--max-steps", -1],
        "--max-steps",
    )


def test_guidance_below_zero(run, tmp_path, capsys):
    fails(
        capsys,
        ["evaluate", "--checkpoint", run[0] / "run", "--num-samples", 20, "--guidance", -1],
        "--guidance must be >= 0",
    )


def test_unknown_sampler(run, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(
            [
                "sample",
                "--checkpoint",
                str(run[0] / "run"),
                "--output-dir",
                str(tmp_path),
                "--sampler",
                "euler",
            ]
        )
    err = capsys.readouterr().err
    assert e.value.code == 2 and "invalid choice: 'euler'" in err and "ddim" in err


def test_too_many_dpm_solver_steps(run, tmp_path, capsys):
    fails(
        capsys,
        [
            "sample",
            "--checkpoint",
            run[0] / "run",
            "--output-dir",
            tmp_path / "o",
            "--sampler",
            "dpm_solver++",
            "--steps",
            100,
        ],
        "--steps 100 does not fit dpm_solver++ on this checkpoint (diffusion.timesteps T = 100)",
        "[1, T-1 = 99]",
        "got 100",
    )


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--sampler", "ddpm", "--eta", 0.5], ["--eta is DDIM's noise", "ddpm"]),
        (["--eta", -1], ["--eta must be >= 0"]),
        (
            ["--sampler", "ddim", "--steps", 101],
            ["--steps 101 does not fit ddim", "[1, T=100]", "got 101"],
        ),
        (["--guidance", 3], ["--guidance 3 needs class labels", "--labels"]),
    ],
)
def test_sampler_flags_that_do_not_fit(run, tmp_path, capsys, args, needles):
    """Checked by the command against the checkpoint before any sampling: one line, status 2."""
    fails(
        capsys,
        ["sample", "--checkpoint", run[0] / "run", "--output-dir", tmp_path / "o", *args],
        *needles,
    )
    assert not (tmp_path / "o").exists()


def test_padding_smaller_than_the_images(tmp_path, capsys):
    cfg = tiny_config()
    cfg = replace(cfg, data=replace(cfg.data, pad_to=16))
    fails_writing_nothing(
        capsys,
        tmp_path,
        write_config(cfg, tmp_path / "c.yaml"),
        "cannot pad images of size 28x28 to 16x16 (data.pad_to)",
    )


def test_class_asked_of_a_model_without_classes(tmp_path, capsys):
    cfg = with_model(tiny_config(max_steps=1), num_classes=0)  # label 0 is its null class
    data = D.ImageDataset(np.zeros((8, 28, 28), np.uint8), np.zeros(8, np.int64))
    Trainer(cfg, tmp_path / "run", dataset=data, progress=False, log=lambda m: None).train()
    for labels in ("3", "all"):
        fails(
            capsys,
            [
                "sample",
                "--checkpoint",
                tmp_path / "run",
                "--output-dir",
                tmp_path / "o",
                "--labels",
                labels,
            ],
            "this model has no class conditioning (model.num_classes = 0)",
            "no --labels",
        )
    fails(
        capsys,
        ["evaluate", "--checkpoint", tmp_path / "run", "--num-samples", 20],
        "no class conditioning",
        "--unconditional",
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch that sees no CUDA GPU")
def test_cuda_device_on_a_cpu_only_torch(run, tmp_path, capsys):
    fails(
        capsys,
        [
            "sample",
            "--checkpoint",
            run[0] / "run",
            "--output-dir",
            tmp_path / "o",
            "--device",
            "cuda",
        ],
        "sees no CUDA GPU",
        "--device cpu",
    )


def test_unknown_device(run, tmp_path, capsys):
    fails(
        capsys,
        ["train", "--config", run[1], "--output-dir", tmp_path / "r", "--device", "gpu"],
        "unknown device 'gpu'",
        "cuda",
    )


def test_debug_shows_the_traceback(run, tmp_path):
    with pytest.raises(ValueError, match="unknown device"):
        main(
            [
                "sample",
                "--checkpoint",
                str(run[0] / "run"),
                "--output-dir",
                str(tmp_path),
                "--device",
                "gpu",
                "--debug",
            ]
        )


# ------------------------------------------------------------------ image folders
def _folder(tmp_path, images):
    for i, (cls, img) in enumerate(images):
        (tmp_path / "imgs" / cls).mkdir(parents=True, exist_ok=True)
        img.save(tmp_path / "imgs" / cls / f"{i}.png")
    return tmp_path / "imgs"


def _folder_config(tmp_path, folder, **model):
    """A tiny config of the image folder ``folder``: 8x8 RGB, as many classes as it has class folders."""
    cfg = tiny_config()
    classes = len([d for d in Path(folder).iterdir() if d.is_dir()]) if Path(folder).is_dir() else 1
    cfg = replace(
        cfg,
        data=replace(cfg.data, name="folder", path=str(folder)),
        model=replace(
            cfg.model, **{"image_size": 8, "in_channels": 3, "num_classes": classes, **model}
        ),
    )
    return write_config(cfg, tmp_path / "folder.yaml")


def fails_writing_nothing(capsys, tmp_path, config, *needles):
    """``diffussm train`` of ``config`` fails as ``fails`` says, and its output folder was not even made."""
    err = fails(
        capsys, ["train", "--config", config, "--output-dir", tmp_path / "r" / "run"], *needles
    )
    assert not (tmp_path / "r").exists(), "bad input wrote something"
    return err


def test_image_folder_with_mixed_sizes(tmp_path, capsys):
    folder = _folder(tmp_path, [("a", Image.new("RGB", (8, 8))), ("b", Image.new("RGB", (9, 8)))])
    fails_writing_nothing(
        capsys,
        tmp_path,
        _folder_config(tmp_path, folder),
        "different sizes",
        "8x8",
        "8x9",
        "resize",
    )


@pytest.mark.parametrize("num_classes", [10, 2])
def test_image_folder_whose_class_count_is_not_num_classes(tmp_path, capsys, num_classes):
    """10: classes that do not exist; 2: the third folder's label would be the null class of guidance."""
    folder = _folder(tmp_path, [(c, Image.new("RGB", (8, 8))) for c in ("cats", "dogs", "owls")])
    fails_writing_nothing(
        capsys,
        tmp_path,
        _folder_config(tmp_path, folder, num_classes=num_classes),
        "3 class folders (cats, dogs, owls)",
        f"model.num_classes is {num_classes}",
        "set model.num_classes: 3",
    )


def test_image_folder_with_one_class_while_num_classes_is_more(tmp_path, capsys):
    folder = _folder(tmp_path, [("only", Image.new("RGB", (8, 8)))] * 2)
    fails_writing_nothing(
        capsys,
        tmp_path,
        _folder_config(tmp_path, folder, num_classes=3),
        "1 class folder (only)",
        "model.num_classes is 3",
    )


def test_empty_class_folder(tmp_path, capsys):
    folder = _folder(tmp_path, [("a", Image.new("RGB", (8, 8)))])
    (folder / "b").mkdir()
    fails_writing_nothing(
        capsys, tmp_path, _folder_config(tmp_path, folder), "class folder 'b' holds no images"
    )


def test_data_path_that_is_a_file(tmp_path, capsys):
    (tmp_path / "imgs.zip").write_bytes(b"PK")
    fails_writing_nothing(
        capsys,
        tmp_path,
        _folder_config(tmp_path, tmp_path / "imgs.zip"),
        "imgs.zip is a file",
        "one sub-folder of images per class",
    )


def test_relative_data_path_not_found_names_the_resolved_path(tmp_path, capsys):
    (tmp_path / "configs").mkdir()
    cfg = _folder_config(tmp_path, "../my_images")
    config = cfg.rename(tmp_path / "configs" / cfg.name)
    fails_writing_nothing(
        capsys,
        tmp_path,
        config,
        f"image folder not found: {tmp_path / 'my_images'}",
        "a relative data.path is read from the config file's folder",
    )


def test_image_size_the_patch_size_does_not_divide(tmp_path, capsys):
    folder = _folder(tmp_path, [("a", Image.new("RGB", (9, 9)))] * 8)
    fails_writing_nothing(
        capsys,
        tmp_path,
        _folder_config(tmp_path, folder, image_size=9),
        "model.image_size=9, model.patch_size=2",
        "not divisible by the patch size",
    )


def test_image_folder_with_mixed_modes_is_converted(tmp_path):
    folder = _folder(
        tmp_path,
        [
            ("a", Image.new("RGBA", (8, 8))),
            ("a", Image.new("L", (8, 8))),
            ("b", Image.new("P", (8, 8))),
        ],
    )
    x, y, classes = D.load_image_folder(folder, channels=3)
    assert x.shape == (3, 8, 8, 3) and classes == ["a", "b"]


def test_corrupt_image_in_folder(tmp_path, capsys):
    folder = _folder(tmp_path, [("a", Image.new("RGB", (8, 8)))] * 2)
    (folder / "a" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    fails_writing_nothing(
        capsys, tmp_path, _folder_config(tmp_path, folder), "1.png", "not a readable image"
    )


def test_empty_dataset(tmp_path, capsys):
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    fails_writing_nothing(
        capsys, tmp_path, _folder_config(tmp_path, tmp_path / "imgs"), "no images"
    )


# ------------------------------------------------------------------ files that cannot be written
def test_output_folder_that_cannot_be_written(run, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("in the way")
    fails(
        capsys,
        ["sample", "--checkpoint", run[0] / "run", "--output-dir", blocker / "out"],
        "--output-dir",
        "cannot write there",
    )
    fails(
        capsys, ["train", "--config", run[1], "--output-dir", blocker / "out"], "cannot write there"
    )
    fails(
        capsys,
        ["export", "--checkpoint", run[0] / "run", "--output-dir", blocker / "out"],
        "cannot write there",
    )
    assert blocker.read_text() == "in the way"


def test_full_disk_while_writing_a_checkpoint(run, tmp_path, capsys, monkeypatch):
    cfg = write_config(tiny_config(max_steps=6, checkpoint_every=2), tmp_path / "c.yaml")
    real, calls = safetensors.torch.save_file, []

    def disk_full_on_the_second(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            Path(filename).write_bytes(b"\x00" * 64)  # a partial write, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full_on_the_second)
    err = fails(
        capsys,
        ["train", "--config", cfg, "--output-dir", tmp_path / "r", "--no-progress"],
        "No space left on device",
        "last checkpoint (step 2",
        "--resume",
    )
    assert "file system" in err
    assert load_checkpoint(tmp_path / "r").step == 2, "the previous checkpoint is intact"
    assert not [p for p in (tmp_path / "r").iterdir() if p.name.endswith(".tmp")], (
        "temporary file left behind"
    )


def test_evaluate_json_path_that_cannot_be_written_fails_before_sampling(run, tmp_path, capsys):
    blocker = tmp_path / "f"
    blocker.write_text("")
    t0 = time.perf_counter()
    fails(
        capsys,
        [
            "evaluate",
            "--checkpoint",
            run[0] / "run",
            "--num-samples",
            1000,
            "--json",
            blocker / "ev.json",
        ],
        "--json",
        "cannot write there",
    )
    assert time.perf_counter() - t0 < 5, "it failed only after sampling"


# ------------------------------------------------------------------ Ctrl-C
def _wait_for(predicate, timeout=120.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _default_sigint() -> None:
    """In the child: Ctrl-C's default disposition. A shell starts background jobs with SIGINT ignored,
    and Python then installs no KeyboardInterrupt handler, so a suite launched with `... &` would
    otherwise see the CLI ignore the signal (and these tests time out)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_during_training(run, tmp_path):
    cfg = write_config(
        tiny_config(max_steps=100_000, checkpoint_every=2, log_every=2), tmp_path / "c.yaml"
    )
    out = tmp_path / "r"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "diffussm_lib",
            "train",
            "--config",
            str(cfg),
            "--output-dir",
            str(out),
            "--no-progress",
        ],
        env=cli_env(),
        cwd=REPO,
        preexec_fn=_default_sigint,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert _wait_for(lambda: (out / CHECKPOINT_NAME).exists()), "no checkpoint appeared"
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert (
        "interrupted" in err
        and "is complete and kept" in err
        and "--resume" in err
        and "Traceback" not in err
    )
    ck = load_checkpoint(out)
    assert ck.step >= 2 and ck.step % 2 == 0


@pytest.mark.slow
def test_ctrl_c_during_sampling(tmp_path):
    """Ctrl-C once sampling has begun (its progress bar is on stderr: on a busy machine the import of
    torch alone can take longer than a fixed wait): no file written, earlier files untouched."""
    out = tmp_path / "o"
    out.mkdir()
    (out / "earlier.txt").write_text("keep me")
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "diffussm_lib",
            "sample",
            "--checkpoint",
            str(PRETRAINED),
            "--output-dir",
            str(out),
            "--num-samples",
            "5000",
            "--sampler",
            "ddpm",
            "--batch-size",
            "16",
        ],
        env=cli_env(),
        cwd=REPO,
        preexec_fn=_default_sigint,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    err = []
    reader = threading.Thread(
        target=lambda: err.extend(iter(lambda: p.stderr.read(1), "")), daemon=True
    )
    reader.start()
    try:
        assert _wait_for(lambda: "sampling (ddpm)" in "".join(err)), "sampling never started"
        time.sleep(0.5)
        assert p.poll() is None, "".join(err)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        p.kill()
    err = "".join(err)
    assert p.returncode == 130, err
    assert "no files were written" in err and "Traceback" not in err
    assert sorted(q.name for q in out.iterdir()) == ["earlier.txt"]
    assert (out / "earlier.txt").read_text() == "keep me"


# ------------------------------------------------------------------ downloads from a real HTTP server
class _Mirror(http.server.BaseHTTPRequestHandler):
    """/good/<file>: the file; /html/<file>: an HTML error page (status 200, as some proxies do);
    /half/<file>: the right Content-Length, half the bytes, then the connection is dropped."""

    def do_GET(self):
        kind, name = self.path.strip("/").split("/", 1)
        body = (SHARED_MNIST / name).read_bytes()
        if kind == "html":
            page = b"<html><body><h1>Service unavailable</h1></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body if kind == "good" else body[: len(body) // 2])
        if kind == "half":
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, *a):
        pass


@pytest.fixture
def mirrors():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Mirror)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    down = s.getsockname()[1]
    s.close()  # nothing listens there: a mirror that is down
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield {
        "down": f"http://127.0.0.1:{down}/",
        "html": f"{base}/html/",
        "half": f"{base}/half/",
        "good": f"{base}/good/",
    }
    server.shutdown()


needs_mnist = pytest.mark.skipif(
    not (SHARED_MNIST / "t10k-labels-idx1-ubyte.gz").exists(),
    reason="needs the shared MNIST files to serve",
)


@needs_mnist
def test_download_tries_the_next_mirror_and_saves_only_verified_files(
    tmp_path, monkeypatch, mirrors
):
    monkeypatch.setattr(
        D, "MNIST_MIRRORS", (mirrors["down"], mirrors["html"], mirrors["half"], mirrors["good"])
    )
    x, y = D.load_mnist("test", root=tmp_path)
    assert x.shape == (10000, 28, 28) and y.shape == (10000,)
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]


@needs_mnist
def test_download_with_every_mirror_bad_saves_nothing(tmp_path, monkeypatch, mirrors, capsys):
    monkeypatch.setattr(D, "MNIST_MIRRORS", (mirrors["down"], mirrors["html"], mirrors["half"]))
    with pytest.raises(D.DataError) as e:
        D.load_mnist("test", root=tmp_path)
    msg = str(e.value)
    assert "ConnectionRefusedError" in msg or "Connection refused" in msg
    assert (
        "not a complete gzip file" in msg and "IncompleteRead" in msg and "DIFFUSSM_DATA_DIR" in msg
    )
    assert not list((tmp_path / "mnist").iterdir()), "an unverified file was saved"
