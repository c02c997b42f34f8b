"""Between the reference layout (NCHW, what torch, calibration and parity data use) and an artifact's own layout."""
from __future__ import annotations

import numpy as np

from edgeport.errors import InputShapeError


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
