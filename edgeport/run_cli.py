"""CLI for `edgeport run` (progress per step, summary table, exit codes: 0 ok, 1 a validation threshold missed,
2 bad input, 3 a target failed (the other targets' results are kept), 130 interrupted)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path


def _csv(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in _csv(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _progress(con, total: int | None = None):
    """An on_event callback: a spinner while a step runs (terminals only), then one line per step with its status
    and time, numbered [i/total]."""
    state = {"status": None, "i": 0, "t0": None}

    def on_event(step: str, status: str, detail: str) -> None:
        if con.quiet:
            return
        if status == "key":
            con.log(f"{step}: key {detail}")
            return
        if status == "start":
            state["i"] += 1
            n = f"[{state['i']}/{total}]" if total else ""
            state["t0"] = time.perf_counter()
            if con.rich.is_terminal:
                state["status"] = con.rich.status(f"{n} [bold]{step}[/bold] ...", spinner="dots")
                state["status"].start()
            else:
                con.print(f"{n} {step} ...")
            return
        if status == "reused":
            state["i"] += 1
        if state["status"] is not None:
            state["status"].stop()
            state["status"] = None
        n = f"[{state['i']}/{total}]" if total else ""
        mark = {"done": "[green]done[/green]", "reused": "[cyan]reused[/cyan]", "failed": "[red]failed[/red]"}[status]
        con.print(f"{n} {step:<30} {mark} {detail}")

    def close() -> None:  # an exception or Ctrl-C mid-step: stop the spinner before the error is printed
        if state["status"] is not None:
            state["status"].stop()
            state["status"] = None

    on_event.close = close
    return on_event


def summary_table(report, title: str):
    """One row per artifact: size, ops (layout transposes), parity vs torch, accuracy, p50/p90 per target."""
    from rich.table import Table

    from edgeport.render import summary_rows

    cols, rows = summary_rows(report.data, report.path.parent)
    t = Table(title=title)
    for col in cols:
        t.add_column(col.replace(" · ", "\n", 1) if col.startswith("p50") else col,
                     justify="left" if col in ("artifact", "file") else "right")
    for r in rows:
        t.add_row(*r)
    return t


def cmd_run(args, con) -> int:
    from edgeport.cli import EXIT_CHECK_FAILED, EXIT_OK, EXIT_TARGET_FAILED
    from edgeport.export.checkpoint import parse_builder_args
    from edgeport.run import DEFAULT_MODEL, failed_checks, run_pipeline

    name = args.source or DEFAULT_MODEL
    out = Path(args.out or Path("runs") / Path(name).stem.replace(":", "_"))
    targets = _csv(args.targets)
    con.print(f"[bold]edgeport run[/bold] {name}{' (bundled default, real ImageNet checkpoint)' if not args.source else ''}"
              f" -> {out}")
    t0 = time.perf_counter()
    precisions = _csv(args.precision)
    progress = _progress(con, total=(4 if precisions else 3) + len(targets))
    try:
        report, results = run_pipeline(
            source=args.source, out_dir=out, checkpoint=args.checkpoint, builder_args=parse_builder_args(args.arg),
            input_shape=args.input_shape, trust=args.trust_checkpoint, exporter=args.exporter, opset=args.opset,
            precisions=precisions, io_dtype=args.io, input_layout=args.input_layout, calibration=args.calibration,
            num_calibration=args.num_calibration, num_validation=args.num_validation, layers=not args.no_layers,
            targets=targets, threads=args.threads, runs=args.runs, warmup=args.warmup, timeout=args.timeout,
            force=args.force, on_event=progress, console=con,
        )
    finally:
        progress.close()
    seconds = time.perf_counter() - t0
    con.print(summary_table(report, f"{report.get('model', {}).get('name')}: {out}"))
    failures = report.get("failures", {})
    for step, msg in failures.items():
        con.print(f"[red]{step} failed:[/red] {msg}")
    checks = failed_checks(report)
    for art in checks:
        par = report.get("parity", {})[art]
        missed = [f"{m} {par.get(m):.4g} (needs {t:g})" for m, t in par.get("thresholds", {}).items()
                  if par.get(m) is not None and m in par and not _passes(m, par[m], t)]
        con.print(f"[red]{art} missed its threshold:[/red] {', '.join(missed)}")
    reused = sum(r.status == "reused" for r in results)
    con.print(f"{len(results)} steps ({reused} reused) in {seconds:.1f}s. "
              f"report: {out / 'report.html'}  {out / 'report.md'}  {out / 'report.json'}")
    con.emit_json({"out": str(out), "seconds": round(seconds, 3),
                   "steps": [{"name": r.name, "status": r.status, "seconds": round(r.seconds, 3), "detail": r.detail}
                             for r in results],
                   "report": report.data})
    if failures:
        return EXIT_TARGET_FAILED
    return EXIT_CHECK_FAILED if checks else EXIT_OK


def _passes(metric: str, value: float, threshold: float) -> bool:
    from edgeport.calibration.metrics import passes

    return passes(metric, value, threshold)


def add_run_parser(sub) -> None:
    from edgeport.cli import add_source_args

    p = sub.add_parser("run", help="the main job: export, convert, validate, benchmark, report")
    add_source_args(p)
    p.set_defaults(source=None)
    src_action = next(a for a in p._actions if a.dest == "source")
    src_action.nargs, src_action.required, src_action.default = "?", False, None
    src_action.help = "zoo model name, file.py:factory, model.onnx or a TorchScript archive (default: " \
                      "efficientnet_lite0 with its real ImageNet checkpoint)"
    p.add_argument("--out", help="output directory (default runs/<model>)")
    p.add_argument("--precision", default="fp32,int8", help="TFLite precisions (default fp32,int8; ORT INT8 with int8)")
    p.add_argument("--io", choices=["int8", "uint8", "float"], default="int8")
    p.add_argument("--input-layout", choices=["nhwc", "nchw"], default="nhwc")
    p.add_argument("--calibration", default="default", help="default | digits | folder | .npy/.npz")
    p.add_argument("--num-calibration", type=int, default=None)
    p.add_argument("--num-validation", type=int, default=None)
    p.add_argument("--no-layers", action="store_true", help="skip the per-layer INT8 attribution")
    p.add_argument("--targets", default="local", help="comma list: local, ssh://user@host[:port], adb://SERIAL")
    p.add_argument("--threads", type=_ints, default=(1,), help="comma list of thread counts (default 1)")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per remote benchmark before it is killed")
    p.add_argument("--force", action="store_true", help="redo every step even if a finished one matches")
    p.set_defaults(func=cmd_run)
