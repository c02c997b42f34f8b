"""`edgeport compare MODEL...`: run several zoo models through the same pipeline and compare what a reader of the
ShuffleNetV2 paper wants to see: MACs (and accuracy where a trained checkpoint exists) against *measured* latency,
per artifact and target. Writes DIR/compare.json, compare.md and compare.png (a MACs-vs-latency scatter)."""
from __future__ import annotations

import json
from pathlib import Path

from edgeport.report import atomic_write_bytes, atomic_write_text

LATENCY_ARTIFACTS = ("tflite_int8", "tflite_fp32", "onnx", "onnx_int8")


def collect(model_dirs: dict[str, Path]) -> list[dict]:
    rows = []
    for name, d in model_dirs.items():
        rep = json.loads((d / "report.json").read_text())
        for e in rep.get("latency", []):
            if e.get("p50_ms") is None or e["artifact"] not in LATENCY_ARTIFACTS:
                continue
            par = rep.get("parity", {}).get(e["artifact"], {})
            acc = rep.get("accuracy", {}).get(e["artifact"], {})
            rows.append({
                "model": name, "params": rep["model"]["params"], "macs": rep["model"]["macs"],
                "artifact": e["artifact"], "engine": e["engine"], "target": e["target"], "threads": e["threads"],
                "p50_ms": e["p50_ms"], "p90_ms": e["p90_ms"], "cosine": par.get("cosine"),
                "top1_agreement": par.get("top1_agreement"), "accuracy": acc.get("accuracy"),
            })
    return rows


def plot(rows: list[dict]) -> bytes:
    from edgeport.render import _fig, _png

    plt = _fig()
    groups = sorted({(r["artifact"], r["target"], r["threads"]) for r in rows})
    fig, ax = plt.subplots(figsize=(7.5, 5))
    markers = "osD^v<>p*"
    for gi, g in enumerate(groups):
        pts = [r for r in rows if (r["artifact"], r["target"], r["threads"]) == g]
        ax.scatter([r["macs"] / 1e6 for r in pts], [r["p50_ms"] for r in pts], marker=markers[gi % len(markers)],
                   s=50, label=f"{g[0]} · {g[1]} · {g[2]}T")
        for r in pts:
            ax.annotate(r["model"], (r["macs"] / 1e6, r["p50_ms"]), fontsize=6, textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel("MACs (millions, counted from the ONNX graph)")
    ax.set_ylabel("measured p50 latency (ms)")
    ax.set_title("FLOPs are not latency: MACs vs measured latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def write(out: Path, rows: list[dict]) -> dict[str, Path]:
    atomic_write_text(out / "compare.json", json.dumps(rows, indent=1))
    png = plot(rows) if rows else None
    if png:
        atomic_write_bytes(out / "compare.png", png)
    cols = ["model", "params", "macs", "artifact", "engine", "target", "threads", "p50_ms", "p90_ms", "cosine",
            "top1_agreement", "accuracy"]
    lines = ["# edgeport compare", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in sorted(rows, key=lambda r: (r["artifact"], r["target"], r["threads"], r["p50_ms"])):
        vals = []
        for c in cols:
            v = r[c]
            vals.append("-" if v is None else f"{v / 1e6:.1f}M" if c in ("params", "macs") else
                        f"{v:.4g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(vals) + " |")
    if png:
        lines += ["", "![MACs vs latency](compare.png)"]
    atomic_write_text(out / "compare.md", "\n".join(lines) + "\n")
    return {"json": out / "compare.json", "md": out / "compare.md", **({"png": out / "compare.png"} if png else {})}


def cmd_compare(args, con) -> int:
    from rich.table import Table

    from edgeport.cli import EXIT_OK, EXIT_TARGET_FAILED
    from edgeport.report import prepare_out_dir
    from edgeport.run import run_pipeline
    from edgeport.run_cli import _csv, _progress

    out = prepare_out_dir(args.out)
    dirs, failed = {}, False
    for name in args.models:
        con.print(f"[bold]{name}[/bold]")
        rep, _ = run_pipeline(
            source=name, out_dir=out / name, precisions=_csv(args.precision), calibration=args.calibration,
            num_calibration=args.num_calibration, num_validation=args.num_validation, layers=False,
            targets=_csv(args.targets), threads=args.threads, runs=args.runs, warmup=args.warmup, force=args.force,
            on_event=_progress(con), console=con,
        )
        failed |= bool(rep.get("failures"))
        dirs[name] = out / name
    rows = collect(dirs)
    paths = write(out, rows)
    table = Table(title="edgeport compare")
    for col in ("model", "MACs", "artifact", "target", "threads", "p50 ms", "p90 ms", "ms per 100M MACs"):
        table.add_column(col)
    for r in sorted(rows, key=lambda r: (r["artifact"], r["target"], r["p50_ms"])):
        table.add_row(r["model"], f"{r['macs'] / 1e6:.0f}M", r["artifact"], r["target"], str(r["threads"]),
                      f"{r['p50_ms']:.2f}", f"{r['p90_ms']:.2f}", f"{r['p50_ms'] / (r['macs'] / 1e8):.2f}")
    con.print(table)
    con.print("written: " + ", ".join(str(p) for p in paths.values()))
    con.emit_json(rows)
    return EXIT_TARGET_FAILED if failed else EXIT_OK


def add_compare_parser(sub) -> None:
    from edgeport.run_cli import _ints

    p = sub.add_parser("compare", help="run several zoo models and compare MACs/accuracy vs measured latency")
    p.add_argument("models", nargs="+", help="zoo model names")
    p.add_argument("--out", default="runs/compare")
    p.add_argument("--precision", default="fp32,int8")
    p.add_argument("--calibration", default="default")
    p.add_argument("--num-calibration", type=int, default=None)
    p.add_argument("--num-validation", type=int, default=None)
    p.add_argument("--targets", default="local")
    p.add_argument("--threads", type=_ints, default=(1,))
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_compare)
