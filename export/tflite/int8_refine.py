"""The passes that refine a full-integer model after TensorFlow's quantizer, in order: adaptive or sequential weight
rounding (weight_rounding.py, when asked), then bias correction (bias_correction.py). Both compare the INT8 model with
a float model of the same lowering on calibration inputs and edit constants in place; neither changes the graph.

    >>> r = refine_int8(int8, float_model=lambda: fp32, inputs=xs, bias_correction=BiasCorrection.EMPIRICAL,
    ...                 bias_samples=8, weight_rounding=WeightRounding.ADAPTIVE, rounding_samples=16, timings={})
    >>> r.model, r.bias_correction, r.weight_rounding
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .bias_correction import BiasCorrection, analytic_bias_correction, correct_biases
from .stages import OnStage, timed_stage
from .weight_rounding import WeightRounding, adaptive_rounding, sequential_rounding


@dataclass(frozen=True)
class Int8Refinement:
    """The refined INT8 flatbuffer and what each pass did (None: the pass did not run)."""

    model: bytes
    bias_correction: dict | None = None
    weight_rounding: dict | None = None


def refine_int8(
    int8_model: bytes,
    *,
    float_model: Callable[[], bytes],
    inputs: Sequence[np.ndarray],
    bias_correction: BiasCorrection,
    bias_samples: int,
    weight_rounding: WeightRounding,
    rounding_samples: int,
    timings: dict[str, float],
    on_stage: OnStage | None = None,
) -> Int8Refinement:
    """Run the asked passes on `int8_model`. `float_model()`: the float TFLite model of the same lowering (built only
    when a pass runs); `inputs`: calibration inputs in the TFLite input layout, batch 1 (the first `bias_samples` /
    `rounding_samples` of them are used). Each pass is timed into `timings` and told to `on_stage`."""
    model, bc, wr = int8_model, None, None
    ref: list[bytes] = []

    def reference() -> bytes:
        if not ref:
            ref.append(float_model())
        return ref[0]

    n_round = min(rounding_samples, len(inputs))
    if weight_rounding is not WeightRounding.NEAREST and n_round > 0:
        name = f"int8 {weight_rounding.value} weight rounding ({n_round} samples)"
        with timed_stage(on_stage, name, timings, "weight_rounding_s"):
            # bias correction runs next: the rounding leaves it the mean error (adaptive: the objective is the
            # error's variance; sequential: each bias is refitted with its weights, and the empirical correction
            # then measures what is left)
            corrected = bias_correction is not BiasCorrection.NONE and bias_samples > 0
            if weight_rounding is WeightRounding.SEQUENTIAL:
                model, rep = sequential_rounding(model, float_model=reference(), inputs=inputs[:n_round],
                                                 fit_bias=corrected)
            else:
                model, rep = adaptive_rounding(model, float_model=reference(), inputs=inputs[:n_round],
                                               centred=corrected)
            wr = rep.as_dict()
    n_bias = min(bias_samples, len(inputs))
    if bias_correction is not BiasCorrection.NONE and n_bias > 0:
        name = f"int8 bias correction ({bias_correction.value}, {n_bias} samples)"
        with timed_stage(on_stage, name, timings, "bias_correction_s"):
            fix = analytic_bias_correction if bias_correction is BiasCorrection.ANALYTIC else correct_biases
            model, rep = fix(model, float_model=reference(), inputs=inputs[:n_bias])
            bc = {"method": bias_correction.value, **rep.as_dict()}
    return Int8Refinement(model, bc, wr)
