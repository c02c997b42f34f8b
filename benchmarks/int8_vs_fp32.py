"""INT8 against fp32 TFLite (XNNPACK, 1 thread), side by side in one run -> docs/int8_speed.md.

Per model: fp32 and INT8 latency (p50 wall time and p50 CPU time of the calling thread per inference), the paired
INT8 / fp32 CPU-time ratio (median over rounds of this round's INT8 / this round's fp32, both timed within the same
few milliseconds), which INT8 ops XNNPACK leaves to TFLite's builtin kernels (`xnnpack_coverage(...).builtin_ops`),
and the INT8 model's op counts that differ from the fp32 model's (what the INT8 lowering and the quantizer changed).
CPU time is reported beside wall time because on a shared machine another process's work lands in the wall time
of whichever configuration it interrupts, not in its CPU time.

With `--profile`, each artifact also runs under `perf record` (when `perf` is installed) and the table lists the
XNNPACK micro-kernels that take most of its samples (where INT8 loses its time against fp32), and under valgrind's
callgrind (when installed), which counts the instructions per inference of XNNPACK's AVX2 kernels (valgrind does not
emulate AVX-512): the INT8 / fp32 work ratio on a CPU without AVX-512 or VNNI.

The networks are zoo models with random-init weights and BatchNorm statistics from real-photo crops
(converter_speed.bn_calibrated_model): fp32 latency does not depend on the values, INT8 latency does through its
scales, and a raw random init's activations shrink to ~1e-6, where XNNPACK declines some INT8 ops.

    python benchmarks/int8_vs_fp32.py                               # the five models of issue 19, 40 rounds
    python benchmarks/int8_vs_fp32.py --models mobilenet_v3_small --rounds 20 --work /tmp/i8 --profile
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy's BLAS threads would spin beside the timed thread
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

from converter_speed import bn_calibrated_model, machine  # noqa: E402

# the five models issue 19 found slower in INT8 than in fp32 (Intel Xeon, AVX-512 VNNI, 2026-12-02)
MODELS = ("shufflenet_v1_g8_x0_5", "mobilenet_v3_small", "ghostnet_x0_5", "espnetv2_s0_5", "espnetv2_s1_0")
PRECISIONS = ("fp32", "int8")


def convert_model(name: str, work: Path) -> dict[str, Path]:
    """{precision: .tflite} of the BN-calibrated zoo model in work/name (32 calibration photos, no bias correction:
    it changes biases, not the graph); reused when both files exist (delete work/name to convert again)."""
    out = work / name
    paths = {p: out / f"model_{p}.tflite" for p in PRECISIONS}
    if all(p.is_file() for p in paths.values()):
        return paths
    from edgeport.calibration import Split, load_samples
    from edgeport.export.onnx_export import export_onnx
    from edgeport.export.tflite import convert
    from edgeport.models import get_spec
    from edgeport.native import captured_native_output

    spec = get_spec(name)
    onnx_path = work / f"{name}.onnx"
    if not onnx_path.is_file():
        export_onnx(bn_calibrated_model(name), input_shape=(1, *spec.input_shape), path=onnx_path)
    cal = load_samples("default", model_spec=spec, num=32, split=Split.CALIBRATION)
    with captured_native_output():
        res = convert(onnx_path, out_dir=out, precisions=list(PRECISIONS), calibration=cal, bias_correction_samples=0)
    return {p: res.artifacts[p] for p in PRECISIONS}


class Timed:
    """One TFLite model on XNNPACK (default delegates, `threads` threads) with a fixed input; calling it runs one
    inference."""

    def __init__(self, path: Path, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.it = Interpreter(model_path=str(path), num_threads=threads)
        self.it.allocate_tensors()
        d = self.it.get_input_details()[0]
        rng = np.random.default_rng(0)
        x = rng.standard_normal(d["shape"]).astype(np.float32)
        if d["dtype"] != np.float32:
            x = rng.integers(-100, 100, size=d["shape"]).astype(d["dtype"])
        self.it.set_tensor(d["index"], x)

    def __call__(self):
        self.it.invoke()


def interleaved(configs: dict[str, Timed], *, rounds: int, runs: int, warmup: int = 5) -> dict[str, dict]:
    """{name: {wall, cpu (p50 ms), rounds_cpu (per-round median CPU ms)}}, configurations rotated round by round."""
    wall: dict[str, list[float]] = {k: [] for k in configs}
    cpu: dict[str, list[float]] = {k: [] for k in configs}
    per_round: dict[str, list[float]] = {k: [] for k in configs}
    for fn in configs.values():
        for _ in range(warmup):
            fn()
    names = list(configs)
    for r in range(rounds):
        for k in names[r % len(names):] + names[: r % len(names)]:
            this = []
            for _ in range(runs):
                w, c = time.perf_counter(), time.thread_time()
                configs[k]()
                this.append((time.thread_time() - c) * 1e3)
                wall[k].append((time.perf_counter() - w) * 1e3)
            cpu[k] += this
            per_round[k].append(float(np.median(this)))
    return {k: {"wall": float(np.median(wall[k])), "cpu": float(np.median(cpu[k])), "rounds_cpu": per_round[k]}
            for k in configs}


def added_ops(fp32: dict[str, int], int8: dict[str, int]) -> str:
    """INT8 op counts that differ from fp32, e.g. 'ADD +19, MUL +38, HARD_SWISH -19'."""
    diff = {k: int8.get(k, 0) - fp32.get(k, 0) for k in sorted(set(fp32) | set(int8))
            if int8.get(k, 0) != fp32.get(k, 0)}
    return ", ".join(f"{k} {v:+d}" for k, v in diff.items()) or "-"


def kernel_profile(path: Path, *, runs: int = 200, top: int = 5) -> str:
    """The `top` symbols by share of `perf record` samples while the model runs `runs` times (this script's
    --loop mode), e.g. 'qs8 dwconv 9p32c 31%, ...'; '-' when perf is not installed or fails."""
    perf = shutil.which("perf")
    if perf is None:
        return "- (perf not installed)"
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "perf.data"
        rec = subprocess.run([perf, "record", "-q", "-F", "4000", "-o", str(data), sys.executable, __file__,
                              "--loop", str(path), "--runs", str(runs)], capture_output=True, text=True)
        if rec.returncode != 0:
            return "- (perf record failed)"
        rep = subprocess.run([perf, "report", "-i", str(data), "--no-children", "--sort", "symbol", "-g", "none",
                              "--stdio"], capture_output=True, text=True)
    rows = []
    for line in rep.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].endswith("%") and parts[1] == "[.]":
            rows.append(f"{parts[2].removeprefix('xnn_')} {parts[0]}")
        if len(rows) == top:
            break
    return ", ".join(rows) or "-"


def instructions(path: Path, *, runs: int = 10) -> int | None:
    """Instructions per inference counted by valgrind's callgrind inside the interpreter's Invoke (`runs` inferences
    after 5 warm-up ones, all counted), or None without valgrind. valgrind does not emulate AVX-512, so XNNPACK
    picks its AVX2 kernels here: the count describes a CPU without AVX-512 or VNNI, not this one."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run([valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", "--collect-atstart=no",
                        "--toggle-collect=tflite::Subgraph::Invoke()", sys.executable, __file__, "--loop", str(path),
                        "--runs", str(runs + 5)], capture_output=True, text=True)
        if not out.is_file():
            return None
        total = next((int(line.split()[1]) for line in out.read_text(errors="replace").splitlines()
                      if line.startswith("totals:") or line.startswith("summary:")), None)
    return None if total is None else total // (runs + 5)


def measure(models, *, work: Path, rounds: int, runs: int, profile: bool, log) -> list[str]:
    from edgeport.export.tflite import op_histogram, xnnpack_coverage

    lines = ["| model | fp32 ms (wall / CPU) | INT8 ms (wall / CPU) | INT8 / fp32 (CPU) | per-round p10-p90 | "
             "INT8 ops not on XNNPACK | INT8 op counts vs fp32 |", "|---|---:|---:|---:|---|---|---|"]
    profiles, counts = [], []
    for k, name in enumerate(models):
        log(f"{k + 1}/{len(models)} {name}")
        paths = convert_model(name, work)
        cov = xnnpack_coverage(paths["int8"])
        left = ", ".join(f"{op} x{n}" for op, n in cov.builtin_ops.items()) or ("none" if cov.complete else "?")
        t = interleaved({p: Timed(paths[p]) for p in PRECISIONS}, rounds=rounds, runs=runs)
        r = np.asarray(t["int8"]["rounds_cpu"]) / np.asarray(t["fp32"]["rounds_cpu"])
        ratio, lo, hi = float(np.median(r)), float(np.percentile(r, 10)), float(np.percentile(r, 90))
        mark = "**" if ratio > 1.0 else ""
        lines.append(f"| `{name}` | {t['fp32']['wall']:.3f} / {t['fp32']['cpu']:.3f} | "
                     f"{t['int8']['wall']:.3f} / {t['int8']['cpu']:.3f} | {mark}{ratio:.2f}{mark} | "
                     f"{lo:.2f}-{hi:.2f} | "
                     f"{left} | {added_ops(op_histogram(paths['fp32']), op_histogram(paths['int8']))} |")
        log(lines[-1])
        if profile:
            for p in PRECISIONS:
                profiles.append(f"| `{name}` | {p} | {kernel_profile(paths[p])} |")
                log(profiles[-1])
            ir = {p: instructions(paths[p]) for p in PRECISIONS}
            if None not in ir.values():
                counts.append(f"| `{name}` | {ir['fp32'] / 1e6:.1f} | {ir['int8'] / 1e6:.1f} | "
                              f"{ir['int8'] / ir['fp32']:.2f} |")
                log(counts[-1])
    if counts:
        lines += ["", "Instructions per inference under valgrind (`--profile`; valgrind hides AVX-512, so XNNPACK runs "
                  "its AVX2 kernels: a CPU without AVX-512 or VNNI):", "",
                  "| model | fp32 M instr. | INT8 M instr. | INT8 / fp32 |", "|---|---:|---:|---:|"] + counts
    if profiles:
        lines += ["", "Where the time goes (`--profile`: share of `perf record` samples per symbol, top 5):", "",
                  "| model | precision | symbols |", "|---|---|---|"] + profiles
    return lines


def _loop(path: str, runs: int) -> int:
    fn = Timed(Path(path))
    for _ in range(runs):
        fn()
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--work", default=None, help="keep the converted models here and reuse them (default: temporary)")
    ap.add_argument("--profile", action="store_true", help="also profile each artifact with `perf record`")
    ap.add_argument("--out", default=None, help="also write the table (markdown) to this file")
    ap.add_argument("--loop", default=None, help=argparse.SUPPRESS)  # --profile's child: run one model --runs times
    args = ap.parse_args(argv)
    if args.loop:
        return _loop(args.loop, args.runs)
    from edgeport.runtime.cpu_features import cpu_features

    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    feats = cpu_features().to_dict()
    flags = ", ".join(k for k in ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx", "asimddp", "i8mm")
                      if feats.get(k)) or "none of AVX2/AVX-512/VNNI/AMX/dotprod/i8mm"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    head = [f"Machine: {machine()}; CPU features: {flags}; load average {load:.1f} at the start.", "",
            f"Command: `python benchmarks/int8_vs_fp32.py {' '.join(argv if argv is not None else sys.argv[1:])}`; "
            f"{args.rounds} rotating rounds x {args.runs} runs, 1 thread, XNNPACK.", ""]
    with tempfile.TemporaryDirectory(prefix="edgeport-int8speed-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        lines = head + measure(args.models.split(","), work=work, rounds=args.rounds, runs=args.runs,
                               profile=args.profile, log=log)
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
