"""Percentile (outlier-clipping) calibration for TFLite full-INT8.

TensorFlow's converter only records min/max. The percentile option works on the *calibrated* model that
`TFLiteConverter` produces with `_experimental_calibrate_only = True` (a float flatbuffer whose activation tensors
carry the recorded min/max): we run that float model on the calibration samples with every tensor preserved,
compute exact percentile ranges per TFLite tensor (ranges.RangeCollector), write them over the recorded min/max,
and hand the result to TensorFlow's MLIR quantizer, which derives every scale/zero-point from those ranges (and
still applies its own constraints: shared concat scales, fixed output ranges for logistic/softmax, ...).

    calibrated = converter.convert()                       # with converter._experimental_calibrate_only = True
    calibrated = apply_calibration_method(calibrated, method="percentile", calibration=samples)
    int8 = quantize_calibrated(calibrated, io_dtype="int8")

Samples follow the protocol (NCHW float32); they are transposed to NHWC when the TFLite input is NHWC.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from .ranges import DEFAULT_PERCENTILE, RangeCollector
from .samples import CalibrationMethod


def _model(buf: bytes):
    from edgeport.export.tflite._flatbuffer import unpack

    return unpack(buf)


def _pack(model) -> bytes:
    from edgeport.export.tflite._flatbuffer import pack

    return pack(model)


def recorded_ranges(calibrated: bytes) -> dict[str, tuple[float, float]]:
    """{tensor name: (min, max)} that the calibrator recorded in the calibrated float model."""
    m = _model(calibrated)
    out = {}
    for t in m.subgraphs[0].tensors:
        q = t.quantization
        if q is not None and q.min is not None and q.max is not None and len(q.min) == 1:
            out[t.name.decode()] = (float(q.min[0]), float(q.max[0]))
    return out


def _feed_layout(interp, sample: np.ndarray) -> np.ndarray:
    shape = tuple(interp.get_input_details()[0]["shape"])
    if sample.shape == shape:
        return sample
    nhwc = sample.transpose(0, 2, 3, 1)
    if nhwc.shape == shape:
        return np.ascontiguousarray(nhwc)
    raise ValueError(f"calibration sample {sample.shape} fits neither the TFLite input {shape} nor its NHWC form")


def tflite_activation_ranges(
    calibrated: bytes,
    *,
    calibration: Iterable[dict[str, np.ndarray]],
    method: CalibrationMethod | str = CalibrationMethod.PERCENTILE,
    percentile: float = DEFAULT_PERCENTILE,
) -> dict[str, tuple[float, float]]:
    """{tensor name: (lo, hi)} for every tensor of the calibrated model that carries a recorded range."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    names = recorded_ranges(calibrated)
    samples = [next(iter(s.values())) for s in calibration]
    # No XNNPACK: a delegate would hide the intermediate tensors.
    interp = Interpreter(model_content=calibrated, experimental_preserve_all_tensors=True, num_threads=1,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    idx = {d["name"]: d["index"] for d in interp.get_tensor_details() if d["name"] in names}
    inp = interp.get_input_details()[0]["index"]
    col = RangeCollector(method=method, percentile=percentile, num_samples=len(samples))
    for x in samples:
        interp.set_tensor(inp, _feed_layout(interp, np.asarray(x, dtype=np.float32)))
        interp.invoke()
        for name, i in idx.items():
            col.update(name, interp.get_tensor(i))
    return col.ranges()


def override_ranges(calibrated: bytes, ranges: dict[str, tuple[float, float]], *, keep: Iterable[str] = ()) -> bytes:
    """The calibrated model with the min/max of the named tensors replaced (tensors in `keep` untouched)."""
    keep = set(keep)
    m = _model(calibrated)
    for t in m.subgraphs[0].tensors:
        name = t.name.decode()
        q = t.quantization
        if name in ranges and name not in keep and q is not None and q.min is not None and len(q.min) == 1:
            lo, hi = ranges[name]
            q.min = np.asarray([lo], dtype=np.float32)
            q.max = np.asarray([hi], dtype=np.float32)
    return _pack(m)


def apply_calibration_method(
    calibrated: bytes,
    *,
    method: CalibrationMethod | str,
    calibration: Iterable[dict[str, np.ndarray]],
    percentile: float = DEFAULT_PERCENTILE,
) -> bytes:
    """MINMAX: unchanged. PERCENTILE: activation ranges replaced by percentile ranges (graph inputs keep their
    recorded range: the input is known exactly). ENTROPY is ONNX Runtime only -> ValueError."""
    method = CalibrationMethod(method)
    if method == CalibrationMethod.MINMAX:
        return calibrated
    if method != CalibrationMethod.PERCENTILE:
        raise ValueError(f"TFLite calibration supports minmax and percentile, not {method}")
    m = _model(calibrated)
    sg = m.subgraphs[0]
    inputs = [sg.tensors[i].name.decode() for i in sg.inputs]
    ranges = tflite_activation_ranges(calibrated, calibration=calibration, method=method, percentile=percentile)
    return override_ranges(calibrated, ranges, keep=inputs)


def quantize_calibrated(calibrated: bytes, *, io_dtype: str = "int8", per_channel: bool = True) -> bytes:
    """Calibrated float model -> full-integer TFLite (TensorFlow's MLIR quantizer; what TFLiteConverter runs after
    calibration). `io_dtype`: int8 | uint8 | float32 (model input/output type)."""
    import tensorflow as tf
    from tensorflow.lite.python.convert import mlir_quantize

    dt = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32, "float": tf.float32}[io_dtype]
    return mlir_quantize(calibrated, disable_per_channel=not per_channel, fully_quantize=True,
                         input_data_type=dt, output_data_type=dt)
