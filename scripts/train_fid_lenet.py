"""Train the fixed FID-LeNet feature extractor and write its weights + card into diffussm_lib/assets.

    python scripts/train_fid_lenet.py [--epochs 4] [--seed 0] [--out diffussm_lib/assets/fid_lenet.safetensors]

Deterministic for a given seed on one machine (CPU, one torch version); the committed weights are
the reference: FID-LeNet values are comparable only with the same weights. Refuses to write
weights whose test accuracy is below 99%.
"""

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from diffussm_lib.data import mnist_dataset
from diffussm_lib.evaluation import DEFAULT_WEIGHTS, classify, train_lenet


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    args = ap.parse_args()

    train, test = mnist_dataset("train", pad_to=32), mnist_dataset("test", pad_to=32)
    t0 = time.time()
    model = train_lenet(train.x, train.y, epochs=args.epochs, seed=args.seed)
    wall = time.time() - t0
    _, pred = classify(model, test.x)
    acc = float((pred == test.y).float().mean())
    print(f"test accuracy {acc:.4f} after {args.epochs} epochs, {wall:.0f} s")
    if acc < 0.99:
        raise SystemExit(f"test accuracy {acc:.4f} < 0.99: weights not written")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(args.out)
    card = {
        "test_accuracy": round(acc, 4),
        "epochs": args.epochs,
        "seed": args.seed,
        "train_seconds": round(wall),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "command": f"python scripts/train_fid_lenet.py --epochs {args.epochs} --seed {args.seed}",
    }
    args.out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card))


if __name__ == "__main__":
    main()
