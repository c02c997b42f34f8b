"""The converter's speed targets, measured side by side in one process (ratios, not absolute times, are the result):

1. ShuffleNet lower bound: INT8 TFLite (1 thread, XNNPACK) of `shufflenet_v2_x1_0`, `augshufflenet_x1_0` and
   `shufflenet_v1_g3_x1_0` against the same network built with `channel_shuffle=False` (identical convolutions and
   FLOPs, no shuffles: no correct conversion can be faster), converted by the same converter. Target: <= 1.10x.
   The other shuffle piece form (`shuffle_pass.PieceForm.CONVS`; default SLICES) is timed in the same rotation.
2. fp32 TFLite (XNNPACK) vs ONNX Runtime fp32 (CPU EP, ORT_ENABLE_ALL), 1 thread, for every zoo model (or --models).
   Target: TFLite no slower than ORT (ratio <= 1.00).
3. Conversion time of ShuffleNetV2 1.0x to fp32 + INT8 TFLite (64 calibration samples, bias correction included).
   Target: <= 30 s on this machine.
4. Shuffle forms (`--parts forms`): ShuffleNetV1 g3's shuffles feed grouped convs and cannot be absorbed; each exact
   form the pass can keep (GroupedShuffleForm: transpose, slices, dense) is converted and timed against the bound.
5. Kernels (`--parts kernels`): single ops at zoo shapes (5x5 and 3x3 depthwise, 1x1 and grouped 1x1 convs, padded
   pools), fp32 TFLite vs ORT: which kernels decide part 2 where TFLite loses. Includes the exact rewrite of a 5x5
   depthwise conv into four unipass-sized pieces (checked against the plain op before it is timed).
6. INT8 (`--parts int8`): INT8 against fp32 TFLite for every zoo model (or --models), whether XNNPACK runs the whole
   INT8 graph, and how many tensors stayed float.

Timing: every configuration is warmed up, then timed in `--rounds` rotating rounds of `--runs` inferences, the
samples pooled; medians are printed. Ratios are paired: the median over rounds of (this round's median of A / this
round's median of B), with the 10th-90th percentile of those per-round ratios where it decides a target. Short
rounds (5 runs) keep a burst of noise from landing on one configuration. Random-init weights with BatchNorm statistics from real-photo crops: fp32 latency does not depend on
the values, but INT8 does through its scales (a raw random init's activations shrink to ~1e-6, where XNNPACK declines
some INT8 ops), so the networks are given the activation scales of a working one.

    python benchmarks/converter_speed.py                       # all parts, all zoo models for part 2
    python benchmarks/converter_speed.py --parts bound,time    # the quick parts only
    python benchmarks/converter_speed.py --models mobilenet_v2,ghostnet_x1_0 --out docs/converter_speed.md
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

BOUND_MODELS = ("shufflenet_v2_x1_0", "augshufflenet_x1_0", "shufflenet_v1_g3_x1_0")


def bn_calibrated_model(name: str, **kwargs):
    """Zoo model `name` with random-init weights (seed 0) and BatchNorm statistics taken from 16 real-photo crops
    (calibrate_batchnorm), so INT8 activation scales are those of a working network rather than the vanishing ones of
    a raw random init. Shared with runtime_speedups.py."""
    import torch

    from edgeport.calibration import Split, load_samples
    from edgeport.models import build_model, calibrate_batchnorm, get_spec

    torch.manual_seed(0)
    crops = load_samples("default", model_spec=get_spec(name), num=16, seed=1, split=Split.VALIDATION)
    x = torch.from_numpy(np.concatenate([next(iter(r.values())) for r in crops]))
    return calibrate_batchnorm(build_model(name, **kwargs), inputs=x)


def _export(name: str, work: Path, **kwargs) -> Path:
    from edgeport.export.onnx_export import export_onnx
    from edgeport.models import get_spec

    tag = name + "".join(f"_{k}{v}" for k, v in kwargs.items())
    path = work / f"{tag}.onnx"
    export_onnx(bn_calibrated_model(name, **kwargs), input_shape=(1, *get_spec(name).input_shape), path=path)
    return path


def _convert(onnx_path: Path, name: str, precisions, work: Path, num_calibration: int = 64, tag: str = "", **kw):
    from edgeport.native import captured_native_output
    from edgeport.calibration import Split, load_samples
    from edgeport.export.tflite import convert
    from edgeport.models import get_spec

    cal = None
    if "int8" in precisions:
        cal = load_samples("default", model_spec=get_spec(name), num=num_calibration, split=Split.CALIBRATION)
    out = work / (onnx_path.stem + tag)
    t0 = time.perf_counter()
    with captured_native_output():
        res = convert(onnx_path, out_dir=out, precisions=list(precisions), calibration=cal, **kw)
    return res, time.perf_counter() - t0


class _Tflite:
    def __init__(self, path: Path, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.it = Interpreter(model_path=str(path), num_threads=threads)
        self.it.allocate_tensors()
        d = self.it.get_input_details()[0]
        rng = np.random.default_rng(0)
        x = rng.standard_normal(d["shape"]).astype(np.float32)
        if d["dtype"] != np.float32:
            x = rng.integers(-100, 100, size=d["shape"]).astype(d["dtype"])
        self.idx, self.x = d["index"], x
        self.out = self.it.get_output_details()[0]["index"]

    def __call__(self):
        self.it.set_tensor(self.idx, self.x)
        self.it.invoke()
        return self.it.get_tensor(self.out)


class _Ort:
    def __init__(self, path: Path, threads: int = 1):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        i = self.s.get_inputs()[0]
        self.feed = {i.name: np.random.default_rng(0).standard_normal(i.shape).astype(np.float32)}

    def __call__(self):
        return self.s.run(None, self.feed)


def interleaved(configs: dict[str, object], *, rounds: int, runs: int, warmup: int = 5) -> dict[str, dict]:
    """{name: callable} -> {name: {p50, p90, mean, n, rounds}} in ms, configurations rotated round by round.
    `rounds` is the list of per-round medians (for ratios paired round by round: `paired_ratio`)."""
    samples: dict[str, list[float]] = {k: [] for k in configs}
    per_round: dict[str, list[float]] = {k: [] for k in configs}
    for fn in configs.values():
        for _ in range(warmup):
            fn()
    names = list(configs)
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for k in order:
            fn = configs[k]
            this = []
            for _ in range(runs):
                t = time.perf_counter()
                fn()
                this.append((time.perf_counter() - t) * 1e3)
            samples[k] += this
            per_round[k].append(float(np.median(this)))
    return {k: {"p50": float(np.median(v)), "p90": float(np.percentile(v, 90)), "mean": float(np.mean(v)),
                "n": len(v), "rounds": per_round[k]} for k, v in samples.items()}


def paired_ratio(t: dict[str, dict], a: str, b: str) -> tuple[float, float, float]:
    """Median, p10 and p90 over rounds of (round median of a) / (round median of b): both measured within the same
    few milliseconds, so machine-wide slow phases cancel; the spread says how sure the median is."""
    r = np.asarray(t[a]["rounds"]) / np.asarray(t[b]["rounds"])
    return float(np.median(r)), float(np.percentile(r, 10)), float(np.percentile(r, 90))


def machine() -> str:
    import ai_edge_litert
    import onnxruntime
    import tensorflow as tf

    cpu = platform.processor() or ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    from importlib.metadata import version

    return (f"{platform.machine()} {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
            f"TensorFlow {tf.__version__}, ai-edge-litert {version('ai-edge-litert')}, "
            f"onnxruntime {onnxruntime.__version__}")


_COPY_OPS = {"SLICE": "out", "STRIDED_SLICE": "out", "CONCATENATION": "in", "SPLIT": "out", "SPLIT_V": "out"}


def copy_rows(path: Path) -> tuple[int, int]:
    """(channel-copy ops, pixel rows they copy per inference). XNNPACK copies a channel slice, split or concatenation
    of an NHWC tensor one pixel at a time, a row of that piece's channels each: the cost of such an op grows with
    pixels x pieces, nearly regardless of how many channels a piece holds."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    shapes = {d["index"]: d["shape"] for d in it.get_tensor_details()}
    ops = rows = 0
    for d in it._get_ops_details():
        side = _COPY_OPS.get(d["op_name"])
        if side is None:
            continue
        out_shape = shapes[d["outputs"][0]]
        if len(out_shape) != 4:
            continue
        pieces = [i for i in d["inputs"] if len(shapes[i]) == 4] if side == "in" else list(d["outputs"])
        ops += 1
        rows += int(np.prod(out_shape[:3])) * len(pieces)
    return ops, rows


def part_bound(work: Path, *, rounds: int, runs: int, log) -> list[str]:
    lines = ["| model | INT8 p50 ms | lower bound p50 ms | INT8 / bound (target <= 1.10) | per-round p10-p90 | "
             "pieces as convs: INT8 / bound | fp32 p50 ms | fp32 bound ms | fp32 / bound | "
             "pieces as convs: fp32 / bound | INT8 channel copies: ops / pixel rows (bound) |",
             "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|"]
    for name in BOUND_MODELS:
        log(f"[bound] {name}: export + convert (model, its shuffle-free twin, and the other shuffle piece form)")
        onnx_path = _export(name, work)
        real, _ = _convert(onnx_path, name, ("fp32", "int8"), work)
        bound, _ = _convert(_export(name, work, channel_shuffle=False), name, ("fp32", "int8"), work)
        # PieceForm.CONVS (the default is SLICES) only differs where shuffles were absorbed (not ShuffleNetV1)
        alt = None
        if real.shuffle_pass and real.shuffle_pass["absorbed"]:
            alt, _ = _convert(onnx_path, name, ("fp32", "int8"), work, tag="_convs", shuffle_piece_form="convs")
        # each precision's configurations rotate on their own: an fp32 model between two INT8 timings would leave
        # 4x the weights in the caches the INT8 models then compete for
        log(f"[bound] {name}: timing {rounds} rounds x {runs} runs, INT8 models then fp32 models")
        t = {}
        for prec in ("int8", "fp32"):
            cfg = {prec: _Tflite(real.artifacts[prec]), f"{prec}_bound": _Tflite(bound.artifacts[prec])}
            if alt is not None:
                cfg[f"{prec}_convs"] = _Tflite(alt.artifacts[prec])
            t |= interleaved(cfg, rounds=rounds, runs=runs)
        r8, lo8, hi8 = paired_ratio(t, "int8", "int8_bound")
        r32, _, _ = paired_ratio(t, "fp32", "fp32_bound")
        a8, a32 = ((f"{paired_ratio(t, f'{p}_convs', f'{p}_bound')[0]:.3f}" if alt is not None else "-")
                   for p in ("int8", "fp32"))
        (ops, rows), (bops, brows) = copy_rows(real.artifacts["int8"]), copy_rows(bound.artifacts["int8"])
        lines.append(f"| `{name}` | {t['int8']['p50']:.3f} | {t['int8_bound']['p50']:.3f} | "
                     f"**{r8:.3f}** {'ok' if r8 <= 1.10 else 'MISSED'} | {lo8:.3f}-{hi8:.3f} | {a8} | "
                     f"{t['fp32']['p50']:.3f} | {t['fp32_bound']['p50']:.3f} | {r32:.3f} | {a32} | "
                     f"{ops} / {rows / 1e3:.1f}k ({bops} / {brows / 1e3:.1f}k) |")
        log(lines[-1])
    return lines


def part_forms(work: Path, *, rounds: int, runs: int, log) -> list[str]:
    from edgeport.export.tflite.shuffle import GroupedShuffleForm

    name = "shufflenet_v1_g3_x1_0"
    lines = [f"`{name}`: each exact form of a shuffle that feeds a grouped conv, against the shuffle-free bound.", "",
             "| form | ops added (INT8 model) | INT8 p50 ms | INT8 / bound | fp32 p50 ms | fp32 / bound |",
             "|---|---|---:|---:|---:|---:|"]
    onnx_path = _export(name, work)
    bound, _ = _convert(_export(name, work, channel_shuffle=False), name, ("fp32", "int8"), work)
    cfg, added = {}, {}
    for form in GroupedShuffleForm:
        log(f"[forms] {name}: convert with grouped_shuffle_form={form.value}")
        res, _ = _convert(onnx_path, name, ("fp32", "int8"), work, tag=f"_{form.value}", grouped_shuffle_form=form.value,
                          bias_correction_samples=0)
        cfg[f"int8_{form.value}"] = _Tflite(res.artifacts["int8"])
        cfg[f"fp32_{form.value}"] = _Tflite(res.artifacts["fp32"])
        diff = {k: v - bound.ops["int8"].get(k, 0) for k, v in res.ops["int8"].items()
                if v != bound.ops["int8"].get(k, 0)}
        added[form] = ", ".join(f"{k} {v:+d}" for k, v in sorted(diff.items())) or "none (conv MACs x3 where dense)"
    cfg["int8_bound"], cfg["fp32_bound"] = _Tflite(bound.artifacts["int8"]), _Tflite(bound.artifacts["fp32"])
    log(f"[forms] timing {rounds} rounds x {runs} runs")
    t = interleaved(cfg, rounds=rounds, runs=runs)
    for form in GroupedShuffleForm:
        i8, f32 = t[f"int8_{form.value}"]["p50"], t[f"fp32_{form.value}"]["p50"]
        r8 = paired_ratio(t, f"int8_{form.value}", "int8_bound")[0]
        r32 = paired_ratio(t, f"fp32_{form.value}", "fp32_bound")[0]
        lines.append(f"| {form.value} | {added[form]} | {i8:.3f} | **{r8:.3f}** | {f32:.3f} | {r32:.3f} |")
    lines.append(f"| bound (no shuffle) | | {t['int8_bound']['p50']:.3f} | 1.000 | {t['fp32_bound']['p50']:.3f} | 1.000 |")
    return lines


# Single ops at shapes from the zoo, each between two ReLUs (x -> Relu -> op -> Relu; the second ReLU fuses into the
# op in both runtimes): which kernels decide the whole-model fp32 comparison. The input ReLU and the call overhead are
# in both columns, so a kernel's own ratio is further from 1 than the row's.
KERNEL_CASES = (
    # (label, op, NCHW input shape, attributes, weight shape or None)
    ("depthwise 5x5 /1, 480 ch, 14x14 (MnasNet, FBNet)", "Conv", (1, 480, 14, 14),
     dict(group=480, kernel_shape=[5, 5], pads=[2, 2, 2, 2]), (480, 1, 5, 5)),
    ("same, written as 4 dilated depthwise pieces + 3 ADD (exact)", "Dw5x5Pieces", (1, 480, 14, 14),
     dict(group=480, kernel_shape=[5, 5], pads=[2, 2, 2, 2]), (480, 1, 5, 5)),
    ("depthwise 5x5 /1, 120 ch, 28x28", "Conv", (1, 120, 28, 28),
     dict(group=120, kernel_shape=[5, 5], pads=[2, 2, 2, 2]), (120, 1, 5, 5)),
    ("same, written as 4 dilated depthwise pieces + 3 ADD (exact)", "Dw5x5Pieces", (1, 120, 28, 28),
     dict(group=120, kernel_shape=[5, 5], pads=[2, 2, 2, 2]), (120, 1, 5, 5)),
    ("depthwise 3x3 /1, 480 ch, 14x14", "Conv", (1, 480, 14, 14),
     dict(group=480, kernel_shape=[3, 3], pads=[1, 1, 1, 1]), (480, 1, 3, 3)),
    ("taps: depthwise 2x5 /1, 480 ch, 14x14 (10 taps)", "Conv", (1, 480, 14, 14),
     dict(group=480, kernel_shape=[2, 5], pads=[0, 2, 1, 2]), (480, 1, 2, 5)),
    ("taps: depthwise 7x7 /1, 480 ch, 14x14 (49 taps; no zoo model has one)", "Conv", (1, 480, 14, 14),
     dict(group=480, kernel_shape=[7, 7], pads=[3, 3, 3, 3]), (480, 1, 7, 7)),
    ("depthwise 3x3 /1, 144 ch, 56x56", "Conv", (1, 144, 56, 56),
     dict(group=144, kernel_shape=[3, 3], pads=[1, 1, 1, 1]), (144, 1, 3, 3)),
    ("1x1 conv 120 -> 40, 28x28", "Conv", (1, 120, 28, 28), dict(kernel_shape=[1, 1]), (40, 120, 1, 1)),
    ("1x1 conv 80 -> 480, 14x14", "Conv", (1, 80, 14, 14), dict(kernel_shape=[1, 1]), (480, 80, 1, 1)),
    ("grouped 1x1 g3 240 -> 60, 28x28 (ShuffleNetV1 g3)", "Conv", (1, 240, 28, 28),
     dict(group=3, kernel_shape=[1, 1]), (60, 80, 1, 1)),
    ("same, dense with zero blocks (3x the multiply-adds; exact)", "GroupedAsDense", (1, 240, 28, 28),
     dict(group=3, kernel_shape=[1, 1]), (60, 80, 1, 1)),
    ("same, SPLIT + one conv per group + CONCATENATION (exact)", "GroupedAsSplit", (1, 240, 28, 28),
     dict(group=3, kernel_shape=[1, 1]), (60, 80, 1, 1)),
    ("grouped 1x1 g4 272 -> 68, 28x28 (ShuffleNetV1 g4)", "Conv", (1, 272, 28, 28),
     dict(group=4, kernel_shape=[1, 1]), (68, 68, 1, 1)),
    ("grouped 1x1 g8 192 -> 48, 28x28 (ShuffleNetV1 g8 x0.5)", "Conv", (1, 192, 28, 28),
     dict(group=8, kernel_shape=[1, 1]), (48, 24, 1, 1)),
    ("3x3 conv 64 -> 256, 28x28 (EfficientNetV2-S fused-MBConv)", "Conv", (1, 64, 28, 28),
     dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), (256, 64, 3, 3)),
    ("max-pool 3x3 /2 pad 1, 16 ch, 112x112 (stems)", "MaxPool", (1, 16, 112, 112),
     dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), None),
    ("avg-pool 3x3 /2 pad 1 incl. pad, 16 ch, 56x56 (ShuffleNetV1)", "AveragePool", (1, 16, 56, 56),
     dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1), None),
)


def _dw5x5_pieces(inits, attrs):
    """A 5x5 depthwise conv (pads 2) as the exact sum of four depthwise convs with dilation 2, one per parity class
    of its taps: (even rows, even cols) 3x3, (even, odd) 3x2, (odd, even) 2x3, (odd, odd) 2x2. Each piece is at most
    9 taps, so XNNPACK runs it with its 9-tap kernel (in ai-edge-litert 2.3 on x86, 10 to 25 taps all run the one
    25-tap kernel at the same cost: the "taps" rows). The question this row answers: is a rewrite a converter could
    emit faster than XNNPACK's own 5x5? (It is not: see the table.)"""
    from onnx import helper, numpy_helper

    w = numpy_helper.to_array(inits[0])
    nodes = []
    parity_classes = (((0, 2, 4), (0, 2, 4)), ((0, 2, 4), (1, 3)), ((1, 3), (0, 2, 4)), ((1, 3), (1, 3)))
    for n, (rows, cols) in enumerate(parity_classes):
        piece = np.ascontiguousarray(w[:, :, list(rows)][:, :, :, list(cols)])
        top, left = 2 - rows[0], 2 - cols[0]
        pads = [top, left, 2 * (len(rows) - 1) - top, 2 * (len(cols) - 1) - left]
        inits = [*inits, numpy_helper.from_array(piece, f"w{n}")]
        nodes.append(helper.make_node("Conv", ["r", f"w{n}"] + (["b"] if n == 0 else []), [f"p{n}"], group=w.shape[0],
                                      kernel_shape=[len(rows), len(cols)], dilations=[2, 2], pads=pads))
    nodes += [helper.make_node("Add", ["p0", "p1"], ["s0"]), helper.make_node("Add", ["p2", "p3"], ["s1"]),
              helper.make_node("Add", ["s0", "s1"], ["y"])]
    return nodes, [t for t in inits if t.name != "w"]


def _grouped(inits, attrs):
    """(weight, bias, groups, out channels per group, in channels per group, the conv's attributes without group)."""
    from onnx import numpy_helper

    w, b = (numpy_helper.to_array(t) for t in inits)
    g = attrs["group"]
    return w, b, g, w.shape[0] // g, w.shape[1], {k: v for k, v in attrs.items() if k != "group"}


def _grouped_as_dense(inits, attrs):
    """A grouped conv as one dense conv whose weight is block-diagonal (zeros between the groups)."""
    from onnx import helper, numpy_helper

    w, b, g, co, ci, conv_attrs = _grouped(inits, attrs)
    dense = np.zeros((w.shape[0], ci * g, *w.shape[2:]), np.float32)
    for k in range(g):
        dense[k * co:(k + 1) * co, k * ci:(k + 1) * ci] = w[k * co:(k + 1) * co]
    node = helper.make_node("Conv", ["r", "wd", "b"], ["y"], **conv_attrs)
    return [node], [numpy_helper.from_array(dense, "wd"), numpy_helper.from_array(b, "b")]


def _grouped_as_split(inits, attrs):
    """A grouped conv as SPLIT of the input channels, one dense conv per group, CONCATENATION of the outputs."""
    from onnx import helper, numpy_helper

    w, b, g, co, ci, conv_attrs = _grouped(inits, attrs)
    new = [numpy_helper.from_array(np.array([ci] * g, np.int64), "split")]
    nodes = [helper.make_node("Split", ["r", "split"], [f"x{k}" for k in range(g)], axis=1)]
    for k in range(g):
        new += [numpy_helper.from_array(w[k * co:(k + 1) * co], f"w{k}"),
                numpy_helper.from_array(b[k * co:(k + 1) * co], f"b{k}")]
        nodes.append(helper.make_node("Conv", [f"x{k}", f"w{k}", f"b{k}"], [f"y{k}"], **conv_attrs))
    nodes.append(helper.make_node("Concat", [f"y{k}" for k in range(g)], ["y"], axis=1))
    return nodes, new


# Exact rewrites a converter could emit instead of the op in the row above them (same shape, attributes and seeded
# weights; part_kernels checks the outputs agree before timing).
REWRITES = {"Dw5x5Pieces": _dw5x5_pieces, "GroupedAsDense": _grouped_as_dense, "GroupedAsSplit": _grouped_as_split}


def _single_op_onnx(path: Path, op: str, shape, attrs: dict, wshape) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits, inputs = [], ["r"]
    if wshape is not None:
        inits = [numpy_helper.from_array((rng.standard_normal(wshape) * 0.1).astype(np.float32), "w"),
                 numpy_helper.from_array(rng.standard_normal(wshape[0]).astype(np.float32), "b")]
        inputs += ["w", "b"]
    if op in REWRITES:
        body, inits = REWRITES[op](inits, attrs)
    else:
        body = [helper.make_node(op, inputs, ["y"], **attrs)]
    nodes = [helper.make_node("Relu", ["input"], ["r"]), *body, helper.make_node("Relu", ["y"], ["output"])]
    graph = helper.make_graph(nodes, "single_op", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(onnx.shape_inference.infer_shapes(model), path)
    return path


def part_kernels(work: Path, *, rounds: int, runs: int, log) -> list[str]:
    from edgeport.native import captured_native_output
    from edgeport.export.tflite import convert

    lines = ["| op (x -> ReLU -> op -> ReLU) | TFLite fp32 us | ORT fp32 us (plain op) | TFLite / ORT | TFLite ops |",
             "|---|---:|---:|---:|---|"]
    cfg, ops, plain = {}, {}, {}
    for k, (label, op, shape, attrs, wshape) in enumerate(KERNEL_CASES):
        path = _single_op_onnx(work / f"kernel{k}.onnx", op, shape, attrs, wshape)
        with captured_native_output():
            res = convert(path, out_dir=work / f"kernel{k}", precisions=["fp32"])
        cfg[f"tfl{k}"] = _Tflite(res.artifacts["fp32"])
        if op not in REWRITES:
            cfg[f"ort{k}"] = _Ort(path)
        else:  # the plain op it rewrites: the nearest row above with the same shape and weights
            j = max(i for i in range(k)
                    if KERNEL_CASES[i][1] not in REWRITES and KERNEL_CASES[i][2:] == KERNEL_CASES[k][2:])
            ref, got = cfg[f"ort{j}"](), _Ort(path)()
            err = float(np.abs(ref[0] - got[0]).max() / np.abs(ref[0]).max())
            if err > 1e-5:
                raise RuntimeError(f"{label}: not an exact rewrite of {KERNEL_CASES[j][0]!r} (relative error {err:.2e})")
            plain[k] = j
        ops[k] = ", ".join(f"{o} {n}" for o, n in sorted(res.ops["fp32"].items()) if o != "RELU")
    log(f"[kernels] timing {len(KERNEL_CASES)} single-op models, {rounds} rounds x {runs} runs")
    t = interleaved(cfg, rounds=rounds, runs=runs)
    for k, (label, *_rest) in enumerate(KERNEL_CASES):
        # a rewrite is compared with ORT running the plain op (what the rewrite would have to beat), and with the
        # plain op in TFLite
        j = plain.get(k, k)
        ratio = paired_ratio(t, f"tfl{k}", f"ort{j}")[0]
        note = f" ({paired_ratio(t, f'tfl{k}', f'tfl{j}')[0]:.2f}x the plain op in TFLite)" if k in plain else ""
        lines.append(f"| {label} | {t[f'tfl{k}']['p50'] * 1e3:.1f} | {t[f'ort{j}']['p50'] * 1e3:.1f} | "
                     f"{ratio:.2f} | {ops[k]}{note} |")
    return lines


def part_ort(work: Path, models: list[str], *, rounds: int, runs: int, log) -> list[str]:
    lines = ["| model | TFLite fp32 p50 ms | ORT fp32 p50 ms | TFLite / ORT (target <= 1.00) |", "|---|---:|---:|---:|"]
    worse = []
    for k, name in enumerate(models):
        log(f"[fp32 vs ORT] {k + 1}/{len(models)} {name}")
        try:
            onnx_path = _export(name, work)
            res, _ = _convert(onnx_path, name, ("fp32",), work)
        except Exception as e:  # a model that fails here is a row, not a crash
            lines.append(f"| `{name}` | failed: {type(e).__name__}: {str(e)[:80]} | | |")
            continue
        t = interleaved({"tflite": _Tflite(res.artifacts["fp32"]), "ort": _Ort(onnx_path)}, rounds=rounds, runs=runs)
        ratio = paired_ratio(t, "tflite", "ort")[0]
        if ratio > 1.0:
            worse.append(name)
        lines.append(f"| `{name}` | {t['tflite']['p50']:.3f} | {t['ort']['p50']:.3f} | {ratio:.2f} |")
        log(lines[-1])
    lines.append("")
    lines.append(f"TFLite fp32 slower than ORT fp32 on: {', '.join(worse) if worse else 'none'}.")
    return lines


def part_int8(work: Path, models: list[str], *, rounds: int, runs: int, log) -> list[str]:
    from edgeport.export.tflite import xnnpack_coverage

    lines = ["| model | fp32 p50 ms | INT8 p50 ms | INT8 / fp32 | XNNPACK runs (INT8) | float tensors (INT8) |",
             "|---|---:|---:|---:|---|---:|"]
    for k, name in enumerate(models):
        log(f"[int8] {k + 1}/{len(models)} {name}")
        try:
            res, _ = _convert(_export(name, work), name, ("fp32", "int8"), work, num_calibration=32,
                              bias_correction_samples=0)
        except Exception as e:  # a model that fails here is a row, not a crash
            lines.append(f"| `{name}` | failed: {type(e).__name__}: {str(e)[:80]} | | | | |")
            continue
        t = interleaved({"fp32": _Tflite(res.artifacts["fp32"]), "int8": _Tflite(res.artifacts["int8"])},
                        rounds=rounds, runs=runs)
        ratio = paired_ratio(t, "int8", "fp32")[0]
        lines.append(f"| `{name}` | {t['fp32']['p50']:.3f} | {t['int8']['p50']:.3f} | {ratio:.2f} | "
                     f"{xnnpack_coverage(res.artifacts['int8'])} | {len(res.float_tensors['int8'])} |")
        log(lines[-1])
    return lines


def part_time(work: Path, *, log) -> list[str]:
    name = "shufflenet_v2_x1_0"
    onnx_path = _export(name, work)
    log(f"[time] {name}: fp32 + int8 conversion")
    res, seconds = _convert(onnx_path, name, ("fp32", "int8"), work)
    steps = ", ".join(f"{k} {v:.1f}s" for k, v in res.timings.items())
    return [f"ShuffleNetV2 1.0x ONNX -> fp32 + INT8 TFLite (64 calibration samples): **{seconds:.1f} s** "
            f"(target <= 30 s; {'ok' if seconds <= 30 else 'MISSED'}). Steps: {steps}."]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="bound,forms,kernels,ort,int8,time")
    ap.add_argument("--models", default=None, help="comma list for the ort and int8 parts (default: whole zoo)")
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=None, help="also write the tables as markdown here")
    args = ap.parse_args(argv)
    from edgeport.models import model_names

    parts = set(args.parts.split(","))
    models = args.models.split(",") if args.models else model_names()
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    doc = ["# Converter speed targets", "", f"Machine: {machine()}.", "",
           f"Command: `python benchmarks/converter_speed.py {' '.join(argv if argv is not None else sys.argv[1:])}`; "
           f"{args.rounds} rotating rounds x {args.runs} runs per configuration, medians of the pooled samples. "
           "Ratios come from one run; absolute times on a shared 2-core machine are noisy.", ""]
    with tempfile.TemporaryDirectory(prefix="edgeport-speed-") as tmp:
        work = Path(tmp)
        if "time" in parts:
            doc += ["## Conversion time", ""] + part_time(work, log=log) + [""]
        if "bound" in parts:
            doc += ["## ShuffleNet lower bound (INT8 and fp32 TFLite, 1 thread, XNNPACK)", ""]
            doc += part_bound(work, rounds=args.rounds, runs=args.runs, log=log) + [""]
        if "forms" in parts:
            doc += ["## ShuffleNetV1: forms of a shuffle that feeds a grouped conv (1 thread, XNNPACK)", ""]
            doc += part_forms(work, rounds=args.rounds, runs=args.runs, log=log) + [""]
        if "kernels" in parts:
            doc += ["## fp32 single ops: TFLite (XNNPACK) vs ONNX Runtime, 1 thread", ""]
            doc += part_kernels(work, rounds=args.rounds, runs=args.runs, log=log) + [""]
        if "int8" in parts:
            doc += ["## INT8 vs fp32 TFLite, 1 thread, XNNPACK (whole zoo)", ""]
            doc += part_int8(work, models, rounds=args.rounds, runs=args.runs, log=log) + [""]
        if "ort" in parts:
            doc += ["## fp32: TFLite (XNNPACK) vs ONNX Runtime, 1 thread", ""]
            doc += part_ort(work, models, rounds=args.rounds, runs=args.runs, log=log) + [""]
    text = "\n".join(doc)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
