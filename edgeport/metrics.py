"""Every metric edgeport reports about outputs, defined once (numpy only; a leaf module: it imports nothing of
edgeport).

Inputs are float arrays (S, ...) with one row per sample (logits, or any output flattened per sample). Two sets:

- `parity_metrics(reference, output)`: an artifact against the reference model (torch, or the exported ONNX) on the
  same held-out samples; what report.json `parity.<artifact>` holds.
- `device_parity_metrics(device=..., reference=...)`: one output of the same artifact on a target against this
  machine's; what report.json `device_parity[*].outputs[*]` holds (one entry per model output).

Definitions (the key each one is written under):
- max_abs_err: max |output - reference| over all S*K values; mean_abs_err: the mean of the same.
- max_abs_rel: max_abs_err / max |reference| (max_abs_err itself when the reference is all zero).
- cosine_mean / cosine_min: the mean / the minimum over samples of the per-sample cosine similarity (two all-zero
  rows count as 1, one all-zero row as 0). A row whose norm is at most NEGLIGIBLE_NORM times the largest reference
  row norm of the set counts as all-zero: its direction is rounding noise (a probability map of an image without
  text is ~1e-7 everywhere; its cosine would be noise while SQNR and max error are exact).
- sqnr_db: 10 log10(sum ref^2 / sum (output - ref)^2) over all values (inf when identical, -inf for a zero
  reference with noise).
- top1_agreement: fraction of samples with the same argmax; top5_overlap: mean over samples of
  |top5(output) & top5(reference)| / 5 (k = min(5, K)).
- near_ties: samples whose reference top-2 margin is < NEAR_TIE_FRACTION of that sample's logit range (one
  quantization step of rounding difference between two correct INT8 kernels may flip them); top1_decisive: top-1
  agreement over the other samples (1.0 when every sample is a near-tie).
- accuracy: fraction of samples whose argmax is the label.

Output kinds (`output_kind`, from an output's shape in the reference layout, batch first; validation picks each
output's task-level check by it and the exporter names outputs by it):
- `classes`: 2-D (N, C) with C > 1: a class vector; top1_agreement and top5_overlap are computed for it only.
- `dense_map`: 4-D (N, C, H, W) with C > 1 and H * W > 1 (segmentation logits, a detection or OCR probability map
  with several channels).
- `detection`: 3-D (N, 4 + K, A) with K >= 1 and A > 4 + K (YOLOv5u/v8/11 raw predictions: box centre, size, one
  score per class, A anchors).
- `sequence`: 3-D (N, T, C) whose last axis holds one probability distribution per step (every value in [0, 1],
  each step summing to 1 within 1e-3; or log-probabilities whose exponentials do): a text recognizer's per-step
  character probabilities (CTC). Needs the reference's values, so only validation (which has them) tells it apart
  from `detection`, whose shape it can share ((N, 40, 6625) for PP-OCR's recognizer); by shape alone it is
  `detection` or `other`.
- `other`: anything else (a one-channel map, embeddings, box regressions).

Task-level checks, for outputs whose kind says what they are:
- pixel_agreement (a dense map (S, C, H, W), C > 1, e.g. segmentation logits): fraction of the S*H*W positions
  whose argmax over the channel axis is the same.
- box_agreement (YOLO-style predictions (S, 4 + K, A): rows 0-3 box centre x, y, width, height, rows 4.. one
  score per class, A anchors): the anchors whose best class score is >= BOX_SCORE_THRESHOLD in either model; one
  agrees when it is above the threshold in both, with the same class and box IoU >= BOX_IOU_THRESHOLD (anchors are
  aligned between the two models, so no NMS or assignment is needed); 1.0 when no anchor is above the threshold.
  `boxes_reference` / `boxes_output` count the anchors above the threshold in each.
- ctc_agreement (a sequence (S, T, C)): fraction of samples whose CTC greedy decoding is the same in both: the best
  class per step, repeats merged, blanks dropped, with the blank taken as the class that is best most often over the
  reference's steps (a CTC recognizer predicts its blank on most steps; PaddleOCR and torch's CTC put it at 0): the
  decoded strings are identical exactly when this says so. sequence_agreement: fraction of samples whose argmax
  is the same at every step (stricter: two sequences that differ only in where the blanks fall decode alike);
  step_agreement: fraction of the S*T steps whose argmax agrees.

The float32 bound (`fp32_rel_bound`): a float32 artifact must stay within max_abs_rel <= the spec's tolerance, or
within FP32_NOISE_FACTOR times the model's own float noise floor when that is larger. The noise floor is the
max_abs_rel between two correct float32 evaluations of the same file (edgeport.runtime.float_noise_floor: ONNX
Runtime with all graph optimisations and with none; TFLite's XNNPACK delegate and its builtin kernels), the
largest over the exported ONNX and the artifact judged. A deep model with a steep output (a sigmoid map fed by
logits of +-20) differs from itself by more than 1e-4 that way; a converter bug (a wrong padding, a misread axis)
shows in both evaluations alike and moves the output by orders of magnitude more than the floor.

`HIGHER_IS_BETTER` says which way each metric's threshold points; `passes(metric, value, threshold)` applies it.
"""
from __future__ import annotations

import enum
import math

import numpy as np

FP32_NOISE_FACTOR = 10.0


def fp32_rel_bound(tolerance: float, noise_floor: float | None) -> float:
    """The max_abs_rel bound of a float32 artifact: `tolerance` (the spec's), widened to FP32_NOISE_FACTOR times
    `noise_floor` (the model's own float noise, see the module docstring) when that is larger."""
    if noise_floor is None or not math.isfinite(noise_floor):
        return tolerance
    return max(tolerance, FP32_NOISE_FACTOR * noise_floor)


# metric -> True when larger is better (thresholds are lower bounds), False for error metrics (upper bounds)
HIGHER_IS_BETTER = {
    "cosine_mean": True, "cosine_min": True, "sqnr_db": True, "top1_agreement": True, "top5_overlap": True,
    "top1_decisive": True, "accuracy": True, "pixel_agreement": True, "box_agreement": True,
    "ctc_agreement": True, "sequence_agreement": True, "step_agreement": True,
    "max_abs_err": False, "mean_abs_err": False, "max_abs_rel": False, "accuracy_drop": False,
}


class OutputKind(str, enum.Enum):
    """What an output is, from its shape (see the module docstring)."""

    CLASSES = "classes"
    DENSE_MAP = "dense_map"
    DETECTION = "detection"
    SEQUENCE = "sequence"
    OTHER = "other"

    def __str__(self) -> str:
        return self.value


def _per_step_distributions(values: np.ndarray) -> bool:
    """(S, T, C) values whose last axis is a probability distribution per step (or its logarithm)."""
    v = np.asarray(values, np.float64)
    if v.size == 0 or not np.isfinite(v).all():
        return False
    if v.min() >= 0 and v.max() <= 1 + 1e-6:
        return bool(np.abs(v.sum(-1) - 1).max() <= 1e-3)
    return bool(v.max() <= 1e-6 and np.abs(np.exp(v).sum(-1) - 1).max() <= 1e-3)


def output_kind(shape: tuple[int, ...], values: np.ndarray | None = None) -> OutputKind:
    """The kind of an output of `shape` (reference layout, batch first); `values`: the reference's output, which
    tells a `sequence` from a `detection` of the same shape. See the module docstring."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3 and shape[2] > 1 and values is not None and _per_step_distributions(values):
        return OutputKind.SEQUENCE
    if len(shape) == 2 and shape[1] > 1:
        return OutputKind.CLASSES
    if len(shape) == 4 and shape[1] > 1 and shape[2] * shape[3] > 1:
        return OutputKind.DENSE_MAP
    if len(shape) == 3 and shape[1] >= 5 and shape[2] > shape[1]:
        return OutputKind.DETECTION
    return OutputKind.OTHER


# A sample whose reference top-1 leads the runner-up by less than this fraction of its logit range is a near-tie.
NEAR_TIE_FRACTION = 0.05


def rows(values: np.ndarray) -> np.ndarray:
    """(S, ...) -> float64 (S, K): one flattened row per sample."""
    return np.asarray(values, np.float64).reshape(len(values), -1)


def _pair(reference: np.ndarray, output: np.ndarray, what: str = "output") -> tuple[np.ndarray, np.ndarray]:
    r, o = rows(reference), rows(output)
    if r.shape != o.shape:
        raise ValueError(f"{what} {o.shape} and reference {r.shape} differ in shape")
    return r, o


# rows with a norm at most this fraction of the set's largest reference row norm count as all-zero in cosine
NEGLIGIBLE_NORM = 1e-6


def cosine_per_sample(reference: np.ndarray, output: np.ndarray) -> np.ndarray:
    """(S,) cosine similarity of each sample's flattened output with its reference (negligible rows: see the
    module docstring)."""
    r, o = _pair(reference, output)
    nr = np.linalg.norm(r, axis=1)
    no = np.linalg.norm(o, axis=1)
    floor = NEGLIGIBLE_NORM * (float(nr.max()) if nr.size else 0.0)
    zr, zo = nr <= floor, no <= floor
    return np.where(~zr & ~zo, np.sum(r * o, axis=1) / np.maximum(nr * no, 1e-300), (zr == zo).astype(float))


def cosine_mean(reference: np.ndarray, output: np.ndarray) -> float:
    return float(np.mean(cosine_per_sample(reference, output)))


def cosine_min(reference: np.ndarray, output: np.ndarray) -> float:
    return float(np.min(cosine_per_sample(reference, output)))


def max_abs_err(reference: np.ndarray, output: np.ndarray) -> float:
    r, o = _pair(reference, output)
    return float(np.abs(o - r).max())


def mean_abs_err(reference: np.ndarray, output: np.ndarray) -> float:
    r, o = _pair(reference, output)
    return float(np.abs(o - r).mean())


def max_abs_rel(reference: np.ndarray, output: np.ndarray) -> float:
    err = max_abs_err(reference, output)
    max_ref = float(np.abs(rows(reference)).max())
    return err / max_ref if max_ref > 0 else err


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


def top1_agreement(reference: np.ndarray, output: np.ndarray) -> float:
    r, o = _pair(reference, output)
    return float(np.mean(r.argmax(1) == o.argmax(1)))


def top5_overlap(reference: np.ndarray, output: np.ndarray) -> float:
    r, o = _pair(reference, output)
    k = min(5, r.shape[1])
    top_r = np.argsort(-r, axis=1)[:, :k]
    top_o = np.argsort(-o, axis=1)[:, :k]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(top_r, top_o)]))


def near_ties(reference: np.ndarray) -> np.ndarray:
    """(S,) bool: the samples whose reference top-2 margin is < NEAR_TIE_FRACTION of their logit range."""
    r = rows(reference)
    if r.shape[1] < 2:
        return np.zeros(len(r), bool)
    top2 = np.sort(r, axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) < NEAR_TIE_FRACTION * (r.max(1) - r.min(1))


def top1_decisive(reference: np.ndarray, output: np.ndarray) -> float:
    """Top-1 agreement over the samples that are not near-ties (1.0 when every sample is one)."""
    r, o = _pair(reference, output)
    decisive = (r.argmax(1) == o.argmax(1))[~near_ties(r)]
    return float(decisive.mean()) if decisive.size else 1.0


def pixel_agreement(reference: np.ndarray, output: np.ndarray) -> float:
    """(S, C, H, W) maps: fraction of positions whose argmax over C agrees."""
    r, o = np.asarray(reference), np.asarray(output)
    if r.shape != o.shape or r.ndim != 4:
        raise ValueError(f"pixel agreement needs two (S, C, H, W) maps of one shape, got {o.shape} and {r.shape}")
    return float(np.mean(r.argmax(1) == o.argmax(1)))


def ctc_greedy(best: np.ndarray, *, blank: int) -> list[tuple[int, ...]]:
    """(S, T) best class per step -> per sample the CTC greedy decoding: repeats merged, `blank` dropped."""
    out = []
    for row in np.asarray(best):
        keep = np.ones(len(row), bool)
        keep[1:] = row[1:] != row[:-1]
        out.append(tuple(int(c) for c in row[keep & (row != blank)]))
    return out


def sequence_agreement(reference: np.ndarray, output: np.ndarray) -> dict:
    """(S, T, C) per-step distributions -> {ctc_agreement, ctc_blank, sequence_agreement, step_agreement} (see the
    module docstring)."""
    r, o = np.asarray(reference), np.asarray(output)
    if r.shape != o.shape or r.ndim != 3:
        raise ValueError(f"sequence agreement needs two (S, T, C) outputs of one shape, got {o.shape} and {r.shape}")
    rb, ob = r.argmax(-1), o.argmax(-1)
    blank = int(np.bincount(rb.ravel()).argmax())
    same = rb == ob
    ctc = [a == b for a, b in zip(ctc_greedy(rb, blank=blank), ctc_greedy(ob, blank=blank))]
    return {"ctc_agreement": float(np.mean(ctc)), "ctc_blank": blank,
            "sequence_agreement": float(np.mean(same.all(axis=1))), "step_agreement": float(np.mean(same))}


BOX_SCORE_THRESHOLD = 0.25
BOX_IOU_THRESHOLD = 0.5


def _boxes_xyxy(pred: np.ndarray) -> np.ndarray:
    """(S, 4 + K, A) -> (S, A, 4) corners from centre x, y, width, height."""
    cx, cy, w, h = (pred[:, i, :] for i in range(4))
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise IoU of (..., 4) corner boxes."""
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area = lambda x: np.clip(x[..., 2] - x[..., 0], 0, None) * np.clip(x[..., 3] - x[..., 1], 0, None)  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-300), 0.0)


def box_agreement(reference: np.ndarray, output: np.ndarray, *, score_threshold: float = BOX_SCORE_THRESHOLD,
                  iou_threshold: float = BOX_IOU_THRESHOLD) -> dict:
    """(S, 4 + K, A) YOLO-style predictions -> {box_agreement, boxes_reference, boxes_output} (see the module
    docstring)."""
    r, o = np.asarray(reference, np.float64), np.asarray(output, np.float64)
    if r.shape != o.shape or r.ndim != 3 or r.shape[1] < 5:
        raise ValueError(f"box agreement needs two (S, 4+K, A) predictions of one shape, got {o.shape}, {r.shape}")
    r_score, o_score = r[:, 4:, :].max(1), o[:, 4:, :].max(1)
    r_keep, o_keep = r_score >= score_threshold, o_score >= score_threshold
    same = (r[:, 4:, :].argmax(1) == o[:, 4:, :].argmax(1)) & (_iou(_boxes_xyxy(r), _boxes_xyxy(o)) >= iou_threshold)
    either = int((r_keep | o_keep).sum())
    agree = int((r_keep & o_keep & same).sum())
    return {"box_agreement": agree / either if either else 1.0, "boxes_reference": int(r_keep.sum()),
            "boxes_output": int(o_keep.sum())}


def accuracy(logits: np.ndarray, labels: list[int] | np.ndarray) -> float:
    lg = np.asarray(logits).reshape(len(logits), -1)
    return float(np.mean(lg.argmax(1) == np.asarray(labels)))


def passes(metric: str, value: float | None, threshold: float) -> bool:
    """Whether `value` meets `threshold` for `metric` (a key of HIGHER_IS_BETTER); None or NaN never does."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return value >= threshold if HIGHER_IS_BETTER[metric] else value <= threshold


def parity_metrics(reference: np.ndarray, output: np.ndarray, *, reference_name: str = "torch",
                   classes: bool = True) -> dict:
    """reference, output: (S, ...) -> {max_abs_err, mean_abs_err, max_abs_rel, cosine_mean, cosine_min, sqnr_db,
    top1_agreement, top5_overlap, n_samples, reference}; `classes` False (the output is not a class vector) leaves
    out top1_agreement and top5_overlap. Raises ValueError when the shapes differ."""
    r, o = _pair(reference, output)
    cos = cosine_per_sample(r, o)
    out = {
        "max_abs_err": max_abs_err(r, o),
        "mean_abs_err": mean_abs_err(r, o),
        "max_abs_rel": max_abs_rel(r, o),
        "cosine_mean": float(np.mean(cos)),
        "cosine_min": float(np.min(cos)),
        "sqnr_db": sqnr_db(r, o),
    }
    if classes:
        out.update(top1_agreement=top1_agreement(r, o), top5_overlap=top5_overlap(r, o))
    out.update(n_samples=int(len(r)), reference=reference_name)
    return out


def device_parity_metrics(*, device: np.ndarray, reference: np.ndarray) -> dict:
    """device, reference: (S, ...) values of one output of one artifact on a target and on this machine ->
    {cosine_min, sqnr_db, max_abs, max_abs_rel, top1_agreement, near_ties (a count), top1_decisive, samples}.
    `max_abs` is max_abs_err. Raises ValueError when the shapes differ."""
    r, d = _pair(reference, device, what="device output")
    return {"cosine_min": cosine_min(r, d), "sqnr_db": sqnr_db(r, d), "max_abs": max_abs_err(r, d),
            "max_abs_rel": max_abs_rel(r, d), "top1_agreement": top1_agreement(r, d),
            "near_ties": int(near_ties(r).sum()), "top1_decisive": top1_decisive(r, d), "samples": int(len(d))}
