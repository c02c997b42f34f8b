"""ONNX Runtime static INT8: a QDQ model (`model_int8.onnx`) calibrated on the project's calibration protocol.

Weights int8 symmetric (per-channel by default), activations int8, QuantizeLinear/DequantizeLinear pairs around
each quantizable op (the QDQ format every ORT execution provider understands). Calibration: MinMax (default),
Entropy or Percentile (ORT's own histogram calibrators).

Pitfalls handled here:
- Entropy/Percentile with QDQ used to fail with "Quantization parameters are not specified" for tensors the
  histogram calibrator never saw (onnxruntime#11928); any such tensor gets its MinMax range through
  `TensorQuantOverrides` and a retry, so the model is still fully quantized and the fallback is reported.
- The histogram calibrators print progress to stdout; it is captured.
- Entropy: `quantize_static` builds ORT's entropy calibrator with 128 histogram bins and 128 quantized bins, which
  leaves the KL search a single candidate (the whole range), so "Entropy" silently equals MinMax. Here the entropy
  ranges are computed with ORT's own calibrator at 512 bins / 255 quantized bins (129 candidate thresholds on ORT's
  symmetric histogram; 2048 bins take ~15x longer in ORT's Python search), intersected with the observed min/max (a ReLU output keeps its lower bound 0), and handed
  to `quantize_static` as per-tensor overrides. Graph outputs keep min/max (on logits the KL-optimal threshold
  clips exactly the few large values that decide the class: 0.87 vs a max of 5.4 on the digits ShuffleNetV2).
  Slow: ORT's threshold search is a Python loop per tensor (minutes for a whole network).
- Percentile clips both tails (CalibPercentile 99.999, ORT's default) on real values (not |x|), which keeps ReLU
  outputs' lower bound at 0.
- The output file is written next to the destination and renamed into place: no half-written model on failure.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from edgeport.calibration.samples import CalibrationMethod
from edgeport.errors import CalibrationError, ExportError
from edgeport.report import _umask

ORT_PERCENTILE = 99.999
ENTROPY_BINS = 512
ENTROPY_QUANTIZED_BINS = 255


@contextlib.contextmanager
def _quiet_root_logger():
    """ORT's quantizer logs advice through the root logger at WARNING; keep it out of the user's console."""
    import logging

    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(old)


class _Reader:
    """onnxruntime.quantization.CalibrationDataReader over the calibration protocol."""

    def __init__(self, samples: list[dict[str, np.ndarray]]):
        self._samples = samples
        self._i = 0

    def get_next(self):
        if self._i >= len(self._samples):
            return None
        self._i += 1
        return self._samples[self._i - 1]

    def rewind(self):
        self._i = 0


def _constants_to_initializers(model):
    """Constant nodes -> initializers (exact): ORT's quantizer only quantizes initializer weights and biases."""
    import onnx
    from onnx import numpy_helper

    keep = []
    for node in model.graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            arr = numpy_helper.to_array(node.attribute[0].t)
            model.graph.initializer.append(numpy_helper.from_array(arr, node.output[0]))
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)
    return model


def _ort_method(method: CalibrationMethod):
    from onnxruntime.quantization import CalibrationMethod as M

    return {CalibrationMethod.MINMAX: M.MinMax, CalibrationMethod.ENTROPY: M.Entropy,
            CalibrationMethod.PERCENTILE: M.Percentile}[method]


def _entropy_overrides(prepared: Path, samples: list[dict[str, np.ndarray]], workdir: Path) -> dict:
    """{tensor: [{"rmin", "rmax"}]}: ORT's KL-divergence thresholds with enough bins to search, clipped to min/max."""
    from onnxruntime.quantization import CalibrationMethod as M
    from onnxruntime.quantization.calibrate import create_calibrator

    with tempfile.TemporaryDirectory(dir=workdir, prefix=".ort_entropy_") as tmp:
        kw = {"symmetric": False, "num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS}
        with contextlib.redirect_stdout(io.StringIO()), _quiet_root_logger():
            ent = create_calibrator(str(prepared), None, augmented_model_path=str(Path(tmp) / "aug.onnx"),
                                    calibrate_method=M.Entropy, extra_options=kw)
            ent.collect_data(_Reader(samples))
            thresholds = ent.compute_data()
    import onnx

    outputs = {o.name for o in onnx.load(str(prepared), load_external_data=False).graph.output}
    out = {}
    for name in list(thresholds.keys()):
        if name in outputs:
            continue  # the logits keep min/max: KL clips the few large logits that decide the class
        td = thresholds[name]
        lo_t, hi_t = (float(np.asarray(v).ravel()[0]) for v in td.range_value)
        lo, hi = lo_t, hi_t
        hist, edges = getattr(td, "hist", None), getattr(td, "hist_edges", None)
        if hist is not None and edges is not None and np.any(hist):
            # the histogram is symmetric about 0; its occupied bins bound the observed min/max
            nz = np.nonzero(np.asarray(hist))[0]
            lo, hi = max(lo_t, float(edges[nz[0]])), min(hi_t, float(edges[nz[-1] + 1]))
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        out[name] = [{"rmin": np.float32(lo), "rmax": np.float32(hi)}]
    return out


def quantize_onnx_int8(
    *,
    onnx_path: str | Path,
    out_path: str | Path,
    calibration: Iterable[dict[str, np.ndarray]],
    method: CalibrationMethod | str = CalibrationMethod.MINMAX,
    per_channel: bool = True,
    percentile: float = ORT_PERCENTILE,
) -> dict:
    """Float ONNX (NCHW input) -> QDQ INT8 ONNX at `out_path` (same inputs/outputs, float32 I/O).

    `calibration`: the protocol (dicts {input_name: float32 (1,C,H,W)}), consumed once. Returns a summary for
    report.json (`method`, `per_channel`, `num_calibration`, `fallback_tensors`, `qdq_nodes`).
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    method = CalibrationMethod(method)
    samples = list(calibration)
    if not samples:
        raise CalibrationError("ORT INT8: the calibration set is empty")
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    extra: dict = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if method == CalibrationMethod.PERCENTILE:
        extra.update(CalibPercentile=percentile, CalibTensorRangeSymmetric=False)
    fallback: list[str] = []

    prepared = out_path.parent / f".{out_path.stem}.prepared.onnx"
    onnx.save(_constants_to_initializers(onnx.load(str(onnx_path))), str(prepared))

    base_overrides: dict = {}
    ort_method = CalibrationMethod.MINMAX if method == CalibrationMethod.ENTROPY else method

    def run(extra_options: dict) -> None:
        fd, tmp = tempfile.mkstemp(suffix=".onnx.tmp", dir=out_path.parent)
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; the artifact gets the mode a plain open() would give
        os.close(fd)
        try:
            with contextlib.redirect_stdout(io.StringIO()), _quiet_root_logger():
                quantize_static(
                    str(prepared), tmp, _Reader(samples), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    calibrate_method=_ort_method(ort_method), extra_options=extra_options,
                )
            onnx.checker.check_model(tmp)
            os.replace(tmp, out_path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    try:
        if method == CalibrationMethod.ENTROPY:  # the overrides carry the entropy ranges
            base_overrides = _entropy_overrides(prepared, samples, out_path.parent)
        overrides: dict = {}
        mm: dict | None = None
        while True:
            try:
                every = {**base_overrides, **overrides}
                run({**extra, "TensorQuantOverrides": every} if every else extra)
                break
            except ValueError as exc:
                m = re.search(r"not specified for param (\S+?)\.", str(exc))
                if ort_method == CalibrationMethod.MINMAX or not m or m.group(1) in overrides or len(overrides) > 1000:
                    raise ExportError(f"ONNX Runtime static quantization failed: {exc}") from None
                # The histogram calibrator skipped this tensor: give it its min/max range and retry.
                if mm is None:
                    from edgeport.calibration.ranges import onnx_activation_ranges

                    mm = onnx_activation_ranges(onnx_path, calibration=samples, method=CalibrationMethod.MINMAX)
                name = m.group(1)
                if name not in mm:
                    raise ExportError(f"ONNX Runtime static quantization failed: {exc}") from None
                lo, hi = mm[name]
                overrides[name] = [{"rmin": np.float32(lo), "rmax": np.float32(hi)}]
                fallback.append(name)
    finally:
        prepared.unlink(missing_ok=True)
    model = onnx.load(str(out_path))
    qdq = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
    if qdq == 0:
        raise ExportError(f"ONNX Runtime produced no QuantizeLinear/DequantizeLinear nodes for {onnx_path}")
    return {"method": str(method), "per_channel": per_channel, "num_calibration": len(samples),
            "format": "qdq", "activation_type": "int8", "weight_type": "int8", "qdq_nodes": qdq,
            "fallback_tensors": fallback, **({"percentile": percentile} if method == CalibrationMethod.PERCENTILE else {}),
            **({"entropy_bins": ENTROPY_BINS, "entropy_quantized_bins": ENTROPY_QUANTIZED_BINS,
                "entropy_tensors": len(base_overrides)} if method == CalibrationMethod.ENTROPY else {})}
