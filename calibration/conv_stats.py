"""Per-tap input means of a convolution: what an analytic bias correction needs from the float activations.

A convolution's output channel o is sum_{kh, kw, i} W[o, kh, kw, i] * x[tap (kh, kw) of the position, i]. Over all
output positions and samples its mean is sum W[o, kh, kw, i] * M[kh, kw, i], where M[kh, kw, i] is the mean of the
input value that tap reads (0 where it reads padding). So the mean output shift that replacing W by its quantized
Wq causes is exactly sum (Wq - W) * M, and replacing x by its quantized value adds sum Wq * (Mq - M), with Mq the
tap means of the quantized input: no INT8 inference needed. Layout NHWC (TFLite).
"""
from __future__ import annotations

import numpy as np


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """(before, after) padding of TensorFlow's SAME scheme along one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def tap_means(x: np.ndarray, *, kernel: tuple[int, int], stride: tuple[int, int] = (1, 1),
              dilation: tuple[int, int] = (1, 1), same: bool = True) -> np.ndarray:
    """(KH, KW, C) mean over the batch and every output position of the input value each kernel tap reads, padding
    counted as 0. `x`: (N, H, W, C) float."""
    x = np.asarray(x, dtype=np.float32)
    n, h, w, c = x.shape
    kh, kw = kernel
    (sh, sw), (dh, dw) = stride, dilation
    if kernel == (1, 1) and stride == (1, 1):
        return x.reshape(-1, c).mean(axis=0, dtype=np.float64).reshape(1, 1, c)
    if same:
        ph, pw = same_padding(h, kh, sh, dh), same_padding(w, kw, sw, dw)
        x = np.pad(x, ((0, 0), ph, pw, (0, 0)))
    oh = (x.shape[1] - (kh - 1) * dh - 1) // sh + 1
    ow = (x.shape[2] - (kw - 1) * dw - 1) // sw + 1
    out = np.empty((kh, kw, c))
    for i in range(kh):
        for j in range(kw):
            win = x[:, i * dh: i * dh + (oh - 1) * sh + 1: sh, j * dw: j * dw + (ow - 1) * sw + 1: sw, :]
            out[i, j] = win.reshape(-1, c).mean(axis=0, dtype=np.float64)
    return out


def fake_quantize(x: np.ndarray, *, scale: float, zero_point: int, qmin: int = -128, qmax: int = 127) -> np.ndarray:
    """x rounded to the int8 grid (scale, zero_point) and back to float, clipped to [qmin, qmax]."""
    q = np.clip(np.round(np.asarray(x, dtype=np.float32) * np.float32(1.0 / scale)) + zero_point, qmin, qmax)
    return (q - zero_point) * np.float32(scale)


def tap_patches(x: np.ndarray, *, kernel: tuple[int, int], stride: tuple[int, int] = (1, 1),
                dilation: tuple[int, int] = (1, 1), same: bool = True, max_positions: int | None = None,
                seed: int = 0) -> np.ndarray:
    """(P, KH, KW, C) the input values each output position of a convolution reads (padding read as 0), over the
    batch and the output positions; at most `max_positions` of them, drawn without replacement (`seed`) when there
    are more. `x`: (N, H, W, C) float. What a layer-output reconstruction objective needs (weight_rounding.py)."""
    x = np.asarray(x, dtype=np.float32)
    n, h, w, c = x.shape
    kh, kw = kernel
    (sh, sw), (dh, dw) = stride, dilation
    if same:
        x = np.pad(x, ((0, 0), same_padding(h, kh, sh, dh), same_padding(w, kw, sw, dw), (0, 0)))
    oh = (x.shape[1] - (kh - 1) * dh - 1) // sh + 1
    ow = (x.shape[2] - (kw - 1) * dw - 1) // sw + 1
    total = n * oh * ow
    if max_positions is None or total <= max_positions:
        idx = np.arange(total)
    else:
        idx = np.sort(np.random.default_rng(seed).choice(total, max_positions, replace=False))
    b, r = np.divmod(idx, oh * ow)
    row, col = np.divmod(r, ow)
    out = np.empty((len(idx), kh, kw, c), np.float32)
    for i in range(kh):
        for j in range(kw):
            out[:, i, j, :] = x[b, row * sh + i * dh, col * sw + j * dw, :]
    return out
