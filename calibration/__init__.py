"""Calibration and validation data: one protocol (a sized iterable of `{input_name: float32 (1,C,H,W)}`), several
sources (bundled photographs, scikit-learn digits, image folders, .npy/.npz arrays, Python iterables), the
calibration-method enum and activation-range computation.

    >>> from edgeport.calibration import load_samples
    >>> calib = load_samples("default", model_spec=spec, num=64, seed=0)              # split="calibration"
    >>> held = load_samples("default", model_spec=spec, num=64, seed=0, split="validation")  # disjoint photos
"""
from __future__ import annotations

import importlib

# Names resolve on first use (PEP 562), so that importing a light submodule (the CLI's argument parsers) does not
# import torch through `sources` -> `edgeport.models`.
_EXPORTS = {
    "CalibrationMethod": "samples", "InputSpec": "samples", "SampleSet": "samples", "Split": "samples",
    "MissingInputs": "sources", "random_inputs": "sources",
    "DEFAULT_COUNTS": "sources", "DEFAULT_SEED": "sources", "SOURCES": "sources", "SourceSpec": "sources",
    "conform_batch": "sources", "from_iterable": "sources", "load_samples": "sources", "parse_source": "sources",
    "preprocess_eval": "preprocess",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
