"""Activation ranges of a calibrated TFLite float model, for percentile (outlier-clipping) calibration.

TensorFlow's converter only records min/max. For the percentile option, the converter
(edgeport.export.tflite.calibrated) runs the *calibrated* float model that `TFLiteConverter` produces with
`_experimental_calibrate_only = True` through this module: every tensor is preserved, and the exact percentile
range of each named tensor over the calibration samples is collected (ranges.RangeCollector). Writing the ranges
back into the flatbuffer and quantizing are the converter's.

Samples follow the protocol ({input name: (1, ...)}, images NCHW float32); each input is matched to the model's by
name and transposed to NHWC when the TFLite input is NHWC (edgeport.runtime.layout.artifact_feed).
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from edgeport.runtime.engines import open_engine, run
from edgeport.runtime.layout import artifact_feed

from .range_select import HistogramCollector, RangeChoice
from .ranges import DEFAULT_PERCENTILE, RangeCollector
from .samples import CalibrationMethod


def _taps(calibrated, calibration, tensors):
    """(samples: every model input of each calibration sample, as the calibrated model takes them, builtin-kernel
    engine keeping every tensor, its interpreter, {name: tensor index} of the wanted tensors the model has): what
    both range passes read the calibrated model with. Inputs are matched by name (artifact_feed), so a model with
    several inputs (a second tensor, int64 ids) gets each of them."""
    names = set(tensors)
    engine = open_engine("tflite-builtin", calibrated, threads=1, preserve_all_tensors=True)
    samples = [artifact_feed(engine, dict(s), artifact="calibrated model") for s in calibration]
    interp = engine.interpreter
    idx = {d["name"]: d["index"] for d in interp.get_tensor_details() if d["name"] in names}
    return samples, engine, interp, idx


def tflite_activation_ranges(
    calibrated: bytes,
    *,
    tensors: Iterable[str],
    calibration: Iterable[dict[str, np.ndarray]],
    method: CalibrationMethod | str = CalibrationMethod.PERCENTILE,
    percentile: float = DEFAULT_PERCENTILE,
) -> dict[str, tuple[float, float]]:
    """{tensor name: (lo, hi)} over the calibration samples for each of `tensors` (TFLite tensor names) the model
    has. The model runs on the builtin kernels (a delegate would hide the intermediate tensors), one thread."""
    samples, engine, interp, idx = _taps(calibrated, calibration, tensors)
    col = RangeCollector(method=method, percentile=percentile, num_samples=len(samples))
    for feed in samples:
        run(engine, feed)
        for name, i in idx.items():
            col.update(name, interp.get_tensor(i))
    return col.ranges()


def tflite_range_choices(
    calibrated: bytes,
    *,
    tensors: Iterable[str],
    calibration: Iterable[dict[str, np.ndarray]],
) -> tuple[dict[str, RangeChoice], dict[str, np.ndarray]]:
    """({tensor name: RangeChoice}, {tensor name: per-channel mean}) over the calibration samples for each of
    `tensors` the calibrated float model has: one float pass, every 4th sample held out for the range choice
    (range_select.py). Channel means (last axis, NHWC) are over all samples."""
    samples, engine, interp, idx = _taps(calibrated, calibration, tensors)
    col = HistogramCollector(num_samples=len(samples))
    for k, feed in enumerate(samples):
        run(engine, feed)
        for name, i in idx.items():
            col.update(name, interp.get_tensor(i), sample_index=k)
    return col.select(), col.channel_means()
