"""`edgeport` command line. Exit codes: 0 ok; 1 a check failed (parity threshold); 2 bad input; 3 a target failed;
130 interrupted. Errors print one line `edgeport: error: ...` on stderr, never a traceback (`--verbose` adds it)."""
from __future__ import annotations

import argparse
import json
import sys
import traceback

from edgeport.errors import EdgeportError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_TARGET_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class Console:
    """Output policy shared by all commands: rich tables unless --quiet; machine output with --json."""

    def __init__(self, *, quiet: bool = False, verbose: bool = False, json_mode: bool = False):
        from rich.console import Console as RichConsole

        self.quiet, self.verbose, self.json_mode = quiet, verbose, json_mode
        # Human output goes to stderr in --json mode so stdout stays parseable.
        import os

        width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "200"))
        self.rich = RichConsole(stderr=json_mode, highlight=False, soft_wrap=False, width=width)

    def print(self, *args, **kwargs) -> None:
        if not self.quiet:
            self.rich.print(*args, **kwargs)

    def log(self, msg: str) -> None:
        if self.verbose:
            self.rich.print(f"[dim]{msg}[/dim]")

    def emit_json(self, obj) -> None:
        if self.json_mode:
            sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def parse_shape(text: str) -> tuple[int, ...]:
    from edgeport.errors import InputShapeError

    try:
        return tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise InputShapeError(f"--input-shape {text!r}: expected integers like 3,224,224") from None


# ---- models -----------------------------------------------------------------------------------------------------
def _models_rows(names: list[str]) -> list[dict]:
    from edgeport.export.zoo_stats import zoo_stats

    return [zoo_stats(n) for n in names]


def cmd_models(args, con: Console) -> int:
    from rich.table import Table

    from edgeport.models import model_names

    names = model_names(family=args.family)
    rows = _models_rows(names)
    if con.json_mode:
        con.emit_json(rows)
        return EXIT_OK
    table = Table(title=f"edgeport zoo: {len(rows)} models")
    for col in ("name", "family", "input", "params", "MACs", "paper MACs", "Δ MACs"):
        table.add_column(col, justify="right" if col not in ("name", "family") else "left")
    for r in rows:
        pub = r["published_macs"]
        delta = f"{(r['macs'] / pub - 1) * 100:+.1f}%" if pub else "-"
        table.add_row(
            r["name"], r["family"], "x".join(map(str, r["input_shape"])), f"{r['params']:,}",
            f"{r['macs'] / 1e6:,.1f}M", f"{pub / 1e6:,.1f}M" if pub else "-", delta,
        )
    con.print(table)
    return EXIT_OK


# ---- export -----------------------------------------------------------------------------------------------------
def add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="zoo model name, path/to/file.py:factory, model.onnx, or a TorchScript/.pt module")
    p.add_argument("--checkpoint", help="state dict (.pt/.pth, nested or module.-prefixed), TorchScript, or pickled module")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="builder keyword argument (repeatable)")
    p.add_argument("--input-shape", type=parse_shape, metavar="C,H,W", help="input shape (required for user models)")
    p.add_argument("--trust-checkpoint", action="store_true", help="allow checkpoints that need arbitrary code to unpickle")
    p.add_argument("--exporter", choices=["dynamo", "legacy"], default="dynamo", help="torch ONNX exporter (default dynamo)")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--dynamic-batch", action="store_true", help="export the ONNX model with a dynamic batch dimension")


def resolve_from_args(args):
    from edgeport.export.checkpoint import parse_builder_args, resolve_source

    return resolve_source(
        args.source, checkpoint=args.checkpoint, builder_args=parse_builder_args(args.arg),
        input_shape=args.input_shape, trust=args.trust_checkpoint,
    )


def cmd_export(args, con: Console) -> int:
    from edgeport.export.pipeline import export_step
    from edgeport.report import prepare_out_dir

    prepare_out_dir(args.out)  # fail fast on a bad --out before any work
    source = resolve_from_args(args)
    con.log(f"source: {source.kind} {source.name}")
    precisions = [p for p in (args.precision or "").split(",") if p and p != "onnx"]
    if precisions:  # bad precisions, unsupported ops and unusable calibration data fail before model.onnx is written
        from edgeport.run import preflight_conversion

        preflight_conversion(source, calibration=args.calibration, precisions=precisions, io_dtype=args.io,
                             calibration_method=args.calibration_method)
    report = export_step(
        source=source, out_dir=args.out, exporter=args.exporter, opset=args.opset, dynamic_batch=args.dynamic_batch
    )
    if precisions:
        from edgeport.export.tflite_step import tflite_step

        report = tflite_step(
            out_dir=args.out, source=source, precisions=precisions, io_dtype=args.io, input_layout=args.input_layout,
            calibration=args.calibration, num_calibration=args.num_calibration,
            calibration_method=args.calibration_method, shuffle_piece_form=args.shuffle_pieces, console=con,
        )
    _print_export_summary(report, con)
    con.emit_json(report.data)
    return EXIT_OK


def _print_export_summary(report, con: Console) -> None:
    from rich.table import Table

    model = report.get("model", {})
    con.print(
        f"[bold]{model.get('name')}[/bold]  input {model.get('input_shape')}  params {model.get('params') or 0:,}  "
        f"MACs {(model.get('macs') or 0) / 1e6:,.1f}M"
    )
    table = Table(title=f"artifacts in {report.path.parent}")
    for col in ("artifact", "file", "ops", "parity vs torch"):
        table.add_column(col)
    for name, fname in report.get("artifacts", {}).items():
        ops = report.get("ops", {}).get(name, {})
        par = report.get("parity", {}).get(name)
        ptxt = f"cos {par['cosine']:.6f}, max abs {par['max_abs_err']:.2e}" if par else "-"
        table.add_row(name, fname, f"{sum(ops.values())} ({len(ops)} types)", ptxt)
    con.print(table)
    info = report.get("artifact_info", {}) or {}
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
    add_source_args(p)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--precision", default="", help="comma list of fp32,int8,fp16,dynamic (TFLite artifacts)")
    p.add_argument("--io", choices=["int8", "uint8", "float"], default="int8", help="INT8 model input/output type")
    p.add_argument("--input-layout", choices=["nhwc", "nchw"], default="nhwc", help="TFLite input layout")
    p.add_argument("--calibration", default="default", help="calibration data: default | folder | .npy/.npz")
    p.add_argument("--num-calibration", type=int, default=64, help="number of calibration samples")
    p.add_argument("--calibration-method", choices=["minmax", "percentile", "entropy"], default="minmax",
                   help="activation ranges: minmax (default), percentile (outlier clipping), entropy (ORT INT8 only)")
    p.add_argument("--shuffle-pieces", choices=["slices", "convs"], default="slices",
                   help="ShuffleNetV2-style absorbed shuffles: read channel pieces as slices (default) or compute "
                        "each piece with its own conv (faster INT8 on some CPUs: time both on your target)")
    p.set_defaults(func=cmd_export)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeport", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="more detail; tracebacks on errors")
    from edgeport import __version__

    parser.add_argument("--version", action="version", version=f"edgeport {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("models", help="list the zoo with params and MACs")
    p.add_argument("--family")
    p.set_defaults(func=cmd_models)
    add_export_parser(sub)
    for add in _plugin_parsers():
        add(sub)
    for sp in sub.choices.values():  # global flags are accepted after the subcommand too
        sp.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sp.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sp.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def _plugin_parsers():
    """Subcommands implemented next to their subsystems (validate, bench, run, compare, guidelines)."""
    from edgeport import commands

    return commands.PARSERS


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Global flags may also follow the subcommand.
    con = Console(quiet=args.quiet, verbose=args.verbose, json_mode=args.json)
    try:
        return args.func(args, con)
    except EdgeportError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"edgeport: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("edgeport: interrupted; finished artifacts are kept, the next run resumes", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
