"""Per-layer INT8 attribution across the framework boundary: every activation of the INT8 TFLite model against the
same tensor of the float ONNX model, on the same inputs.

Mapping: the converter's tensor map saved beside the TFLite file (`model_int8.tensormap.json`,
edgeport.export.tflite.tensor_map) {tflite tensor: TensorOrigin(onnx_name, perm, channel_perm)}; the TFLite value is
dequantized with its scale/zero-point, transposed back with inverse(perm) (NHWC -> NCHW) and compared with
`onnx_value[:, channel_perm]` when the shuffle pass permuted that tensor's channels. The float reference is ONNX
Runtime on the ORIGINAL model with every intermediate tensor exposed (calibration.onnx_taps.TappedSession). The
TFLite model runs on the engine layer's builtin-kernel interpreter with every intermediate tensor preserved.

SQNR per layer = 10 log10(sum ref^2 / sum (int8 - ref)^2) over all samples. It measures the error ACCUMULATED up
to that tensor (inputs of both models are the same image, not the same intermediate), so a sharp drop between
consecutive layers points at the layer that loses information. A model with several inputs (an image and a second
tensor, int64 ids) gets every input on both sides, each sample the same row of each.
"""
from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from edgeport.calibration.onnx_taps import TappedSession
from edgeport.export.tflite import load_tensor_map, tensor_map_path
from edgeport.files import atomic_write_bytes
from edgeport.errors import InputShapeError
from edgeport.runtime.engines import open_engine, run_batches
from edgeport.runtime.layout import artifact_feed


WORST = 10
LAYER_SAMPLES = 16  # held-out samples validate --layers runs through both models


# TFLite ops that re-express a tensor (requantize to a shared concat scale, pad for a strided conv) rather than
# compute it: the tensor the attribution reads is the one the computing op produced.
REEXPRESS_OPS = {"QUANTIZE", "DEQUANTIZE", "PAD", "PADV2"}
ACTIVATION_DTYPES = (np.int8, np.uint8, np.float32, np.int16)
SHUFFLE_PASS_SUFFIX = re.compile(r"(_(slice|cat|gather|r5|t5|shuffled))?__sp\d+$")


def dequantize_activation(value: np.ndarray, detail: dict) -> np.ndarray | None:
    """A TFLite tensor's value as float32 with its per-tensor scale/zero point; None for a per-channel tensor
    (weights, not an activation)."""
    q = detail.get("quantization_parameters") or {}
    scales, zps = q.get("scales"), q.get("zero_points")
    if value.dtype == np.float32 or scales is None or len(scales) == 0:
        return value.astype(np.float32)
    if len(scales) > 1:
        return None
    return (value.astype(np.float32) - float(zps[0])) * float(scales[0])


@dataclass
class TensorMatch:
    """Which TFLite tensors hold which ONNX tensor.

    chosen: onnx tensor -> [(TFLite tensor index, TensorOrigin)], the channel pieces that together hold it;
    tflite_map: one row per TFLite op output (what it was traced to, `kind` onnx / shuffle_pass* / unmapped);
    producer: TFLite tensor index -> the op that writes it.
    """

    chosen: dict[str, list[tuple[int, object]]] = field(default_factory=dict)
    tflite_map: list[dict] = field(default_factory=list)
    producer: dict[int, str] = field(default_factory=dict)


def _trace_shuffle_pass_tensor(row: dict, origin, tapped: TappedSession, depth: dict) -> bool:
    """Fill `row` for a tensor the shuffle pass created (channel runs sliced / concatenated / gathered from an
    original tensor), named `<original tensor or consumer node>_<slice|cat|gather|...>__sp<k>`. True when it is a
    piece of an original tensor computed by its own conv (split_sliced_convs): these channels of it."""
    base = SHUFFLE_PASS_SUFFIX.sub("", origin.onnx_name)
    piece = base in depth and origin.channel_perm is not None
    if base in depth:
        row.update(onnx_tensor=base, node=tapped.producers[base],
                   kind="shuffle_pass_piece" if piece else "shuffle_pass", pass_tensor=origin.onnx_name)
    elif base in tapped.node_names:
        row.update(node=base, kind="shuffle_pass_input", pass_tensor=origin.onnx_name)
    else:
        row.update(kind="shuffle_pass", pass_tensor=origin.onnx_name)
    return piece


def match_tensors(interp, tmap: dict, tapped: TappedSession) -> TensorMatch:
    """One TFLite tensor per ONNX tensor is compared: an op output (int8 or float) of the op that computes it;
    re-expressions (requantize, pad) only when nothing else carries the name; the last in op order among equals.
    A tensor the shuffle pass split across convs is compared as all its pieces together. (TFLite reuses a name for
    the requantized copies, so tensors are told apart by index.)"""
    depth = {n: i for i, n in enumerate(tapped.order)}
    details = {d["index"]: d for d in interp.get_tensor_details()}
    match = TensorMatch()
    for op in interp._get_ops_details():
        for i in op["outputs"]:
            match.producer.setdefault(int(i), op["op_name"])
    pieces: dict[str, list[tuple[int, object]]] = {}
    rank: dict[str, int] = {}
    for idx in sorted(match.producer):
        d, op = details[idx], match.producer[idx]
        origin = tmap.get(d["name"])
        row = {"tflite_index": idx, "tflite_tensor": d["name"], "tflite_op": op, "onnx_tensor": None,
               "node": None, "kind": "unmapped"}
        if origin is not None and origin.onnx_name in depth:
            row.update(onnx_tensor=origin.onnx_name, node=tapped.producers[origin.onnx_name], kind="onnx")
            if d["dtype"] in ACTIVATION_DTYPES:
                r = 0 if op in REEXPRESS_OPS else 1
                if r >= rank.get(origin.onnx_name, -1):
                    match.chosen[origin.onnx_name] = [(idx, origin)]
                    rank[origin.onnx_name] = r
        elif origin is not None:
            piece = _trace_shuffle_pass_tensor(row, origin, tapped, depth)
            if piece and d["dtype"] in ACTIVATION_DTYPES and op not in REEXPRESS_OPS:
                pieces.setdefault(row["onnx_tensor"], []).append((idx, origin))
        match.tflite_map.append(row)
    for base, parts in pieces.items():
        match.chosen.setdefault(base, parts)
    return match


class SqnrAccumulator:
    """Signal and noise energy per ONNX tensor over samples; a tensor whose TFLite value cannot be compared
    (per-channel, or a shape that does not match) is skipped."""

    def __init__(self, chosen: dict[str, list[tuple[int, object]]], details: dict[int, dict]):
        self.chosen, self.details = chosen, details
        self.signal = {n: 0.0 for n in chosen}
        self.noise = {n: 0.0 for n in chosen}
        self.skipped: set[str] = set()

    def _pair(self, interp, parts, ref_value: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(TFLite value in ONNX layout and channel order, ONNX value), pieces concatenated along channels."""
        vs, rs = [], []
        for index, origin in parts:
            d = self.details[index]
            v = dequantize_activation(interp.get_tensor(d["index"]), d)
            if v is None:
                return None
            perm = tuple(origin.perm)
            if len(perm) == v.ndim:
                v = np.transpose(v, np.argsort(perm))
            r = ref_value
            if origin.channel_perm is not None and r.ndim >= 2:
                r = r[:, origin.channel_perm]
            vs.append(v)
            rs.append(r)
        v, r = (vs[0], rs[0]) if len(vs) == 1 else (np.concatenate(vs, axis=1), np.concatenate(rs, axis=1))
        return (v, r) if v.shape == r.shape else None

    def add(self, interp, ref: dict[str, np.ndarray]) -> None:
        """One sample: the interpreter after invoke, the ONNX tensors of the same input."""
        for name, parts in self.chosen.items():
            if name in self.skipped:
                continue
            pair = self._pair(interp, parts, ref[name])
            if pair is None:
                self.skipped.add(name)
                continue
            v, r = pair
            r64 = r.astype(np.float64)
            self.signal[name] += float(np.sum(r64 * r64))
            self.noise[name] += float(np.sum((v.astype(np.float64) - r64) ** 2))

    def sqnr_db(self, name: str) -> float:
        s, e = self.signal[name], self.noise[name]
        return math.inf if e == 0 else (-math.inf if s == 0 else 10 * math.log10(s / e))


def _layer_rows(match: TensorMatch, acc: SqnrAccumulator, tapped: TappedSession, details: dict) -> list[dict]:
    depth = {n: i for i, n in enumerate(tapped.order)}
    rows = []
    for name in sorted(match.chosen, key=lambda n: depth[n]):
        if name in acc.skipped:
            continue
        parts = match.chosen[name]
        rows.append({"depth": depth[name], "onnx_tensor": name, "node": tapped.producers[name],
                     "op_type": tapped.op_types[name], "tflite_tensor": details[parts[0][0]]["name"],
                     "tflite_op": match.producer[parts[0][0]], "sqnr_db": acc.sqnr_db(name),
                     "channel_perm": any(o.channel_perm is not None for _, o in parts), "pieces": len(parts)})
    return rows


def attribute_layers(
    *,
    onnx_path: str | Path,
    tflite_path: str | Path,
    samples: np.ndarray | Mapping[str, np.ndarray],
    tensor_map: str | Path | None = None,
    plot_path: str | Path | None = None,
    worst: int = WORST,
    title: str | None = None,
) -> dict:
    """samples: {model input name: (N, ...)} for every input of the model (images float32 (N, C, H, W), others in
    their own dtype), or one float32 (N, C, H, W) array for a one-input model; preprocessed. InputShapeError when
    an input of the ONNX model has no samples. `tensor_map`: the converter's saved map for `tflite_path`
    (default: the file beside it, tensor_map_path(tflite_path); ExportError when it is missing or corrupt).
    Returns {"layers": [...in depth order], "worst": [...], "n_layers", "n_samples", "unmapped", "plot"} with
    per-layer `onnx_tensor`, `node`, `op_type`, `depth`, `tflite_tensor`, `sqnr_db`, `channel_perm` (bool)."""
    onnx_path, tflite_path = Path(onnx_path), Path(tflite_path)
    saved = load_tensor_map(tensor_map if tensor_map is not None else tensor_map_path(tflite_path))
    engine = open_engine("tflite-builtin", tflite_path, threads=1, preserve_all_tensors=True)
    interp = engine.interpreter
    tapped = TappedSession(onnx_path)
    match = match_tensors(interp, saved.tensors, tapped)
    details = {d["index"]: d for d in interp.get_tensor_details()}
    acc = SqnrAccumulator(match.chosen, details)
    inputs = _model_inputs(samples, tapped.input_names, artifact=onnx_path.name)
    run_batches(engine, artifact_feed(engine, inputs, artifact=tflite_path.name),
                on_sample=lambda i, eng: acc.add(eng.interpreter,
                                                 tapped.run({k: v[i:i + 1] for k, v in inputs.items()})))
    rows = _layer_rows(match, acc, tapped, details)
    finite = [r for r in rows if r["op_type"] != "Input"]
    plot = None
    if plot_path is not None and rows:
        plot = str(_plot(rows, Path(plot_path), title=f"INT8 TFLite vs float ONNX: {title or onnx_path.parent.name}"))
    unmapped = [n for n in tapped.order if n not in match.chosen and tapped.op_types.get(n) != "Input"]
    return {"n_layers": len(rows), "n_samples": int(len(next(iter(inputs.values())))), "unmapped": len(unmapped),
            "unmapped_onnx": unmapped, "tflite_tensors": len(match.tflite_map),
            "tflite_tensors_mapped": sum(1 for t in match.tflite_map if t["node"] is not None),
            "skipped": sorted(acc.skipped), "tflite_map": match.tflite_map,
            "shuffle_permuted": len(saved.channel_permutations), "layers": rows,
            "worst": sorted(finite, key=lambda r: r["sqnr_db"])[:worst], "plot": plot,
            "definition": "SQNR (dB) of the dequantized INT8 TFLite tensor vs the float ONNX tensor, accumulated error"}


def _model_inputs(samples, names: list[str], *, artifact: str) -> dict[str, np.ndarray]:
    """{ONNX input name: samples} in the model's input order, from a dict of every input or one array for a
    one-input model."""
    if not isinstance(samples, Mapping):
        if len(names) != 1:
            raise InputShapeError(f"{artifact}: takes {len(names)} inputs ({', '.join(names)}); give samples for "
                                  f"each by name")
        return {names[0]: np.asarray(samples)}
    missing = [n for n in names if n not in samples]
    if missing:
        raise InputShapeError(f"{artifact}: no samples for input {', '.join(missing)} (given: "
                              f"{', '.join(samples)})")
    return {n: np.asarray(samples[n]) for n in names}


def _plot(rows: list[dict], path: Path, *, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["depth"] for r in rows]
    ys = [min(r["sqnr_db"], 80.0) for r in rows]
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(xs, ys, "-o", ms=3)
    for r in sorted(rows, key=lambda r: r["sqnr_db"])[:3]:
        ax.annotate(r["node"], (r["depth"], r["sqnr_db"]), fontsize=7, rotation=20)
    ax.set_xlabel("depth (ONNX node order)")
    ax.set_ylabel("SQNR (dB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path
