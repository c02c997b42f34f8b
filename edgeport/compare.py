"""`edgeport compare MODEL...`: run several zoo models through the same pipeline (`edgeport run`, one folder per model
under --out, finished steps reused) and compare what a reader of the ShuffleNetV2 paper wants to see: MACs and
accuracy (where a trained checkpoint and labelled samples exist; top-1 agreement with torch otherwise) against
*measured* latency, per artifact and target. Writes DIR/compare.json, compare.md and compare.png (two scatters:
MACs vs latency, accuracy vs latency)."""
from __future__ import annotations

import json
from pathlib import Path

from edgeport.errors import EdgeportError
from edgeport.console import EXIT_OK, EXIT_TARGET_FAILED, plain, step_progress
from edgeport.files import atomic_write_bytes, atomic_write_text, check_out_dir, prepare_out_dir
from edgeport.options import BenchOptions, ConvertOptions, SourceOptions, ValidateOptions
from edgeport.render import artifact_color, png_bytes, pyplot
from edgeport.report import load_report

LATENCY_ARTIFACTS = ("tflite_int8", "tflite_fp32", "onnx", "onnx_int8", "tflite_fp16", "tflite_dynamic")
COLUMNS = ("model", "params", "macs", "artifact", "engine", "target", "threads", "p50_ms", "p90_ms", "cosine",
           "top1_agreement", "accuracy")


def collect(model_dirs: dict[str, Path]) -> list[dict]:
    """One row per (model, artifact, target, threads) with a measured latency."""
    rows = []
    for name, d in model_dirs.items():
        rep = load_report(d).data
        acc = (rep.get("accuracy") or {}).get("artifacts") or {}
        for e in rep.get("latency", []):
            if e.get("p50_ms") is None or e["artifact"] not in LATENCY_ARTIFACTS:
                continue
            par = (rep.get("parity") or {}).get(e["artifact"], {})
            rows.append({
                "model": name, "params": rep["model"].get("params"), "macs": rep["model"].get("macs"),
                "artifact": e["artifact"], "engine": e["engine"], "target": e["target"], "threads": e["threads"],
                "p50_ms": e["p50_ms"], "p90_ms": e["p90_ms"], "cosine": par.get("cosine_mean"),
                "top1_agreement": par.get("top1_agreement"), "accuracy": (acc.get(e["artifact"]) or {}).get("accuracy"),
            })
    return rows


def plot(rows: list[dict]) -> bytes:
    """Left: MACs vs measured p50 (one series per artifact/target/threads); right: accuracy (or top-1 agreement
    with torch) vs p50. Points of one model are labelled."""
    
    plt = pyplot()
    groups = list(dict.fromkeys((r["artifact"], r["target"], r["threads"]) for r in rows))
    use_acc = any(r["accuracy"] is not None for r in rows)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.6))
    markers = "osD^v<>p*"
    configs = list(dict.fromkeys((r["target"], r["threads"]) for r in rows))
    label_group = next((g for g in groups if g[0] == "tflite_int8"), groups[0])
    all_y: list[float] = []
    for gi, g in enumerate(groups):
        pts = [r for r in rows if (r["artifact"], r["target"], r["threads"]) == g]
        m = markers[configs.index((g[1], g[2])) % len(markers)]
        label = f"{g[0]} · {g[1]} · {g[2]}T"
        ax1.scatter([r["macs"] / 1e6 for r in pts], [r["p50_ms"] for r in pts], marker=m, s=55,
                    color=artifact_color(g[0], gi), edgecolor="#222", linewidth=0.5, label=label, zorder=3)
        ys = [(r, r["accuracy"] if use_acc else r["top1_agreement"]) for r in pts]
        ys = [(r, y) for r, y in ys if y is not None]
        ax2.scatter([r["p50_ms"] for r, _ in ys], [100 * y for _, y in ys], marker=m, s=55, color=artifact_color(g[0], gi),
                    edgecolor="#222", linewidth=0.5, label=label, zorder=3)
        if g == label_group:  # one labelled series keeps the plot readable; the table has every number
            for r in pts:
                ax1.annotate(r["model"], (r["macs"] / 1e6, r["p50_ms"]), fontsize=7, textcoords="offset points",
                             xytext=(4, 3))
            for i, (r, y) in enumerate(sorted(ys, key=lambda t: t[0]["p50_ms"])):
                ax2.annotate(r["model"], (r["p50_ms"], 100 * y), fontsize=7, textcoords="offset points",
                             xytext=(4, 6 if i % 2 == 0 else -12))
        all_y += [100 * y for _, y in ys]
    ax1.set_xlabel("MACs (millions, counted from the ONNX graph)")
    ax1.set_ylabel("measured p50 latency (ms)")
    ax1.set_title("MACs vs measured latency", fontsize=10)
    ax2.set_xlabel("measured p50 latency (ms)")
    ax2.set_ylabel("accuracy on labelled held-out samples (%)" if use_acc else "top-1 agreement with torch (%)")
    ax2.set_title(("Accuracy" if use_acc else "Agreement") + " vs measured latency", fontsize=10)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.margins(0.15)
    ax1.set_ylim(bottom=0)
    ax2.set_xlim(left=0)
    if all_y:
        pad = max(1.0, 0.3 * (max(all_y) - min(all_y)))
        ax2.set_ylim(max(0.0, min(all_y) - pad), min(101.0, max(all_y) + pad))
    ax1.legend(fontsize=7)
    fig.tight_layout()
    return png_bytes(fig)


def _cell(c: str, v) -> str:
    if v is None:
        return "-"
    if c in ("params", "macs"):
        return f"{v / 1e6:.2f}M"
    if c in ("top1_agreement", "accuracy"):
        return f"{100 * v:.1f}%"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _sorted(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["target"], r["threads"], r["artifact"], r["p50_ms"]))


def write(out: Path, rows: list[dict]) -> dict[str, Path]:
    atomic_write_text(out / "compare.json", json.dumps(rows, indent=1) + "\n")
    png = plot(rows) if rows else None
    if png:
        atomic_write_bytes(out / "compare.png", png)
    lines = ["# edgeport compare", "", "| " + " | ".join(COLUMNS) + " | ms per 100M MACs |",
             "|" + "---|" * (len(COLUMNS) + 1)]
    for r in _sorted(rows):
        per = f"{r['p50_ms'] / (r['macs'] / 1e8):.3g}" if r.get("macs") else "-"
        lines.append("| " + " | ".join(_cell(c, r[c]) for c in COLUMNS) + f" | {per} |")
    if png:
        lines += ["", "![MACs and accuracy vs measured latency](compare.png)"]
    atomic_write_text(out / "compare.md", "\n".join(lines) + "\n")
    return {"json": out / "compare.json", "md": out / "compare.md", **({"png": out / "compare.png"} if png else {})}


def _checkpoints(items: list[str], models: list[str]) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or name not in models:
            raise EdgeportError(f"--checkpoint {item!r}: expected MODEL=PATH with MODEL among {', '.join(models)}")
        out[name] = path
    return out


def cmd_compare(args, con) -> int:
    from rich.table import Table

    from edgeport.models import get_model_entry
    from edgeport.run import preflight, run_pipeline

    for name in args.models:  # unknown names fail before any work
        get_model_entry(name)
    if len(set(args.models)) != len(args.models):
        raise EdgeportError("a model is listed twice")
    ckpts = _checkpoints(args.checkpoint, args.models)
    check_out_dir(args.out)
    convert, bench = ConvertOptions.from_args(args), BenchOptions.from_args(args)
    validate = ValidateOptions.from_args(args, layers=False)
    dirs, failed = {}, False
    out = None
    for name in args.models:
        con.print(f"[bold]{plain(name)}[/bold]")
        source = SourceOptions(source=name, checkpoint=ckpts.get(name))
        if out is None:  # the first model's inputs are checked before the compare folder exists
            preflight(source=source, convert=convert, bench=bench, out_dir=args.out)
            out = prepare_out_dir(args.out)
        rep, _ = run_pipeline(
            source=source, out_dir=out / name, convert=convert, validate=validate, bench=bench, force=args.force,
            on_event=step_progress(con, total=(4 if convert.precisions else 3) + len(bench.targets)), console=con,
        )
        failed |= bool(rep.get("failures"))
        dirs[name] = out / name
    rows = collect(dirs)
    paths = write(out, rows)
    table = Table(title=f"edgeport compare: {len(args.models)} models")
    for col in ("model", "params", "MACs", "artifact", "target", "thr", "p50 ms", "p90 ms", "top-1 agree", "accuracy",
                "ms per 100M MACs"):  # names never cut: the model column keeps its width, other cells wrap
        table.add_column(col, justify="left" if col in ("model", "artifact", "target") else "right", overflow="fold",
                         min_width=max((len(r["model"]) for r in rows), default=0) if col == "model" else None)
    for r in _sorted(rows):
        table.add_row(r["model"], _cell("params", r["params"]), _cell("macs", r["macs"]), r["artifact"], r["target"],
                      str(r["threads"]), f"{r['p50_ms']:.3g}", f"{r['p90_ms']:.3g}",
                      _cell("top1_agreement", r["top1_agreement"]), _cell("accuracy", r["accuracy"]),
                      f"{r['p50_ms'] / (r['macs'] / 1e8):.3g}" if r.get("macs") else "-")
    con.print(table)
    con.print("written: " + ", ".join(plain(p) for p in paths.values()))
    con.emit_json({"out": str(out), "rows": rows, "files": {k: str(v) for k, v in paths.items()}})
    return EXIT_TARGET_FAILED if failed else EXIT_OK


def add_compare_parser(sub) -> None:
    p = sub.add_parser("compare", help="run several zoo models and compare MACs/accuracy vs measured latency")
    p.add_argument("models", nargs="+", help="zoo model names")
    p.add_argument("--checkpoint", action="append", default=[], metavar="MODEL=PATH",
                   help="trained weights for one of the models (repeatable); others run with random init")
    p.add_argument("--out", default="runs/compare", help="output folder (one sub-folder per model)")
    ConvertOptions.add_arguments(p)
    ValidateOptions.add_arguments(p)
    BenchOptions.add_arguments(p, runs=30, warmup=5)
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_compare)
