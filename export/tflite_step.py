"""The conversion step: DIR/model.onnx -> TFLite artifacts (+ the ONNX Runtime INT8 model) and their report sections."""
from __future__ import annotations

from pathlib import Path

from edgeport._native import captured_native_output
from edgeport.export.checkpoint import LoadedSource
from edgeport.report import Report

ORT_INT8_NAME = "model_int8.onnx"


def tflite_step(
    *,
    out_dir: str | Path,
    source: LoadedSource,
    precisions: list[str],
    io_dtype: str = "int8",
    input_layout: str = "nhwc",
    calibration: str = "default",
    num_calibration: int | None = None,
    calibration_seed: int | None = None,
    calibration_method: str = "minmax",
    shuffle_piece_form: str = "slices",
    console=None,
) -> Report:
    """Convert DIR/model.onnx (written by the export step) to `model_<precision>.tflite` for each precision; with
    int8, also `model_int8.onnx` (QDQ, static calibration). Calibration samples come from the calibration split of
    `calibration`, preprocessed by the model's spec. Fills report.json `artifacts`, `artifact_info`, `ops`,
    `conversion` and `calibration`. `shuffle_piece_form`: slices | convs (shuffle_pass.PieceForm)."""
    from edgeport.calibration import DEFAULT_SEED, Split, load_samples
    from edgeport.export.ort_int8 import quantize_onnx_int8
    from edgeport.export.tflite import Precision, convert

    out = Path(out_dir)
    report = Report.load(out, create=False)
    onnx_path = out / report.get("artifacts", {})["onnx"]
    precs = [Precision(p) for p in precisions]
    calib = None
    seed = DEFAULT_SEED if calibration_seed is None else calibration_seed
    if Precision.INT8 in precs:
        calib = load_samples(calibration, model_spec=source.spec, num=num_calibration, seed=seed, split=Split.CALIBRATION)
        if console is not None:
            console.log(f"calibration: {calib!r}")
    with captured_native_output():
        from edgeport.calibration import CalibrationMethod

        from edgeport.export.tflite.convert import tflite_calibration_method

        method = CalibrationMethod(calibration_method)
        tfl_method = CalibrationMethod(tflite_calibration_method(method))
        result = convert(onnx_path, out_dir=out, precisions=precs, calibration=calib, io_dtype=io_dtype,
                         input_layout=input_layout, calibration_method=tfl_method.value,
                         shuffle_piece_form=shuffle_piece_form)
    artifacts, info, ops = {}, {}, {}
    for prec, path in result.artifacts.items():
        key = f"tflite_{Precision(prec).value}"
        artifacts[key] = Path(path).name
        info[key] = {
            "precision": Precision(prec).value,
            "layout": str(result.input_layout),
            "io_dtype": str(result.io_dtype) if Precision(prec) is Precision.INT8 else "float32",
            "float_tensors": result.float_tensors.get(str(Precision(prec).value), []),
            "shuffle_pass": result.shuffle_pass_applied,
            "shuffle_pass_stats": result.shuffle_pass,
            "layout_transposes": result.layout_transposes,
            "boundary_transposes": result.boundary_transposes,
        }
        if Precision(prec) is Precision.INT8 and result.bias_correction is not None:
            info[key]["bias_correction"] = result.bias_correction
        ops[key] = result.ops[str(Precision(prec).value)] if str(Precision(prec).value) in result.ops else result.ops[prec]
    conversion = {f"tflite_{k}": round(v, 3) for k, v in result.timings.items()}
    if calib is not None:
        import time

        t0 = time.perf_counter()
        with captured_native_output():
            summary = quantize_onnx_int8(onnx_path=onnx_path, out_path=out / ORT_INT8_NAME, calibration=calib,
                                         method=method)
        conversion["onnx_int8_s"] = round(time.perf_counter() - t0, 3)
        artifacts["onnx_int8"] = ORT_INT8_NAME
        info["onnx_int8"] = {"precision": "int8", "layout": "nchw", "io_dtype": "float32", **summary}
        from edgeport.export.analysis import op_histogram_onnx

        ops["onnx_int8"] = op_histogram_onnx(out / ORT_INT8_NAME)
        report.set("calibration", {"calibration": calib.info(), "method": method.value,
                                   "tflite_method": tfl_method.value, "onnx_int8_method": method.value})
    report.merge("artifacts", artifacts)
    report.merge("artifact_info", info)
    report.merge("ops", ops)
    report.merge("conversion", conversion)
    report.save()
    return report
