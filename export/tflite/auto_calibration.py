"""`--calibration-method auto`: the range method whose INT8 model has the least output error on a calibration hold-out.

The calibration samples are split by index: every 4th sample is held out (the same split range_select.py uses; the
validation split is a different set of images and is never seen here). For each candidate method (min/max,
percentile, per-tensor) the calibrated float model gets that method's ranges computed on the *fit* samples only, is
quantized by TensorFlow's quantizer and bias-corrected analytically (one float pass: cheap enough to run per
candidate), and its outputs on the hold-out samples are compared with the float model's: logit SQNR (the ranking,
higher wins; ties keep the earlier candidate) and top-1 agreement (recorded). The winner is then applied with all
calibration samples and the bias correction the conversion asked for.

    >>> choice = choose_calibration_method(calibrated, calibration=samples)
    >>> choice.method, choice.as_dict()["candidates"]["per-tensor"]["sqnr_db"]
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from edgeport.calibration.range_select import HOLDOUT_EVERY
from edgeport.calibration.samples import CalibrationMethod
from edgeport.calibration.tflite_ranges import tflite_activation_ranges
from edgeport.metrics import sqnr_db, top1_agreement
from edgeport.runtime.engines import open_engine, run

from .bias_correction import analytic_bias_correction
from .calibrated import calibrate_ranges, override_ranges, quantize_calibrated, recorded_ranges
from .scale_unify import unify_same_scale_ranges

AUTO_CANDIDATES = (CalibrationMethod.MINMAX, CalibrationMethod.PERCENTILE, CalibrationMethod.PER_TENSOR)


@dataclass
class AutoChoice:
    """The chosen method and, per candidate, its hold-out figures (`sqnr_db`, `top1_agreement`, `seconds`)."""

    method: CalibrationMethod
    candidates: dict[str, dict] = field(default_factory=dict)
    fit_samples: int = 0
    holdout_samples: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"chosen": self.method.value, "criterion": "hold-out logit SQNR vs the float model",
                "fit_samples": self.fit_samples, "holdout_samples": self.holdout_samples,
                "candidates": self.candidates, "seconds": round(self.seconds, 2)}


def _fit_ranges(calibrated: bytes, method: CalibrationMethod, fit: list[dict]) -> bytes:
    if method is CalibrationMethod.MINMAX:  # TensorFlow recorded min/max on every sample: recompute on fit only
        ranges = tflite_activation_ranges(calibrated, tensors=recorded_ranges(calibrated), calibration=fit,
                                          method=CalibrationMethod.MINMAX)
        return override_ranges(calibrated, ranges)
    return calibrate_ranges(calibrated, method=method, calibration=fit)[0]


def _outputs(model: bytes, xs: Sequence[np.ndarray]) -> np.ndarray:
    engine = open_engine("tflite-builtin", model, threads=1)
    return np.concatenate([run(engine, [x])[0].reshape(1, -1) for x in xs])


def choose_calibration_method(
    calibrated: bytes,
    *,
    calibration: Sequence[dict[str, np.ndarray]],
    nhwc_inputs: Sequence[np.ndarray],
    io_dtype: str = "int8",
    bias_samples: int = 8,
    keep_float: Sequence[str] = (),
) -> AutoChoice:
    """Rank AUTO_CANDIDATES on the calibration hold-out. `calibration`: the protocol samples (NCHW);
    `nhwc_inputs`: the same samples in the TFLite input layout (what the models are fed); `keep_float`: the ops each
    candidate keeps float, as the final model does (calibrated.quantize_calibrated)."""
    t0 = time.perf_counter()
    samples = list(calibration)
    hold_idx = [k for k in range(len(samples)) if k % HOLDOUT_EVERY == HOLDOUT_EVERY - 1]
    fit_idx = [k for k in range(len(samples)) if k % HOLDOUT_EVERY != HOLDOUT_EVERY - 1]
    if not hold_idx or len(fit_idx) < 2:
        return AutoChoice(CalibrationMethod.MINMAX, {"note": "fewer than 4 calibration samples: min/max"},
                          len(fit_idx), len(hold_idx), time.perf_counter() - t0)
    fit = [samples[k] for k in fit_idx]
    hold_x = [nhwc_inputs[k] for k in hold_idx]
    ref = _outputs(calibrated, hold_x)
    choice = AutoChoice(CalibrationMethod.MINMAX, {}, len(fit_idx), len(hold_idx))
    best = -np.inf
    for method in AUTO_CANDIDATES:
        t = time.perf_counter()
        ranged, _ = unify_same_scale_ranges(_fit_ranges(calibrated, method, fit))
        int8 = quantize_calibrated(ranged, io_dtype=io_dtype, keep_float=keep_float)
        int8, _ = analytic_bias_correction(int8, float_model=calibrated,
                                           inputs=[nhwc_inputs[k] for k in fit_idx[:bias_samples]])
        y = _outputs(int8, hold_x)
        s = float(sqnr_db(ref, y))
        choice.candidates[method.value] = {"sqnr_db": round(s, 2), "top1_agreement": round(top1_agreement(ref, y), 4),
                                           "seconds": round(time.perf_counter() - t, 2)}
        if s > best:
            best, choice.method = s, method
    choice.seconds = time.perf_counter() - t0
    return choice
