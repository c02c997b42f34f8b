"""Calibration and validation data: one protocol (a sized iterable of `{input_name: float32 (1,C,H,W)}`), several
sources (bundled photographs, scikit-learn digits, image folders, .npy/.npz arrays, Python iterables), the
calibration-method enum and activation-range computation.

    >>> from edgeport.calibration import load_samples
    >>> calib = load_samples("default", model_spec=spec, num=64, seed=0)              # split="calibration"
    >>> held = load_samples("default", model_spec=spec, num=64, seed=0, split="validation")  # disjoint photos
"""
from .samples import CalibrationMethod, SampleSet, Split
from .sources import (
    DEFAULT_COUNTS, DEFAULT_SEED, SOURCES, SourceSpec, conform_batch, from_iterable, load_samples, parse_source,
)
from .preprocess import preprocess_eval

__all__ = [
    "CalibrationMethod", "SampleSet", "Split", "DEFAULT_COUNTS", "DEFAULT_SEED", "SOURCES", "SourceSpec",
    "conform_batch", "from_iterable", "load_samples", "parse_source", "preprocess_eval",
]
