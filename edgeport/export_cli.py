"""`edgeport models` and `edgeport export`: the zoo table, and SOURCE -> verified ONNX (+ TFLite / ORT INT8)."""
from __future__ import annotations

from edgeport.console import EXIT_OK, Console, plain, random_weights_line, step_progress
from edgeport.options import ConvertOptions, SourceOptions, add_source_argument
from edgeport.report import Report, float_op_lines, new_report, xnnpack_lines


# ---- models -----------------------------------------------------------------------------------------------------
def cmd_models(args, con: Console) -> int:
    from rich.table import Table

    from edgeport.calibration.trained import trained_weights
    from edgeport.export.zoo_stats import zoo_table

    trained = trained_weights()
    rows = [{**r, "trained_weights": (lambda w: w and {"data": w.data, "checkpoint": w.checkpoint,
                                                       "accuracy": w.accuracy})(trained.get(r["name"]))}
            for r in zoo_table(family=args.family)]
    if con.json_mode:
        con.emit_json(rows)
        return EXIT_OK
    table = Table(title=f"edgeport zoo: {len(rows)} models")
    for col in ("name", "family", "input", "params", "MACs", "paper MACs", "Δ MACs", "weights"):
        table.add_column(col, justify="right" if col not in ("name", "family", "weights") else "left")
    for r in rows:
        pub = r["published_macs"]
        delta = f"{(r['macs'] / pub - 1) * 100:+.1f}%" if pub else "-"
        w = trained.get(r["name"])
        table.add_row(
            r["name"], r["family"], "x".join(map(str, r["input_shape"])), f"{r['params']:,}",
            f"{r['macs'] / 1e6:,.1f}M", f"{pub / 1e6:,.1f}M" if pub else "-", delta,
            f"[green]{plain(w.label)}[/green]" if w else "[dim]random[/dim]",
        )
    con.print(table)
    con.print("weights: without --checkpoint every zoo model has random weights (its numbers say nothing about a "
              "trained model); trained ones edgeport has:")
    for w in (trained[r["name"]] for r in rows if r["name"] in trained):
        con.print(f"  {plain(w.model)}: {plain(w.label)}; {plain(w.usage)}")
    return EXIT_OK


def add_models_parser(sub) -> None:
    p = sub.add_parser("models", help="list the zoo with params and MACs",
                       description="List the zoo: params, MACs counted from the ONNX graph, the paper's MACs.")
    p.add_argument("--family", help="only this family or families starting with it (e.g. mobilenet, shufflenet)")
    p.set_defaults(func=cmd_models)


# ---- export -----------------------------------------------------------------------------------------------------
def resolve_from_options(opts: SourceOptions):
    """SourceOptions -> LoadedSource (or a typed error)."""
    from edgeport.export.checkpoint import resolve_source

    return resolve_source(opts.source, checkpoint=opts.checkpoint, builder_args=opts.builder_kwargs(),
                          input_shape=opts.input_shape, trust=opts.trust, contract=opts.input_contract(),
                          input_shapes=opts.named_input_shapes(), pretrained=opts.pretrained)


def cmd_export(args, con: Console) -> int:
    from edgeport.files import check_out_dir, out_dir_lock, prepare_out_dir

    src_opts = SourceOptions.from_args(args)
    conv = ConvertOptions.from_args(args)
    check_out_dir(args.out)  # fail fast on a bad --out before any work (creates nothing)
    if conv.precisions:
        from edgeport.run import check_conversion_options

        check_conversion_options(conv)  # bad option values fail before the model is loaded
    progress = step_progress(con, total=1 + bool(conv.precisions))
    try:
        source = resolve_from_options(src_opts)
        con.log(f"source: {source.kind} {source.name}")
        if str(source.kind) == "zoo" and source.checkpoint is None:
            con.print(f"[yellow]{plain(random_weights_line([source.name]))}[/yellow]")
        if conv.precisions:  # bad precisions, unsupported ops and unusable calibration data fail before model.onnx
            from edgeport.run import preflight_conversion

            preflight_conversion(source, options=conv, console=con)
        out = prepare_out_dir(args.out)  # every input is checked: only now does DIR get created or touched
        from edgeport.export.onnx_step import export_step

        with out_dir_lock(out, what="this export"):
            report = new_report(out)
            progress("export: torch -> verified ONNX", "start", "")
            exported = export_step(source=source, out_dir=out, exporter=src_opts.exporter, opset=src_opts.opset,
                                   dynamic_batch=args.dynamic_batch, on_stage=progress.stage)
            report.apply(exported).save()
            progress("export: torch -> verified ONNX", "done", f"{exported.seconds:.1f}s")
            if conv.precisions:
                from edgeport.export.tflite_step import tflite_step

                step = f"convert: {', '.join(conv.precisions)}"
                progress(step, "start", "")
                converted = tflite_step(onnx_path=exported.onnx_path, source=source, options=conv, console=con,
                                        on_stage=progress.stage)
                report.apply(converted).save()
                progress(step, "done", f"{sum(converted.conversion.values()):.1f}s")
    finally:
        progress.close()
    print_export_summary(report, con)
    con.emit_json(report.data)
    return EXIT_OK


def print_export_summary(report: Report, con: Console) -> None:
    from rich.table import Table

    model = report.get("model", {})
    con.print(
        f"[bold]{plain(model.get('name'))}[/bold]  input {model.get('input_shape')}  params {model.get('params') or 0:,}  "
        f"MACs {(model.get('macs') or 0) / 1e6:,.1f}M"
    )
    table = Table(title=f"artifacts in {plain(report.out_dir)}")
    for col in ("artifact", "file", "ops", "parity vs torch"):
        table.add_column(col)
    for name in report.artifact_names():
        ops = report.get("ops", {}).get(name, {})
        par = report.get("parity", {}).get(name)
        ptxt = f"cos {par['cosine_mean']:.6f}, max abs {par['max_abs_err']:.2e}" if par else "-"
        table.add_row(name, report.artifact_file(name), f"{sum(ops.values())} ({len(ops)} types)", ptxt)
    con.print(table)
    info = report.get("artifact_info", {}) or {}
    if (info.get("onnx") or {}).get("exporter_note"):
        con.print(plain(info["onnx"]["exporter_note"]))
    for line in float_op_lines(info):
        con.print(plain(line))
    for line in xnnpack_lines(info):
        con.print(plain(line))
    sp = next((i.get("shuffle_pass_stats") for i in info.values() if (i.get("shuffle_pass_stats") or {}).get("found")),
              None)
    if sp:
        pieces = f"pieces as {sp.get('piece_form', 'slices')}" + (
            f" ({sp['convs_split']} convs split into the pieces their readers take)" if sp["convs_split"] else "")
        con.print(f"shuffle pass (TFLite): {sp['found']} channel shuffles: {sp['absorbed']} absorbed into the weights, "
                  f"{sp['kept']} kept as tiled transposes, {sp['densified']} densified; {pieces}; "
                  f"{sp['slices']} Slice / {sp['concats']} Concat copies")


def add_export_parser(sub) -> None:
    p = sub.add_parser("export", help="checkpoint -> verified ONNX (+ TFLite with --precision)")
    add_source_argument(p)
    SourceOptions.add_arguments(p)
    p.add_argument("--dynamic-batch", action="store_true", help="export the ONNX model with a dynamic batch dimension")
    p.add_argument("--out", required=True, help="output directory")
    ConvertOptions.add_arguments(p, precisions=())
    p.set_defaults(func=cmd_export)


__all__ = ["add_export_parser", "add_models_parser", "cmd_export", "cmd_models", "print_export_summary",
           "resolve_from_options"]
