"""Per-layer INT8 attribution across the framework boundary: every activation of the INT8 TFLite model against the
same tensor of the float ONNX model, on the same inputs.

Mapping (documented by the converter, /work/notes/converter-interface.md): the ONNX model is lowered again with
the same passes to recover `tensor_map` {tflite tensor: TensorOrigin(onnx_name, perm, channel_perm)}; the TFLite
value is dequantized with its scale/zero-point, transposed back with inverse(perm) (NHWC -> NCHW) and compared with
`onnx_value[:, channel_perm]` when the shuffle pass permuted that tensor's channels. The float reference is ONNX
Runtime on the ORIGINAL model with every intermediate tensor exposed (onnx_taps.TappedSession).

SQNR per layer = 10 log10(sum ref^2 / sum (int8 - ref)^2) over all samples. It measures the error ACCUMULATED up
to that tensor (inputs of both models are the same image, not the same intermediate), so a sharp drop between
consecutive layers points at the layer that loses information.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import onnx

from .onnx_taps import TappedSession
from .runners import quantize_input, tflite_interpreter, to_tflite_layout

WORST = 10


def _tensor_map(onnx_path: Path, interp, input_layout: str, for_int8: bool = True, shuffle_pass: dict | None = None):
    """{tflite tensor name: TensorOrigin} and the shuffle pass's channel permutations, recovered by lowering the
    ONNX model again exactly as `export.tflite.convert` does (same load, shape inference, shuffle pass with the
    forms the conversion used: `shuffle_pass` is report.json's `shuffle_pass_stats`, lowering), plus the graph
    outputs (TFLite names them after the signature, not the ONNX scope) matched by position."""
    from edgeport.export.tflite.convert import TensorOrigin, _load_model, shuffle_pass_available, tensor_map
    from edgeport.export.tflite._build import lower_graph
    from edgeport.export.tflite._graph import OnnxGraph

    model = _load_model(onnx_path)
    perms: dict[str, list[int]] = {}
    if shuffle_pass_available():
        from edgeport.export.tflite.shuffle_pass import remove_channel_shuffles

        forms = {k: v for k, v in (shuffle_pass or {}).items() if k in ("grouped_form", "piece_form") and v}
        model, perms = remove_channel_shuffles(OnnxGraph.from_model(model).model, **forms)
    from edgeport._native import captured_native_output

    with captured_native_output():
        lowered = lower_graph(OnnxGraph.from_model(model), input_layout=input_layout, for_int8=for_int8)
    tmap = tensor_map(interp, lowered, perms)
    outs = interp.get_output_details()
    if len(outs) == len(lowered.output_names):
        for d, name in zip(outs, lowered.output_names):
            if d["name"] not in tmap:
                perm = lowered.output_perms.get(name) or lowered.layouts.get(name) or tuple(range(len(d["shape"])))
                tmap[d["name"]] = TensorOrigin(name, tuple(perm), perms.get(name))
    return tmap, perms


# TFLite ops that re-express a tensor (requantize to a shared concat scale, pad for a strided conv) rather than
# compute it: the tensor the attribution reads is the one the computing op produced.
_REEXPRESS = {"QUANTIZE", "DEQUANTIZE", "PAD", "PADV2"}
_SP_SUFFIX = re.compile(r"(_(slice|cat|gather|r5|t5|shuffled))?__sp\d+$")


def _dequant(value: np.ndarray, detail: dict) -> np.ndarray:
    q = detail.get("quantization_parameters") or {}
    scales, zps = q.get("scales"), q.get("zero_points")
    if value.dtype == np.float32 or scales is None or len(scales) == 0:
        return value.astype(np.float32)
    if len(scales) > 1:
        return None  # per-channel (weights): not an activation
    return (value.astype(np.float32) - float(zps[0])) * float(scales[0])


def attribute_layers(
    *,
    onnx_path: str | Path,
    tflite_path: str | Path,
    samples: np.ndarray,
    input_layout: str = "nhwc",
    plot_path: str | Path | None = None,
    worst: int = WORST,
    title: str | None = None,
    shuffle_pass: dict | None = None,
) -> dict:
    """samples: float32 (N, C, H, W), preprocessed. Returns {"layers": [...in depth order], "worst": [...],
    "n_layers", "n_samples", "unmapped", "plot"} with per-layer `onnx_tensor`, `node`, `op_type`, `depth`,
    `tflite_tensor`, `sqnr_db`, `channel_perm` (bool). `shuffle_pass`: report.json's `shuffle_pass_stats` for this
    artifact (the shuffle-pass forms it was converted with; default forms when None)."""
    onnx_path, tflite_path = Path(onnx_path), Path(tflite_path)
    interp = tflite_interpreter(tflite_path, preserve_all_tensors=True)
    tmap, perms = _tensor_map(onnx_path, interp, input_layout, shuffle_pass=shuffle_pass)
    tapped = TappedSession(onnx_path)
    depth = {n: i for i, n in enumerate(tapped.order)}
    details = {d["index"]: d for d in interp.get_tensor_details()}
    producer: dict[int, str] = {}
    for op in interp._get_ops_details():
        for i in op["outputs"]:
            producer.setdefault(int(i), op["op_name"])
    # Every op output of the TFLite model, by tensor index (TFLite reuses a name for the requantized copies).
    # One TFLite tensor per ONNX tensor is compared: an op output (int8 or float) of the op that computes it;
    # re-expressions (requantize, pad) only when nothing else carries the name; the last in op order among equals.
    chosen: dict[str, list[tuple[int, object]]] = {}  # onnx tensor -> the TFLite tensor(s) that hold it
    pieces: dict[str, list[tuple[int, object]]] = {}
    rank: dict[str, int] = {}
    tensors: list[dict] = []
    for idx in sorted(producer):
        d = details[idx]
        origin = tmap.get(d["name"])
        row = {"tflite_index": idx, "tflite_tensor": d["name"], "tflite_op": producer[idx], "onnx_tensor": None,
               "node": None, "kind": "unmapped"}
        if origin is not None and origin.onnx_name in depth:
            row.update(onnx_tensor=origin.onnx_name, node=tapped.producers[origin.onnx_name], kind="onnx")
            if d["dtype"] in (np.int8, np.uint8, np.float32, np.int16):
                r = 0 if producer[idx] in _REEXPRESS else 1
                if r >= rank.get(origin.onnx_name, -1):
                    chosen[origin.onnx_name] = [(idx, origin)]
                    rank[origin.onnx_name] = r
        elif origin is not None:
            # a tensor the shuffle pass created (channel runs sliced / concatenated / gathered from an original
            # tensor): named `<original tensor or consumer node>_<slice|cat|gather|...>__sp<k>`
            # (the tensor it was cut from) or `<consumer node>_cat__sp<k>` (the input assembled for that node)
            base = _SP_SUFFIX.sub("", origin.onnx_name)
            if base in depth and origin.channel_perm is not None:
                # a piece of `base` computed by its own conv (split_sliced_convs): these channels of it
                row.update(onnx_tensor=base, node=tapped.producers[base], kind="shuffle_pass_piece",
                           pass_tensor=origin.onnx_name)
                if d["dtype"] in (np.int8, np.uint8, np.float32, np.int16) and producer[idx] not in _REEXPRESS:
                    pieces.setdefault(base, []).append((idx, origin))
            elif base in depth:
                row.update(onnx_tensor=base, node=tapped.producers[base], kind="shuffle_pass",
                           pass_tensor=origin.onnx_name)
            elif base in tapped.node_names:
                row.update(node=base, kind="shuffle_pass_input", pass_tensor=origin.onnx_name)
            else:
                row.update(kind="shuffle_pass", pass_tensor=origin.onnx_name)
        tensors.append(row)
    for base, parts in pieces.items():  # a tensor split across convs is compared as all its pieces together
        chosen.setdefault(base, parts)
    n_tflite = len(tensors)
    n_tflite_mapped = sum(1 for t in tensors if t["node"] is not None)
    unmapped = [n for n in tapped.order if n not in chosen and tapped.op_types.get(n) != "Input"]
    inp = interp.get_input_details()[0]
    sig = {n: 0.0 for n in chosen}
    noise = {n: 0.0 for n in chosen}
    skipped: set[str] = set()
    feed_name = tapped.input_names[0]
    for i in range(len(samples)):
        x = samples[i:i + 1]
        ref = tapped.run({feed_name: x})
        interp.set_tensor(inp["index"], quantize_input(to_tflite_layout(x, inp["shape"]), inp))
        interp.invoke()
        for oname, parts in chosen.items():  # parts: (TFLite tensor index, origin), channel pieces of oname
            if oname in skipped:
                continue
            vs, rs = [], []
            for tname, origin in parts:
                d = details[tname]
                v = _dequant(interp.get_tensor(d["index"]), d)
                if v is None:
                    break
                perm = tuple(origin.perm)
                if len(perm) == v.ndim:
                    v = np.transpose(v, np.argsort(perm))
                r = ref[oname]
                if origin.channel_perm is not None and r.ndim >= 2:
                    r = r[:, origin.channel_perm]
                vs.append(v)
                rs.append(r)
            if len(vs) != len(parts):
                skipped.add(oname)
                continue
            v, r = (vs[0], rs[0]) if len(vs) == 1 else (np.concatenate(vs, axis=1), np.concatenate(rs, axis=1))
            if v.shape != r.shape:
                skipped.add(oname)
                continue
            r64 = r.astype(np.float64)
            sig[oname] += float(np.sum(r64 * r64))
            noise[oname] += float(np.sum((v.astype(np.float64) - r64) ** 2))
    rows = []
    for oname in sorted(chosen, key=lambda n: depth[n]):
        if oname in skipped:
            continue
        s, e = sig[oname], noise[oname]
        sq = math.inf if e == 0 else (-math.inf if s == 0 else 10 * math.log10(s / e))
        rows.append({"depth": depth[oname], "onnx_tensor": oname, "node": tapped.producers[oname],
                     "op_type": tapped.op_types[oname], "tflite_tensor": details[chosen[oname][0][0]]["name"],
                     "tflite_op": producer[chosen[oname][0][0]], "sqnr_db": sq,
                     "channel_perm": any(o.channel_perm is not None for _, o in chosen[oname]),
                     "pieces": len(chosen[oname])})
    finite = [r for r in rows if r["op_type"] != "Input"]
    worst_rows = sorted(finite, key=lambda r: r["sqnr_db"])[:worst]
    plot = None
    if plot_path is not None and rows:
        plot = str(_plot(rows, Path(plot_path), title=f"INT8 TFLite vs float ONNX: {title or onnx_path.parent.name}"))
    return {"n_layers": len(rows), "n_samples": int(len(samples)), "unmapped": len(unmapped),
            "unmapped_onnx": unmapped, "tflite_tensors": n_tflite, "tflite_tensors_mapped": n_tflite_mapped,
            "skipped": sorted(skipped), "tflite_map": tensors,
            "shuffle_permuted": len(perms), "layers": rows, "worst": worst_rows, "plot": plot,
            "definition": "SQNR (dB) of the dequantized INT8 TFLite tensor vs the float ONNX tensor, accumulated error"}


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
    from edgeport.report import atomic_write_bytes
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path
