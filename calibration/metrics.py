"""Parity metrics between an artifact's outputs and the reference's (torch) on the same samples.

All inputs are float (S, K) arrays, one row of logits per sample. Definitions (what report.json `parity` holds):
- max_abs_err / mean_abs_err: over all S*K values; max_abs_rel = max_abs_err / max |reference|.
- cosine: mean over samples of the per-sample cosine similarity; cosine_min: the worst sample.
- sqnr_db: 10 log10(sum ref^2 / sum (out - ref)^2) over all values (inf when identical).
- top1_agreement: fraction of samples with the same argmax.
- top5_overlap: mean over samples of |top5(out) & top5(ref)| / 5 (k = min(5, K)).
"""
from __future__ import annotations

import math

import numpy as np

# metric -> True when larger is better (thresholds are lower bounds), False for error metrics (upper bounds)
HIGHER_IS_BETTER = {
    "cosine": True, "cosine_min": True, "sqnr_db": True, "top1_agreement": True, "top5_overlap": True,
    "accuracy": True, "max_abs_err": False, "mean_abs_err": False, "max_abs_rel": False, "accuracy_drop": False,
}


def sqnr_db(reference: np.ndarray, output: np.ndarray) -> float:
    r = np.asarray(reference, np.float64)
    e = np.asarray(output, np.float64) - r
    noise = float(np.sum(e * e))
    signal = float(np.sum(r * r))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def parity_metrics(reference: np.ndarray, output: np.ndarray, *, reference_name: str = "torch") -> dict:
    """reference, output: (S, K) logits (any trailing shape is flattened per sample) -> the metrics above."""
    r = np.asarray(reference, np.float64).reshape(len(reference), -1)
    o = np.asarray(output, np.float64).reshape(len(output), -1)
    if r.shape != o.shape:
        raise ValueError(f"output shape {o.shape} differs from the reference {r.shape}")
    diff = np.abs(o - r)
    nr = np.linalg.norm(r, axis=1)
    no = np.linalg.norm(o, axis=1)
    cos = np.where((nr * no) > 0, np.sum(r * o, axis=1) / np.maximum(nr * no, 1e-300), (nr == no).astype(float))
    k = min(5, r.shape[1])
    top_r = np.argsort(-r, axis=1)[:, :k]
    top_o = np.argsort(-o, axis=1)[:, :k]
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(top_r, top_o)])
    max_ref = float(np.abs(r).max())
    return {
        "max_abs_err": float(diff.max()),
        "mean_abs_err": float(diff.mean()),
        "max_abs_rel": float(diff.max()) / max_ref if max_ref > 0 else float(diff.max()),
        "cosine": float(np.mean(cos)),
        "cosine_min": float(np.min(cos)),
        "sqnr_db": sqnr_db(r, o),
        "top1_agreement": float(np.mean(r.argmax(1) == o.argmax(1))),
        "top5_overlap": float(overlap),
        "n_samples": int(len(r)),
        "reference": reference_name,
    }


def accuracy(logits: np.ndarray, labels: list[int] | np.ndarray) -> float:
    lg = np.asarray(logits).reshape(len(logits), -1)
    return float(np.mean(lg.argmax(1) == np.asarray(labels)))


def passes(metric: str, value: float, threshold: float) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return value >= threshold if HIGHER_IS_BETTER[metric] else value <= threshold
