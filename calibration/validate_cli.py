"""`edgeport validate` argument parser. Kept apart from validate.py so that building the CLI imports neither torch
nor TensorFlow; the command itself imports them when it runs."""
from __future__ import annotations


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
    p.add_argument("--trust", action="store_true", help="allow pickled checkpoints to run code when rebuilding")
    p.set_defaults(func=_cmd_validate)


def _cmd_validate(args, con) -> int:
    from .validate import cmd_validate

    return cmd_validate(args, con)
