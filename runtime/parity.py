"""Device parity: outputs computed on a target compared with the same artifact's outputs on this (x86) machine."""
from __future__ import annotations

import numpy as np


def compare_outputs(device: np.ndarray, reference: np.ndarray) -> dict:
    """device, reference: float32 (S, ...) with one row per sample (logits). Returns cosine (flattened, min over
    samples), max_abs, max_abs_rel (max abs / max |reference|) and top1_agreement (fraction of samples whose
    argmax matches)."""
    d = np.asarray(device, np.float64).reshape(len(device), -1)
    r = np.asarray(reference, np.float64).reshape(len(reference), -1)
    if d.shape != r.shape:
        raise ValueError(f"device output {d.shape} and reference {r.shape} differ in shape")
    cos = [float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) or 1.0)) for a, b in zip(d, r)]
    max_abs = float(np.abs(d - r).max())
    return {"cosine": min(cos), "max_abs": max_abs, "max_abs_rel": max_abs / (float(np.abs(r).max()) or 1.0),
            "top1_agreement": float(np.mean(d.argmax(1) == r.argmax(1))), "samples": int(len(d))}
