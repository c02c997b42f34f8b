"""`edgeport validate`: the argument parser, the printed tables and the exit code.

The parser is built without importing torch or TensorFlow; the command imports validate.py (which does) only when
it runs.
"""
from __future__ import annotations

import math

from edgeport.console import plain, random_weights_line
from edgeport.errors import ParityError
from edgeport.metrics import HIGHER_IS_BETTER
from edgeport.recommend import refresh_recommendation
from edgeport.report import noise_floor_lines

from .thresholds import parse_threshold_overrides


def add_validate_parser(sub) -> None:
    p = sub.add_parser("validate", help="compare every artifact in DIR against torch on held-out samples")
    p.add_argument("dir", help="output directory of `edgeport export`")
    p.add_argument("--layers", action="store_true", help="per-layer INT8 SQNR attribution (TFLite int8 vs ONNX)")
    p.add_argument("--labels", help="image folder with one subfolder per class: accuracy per artifact")
    p.add_argument("--threshold", action="append", default=[], metavar="[ARTIFACT.]METRIC=VALUE",
                   help="override a threshold, e.g. tflite_int8.top1_agreement=0.9 (repeatable)")
    p.add_argument("--samples", help="validation source: default, digits, a folder, or an .npy/.npz (several-input "
                                     "models: an .npz keyed by input name); default: the held-out split of the "
                                     "calibration source")
    p.add_argument("--num-validation", type=int, default=None, help="number of held-out samples")
    p.add_argument("--seed", type=int, default=None, help="crop seed (default: the calibration seed)")
    p.add_argument("--trust-checkpoint", "--trust", dest="trust", action="store_true",
                   help="allow checkpoints that carry code (pickled modules, TorchScript) when rebuilding "
                        "(--trust is the old spelling)")
    p.set_defaults(func=cmd_validate)


def fmt(v) -> str:
    if isinstance(v, float):
        if math.isinf(v):
            return "inf"
        return f"{v:.3e}" if (abs(v) < 1e-3 and v != 0) else f"{v:.4f}"
    return str(v)


# the terminal table (report.json holds every metric): one row per artifact, or per output of a several-output model
PARITY_COLUMNS = ("artifact", "output", "cosine", "SQNR dB", "max err", "task", "check")


def _task(entry: dict) -> str:
    from .outputs import task_check

    found = task_check(entry)
    return f"{found[0]} {found[1]:.3f}" if found else "-"


def _db(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.1f}"


def _check(name: str, m: dict, fails: list) -> str:
    if fails:
        return "[red]FAIL " + ", ".join(dict.fromkeys(f.metric for f in fails)) + "[/red]"
    return "[green]ok[/green]" if m["thresholds_enforced"] else "[yellow]not enforced[/yellow]"


def parity_rows(result) -> list[tuple[str, ...]]:
    """The table's rows: per artifact one row naming its output (the worst one, summary values, when the entry has
    no per-output list), or one row per output for a several-output model."""
    rows = []
    for name, m in result.parity.items():
        outs = m.get("outputs") or [{**m, "name": m.get("worst_output", "-")}]
        for k, o in enumerate(outs):
            fails = [f for f in result.failures if f.artifact == name and (f.output in (None, o["name"]))]
            rows.append((name if k == 0 else "", str(o["name"]), f"{o['cosine_mean']:.6f}", _db(o["sqnr_db"]),
                         f"{o['max_abs_err']:.1e}", _task(o), _check(name, m, fails)))
    return rows


def print_result(result, con) -> None:
    """The parity table (one row per artifact and output, with its check), accuracy, worst INT8 layers and notes.
    It fits 80 columns: report.json holds every metric (mean_abs_err, cosine_min, top5_overlap, ...)."""
    from rich.table import Table

    if result.random_weights:  # said once, first: every number below is about random weights
        con.print(f"[yellow]{plain(random_weights_line([result.random_weights]))}[/yellow]")
    if not result.parity:
        con.print("nothing to compare: the only artifact is the reference itself")
    ref = next(iter(result.parity.values()), {}).get("reference", "onnx")
    t = Table(title=f"parity vs {ref} on {result.samples['count']} "
                    f"held-out samples ({result.samples['source']}, seed {result.samples['seed']})", pad_edge=False)
    for c in PARITY_COLUMNS:
        t.add_column(c, justify="right" if c in ("cosine", "SQNR dB", "max err") else "left",
                     overflow="fold", no_wrap=c in ("artifact", "cosine", "SQNR dB", "max err", "task"),
                     min_width=8 if c == "check" else None)
    for row in parity_rows(result):
        t.add_row(*row)
    con.print(t)
    if result.accuracy:
        a = Table(title=f"accuracy on {result.accuracy['samples']['count']} labelled samples")
        for c in ("model", "accuracy", "drop (points)"):
            a.add_column(c)
        for k, v in result.accuracy["artifacts"].items():
            a.add_row(k, f"{100 * v['accuracy']:.2f}%", f"{v['drop_points']:+.2f}")
        con.print(a)
    if result.layers:
        lt = Table(title=f"worst INT8 layers (TFLite int8 vs float ONNX, {result.layers['n_layers']} layers mapped)")
        for c in ("depth", "torch module", "onnx tensor", "node", "op", "sqnr_db"):
            lt.add_column(c)
        for r in result.layers["worst"]:
            lt.add_row(str(r["depth"]), r.get("module") or "-", r["onnx_tensor"], r["node"], r["op_type"],
                       f"{r['sqnr_db']:.2f}")
        con.print(lt)
        if result.layers.get("plot"):
            con.print(f"SQNR along depth: {result.layers['plot']}")
    for line in noise_floor_lines(result.parity):
        con.print(plain(line))
    for n in result.notes:
        con.print(f"[yellow]note:[/yellow] {n}")


def cmd_validate(args, con) -> int:
    from .validate import validate_dir  # torch, TensorFlow: only when the command runs

    result = validate_dir(
        args.dir, samples=args.samples, num=args.num_validation, seed=args.seed, labels=args.labels,
        thresholds=parse_threshold_overrides(args.threshold), layers=args.layers, trust=args.trust,
    )
    print_result(result, con)
    refresh_recommendation(args.dir)  # `run`'s recommendation, redone with these parity results
    con.emit_json({"parity": result.parity, "accuracy": result.accuracy, "layers": result.layers})
    if result.failures:
        f = result.failures[0]
        more = f"; {len(result.failures) - 1} more failing checks" if len(result.failures) > 1 else ""
        bound = ">=" if HIGHER_IS_BETTER[f.metric] else "<="
        where = f.artifact if f.output is None else f"{f.artifact} output {f.output!r}"
        raise ParityError(where, f.metric, f.value, f.threshold, detail=f"{bound} required{more}")
    return 0
