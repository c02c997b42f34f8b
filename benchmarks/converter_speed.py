"""The converter's speed targets, measured side by side in one process (ratios, not absolute times, are the result):

1. ShuffleNet lower bound: INT8 TFLite (1 thread, XNNPACK) of `shufflenet_v2_x1_0`, `augshufflenet_x1_0` and
   `shufflenet_v1_g3_x1_0` against the same network built with `channel_shuffle=False` (identical convolutions and
   FLOPs, no shuffles: no correct conversion can be faster), converted by the same converter. Target: <= 1.10x.
2. fp32 TFLite (XNNPACK) vs ONNX Runtime fp32 (CPU EP, ORT_ENABLE_ALL), 1 thread, for every zoo model (or --models).
   Target: TFLite no slower than ORT (ratio <= 1.00).
3. Conversion time of ShuffleNetV2 1.0x to fp32 + INT8 TFLite (64 calibration samples, bias correction included).
   Target: <= 30 s on this machine.
4. Shuffle forms (`--parts forms`): ShuffleNetV1 g3's shuffles feed grouped convs and cannot be absorbed; each exact
   form the pass can keep (GroupedShuffleForm: transpose, slices, dense) is converted and timed against the bound.

Timing: every configuration is warmed up, then timed in `--rounds` rotating rounds of `--runs` inferences, the
samples pooled; medians and p90 are printed. Short rounds (5 runs) keep a burst of noise from landing on one
configuration. Random-init weights with BatchNorm statistics from real-photo crops: fp32 latency does not depend on
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


def _export(name: str, work: Path, **kwargs) -> Path:
    """Random-init weights with BatchNorm statistics taken from real-photo crops (calibrate_batchnorm), so INT8
    activation scales are those of a working network rather than the vanishing ones of a raw random init."""
    import torch

    from edgeport.calibration import Split, load_samples
    from edgeport.export.onnx_export import export_onnx
    from edgeport.models import build_model, calibrate_batchnorm, get_spec

    torch.manual_seed(0)
    spec = get_spec(name)
    crops = load_samples("default", model_spec=spec, num=16, seed=1, split=Split.VALIDATION)
    x = torch.from_numpy(np.concatenate([next(iter(r.values())) for r in crops]))
    model = calibrate_batchnorm(build_model(name, **kwargs), inputs=x)
    tag = name + "".join(f"_{k}{v}" for k, v in kwargs.items())
    path = work / f"{tag}.onnx"
    export_onnx(model, input_shape=(1, *get_spec(name).input_shape), path=path)
    return path


def _convert(onnx_path: Path, name: str, precisions, work: Path, num_calibration: int = 64, tag: str = "", **kw):
    from edgeport._native import captured_native_output
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
    """{name: callable} -> {name: {p50, p90, mean, n}} in ms, configurations rotated round by round."""
    samples: dict[str, list[float]] = {k: [] for k in configs}
    for fn in configs.values():
        for _ in range(warmup):
            fn()
    names = list(configs)
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for k in order:
            fn = configs[k]
            for _ in range(runs):
                t = time.perf_counter()
                fn()
                samples[k].append((time.perf_counter() - t) * 1e3)
    return {k: {"p50": float(np.median(v)), "p90": float(np.percentile(v, 90)), "mean": float(np.mean(v)),
                "n": len(v)} for k, v in samples.items()}


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


def part_bound(work: Path, *, rounds: int, runs: int, log) -> list[str]:
    lines = ["| model | INT8 p50 ms | lower bound p50 ms | ratio (target <= 1.10) | fp32 p50 ms | fp32 bound ms | fp32 ratio |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name in BOUND_MODELS:
        log(f"[bound] {name}: export + convert (model and its shuffle-free twin)")
        real, _ = _convert(_export(name, work), name, ("fp32", "int8"), work)
        bound, _ = _convert(_export(name, work, channel_shuffle=False), name, ("fp32", "int8"), work)
        cfg = {"int8": _Tflite(real.artifacts["int8"]), "int8_bound": _Tflite(bound.artifacts["int8"]),
               "fp32": _Tflite(real.artifacts["fp32"]), "fp32_bound": _Tflite(bound.artifacts["fp32"])}
        log(f"[bound] {name}: timing {rounds} rounds x {runs} runs")
        t = interleaved(cfg, rounds=rounds, runs=runs)
        r8 = t["int8"]["p50"] / t["int8_bound"]["p50"]
        r32 = t["fp32"]["p50"] / t["fp32_bound"]["p50"]
        lines.append(f"| `{name}` | {t['int8']['p50']:.3f} | {t['int8_bound']['p50']:.3f} | "
                     f"**{r8:.3f}** {'ok' if r8 <= 1.10 else 'MISSED'} | {t['fp32']['p50']:.3f} | "
                     f"{t['fp32_bound']['p50']:.3f} | {r32:.3f} |")
        log(lines[-1])
    return lines


def part_forms(work: Path, *, rounds: int, runs: int, log) -> list[str]:
    from edgeport.export.tflite.shuffle_pass import GroupedShuffleForm

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
        lines.append(f"| {form.value} | {added[form]} | {i8:.3f} | **{i8 / t['int8_bound']['p50']:.3f}** | "
                     f"{f32:.3f} | {f32 / t['fp32_bound']['p50']:.3f} |")
    lines.append(f"| bound (no shuffle) | | {t['int8_bound']['p50']:.3f} | 1.000 | {t['fp32_bound']['p50']:.3f} | 1.000 |")
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
        ratio = t["tflite"]["p50"] / t["ort"]["p50"]
        if ratio > 1.0:
            worse.append(name)
        lines.append(f"| `{name}` | {t['tflite']['p50']:.3f} | {t['ort']['p50']:.3f} | {ratio:.2f} |")
        log(lines[-1])
    lines.append("")
    lines.append(f"TFLite fp32 slower than ORT fp32 on: {', '.join(worse) if worse else 'none'}.")
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
    ap.add_argument("--parts", default="bound,forms,ort,time")
    ap.add_argument("--models", default=None, help="comma list for the fp32 TFLite vs ORT part (default: whole zoo)")
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
