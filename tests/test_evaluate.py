"""`diffussm evaluate` and `evaluate_images`: FID-LeNet with its floor, class accuracy, modes."""
import json

import pytest
import torch

from _train_helpers import one_thread, run_cli, tiny_config, write_config  # noqa: F401
from diffussm_lib.data import mnist_dataset
from diffussm_lib.evaluate import evaluate_images

pytestmark = pytest.mark.usefixtures("one_thread")


def test_real_images_score_near_the_floor_and_noise_far_from_it():
    train = mnist_dataset("train", pad_to=None)        # 28x28: padded to 32 inside, like samples
    idx = torch.arange(1000, 2000)
    real = evaluate_images(train.x[idx], train.y[idx], seed=1)
    assert real.n == 1000 and real.class_accuracy > 0.98 and real.histogram_deviation < 0.03
    assert real.fid < 2 * real.floor
    noise = torch.rand(1000, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1
    bad = evaluate_images(noise, train.y[idx], floor=False)
    assert bad.floor is None and bad.fid > 20 * real.floor and bad.class_accuracy < 0.5
    ones = train.x[train.y == 1][:500]                  # one class only: mode dropping
    assert evaluate_images(ones, None, floor=False).histogram_deviation > 0.85
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\).*\(4, 3, 32, 32\)"):
        evaluate_images(torch.zeros(4, 3, 32, 32))


def test_cli_evaluate_prints_every_number(tmp_path):
    cfg = write_config(tiny_config(max_steps=2, checkpoint_every=2), tmp_path / "tiny.yaml")
    run = tmp_path / "run"
    r = run_cli(["train", "--config", cfg, "--output-dir", run, "--no-progress"])
    assert r.returncode == 0, r.stderr
    out = tmp_path / "eval.json"
    r = run_cli(["evaluate", "--checkpoint", run, "--num-samples", 20, "--steps", 2, "--guidance", 2,
                 "--json", out, "--no-progress"])
    assert r.returncode == 0, r.stderr
    for words in ("FID-LeNet vs MNIST test", "real-vs-real floor", "class accuracy", "histogram deviation"):
        assert words in r.stdout
    report = json.loads(out.read_text())
    assert report["n"] == 20 and report["fid"] > 0 and 0 <= report["class_accuracy"] <= 1
    r = run_cli(["evaluate", "--checkpoint", run, "--num-samples", 15, "--steps", 2, "--no-progress"])
    assert r.returncode == 2 and "multiple of 10" in r.stderr
