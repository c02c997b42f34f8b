"""Validation: every artifact of an export against the reference (torch, or the exported ONNX) on held-out samples,
thresholds from the model spec, labelled accuracy and per-layer INT8 attribution.

    >>> from edgeport.validation import validate_dir
    >>> res = validate_dir("out/shufflenet", layers=True)      # writes report.json parity / accuracy / layers
    >>> res.parity["tflite_int8"]["cosine_mean"], res.failures

Modules: `validate` (the step), `thresholds` (which bounds apply), `artifacts` (samples through the engine
layer), `outputs` (every output compared, by kind), `layers` (per-layer attribution), `validate_cli` (the
`edgeport validate` command). Metric definitions live in `edgeport.metrics`.
"""
from __future__ import annotations

import importlib

# Names resolve on first use (PEP 562), so that importing the CLI's argument parser (validate_cli) does not import
# torch through `validate` -> `edgeport.models`.
_EXPORTS = {
    "ValidationResult": "validate", "choose_validation_samples": "validate", "validate_dir": "validate",
    "held_out_samples": "validate",
    "ARTIFACT_ORDER": "thresholds", "ARTIFACT_PRECISION": "thresholds", "default_thresholds": "thresholds",
    "parse_threshold_overrides": "thresholds",
    "run_artifact": "artifacts", "run_reference": "artifacts", "run_artifact_outputs": "artifacts",
    "run_reference_outputs": "artifacts", "OutputKind": "outputs", "output_kind": "outputs",
    "compare_outputs": "outputs", "combine": "outputs", "Failure": "validate",
    "attribute_layers": "layers",
    "add_validate_parser": "validate_cli",
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
