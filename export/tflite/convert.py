"""ONNX -> TFLite: graph passes, NHWC lowering, TFLiteConverter per precision, atomic writes, op histograms.

    >>> from edgeport.export.tflite import convert
    >>> res = convert("model.onnx", out_dir="out", precisions=["fp32", "int8"], calibration=calib)
    >>> res.artifacts["int8"]            # Path("out/model_int8.tflite")
"""
from __future__ import annotations

import enum
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import onnx
import tensorflow as tf

from edgeport.calibration.samples import (check_int8_io, ort_calibration_method,  # noqa: F401 (re-exported)
                                          tflite_calibration_method)
from edgeport.errors import CalibrationError, ExportError
from edgeport.export.equalization import equalize_model
from edgeport.files import atomic_write_bytes
from edgeport.options import check_int8_refinement, default_calibration_method

from .act_scale_fold import fold_hard_activation_scales
from .auto_calibration import choose_calibration_method
from .bias_correction import BiasCorrection
from .build import InputLayout, Lowered, lower_graph
from .calibrated import calibrate_ranges, quantize_calibrated
from .float_ops import FloatOp, denylisted_nodes, int8_float_ops, kept_float
from .graph import OnnxGraph
from .int8_refine import refine_int8
from .lowerings import NHWC
from .pad_unshare import unshare_conv_pads
from .scale_unify import unify_same_scale_ranges
from .signature import name_io
from .shuffle import GroupedShuffleForm, PieceForm, remove_channel_shuffles_with_stats
from .stages import OnStage, timed_stage
from .tensor_map import TensorOrigin, save_tensor_map, tensor_map_path
from .weight_rounding import WeightRounding


class Precision(str, enum.Enum):
    """fp32; fp16 (weights stored fp16); dynamic (int8 weights, float activations); int8 (full integer)."""

    FP32 = "fp32"
    FP16 = "fp16"
    DYNAMIC = "dynamic"
    INT8 = "int8"

    def __str__(self) -> str:
        return self.value


class IODtype(str, enum.Enum):
    """Input/output tensor type of the full-integer model."""

    INT8 = "int8"
    UINT8 = "uint8"
    FLOAT = "float"

    def __str__(self) -> str:
        return self.value


_IO_TF = {IODtype.INT8: tf.int8, IODtype.UINT8: tf.uint8, IODtype.FLOAT: tf.float32}


def artifact_filename(precision: Precision | str) -> str:
    return f"model_{Precision(precision).value}.tflite"


@dataclass
class ConversionResult:
    """What `convert` wrote and learned. Paths are absolute; `ops` and `float_tensors` are keyed by precision."""

    out_dir: Path
    artifacts: dict[str, Path]
    ops: dict[str, dict[str, int]]
    timings: dict[str, float]
    input_layout: InputLayout
    io_dtype: IODtype
    input_names: list[str]
    input_shapes: dict[str, tuple[int, ...]]
    output_names: list[str]
    output_perms: dict[str, tuple[int, ...]]
    float_tensors: dict[str, list[str]] = field(default_factory=dict)
    tensor_map: dict[str, dict[str, TensorOrigin]] = field(default_factory=dict)
    # `model_<precision>.tensormap.json` beside each TFLite file: tensor_map[precision] and the channel permutations
    tensor_map_files: dict[str, Path] = field(default_factory=dict)
    channel_permutations: dict[str, list[int]] = field(default_factory=dict)
    shuffle_pass_applied: bool = False
    # what the shuffle pass did: shuffles found / absorbed / kept (as tiled transposes) / densified, convs split
    # into per-slice pieces, and the Slice / Concat copies it left (None when it did not run)
    shuffle_pass: dict | None = None
    layout_transposes: int = 0
    boundary_transposes: int = 0
    calibration_samples: int = 0
    output_layout: InputLayout = InputLayout.NHWC  # of the 4-D outputs
    bias_correction: dict | None = None
    # what the INT8 range calibration chose: `tflite_method`, `per_tensor` (candidate counts), `auto` (the trials)
    calibration: dict | None = None
    # ONNX ops the INT8 model computes in float (float_ops.py), with the TFLite ops that do and why
    int8_float_ops: list[FloatOp] = field(default_factory=list)


# ONNX ops whose lowering differs when tracing for the INT8 quantizer (LoweringContext.for_int8)
_INT8_FORMS = {"HardSwish", "AveragePool", "PRelu"}


def load_onnx_model(onnx_model_or_path) -> onnx.ModelProto:
    if isinstance(onnx_model_or_path, onnx.ModelProto):
        return onnx_model_or_path
    path = Path(onnx_model_or_path)
    if not path.is_file():
        raise ExportError(f"ONNX file {str(path)!r} does not exist", hint="export it first with `edgeport export`")
    try:
        return onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError and friends
        raise ExportError(f"{str(path)!r} is not a readable ONNX model: {e}") from e


def _representative(lowered: Lowered, calibration, input_layout: InputLayout, limit: int | None):
    try:
        n = len(calibration)
    except TypeError:
        raise CalibrationError("calibration data must be an iterable of {input_name: array} with len()") from None
    if n == 0:
        raise CalibrationError("calibration data is empty", hint="INT8 needs representative inputs")

    # each input's dtype as traced (token ids stay int64; images are float32)
    dtypes = [spec.dtype.as_numpy_dtype for spec in lowered.function.structured_input_signature[0]]

    def gen():
        for k, sample in enumerate(calibration):
            if limit is not None and k >= limit:
                break
            if not isinstance(sample, Mapping):
                raise CalibrationError(f"calibration sample {k} is a {type(sample).__name__}, not a dict")
            row = []
            for name, dtype in zip(lowered.input_names, dtypes):
                if name not in sample:
                    raise CalibrationError(f"calibration sample {k} lacks input {name!r} "
                                           f"(has {sorted(sample)})")
                arr = np.asarray(sample[name], dtype)
                want = lowered.input_shapes[name]
                if arr.ndim == 4 and input_layout is InputLayout.NHWC:
                    arr = arr.transpose(NHWC)
                if tuple(arr.shape) != tuple(want):
                    raise CalibrationError(f"calibration sample {k} input {name!r} has shape {arr.shape}; expected "
                                           f"{want} after layout conversion (samples are NCHW float32)")
                row.append(np.ascontiguousarray(arr))
            yield row

    return gen, n if limit is None else min(n, limit)


def _tflite_bytes(lowered: Lowered, precision: Precision, *, representative=None, io_dtype=IODtype.INT8,
                  calibration_method: str = "minmax", calibration=None, notes: dict | None = None,
                  float_ops: list[FloatOp] = ()) -> bytes:
    conv = tf.lite.TFLiteConverter.from_concrete_functions([lowered.function])
    if (precision is Precision.INT8 and io_dtype is not IODtype.INT8 and calibration_method == "minmax"
            and not float_ops):
        # float / uint8 I/O: TensorFlow's own path (the MLIR quantizer entry point used below only writes int8 I/O),
        # so same-scale groups are not unified here and a requantizing QUANTIZE may remain where their ranges differ
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = _IO_TF[io_dtype]
        conv.inference_output_type = _IO_TF[io_dtype]
    elif precision is Precision.INT8:
        # Calibrate (TensorFlow records min/max per tensor on the float model), adjust the ranges, then let
        # TensorFlow's MLIR quantizer derive every scale/zero-point: percentile ranges replace min/max when asked
        # (edgeport.calibration), and same-scale groups (concat / slice / reshape) get one union range so the
        # quantizer inserts no requantizing QUANTIZE ops (scale_unify.py).
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv._experimental_calibrate_only = True
        try:
            calibrated = conv.convert()
            keep = denylisted_nodes(calibrated, list(float_ops), lowered.scope_to_onnx)
            calibrated = _calibrated_ranges(calibrated, method=calibration_method, calibration=calibration,
                                            representative=representative, io_dtype=io_dtype, notes=notes,
                                            keep_float=keep)
            calibrated, _ = unify_same_scale_ranges(calibrated)
            return quantize_calibrated(calibrated, io_dtype=io_dtype.value, keep_float=keep)
        except (CalibrationError, ExportError):
            raise
        except Exception as e:  # the TF converter raises ConverterError/RuntimeError/ValueError
            raise ExportError(f"TFLite INT8 conversion failed: {e}") from e
    if precision is Precision.FP16:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision is Precision.DYNAMIC:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        return conv.convert()
    except CalibrationError:
        raise
    except Exception as e:  # the TF converter raises ConverterError/RuntimeError/ValueError
        raise ExportError(f"TFLite conversion ({precision}) failed: {e}") from e


def _calibrated_ranges(calibrated: bytes, *, method: str, calibration, representative, io_dtype: IODtype,
                       notes: dict | None, keep_float: list[str]) -> bytes:
    """The calibrated model with the method's ranges (calibrated.py); AUTO first picks the method on the calibration
    hold-out (auto_calibration.py). What was chosen goes into `notes` (the report's calibration section)."""
    notes = {} if notes is None else notes
    if method == "auto":
        nhwc = [row[0] for row in representative()]
        choice = choose_calibration_method(calibrated, calibration=list(calibration)[:len(nhwc)], nhwc_inputs=nhwc,
                                           io_dtype=io_dtype.value, keep_float=keep_float)
        notes["auto"] = choice.as_dict()
        method = choice.method.value
    calibrated, summary = calibrate_ranges(calibrated, method=method, calibration=calibration)
    notes["tflite_method"] = method
    if method == "per-tensor":
        notes["per_tensor"] = summary
    return calibrated


def _interpreter(model_content: bytes | None = None, model_path: str | None = None):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    return Interpreter(model_content=model_content, model_path=model_path,
                       experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)


def _histogram_of(interp) -> dict[str, int]:
    return dict(sorted(Counter(d["op_name"] for d in interp._get_ops_details() if d["op_name"] != "DELEGATE")
                       .items()))


def op_histogram(tflite_path: str | os.PathLike) -> dict[str, int]:
    """{TFLite builtin op name: count} of the model's operators (read from the flatbuffer, no delegate)."""
    return _histogram_of(_interpreter(model_path=str(tflite_path)))


def _calibration_inputs(lowered: Lowered, calibration, input_layout: InputLayout, num: int) -> list[np.ndarray]:
    """The first `num` calibration samples as the TFLite model is fed them (single-input models)."""
    gen, _ = _representative(lowered, calibration, input_layout, num)
    return [row[0] for row in gen()]


def _float_tensors(interp, io_dtype: IODtype) -> list[str]:
    """Names of float32 activation tensors left in a full-integer model (I/O excluded when io is float)."""
    io = set()
    if io_dtype is IODtype.FLOAT:
        io = {d["index"] for d in interp.get_input_details()} | {d["index"] for d in interp.get_output_details()}
    consts = set()
    for op in interp._get_ops_details():
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE") and io_dtype is IODtype.FLOAT:
            io.update(int(i) for i in op["inputs"]) if op["op_name"] == "QUANTIZE" else io.update(
                int(i) for i in op["outputs"])
    out = []
    for d in interp.get_tensor_details():
        if d["dtype"] == np.float32 and d["index"] not in io and d["index"] not in consts:
            out.append(d["name"])
    return out


def tensor_map(interp, lowered: Lowered, channel_perms: Mapping[str, list[int]]) -> dict[str, TensorOrigin]:
    """TFLite tensor name -> TensorOrigin, for tensors whose producing op kept an ONNX tensor's name scope.

    TFLite names a tensor after the ops fused into it ("scope/Relu;scope/add;other/Conv2D"); the first component's
    scope is the op that produced the tensor, and scopes are the ONNX output tensor names (sanitised)."""
    out = {}
    for d in interp.get_tensor_details():
        name = d["name"]
        first = name.split(";")[0]
        scope = first.split("/")[0]
        onnx_name = lowered.scope_to_onnx.get(scope)
        if onnx_name is None or onnx_name not in lowered.layouts:
            continue
        out[name] = TensorOrigin(onnx_name, tuple(lowered.layouts[onnx_name]), channel_perms.get(onnx_name))
    return out


def output_origins(interp, lowered: Lowered, channel_perms: Mapping[str, list[int]]) -> dict[str, TensorOrigin]:
    """TFLite output tensor name -> TensorOrigin of the ONNX graph output at the same position (TFLite names the
    outputs after the signature, not the ONNX scope); empty when the counts differ."""
    outs = interp.get_output_details()
    if len(outs) != len(lowered.output_names):
        return {}
    found = {}
    for d, name in zip(outs, lowered.output_names):
        perm = lowered.output_perms.get(name) or lowered.layouts.get(name) or tuple(range(len(d["shape"])))
        found[d["name"]] = TensorOrigin(name, tuple(perm), channel_perms.get(name))
    return found


def full_tensor_map(interp, lowered: Lowered, channel_perms: Mapping[str, list[int]]) -> dict[str, TensorOrigin]:
    """`tensor_map` plus the graph outputs (`output_origins`, which win: an output tensor carries the ONNX output's
    name (signature.py), so its scope would give the layout inside the graph, not the output's): what the saved map
    holds."""
    tmap = tensor_map(interp, lowered, channel_perms)
    tmap.update(output_origins(interp, lowered, channel_perms))
    return tmap


def _choice(enum_cls, value, what: str):
    try:
        return enum_cls(str(getattr(value, "value", value)))
    except ValueError:
        raise ExportError(f"unknown {what} {value!r}", hint=f"choose from {[f.value for f in enum_cls]}") from None


def _checked_options(precisions, *, io_dtype, input_layout, calibration_method, calibration):
    """(precisions, io_dtype, input_layout, calibration method name) as convert() uses them; raises ExportError /
    CalibrationError for a request that cannot be converted, before any work."""
    precs = [Precision(p) for p in precisions]
    if not precs:
        raise ExportError("no precision requested", hint=f"choose from {[p.value for p in Precision]}")
    io_dtype = IODtype(io_dtype)
    input_layout = InputLayout(input_layout)
    if calibration_method is None:
        calibration_method = default_calibration_method(io_dtype.value)
    calibration_method = str(getattr(calibration_method, "value", calibration_method))
    if Precision.INT8 in precs:
        check_int8_io(calibration_method=calibration_method, io_dtype=io_dtype)
    if Precision.INT8 in precs and calibration is None:
        raise CalibrationError("int8 needs calibration data (an iterable of {input_name: NCHW float32 array})")
    return precs, io_dtype, input_layout, calibration_method


def _shuffle_pass(model: onnx.ModelProto, *, grouped_form, piece_form) -> tuple[onnx.ModelProto, dict, dict]:
    """The channel-shuffle pass (shuffle/): (rewritten model, channel permutations, what it did for the report)."""
    form = _choice(GroupedShuffleForm, grouped_form, "grouped shuffle form")
    pieces = _choice(PieceForm, piece_form, "shuffle piece form")
    # the pass wants a shape-inferred graph (graph outputs typed with shapes)
    model, channel_perms, st = remove_channel_shuffles_with_stats(OnnxGraph.from_model(model).model,
                                                                  grouped_form=form, piece_form=pieces)
    stats = {"found": st.shuffles_found, "absorbed": st.shuffles_found - st.shuffles_materialised - st.densified,
             "kept": st.shuffles_materialised, "densified": st.densified, "convs_split": st.convs_split,
             "slices": st.slices, "concats": st.concats, "grouped_form": form.value, "piece_form": pieces.value}
    return model, channel_perms, stats


def _lowerings(model: onnx.ModelProto, precs: list[Precision], *, input_layout: InputLayout,
               output_layout: InputLayout) -> tuple[Lowered, Lowered, list[FloatOp]]:
    """(the float lowering, the one the INT8 model is traced from, the ops INT8 keeps float): the INT8 one is a
    second lowering only where an op's XNNPACK-friendly INT8 form differs (HardSwish, ...), else the same object; it
    is traced from the graph with the hard activations' 1/6 moved into the weights that read them
    (act_scale_fold.py)."""
    graph = OnnxGraph.from_model(model)
    float_ops = int8_float_ops(graph) if Precision.INT8 in precs else []
    lowered = lower_graph(graph, input_layout=input_layout, output_layout=output_layout)
    lowered_int8 = lowered
    if Precision.INT8 in precs and any(n.op_type in _INT8_FORMS for n in graph.nodes):
        folded, _ = fold_hard_activation_scales(graph.model)
        lowered_int8 = lower_graph(OnnxGraph.from_model(folded), input_layout=input_layout, for_int8=True,
                                   output_layout=output_layout)
    return lowered, lowered_int8, float_ops


def _tflite_blobs(lowered_for: dict[Precision, Lowered], *, calibration, io_dtype: IODtype,
                  input_layout: InputLayout, max_calibration_samples: int | None, calibration_method: str,
                  timings: dict[str, float], notes: dict | None = None, on_stage: OnStage | None = None,
                  float_ops: list[FloatOp] = ()) -> tuple[dict[Precision, bytes], int]:
    """({precision: TFLite flatbuffer}, calibration samples used), each conversion timed into `timings`."""
    blobs: dict[Precision, bytes] = {}
    n_cal = 0
    for p, lowered in lowered_for.items():
        n = len(calibration) if p is Precision.INT8 and hasattr(calibration, "__len__") else None
        name = f"tflite {p.value}" + (f" (calibration: {min(n, max_calibration_samples or n)} samples, "
                                      f"{calibration_method})" if n else "")
        with timed_stage(on_stage, name, timings, f"convert_{p.value}_s"):
            rep = None
            if p is Precision.INT8:
                rep, n_cal = _representative(lowered, calibration, input_layout, max_calibration_samples)
            blobs[p] = _tflite_bytes(lowered, p, representative=rep, io_dtype=io_dtype,
                                     calibration_method=calibration_method, calibration=calibration, notes=notes,
                                     float_ops=float_ops if p is Precision.INT8 else ())
    return blobs, n_cal


def _refine(blobs: dict[Precision, bytes], lowered: Lowered, lowered_int8: Lowered, *, calibration,
            input_layout: InputLayout, n_cal: int, kind: BiasCorrection, bias_samples: int, rounding: WeightRounding,
            rounding_samples: int, timings: dict[str, float], notes: dict, on_stage: OnStage | None):
    """Weight rounding + bias correction of the INT8 blob in `blobs` (int8_refine.py), in place; what they did goes
    to `notes` (weight rounding) and the returned Int8Refinement (bias correction). None when nothing ran."""
    if Precision.INT8 not in blobs:
        return None
    if len(lowered_int8.input_names) != 1:  # single-input models only; the report says so
        if rounding is not WeightRounding.NEAREST:
            notes["weight_rounding"] = {"method": rounding.value, "applied": False,
                                        "reason": "models with several inputs keep TensorFlow's nearest rounding"}
        return None
    # the float reference must come from the same lowering as the INT8 model (tensor names must match)
    float_ref = blobs.get(Precision.FP32) if lowered_int8 is lowered else None
    num = max(bias_samples, rounding_samples if rounding is not WeightRounding.NEAREST else 0)
    refined = refine_int8(
        blobs[Precision.INT8], inputs=_calibration_inputs(lowered_int8, calibration, input_layout, min(num, n_cal)),
        float_model=lambda: float_ref or _tflite_bytes(lowered_int8, Precision.FP32), bias_correction=kind,
        bias_samples=bias_samples, weight_rounding=rounding, rounding_samples=rounding_samples, timings=timings,
        on_stage=on_stage)
    blobs[Precision.INT8] = refined.model
    if refined.weight_rounding is not None:
        notes["weight_rounding"] = refined.weight_rounding
    return refined


@dataclass(frozen=True)
class _Written:
    artifacts: dict[str, Path]
    ops: dict[str, dict[str, int]]
    float_tensors: dict[str, list[str]]
    tensor_maps: dict[str, dict[str, TensorOrigin]]
    tensor_map_files: dict[str, Path]


def _write_artifacts(out_dir: Path, blobs: dict[Precision, bytes], lowered_for: dict[Precision, Lowered], *,
                     channel_perms: dict[str, list[int]], io_dtype: IODtype, input_layout: InputLayout) -> _Written:
    """Inspect every model (op histogram, tensor map, float tensors left in INT8), then write each
    `model_<precision>.tflite` and its `model_<precision>.tensormap.json` atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ops, floats, tmaps = {}, {}, {}
    for p, blob in blobs.items():
        interp = _interpreter(model_content=blob)
        ops[p.value] = _histogram_of(interp)
        tmaps[p.value] = full_tensor_map(interp, lowered_for[p], channel_perms)
        if p is Precision.INT8:
            floats[p.value] = _float_tensors(interp, io_dtype)
    artifacts, map_files = {}, {}
    for p, blob in blobs.items():
        path = out_dir / artifact_filename(p)
        atomic_write_bytes(path, blob)
        artifacts[p.value] = path.resolve()
        map_path = tensor_map_path(path)
        save_tensor_map(map_path, tensors=tmaps[p.value], channel_permutations=channel_perms,
                        input_layout=input_layout.value)
        map_files[p.value] = map_path.resolve()
    return _Written(artifacts, ops, floats, tmaps, map_files)


def convert(
    onnx_model_or_path: onnx.ModelProto | str | os.PathLike,
    *,
    out_dir: str | os.PathLike,
    precisions: Iterable[Precision | str] = (Precision.FP32,),
    calibration: Iterable[Mapping[str, np.ndarray]] | None = None,
    io_dtype: IODtype | str = IODtype.INT8,
    input_layout: InputLayout | str = InputLayout.NHWC,
    max_calibration_samples: int | None = None,
    calibration_method: str | None = None,
    bias_correction_samples: int = 8,
    bias_correction: BiasCorrection | str = BiasCorrection.EMPIRICAL,
    weight_rounding: WeightRounding | str = WeightRounding.NEAREST,
    rounding_samples: int = 16,
    equalize: bool = False,
    grouped_shuffle_form: str = "transpose",
    shuffle_piece_form: str = "slices",
    on_stage: OnStage | None = None,
    output_layout: InputLayout | str | None = None,
) -> ConversionResult:
    """Convert a static-shape ONNX model (simplified, opset >= 11) to TFLite files in `out_dir`.

    Inputs of the TFLite models: 4-D inputs NHWC float32 (or NCHW with `input_layout="nchw"`); int8/uint8 for
    `int8` unless `io_dtype="float"`. Outputs: logits in ONNX layout; 4-D outputs in `output_layout` (nchw: the
    source model's layout, one TRANSPOSE each; nhwc; default: the input layout), named as the ONNX
    model names them, with a `serving_default` signature over the ONNX names (signature.py).
    `calibration` (needed for int8): an iterable with len() of {input_name: float32 NCHW array (batch 1)}.
    `calibration_method`: minmax (TensorFlow's recorded ranges), percentile (edgeport.calibration's outlier-
    clipped ranges written over them before quantization), per-tensor (each activation tensor's best candidate on a
    calibration hold-out: calibration/range_select.py) or auto; None: edgeport.options.default_calibration_method
    (per-tensor; minmax for float / uint8 I/O). `bias_correction_samples`: INT8 biases are corrected
    layer by layer for the mean shift that quantization causes, measured against the fp32 model on that many
    calibration samples (bias_correction.py; 0 turns it off); `bias_correction` chooses how (BiasCorrection:
    analytic from float statistics, empirical per layer, none). `weight_rounding`: nearest (TensorFlow's), adaptive
    (each weight up or down by its layer's output error on `rounding_samples` calibration inputs, before bias
    correction: weight_rounding.py) or sequential (the same layer by layer on the INT8 model's own inputs, biases
    refitted with the weights; not with analytic bias correction). `equalize`: cross-layer equalization of conv pairs
    before everything else (export/equalization.py; exact in real arithmetic, every precision gets it).
    `grouped_shuffle_form`: the exact form kept for a
    channel shuffle that feeds a grouped conv (ShuffleNetV1): transpose | slices | dense (shuffle.GroupedShuffleForm).
    `shuffle_piece_form`: how the channel pieces that absorbed shuffles read are produced (ShuffleNetV2):
    slices | convs (shuffle.PieceForm; which is faster depends on the CPU). `on_stage`: told when each stage
    (passes + lowering, each precision, bias correction, writing) starts and ends (progress; see OnStage).
    Files: `model_<precision>.tflite` and, beside each, `model_<precision>.tensormap.json` (tensor_map.py: which ONNX
    tensor each TFLite tensor holds). All models are converted in memory first, then each file is written
    atomically; an unsupported op raises UnsupportedOpError before anything is written.
    """
    t0 = time.perf_counter()
    precs, io_dtype, input_layout, calibration_method = _checked_options(
        precisions, io_dtype=io_dtype, input_layout=input_layout, calibration_method=calibration_method,
        calibration=calibration)
    kind = _choice(BiasCorrection, bias_correction, "bias correction")
    rounding = _choice(WeightRounding, weight_rounding, "weight rounding")
    check_int8_refinement(weight_rounding=rounding.value, bias_correction=kind.value)
    timings: dict[str, float] = {}
    notes: dict = {}
    model = load_onnx_model(onnx_model_or_path)
    timings["load_s"] = time.perf_counter() - t0

    if equalize:
        model, eq = equalize_model(model)
        notes["equalization"] = eq.as_dict()
    with timed_stage(on_stage, "shuffle pass + NHWC lowering", timings, "passes_s"):
        model, channel_perms, shuffle_stats = _shuffle_pass(model, grouped_form=grouped_shuffle_form,
                                                            piece_form=shuffle_piece_form)
        t = time.perf_counter()
        output_layout = input_layout if output_layout is None else InputLayout(output_layout)
        lowered, lowered_int8, float_ops = _lowerings(model, precs, input_layout=input_layout,
                                                      output_layout=output_layout)
        lowered_for = {p: lowered_int8 if p is Precision.INT8 else lowered for p in precs}
        timings["lower_s"] = time.perf_counter() - t
    timings["passes_s"] -= timings["lower_s"]

    blobs, n_cal = _tflite_blobs(lowered_for, calibration=calibration, io_dtype=io_dtype, input_layout=input_layout,
                                 max_calibration_samples=max_calibration_samples,
                                 calibration_method=calibration_method, timings=timings, notes=notes,
                                 on_stage=on_stage, float_ops=float_ops)
    refined = _refine(blobs, lowered, lowered_int8, calibration=calibration, input_layout=input_layout, n_cal=n_cal,
                      kind=kind, bias_samples=bias_correction_samples, rounding=rounding,
                      rounding_samples=rounding_samples, timings=timings, notes=notes, on_stage=on_stage)

    if Precision.INT8 in blobs:  # after bias correction: it pairs INT8 and float tensors by name and position
        blobs[Precision.INT8], _ = unshare_conv_pads(blobs[Precision.INT8])
        float_ops = kept_float(blobs[Precision.INT8], float_ops, lowered_int8.scope_to_onnx)
    blobs = {p: name_io(b, input_names=lowered_for[p].input_names, output_names=lowered_for[p].output_names)
             for p, b in blobs.items()}

    with timed_stage(on_stage, "write + tensor maps", timings, "write_s"):
        written = _write_artifacts(Path(out_dir), blobs, lowered_for, channel_perms=channel_perms, io_dtype=io_dtype,
                                   input_layout=input_layout)
    timings["total_s"] = time.perf_counter() - t0
    return ConversionResult(
        out_dir=Path(out_dir).resolve(), artifacts=written.artifacts, ops=written.ops, timings=timings,
        input_layout=input_layout, io_dtype=io_dtype, input_names=lowered.input_names,
        input_shapes=lowered.input_shapes, output_names=lowered.output_names, output_perms=lowered.output_perms,
        float_tensors=written.float_tensors, tensor_map=written.tensor_maps, tensor_map_files=written.tensor_map_files,
        channel_permutations=channel_perms, shuffle_pass_applied=True, shuffle_pass=shuffle_stats,
        layout_transposes=lowered.transposes, boundary_transposes=lowered.boundary_transposes,
        calibration_samples=n_cal, bias_correction=refined.bias_correction if refined else None,
        calibration=notes or None, output_layout=output_layout, int8_float_ops=float_ops)
