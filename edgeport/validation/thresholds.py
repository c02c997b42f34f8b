"""Which parity thresholds apply to an artifact, and whether its metrics meet them.

Per precision, from the model spec's `Tolerances` (every cosine threshold bounds `cosine_mean`, the mean over
samples): fp32 (ONNX, TFLite fp32): max_abs_rel <= fp32_rel (widened to 10x the model's own float noise floor when
that is larger: edgeport.metrics.fp32_rel_bound) and cosine_mean >= fp32_cosine; fp16: cosine_mean >=
fp16_cosine; int8 (TFLite int8/dynamic, ORT int8): cosine_mean >= int8_cosine, top1_agreement >= int8_top1, sqnr_db
>= int8_sqnr_db (ORT int8 may have its own top-1 / SQNR bounds). User overrides: `[artifact.]metric=value`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgeport.errors import EdgeportError
from edgeport.metrics import HIGHER_IS_BETTER, fp32_rel_bound, passes
from edgeport.report import ArtifactKind

if TYPE_CHECKING:
    from edgeport.models import Tolerances

# every artifact kind -> the precision class of its thresholds, in the order validation runs and reports them
# (dynamic-range TFLite has INT8 weights: held to the INT8 bounds)
_CLASS = {ArtifactKind.ONNX: "fp32", ArtifactKind.TFLITE_FP32: "fp32", ArtifactKind.TFLITE_FP16: "fp16",
          ArtifactKind.TFLITE_DYNAMIC: "int8", ArtifactKind.TFLITE_INT8: "int8", ArtifactKind.ONNX_INT8: "int8"}
ARTIFACT_PRECISION = {kind.value: cls for kind, cls in _CLASS.items()}
ARTIFACT_ORDER = tuple(ARTIFACT_PRECISION)
# --threshold metric names that were renamed: old name -> what to write instead
RENAMED_METRICS = {"cosine": "cosine_mean (the mean over samples; cosine_min is the worst sample)"}


def default_thresholds(precision: str, tol: Tolerances, artifact: str | None = None, *,
                       noise_floor: float | None = None) -> dict[str, float]:
    """The spec's bounds for an artifact of `precision`; `noise_floor`: the output's float noise floor when it was
    measured (fp32 only)."""
    if precision == "fp32":
        return {"max_abs_rel": fp32_rel_bound(tol.fp32_rel, noise_floor), "cosine_mean": tol.fp32_cosine}
    if precision == "fp16":
        return {"cosine_mean": tol.fp16_cosine}
    th = {"cosine_mean": tol.int8_cosine, "top1_agreement": tol.int8_top1, "sqnr_db": tol.int8_sqnr_db}
    if artifact == "onnx_int8":
        if tol.ort_int8_top1 is not None:
            th["top1_agreement"] = tol.ort_int8_top1
        if tol.ort_int8_sqnr_db is not None:
            th["sqnr_db"] = tol.ort_int8_sqnr_db
    return th


def parse_threshold_overrides(items: list[str] | None) -> dict[str | None, dict[str, float]]:
    """`metric=value` (every artifact) or `artifact.metric=value` -> {artifact or None: {metric: value}}."""
    out: dict[str | None, dict[str, float]] = {}
    for item in items or []:
        key, sep, val = item.partition("=")
        art, dot, metric = key.strip().rpartition(".")
        try:
            value = float(val)
        except ValueError:
            value = None
        if not sep or value is None or metric not in HIGHER_IS_BETTER:
            renamed = f" ({metric!r} is now {RENAMED_METRICS[metric]})" if metric in RENAMED_METRICS else ""
            raise EdgeportError(
                f"--threshold {item!r}: expected [artifact.]metric=value with a metric among "
                f"{', '.join(sorted(HIGHER_IS_BETTER))}{renamed}"
            )
        if art and art not in ARTIFACT_PRECISION:
            raise EdgeportError(f"--threshold {item!r}: unknown artifact {art!r}; valid: {', '.join(ARTIFACT_ORDER)}")
        out.setdefault(art or None, {})[metric] = value
    return out


@dataclass(frozen=True)
class Verdict:
    """The thresholds one artifact was held to and the ones it missed: (metric, value, threshold) each."""

    thresholds: dict[str, float]
    enforced: bool
    failures: list[tuple[str, float, float]]


def judge(name: str, metrics: dict, *, tol: Tolerances, overrides: dict[str | None, dict[str, float]],
          random_init: bool, noise_floor: float | None = None) -> Verdict:
    """Thresholds of artifact `name`: the spec's for its precision (INT8 ones dropped for random-init weights:
    quantizing random weights says nothing about a trained model), then the explicit overrides, which always
    apply (`overrides`: {artifact or None for every artifact: {metric: threshold}}). A threshold on a metric the
    artifact lacks is recorded, not checked. `noise_floor`: the output's float noise floor, when measured."""
    precision = ARTIFACT_PRECISION[name]
    th = default_thresholds(precision, tol, name, noise_floor=noise_floor)
    enforced = not (precision == "int8" and random_init)
    explicit = {**overrides.get(None, {}), **overrides.get(name, {})}
    if not enforced:
        th = {}
    th.update(explicit)
    failures = [(metric, metrics[metric], t) for metric, t in th.items()
                if metric in metrics and not passes(metric, metrics[metric], t)]
    return Verdict(thresholds=th, enforced=enforced or bool(explicit), failures=failures)
