"""`diffussm evaluate` and `evaluate_images`: FID-LeNet with its floor, class accuracy, modes."""

import json
from pathlib import Path

import pytest
import torch

from _train_helpers import one_thread, run_cli, tiny_config, write_config  # noqa: F401
from diffussm_lib.data import mnist_dataset
from diffussm_lib.evaluation import evaluate_images

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
def test_real_images_score_near_the_floor_and_noise_far_from_it():
    train = mnist_dataset("train", pad_to=None)  # 28x28: padded to 32 inside, like samples
    idx = torch.arange(1000, 2000)
    real = evaluate_images(train.x[idx], train.y[idx], seed=1)
    assert real.n == 1000 and real.class_accuracy > 0.98 and real.histogram_deviation < 0.03
    assert real.fid < 2 * real.floor
    noise = torch.rand(1000, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    bad = evaluate_images(noise, train.y[idx], floor=False)
    assert bad.floor is None and bad.fid > 20 * real.floor and bad.class_accuracy < 0.5
    ones = train.x[train.y == 1][:500]  # one class only: mode dropping
    assert evaluate_images(ones, None, floor=False).histogram_deviation > 0.85
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\).*\(4, 3, 32, 32\)"):
        evaluate_images(torch.zeros(4, 3, 32, 32))


@pytest.mark.slow
def test_cli_evaluate_prints_every_number(tmp_path):
    cfg = write_config(tiny_config(max_steps=2, checkpoint_every=2), tmp_path / "tiny.yaml")
    run = tmp_path / "run"
    r = run_cli(["train", "--config", cfg, "--output-dir", run, "--no-progress"])
    assert r.returncode == 0, r.stderr
    out = tmp_path / "eval.json"
    r = run_cli(
        [
            "evaluate",
            "--checkpoint",
            run,
            "--num-samples",
            20,
            "--steps",
            2,
            "--guidance",
            2,
            "--json",
            out,
            "--no-progress",
        ]
    )
    assert r.returncode == 0, r.stderr
    for words in (
        "FID-LeNet vs MNIST test",
        "real-vs-real floor",
        "class accuracy",
        "histogram deviation",
    ):
        assert words in r.stdout
    report = json.loads(out.read_text())
    assert report["n"] == 20 and report["fid"] > 0 and 0 <= report["class_accuracy"] <= 1
    r = run_cli(
        ["evaluate", "--checkpoint", run, "--num-samples", 15, "--steps", 2, "--no-progress"]
    )
    assert r.returncode == 2 and "multiple of 10" in r.stderr


def test_target_check_names_each_missed_target():
    from diffussm_lib.evaluation import TARGETS, target_check

    good = {
        "n": 10_000,
        "fid": 4.2,
        "floor": 1.3,
        "class_accuracy": 0.989,
        "histogram_deviation": 0.002,
    }
    assert target_check(good) == {
        "n": True,
        "fid": True,
        "class_accuracy": True,
        "histogram_deviation": True,
        "all": True,
    }
    for key, bad in (
        ("n", 2_000),
        ("fid", 5.01),
        ("class_accuracy", 0.969),
        ("class_accuracy", None),
        ("histogram_deviation", 0.021),
    ):
        ok = target_check({**good, key: bad})
        assert not ok[key] and not ok["all"], (key, bad)
        assert all(v for k, v in ok.items() if k not in (key, "all")), (key, bad)
    assert target_check({**good, "fid": TARGETS["fid"]})["fid"]  # "at most" includes the target
    with pytest.raises(ValueError, match="fid"):
        target_check({"n": 10, "histogram_deviation": 0.0})


def test_the_pretrained_checkpoint_meets_the_targets_by_its_own_reports():
    """The committed evaluation reports are of the committed weights' step, and one guidance scale meets every
    target (the reports are what `diffussm evaluate --json` wrote; the README and card quote them)."""
    from diffussm_lib.training import load_checkpoint
    from diffussm_lib.evaluation import target_check

    root = Path(__file__).resolve().parents[1] / "checkpoints" / "mnist_diffussm"
    if not (root / "model.safetensors").is_file():
        pytest.skip("no pretrained checkpoint in this copy of the course")
    step = load_checkpoint(root).step
    reports = [json.loads(p.read_text()) for p in sorted((root / "evaluations").glob("*.json"))]
    assert reports, f"no evaluation reports in {root / 'evaluations'}"
    assert {r["step"] for r in reports} == {step}
    assert any(target_check(r)["all"] for r in reports), [
        (r["guidance"], target_check(r)) for r in reports
    ]
    card = (root / "README.md").read_text()
    for r in reports:
        assert f"| {r['fid']:.3f} |" in card, (
            f"the model card lacks the FID of the w={r['guidance']} report"
        )
