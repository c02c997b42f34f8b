"""CLI for `edgeport run` (progress per step, summary table, exit codes: 0 ok, 1 a validation threshold missed,
2 bad input, 3 a target failed (the other targets' results are kept), 130 interrupted)."""
from __future__ import annotations

import time
from pathlib import Path

from edgeport.console import EXIT_CHECK_FAILED, EXIT_OK, EXIT_TARGET_FAILED, plain, random_weights_line, step_progress
from edgeport.metrics import passes
from edgeport.options import (BenchOptions, ConvertOptions, SourceOptions, ValidateOptions,
                              add_source_argument)
from edgeport.recommend import Recommendation, recommend
from edgeport.report import float_op_lines, noise_floor_lines, xnnpack_lines


# Columns dropped, in this order, when the table does not fit the terminal (report.md/html keep them all).
DROPPABLE = ("file", "ops (transposes)", "KB", "SQNR dB")


def summary_table(report, title: str, *, width: int | None = None):
    """One row per artifact: size, ops (layout transposes), parity vs torch, accuracy, p50/p90 per target. On a
    terminal narrower than the table, the DROPPABLE columns go first; names and numbers are never cut."""
    from rich.console import Console as RichConsole
    from rich.table import Table

    from edgeport.render import summary_rows

    cols, rows = summary_rows(report.data, report.path.parent)
    keep = list(range(len(cols)))
    measure = RichConsole(width=10_000)
    for drop in (None, *DROPPABLE):
        if drop in cols and cols.index(drop) in keep:
            keep.remove(cols.index(drop))
        t = Table(title=title)
        for i in keep:
            col = cols[i]
            t.add_column(col.replace(" · ", "\n", 1) if col.startswith("p50") else col,
                         justify="left" if col in ("artifact", "file") else "right", no_wrap=True)
        for r in rows:
            t.add_row(*(r[i] for i in keep))
        if width is None or measure.measure(t).maximum <= width:
            break
    return t


def print_recommendation(con, decision: Recommendation) -> None:
    """The decision per target: green when validated, yellow when the winner's thresholds were not enforced."""
    con.print("[bold]recommendation[/bold] (fastest p50 whose accuracy checks pass)")
    for t in decision.targets or [None]:
        colour = "green" if t is not None and t.validated else "yellow"
        for i, line in enumerate(t.lines() if t is not None else decision.lines()):
            con.print(f"[{colour}]{plain(line)}[/{colour}]" if i == 0 else plain(line))


def cmd_run(args, con) -> int:
    from edgeport.run import DEFAULT_MODEL, failed_checks, run_pipeline

    name = args.source or DEFAULT_MODEL
    out = Path(args.out or Path("runs") / Path(name).stem.replace(":", "_"))
    bench = BenchOptions.from_args(args)
    convert = ConvertOptions.from_args(args)
    con.print(f"[bold]edgeport run[/bold] {plain(name)}"
              f"{' (bundled default, real ImageNet checkpoint)' if not args.source else ''} -> {plain(out)}")
    t0 = time.perf_counter()
    progress = step_progress(con, total=(4 if convert.precisions else 3) + len(bench.targets))
    try:
        report, results = run_pipeline(
            source=SourceOptions.from_args(args), out_dir=out, convert=convert,
            validate=ValidateOptions.from_args(args, layers=not args.no_layers), bench=bench, force=args.force,
            on_event=progress, console=con,
        )
    finally:
        progress.close()
    seconds = time.perf_counter() - t0
    con.print(summary_table(report, f"{plain(report.get('model', {}).get('name'))}: {plain(out)}",
                            width=con.rich.width))
    src = report.get("source") or {}
    if src.get("kind") == "zoo" and not src.get("checkpoint"):  # once, under the table it qualifies
        con.print(f"[yellow]{plain(random_weights_line([src.get('name')]))}[/yellow]")
    for line in float_op_lines(report.get("artifact_info", {}) or {}):
        con.print(plain(line))
    for line in xnnpack_lines(report.get("artifact_info", {}) or {}):
        con.print(plain(line))
    for line in noise_floor_lines(report.get("parity", {}) or {}):
        con.print(plain(line))
    failures = report.get("failures", {})
    for step, msg in failures.items():
        con.print(f"[red]{plain(step)} failed:[/red] {plain(msg)}")
    checks = failed_checks(report)
    for art in checks:
        par = report.get("parity", {})[art]
        missed = [f"{m} {par.get(m):.4g} (needs {t:g})" for m, t in par.get("thresholds", {}).items()
                  if par.get(m) is not None and m in par and not passes(m, par[m], t)]
        con.print(f"[red]{art} missed its threshold:[/red] {', '.join(missed)}")
    print_recommendation(con, recommend(report.data))
    reused = sum(r.status == "reused" for r in results)
    con.print(f"{len(results)} steps ({reused} reused) in {seconds:.1f}s. "
              f"report: {plain(out / 'report.html')}  {plain(out / 'report.md')}  {plain(out / 'report.json')}")
    con.emit_json({"out": str(out), "seconds": round(seconds, 3),
                   "steps": [{"name": r.name, "status": r.status, "seconds": round(r.seconds, 3), "detail": r.detail}
                             for r in results],
                   "report": report.data})
    if failures:
        return EXIT_TARGET_FAILED
    return EXIT_CHECK_FAILED if checks else EXIT_OK


def add_run_parser(sub) -> None:
    p = sub.add_parser("run", help="the main job: export, convert, validate, benchmark, report")
    add_source_argument(p, optional=True, help="zoo model name, file.py:factory, model.onnx or a TorchScript "
                                               "archive (default: efficientnet_lite0 with its real ImageNet "
                                               "checkpoint)")
    SourceOptions.add_arguments(p)
    p.add_argument("--out", help="output directory (default runs/<model>)")
    ConvertOptions.add_arguments(p)
    ValidateOptions.add_arguments(p)
    p.add_argument("--no-layers", action="store_true", help="skip the per-layer INT8 attribution")
    BenchOptions.add_arguments(p)
    p.add_argument("--force", action="store_true", help="redo every step even if a finished one matches")
    p.set_defaults(func=cmd_run)
