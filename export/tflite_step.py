"""The conversion step: DIR/model.onnx -> TFLite artifacts (+ the ONNX Runtime INT8 model) -> ConvertStepResult."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgeport.export.checkpoint import LoadedSource
from edgeport.native import captured_native_output, passthrough
from edgeport.options import ConvertOptions
from edgeport.report import ArtifactEntry, ArtifactKind

ORT_INT8_NAME = ArtifactKind.ONNX_INT8.file_name


@dataclass(frozen=True)
class ConvertStepResult:
    """The artifacts one conversion wrote into DIR, with what the report says about each."""

    artifacts: dict[ArtifactKind, ArtifactEntry]
    info: dict[str, dict]
    ops: dict[str, dict]
    conversion: dict[str, float]
    calibration: dict | None = None
    shuffle_pass: dict = field(default_factory=dict)

    def report_sections(self) -> dict:
        sections = {"artifacts": self.artifacts, "artifact_info": self.info, "ops": self.ops,
                    "conversion": self.conversion}
        if self.calibration is not None:
            sections["calibration"] = self.calibration
        return sections


def tflite_step(*, onnx_path: str | Path, source: LoadedSource, options: ConvertOptions,
                calibration_seed: int | None = None, console=None,
                on_stage: Callable[[str, str, str], None] | None = None) -> ConvertStepResult:
    """Convert `onnx_path` (DIR/model.onnx, written by the export step) to `model_<precision>.tflite` in the same
    folder for each precision; with int8, also `model_int8.onnx` (QDQ, static calibration). Calibration samples come
    from the calibration split of `options.calibration`, preprocessed by the model's spec. `on_stage(stage, status,
    detail)` hears each stage start ("start") and end ("done", its elapsed time): progress for the terminal."""
    from edgeport.calibration import DEFAULT_SEED, CalibrationMethod
    from edgeport.export.tflite import Precision, convert
    from edgeport.calibration.samples import ort_calibration_method, tflite_calibration_method
    from edgeport.export.tflite.gpu_readiness import gpu_readiness

    onnx_path = Path(onnx_path)
    out = onnx_path.parent
    precs = [Precision(p) for p in options.precisions]
    calib = None
    seed = DEFAULT_SEED if calibration_seed is None else calibration_seed
    stage = _announcer(on_stage)
    if Precision.INT8 in precs:
        t = time.perf_counter()
        stage("calibration samples", "start", "")
        calib = calibration_samples(onnx_path, source=source, options=options, seed=seed)
        stage(f"calibration samples ({len(calib)})", "done", f"{time.perf_counter() - t:.1f}s")
        if console is not None:
            console.log(f"calibration: {calib!r}")
    method = CalibrationMethod(options.calibration_method)
    tfl_method = CalibrationMethod(tflite_calibration_method(method))
    with captured_native_output():
        result = convert(onnx_path, out_dir=out, precisions=precs, calibration=calib, io_dtype=options.io_dtype,
                         input_layout=options.input_layout, calibration_method=tfl_method.value,
                         shuffle_piece_form=options.shuffle_piece_form, output_layout=options.output_layout,
                         bias_correction=options.bias_correction, weight_rounding=options.weight_rounding,
                         equalize=options.equalize, on_stage=stage)
    artifacts, info, ops = {}, {}, {}
    for prec, path in result.artifacts.items():
        p = Precision(prec)
        kind = ArtifactKind.tflite(p.value)
        tmap = result.tensor_map_files.get(p.value) or result.tensor_map_files.get(prec)
        artifacts[kind] = ArtifactEntry.written(out, kind, Path(path).name,
                                                tensor_map=Path(tmap).name if tmap else None)
        info[kind.value] = {
            "precision": p.value,
            "layout": str(result.input_layout),
            "output_layout": str(result.output_layout),
            "io_dtype": str(result.io_dtype) if p is Precision.INT8 else "float32",
            "float_tensors": result.float_tensors.get(p.value, []),
            "shuffle_pass": result.shuffle_pass_applied,
            "shuffle_pass_stats": result.shuffle_pass,
            "layout_transposes": result.layout_transposes,
            "boundary_transposes": result.boundary_transposes,
            "gpu": gpu_readiness(out / Path(path).name).to_json(),
            # what the default CPU delegate runs, and the ops it leaves to the builtin kernels (export/tflite/xnnpack.py)
            "xnnpack": _xnnpack(out / Path(path).name),
        }
        if p is Precision.INT8 and result.bias_correction is not None:
            info[kind.value]["bias_correction"] = result.bias_correction
        if p is Precision.INT8:  # the ops it computes in float, and why (export/tflite/float_ops.py)
            info[kind.value]["float_ops"] = [f.to_json() for f in result.int8_float_ops]
        ops[kind.value] = result.ops[p.value] if p.value in result.ops else result.ops[prec]
    conversion = {f"tflite_{k}": round(v, 3) for k, v in result.timings.items()}
    calibration = None
    if calib is not None:
        ort_method = CalibrationMethod(ort_calibration_method(method))
        stage(f"onnx int8 (ORT, {ort_method.value})", "start", "")
        summary, seconds = _ort_int8(onnx_path, out / ORT_INT8_NAME, calib, ort_method, options.ort_int8_scheme,
                                     bias_correction=options.bias_correction != "none")
        stage(f"onnx int8 (ORT, {ort_method.value})", "done", f"{seconds:.1f}s")
        conversion["onnx_int8_s"] = round(seconds, 3)
        kind = ArtifactKind.ONNX_INT8
        artifacts[kind] = ArtifactEntry.written(out, kind, ORT_INT8_NAME)
        info[kind.value] = {"precision": "int8", "layout": "nchw", "io_dtype": "float32", **summary}
        from edgeport.export.analysis import op_histogram_onnx

        ops[kind.value] = op_histogram_onnx(out / ORT_INT8_NAME)
        calibration = {"calibration": calib.info(), "method": method.value, "tflite_method": tfl_method.value,
                       "onnx_int8_method": ort_method.value, **(result.calibration or {})}
    return ConvertStepResult(artifacts=artifacts, info=info, ops=ops, conversion=conversion, calibration=calibration,
                             shuffle_pass=result.shuffle_pass or {})


def _xnnpack(path: Path) -> dict:
    """artifact_info.<tflite artifact>.xnnpack: what XNNPACK runs (export/tflite/xnnpack.py); a model the delegate
    cannot prepare is recorded with the interpreter's message (validation then runs it and says what fails)."""
    from edgeport.export.tflite.xnnpack import xnnpack_coverage

    try:
        return xnnpack_coverage(path).to_json()
    except (RuntimeError, ValueError) as exc:
        return {"partitions": 0, "complete": False, "builtin_ops": {}, "error": str(exc).splitlines()[0][:300]}


def _announcer(on_stage):
    """`on_stage` made safe to call inside `captured_native_output` (its lines reach the terminal); a no-op for None."""
    def announce(name: str, status: str, detail: str) -> None:
        if on_stage is not None:
            with passthrough():
                on_stage(name, status, detail)

    return announce


def calibration_samples(model, *, source: LoadedSource, options: ConvertOptions, seed: int):
    """The calibration SampleSet for `model` (DIR/model.onnx, or the source's ONNX model before export): the image
    input from `options.calibration`, the model's other inputs from the same .npz (any other source is refused for
    a several-input model: calibration.sources)."""
    from edgeport.calibration import Split, load_samples
    from edgeport.export.onnx_inputs import image_input, model_input_specs

    if source.onnx_path is None:  # a torch source: one image input
        return load_samples(options.calibration, model_spec=source.spec, num=options.num_calibration, seed=seed,
                            split=Split.CALIBRATION, input_name=source.input_names[0])
    import onnx

    specs = model_input_specs(model if isinstance(model, onnx.ModelProto) else onnx.load(str(model)))
    image = image_input(specs)
    return load_samples(options.calibration, model_spec=source.spec, num=options.num_calibration, seed=seed,
                        split=Split.CALIBRATION, input_name=image.name,
                        other_inputs=[s for s in specs if s is not image])


def _ort_int8(onnx_path: Path, out_path: Path, calib, method, scheme: str, *,
              bias_correction: bool) -> tuple[dict, float]:
    from edgeport.export.ort_int8 import quantize_onnx_int8

    t0 = time.perf_counter()
    with captured_native_output():
        summary = quantize_onnx_int8(onnx_path=onnx_path, out_path=out_path, calibration=calib, method=method,
                                     scheme=scheme, bias_correction=bias_correction)
    return summary, time.perf_counter() - t0
