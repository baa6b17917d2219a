"""FID-LeNet's feature extractor: a small MNIST classifier whose 128-d penultimate layer gives
the features for the Fréchet distance (``fid.py``), and whose predictions tell whether
a class-conditional sample shows the digit it was asked for.

Input: x (B, 1, 32, 32) in [-1, 1], the denoiser's own range and size (28x28 images are padded
with background first, see ``as_classifier_input``). Output: logits (B, 10); ``features`` gives
(B, 128). The architecture is LeNet-5-like: two 5x5 convolutions with max-pooling, then 128 -> 10.
162,122 parameters (0.65 MB in float32). Its weights are fixed once (seeded training script
``scripts/train_fid_lenet.py``) and committed: FID values are only comparable with one extractor.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from safetensors.torch import load_file

from ..data import pad_images

FEATURE_DIM = 128
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "fid_lenet.safetensors"


class LeNet(nn.Module):
    """x (B, 1, 32, 32) -> logits (B, 10); ``features(x)`` -> (B, 128) (post-ReLU)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5, padding=2)  # (B, 16, 32, 32) -> pool (B, 16, 16, 16)
        self.conv2 = nn.Conv2d(16, 32, 5)  # (B, 32, 12, 12) -> pool (B, 32, 6, 6)
        self.fc1 = nn.Linear(32 * 6 * 6, FEATURE_DIM)
        self.drop = nn.Dropout(0.3)
        self.fc2 = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return F.relu(self.fc1(h.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.features(x)))


def as_classifier_input(x: torch.Tensor) -> torch.Tensor:
    """Images (B, 1, H, W) in [-1, 1] with H, W <= 32 -> (B, 1, 32, 32), padded with background.
    Raises a clear error for other channel counts (FID-LeNet is defined for MNIST-like images)."""
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"FID-LeNet takes (B, 1, H, W) grey images, got shape {tuple(x.shape)}")
    return pad_images(x.float(), 32) if x.shape[-1] != 32 or x.shape[-2] != 32 else x.float()


def load_lenet(path: str | Path = DEFAULT_WEIGHTS) -> LeNet:
    """The committed, fixed extractor (eval mode). Weights are safetensors: nothing is executed."""

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"FID-LeNet weights not found at {path}; run scripts/train_fid_lenet.py"
        )
    model = LeNet()
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def lenet_card(path: str | Path = DEFAULT_WEIGHTS) -> dict:
    """The JSON card stored beside the weights (seed, epochs, test accuracy, ...)."""
    return json.loads(Path(path).with_suffix(".json").read_text())


@torch.no_grad()
def classify(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int = 1000,
    prepare: Callable[[torch.Tensor], torch.Tensor] = as_classifier_input,
) -> tuple[torch.Tensor, torch.Tensor]:
    """x (N, C, H, W) in [-1, 1] -> (features (N, F) float64, predicted class (N,) int64) of a
    classifier with ``features`` and a last layer ``fc2`` (FID-LeNet: (N, 1, H, W) -> F = 128).
    ``prepare`` makes a batch the model's input (default: FID-LeNet's, padded to 32x32 grey)."""
    feats, preds = [], []
    for i in range(0, len(x), batch_size):
        xb = prepare(x[i : i + batch_size])
        f = model.features(xb)
        feats.append(f.double())
        preds.append(model.fc2(f).argmax(1))
    return torch.cat(feats), torch.cat(preds)


def train_classifier(
    build: Callable[[], nn.Module],
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    epochs: int = 4,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    shift: int = 2,
    log=print,
) -> nn.Module:
    """Train ``build()`` (made after seeding) on x (N, C, H, W) in [-1, 1], y (N,) with Adam and a
    one-cycle learning rate, batches of ``min(batch_size, N)``, each shifted by up to ``shift`` pixels
    (a light augmentation); seeded. Returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build()
    batch_size = min(batch_size, len(train_x))
    per_epoch = len(train_x) // batch_size
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * per_epoch)
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(train_x), generator=g)
        total = 0.0
        for s in range(per_epoch):
            idx = perm[s * batch_size : (s + 1) * batch_size]
            xb = train_x[idx]
            dx, dy = torch.randint(-shift, shift + 1, (2,), generator=g).tolist()
            xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(model(xb), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        log(f"epoch {epoch + 1}/{epochs}: train loss {total / per_epoch:.4f}")
    return model.eval()


def train_lenet(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    epochs: int = 4,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    log=print,
) -> LeNet:
    """FID-LeNet's training: ``train_classifier`` of a ``LeNet`` on x (N, 1, 32, 32) in [-1, 1], y (N,)
    (random shifts of up to 2 pixels: the padding makes room)."""
    return train_classifier(
        LeNet, train_x, train_y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, log=log
    )
