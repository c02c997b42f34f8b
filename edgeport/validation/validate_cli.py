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

from .thresholds import parse_threshold_overrides


def add_validate_parser(sub) -> None:
    p = sub.add_parser("validate", help="compare every artifact in DIR against torch on held-out samples")
    p.add_argument("dir", help="output directory of `edgeport export`")
    p.add_argument("--layers", action="store_true", help="per-layer INT8 SQNR attribution (TFLite int8 vs ONNX)")
    p.add_argument("--labels", help="image folder with one subfolder per class: accuracy per artifact")
    p.add_argument("--threshold", action="append", default=[], metavar="[ARTIFACT.]METRIC=VALUE",
                   help="override a threshold, e.g. tflite_int8.top1_agreement=0.9 (repeatable)")
    p.add_argument("--samples", help="validation source (default: the held-out split of the calibration source)")
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


PARITY_COLUMNS = ("max_abs_err", "mean_abs_err", "cosine_mean", "sqnr_db", "top1_agreement", "top5_overlap")


def print_result(result, con) -> None:
    """The parity table (one row per artifact, with its check), accuracy, worst INT8 layers and notes."""
    from rich.table import Table

    if result.random_weights:  # said once, first: every number below is about random weights
        con.print(f"[yellow]{plain(random_weights_line([result.random_weights]))}[/yellow]")
    if not result.parity:
        con.print("nothing to compare: the only artifact is the reference itself")
    ref = next(iter(result.parity.values()), {}).get("reference", "onnx")
    t = Table(title=f"parity vs {ref} on {result.samples['count']} "
                    f"held-out samples ({result.samples['source']}, seed {result.samples['seed']})")
    t.add_column("artifact")
    for c in PARITY_COLUMNS:
        t.add_column(c, justify="right")
    t.add_column("check")
    for name, m in result.parity.items():
        fails = [f for f in result.failures if f[0] == name]
        check = ("[red]FAIL " + ", ".join(f[1] for f in fails) + "[/red]") if fails else (
            "[green]ok[/green]" if m["thresholds_enforced"] else "[yellow]not enforced[/yellow]")
        t.add_row(name, *[fmt(m[c]) for c in PARITY_COLUMNS], check)
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
        name, metric, value, th = result.failures[0]
        more = f"; {len(result.failures) - 1} more failing checks" if len(result.failures) > 1 else ""
        bound = ">=" if HIGHER_IS_BETTER[metric] else "<="
        raise ParityError(name, metric, value, th, detail=f"{bound} required{more}")
    return 0
