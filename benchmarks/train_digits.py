"""Train small zoo models on scikit-learn's handwritten digits (32x32 RGB) so INT8 behaviour can be judged on
trained weights and real labels. Fixed seeds, CPU, a few minutes per model.

    python benchmarks/train_digits.py                       # trains the default models, writes checkpoints
    python benchmarks/train_digits.py --models augshufflenet_x0_5 --epochs 30
    python benchmarks/train_digits.py --models efficientnet_b0 --input-size 32 --epochs 15 --out ~/.cache/edgeport

ImageNet-sized zoo models train at a small `--input-size` (their global pooling makes the weights size-agnostic);
export them with `--input-shape 3,S,S`. Checkpoints over 2 MB (EfficientNet-B0: 16 MB) are not kept in the repo:
`ensure_checkpoint` trains them on demand into a cache folder.

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


def _tensors(model_name: str, split: str, size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    spec = get_spec(model_name)
    shape = (spec.input_shape[0], size, size) if size else None
    s = load_samples("digits", model_spec=spec, split=split, input_shape=shape,
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


def train(model_name: str, *, epochs: int, seed: int, batch_size: int = 64, lr: float = 3e-3,
          input_size: int | None = None) -> dict:
    torch.manual_seed(seed)
    np.random.seed(seed)
    g = torch.Generator().manual_seed(seed)
    xtr, ytr = _tensors(model_name, "calibration", input_size)
    xte, yte = _tensors(model_name, "validation", input_size)
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
            "input_shape": [int(v) for v in xtr.shape[1:]],
            "n_train": len(xtr), "n_held_out": len(xte)}


def save(r: dict, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    name = r["model"]
    ckpt = out / f"{name}_digits.pt"
    torch.save(r.pop("state_dict"), ckpt)
    r["checkpoint"] = ckpt.name
    r["checkpoint_bytes"] = ckpt.stat().st_size
    (out / f"{name}_digits.json").write_text(json.dumps(r, indent=2) + "\n")
    return ckpt


def ensure_checkpoint(model_name: str, *, out: Path, epochs: int, input_size: int | None = None, seed: int = 0) -> Path:
    """The digits checkpoint of `model_name` in `out`, trained (and cached there) when missing or when it was
    trained with other settings."""
    ckpt, meta = out / f"{model_name}_digits.pt", out / f"{model_name}_digits.json"
    if ckpt.is_file() and meta.is_file():
        m = json.loads(meta.read_text())
        if m.get("epochs") == epochs and m.get("seed") == seed and (
                input_size is None or m.get("input_shape", [0, 0, 0])[1] == input_size):
            return ckpt
    return save(train(model_name, epochs=epochs, seed=seed, input_size=input_size), out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--input-size", type=int, default=None, help="square input size (default: the spec's)")
    ap.add_argument("--out", type=Path, default=CHECKPOINT_DIR)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    for name in args.models:
        r = train(name, epochs=args.epochs, seed=args.seed, input_size=args.input_size)
        save(r, args.out.expanduser())
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
