"""Every output of a model compared, each by what its shape says it is.

    >>> per = compare_outputs(ref_outputs, artifact_outputs, names=["seg", "logits"], reference_name="onnx")
    >>> summary = combine(per)      # report.json parity.<artifact>: worst value per metric + `outputs` (one per output)

Kinds (`OutputKind`, from the output's shape: edgeport.metrics.output_kind, which the exporter also names outputs
by): `classes` gets top1_agreement and top5_overlap, `dense_map` per-pixel argmax agreement over the channel axis
(`pixel_agreement`), `detection` anchor-aligned box agreement above a score threshold (`box_agreement`),
`sequence` (per-step class probabilities, e.g. a CTC text recognizer; told from a detection of the same shape by the
reference's values) the share of samples whose CTC greedy decoding agrees (`ctc_agreement`: identical strings), with
the same best class at every step (`sequence_agreement`) and of steps (`step_agreement`), `other` (a one-channel
map, embeddings, box regressions) cosine, SQNR and errors only.

Cosine, SQNR and the error metrics are computed for every output. The artifact's summary takes, for each metric, the
worst value over the outputs that have it (so a threshold on the summary holds for every output) and names the
output with the lowest cosine_mean (`worst_output`).
"""
from __future__ import annotations

import numpy as np

from edgeport.metrics import (HIGHER_IS_BETTER, OutputKind, box_agreement, output_kind, parity_metrics,
                              pixel_agreement, sequence_agreement)


# the task-level metric each kind adds, and where its value comes from
TASK_METRIC = {OutputKind.CLASSES: "top1_agreement", OutputKind.DENSE_MAP: "pixel_agreement",
               OutputKind.DETECTION: "box_agreement", OutputKind.SEQUENCE: "ctc_agreement"}


def output_metrics(reference: np.ndarray, output: np.ndarray, *, name: str, reference_name: str) -> dict:
    """One output's entry: {name, shape, kind, the parity metrics, the kind's task metric}."""
    if reference.shape != output.shape:
        raise ValueError(f"output {name!r}: shape {tuple(output.shape)} differs from the reference's "
                         f"{tuple(reference.shape)}")
    kind = output_kind(reference.shape, reference)
    m = {"name": name, "shape": [int(s) for s in reference.shape[1:]], "kind": kind.value,
         **parity_metrics(reference, output, reference_name=reference_name, classes=kind is OutputKind.CLASSES)}
    m["_samples"], m["_reference"] = m.pop("n_samples"), m.pop("reference")
    if kind is OutputKind.DENSE_MAP:
        m["pixel_agreement"] = pixel_agreement(reference, output)
    elif kind is OutputKind.DETECTION:
        m.update(box_agreement(reference, output))
    elif kind is OutputKind.SEQUENCE:
        m.update(sequence_agreement(reference, output))
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
    return {"top1_agreement": "top-1", "pixel_agreement": "pixel", "box_agreement": "boxes",
            "ctc_agreement": "ctc"}[metric], entry[metric]
