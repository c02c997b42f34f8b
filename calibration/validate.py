"""`edgeport validate DIR`: every artifact in DIR against torch on held-out samples.

    edgeport validate out/ [--layers] [--labels FOLDER] [--threshold tflite_int8.top1_agreement=0.9 ...]

Reference: the torch model rebuilt from report.json `source` (zoo name + checkpoint); for ONNX sources (no torch
model) the exported ONNX is the reference. Samples: the VALIDATION split of the calibration source (held-out
photos for `default`, the held-out split for `digits`; `default` for folders/arrays), never overlapping the
calibration samples (checked). Writes report.json `parity`, `accuracy` (labelled samples), `layers` (--layers) and
`calibration.validation`; prints a table; raises ParityError (exit 1) naming the first failing artifact + metric.

Thresholds per precision come from the model spec's `Tolerances`: fp32 (ONNX, TFLite fp32): max_abs_rel <= fp32_rel
and cosine >= fp32_cosine; fp16: cosine >= fp16_cosine; int8 (TFLite int8/dynamic, ORT int8): cosine >= int8_cosine,
top1_agreement >= int8_top1, sqnr_db >= int8_sqnr_db. INT8 thresholds are not enforced for random-init zoo models
(no checkpoint): quantizing random weights says nothing about a trained model; explicit --threshold values always are.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeport.errors import CalibrationError, EdgeportError, ParityError
from edgeport.models import Tolerances

from .metrics import HIGHER_IS_BETTER, accuracy, parity_metrics, passes
from .runners import run_artifact, run_torch
from .samples import SampleSet, Split
from .sources import load_samples

# artifact key in report.json -> precision class for thresholds
ARTIFACT_PRECISION = {
    "onnx": "fp32", "tflite_fp32": "fp32", "tflite_fp16": "fp16", "onnx_fp16": "fp16",
    "tflite_dynamic": "int8", "tflite_int8": "int8", "onnx_int8": "int8",
}
ARTIFACT_ORDER = tuple(ARTIFACT_PRECISION)


def default_thresholds(precision: str, tol: Tolerances, artifact: str | None = None) -> dict[str, float]:
    if precision == "fp32":
        return {"max_abs_rel": tol.fp32_rel, "cosine": tol.fp32_cosine}
    if precision == "fp16":
        return {"cosine": tol.fp16_cosine}
    th = {"cosine": tol.int8_cosine, "top1_agreement": tol.int8_top1, "sqnr_db": tol.int8_sqnr_db}
    if artifact == "onnx_int8":
        if tol.ort_int8_top1 is not None:
            th["top1_agreement"] = tol.ort_int8_top1
        if tol.ort_int8_sqnr_db is not None:
            th["sqnr_db"] = tol.ort_int8_sqnr_db
    return th


def parse_threshold_overrides(items: list[str] | None) -> dict[str | None, dict[str, float]]:
    """`metric=value` (every artifact) or `artifact.metric=value` -> {artifact or None: {metric: value}}."""
    out: dict[str | None, dict[str, float]] = {}
    for item in items or []:
        key, sep, val = item.partition("=")
        art, dot, metric = key.strip().rpartition(".")
        try:
            value = float(val)
        except ValueError:
            value = None
        if not sep or value is None or metric not in HIGHER_IS_BETTER:
            raise EdgeportError(
                f"--threshold {item!r}: expected [artifact.]metric=value with a metric among "
                f"{', '.join(sorted(HIGHER_IS_BETTER))}"
            )
        if art and art not in ARTIFACT_PRECISION:
            raise EdgeportError(f"--threshold {item!r}: unknown artifact {art!r}; valid: {', '.join(ARTIFACT_ORDER)}")
        out.setdefault(art or None, {})[metric] = value
    return out


@dataclass
class ValidationResult:
    parity: dict[str, dict]
    thresholds: dict[str, dict[str, float]]
    failures: list[tuple[str, str, float, float]]
    samples: dict
    accuracy: dict | None = None
    layers: dict | None = None
    notes: list[str] = field(default_factory=list)


def _rebuild_reference(report, *, trust: bool):
    """(torch module or None, spec). Zoo and factory sources are rebuilt with their checkpoint."""
    from edgeport.export.checkpoint import resolve_source

    src = report.get("source") or {}
    model = report.get("model") or {}
    shape = tuple(model.get("input_shape", [])[1:]) or None
    kind = src.get("kind")
    if kind == "onnx":
        return None, resolve_source(src["onnx_path"] if Path(src.get("onnx_path") or "").is_file()
                                    else str(Path(report.path.parent) / report.get("artifacts")["onnx"]),
                                    input_shape=shape).spec
    name = src.get("name") or model.get("name")
    source_str = name if kind == "zoo" else (src.get("checkpoint") if kind in ("torchscript", "module") else None)
    if source_str is None:
        raise EdgeportError(f"report.json source kind {kind!r} cannot be rebuilt for validation")
    from edgeport.models import get_spec

    spec_shape = None
    if kind == "zoo" and shape and tuple(get_spec(name).input_shape) != shape:
        spec_shape = shape
    loaded = resolve_source(
        source_str, checkpoint=src.get("checkpoint") if kind == "zoo" else None,
        builder_args=src.get("builder_args") or {}, input_shape=spec_shape if kind == "zoo" else shape, trust=trust,
    )
    return loaded.module, loaded.spec


def _calibration_info(report) -> dict:
    cal = report.get("calibration") or {}
    return cal.get("calibration", cal) if isinstance(cal, dict) else {}


def choose_validation_samples(
    report, *, spec, samples: str | None, num: int | None, seed: int | None, input_name: str = "input"
) -> tuple[SampleSet, SampleSet | None]:
    """(validation set, the calibration set it was checked against or None). Overlap -> CalibrationError."""
    cal = _calibration_info(report)
    cal_source = cal.get("source")
    if samples is None:
        samples = cal_source if cal_source in ("default", "digits") else "default"
    if seed is None:
        seed = cal.get("seed") if cal.get("seed") is not None else 0
    shape = tuple((report.get("model") or {}).get("input_shape", [0, *spec.input_shape])[1:])
    held = load_samples(samples, model_spec=spec, input_shape=shape, input_name=input_name, split=Split.VALIDATION,
                        num=num, seed=seed, labelled=True)
    calib = None
    if cal_source and cal.get("count"):
        try:
            calib = load_samples(cal_source, model_spec=spec, input_shape=shape, input_name=input_name,
                                 split=Split.CALIBRATION, num=int(cal["count"]), seed=int(cal.get("seed") or 0))
        except CalibrationError:
            calib = None  # the calibration data moved; nothing to compare against
    if calib is not None:
        shared = set(calib.ids) & set(held.ids)
        if shared:
            raise CalibrationError(
                f"{len(shared)} validation samples are also calibration samples (e.g. {sorted(shared)[0]})",
                hint="validate on other data (--samples)",
            )
    return held, calib


def validate_dir(
    out_dir: str | Path,
    *,
    samples: str | None = None,
    num: int | None = None,
    seed: int | None = None,
    labels: str | None = None,
    thresholds: dict[str | None, dict[str, float]] | None = None,
    layers: bool = False,
    trust: bool = False,
    save: bool = True,
) -> ValidationResult:
    """Validate every artifact in `out_dir` (see the module docstring). Returns the result; does not raise on
    missed thresholds (the CLI does); writes report.json when `save`."""
    from edgeport.report import Report

    out = Path(out_dir)
    report = Report.load(out, create=False)
    artifacts = {k: v for k, v in (report.get("artifacts") or {}).items() if k in ARTIFACT_PRECISION}
    if not artifacts:
        raise EdgeportError(f"{out}/report.json lists no artifacts; run `edgeport export` first")
    module, spec = _rebuild_reference(report, trust=trust)
    overrides = thresholds or {}
    src = report.get("source") or {}
    random_init = src.get("kind") == "zoo" and not src.get("checkpoint")
    notes = []
    if random_init:
        # A zoo model without a checkpoint has random weights that cannot be rebuilt: a new torch model would be
        # another random network. The exported ONNX (checked against torch at export: report.json parity.onnx)
        # is the reference instead.
        module = None
        notes.append("random-init weights: INT8 thresholds reported, not enforced (give --checkpoint to enforce)")
        notes.append("random-init weights cannot be rebuilt: the exported ONNX (verified against torch at export) "
                     "is the reference")
    held, _ = choose_validation_samples(report, spec=spec, samples=samples, num=num, seed=seed)
    x = held.array()
    if module is not None:
        ref, ref_name = run_torch(module, x), "torch"
    else:
        ref, ref_name = run_artifact(out / artifacts["onnx"], x), "onnx"
    parity, used, failures, outputs = {}, {}, [], {}
    # the reference itself is not compared with itself (its export-time check stays in report.json)
    for name in [a for a in ARTIFACT_ORDER if a in artifacts and not (ref_name == "onnx" and a == "onnx")]:
        y = run_artifact(out / artifacts[name], x)
        outputs[name] = y
        m = parity_metrics(ref, y, reference_name=ref_name)
        prec = ARTIFACT_PRECISION[name]
        th = default_thresholds(prec, spec.tolerances, name)
        enforced = not (prec == "int8" and random_init)
        explicit = {**overrides.get(None, {}), **overrides.get(name, {})}
        if not enforced:
            th = {}
        th.update(explicit)
        m["thresholds"] = th
        m["thresholds_enforced"] = enforced or bool(explicit)
        m["precision"] = prec
        for metric, t in th.items():
            if metric not in m:
                continue
            if not passes(metric, m[metric], t):
                failures.append((name, metric, m[metric], t))
        m["passed"] = not any(f[0] == name for f in failures)
        parity[name] = m
        used[name] = th
    acc = None
    labelled = held
    if labels is not None:
        shape = tuple((report.get("model") or {}).get("input_shape")[1:])
        labelled = load_samples(labels, model_spec=spec, input_shape=shape, split=Split.VALIDATION, labelled=True)
        if labelled.labels is None:
            raise CalibrationError(f"--labels {labels}: no labels found (use one subfolder per class)")
    if labelled.labels is not None:
        lx = x if labelled is held else labelled.array()
        rows = {ref_name: accuracy(ref if labelled is held else (run_torch(module, lx) if module is not None
                                                                   else run_artifact(out / artifacts["onnx"], lx)),
                                   labelled.labels)}
        for name in outputs:
            y = outputs[name] if labelled is held else run_artifact(out / artifacts[name], lx)
            rows[name] = accuracy(y, labelled.labels)
        base = rows[ref_name]
        acc = {"samples": labelled.info(), "reference": ref_name,
               "artifacts": {k: {"accuracy": v, "drop_points": round(100.0 * (base - v), 4)} for k, v in rows.items()}}
    layer_report = None
    if layers:
        from .layers import attribute_layers

        if "tflite_int8" not in artifacts or "onnx" not in artifacts:
            raise EdgeportError("--layers needs tflite_int8 and onnx artifacts in DIR")
        layer_report = attribute_layers(
            onnx_path=out / artifacts["onnx"], tflite_path=out / artifacts["tflite_int8"], samples=x[:16],
            input_layout=(report.get("artifact_info") or {}).get("tflite_int8", {}).get("layout", "nhwc"),
            plot_path=out / "layers_sqnr.png", title=(report.get("model") or {}).get("name"),
            shuffle_pass=(report.get("artifact_info") or {}).get("tflite_int8", {}).get("shuffle_pass_stats"),
        )
    result = ValidationResult(parity=parity, thresholds=used, failures=failures, samples=held.info(), accuracy=acc,
                              layers=layer_report, notes=notes)
    if save:
        report.merge("parity", parity)
        cal = report.get("calibration") or {}
        cal["validation"] = held.info()
        report.set("calibration", cal)
        if acc is not None:
            report.set("accuracy", acc)
        if layer_report is not None:
            report.set("layers", layer_report)
        report.save()
    return result


# ---- CLI -----------------------------------------------------------------------------------------------------

def _fmt(v) -> str:
    if isinstance(v, float):
        if math.isinf(v):
            return "inf"
        return f"{v:.3e}" if (abs(v) < 1e-3 and v != 0) else f"{v:.4f}"
    return str(v)


def print_result(result: ValidationResult, con) -> None:
    from rich.table import Table

    if not result.parity:
        con.print("nothing to compare: the only artifact is the reference itself")
    ref = next(iter(result.parity.values()), {}).get("reference", "onnx")
    t = Table(title=f"parity vs {ref} on {result.samples['count']} "
                    f"held-out samples ({result.samples['source']}, seed {result.samples['seed']})")
    cols = ("max_abs_err", "mean_abs_err", "cosine", "sqnr_db", "top1_agreement", "top5_overlap")
    t.add_column("artifact")
    for c in cols:
        t.add_column(c, justify="right")
    t.add_column("check")
    for name, m in result.parity.items():
        fails = [f for f in result.failures if f[0] == name]
        check = ("[red]FAIL " + ", ".join(f[1] for f in fails) + "[/red]") if fails else (
            "[green]ok[/green]" if m["thresholds_enforced"] else "[yellow]not enforced[/yellow]")
        t.add_row(name, *[_fmt(m[c]) for c in cols], check)
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
        for c in ("depth", "onnx tensor", "node", "op", "sqnr_db"):
            lt.add_column(c)
        for r in result.layers["worst"]:
            lt.add_row(str(r["depth"]), r["onnx_tensor"], r["node"], r["op_type"], f"{r['sqnr_db']:.2f}")
        con.print(lt)
        if result.layers.get("plot"):
            con.print(f"SQNR along depth: {result.layers['plot']}")
    for n in result.notes:
        con.print(f"[yellow]note:[/yellow] {n}")


def cmd_validate(args, con) -> int:
    result = validate_dir(
        args.dir, samples=args.samples, num=args.num_validation, seed=args.seed, labels=args.labels,
        thresholds=parse_threshold_overrides(args.threshold), layers=args.layers, trust=args.trust,
    )
    print_result(result, con)
    con.emit_json({"parity": result.parity, "accuracy": result.accuracy, "layers": result.layers})
    if result.failures:
        name, metric, value, th = result.failures[0]
        more = f"; {len(result.failures) - 1} more failing checks" if len(result.failures) > 1 else ""
        raise ParityError(name, metric, value, th, detail=f"{'>=' if HIGHER_IS_BETTER[metric] else '<='} required{more}")
    return 0
