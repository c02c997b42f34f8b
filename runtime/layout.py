"""Between the reference layout (NCHW, what torch, calibration and parity data use) and an artifact's own layout.

    >>> feed = artifact_feed(engine, {"images": x_nchw, "ids": ids})   # the engine's inputs, its order and layout
    >>> ys = run_batches(engine, feed)

`artifact_feed` is how every caller (validation, per-layer attribution, bench's parity samples) gives an artifact a
model's inputs: one array per input name, samples on axis 0, images float32 (N, C, H, W), other inputs in their own
shape and dtype.
"""
from __future__ import annotations

import re
from typing import Mapping

import numpy as np

from edgeport.errors import InputShapeError
from edgeport.runtime.engines import EngineKind


def to_artifact_layout(samples: np.ndarray, *, artifact_shape: tuple[int, ...], nchw_shape: tuple[int, ...],
                       artifact: str = "artifact") -> np.ndarray:
    """samples: float32 (N, C, H, W). artifact_shape: the artifact's input shape (batch first), as its engine reports
    it. nchw_shape: the model spec's (1, C, H, W). Returns (N, *artifact_shape[1:]) float32: unchanged when the
    artifact takes NCHW, transposed to NHWC when it takes (H, W, C). Raises InputShapeError otherwise."""
    samples = np.asarray(samples, np.float32)
    if samples.ndim != 4:
        raise InputShapeError(f"{artifact}: samples must be (N, C, H, W), got shape {samples.shape}")
    c, h, w = (int(s) for s in nchw_shape[-3:])
    if tuple(samples.shape[1:]) != (c, h, w):
        raise InputShapeError(f"{artifact}: samples have shape {samples.shape[1:]}, the model takes {(c, h, w)}")
    tail = tuple(int(s) for s in artifact_shape[1:])
    if tail == (c, h, w):
        return samples
    if tail == (h, w, c):
        return np.ascontiguousarray(samples.transpose(0, 2, 3, 1))
    raise InputShapeError(f"{artifact}: input shape {tuple(artifact_shape)} is neither NCHW {(1, c, h, w)} "
                          f"nor NHWC {(1, h, w, c)}; re-export it for input {nchw_shape}")


def feature_maps_to_nchw(values: np.ndarray) -> np.ndarray:
    """A TFLite artifact's output back to the reference (torch) layout: 4-D (N, H, W, C) -> (N, C, H, W); other
    ranks (logits) unchanged."""
    return values.transpose(0, 3, 1, 2) if values.ndim == 4 else values


def artifact_inputs(engine, samples: np.ndarray, *, artifact: str = "artifact", index: int = 0) -> np.ndarray:
    """float32 (N, C, H, W) samples -> the layout of the engine's input `index`: NHWC for a TFLite model that takes
    it, unchanged otherwise (ONNX takes NCHW; non-image inputs pass as they are)."""
    if engine.kind != EngineKind.TFLITE or np.ndim(samples) != 4 or not np.issubdtype(samples.dtype, np.floating):
        return samples
    samples = np.asarray(samples, np.float32)
    shape = engine.input_specs()[index][1]
    return to_artifact_layout(samples, artifact_shape=shape, nchw_shape=(1, *samples.shape[1:]), artifact=artifact)


def _key(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def artifact_feed(engine, inputs: Mapping[str, np.ndarray], *, artifact: str = "artifact") -> list[np.ndarray]:
    """{model input name: (N, ...) in the reference layout} -> the engine's inputs in its own order and layout,
    matched by name (exactly, then ignoring case and punctuation, which TFLite's tensor names drop), by position
    when the names do not match. A different number of inputs is an InputShapeError naming both sides."""
    specs = engine.input_specs()
    names = list(inputs)
    if len(names) != len(specs):
        raise InputShapeError(f"{artifact}: takes {len(specs)} inputs ({', '.join(s[0] for s in specs)}); "
                              f"{len(names)} given ({', '.join(names)})")
    by_key = {_key(n): n for n in names}
    order = [n if n in inputs else by_key.get(_key(n)) for n, _, _ in specs]
    if None in order or len(set(order)) != len(order):
        order = names
    return [artifact_inputs(engine, inputs[n], artifact=artifact, index=i) for i, n in enumerate(order)]
