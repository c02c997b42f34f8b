"""The calibrated TFLite float model -> full INT8: the calibration method's activation ranges written over the
recorded min/max, then TensorFlow's MLIR quantizer.

TensorFlow's converter only records min/max. The percentile option works on the *calibrated* model that
`TFLiteConverter` produces with `_experimental_calibrate_only = True` (a float flatbuffer whose activation tensors
carry the recorded min/max): the calibration package runs that float model on the calibration samples and computes
exact percentile ranges per TFLite tensor (edgeport.calibration.tflite_ranges); they are written over the recorded
min/max here, and TensorFlow's MLIR quantizer derives every scale/zero-point from those ranges (and still applies
its own constraints: shared concat scales, fixed output ranges for logistic/softmax, ...).

    calibrated = converter.convert()                       # with converter._experimental_calibrate_only = True
    calibrated = apply_calibration_method(calibrated, method="percentile", calibration=samples)
    int8 = quantize_calibrated(calibrated, io_dtype="int8")
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from edgeport.calibration.ranges import DEFAULT_PERCENTILE
from edgeport.calibration.samples import CalibrationMethod
from edgeport.calibration.tflite_ranges import tflite_activation_ranges, tflite_range_choices

from .flatbuffer import pack, unpack
from .scale_unify import same_scale_groups


def recorded_ranges(calibrated: bytes) -> dict[str, tuple[float, float]]:
    """{tensor name: (min, max)} that the calibrator recorded in the calibrated float model."""
    m = unpack(calibrated)
    out = {}
    for t in m.subgraphs[0].tensors:
        q = t.quantization
        if q is not None and q.min is not None and q.max is not None and len(q.min) == 1:
            out[t.name.decode()] = (float(q.min[0]), float(q.max[0]))
    return out


def override_ranges(calibrated: bytes, ranges: dict[str, tuple[float, float]], *, keep: Iterable[str] = ()) -> bytes:
    """The calibrated model with the min/max of the named tensors replaced (tensors in `keep` untouched)."""
    keep = set(keep)
    m = unpack(calibrated)
    for t in m.subgraphs[0].tensors:
        name = t.name.decode()
        q = t.quantization
        if name in ranges and name not in keep and q is not None and q.min is not None and len(q.min) == 1:
            lo, hi = ranges[name]
            q.min = np.asarray([lo], dtype=np.float32)
            q.max = np.asarray([hi], dtype=np.float32)
    return pack(m)


def _input_names(calibrated: bytes) -> set[str]:
    sg = unpack(calibrated).subgraphs[0]
    return {sg.tensors[i].name.decode() for i in sg.inputs}


def fixed_range_tensors(calibrated: bytes) -> set[str]:
    """Tensors whose recorded min/max is kept by every method: the graph inputs (known exactly) and the graph
    outputs with every tensor that shares their scale (clipping the few large logits changes the answer)."""
    m = unpack(calibrated)
    sg = m.subgraphs[0]
    outputs = set(sg.outputs)
    keep = {int(i) for i in sg.inputs} | outputs
    for group in same_scale_groups(m):
        if outputs & set(group):
            keep |= set(group)
    return {sg.tensors[i].name.decode() for i in keep}


def calibrate_ranges(
    calibrated: bytes,
    *,
    method: CalibrationMethod | str,
    calibration: Iterable[dict[str, np.ndarray]],
    percentile: float = DEFAULT_PERCENTILE,
) -> tuple[bytes, dict]:
    """(the calibrated model with the method's activation ranges, a summary for the report). MINMAX: unchanged.
    PERCENTILE: every activation range but the graph inputs' replaced by its percentile range. PER_TENSOR: each
    activation tensor gets the candidate with the least quantization error on the calibration hold-out
    (edgeport.calibration.range_select); graph inputs and outputs keep their recorded range (fixed_range_tensors)."""
    method = CalibrationMethod(method)
    if method == CalibrationMethod.MINMAX:
        return calibrated, {"method": method.value}
    recorded = recorded_ranges(calibrated)
    keep = fixed_range_tensors(calibrated)
    if method == CalibrationMethod.PERCENTILE:
        ranges = tflite_activation_ranges(calibrated, tensors=recorded, calibration=calibration, method=method,
                                          percentile=percentile)
        inputs = [t for t in keep if t in recorded and t in _input_names(calibrated)]  # as before: inputs only
        return override_ranges(calibrated, ranges, keep=inputs), {"method": method.value, "percentile": percentile}
    if method != CalibrationMethod.PER_TENSOR:
        raise ValueError(f"TFLite calibration supports minmax, percentile and per-tensor, not {method}")
    choices, _ = tflite_range_choices(calibrated, tensors=[t for t in recorded if t not in keep],
                                      calibration=calibration)
    ranges = {name: c.range for name, c in choices.items()}
    counts: dict[str, int] = {}
    for c in choices.values():
        counts[c.chosen] = counts.get(c.chosen, 0) + 1
    summary = {"method": method.value, "tensors": len(choices), "chosen": dict(sorted(counts.items())),
               "kept_recorded": len(keep & set(recorded))}
    return override_ranges(calibrated, ranges, keep=keep), summary


def apply_calibration_method(
    calibrated: bytes,
    *,
    method: CalibrationMethod | str,
    calibration: Iterable[dict[str, np.ndarray]],
    percentile: float = DEFAULT_PERCENTILE,
) -> bytes:
    """`calibrate_ranges` without the summary."""
    return calibrate_ranges(calibrated, method=method, calibration=calibration, percentile=percentile)[0]


def quantize_calibrated(calibrated: bytes, *, io_dtype: str = "int8", per_channel: bool = True,
                        keep_float: Iterable[str] = ()) -> bytes:
    """Calibrated float model -> full-integer TFLite (TensorFlow's MLIR quantizer; what TFLiteConverter runs after
    calibration). `io_dtype`: int8 | uint8 | float32 (model input/output type). `keep_float`: ops (by their first
    output tensor's name) the quantizer leaves float, with DEQUANTIZE / QUANTIZE around them (float_ops.py)."""
    import tensorflow as tf
    from tensorflow.lite.python.convert import mlir_quantize

    dt = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32, "float": tf.float32}[io_dtype]
    return mlir_quantize(calibrated, disable_per_channel=not per_channel, fully_quantize=True,
                         input_data_type=dt, output_data_type=dt, denylisted_nodes=list(keep_float) or None)
