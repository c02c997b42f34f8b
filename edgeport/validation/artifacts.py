"""Validation's view of the engine layer: samples in the reference layout in, outputs in the reference layout out.

    >>> y = run_artifact("out/model_int8.tflite", x)        # x: float32 (N, C, H, W), normalised per the spec
    >>> ys = run_artifact_outputs("out/model_int8.tflite", {"images": x, "ids": ids}, output_layout="nhwc")
    >>> ref = run_reference(module, x)                      # torch eager, 32 samples per call

Inputs are one array per model input, samples on axis 0: the image input float32 (N, C, H, W), other inputs in
their own shape and dtype (token ids stay int64). Artifacts run one sample per invoke on their default engine
(onnxruntime for .onnx, the TFLite interpreter with its default delegate for .tflite), one thread; inputs are
matched by name and brought to the artifact's layout (NHWC for TFLite) by edgeport.runtime.layout.artifact_feed,
and 4-D outputs of an artifact whose `output_layout` is nhwc are brought back to NCHW. Integer I/O is quantized
inside the engine (edgeport.runtime.engines).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeport.runtime.engines import EngineKind, default_engine, open_engine, run_batches
from edgeport.runtime.layout import artifact_feed, feature_maps_to_nchw

REFERENCE_BATCH = 32


def run_artifact_outputs(path: str | Path, inputs: dict[str, np.ndarray] | np.ndarray, *,
                         output_layout: str = "nhwc") -> list[np.ndarray]:
    """An .onnx or .tflite file on `inputs` ({input name: (N, ...)} in the model's order, or one float32
    (N, C, H, W) image array) -> one float32 (N, ...) array per output, in the model's output order, 4-D outputs
    NCHW. `output_layout`: the layout a TFLite artifact's 4-D outputs were written in (report.json
    artifact_info.<artifact>.output_layout)."""
    path = Path(path)
    engine = open_engine(default_engine(path), path, threads=1)
    if not isinstance(inputs, dict):
        inputs = {engine.input_specs()[0][0]: inputs}
    ys = run_batches(engine, artifact_feed(engine, inputs, artifact=path.name))
    if engine.kind == EngineKind.TFLITE and output_layout == "nhwc":
        ys = [feature_maps_to_nchw(y) for y in ys]
    return ys


def run_artifact(path: str | Path, samples: np.ndarray) -> np.ndarray:
    """An .onnx or .tflite file on float32 (N, C, H, W) samples -> float32 (N, ...) of its first output, NCHW."""
    return run_artifact_outputs(path, samples)[0]


def run_reference_outputs(module, inputs: dict[str, np.ndarray] | np.ndarray, *,
                          batch: int = REFERENCE_BATCH) -> list[np.ndarray]:
    """A torch nn.Module on {input name: (N, ...)} (positional, in the model's order) or one float32 (N, C, H, W)
    array -> one float32 (N, ...) array per output."""
    arrays = list(inputs.values()) if isinstance(inputs, dict) else [inputs]
    engine = open_engine("torch", module, threads=None, input_shape=(1, *arrays[0].shape[1:]))
    return run_batches(engine, arrays, batch=batch)


def run_reference(module, samples: np.ndarray, *, batch: int = REFERENCE_BATCH) -> np.ndarray:
    """A torch nn.Module on float32 (N, C, H, W) samples -> float32 (N, ...) of its first output."""
    return run_reference_outputs(module, samples, batch=batch)[0]
