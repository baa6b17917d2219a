"""The ``diffussm`` command on the tiny config with real MNIST: train then sample (files, shapes,
value range, labels), resume after SIGKILL, clear errors (mismatched checkpoint, pickle; config
errors: tests/test_bad_input.py), user errors told apart from internal ones, determinism across
processes."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from _train_helpers import REPO, cli_env, one_thread, run_cli, tiny_config, with_model, write_config  # noqa: F401 (one_thread: a fixture)
from diffussm_lib import training as C
from diffussm_lib.cli import main
from diffussm_lib.diffusion import DEFAULT_SAMPLER
from diffussm_lib.errors import ISSUES_URL, UserError
from diffussm_lib.training import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained for 4 steps by ``diffussm train`` (in-process), with a sample grid."""
    d = tmp_path_factory.mktemp("cli")
    cfg_path = write_config(tiny_config(max_steps=4, sample_every=4), d / "tiny.yaml")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rc = main(
            ["train", "--config", str(cfg_path), "--output-dir", str(d / "run"), "--no-progress"]
        )
    finally:
        torch.set_num_threads(n)
    assert rc == 0
    return d, cfg_path


def test_train_writes_checkpoint_config_metrics_and_grid(trained):
    d, _ = trained
    run = d / "run"
    assert C.load_checkpoint(run).step == 4
    assert (run / "config.yaml").exists() and (run / "samples" / "step_0000004.png").exists()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4] and all(np.isfinite(r["loss"]) for r in records)


def _sample(d, name, *args):
    out = d / name
    rc = main(
        [
            "sample",
            "--checkpoint",
            str(d / "run"),
            "--output-dir",
            str(out),
            "--no-progress",
            *map(str, args),
        ]
    )
    assert rc == 0
    return out, np.load(out / "samples.npz")


@pytest.mark.parametrize(
    "args,labels",
    [
        (["--labels", "all", "--num-samples", 10, "--steps", 4], list(range(10))),
        (
            [
                "--labels",
                "3,5",
                "--num-samples",
                5,
                "--sampler",
                "ddpm",
                "--steps",
                3,
                "--guidance",
                2.0,
            ],
            [3, 5, 3, 5, 3],
        ),
        (
            [
                "--labels",
                "4",
                "--num-samples",
                3,
                "--sampler",
                "dpm_solver++",
                "--steps",
                3,
                "--guidance",
                1.5,
            ],
            [4, 4, 4],
        ),
        (["--num-samples", 4, "--steps", 2], [-1] * 4),
    ],
)
def test_sample_files_shapes_range_labels(trained, args, labels):
    d, _ = trained
    out, s = _sample(d, "s_" + str(len(labels)), *args)
    n = len(labels)
    assert s["images"].shape == (n, 28, 28, 1) and s["images"].dtype == np.uint8
    assert s["labels"].tolist() == labels and s["labels"].dtype == np.int64
    assert s["images"].max() > s["images"].min(), "constant images"
    grid = np.asarray(Image.open(out / "grid.png"))
    cols = 10 if labels == list(range(10)) else int(np.ceil(np.sqrt(n)))
    assert grid.shape[1] == 2 * (cols * 30 + 2), grid.shape  # 28 px + 2 pad per column, upscaled x2
    assert json.loads((out / "sample_args.json").read_text())["step"] == 4


@pytest.mark.slow
def test_same_seed_same_samples_across_processes(trained):
    d, _ = trained
    _, a = _sample(
        d,
        "det_a",
        "--labels",
        "1,2",
        "--num-samples",
        4,
        "--steps",
        3,
        "--seed",
        7,
        "--guidance",
        1.5,
    )
    _, b = _sample(
        d,
        "det_b",
        "--labels",
        "1,2",
        "--num-samples",
        4,
        "--steps",
        3,
        "--seed",
        8,
        "--guidance",
        1.5,
    )
    p = run_cli(
        [
            "sample",
            "--checkpoint",
            d / "run",
            "--output-dir",
            d / "det_c",
            "--labels",
            "1,2",
            "--num-samples",
            4,
            "--steps",
            3,
            "--seed",
            7,
            "--guidance",
            1.5,
            "--no-progress",
        ]
    )
    assert p.returncode == 0, p.stderr
    c = np.load(d / "det_c" / "samples.npz")
    assert np.array_equal(a["images"], c["images"]), "same seed, different samples"
    assert not np.array_equal(a["images"], b["images"])


def test_sample_label_errors(trained, capsys):
    d, _ = trained
    for labels, msg in [("all", "multiple of 10"), ("4,12", "class 12 is outside")]:
        rc = main(
            [
                "sample",
                "--checkpoint",
                str(d / "run"),
                "--output-dir",
                str(d / "bad"),
                "--labels",
                labels,
                "--num-samples",
                "7",
                "--no-progress",
            ]
        )
        assert rc == 2 and msg in capsys.readouterr().err
    rc = main(
        [
            "sample",
            "--checkpoint",
            str(d / "run"),
            "--output-dir",
            str(d / "bad"),
            "--guidance",
            "3",
        ]
    )
    assert rc == 2 and "needs class labels" in capsys.readouterr().err


def test_mismatched_checkpoint_and_overwrite_protection(trained, tmp_path, capsys):
    d, cfg_path = trained
    other = write_config(with_model(tiny_config(), hidden_dim=48, depth=3), tmp_path / "other.yaml")
    assert (
        main(
            [
                "train",
                "--config",
                str(other),
                "--output-dir",
                str(d / "run"),
                "--resume",
                "--no-progress",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        "model.hidden_dim: checkpoint 32, config 48" in err
        and "model.depth: checkpoint 2, config 3" in err
    )
    assert main(["train", "--config", str(cfg_path), "--output-dir", str(d / "run")]) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert C.load_checkpoint(d / "run").step == 4, "the run was not touched"


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def test_sample_refuses_a_pickle_checkpoint(tmp_path, capsys):
    marker = tmp_path / "MARKER"
    evil = tmp_path / "model.pt"
    torch.save({"state_dict": _Payload(marker)}, evil)
    assert main(["sample", "--checkpoint", str(evil), "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "never unpickles" in err and not marker.exists()
    evil.write_bytes(pickle.dumps(_Payload(marker)))
    assert (
        main(
            [
                "train",
                "--init-from",
                str(evil),
                "--config",
                str(write_config(tiny_config(), tmp_path / "t.yaml")),
                "--output-dir",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    assert "never unpickles" in capsys.readouterr().err and not marker.exists()


@pytest.mark.slow
def test_resume_after_sigkill_continues_from_the_saved_step(tmp_path, capsys):
    cfg = tiny_config(max_steps=100_000, checkpoint_every=1, log_every=1)
    cfg_path = write_config(cfg, tmp_path / "tiny.yaml")
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "diffussm_lib",
            "train",
            "--config",
            str(cfg_path),
            "--output-dir",
            str(run),
            "--no-progress",
        ],
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    ck = run / C.CHECKPOINT_NAME
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if ck.exists() and int(C.read_metadata(ck)["step"]) >= 3:
                break
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    saved = C.load_checkpoint(run).step  # whatever the kill left: a complete checkpoint
    assert saved >= 3
    target = saved + 2
    assert (
        main(
            [
                "train",
                "--config",
                str(cfg_path),
                "--output-dir",
                str(run),
                "--resume",
                "--max-steps",
                str(target),
                "--no-progress",
            ]
        )
        == 0
    )
    assert f"resumed from {ck} at step {saved}" in capsys.readouterr().out
    resumed = C.load_checkpoint(run)
    assert resumed.step == target
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, target + 1)), "metrics after the checkpoint were not rewound"
    # and it is the run that never stopped (up to rounding: BLAS kernels may round differently in
    # another process, e.g. with other memory alignment)
    straight = Trainer(tiny_config(max_steps=target), progress=False, log=lambda m: None)
    straight.train()
    for k, v in straight.bare_model.state_dict().items():
        torch.testing.assert_close(resumed.model[k], v, rtol=1e-5, atol=1e-6, msg=k)
    for k, v in straight.ema.state_dict().items():
        torch.testing.assert_close(resumed.ema[k], v, rtol=1e-5, atol=1e-6, msg=k)


@pytest.mark.slow
def test_time_budget_flag_and_export_with_an_evaluation(trained, tmp_path, capsys):
    d, cfg_path = trained
    assert (
        main(
            [
                "train",
                "--config",
                str(cfg_path),
                "--output-dir",
                str(tmp_path / "b"),
                "--max-minutes",
                "0",
            ]
        )
        == 2
    )
    assert "--max-minutes must be > 0" in capsys.readouterr().err
    rc = main(
        [
            "train",
            "--config",
            str(cfg_path),
            "--output-dir",
            str(tmp_path / "b"),
            "--max-steps",
            "50",
            "--max-minutes",
            "0.0001",
            "--no-progress",
        ]
    )
    assert (
        rc == 0 and C.load_checkpoint(tmp_path / "b").step == 1
    )  # the first update spends the budget
    ev = tmp_path / "ev.json"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(d / "run"),
                "--num-samples",
                "20",
                "--steps",
                "2",
                "--guidance",
                "2",
                "--json",
                str(ev),
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(d / "run"),
                "--output-dir",
                str(tmp_path / "exp"),
                "--evaluation",
                str(ev),
            ]
        )
        == 0
    )
    card = (tmp_path / "exp" / "README.md").read_text()
    fid = json.loads(ev.read_text())["fid"]
    assert (
        f"| 20 | {DEFAULT_SAMPLER} | 2 | 2.0 | {fid:.3f} |" in card
    )  # evaluate used the default sampler
    bad = tmp_path / "bad.json"
    bad.write_text('{"fid": 1}')
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(d / "run"),
                "--output-dir",
                str(tmp_path / "exp2"),
                "--evaluation",
                str(bad),
            ]
        )
        == 2
    )
    assert "not a `diffussm evaluate --json` report" in capsys.readouterr().err
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(tmp_path / "b"),
                "--output-dir",
                str(tmp_path / "exp3"),
                "--evaluation",
                str(ev),
            ]
        )
        == 2
    )
    assert "is of step 4, but checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize(
    "exc, status",
    [
        (
            ValueError("shapes (3, 4) and (4, 5) do not match inside the sampler"),
            1,
        ),  # a library bug
        (RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED"), 1),
        (KeyError("model.blocks.0"), 1),
        (UserError("--labels: class 12 is outside [0, 9]"), 2),  # the user's input
    ],
)
def test_user_errors_are_one_line_and_internal_errors_a_traceback_and_where_to_report(
    trained, tmp_path, capsys, monkeypatch, exc, status
):
    """A ``UserError`` (raised anywhere) is one line and status 2; any other exception is an
    internal error: its traceback, then one line saying it is a bug of the library and where to
    report it, status 1. ``--debug`` re-raises either."""
    import diffussm_lib.cli as cli

    def fails(*args, **kwargs):
        raise exc

    monkeypatch.setattr(cli, "generate", fails)
    argv = [
        "sample",
        "--checkpoint",
        str(trained[0] / "run"),
        "--output-dir",
        str(tmp_path / "o"),
        "--no-progress",
    ]
    assert main(argv) == status
    err = capsys.readouterr().err
    if status == 2:
        assert err.strip().splitlines() == [f"diffussm sample: error: {exc}"], err
    else:
        lines = err.strip().splitlines()
        assert lines[0] == "Traceback (most recent call last):" and str(exc) in err, err
        want = f"diffussm sample: internal error ({type(exc).__name__}): this is a bug in "
        assert lines[-1].startswith(want + "diffussm_lib"), lines[-1]
        assert ISSUES_URL in lines[-1]
    with pytest.raises(type(exc)):
        main(argv + ["--debug"])


def test_the_bug_report_address_is_the_repository_of_pyproject():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert ISSUES_URL == project["urls"]["Repository"] + "/issues"
