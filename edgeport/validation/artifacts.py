"""Validation's view of the engine layer: NCHW samples in, the first output in the reference (torch) layout out.

    >>> y = run_artifact("out/model_int8.tflite", x)        # x: float32 (N, C, H, W), normalised per the spec
    >>> ref = run_reference(module, x)                      # torch eager, 32 samples per call

Artifacts run one sample per invoke on their default engine (onnxruntime for .onnx, the TFLite interpreter with its
default delegate for .tflite), one thread; TFLite inputs are brought to the artifact's layout (NHWC) and 4-D outputs
back to NCHW. Integer I/O is quantized inside the engine (edgeport.runtime.engines).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeport.runtime.engines import EngineKind, default_engine, open_engine, run_batches
from edgeport.runtime.layout import feature_maps_to_nchw, to_artifact_layout

REFERENCE_BATCH = 32


def artifact_inputs(engine, samples: np.ndarray, *, artifact: str = "artifact") -> np.ndarray:
    """float32 (N, C, H, W) samples -> the layout of the engine's first input: NHWC for a TFLite model that takes
    it, unchanged otherwise (ONNX takes NCHW; non-image inputs pass as they are)."""
    samples = np.asarray(samples, np.float32)
    if engine.kind != EngineKind.TFLITE or samples.ndim != 4:
        return samples
    shape = engine.input_specs()[0][1]
    return to_artifact_layout(samples, artifact_shape=shape, nchw_shape=(1, *samples.shape[1:]), artifact=artifact)


def run_artifact(path: str | Path, samples: np.ndarray) -> np.ndarray:
    """An .onnx or .tflite file on float32 (N, C, H, W) samples -> float32 (N, ...) of its first output, NCHW."""
    path = Path(path)
    engine = open_engine(default_engine(path), path, threads=1)
    [y, *_] = run_batches(engine, [artifact_inputs(engine, samples, artifact=path.name)])
    return feature_maps_to_nchw(y) if engine.kind == EngineKind.TFLITE else y


def run_reference(module, samples: np.ndarray, *, batch: int = REFERENCE_BATCH) -> np.ndarray:
    """A torch nn.Module on float32 (N, C, H, W) samples -> float32 (N, ...) of its first output."""
    engine = open_engine("torch", module, threads=None, input_shape=(1, *samples.shape[1:]))
    [y, *_] = run_batches(engine, [samples], batch=batch)
    return y
