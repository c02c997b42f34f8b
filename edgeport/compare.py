"""`edgeport compare SOURCE...`: run several models (zoo names, file.py:factory, .onnx, TorchScript) through the same
pipeline (`edgeport run`, one folder per model under --out, finished steps reused) and answer what a reader of the
ShuffleNetV2 paper wants to know on their own device: which model is fastest, *measured*, at an accuracy bar
(--min-agreement / --min-accuracy). Shows MACs and accuracy (where a trained checkpoint and labelled samples exist;
top-1 agreement with the reference otherwise) against measured latency, per artifact and target, then the models
ranked per target and the recommendation (edgeport/recommend.py). Writes DIR/compare.json, compare.md,
compare_recommendation.json and compare.png (two scatters: MACs vs latency, accuracy vs latency)."""
from __future__ import annotations

import json
from pathlib import Path

from edgeport.errors import EdgeportError
from edgeport.console import EXIT_OK, EXIT_TARGET_FAILED, plain, random_weights_line, step_progress
from edgeport.files import atomic_write_bytes, atomic_write_text, check_out_dir, prepare_out_dir
from edgeport.options import BenchOptions, ConvertOptions, DecisionOptions, SourceOptions, ValidateOptions
from edgeport.recommend import AccuracyBar, Recommendation, candidates, decide
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


def write(out: Path, rows: list[dict], decision: list[str] = ()) -> dict[str, Path]:
    atomic_write_text(out / "compare.json", json.dumps(rows, indent=1) + "\n")
    png = plot(rows) if rows else None
    if png:
        atomic_write_bytes(out / "compare.png", png)
    lines = ["# edgeport compare", ""]
    if decision:
        lines += ["## Recommendation", "", "```", *decision, "```", ""]
    lines += ["| " + " | ".join(COLUMNS) + " | ms per 100M MACs |",
             "|" + "---|" * (len(COLUMNS) + 1)]
    for r in _sorted(rows):
        per = f"{r['p50_ms'] / (r['macs'] / 1e8):.3g}" if r.get("macs") else "-"
        lines.append("| " + " | ".join(_cell(c, r[c]) for c in COLUMNS) + f" | {per} |")
    if png:
        lines += ["", "![MACs and accuracy vs measured latency](compare.png)"]
    atomic_write_text(out / "compare.md", "\n".join(lines) + "\n")
    return {"json": out / "compare.json", "md": out / "compare.md", **({"png": out / "compare.png"} if png else {})}


def source_label(source: str) -> str:
    """The folder and row name of a SOURCE: a zoo name as is; file.py:factory -> file_factory; a path -> its stem."""
    path, sep, factory = source.rpartition(":")
    if sep and path.endswith(".py"):
        return f"{Path(path).stem}_{factory}"
    if sep and path in ("torchvision", "timm"):  # a library source: timm:NAME -> timm_NAME
        return f"{path}_{factory}"
    return Path(source).stem if ("/" in source or "." in source) else source


def labels(sources: list[str]) -> dict[str, str]:
    """label -> SOURCE, unique (a second model.onnx from another folder becomes model-2)."""
    out: dict[str, str] = {}
    for src in sources:
        base = label = source_label(src)
        i = 2
        while label in out:
            label, i = f"{base}-{i}", i + 1
        out[label] = src
    return out


def _checkpoints(items: list[str], named: dict[str, str]) -> dict[str, str]:
    """--checkpoint MODEL=PATH (MODEL: a label or the SOURCE as given) -> label -> PATH."""
    by_source = {src: label for label, src in named.items()}
    out = {}
    for item in items or []:
        name, sep, path = item.partition("=")
        label = name if name in named else by_source.get(name)
        if not sep or label is None:
            raise EdgeportError(f"--checkpoint {item!r}: expected MODEL=PATH with MODEL among {', '.join(named)}")
        out[label] = path
    return out


def ranking(out: Path, model_dirs: dict[str, Path], bar: AccuracyBar) -> Recommendation:
    """Models ranked per target by measured p50 at the accuracy bar; written to DIR/compare_recommendation.json."""
    cands = [c for name, d in model_dirs.items() for c in candidates(load_report(d).data, model=name, bar=bar)]
    decision = decide(cands, bar=bar)
    doc = {**decision.to_json(), "models_ranked": {t.target: [c.to_json() for c in t.models_ranked()]
                                                   for t in decision.targets}}
    atomic_write_text(out / "compare_recommendation.json", json.dumps(doc, indent=1) + "\n")
    return decision


def ranking_lines(decision: Recommendation) -> list[str]:
    """Per target: the models fastest first (each at its fastest passing configuration), then the decision."""
    lines = []
    for t in decision.targets:
        lines.append(f"{t.target}: models by p50 at the bar")
        ranked = t.models_ranked()
        for i, c in enumerate(ranked, 1):
            rel = f", {c.p50_ms / ranked[0].p50_ms:.2f}x the fastest" if i > 1 and ranked[0].p50_ms > 0 else ""
            lines.append(f"  {i}. {c.label}: p50 {c.p50_ms:.3g} ms{rel} ({c.check.words})")
        lines += t.lines()
    return lines or decision.lines()


def cmd_compare(args, con) -> int:
    from rich.table import Table

    from edgeport.run import check_validation_samples, preflight, run_pipeline

    if len(set(args.models)) != len(args.models):
        raise EdgeportError("a model is listed twice")
    named = labels(args.models)
    ckpts = _checkpoints(args.checkpoint, named)
    check_out_dir(args.out)
    convert, bench = ConvertOptions.from_args(args), BenchOptions.from_args(args)
    validate = ValidateOptions.from_args(args, layers=False)
    check_validation_samples(validate.samples)  # before the compare folder exists
    decision_opts = DecisionOptions.from_args(args)
    bar = AccuracyBar(min_agreement=decision_opts.min_agreement, min_accuracy=decision_opts.min_accuracy)
    sources = {name: SourceOptions.from_args(args, source=src, checkpoint=ckpts.get(name))
               for name, src in named.items()}
    for source in sources.values():  # every SOURCE is checked before the compare folder exists
        preflight(source=source, convert=convert, bench=bench, out_dir=args.out)
    out = prepare_out_dir(args.out)
    dirs, failed = {}, False
    for name, source in sources.items():
        con.print(f"[bold]{plain(name)}[/bold]")
        rep, _ = run_pipeline(
            source=source, out_dir=out / name, convert=convert, validate=validate, bench=bench, force=args.force,
            on_event=step_progress(con, total=(4 if convert.precisions else 3) + len(bench.targets)), console=con,
        )
        failed |= bool(rep.get("failures"))
        dirs[name] = out / name
    rows = collect(dirs)
    decision = ranking(out, dirs, bar)
    decision_text = ranking_lines(decision)
    paths = write(out, rows, decision_text)
    paths["recommendation"] = out / "compare_recommendation.json"
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
    random = [name for name, d in dirs.items() if has_random_weights(d)]
    if random:  # once, under the table whose agreement and accuracy columns it qualifies
        con.print(f"[yellow]{plain(random_weights_line(random))}[/yellow]")
    con.print("[bold]recommendation[/bold] (fastest p50 whose accuracy checks pass"
              + (f"; bar: {_bar_text(bar)}" if _bar_text(bar) else "") + ")")
    for line in decision_text:
        con.print(plain(line))
    con.print("written: " + ", ".join(plain(p) for p in paths.values()))
    con.emit_json({"out": str(out), "rows": rows, "recommendation": decision.to_json(),
                   "files": {k: str(v) for k, v in paths.items()}})
    return EXIT_TARGET_FAILED if failed else EXIT_OK


def has_random_weights(out_dir: Path) -> bool:
    """DIR's model is a zoo model exported without a checkpoint."""
    src = load_report(out_dir).get("source") or {}
    return src.get("kind") == "zoo" and not src.get("checkpoint")


def _bar_text(bar: AccuracyBar) -> str:
    parts = [f"top-1 agreement >= {100 * bar.min_agreement:g}%" if bar.min_agreement is not None else "",
             f"accuracy >= {100 * bar.min_accuracy:g}%" if bar.min_accuracy is not None else ""]
    return ", ".join(p for p in parts if p)


def add_compare_parser(sub) -> None:
    p = sub.add_parser("compare", help="run several models, rank them by measured latency at an accuracy bar")
    p.add_argument("models", nargs="+", metavar="SOURCE",
                   help="zoo model name, path/to/file.py:factory, model.onnx or a TorchScript archive")
    p.add_argument("--checkpoint", action="append", default=[], metavar="MODEL=PATH",
                   help="trained weights for one of the models, MODEL being the SOURCE or its folder name "
                        "(repeatable); others run with random init")
    p.add_argument("--out", default="runs/compare", help="output folder (one sub-folder per model)")
    SourceOptions.add_arguments(p, exclude=("checkpoint",))  # --input-shape, --arg, ... apply to every SOURCE
    ConvertOptions.add_arguments(p)
    ValidateOptions.add_arguments(p)
    BenchOptions.add_arguments(p, runs=30, warmup=5)
    DecisionOptions.add_arguments(p)
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_compare)
