"""Device parity: outputs computed on a target compared with the same artifact's outputs on this (x86) machine."""
from __future__ import annotations

import numpy as np

# A sample whose reference top-1 leads the runner-up by less than this fraction of its logit range is a near-tie:
# one quantization step of rounding difference between two correct INT8 kernels (or runtime versions) may flip it.
NEAR_TIE_FRACTION = 0.05


def compare_outputs(device: np.ndarray, reference: np.ndarray) -> dict:
    """device, reference: float32 (S, ...) with one row per sample (logits). Returns cosine (flattened, min over
    samples), max_abs, max_abs_rel (max abs / max |reference|), top1_agreement (fraction of samples whose argmax
    matches), near_ties (samples whose reference top-2 margin is < NEAR_TIE_FRACTION of its logit range) and
    top1_decisive (top-1 agreement over the other samples; 1.0 when every sample is a near-tie)."""
    d = np.asarray(device, np.float64).reshape(len(device), -1)
    r = np.asarray(reference, np.float64).reshape(len(reference), -1)
    if d.shape != r.shape:
        raise ValueError(f"device output {d.shape} and reference {r.shape} differ in shape")
    cos = [float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) or 1.0)) for a, b in zip(d, r)]
    max_abs = float(np.abs(d - r).max())
    agree = d.argmax(1) == r.argmax(1)
    if r.shape[1] > 1:
        top2 = np.sort(r, axis=1)[:, -2:]
        near = (top2[:, 1] - top2[:, 0]) < NEAR_TIE_FRACTION * (r.max(1) - r.min(1))
    else:
        near = np.zeros(len(r), bool)
    decisive = agree[~near]
    return {"cosine": min(cos), "max_abs": max_abs, "max_abs_rel": max_abs / (float(np.abs(r).max()) or 1.0),
            "top1_agreement": float(np.mean(agree)), "near_ties": int(near.sum()),
            "top1_decisive": float(decisive.mean()) if decisive.size else 1.0, "samples": int(len(d))}
