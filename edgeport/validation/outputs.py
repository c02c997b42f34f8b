"""Every output of a model compared, each by what its shape says it is.

    >>> per = compare_outputs(ref_outputs, artifact_outputs, names=["seg", "logits"], reference_name="onnx")
    >>> summary = combine(per)      # report.json parity.<artifact>: worst value per metric + `outputs` (one per output)

Kinds (`OutputKind`, from the output's shape in the reference layout, batch first):
- `classes`: 2-D (N, C) with C > 1: a class vector; top1_agreement and top5_overlap are computed for it only.
- `dense_map`: 4-D (N, C, H, W) with C > 1 and H * W > 1 (segmentation logits, a detection or OCR probability map
  with several channels): per-pixel argmax agreement over the channel axis (`pixel_agreement`).
- `detection`: 3-D (N, 4 + K, A) with K >= 1 and A > 4 + K (YOLOv5u/v8/11 raw predictions: box centre, size, one
  score per class, A anchors): anchor-aligned box agreement above a score threshold (`box_agreement`,
  edgeport.metrics.box_agreement).
- `other`: anything else (a one-channel map, embeddings, box regressions): cosine, SQNR and errors only.

Cosine, SQNR and the error metrics are computed for every output. The artifact's summary takes, for each metric, the
worst value over the outputs that have it (so a threshold on the summary holds for every output) and names the
output with the lowest cosine_mean (`worst_output`).
"""
from __future__ import annotations

import enum

import numpy as np

from edgeport.metrics import HIGHER_IS_BETTER, box_agreement, parity_metrics, pixel_agreement


class OutputKind(str, enum.Enum):
    CLASSES = "classes"
    DENSE_MAP = "dense_map"
    DETECTION = "detection"
    OTHER = "other"

    def __str__(self) -> str:
        return self.value


# the task-level metric each kind adds, and where its value comes from
TASK_METRIC = {OutputKind.CLASSES: "top1_agreement", OutputKind.DENSE_MAP: "pixel_agreement",
               OutputKind.DETECTION: "box_agreement"}


def output_kind(shape: tuple[int, ...]) -> OutputKind:
    """The kind of an output of `shape` (reference layout, batch first); see the module docstring."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2 and shape[1] > 1:
        return OutputKind.CLASSES
    if len(shape) == 4 and shape[1] > 1 and shape[2] * shape[3] > 1:
        return OutputKind.DENSE_MAP
    if len(shape) == 3 and shape[1] >= 5 and shape[2] > shape[1]:
        return OutputKind.DETECTION
    return OutputKind.OTHER


def output_metrics(reference: np.ndarray, output: np.ndarray, *, name: str, reference_name: str) -> dict:
    """One output's entry: {name, shape, kind, the parity metrics, the kind's task metric}."""
    if reference.shape != output.shape:
        raise ValueError(f"output {name!r}: shape {tuple(output.shape)} differs from the reference's "
                         f"{tuple(reference.shape)}")
    kind = output_kind(reference.shape)
    m = {"name": name, "shape": [int(s) for s in reference.shape[1:]], "kind": kind.value,
         **parity_metrics(reference, output, reference_name=reference_name, classes=kind is OutputKind.CLASSES)}
    m["_samples"], m["_reference"] = m.pop("n_samples"), m.pop("reference")
    if kind is OutputKind.DENSE_MAP:
        m["pixel_agreement"] = pixel_agreement(reference, output)
    elif kind is OutputKind.DETECTION:
        m.update(box_agreement(reference, output))
    return m


def compare_outputs(reference: list[np.ndarray], outputs: list[np.ndarray], *, names: list[str],
                    reference_name: str) -> list[dict]:
    """Per output (in the model's order): its entry. Raises ValueError when the counts or a shape differ."""
    if len(reference) != len(outputs):
        raise ValueError(f"{len(outputs)} outputs, the reference has {len(reference)}")
    return [output_metrics(r, o, name=n, reference_name=reference_name)
            for r, o, n in zip(reference, outputs, names)]


def _worst(values: list[float], metric: str) -> float:
    return min(values) if HIGHER_IS_BETTER[metric] else max(values)


def combine(per_output: list[dict]) -> dict:
    """The artifact's parity entry: each metric's worst value over the outputs that have it, `worst_output` (lowest
    cosine_mean, then lowest SQNR), `n_samples`, `reference`, and `outputs` (the per-output entries)."""
    summary: dict = {}
    for metric in HIGHER_IS_BETTER:
        values = [o[metric] for o in per_output if o.get(metric) is not None]
        if values:
            summary[metric] = _worst(values, metric)
    worst = min(per_output, key=lambda o: (o["cosine_mean"], o["sqnr_db"]))
    first = per_output[0]
    summary.update(n_samples=first.get("_samples"), reference=first.get("_reference"), worst_output=worst["name"],
                   outputs=[{k: v for k, v in o.items() if not k.startswith("_")} for o in per_output])
    return summary


def task_check(entry: dict) -> tuple[str, float] | None:
    """(label, value) of the task-level metric of one output entry, or None for kind `other`."""
    metric = TASK_METRIC.get(OutputKind(entry.get("kind", "other")))
    if metric is None or entry.get(metric) is None:
        return None
    return {"top1_agreement": "top-1", "pixel_agreement": "pixel", "box_agreement": "boxes"}[metric], entry[metric]
