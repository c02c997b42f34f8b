"""The float noise floor of a float32 artifact: how far two correct float32 evaluations of the same file disagree
(edgeport.metrics.fp32_rel_bound turns it into the float32 parity bound). An ONNX file is run by ONNX Runtime with
every graph optimisation (fused, re-laid-out kernels) and with none; a .tflite file by the XNNPACK delegate and by
TFLite's builtin kernels. A converter bug (a wrong padding, a misread axis) shows in both evaluations of a file
alike, so it does not raise the floor; kernel arithmetic (accumulation order, fused activations, polynomial
sigmoid / exp) does."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from edgeport.errors import TargetError
from edgeport.metrics import max_abs_rel
from edgeport.runtime.engines import open_engine, run_batches
from edgeport.runtime.layout import artifact_feed

# artifact suffix -> the two engines whose disagreement is its float noise floor
NOISE_FLOOR_ENGINES = {".onnx": ("onnxruntime", "onnxruntime-unoptimized"), ".tflite": ("tflite", "tflite-builtin")}


def float_noise_floor(path: str | Path, inputs: Mapping[str, np.ndarray]) -> list[float]:
    """The float noise floor of the float32 artifact `path` (.onnx or .tflite) on `inputs` ({model input name:
    (N, ...)} in the reference layout): per output, max_abs_rel between its two NOISE_FLOOR_ENGINES."""
    path = Path(path)
    if path.suffix not in NOISE_FLOOR_ENGINES:
        raise TargetError(f"{path}: no float noise floor for {path.suffix or 'suffix-less'} files "
                          f"(measured for {', '.join(NOISE_FLOOR_ENGINES)})")
    runs = []
    for name in NOISE_FLOOR_ENGINES[path.suffix]:
        engine = open_engine(name, path, threads=1)
        runs.append(run_batches(engine, artifact_feed(engine, inputs, artifact=path.name)))
    return [max_abs_rel(a, b) for a, b in zip(*runs)]
