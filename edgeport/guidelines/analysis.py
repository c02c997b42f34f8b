"""Measuring the guidelines: each micro-network exported and converted through edgeport's own path (torch -> ONNX ->
edgeport's TFLite converter fp32 / full INT8 calibrated on crops of real photographs, ORT static INT8), then the
benchmark entries turned into time ratios against each guideline's baseline, per-comparison outcomes and a verdict
per runtime.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeport.errors import EdgeportError
from edgeport.export.ort_int8 import quantize_onnx_int8
from edgeport.guidelines.nets import CLAIMS, FLOPS_TOLERANCE, TITLES, MicroNet

NUM_CALIBRATION = 16
# A time ratio within 1 +- NOISE of 1.0 is "no measurable effect" (run-to-run spread of one interleaved run on a
# shared 2-core machine is a few per cent; see docs/guidelines.md).
NOISE = 0.05


# ---- calibration: real-photo crops stacked to the input's channel count -------------------------------------------

def photo_crops(n: int, *, channels: int, size: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """n deterministic samples {"input": float32 (1, channels, size, size)}: each is ceil(channels/3) random resized
    crops of the bundled calibration photographs (ImageNet-normalised RGB), stacked on the channel axis."""
    # heavy: the photo loaders import PIL and torch
    from edgeport.calibration.photos import load_photo, photos_for
    from edgeport.calibration.preprocess import random_resized_crop

    names = photos_for("calibration")
    mean = np.asarray((0.485, 0.456, 0.406), np.float32)
    std = np.asarray((0.229, 0.224, 0.225), np.float32)
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, 8, i])
        parts = []
        for j in range(-(-channels // 3)):
            img = random_resized_crop(load_photo(names[(i + j) % len(names)]), rng=rng, size_hw=(size, size))
            parts.append(((img.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1))
        out.append({"input": np.ascontiguousarray(np.concatenate(parts)[:channels][None], dtype=np.float32)})
    return out


# ---- building the artifacts -------------------------------------------------------------------------------------

@dataclass
class Built:
    """One micro-network's artifacts in the artifact folder, and what building them measured."""

    net: MicroNet
    macs: int  # counted from the exported ONNX graph
    files: dict[str, str] = field(default_factory=dict)  # column -> artifact file name
    seconds: float = 0.0


COLUMNS = {  # column -> (engine, precision, display name)
    "tflite_fp32": ("tflite", "fp32", "XNNPACK fp32"),
    "tflite_int8": ("tflite", "int8", "XNNPACK INT8"),
    "ort_fp32": ("onnxruntime", "fp32", "ORT fp32"),
    "ort_int8": ("onnxruntime", "int8", "ORT INT8"),
}


def columns_for(engines, precisions) -> list[str]:
    return [k for k, (e, p, _) in COLUMNS.items() if e in engines and p in precisions]


def build_artifacts(net: MicroNet, *, size: int, art_dir: Path, columns: list[str], seed: int = 0) -> Built:
    """Export `net` to ONNX, convert/quantize it for every column; files are named `<key>_<column>.<ext>`."""
    import torch  # heavy: torch, onnx and the converter load only when networks are built

    from edgeport.export.analysis import count_macs
    from edgeport.export.onnx_export import export_onnx
    from edgeport.export.tflite.convert import convert

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    model = net.build().eval()
    onnx_path = art_dir / f"{net.key}.onnx"
    export_onnx(model, input_shape=(net.in_channels, size, size), path=onnx_path)
    built = Built(net, count_macs(onnx_path))
    calib = None
    if any(COLUMNS[c][1] == "int8" for c in columns):
        calib = photo_crops(NUM_CALIBRATION, channels=net.in_channels, size=size, seed=seed)
    precs = [COLUMNS[c][1] for c in columns if COLUMNS[c][0] == "tflite"]
    if precs:
        with tempfile.TemporaryDirectory(dir=art_dir) as tmp:
            res = convert(onnx_path, out_dir=tmp, precisions=precs, calibration=calib)
            for p in precs:
                name = f"{net.key}_tflite_{p}.tflite"
                shutil.move(str(res.artifacts[p]), art_dir / name)
                built.files[f"tflite_{p}"] = name
    if "ort_fp32" in columns:
        built.files["ort_fp32"] = onnx_path.name
    if "ort_int8" in columns:
        name = f"{net.key}_ort_int8.onnx"
        quantize_onnx_int8(onnx_path=onnx_path, out_path=art_dir / name, calibration=calib)
        built.files["ort_int8"] = name
    built.seconds = time.perf_counter() - t0
    return built


def check_equal_flops(built: list[Built], guidelines) -> None:
    """Raise EdgeportError when a variant's MACs (counted on its ONNX graph) are off its baseline's by more than
    FLOPS_TOLERANCE: such a comparison would measure FLOPs, not the guideline (e.g. a --scale that rounds channel
    counts unevenly)."""
    for g in guidelines:
        group = [b for b in built if b.net.guideline == g]
        base = next(b for b in group if b.net.baseline).macs
        off = [f"{b.net.label} {b.macs / base - 1:+.1%}" for b in group if abs(b.macs / base - 1) > FLOPS_TOLERANCE]
        if off:
            raise EdgeportError(f"{g}: variants off the baseline FLOPs by more than {FLOPS_TOLERANCE:.0%}: {off}")


# ---- analysis ---------------------------------------------------------------------------------------------------

def classify(ratio: float | None, claim: str) -> str:
    """One comparison: 'holds' (the variant is slower/faster as claimed by more than NOISE), 'no effect' (within
    NOISE) or 'reversed'."""
    if ratio is None:
        return "n/a"
    if claim == "slower":
        return "holds" if ratio >= 1 + NOISE else ("reversed" if ratio <= 1 - NOISE else "no effect")
    return "holds" if ratio <= 1 - NOISE else ("reversed" if ratio >= 1 + NOISE else "no effect")


def verdict(outcomes: list[str]) -> str:
    """Summary of a guideline's comparisons on one runtime."""
    outcomes = [o for o in outcomes if o != "n/a"]
    if not outcomes:
        return "n/a"
    n, held, rev = len(outcomes), outcomes.count("holds"), outcomes.count("reversed")
    if held == n:
        return f"HOLDS ({held}/{n})"
    if held == 0 and rev == 0:
        return f"DOES NOT HOLD (0/{n}, no measurable effect)"
    if held == 0:
        return f"DOES NOT HOLD (0/{n}, {rev} reversed)"
    return f"PARTLY ({held}/{n}" + (f", {rev} reversed)" if rev else ")")


STATS = {"min": "min_ms", "p50": "p50_ms"}


def analyse(built: list[Built], entries: list[dict], columns: list[str], *, stat: str = "min") -> dict:
    """{guideline: {"rows": [...], "verdicts": {column: str}}} from bench entries. `stat`: which per-configuration
    statistic the ratios and verdicts use ("min": the least-disturbed round, "p50": the median round); the other
    one's ratio is kept as `ratio_<other>`."""
    p50, tmin = {}, {}
    for e in entries:
        p50[(e["artifact"], e["engine"])] = e["p50_ms"]
        tmin[(e["artifact"], e["engine"])] = e["min_ms"]
    chosen, other_name = (tmin, "p50") if stat == "min" else (p50, "min")
    other = p50 if stat == "min" else tmin
    out: dict[str, dict] = {}
    for g in dict.fromkeys(b.net.guideline for b in built):
        rows_b = [b for b in built if b.net.guideline == g]
        base = next(b for b in rows_b if b.net.baseline)
        rows, per_col = [], {c: [] for c in columns}
        for b in rows_b:
            row = {"key": b.net.key, "label": b.net.label, "baseline": b.net.baseline, "claim": b.net.claim,
                   "macs": b.macs, "macs_vs_baseline": b.macs / base.macs, "paper_arm": b.net.paper_arm,
                   "paper_gpu": b.net.paper_gpu, "ms": {}, "ratio": {}, f"ratio_{other_name}": {}, "outcome": {}}
            for c in columns:
                eng = COLUMNS[c][0]
                t = chosen.get((f"{b.net.key}_{c}", eng))
                tb = chosen.get((f"{base.net.key}_{c}", eng))
                row["ms"][c] = t
                row["ratio"][c] = None if t is None or not tb else t / tb
                to, tbo = other.get((f"{b.net.key}_{c}", eng)), other.get((f"{base.net.key}_{c}", eng))
                row[f"ratio_{other_name}"][c] = None if to is None or not tbo else to / tbo
                if b.net.claim:
                    row["outcome"][c] = classify(row["ratio"][c], b.net.claim)
                    per_col[c].append(row["outcome"][c])
            rows.append(row)
        out[g] = {"title": TITLES[g], "claim": CLAIMS[g], "rows": rows, "stat": stat, "other_stat": other_name,
                  "verdicts": {c: verdict(v) for c, v in per_col.items()}}
    return out
