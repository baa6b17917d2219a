"""Bring your own images (issue 26): image folders read in the model's channel count, class folders
checked against model.num_classes, a relative data.path read from the config file's folder,
FD-classifier (a classifier trained on the folder itself, cached), and the README's commands run on a
tiny generated grey and colour folder. (Bad input through the CLI: tests/test_bad_input.py.)"""

import json
import re
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from _train_helpers import REPO, cli_env, one_thread  # noqa: F401 (fixture)
from diffussm_lib.config import ConfigError, DataConfig, load_config
from diffussm_lib.data import (
    DataError,
    ImageDataset,
    dataset_from_config,
    load_image_folder,
    to_uint8,
)
from diffussm_lib.evaluation import (
    FolderReport,
    dataset_classifier,
    evaluate_folder_images,
    report_from_dict,
)
from diffussm_lib.evaluation import sample_and_evaluate, split_halves
from diffussm_lib.training import quality_table

sys.path.insert(0, str(REPO / "scripts"))
from make_shapes_folder import write_shapes_folder  # noqa: E402

sys.path.pop(0)
pytestmark = pytest.mark.usefixtures("one_thread")
README = (REPO / "README.md").read_text()


def folder(path: Path, images: dict) -> DataConfig:
    """Write {class: [PIL images]} as ``path/<class>/<i>.png``; its ``DataConfig``."""
    for cls, imgs in images.items():
        (path / cls).mkdir(parents=True, exist_ok=True)
        for i, im in enumerate(imgs):
            im.save(path / cls / f"{i}.png")
    return DataConfig(name="folder", path=str(path), pad_to=None)


# ------------------------------------------------------------------ channels and labels
def test_a_folder_is_read_in_the_models_channel_count_whatever_the_image_modes(tmp_path):
    red, grey200 = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("L", (8, 8), 200)
    cfg = folder(
        tmp_path / "imgs",
        {
            "a": [red, Image.new("RGBA", (8, 8), (0, 0, 255, 128))],
            "b": [grey200, Image.new("P", (8, 8))],
        },
    )
    grey = dataset_from_config(cfg, channels=1, num_classes=2)
    colour = dataset_from_config(cfg, channels=3, num_classes=2)
    assert (
        grey.x.shape == (4, 1, 8, 8)
        and colour.x.shape == (4, 3, 8, 8)
        and grey.classes == ["a", "b"]
    )
    x, y, _ = load_image_folder(cfg.path, channels=1)
    assert x[0, 0, 0, 0] == 76 and y.tolist() == [0, 0, 1, 1]  # red -> ITU-R 601 luma 0.299 * 255
    x, _, _ = load_image_folder(cfg.path, channels=3)
    assert x[2, 0, 0].tolist() == [200, 200, 200]  # grey -> RGB
    with pytest.raises(
        DataError, match=r"1 \(grey\) or 3 \(RGB\) channels, not 2 \(model.in_channels\)"
    ):
        dataset_from_config(cfg, channels=2)


def test_class_folders_must_match_num_classes_unless_it_is_zero(tmp_path):
    cfg = folder(tmp_path / "imgs", {c: [Image.new("L", (8, 8))] for c in ("cats", "dogs", "owls")})
    for wrong in (10, 2, 1):
        with pytest.raises(
            DataError,
            match=rf"3 class folders \(cats, dogs, owls\) but model.num_classes is "
            rf"{wrong}: set model.num_classes: 3 \(or 0 for an unconditional",
        ):
            dataset_from_config(cfg, channels=1, num_classes=wrong)
    assert dataset_from_config(cfg, channels=1, num_classes=3).y.tolist() == [0, 1, 2]
    assert (
        len(dataset_from_config(cfg, channels=1, num_classes=0)) == 3
    )  # unconditional, on purpose
    (tmp_path / "imgs" / ".diffussm").mkdir()  # a hidden folder is no class
    assert dataset_from_config(cfg, channels=1, num_classes=3).classes == ["cats", "dogs", "owls"]


def test_mnist_and_cifar10_are_checked_against_the_model_before_loading(tmp_path):
    """No data needed: the counts are known, so a mismatch fails before any file is read."""
    mnist = DataConfig(name="mnist", path=str(tmp_path / "nothing_here"))
    with pytest.raises(
        DataError, match="data.name mnist has 10 classes but model.num_classes is 5"
    ):
        dataset_from_config(mnist, channels=1, num_classes=5)
    with pytest.raises(
        DataError, match="1 channel but model.in_channels is 3: set model.in_channels: 1"
    ):
        dataset_from_config(mnist, channels=3, num_classes=10)
    with pytest.raises(
        DataError, match="3 channels but model.in_channels is 1: set model.in_channels: 3"
    ):
        dataset_from_config(
            DataConfig(name="cifar10", path=str(tmp_path)), channels=1, num_classes=10
        )


def test_a_data_channels_key_says_where_the_channel_count_lives(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(
        (REPO / "configs" / "folder_grey.yaml")
        .read_text()
        .replace("  name: folder\n", "  name: folder\n  channels: 1\n")
    )
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'data.channels'; an image folder is read in "
        r"model.in_channels channels",
    ):
        load_config(p)


def test_a_relative_data_path_is_read_from_the_config_files_folder(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    text = (REPO / "configs" / "folder_grey.yaml").read_text()
    assert "  path: ../data/shapes_grey\n" in text
    (tmp_path / "configs" / "c.yaml").write_text(text)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert load_config("../configs/c.yaml").data.path == str(tmp_path / "data" / "shapes_grey")
    (tmp_path / "configs" / "abs.yaml").write_text(
        text.replace("../data/shapes_grey", str(tmp_path / "x"))
    )
    assert load_config(tmp_path / "configs" / "abs.yaml").data.path == str(tmp_path / "x")
    (tmp_path / "configs" / "home.yaml").write_text(text.replace("../data/shapes_grey", "~/imgs"))
    assert load_config(tmp_path / "configs" / "home.yaml").data.path == str(
        Path("~/imgs").expanduser()
    )


# ------------------------------------------------------------------ FD-classifier
@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """Tiny generated folders, 3 classes x 30 images of 16x16, colour and grey: (DataConfig, dataset)."""
    out = {}
    for grey in (False, True):
        path = write_shapes_folder(
            tmp_path_factory.mktemp("shapes") / "imgs", size=16, per_class=30, grey=grey
        )
        cfg = DataConfig(name="folder", path=str(path), pad_to=None)
        out[grey] = cfg, dataset_from_config(cfg, channels=1 if grey else 3, num_classes=3)
    return out


def test_reference_and_held_out_halves_split_every_class():
    labels = torch.tensor([0] * 5 + [1] * 4 + [2] * 1)
    ref, held = split_halves(labels)
    assert sorted(ref.tolist() + held.tolist()) == list(range(10))
    assert torch.bincount(labels[ref]).tolist() == [3, 2, 1] and torch.bincount(
        labels[held]
    ).tolist() == [2, 2]
    assert torch.equal(split_halves(labels)[0], ref), "seeded"


@pytest.mark.parametrize("grey", [False, True], ids=["colour", "grey"])
@pytest.mark.slow
def test_copies_of_the_data_score_near_the_floor_and_noise_far_above(shapes, grey, tmp_path):
    _, ds = shapes[grey]
    logs = []
    clf = dataset_classifier(ds, tmp_path / "cache", log=logs.append)
    assert clf.card["heldout_accuracy"] > 0.6 and clf.card["n_heldout"] == 45 and clf.path.is_file()
    assert any("held-out accuracy" in m for m in logs)
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, len(ds), (45,), generator=g)  # a model that copies training images
    copies = evaluate_folder_images(ds.x[idx], ds.y[idx], ds, clf)
    noise = evaluate_folder_images(
        torch.rand(45, *ds.x.shape[1:], generator=g) * 2 - 1, ds.y[idx], ds, clf
    )
    assert copies.floor_n == 45 and copies.fid < 2 * copies.floor and copies.class_accuracy > 0.6
    assert noise.fid > 10 * copies.floor and noise.class_accuracy < 0.6
    unconditional = evaluate_folder_images(ds.x[idx], None, ds, clf, floor=False)
    assert unconditional.class_accuracy is None and unconditional.floor is None
    text = str(copies)
    assert (
        "FD-classifier" in text
        and "comparable only within this dataset and this classifier" in text
    )
    assert report_from_dict(json.loads(json.dumps(copies.as_dict()))) == copies
    with pytest.raises(ValueError, match=r"do not match the dataset's images"):
        evaluate_folder_images(torch.zeros(4, 3, 8, 8), None, ds, clf)


@pytest.mark.slow
def test_the_classifier_is_cached_and_a_changed_folder_trains_a_new_one(shapes, tmp_path):
    cfg, ds = shapes[True]
    logs = []
    first = dataset_classifier(ds, tmp_path, log=logs.append)
    again = dataset_classifier(ds, tmp_path, log=logs.append)
    assert "(cached;" in logs[-1] and again.path == first.path and again.card == first.card
    assert all(
        torch.equal(a, b)
        for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values())
    )
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".safetensors")
    pixels = to_uint8(ds.x).permute(0, 2, 3, 1).clone()
    pixels[0, 0, 0, 0] ^= 1  # one pixel of one image
    before = len(logs)
    other = dataset_classifier(
        ImageDataset(pixels, ds.y, classes=ds.classes), tmp_path, log=logs.append
    )
    assert other.path != first.path and any("training on" in m for m in logs[before:])
    first.path.with_suffix(".json").write_text("{not json")  # a damaged cache is retrained
    dataset_classifier(ds, tmp_path, log=logs.append)
    assert any("unreadable" in m for m in logs)


def test_evaluate_says_what_it_cannot_measure_before_sampling(tmp_path):
    """FID-LeNet is grey MNIST only; an unconditional model has no classes to ask for; a sample count that
    is no multiple of the classes. (No model needed: all fail before sampling or training a classifier.)"""
    cfg = load_config(REPO / "configs" / "folder_colour.yaml")
    cifar = replace(cfg, data=DataConfig(name="cifar10", pad_to=None))
    with pytest.raises(ValueError, match=r"FID-LeNet is defined for 1-channel.*data.name: folder"):
        sample_and_evaluate(None, cifar, 30)
    unconditional = replace(cfg, model=replace(cfg.model, num_classes=0))
    with pytest.raises(
        ValueError, match=r"no class conditioning \(model.num_classes = 0\).*--unconditional"
    ):
        sample_and_evaluate(None, unconditional, 30)
    with pytest.raises(ValueError, match="multiple of 3"):  # before the folder (not there) is read
        sample_and_evaluate(
            None, replace(cfg, data=replace(cfg.data, path=str(tmp_path / "none"))), 20
        )


def test_the_model_card_names_the_metric_of_a_folder_report():
    ev = FolderReport(
        n=300,
        fid=1.5,
        floor=1.2,
        class_accuracy=0.9,
        histogram_deviation=0.01,
        floor_n=150,
        num_classes=3,
        classifier_accuracy=0.98,
        classifier="c.safetensors",
    ).as_dict()
    rows = "\n".join(
        quality_table([dict(ev, step=1, sampler="ddim", steps=25, guidance=1.0, seed=0)])
    )
    assert "| FD-classifier |" in rows and "1.200 (150 images)" in rows and "FID-LeNet" not in rows


# ------------------------------------------------------------------ the README's commands
def readme_section_commands() -> list[list[str]]:
    """The bash blocks of the README's "Train on your own images": one list of lines per block."""
    section = README.split("## Train on your own images\n", 1)[1].split("\n## ", 1)[0]
    return [
        [ln.strip() for ln in block.strip().splitlines()]
        for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    ]


SHRINK = {  # appended to each README command: a tiny folder, a few steps, few samples (the last flag wins)
    "python": ["--per-class", "22"],
    "train": ["--max-steps", "2", "--no-progress"],
    "sample": ["--steps", "2", "--no-progress"],
    "evaluate": ["--num-samples", "30", "--steps", "2", "--no-progress", "--json", "ev.json"],
}


def test_the_readme_section_has_a_colour_and_a_grey_example():
    blocks = readme_section_commands()
    assert len(blocks) == 2 and [len(b) for b in blocks] == [4, 4]
    for block, kind in zip(blocks, ("colour", "grey")):
        assert f"configs/folder_{kind}.yaml" in block[1] and load_config(
            REPO / "configs" / f"folder_{kind}.yaml"
        )
        assert [shlex.split(c)[1] for c in block[1:]] == ["train", "sample", "evaluate"]


@pytest.mark.slow
@pytest.mark.parametrize("block", [0, 1], ids=["colour", "grey"])
def test_the_readme_commands_train_sample_and_evaluate_a_folder(tmp_path, block):
    """Run as written (shrunk by SHRINK) from a copy of the repository's layout: configs/ beside data/."""
    (tmp_path / "configs").mkdir()
    for p in (REPO / "configs").glob("folder_*.yaml"):
        (tmp_path / "configs" / p.name).write_text(p.read_text())
    outputs = []
    for cmd in readme_section_commands()[block]:
        words = shlex.split(cmd)
        if words[0] == "python":
            argv = [sys.executable, str(REPO / words[1]), *words[2:], *SHRINK["python"]]
        else:
            argv = [sys.executable, "-m", "diffussm_lib", *words[1:], *SHRINK[words[1]]]
        r = subprocess.run(
            argv, capture_output=True, text=True, cwd=tmp_path, env=cli_env(), timeout=600
        )
        assert r.returncode == 0, f"`{cmd}` failed:\n{r.stderr}"
        outputs.append(r.stdout)
    kind = ("colour", "grey")[block]
    channels, data = 3 if kind == "colour" else 1, tmp_path / "data" / f"shapes_{kind}"
    with Image.open(next((data / "circle").iterdir())) as im:
        assert im.mode == ("RGB" if channels == 3 else "L")
    run = tmp_path / "runs" / f"shapes_{kind}"
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["path"] == str(data), (
        "resolved from configs/"
    )
    samples = np.load(tmp_path / "samples" / f"shapes_{kind}" / "samples.npz")
    assert (
        samples["images"].shape == (30, 32, 32, channels)
        and samples["labels"].tolist() == [0, 1, 2] * 10
    )
    report = json.loads((tmp_path / "ev.json").read_text())
    assert (
        report["metric"] == "FD-classifier"
        and report["n"] == 30
        and report["fid"] > 0
        and report["floor"] > 0
    )
    assert 0 <= report["class_accuracy"] <= 1 and 0 < report["classifier_accuracy"] <= 1
    assert "held-out accuracy" in outputs[-1] and "real-vs-real floor" in outputs[-1]
    assert list((data / ".diffussm").glob("classifier-*.safetensors")), (
        "the classifier is cached beside the data"
    )
