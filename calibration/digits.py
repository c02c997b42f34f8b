"""scikit-learn's handwritten digits (1,797 8x8 images, 10 classes) as a labelled 32x32 RGB data set.

The split is fixed (independent of any seed): a stratified 70/30 train / held-out split with random_state 0.
Training (benchmarks/train_digits.py) and calibration draw from the train part; validation and accuracy use the
held-out part only.
"""
from __future__ import annotations

import functools

import numpy as np
from PIL import Image

HELD_OUT_FRACTION = 0.3
SPLIT_SEED = 0


@functools.lru_cache(maxsize=None)
def digits_images(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, size, size, 3) RGB, white digit on black, labels int64 (N,)), N = 1797."""
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = []
    for x in d.images:  # float 0..16, 8x8
        im = Image.fromarray((x / 16.0 * 255.0).astype(np.float32), mode="F").resize((size, size), Image.BILINEAR)
        a = np.clip(np.asarray(im), 0, 255).round().astype(np.uint8)
        imgs.append(np.stack([a] * 3, axis=-1))
    out = np.stack(imgs)
    out.setflags(write=False)
    return out, d.target.astype(np.int64)


@functools.lru_cache(maxsize=None)
def digits_split() -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices) into the 1,797 images; disjoint, stratified, fixed."""
    from sklearn.model_selection import train_test_split

    _, labels = digits_images()
    idx = np.arange(len(labels))
    train, held = train_test_split(idx, test_size=HELD_OUT_FRACTION, random_state=SPLIT_SEED, stratify=labels)
    return np.sort(train), np.sort(held)
