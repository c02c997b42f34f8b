"""Image -> model input, driven by the model spec, so torch, ONNX Runtime and TFLite see the same numbers.

Evaluation: resize the short side to `spec.resize_size`, centre-crop `spec.crop_size` (scaled when the export used
a different input size), then (x/255 - mean)/std. Calibration augmentation of the few bundled photos: a random
resized crop straight to the input size, and a random horizontal flip, drawn from a seeded numpy Generator.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

from edgeport.models import ChannelOrder, ModelSpec


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Any HxW / HxWx1 / HxWx3 / HxWx4 image (uint8, bool or float in [0, 1]) -> uint8 HxWx3 RGB."""
    a = np.asarray(image)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = np.clip(np.asarray(a, dtype=np.float64) * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).round().astype(np.uint8)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    elif a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"not an image: shape {np.asarray(image).shape}")
    return a


def _resize(img: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    h, w = size_hw
    return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR, reducing_gap=None))


def eval_resize_size(spec: ModelSpec, input_shape: tuple[int, int, int]) -> int:
    """Short-side resize for `input_shape` keeping the spec's resize/crop ratio (256/224 for ImageNet)."""
    return max(input_shape[1], int(round(input_shape[1] * spec.resize_size / spec.crop_size)))


def center_crop(img: np.ndarray, *, spec: ModelSpec, input_shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 HxWx3 -> uint8 (H_in, W_in, 3): short side to the spec's resize size, then a centre crop."""
    _, H, W = input_shape
    r = eval_resize_size(spec, input_shape)
    h, w = img.shape[:2]
    scale = r / min(h, w)
    nh, nw = max(H, int(round(h * scale))), max(W, int(round(w * scale)))
    img = _resize(img, (nh, nw))
    top, left = (nh - H) // 2, (nw - W) // 2
    return img[top:top + H, left:left + W]


def random_resized_crop(
    img: np.ndarray, *, rng: np.random.Generator, size_hw: tuple[int, int],
    scale: tuple[float, float] = (0.2, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True,
) -> np.ndarray:
    """uint8 HxWx3 -> uint8 (H, W, 3): a crop of `scale` of the area and `ratio` aspect, resized; maybe mirrored."""
    h, w = img.shape[:2]
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            break
    else:  # fall back to the largest centred square
        ch = cw = min(h, w)
        top, left = (h - ch) // 2, (w - cw) // 2
    out = _resize(np.ascontiguousarray(img[top:top + ch, left:left + cw]), size_hw)
    if flip and rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def normalize(img: np.ndarray, *, spec: ModelSpec, channels: int = 3) -> np.ndarray:
    """uint8 HxWx3 RGB -> float32 (1, C, H, W) in the spec's channel order (BGR: the channels reversed first), as
    (x/255 - mean)/std with mean/std in that order. C=1 uses the luminance and channel 0 stats."""
    x = img.astype(np.float32) / 255.0
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    if channels == 3 and spec.channel_order == ChannelOrder.BGR:
        x = x[..., ::-1]
    if channels == 1:
        x = (x @ np.asarray([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
        mean, std = mean[:1], std[:1]
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def preprocess_eval(image: np.ndarray, *, spec: ModelSpec, input_shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """Any image -> float32 (1, C, H, W) model input: resize, centre crop, normalise (the evaluation transform)."""
    input_shape = tuple(input_shape or spec.input_shape)
    return normalize(center_crop(to_rgb_uint8(image), spec=spec, input_shape=input_shape), spec=spec,
                     channels=input_shape[0])
