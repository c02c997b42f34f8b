"""ONNX Runtime static INT8: a QDQ model (`model_int8.onnx`) calibrated on the project's calibration protocol.

QuantizeLinear/DequantizeLinear pairs around each quantizable op (the QDQ format every ORT execution provider
understands); weights symmetric, per-channel by default; activations asymmetric. Calibration: MinMax (default),
Entropy or Percentile (ORT's own histogram calibrators).

Integer types (`OrtInt8Scheme`), chosen so the file gives the same numbers on any CPU it is copied to. ORT's x86
u8s8 GEMMs on AVX2, and on AVX-512 without VNNI, add pairs of u8*s8 products in a saturating int16 (VPMADDUBSW),
and ORT runs int8 QDQ activations as uint8 on x86, so an s8s8 file loses accuracy there only: AugShuffleNet digits
99.4 % -> 86.3 %, EfficientNet-Lite0 agreement with fp32 86 % -> 56 % (docs/calibration.md, "ORT INT8 on CPUs
without VNNI"). The default `u8u8` stores GEMM weights as uint8 (ORT's U8U8 kernels widen to 32 bits on every
CPU) with 8-bit precision; depthwise conv weights stay int8 (their kernels widen too, and a uint8 depthwise conv
takes a slow path). `s8s8` (the former default) and `s8s8-7bit` (reduce_range) remain options. The summary records
the scheme, this host's CPU features and integer kernel path, and whether the file's numbers depend on that path.

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
import enum
import io
import os
import re
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from edgeport.calibration.samples import CalibrationMethod
from edgeport.errors import CalibrationError, ExportError
from edgeport.files import current_umask
from edgeport.runtime.cpu_features import CpuFeatures, Int8KernelPath, cpu_features, int8_kernel_path

ORT_PERCENTILE = 99.999
ENTROPY_BINS = 512
ENTROPY_QUANTIZED_BINS = 255
# Ops whose weight input (index 1) ORT runs through an integer GEMM (QLinearConv, QGemm, QLinearMatMul).
GEMM_OPS = ("Conv", "Gemm", "MatMul")


class OrtInt8Scheme(str, enum.Enum):
    """Integer types of the QDQ model.

    U8U8 (default): uint8 activations; weights quantized int8-symmetric (so ORT widens a weight scale where the int32
      bias would overflow), then stored as uint8 (q + 128, zero point 128: the same products) for every GEMM-backed
      op; depthwise conv weights stay int8. Exact on every CPU; on VNNI x86 the U8U8 GEMM is slower than u8s8.
    S8S8: int8 activations and weights. Exact on VNNI / AMX x86 and on ARM; saturates on x86 with AVX2 or AVX-512
      but no VNNI.
    S8S8_7BIT: S8S8 with 7-bit weights (ORT's reduce_range): exact everywhere, weights 6 dB coarser.
    """

    U8U8 = "u8u8"
    S8S8 = "s8s8"
    S8S8_7BIT = "s8s8-7bit"

    def __str__(self) -> str:
        return self.value

    @property
    def exact_on_every_cpu(self) -> bool:
        """True when no CPU's integer path saturates on this file (its numbers do not depend on the host's kernels)."""
        return self is not OrtInt8Scheme.S8S8


def _is_depthwise(node, weight_shape) -> bool:
    """A Conv with one input and one output channel per group: ORT runs it with widening depthwise kernels."""
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    return node.op_type == "Conv" and group > 1 and len(weight_shape) > 1 and weight_shape[1] == 1 \
        and weight_shape[0] == group


def _store_weights_uint8(model) -> tuple[int, int]:
    """int8 weights of GEMM-backed ops -> uint8 (q + 128, zero point + 128): the same dequantized values, run by ORT's
    widening U8U8 kernels. Depthwise conv weights stay int8. Returns (weights moved to uint8, int8 weights kept)."""
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    moved = kept = 0
    for dq in [n for n in g.node if n.op_type == "DequantizeLinear"]:
        if len(dq.input) < 3 or dq.input[0] not in inits or dq.input[2] not in inits:
            continue
        q = numpy_helper.to_array(inits[dq.input[0]])
        users = consumers.get(dq.output[0], [])
        if q.dtype != np.int8 or not users or any(u.op_type not in GEMM_OPS or list(u.input[1:2]) != [dq.output[0]]
                                                   for u in users):
            continue
        if any(_is_depthwise(u, q.shape) for u in users):
            kept += 1
            continue
        zp = numpy_helper.to_array(inits[dq.input[2]])
        for k, arr in ((0, q), (2, zp)):  # new initializers: the int8 ones may be shared with other nodes
            name = f"{dq.input[k]}_u8"
            if name not in inits:
                inits[name] = numpy_helper.from_array((arr.astype(np.int16) + 128).astype(np.uint8), name)
                g.initializer.append(inits[name])
            dq.input[k] = name
        moved += 1
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep = [i for i in g.initializer if i.name in used]  # drop the int8 copies nothing reads any more
    del g.initializer[:]
    g.initializer.extend(keep)
    return moved, kept


def portability(scheme: OrtInt8Scheme, host: CpuFeatures) -> dict:
    """Whether the numbers of a `scheme` file depend on the integer kernel path of the CPU that runs it, in words."""
    path = int8_kernel_path(host)
    if scheme.exact_on_every_cpu:
        note = (f"{scheme} integer kernels are exact on every CPU (x86 with or without VNNI, ARM): the numbers "
                f"measured on this host ({path}) do not depend on its integer path")
    elif path.exact or path is Int8KernelPath.UNKNOWN:
        note = (f"{scheme} numbers measured on this host ({path}{', exact' if path.exact else ''}) hold on VNNI/AMX "
                f"x86 and ARM CPUs only: on x86 CPUs with AVX2 or AVX-512 but no VNNI, ORT's u8s8 kernels saturate "
                f"and this file loses accuracy")
    else:
        note = (f"{scheme} numbers measured on this host ({path}) include the saturation of ORT's u8s8 kernels "
                f"(x86 without VNNI); a VNNI/AMX x86 or ARM CPU gives other, more accurate numbers")
    return {"host_dependent": not scheme.exact_on_every_cpu, "portability": note}


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


# Per-channel QDQ (DequantizeLinear's `axis`) needs opset 13; older files are upgraded before quantizing.
MIN_QUANT_OPSET = 13


def upgrade_opset(model, minimum: int = MIN_QUANT_OPSET):
    """(model at opset >= `minimum`, report note: {"opset_upgraded": {from, to}} or {}). Older files (PP-OCR's are 11 and 12) go through
    onnx.version_converter; a file it cannot convert is one ExportError naming the opsets."""
    import onnx
    from onnx import version_converter

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), minimum)
    if opset >= minimum:
        return model, {}
    try:
        upgraded = version_converter.convert_version(model, minimum)
        onnx.checker.check_model(upgraded)
    except Exception as exc:
        raise ExportError(f"ORT INT8 needs ONNX opset >= {minimum}; upgrading this opset-{opset} model failed: "
                          f"{str(exc).splitlines()[0][:160]}", hint="re-export the model at opset 13 or later, "
                          "or leave out --precision int8") from None
    return upgraded, {"opset_upgraded": {"from": opset, "to": minimum}}


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


def _scheme_summary(scheme: OrtInt8Scheme, weights: dict) -> dict:
    """report.json fields of the integer types, this host's CPU and whether the file's numbers depend on it."""
    host = cpu_features()
    u8 = scheme is OrtInt8Scheme.U8U8
    return {"scheme": scheme.value, "activation_type": "uint8" if u8 else "int8",
            "weight_type": "uint8 (int8: depthwise conv)" if u8 else "int8",
            "weight_bits": 7 if scheme is OrtInt8Scheme.S8S8_7BIT else 8,
            **({"weights_uint8": weights["uint8"], "weights_int8_depthwise": weights["int8"]} if weights else {}),
            "host_cpu": host.to_dict(), **portability(scheme, host)}


def _post_process(path: str, *, scheme: OrtInt8Scheme, weights: dict, float_model, samples) -> dict:
    """ORT's QDQ file at `path`, rewritten in place: GEMM weights stored as uint8 (u8u8; counts into `weights`), then
    the biases corrected on `samples` (None: no correction). Returns the correction's summary ({} without)."""
    import onnx

    if scheme is not OrtInt8Scheme.U8U8 and samples is None:
        return {}
    q = onnx.load(path)
    if scheme is OrtInt8Scheme.U8U8:
        weights["uint8"], weights["int8"] = _store_weights_uint8(q)
    summary = {}
    if samples is not None:
        from edgeport.export.ort_bias_correction import correct_qdq_biases

        summary = correct_qdq_biases(qdq=q, float_model=float_model, samples=samples).as_dict()
    onnx.save(q, path)
    return summary


def quantize_onnx_int8(
    *,
    onnx_path: str | Path,
    out_path: str | Path,
    calibration: Iterable[dict[str, np.ndarray]],
    method: CalibrationMethod | str = CalibrationMethod.MINMAX,
    per_channel: bool = True,
    percentile: float = ORT_PERCENTILE,
    scheme: OrtInt8Scheme | str = OrtInt8Scheme.U8U8,
    bias_correction: bool = False,
) -> dict:
    """Float ONNX (NCHW input) -> QDQ INT8 ONNX at `out_path` (same inputs/outputs, float32 I/O).

    `calibration`: the protocol (dicts {input_name: float32 (1,C,H,W)}), consumed once. `scheme`: the integer types
    (OrtInt8Scheme; the default u8u8 is exact on every CPU). `bias_correction`: each Conv/Gemm bias corrected for
    the mean shift its quantization causes (export/ort_bias_correction.py; on in `edgeport run`). Returns a summary
    for report.json (method, ranges, scheme and types, host CPU and integer path, portability, bias correction).
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    method = CalibrationMethod(method)
    scheme = OrtInt8Scheme(scheme)
    act_type = QuantType.QUInt8 if scheme is OrtInt8Scheme.U8U8 else QuantType.QInt8
    weights: dict = {}
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
    upgraded, upgrade_note = upgrade_opset(onnx.load(str(onnx_path)))
    float_model = _constants_to_initializers(upgraded)
    onnx.save(float_model, str(prepared))
    corrected: dict = {}

    base_overrides: dict = {}
    ort_method = CalibrationMethod.MINMAX if method == CalibrationMethod.ENTROPY else method

    def run(extra_options: dict) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; the artifact gets the mode a plain open() would give
        os.close(fd)
        try:
            with contextlib.redirect_stdout(io.StringIO()), _quiet_root_logger():
                quantize_static(
                    str(prepared), tmp, _Reader(samples), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                    reduce_range=scheme is OrtInt8Scheme.S8S8_7BIT, activation_type=act_type,
                    weight_type=QuantType.QInt8, calibrate_method=_ort_method(ort_method), extra_options=extra_options,
                )
            corrected.update(_post_process(tmp, scheme=scheme, weights=weights, float_model=float_model,
                                           samples=samples if bias_correction else None))
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
    qdq = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in onnx.load(str(out_path)).graph.node)
    if qdq == 0:
        raise ExportError(f"ONNX Runtime produced no QuantizeLinear/DequantizeLinear nodes for {onnx_path}")
    method_note = ({"percentile": percentile} if method == CalibrationMethod.PERCENTILE else
                   {"entropy_bins": ENTROPY_BINS, "entropy_quantized_bins": ENTROPY_QUANTIZED_BINS,
                    "entropy_tensors": len(base_overrides)} if method == CalibrationMethod.ENTROPY else {})
    return {"method": str(method), "per_channel": per_channel, "num_calibration": len(samples), "format": "qdq",
            **_scheme_summary(scheme, weights), "qdq_nodes": qdq, "fallback_tensors": fallback, **upgrade_note,
            "bias_correction": corrected or None, **method_note}
