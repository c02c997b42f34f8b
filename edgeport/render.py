"""report.json -> report.md and a self-contained report.html (plots embedded as PNG data URIs, no external URL).

Plots (also written as DIR/report_<name>.png for report.md): latency per artifact and target (p50 bars with p90
whiskers), top-1 agreement or accuracy and SQNR vs latency per artifact, per-layer INT8 SQNR along the depth of the
network (worst layers named), and the op histogram of each artifact with layout TRANSPOSE ops in red.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from edgeport.files import atomic_write_bytes, atomic_write_text
from edgeport.recommend import missed_thresholds, recommend
from edgeport.report import device_parity_entries, float_op_groups, load_report, noise_floor_rows

TRANSPOSE_OPS = {"TRANSPOSE", "Transpose"}
PLOTS = ("latency", "tradeoff", "layers", "ops")
TITLES = {"latency": "Latency per artifact and target", "tradeoff": "Agreement and SQNR vs latency",
          "layers": "Per-layer INT8 SQNR along the network", "ops": "Op histogram per artifact"}
ARTIFACT_COLORS = {"onnx": "#4C78A8", "tflite_fp32": "#F58518", "tflite_fp16": "#EECA3B", "tflite_dynamic": "#B279A2",
                   "tflite_int8": "#54A24B", "onnx_int8": "#72B7B2", "onnx_fp16": "#FF9DA6"}
TARGET_HATCH = ("", "//", "..", "xx", "\\\\", "++")


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return buf.getvalue()


def artifact_color(artifact: str, i: int = 0) -> str:
    return ARTIFACT_COLORS.get(artifact, f"C{i % 10}")


def _timed(latency: list[dict]) -> list[dict]:
    return [e for e in latency or [] if e.get("p50_ms") is not None]


def plot_latency(latency: list[dict]) -> bytes | None:
    """Grouped bars: one group per artifact, one bar per (target, engine, threads); bar = p50, whisker to p90."""
    ok = _timed(latency)
    if not ok:
        return None
    plt = pyplot()
    arts = list(dict.fromkeys(e["artifact"] for e in ok))
    configs = list(dict.fromkeys((e["target"], e["threads"]) for e in ok))
    width = 0.8 / len(configs)
    fig, ax = plt.subplots(figsize=(max(6.5, 1.5 * len(arts) * max(1, len(configs) / 2)), 4))
    top = max(e["p90_ms"] or e["p50_ms"] for e in ok)
    max_p50 = max(e["p50_ms"] for e in ok)
    clipped = top > 3 * max_p50  # a noisy p90 (a loaded machine) must not flatten the bars: clip and label it
    if clipped:
        top = 2.2 * max_p50
    for ci, (target, threads) in enumerate(configs):
        for ai, art in enumerate(arts):
            e = next((e for e in ok if e["artifact"] == art and e["target"] == target and e["threads"] == threads), None)
            if e is None:
                continue
            x = ai + (ci - (len(configs) - 1) / 2) * width
            p90 = e.get("p90_ms") or e["p50_ms"]
            ax.bar(x, e["p50_ms"], width * 0.92, color=artifact_color(art, ai), hatch=TARGET_HATCH[ci % len(TARGET_HATCH)],
                   edgecolor="#333", linewidth=0.5)
            shown = min(p90, top)
            ax.errorbar(x, e["p50_ms"], yerr=[[0], [shown - e["p50_ms"]]], color="#222", capsize=0 if p90 > top else 4,
                        linewidth=1)
            label = f"{e['p50_ms']:.3g}" + (f" (p90 {p90:.3g} ↑)" if p90 > top else "")
            ax.text(x, shown + top * 0.02, label, ha="center", va="bottom", fontsize=7,
                    color="#b00" if e.get("noisy") else "black")
            if e.get("noisy"):  # an untrusted number: faded bar, red label (reasons in the latency table)
                ax.patches[-1].set_alpha(0.45)
    ax.set_xticks(range(len(arts)), [f"{a}\n({next(e['engine'] for e in ok if e['artifact'] == a)})" for a in arts],
                  fontsize=8)
    ax.set_ylabel("ms per inference (bar p50, whisker p90)")
    if any(e.get("noisy") for e in ok):
        ax.set_xlabel("faded bars, red labels: noisy (loaded machine, spread or CPU wait; reasons in the latency table)",
                      fontsize=7, color="#b00")
    ax.set_ylim(0, top * 1.18)
    if len(configs) > 1:
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(facecolor="white", edgecolor="#333", hatch=TARGET_HATCH[i % len(TARGET_HATCH)],
                                 label=f"{t} · {n} thread{'s' if n > 1 else ''}") for i, (t, n) in enumerate(configs)],
                  fontsize=7, loc="upper left")
    else:
        t, n = configs[0]
        ax.set_title(f"{t} · {n} thread{'s' if n > 1 else ''}", fontsize=8, color="#555")
    fig.suptitle("Latency per artifact and target", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return png_bytes(fig)


LATENCY_COLUMNS = ["target", "device", "engine", "artifact", "threads", "runs", "p50_ms", "p90_ms", "p99_ms", "mean_ms",
                   "std_ms", "min_ms", "cpu_ms", "cpu_util", "load_ms", "first_ms", "peak_rss_mb", "noisy"]


def latency_rows(latency: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The report's latency table: every timing, the CPU time per inference (cpu_ms, all threads) and its share of
    wall time x threads (cpu_util), and the noisy verdict with its reasons ("no", "yes: <reasons>", "-" when not
    judged, e.g. benchmark_model results or entries written before the verdict existed)."""
    rows = []
    for e in latency:
        row = [_fmt(e.get(c)) for c in LATENCY_COLUMNS[:-1]]
        noisy = e.get("noisy")
        row.append("-" if noisy is None else "yes: " + "; ".join(e.get("noisy_reasons") or []) if noisy else "no")
        rows.append(row)
    return list(LATENCY_COLUMNS), rows


def plot_tradeoff(parity: dict, latency: list[dict], accuracy: dict | None = None) -> bytes | None:
    """Left: accuracy (labelled samples) or top-1 agreement with torch vs p50; right: SQNR vs p50."""
    ok = _timed(latency)
    acc = ((accuracy or {}).get("artifacts") or {}) if isinstance(accuracy, dict) else {}
    points = []
    for e in ok:
        par = parity.get(e["artifact"], {})
        a = acc.get(e["artifact"], {}).get("accuracy")
        y1 = a if a is not None else par.get("top1_agreement")
        points.append((e, y1, par.get("sqnr_db")))
    points = [p for p in points if p[1] is not None or p[2] is not None]
    if not points:
        return None
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    markers = "osD^v<>"
    configs = list(dict.fromkeys((e["target"], e["threads"]) for e, _, _ in points))
    arts = list(dict.fromkeys(e["artifact"] for e, _, _ in points))
    xmax = max(e["p50_ms"] for e, _, _ in points)
    labelled: dict = {ax1: [], ax2: []}
    for e, y1, y2 in sorted(points, key=lambda p: p[0]["p50_ms"]):
        m = markers[configs.index((e["target"], e["threads"])) % len(markers)]
        c = artifact_color(e["artifact"], arts.index(e["artifact"]))
        for ax, y in ((ax1, y1), (ax2, y2)):
            if y is None or y == float("inf"):
                continue
            yy = 100 * y if ax is ax1 else y
            ax.scatter([e["p50_ms"]], [yy], marker=m, s=55, color=c, edgecolor="#222", linewidth=0.5, zorder=3,
                       clip_on=False)
            labelled[ax].append((e["p50_ms"], yy, e["artifact"] + (f" · {e['threads']}T" if len(configs) > 1 else "")))
    ax1.set_ylabel("accuracy on labelled held-out samples (%)" if acc else "top-1 agreement with torch (%)")
    ax2.set_ylabel("SQNR vs torch logits (dB)")
    for ax in (ax1, ax2):
        ax.set_xlabel("p50 latency (ms)")
        ax.grid(alpha=0.3)
        ax.set_xlim(0, xmax * 1.2)  # room right of the slowest point for its label; no point on the frame
    y1s = [100 * y for _, y, _ in points if y is not None]
    if y1s:
        pad = max(2.0, 0.3 * (max(y1s) - min(y1s)))
        ax1.set_ylim(max(0.0, min(y1s) - pad), max(y1s) + pad)
        ax1.set_yticks([t for t in ax1.get_yticks() if max(0.0, min(y1s) - pad) <= t <= 100])  # no "105 %"
        ax1.set_ylim(max(0.0, min(y1s) - pad), max(y1s) + pad)
    ax2.margins(y=0.2)
    if len(configs) > 1:
        from matplotlib.lines import Line2D

        ax2.legend(handles=[Line2D([], [], marker=markers[i % len(markers)], linestyle="", color="#888",
                                   label=f"{t} · {n}T") for i, (t, n) in enumerate(configs)], fontsize=7)
    fig.suptitle(("Accuracy" if acc else "Agreement with torch") + " and SQNR vs latency (up and left is better)",
                 fontsize=10)
    fig.tight_layout()
    for ax, items in labelled.items():
        place_labels(ax, items)
    return png_bytes(fig)


LABEL_OFFSETS = [(7, 5), (7, -11), (-7, 5), (-7, -11), (7, 15), (-7, 15), (7, -21), (-7, -21), (0, 24), (0, -30),
                 (14, 30), (-14, 30), (14, -36), (-14, -36)]  # points from the marker: nearest first


def place_labels(ax, items: list[tuple[float, float, str]], *, fontsize: float = 7) -> None:
    """Label each (x, y, text) point next to itself without overprinting another label or a marker and without
    leaving the axes: candidate offsets nearest first, measured with the renderer; a label set off further than
    the first ring gets a thin leader line to its point. Call after the axes' limits and layout are final."""
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    marker_r = 5 * fig.dpi / 72
    taken = [Bbox.from_bounds(px - marker_r, py - marker_r, 2 * marker_r, 2 * marker_r)
             for px, py in (ax.transData.transform((x, y)) for x, y, _ in items)]
    for x, y, text in items:
        best = None
        for k, (dx, dy) in enumerate(LABEL_OFFSETS):
            ann = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=fontsize,
                              ha="left" if dx > 0 else "right" if dx < 0 else "center", va="bottom")
            box = ann.get_window_extent(renderer)
            cost = sum(box.overlaps(t) for t in taken) + (0 if frame.contains(box.x0, box.y0) and
                                                          frame.contains(box.x1, box.y1) else 10)
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, ann, box, k)
            else:
                ann.remove()
            if cost == 0:
                break
        _, ann, box, k = best
        if k >= 4:
            ann.remove()
            dx, dy = LABEL_OFFSETS[k]
            ann = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=fontsize,
                              ha="left" if dx > 0 else "right" if dx < 0 else "center", va="bottom",
                              arrowprops={"arrowstyle": "-", "color": "#888", "linewidth": 0.5, "shrinkA": 0,
                                          "shrinkB": 4})
        taken.append(box)


def plot_layers(layers: dict | None, threshold_db: float | None = None) -> bytes | None:
    """SQNR of every mapped layer (TFLite INT8 vs float ONNX) in network depth order; the worst 3 named."""
    rows = [r for r in ((layers or {}).get("layers") or []) if r.get("sqnr_db") is not None]
    if not rows:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.8))
    xs = [r.get("depth", i) for i, r in enumerate(rows)]
    ys = [min(float(r["sqnr_db"]), 80.0) for r in rows]
    ax.plot(xs, ys, color="#4C78A8", linewidth=1, zorder=2)
    kinds = list(dict.fromkeys(r.get("op_type", "?") for r in rows))
    for k_i, kind in enumerate(kinds):
        sel = [i for i, r in enumerate(rows) if r.get("op_type", "?") == kind]
        ax.scatter([xs[i] for i in sel], [ys[i] for i in sel], s=14, color=f"C{k_i % 10}", label=kind, zorder=3)
    worst = sorted(sorted(range(len(ys)), key=lambda i: ys[i])[:3], key=lambda i: xs[i])
    span = (max(xs) - min(xs)) or 1
    bounds = ys + ([threshold_db] if threshold_db is not None else [])
    low, high = min(bounds), max(bounds)
    ax.set_ylim(low - 0.55 * ((high - low) or 1), high + 0.25 * ((high - low) or 1))  # a label band inside, below
    for rank, i in enumerate(worst):  # labels in that band (axes fraction 0.08-0.30), never on the frame
        right = xs[i] > min(xs) + 0.5 * span  # a label runs toward the middle (the lowest for the leftmost point)
        ax.annotate(f"{layer_name(rows[i])} ({ys[i]:.1f} dB)", (xs[i], ys[i]), fontsize=7,
                    textcoords=("data", "axes fraction"), xytext=(xs[i] + (-0.04 if right else 0.04) * span,
                                                                 0.08 + 0.09 * rank),
                    ha="right" if right else "left", va="bottom", color="#C0392B",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
                    arrowprops={"arrowstyle": "-", "color": "#C0392B", "linewidth": 0.6, "shrinkB": 3,
                                "relpos": (1.0, 0.5) if right else (0.0, 0.5)})  # from the label's near end
    if threshold_db is not None:
        ax.axhline(threshold_db, color="#E45756", linestyle="--", linewidth=0.8)
        ax.text(xs[0], threshold_db, f" threshold on the INT8 output: {threshold_db:g} dB", fontsize=7, color="#E45756",
                va="top")
    ax.set_xlabel("depth (ONNX node index, input → output)")
    ax.set_ylabel("SQNR INT8 vs float (dB)")
    n, of = (layers or {}).get("n_samples", "?"), (layers or {}).get("n_validation_samples")
    ax.set_title(f"Per-layer INT8 error of {(layers or {}).get('artifact', 'tflite_int8')} vs the float ONNX model: "
                 f"{len(rows)} layers, {n} samples" + (f" (the first {n} of the {of} validation samples)"
                                                      if of and of != n else ""), fontsize=10)
    ax.legend(fontsize=7, ncol=min(6, len(kinds)), loc="upper right")
    ax.grid(alpha=0.3)
    return png_bytes(fig)


def layer_name(row: dict) -> str:
    """A layer as a user knows it: the torch module path where the export recorded it, else the ONNX node."""
    node = row.get("node") or row.get("onnx_tensor", "?")
    return f"{row['module']} ({node})" if row.get("module") else node


def plot_ops(ops: dict, info: dict | None = None) -> bytes | None:
    """Horizontal op-count bars, one panel per artifact; TRANSPOSE in red (layout changes are what NHWC avoids)."""
    if not ops:
        return None
    plt = pyplot()
    n = len(ops)
    cols = 2 if n == 4 else min(n, 3)
    nrows = (n + cols - 1) // cols
    height = max(3.0, 0.22 * max(min(len(h), 14) for h in ops.values()) + 1.2)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.6 * cols, height * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (art, hist) in zip(axes.flat, ops.items()):
        items = sorted(hist.items(), key=lambda kv: (kv[0] in TRANSPOSE_OPS, kv[1]))[-14:]
        if not any(k in TRANSPOSE_OPS for k, _ in items):
            items = items  # nothing to highlight
        names = [k for k, _ in items]
        colors = ["#E45756" if k in TRANSPOSE_OPS else "#9DB9D3" for k in names]
        ax.barh(names, [v for _, v in items], color=colors)
        for y, (_, v) in enumerate(items):
            ax.text(v, y, f" {v}", va="center", fontsize=7)
        t = sum(v for k, v in hist.items() if k in TRANSPOSE_OPS)
        lt = ((info or {}).get(art) or {}).get("layout_transposes")
        sub = f"{sum(hist.values())} ops, {t} transpose" + (f" ({lt} layout)" if lt is not None else "")
        sp = ((info or {}).get(art) or {}).get("shuffle_pass_stats")
        if sp and sp.get("found"):
            sub += f"; shuffles: {sp['absorbed']} absorbed, {sp['kept']} kept"
        ax.set_title(f"{art}\n{sub}", fontsize=8, color="#C0392B" if t else "#222")
        ax.tick_params(labelsize=7)
        ax.margins(x=0.18)
    fig.suptitle("Op histogram per artifact (TRANSPOSE in red)", fontsize=10)
    fig.tight_layout()
    return png_bytes(fig)


def _device_parity_rows(entries) -> list[list[str]]:
    """One row per output; target, artifact and engine on each entry's first row only."""
    rows = []
    for p in entries:
        for k, o in enumerate(p.outputs):
            head = [p.target, p.artifact, p.engine] if k == 0 else ["", "", ""]
            rows.append([_fmt(v) for v in head] + [o.name] + [_fmt(getattr(o, c)) for c in (
                "cosine_min", "sqnr_db", "max_abs", "top1_agreement", "ok")])
    return rows


def _fmt(v, digits=4):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v == float("inf"):
            return "inf"
        if abs(v) >= 100 or v == 0:
            return f"{v:.1f}"
        if abs(v) < 1e-3:
            return f"{v:.2e}"
        return f"{v:.{digits}g}"
    return str(v)


def _cos(v):
    return "-" if v is None else f"{v:.6f}"


def _check(p: dict) -> str:
    """Validation verdict of one artifact: ok, FAILED (metric list), not enforced (random init), - (not validated)."""
    if "passed" not in p:
        return "-"
    if not p.get("thresholds_enforced", True):
        return "not enforced"
    if p["passed"]:
        return "ok"
    from edgeport.metrics import passes

    missed = [m for m, t in (p.get("thresholds") or {}).items() if p.get(m) is not None and not passes(m, p[m], t)]
    return "FAILED " + ", ".join(missed)


def _pct(v):
    return "-" if v is None else f"{100 * v:.1f}%"


def summary_rows(data: dict, out: Path | None = None) -> tuple[list[str], list[list[str]]]:
    """One row per artifact: size, ops (transposes), parity, accuracy, p50/p90 per target (also the CLI's table)."""
    acc = (data.get("accuracy") or {}).get("artifacts") or {}
    lat = _timed(data.get("latency", []))
    configs = list(dict.fromkeys((e["target"], e["threads"]) for e in lat))
    cols = ["artifact", "file", "KB", "ops (transposes)", "cosine_mean", "top-1 agree", "SQNR dB"]
    if acc:
        cols.append("accuracy")
    cols += [f"p50 / p90 ms · {t} · {n}T" for t, n in configs]
    cols.append("check")
    rows = []
    for art, entry in (data.get("artifacts") or {}).items():
        fname = entry["file"]
        ops = (data.get("ops") or {}).get(art, {})
        par = (data.get("parity") or {}).get(art, {})
        size = f"{entry['size'] / 1024:,.0f}"
        row = [art, fname, size, f"{sum(ops.values())} ({sum(v for k, v in ops.items() if k in TRANSPOSE_OPS)})",
               _cos(par.get("cosine_mean")), _pct(par.get("top1_agreement")), _fmt(par.get("sqnr_db"))]
        if acc:
            row.append(_pct(acc.get(art, {}).get("accuracy")))
        for t, n in configs:
            e = next((e for e in lat if e["artifact"] == art and e["target"] == t and e["threads"] == n), None)
            row.append(f"{e['p50_ms']:.3g} / {e['p90_ms']:.3g}" if e else "-")
        row.append(_check(par))
        rows.append(row)
    return cols, rows


def _tables(data: dict, out: Path | None) -> list[tuple[str, list[str], list[list[str]]]]:
    tables = []
    cols, rows = summary_rows(data, out)
    if rows:
        tables.append(("Summary", cols, rows))
    parity = data.get("parity") or {}
    if parity:
        pcols = ["artifact", "max_abs_err", "mean_abs_err", "cosine_mean", "sqnr_db", "top1_agreement", "top5_overlap",
                 "n_samples", "reference", "check"]
        prow = []
        for a, p in parity.items():
            prow.append([a, *[_cos(p.get(c)) if c == "cosine_mean" else _fmt(p.get(c)) for c in pcols[1:-1]], _check(p)])
        tables.append(("Parity vs torch (held-out samples)", pcols, prow))
    acc = data.get("accuracy") or {}
    if acc.get("artifacts"):
        tables.append((f"Accuracy on {acc.get('samples', {}).get('count', '?')} labelled held-out samples "
                       f"({acc.get('samples', {}).get('source', '?')})", ["model", "accuracy", "drop (points)"],
                       [[a, _pct(v.get("accuracy")), _fmt(v.get("drop_points"))] for a, v in acc["artifacts"].items()]))
    noisy = noise_floor_rows(data.get("parity") or {})
    if noisy:
        tables.append(("Float noise floor (float32 bound widened to a multiple of two correct float32 runs' gap)",
                       ["artifact", "max_abs_rel", "bound", "noise floor", "factor", "measured between"], noisy))
    lat = data.get("latency") or []
    if lat:
        tables.append(("Latency", *latency_rows(lat)))
    # `local` runs the runner on this machine: its "device parity" compares the machine with itself (a check of the
    # runner process, shown by `bench`), so the report lists real targets only
    dp = [p for p in device_parity_entries(data) if p.target != "local"]
    if dp:
        tables.append(("Device parity (target outputs vs this machine, same artifact, every output)",
                       ["target", "artifact", "engine", "output", "cosine_min", "sqnr_db", "max_abs",
                        "top1_agreement", "ok"], _device_parity_rows(dp)))
    ops = data.get("ops") or {}
    if ops:
        info = data.get("artifact_info") or {}
        tables.append(("Ops", ["artifact", "ops", "types", "transposes", "layout", "io dtype"], [
            [a, str(sum(h.values())), str(len(h)), str(sum(v for k, v in h.items() if k in TRANSPOSE_OPS)),
             _fmt((info.get(a) or {}).get("layout")), _fmt((info.get(a) or {}).get("io_dtype"))]
            for a, h in ops.items()]))
    floats = float_op_groups(data.get("artifact_info") or {})
    if floats:
        tables.append(("INT8 ops kept float (DEQUANTIZE / QUANTIZE around them)",
                       ["artifact", "onnx op", "count", "tflite ops", "why"],
                       [[a, op, str(n), "+".join(tfl) or "-", why] for a, op, tfl, n, why in floats]))
    xnn = [[a, str(x.get("partitions")), "yes" if x.get("complete") else "NO",
            ", ".join(f"{op} x{n}" for op, n in (x.get("builtin_ops") or {}).items()) or x.get("error") or "-",
            x.get("runtime") or "-"]
           for a, x in ((a, (i or {}).get("xnnpack")) for a, i in (data.get("artifact_info") or {}).items()) if x]
    if xnn:
        tables.append(("XNNPACK coverage (the default CPU delegate; ops it leaves run on TFLite's builtin kernels)",
                       ["artifact", "partitions", "whole graph", "left to builtin kernels", "runtime"], xnn))
    gpu = _gpu_rows(data.get("artifact_info") or {})
    if gpu:
        tables.append(("GPU delegate readiness (ops the TFLite GPU delegate takes; the rest fall back to the CPU)",
                       ["artifact", "ops on GPU / all", "whole graph", "falls back (op: reason)", "tensors > 4-D"],
                       gpu))
    worst = (data.get("layers") or {}).get("worst") or []
    if worst:
        tables.append(("Worst INT8 layers", ["depth", "torch module", "onnx node", "op", "onnx tensor", "sqnr_db"],
                       [[_fmt(w.get("depth")), _fmt(w.get("module") or "-"), _fmt(w.get("node")),
                         _fmt(w.get("op_type")), _fmt(w.get("onnx_tensor")), _fmt(w.get("sqnr_db"))] for w in worst]))
    steps = data.get("steps") or {}
    if steps:
        tables.append(("Steps", ["step", "seconds", "finished", "key"],
                       [[k, _fmt(v.get("seconds")), _fmt(v.get("finished")), _fmt(v.get("key"))]
                        for k, v in steps.items()]))
    fails = data.get("failures") or {}
    if fails:
        tables.append(("Failures", ["step / target", "error"], [[k, str(v)] for k, v in fails.items()]))
    return tables


def _gpu_rows(info: dict) -> list[list[str]]:
    """One row per TFLite artifact with a recorded GPU delegate readiness (artifact_info.<tflite_*>.gpu)."""
    rows = []
    for art, i in info.items():
        g = (i or {}).get("gpu")
        if not g:
            continue
        groups: dict[str, int] = {}
        for f in g.get("fallback") or []:
            key = f"{f['op']}: {f['reason']}"
            groups[key] = groups.get(key, 0) + 1
        rows.append([art, f"{g['ops_gpu']} / {g['ops_total']}", "yes" if g.get("whole_graph") else "NO",
                     "; ".join(f"{k} (x{n})" for k, n in groups.items()) or "-", str(g.get("tensors_over_4d", 0))])
    return rows


def _pretrained(src: dict) -> str | None:
    """A library source's pretrained weights ("pretrained timm/NAME"), None otherwise."""
    return f"pretrained {src['weights']}" if src.get("weights") else None


def _headline(data: dict) -> list[str]:
    model, src, cal = data.get("model") or {}, data.get("source") or {}, data.get("calibration") or {}
    lines = [
        f"model {model.get('name')} ({model.get('family')}), input {'x'.join(map(str, model.get('input_shape', [])))}, "
        f"{(model.get('params') or 0) / 1e6:.2f}M params, {(model.get('macs') or 0) / 1e6:.1f}M MACs",
        f"source {src.get('kind')}"
        + (f" {src['library']} {src.get('library_version')}" if src.get("library") else "")
        + f"; checkpoint {src.get('checkpoint') or _pretrained(src) or 'none (random init)'}"
        + (f" (sha256 {src['checkpoint_sha256'][:12]}, {src.get('checkpoint_format')})" if src.get("checkpoint_sha256")
           else ""),
    ]
    c = cal.get("calibration") or {}
    v = cal.get("validation") or {}
    if c:
        lines.append(f"INT8 calibration: {c.get('count')} samples, {c.get('description') or c.get('source')} "
                     f"({cal.get('method', 'minmax')})")
    if v:
        lines.append(f"validation: {v.get('count')} held-out samples, {v.get('description') or v.get('source')}")
    tool = data.get("tool") or {}
    lines.append("tools: " + ", ".join(f"{k} {val}" for k, val in tool.items()))
    return lines


def _banner(data: dict) -> dict[str, str]:
    """What the red banner lists: failed steps/targets and every artifact that missed an enforced threshold."""
    missed = {f"check {a}": f"missed its threshold: {m}"
              for a, m in missed_thresholds(data.get("parity") or {}).items()}
    return {**(data.get("failures") or {}), **missed}


CSS = """
body{font-family:'DejaVu Sans',Arial,sans-serif;margin:24px auto;max-width:1200px;padding:0 16px;color:#222}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin-top:30px;border-bottom:1px solid #ddd;padding-bottom:3px}
.meta{color:#555;font-size:13px;margin:2px 0}
table{border-collapse:collapse;margin:8px 0 18px}td,th{border:1px solid #ccc;padding:3px 8px;font-size:12.5px}
th{background:#f3f3f3;text-align:left}td{font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fafafa}
img.plot{max-width:100%;border:1px solid #eee;margin:6px 0 12px;display:block}
.fail{background:#fdecea;border:1px solid #E45756;padding:8px 12px;margin:12px 0;font-size:13px}
.ok{color:#2e7d32}pre{font-size:11px;max-height:400px;overflow:auto;background:#f7f7f7;padding:8px}
#recommendation{white-space:pre-wrap}
"""


def render(out_dir: str | Path) -> dict[str, Path]:
    """Write DIR/report.md, DIR/report.html and the plot PNGs from DIR/report.json; returns the paths written."""
    out = Path(out_dir)
    data = load_report(out).data
    parity = data.get("parity") or {}
    th = ((parity.get("tflite_int8") or {}).get("thresholds") or {}).get("sqnr_db")
    plots = {
        "latency": plot_latency(data.get("latency", [])),
        "tradeoff": plot_tradeoff(parity, data.get("latency", []), data.get("accuracy")),
        "layers": plot_layers(data.get("layers"), th),
        "ops": plot_ops(data.get("ops") or {}, data.get("artifact_info")),
    }
    written: dict[str, Path] = {}
    for key, png in plots.items():
        p = out / f"report_{key}.png"
        if png:
            atomic_write_bytes(p, png)
            written[key] = p
        else:
            p.unlink(missing_ok=True)  # no stale plot from an earlier run
    tables = _tables(data, out)
    name = (data.get("model") or {}).get("name", "model")
    fails = _banner(data)
    decision = recommend(data).lines()
    # markdown
    md = [f"# edgeport report: {name}", ""] + [f"- {ln}" for ln in _headline(data)] + [""]
    if fails:
        md += ["**Failures:** " + "; ".join(f"`{k}`: {v}" for k, v in fails.items()), ""]
    md += ["## Recommendation", "", "```", *decision, "```", ""]
    for title, cols, rows in tables:
        md += [f"## {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        md += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
        md.append("")
    for key, p in written.items():
        md += [f"## {TITLES[key]}", "", f"![{TITLES[key]}]({p.name})", ""]
    atomic_write_text(out / "report.md", "\n".join(md))
    # html: tables first (summary), then the plots, then the detail tables
    esc = html.escape
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             f"<title>edgeport report: {esc(name)}</title><style>{CSS}</style></head><body>",
             f"<h1>edgeport report: {esc(name)}</h1>"]
    parts += [f"<p class='meta'>{esc(ln)}</p>" for ln in _headline(data)]
    if fails:
        parts.append("<div class='fail' id='failures'><b>Failures</b><ul>" + "".join(
            f"<li><code>{esc(k)}</code>: {esc(str(v))}</li>" for k, v in fails.items()) + "</ul></div>")
    parts.append("<h2>Recommendation</h2><pre id='recommendation'>" + esc("\n".join(decision)) + "</pre>")

    def table_html(title, cols, rows):
        tid = "table-" + "".join(ch if ch.isalnum() else "-" for ch in title.lower().split(" (")[0]).strip("-")
        return (f"<h2>{esc(title)}</h2><table id='{tid}'><thead><tr>" + "".join(f"<th>{esc(c)}</th>" for c in cols)
                + "</tr></thead><tbody>" + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>"
                                                   for r in rows) + "</tbody></table>")

    if tables and tables[0][0] == "Summary":
        parts.append(table_html(*tables[0]))
        rest = tables[1:]
    else:
        rest = tables
    for key, png in plots.items():
        if png:
            b64 = base64.b64encode(png).decode()
            parts.append(f"<h2>{TITLES[key]}</h2><img class='plot' id='plot-{key}' alt='{TITLES[key]}' "
                         f"src='data:image/png;base64,{b64}'>")
    for t in rest:
        parts.append(table_html(*t))
    parts.append(
        "<script>window.addEventListener('load',()=>{const imgs=[...document.querySelectorAll('img.plot')];"
        "imgs.forEach(i=>{i.dataset.naturalWidth=i.naturalWidth;i.dataset.naturalHeight=i.naturalHeight;"
        "i.dataset.decoded=(i.complete&&i.naturalWidth>0)?'yes':'no';});"
        "document.body.dataset.plotsLoaded=imgs.filter(i=>i.complete&&i.naturalWidth>0).length;"
        "document.body.dataset.plotsTotal=imgs.length;});</script>"
    )
    parts.append(f"<h2>report.json</h2><details><summary>raw data</summary><pre>"
                 f"{esc(json.dumps(data, indent=1, default=str)[:300000])}</pre></details>")
    parts.append("</body></html>")
    atomic_write_text(out / "report.html", "\n".join(parts))
    written["md"] = out / "report.md"
    written["html"] = out / "report.html"
    return written
