"""Train small zoo models on scikit-learn's handwritten digits (32x32 RGB) so INT8 behaviour can be judged on
trained weights and real labels. Fixed seeds, CPU, a few minutes per model.

    python benchmarks/train_digits.py                       # trains the default models, writes checkpoints
    python benchmarks/train_digits.py --models augshufflenet_x0_5 --epochs 30

Writes `calibration/checkpoints/<model>_digits.pt` (a plain state_dict, fp32) and `<model>_digits.json`
(held-out accuracy, seed, epochs). Data: `edgeport.calibration.digits` (stratified 70/30 split, random_state 0):
training sees only the train split; the printed accuracy is on the 540 held-out images.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeport.calibration import load_samples
from edgeport.calibration.digits import digits_split
from edgeport.models import build_model, get_spec

CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "calibration" / "checkpoints"
DEFAULT_MODELS = ("shufflenet_v2_cifar_x0_5", "augshufflenet_x0_5")


def _tensors(model_name: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    s = load_samples("digits", model_spec=get_spec(model_name), split=split,
                     num=len(digits_split()[0 if split == "calibration" else 1]))
    return torch.from_numpy(s.array()), torch.tensor(s.labels)


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 3 pixels (zero-padded with the background value) and small scale jitter."""
    n = x.shape[0]
    bg = x[:, :, :1, :1].expand_as(x)
    pad = 3
    xp = F.pad(x - bg, (pad, pad, pad, pad)) + F.pad(bg, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    out = torch.stack([xp[i, :, dy[i]:dy[i] + x.shape[2], dx[i]:dx[i] + x.shape[3]] for i in range(n)])
    return out


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 256]).argmax(1) for i in range(0, len(x), 256)])
    return float((pred == y).float().mean())


def train(model_name: str, *, epochs: int, seed: int, batch_size: int = 64, lr: float = 3e-3) -> dict:
    torch.manual_seed(seed)
    np.random.seed(seed)
    g = torch.Generator().manual_seed(seed)
    xtr, ytr = _tensors(model_name, "calibration")
    xte, yte = _tensors(model_name, "validation")
    model = build_model(model_name, num_classes=10).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps = epochs * ((len(xtr) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    t0 = time.time()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=g)
        total = 0.0
        for i in range(0, len(xtr), batch_size):
            idx = perm[i:i + batch_size]
            xb = _augment(xtr[idx], g)
            loss = F.cross_entropy(model(xb), ytr[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if (epoch + 1) % 5 == 0 or epoch == epochs - 1:
            acc = evaluate(model, xte, yte)
            print(f"{model_name} epoch {epoch + 1:3d} loss {total / len(xtr):.4f} held-out acc {acc:.4f} "
                  f"({time.time() - t0:.0f} s)", flush=True)
    model.eval()
    return {"model": model_name, "state_dict": model.state_dict(), "held_out_accuracy": evaluate(model, xte, yte),
            "epochs": epochs, "seed": seed, "train_seconds": round(time.time() - t0, 1),
            "n_train": len(xtr), "n_held_out": len(xte)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=CHECKPOINT_DIR)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        r = train(name, epochs=args.epochs, seed=args.seed)
        ckpt = args.out / f"{name}_digits.pt"
        torch.save(r.pop("state_dict"), ckpt)
        r["checkpoint"] = ckpt.name
        r["checkpoint_bytes"] = ckpt.stat().st_size
        (args.out / f"{name}_digits.json").write_text(json.dumps(r, indent=2) + "\n")
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
