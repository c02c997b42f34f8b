#!/usr/bin/env python3
"""The benchmark runner: Python stdlib + numpy + one interpreter (ONNX Runtime and/or a TFLite interpreter).

This one file is copied to devices (Raspberry Pi over ssh, Android over adb) and run there; the host imports the
same file (`edgeport.runtime.device_runner`), so host and device numbers come from one implementation. It must not
import edgeport, torch or anything but the stdlib, numpy and the interpreter it is asked for.

    python3 device_runner.py --discover                  # JSON: python, numpy, machine, interpreters found
    python3 device_runner.py JOB.json [--deadline S]      # runs the job, prints "EDGEPORT-RESULT <json>" on stdout
    python3 device_runner.py JOB.json --probe I           # one configuration alone in this process: peak RSS

JOB.json (paths relative to the job file's folder):
    {"artifacts": [{"name": "tflite_int8", "file": "m_int8.tflite"}],
     "engines": ["tflite", "onnxruntime"], "threads": [1, 2], "warmup": 5, "runs": 50, "time_budget_s": null,
     "pin": "0,1" | "big" | null, "parity_inputs": "parity.npz" | null, "rss": true, "seed": 0,
     "min_seconds": null, "cooldown_s": null, "max_temp_c": null}
parity.npz holds, per artifact name, float32 samples stacked on a leading axis (S, *input_shape) in the
artifact's own layout; the result carries each configuration's float outputs for them.

Timing: every configuration is loaded first, then timed in rounds: each round runs one inference of every
configuration, in an order rotated per round, so slow drift (thermal, other load) hits all configurations alike.
A timed inference is set-input + invoke + read-output with inputs already in the model's dtype.
Peak RSS: ru_maxrss of a separate process per configuration (`--probe`) that loads it and runs first + warm-up
inferences; it includes the Python + numpy + runtime baseline of that process.
CPU time: process CPU time (all threads) around each timed inference. Load average, /proc/stat and thermal zones
are read right before and after the timed rounds; the host judges them (edgeport.runtime.results). Without "pin",
cores differing in cpuinfo_max_freq: the fastest ones. /sys is read under $EDGEPORT_SYSFS_ROOT (tests: a fake tree).
"""
from __future__ import annotations

import json
import os
import platform
import resource
import signal
import sys
import time

RESULT_MARKER = "EDGEPORT-RESULT "
STAGE_MARKER = "EDGEPORT-STAGE "  # on stderr before each artifact is loaded and first run: a crash is blamed on it

try:
    import numpy as np
except ImportError as _exc:  # on a device: say so in the one line the host reads
    if __name__ != "__main__":
        raise
    print(RESULT_MARKER + json.dumps({"error": f"numpy is not installed for {sys.executable} ({_exc}); "
                                               f"pip install numpy (or apt install python3-numpy) there"}), flush=True)
    sys.exit(3)
TFLITE_MODULES = ("ai_edge_litert", "tflite_runtime", "tensorflow")
# ONNX Runtime input types other than float32 that a model may take (token ids, indices, masks)
ORT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_,
             "tensor(float16)": np.float16, "tensor(double)": np.float64}
RSS_METHOD = ("VmHWM of one fresh process per configuration (load + first + warm-up inferences; includes "
              "Python/numpy)")


class RunnerError(Exception):
    """Something a user can fix on the device (missing interpreter, bad artifact). Printed as one line."""


class RuntimeMissing(RunnerError):
    """This Python has no runtime that can open the artifact (not installed, or every candidate failed to load it).
    A job skips such configurations (reported under "skipped") and fails only when nothing is left to run."""


class BrokenArtifact(RunnerError):
    """The file itself is not a model (random bytes, truncated, not a flatbuffer / protobuf): the job fails and
    names it; no other interpreter is tried (an older one may crash on such a file instead of refusing it)."""

    def __init__(self, message: str, *, file: str):
        super().__init__(message)
        self.file = file


# What an interpreter says when the file is not a model at all (as opposed to a model it cannot run).
BROKEN_FILE_SIGNS = ("not a valid Flatbuffer", "Model provided has model identifier", "Could not open",
                     "Protobuf parsing failed", "INVALID_PROTOBUF", "No graph was found in the protobuf")


def broken_file_error(path, exc: Exception, *, runtime: str) -> "BrokenArtifact | None":
    """A BrokenArtifact naming `path` when `exc` (raised while `runtime` opened it) says the file is not a model."""
    text = f"{type(exc).__name__}: {exc}"
    if not any(sign in text for sign in BROKEN_FILE_SIGNS):
        return None
    what = "the in-memory model" if isinstance(path, bytes) else os.path.basename(path)
    first = text.splitlines()[0][:200]
    return BrokenArtifact(f"{what} is not a valid model file ({runtime}: {first}); it is corrupt or truncated: "
                          f"export it again", file=what)


def stage(**info) -> None:
    """Tell the host (stderr) what the runner is about to do with which file, so a crash can be blamed on it."""
    sys.stderr.write(STAGE_MARKER + json.dumps(info) + "\n")
    sys.stderr.flush()


# ---- engines ---------------------------------------------------------------------------------------------------

def quantize(x: np.ndarray, dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray:
    """float -> integer `dtype`: clip(round(x / scale + zero_point)), computed in float64 (round half to even)."""
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float64) / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """integer -> float32: (q - zero_point) * scale, computed in float64 (exact for 8/16-bit q and a float32 scale,
    so the float32 result is the correctly rounded value)."""
    return ((q.astype(np.float64) - zero_point) * scale).astype(np.float32)


class OrtEngine:
    """ONNX Runtime InferenceSession. Inputs/outputs float32 (as the artifact declares)."""

    kind = "onnxruntime"

    def __init__(self, path: str, *, threads: int, graph_optimization: str = "all", providers=None):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RuntimeMissing(f"onnxruntime is not installed for {sys.executable} ({exc}); "
                              f"pip install onnxruntime, or bench only .tflite artifacts") from None
        level = ort.GraphOptimizationLevel
        levels = {"disable": level.ORT_DISABLE_ALL, "basic": level.ORT_ENABLE_BASIC,
                  "extended": level.ORT_ENABLE_EXTENDED, "all": level.ORT_ENABLE_ALL}
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = levels[graph_optimization]
        try:
            self.session = ort.InferenceSession(path, sess_options=opts,
                                                providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as exc:  # noqa: BLE001 - ORT raises its own pybind classes
            broken = broken_file_error(path, exc, runtime=f"onnxruntime {ort.__version__}")
            if broken is not None:
                raise broken from None
            raise
        self.runtime = f"onnxruntime {ort.__version__}"
        self._inputs = self.session.get_inputs()
        self._outputs = [o.name for o in self.session.get_outputs()]

    def input_specs(self) -> list[tuple[str, tuple, str]]:
        return [(i.name, tuple(d if isinstance(d, int) else 1 for d in i.shape),
                 "float32" if i.type == "tensor(float)" else i.type) for i in self._inputs]

    def prepare(self, inputs: list[np.ndarray]):
        """float32 for float inputs; integer inputs (token ids, int64 indices) in their own type."""
        return {i.name: np.ascontiguousarray(x, dtype=ORT_TYPES.get(i.type, np.float32))
                for i, x in zip(self._inputs, inputs)}

    def invoke(self, feed):
        return self.session.run(self._outputs, feed)

    def decode(self, raw) -> list[np.ndarray]:
        return [np.asarray(r, np.float32) for r in raw]


def _tflite_interpreter_class(module: str):
    if module == "ai_edge_litert":
        from ai_edge_litert import interpreter as mod
        from importlib.metadata import version
        return mod, f"ai_edge_litert {version('ai-edge-litert')}"
    if module == "tflite_runtime":
        import tflite_runtime
        from tflite_runtime import interpreter as mod
        return mod, f"tflite_runtime {tflite_runtime.__version__}"
    if module == "tensorflow":
        import tensorflow as tf
        return tf.lite, f"tensorflow.lite {tf.__version__}"
    raise ImportError(f"{module!r} is not a TFLite interpreter module (use one of {', '.join(TFLITE_MODULES)})")


class TfliteEngine:
    """A TFLite interpreter: ai_edge_litert, else tflite_runtime (where it works: it needs numpy<2), else tf.lite.

    Quantized inputs/outputs (int8/uint8/int16) are converted with the tensor's own scale and zero point, so the
    caller always gives and gets float32. `delegate` "xnnpack" (the interpreter's default) or "none" (builtin
    kernels only). `preserve_all_tensors` (builtin kernels only: a delegate hides its intermediate tensors) keeps
    every intermediate tensor readable through `interpreter.get_tensor` after `invoke` (per-layer attribution).
    `input_details` / `output_details`: the interpreter's, in the order `prepare` takes and `decode` returns.
    `path`: the .tflite file, or the flatbuffer itself (bytes).
    """

    kind = "tflite"

    def __init__(self, path: str | bytes, *, threads: int, delegate: str = "xnnpack", modules=TFLITE_MODULES,
                 preserve_all_tensors: bool = False):
        if preserve_all_tensors and delegate != "none":
            raise RunnerError(f"preserve_all_tensors needs the builtin kernels (delegate 'none'), not {delegate!r}")
        errors, load_errors = [], []
        for module in modules:
            try:
                mod, runtime = _tflite_interpreter_class(module)
            except Exception as exc:  # noqa: BLE001 - ImportError, or a broken wheel raising anything
                errors.append(f"{module}: {type(exc).__name__}: {exc}")
                continue
            kwargs = {"model_content" if isinstance(path, bytes) else "model_path": path, "num_threads": int(threads)}
            if delegate == "none":
                kwargs["experimental_op_resolver_type"] = mod.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES \
                    if hasattr(mod, "experimental") else mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            if preserve_all_tensors:
                kwargs["experimental_preserve_all_tensors"] = True
            try:
                interp = mod.Interpreter(**kwargs)
                interp.allocate_tensors()
            except Exception as exc:  # noqa: BLE001 - e.g. tflite_runtime 2.14 + numpy 2: SystemError
                broken = broken_file_error(path, exc, runtime=module)
                if broken is not None:  # not a model: stop here (tf.lite segfaults on some truncated files)
                    raise broken from None
                text = f"{module}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                errors.append(text)
                if not isinstance(exc, SystemError):  # SystemError: a broken wheel (tflite_runtime 2.14 + numpy 2)
                    load_errors.append(text)
                continue
            self.interpreter, self.runtime, self.module = interp, runtime, module
            break
        else:
            if load_errors:  # an interpreter works here, but not on this model
                hint = ("XNNPACK rejects this model: try --engine tflite-builtin"
                        if delegate != "none" and any("XNNPACK" in e for e in load_errors)
                        else "the artifact does not load on this runtime")
                what = "the in-memory model" if isinstance(path, bytes) else os.path.basename(path)
                raise RuntimeMissing(f"{what} does not load on the TFLite interpreters of "
                                     f"{sys.executable}: " + "; ".join(errors) + f" ({hint})")
            raise RuntimeMissing("no working TFLite interpreter for " + sys.executable + ": " + "; ".join(errors)
                                 + " (pip install ai-edge-litert, or tflite-runtime with numpy<2)")
        self._in = self.interpreter.get_input_details()
        self._out = self.interpreter.get_output_details()

    @property
    def input_details(self) -> list[dict]:
        return self._in

    @property
    def output_details(self) -> list[dict]:
        return self._out

    def input_specs(self) -> list[tuple[str, tuple, str]]:
        return [(d["name"], tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]).name) for d in self._in]

    def prepare(self, inputs: list[np.ndarray]):
        feed = []
        for d, x in zip(self._in, inputs):
            dtype = np.dtype(d["dtype"])
            if dtype.kind in "iu" and dtype.itemsize <= 2:  # a quantized input (int8/uint8/int16)
                scale, zp = d["quantization"]
                if not scale:
                    raise RunnerError(f"input {d['name']} is {dtype.name} without quantization parameters")
                x = quantize(x, dtype, scale, zp)
            feed.append(np.ascontiguousarray(np.asarray(x, dtype).reshape(d["shape"])))
        return feed

    def invoke(self, feed):
        for d, x in zip(self._in, feed):
            self.interpreter.set_tensor(d["index"], x)
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(d["index"]) for d in self._out]

    def decode(self, raw) -> list[np.ndarray]:
        out = []
        for d, r in zip(self._out, raw):
            if np.dtype(d["dtype"]).kind in "iu" and d["quantization"][0]:
                scale, zp = d["quantization"]
                out.append(dequantize(r, scale, zp))
            else:
                out.append(np.asarray(r, np.float32))
        return out


def artifact_engine_kind(path: str) -> str:
    return "tflite" if path.endswith(".tflite") else "onnxruntime"


# Engine name -> (kind, options). The package's registry (edgeport.runtime.engines) names the same entries.
RUNNER_ENGINES = {
    "onnxruntime": ("onnxruntime", {"graph_optimization": "all"}),
    "onnxruntime-basic": ("onnxruntime", {"graph_optimization": "basic"}),
    "tflite": ("tflite", {"delegate": "xnnpack"}),
    "tflite-builtin": ("tflite", {"delegate": "none"}),
}


def open_engine(name: str, path: str | bytes, *, threads: int, tflite_modules=TFLITE_MODULES,
                preserve_all_tensors: bool = False):
    """The RUNNER_ENGINES entry `name` on `path`. `preserve_all_tensors`: TFLite builtin kernels only (see
    TfliteEngine)."""
    kind, options = RUNNER_ENGINES[name]
    if kind == "onnxruntime":
        if preserve_all_tensors:
            raise RunnerError(f"preserve_all_tensors is a TFLite interpreter option; engine {name!r} is ONNX Runtime")
        return OrtEngine(path, threads=threads, **options)
    return TfliteEngine(path, threads=threads, modules=tflite_modules, preserve_all_tensors=preserve_all_tensors,
                        **options)


# ---- statistics ------------------------------------------------------------------------------------------------

def summarize(times_ms) -> dict:
    """p50/p90/p99 (linear interpolation), mean, std (population), min of a list of milliseconds."""
    t = np.asarray(times_ms, np.float64)
    if t.size == 0:
        raise RunnerError("no timed runs")
    p50, p90, p99 = np.percentile(t, [50, 90, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "mean_ms": float(t.mean()),
            "std_ms": float(t.std()), "min_ms": float(t.min())}


def random_inputs(specs, seed: int) -> list[np.ndarray]:
    """Float32 inputs ~ N(0, 1) of each input's shape (a normalised image's range); quantized by prepare().
    Integer inputs wider than 16 bits (token ids, indices) are zeros: index 0 is valid for any table."""
    rng = np.random.default_rng(seed)
    return [np.zeros(shape, np.float32) if ("int32" in str(dt) or "int64" in str(dt))
            else rng.standard_normal(shape).astype(np.float32) for _, shape, dt in specs]


def parse_pin(pin) -> list[int] | None:
    """'0,1' / '4-7' / 'big' (the cores with the highest cpuinfo_max_freq) -> sorted CPU ids."""
    if pin in (None, ""):
        return None
    pin = str(pin)
    if pin == "big":
        freqs = core_max_freqs()
        if not freqs:
            raise RunnerError("--pin big: this device exposes no cpufreq max frequencies; give CPU ids, e.g. 4-7")
        return sorted(c for c, f in freqs.items() if f == max(freqs.values()))
    cpus = set()
    for part in pin.split(","):
        lo, _, hi = part.partition("-")
        try:
            cpus.update(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            raise RunnerError(f"bad CPU list {pin!r}; use e.g. 0,1 or 4-7 or big") from None
    return sorted(cpus)


# ---- machine state: sysfs / procfs, read raw (the host interprets them: edgeport.runtime.results) ---------------

SYSFS_ROOT_ENV = "EDGEPORT_SYSFS_ROOT"
COOLDOWN_POLL_S = 1.0
# --max-temp without --cooldown: wait at most this long (a phone in a warm room may never cool enough: the run goes
COOLDOWN_DEFAULT_BOUND_S = 300.0  # on, and the entry records that the temperature was not reached)


def sys_path(path: str) -> str:  # `path` under $EDGEPORT_SYSFS_ROOT when set (a fake tree in tests)
    return os.path.join(os.environ.get(SYSFS_ROOT_ENV) or "/", path.lstrip("/"))


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:  # absent (no such zone, not Linux) or unreadable
        return None


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (all of them where the OS has no affinity call)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def core_max_freqs() -> dict[int, int]:
    """CPU id -> cpuinfo_max_freq (kHz) of the CPUs this process may run on (those that expose one)."""
    texts = {c: (_read(sys_path(f"/sys/devices/system/cpu/cpu{c}/cpufreq/cpuinfo_max_freq")) or "").strip()
             for c in allowed_cpus()}
    return {c: int(t) for c, t in texts.items() if t.isdigit()}


def default_pin() -> tuple[list[int] | None, str | None]:
    """(the fastest cores, why) on a CPU whose cores differ in cpuinfo_max_freq; (None, None) otherwise."""
    freqs = core_max_freqs()
    if len(set(freqs.values())) < 2:
        return None, None
    big, top, low = parse_pin("big"), max(freqs.values()) / 1e6, min(freqs.values()) / 1e6
    return big, (f"big cores {','.join(map(str, big))} by default: cores differ in max frequency "
                 f"({top:.2f} GHz vs {low:.2f} GHz); --pin overrides")


def thermal_temps() -> dict[str, float]:
    """Thermal zone -> temperature (deg C) from /sys/class/thermal/thermal_zone*/temp (millidegrees)."""
    root, temps = sys_path("/sys/class/thermal"), {}
    for zone in sorted(z for z in (os.listdir(root) if os.path.isdir(root) else []) if z.startswith("thermal_zone")):
        raw = (_read(os.path.join(root, zone, "temp")) or "").strip()
        kind = (_read(os.path.join(root, zone, "type")) or "").strip()
        if raw.lstrip("-").isdigit():
            temps[f"{zone}:{kind}" if kind else zone] = int(raw) / 1000.0
    return temps


def cpuinfo_head() -> str:
    """The first processor's block of /proc/cpuinfo (model name, flags/Features) plus ARM's trailing Hardware /
    Model lines; the host parses it (edgeport.runtime.cpu_features.parse_cpuinfo)."""
    blocks = (_read("/proc/cpuinfo") or "").split("\n\n")
    return "\n".join(blocks[:1] + [b for b in blocks[1:] if b.strip() and not b.lstrip().startswith("processor")])


def machine_state() -> dict:
    """Raw now: 1-min load average, /proc/stat `cpu` (jiffies), clock tick, thermal zones, process CPU and wall s."""
    load = _read("/proc/loadavg")
    cpu_line = next((ln.split()[1:] for ln in (_read("/proc/stat") or "").splitlines() if ln.startswith("cpu ")), None)
    return {"loadavg1": float(load.split()[0]) if load else None,
            "stat_cpu": [int(v) for v in cpu_line] if cpu_line else None, "clock_tck": os.sysconf("SC_CLK_TCK"),
            "temps_c": thermal_temps(), "process_cpu_s": time.process_time(), "wall_s": time.perf_counter()}


def cool_down(*, max_temp_c: float | None, cooldown_s: float | None) -> dict | None:
    """The gate before timing. With `max_temp_c`: wait until every thermal zone is below it, at most `cooldown_s`
    (default COOLDOWN_DEFAULT_BOUND_S). Without: pause `cooldown_s`. None when neither is set."""
    if max_temp_c is None and not cooldown_s:
        return None
    start, hottest, reached, bound = time.monotonic(), None, None, float(cooldown_s or COOLDOWN_DEFAULT_BOUND_S)
    while max_temp_c is not None:  # leaves by `break` only
        hottest = max(thermal_temps().values(), default=None)
        reached = None if hottest is None else hottest < max_temp_c
        if reached is not False or time.monotonic() - start >= bound:
            break
        time.sleep(COOLDOWN_POLL_S)
    else:  # no temperature bar: a plain pause
        time.sleep(bound)
    if reached is False:
        sys.stderr.write(f"edgeport runner: still {hottest:.1f} C after {bound:.0f} s, above --max-temp "
                         f"{max_temp_c}; timing anyway\n")
    return {"waited_s": time.monotonic() - start, "max_temp_c": max_temp_c, "reached": reached, "temp_c": hottest}


def machine_description(runtimes: dict | None = None) -> dict:
    """The machine: arch, CPU model, cores, affinity, versions; `cpuinfo` (raw) for the host to parse features from."""
    head, cpuinfo = cpuinfo_head(), {}
    for line in head.splitlines():
        key, _, value = line.partition(":")
        cpuinfo.setdefault(key.strip(), value.strip())
    cpu_model = cpuinfo.get("model name") or cpuinfo.get("Model") or cpuinfo.get("Hardware") or platform.processor()
    if "CPU part" in cpuinfo:
        cpu_model = f"{cpu_model} (implementer {cpuinfo.get('CPU implementer')}, part {cpuinfo['CPU part']})".strip()
    return {"arch": platform.machine(), "cpu_model": cpu_model, "cores": os.cpu_count(), "affinity": allowed_cpus(),
            "system": f"{platform.system()} {platform.release()}", "hostname": platform.node(),
            "python": platform.python_version(), "numpy": np.__version__, "runtimes": dict(runtimes or {}),
            "rss_method": RSS_METHOD, "cpuinfo": head}


def discover() -> dict:
    found = {}
    for module in ("onnxruntime",) + TFLITE_MODULES:
        try:
            if module == "onnxruntime":
                import onnxruntime
                found[module] = onnxruntime.__version__
            else:
                found[module] = _tflite_interpreter_class(module)[1]
        except Exception as exc:  # noqa: BLE001
            found[module] = None
            found[module + "_error"] = f"{type(exc).__name__}: {exc}"[:200]
    return {"python": sys.executable, "machine": machine_description(), "interpreters": found}


# ---- the job ---------------------------------------------------------------------------------------------------

def _configs(job: dict, root: str) -> list[dict]:
    configs = []
    for art in job["artifacts"]:
        path = os.path.join(root, art["file"])
        for engine in job["engines"]:
            if RUNNER_ENGINES[engine][0] != artifact_engine_kind(path):
                continue
            for threads in job["threads"]:
                configs.append({"artifact": art["name"], "path": path, "engine": engine, "threads": int(threads)})
    if not configs:
        raise RunnerError("no (artifact, engine) pair matches: .onnx runs on onnxruntime*, .tflite on tflite*")
    return configs


def _load(cfg: dict, modules) -> tuple:
    stage(step="loading", file=os.path.basename(cfg["path"]), artifact=cfg["artifact"], engine=cfg["engine"])
    t0 = time.perf_counter()
    engine = open_engine(cfg["engine"], cfg["path"], threads=cfg["threads"], tflite_modules=modules)
    return engine, (time.perf_counter() - t0) * 1e3


def probe(job: dict, root: str, index: int) -> dict:
    cfg = _configs(job, root)[index]
    engine, _ = _load(cfg, job.get("tflite_modules") or TFLITE_MODULES)
    feed = engine.prepare(random_inputs(engine.input_specs(), job.get("seed", 0)))
    for _ in range(1 + max(int(job.get("warmup", 0)), 2)):
        engine.invoke(feed)
    return {"peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak resident set (MB): VmHWM from /proc/self/status. Not ru_maxrss: Linux carries the
    parent's high-water mark over fork + exec into it, so a probe started by a runner holding every model loaded
    would report the runner's peak instead of its own."""
    hwm = [ln.split()[1] for ln in (_read("/proc/self/status") or "").splitlines() if ln.startswith("VmHWM:")]
    return int(hwm[0]) / 1024.0 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _pin(job: dict) -> tuple[list[int] | None, str | None]:
    """Pin this process as the job says; without "pin", to the big cores of a heterogeneous CPU."""
    cpus, reason = (parse_pin(job["pin"]), None) if job.get("pin") else default_pin()
    try:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
    except OSError as exc:
        raise RunnerError(f"cannot pin to CPUs {cpus}: {exc}") from None
    return cpus, reason


def _load_all(job: dict, root: str) -> tuple[list[dict], list[dict], dict]:
    runtimes, loaded, skipped = {}, [], []
    for index, cfg in enumerate(_configs(job, root)):
        try:
            engine, load_ms = _load(cfg, job.get("tflite_modules") or TFLITE_MODULES)
        except RuntimeMissing as exc:
            skipped.append(dict(artifact=cfg["artifact"], engine=cfg["engine"], threads=cfg["threads"], reason=str(exc)))
            continue
        runtimes[cfg["engine"]] = engine.runtime
        stage(step="running", file=os.path.basename(cfg["path"]), artifact=cfg["artifact"], engine=cfg["engine"])
        feed = engine.prepare(random_inputs(engine.input_specs(), job.get("seed", 0)))
        t0 = time.perf_counter()
        engine.invoke(feed)
        loaded.append({"cfg": cfg, "engine": engine, "feed": feed, "load_ms": load_ms, "index": index,
                       "first_ms": (time.perf_counter() - t0) * 1e3, "times": [], "cpu_s": 0.0})
    stage(step="timing")  # every file loaded and ran once: a later crash is not one file's
    if not loaded:
        raise RunnerError("no configuration can run here: " + "; ".join(sorted({s["reason"] for s in skipped})))
    return loaded, skipped, runtimes


def _timed_rounds(loaded: list[dict], *, runs: int, budget: float | None, min_seconds: float | None) -> None:
    """Rounds of one inference per configuration (rotated order) until `runs` rounds and `min_seconds` have passed;
    with `budget`, until `budget` seconds (at least 3 rounds) instead. Appends wall ms and adds process CPU s."""
    clock, cpu_clock, n_rounds = time.perf_counter, time.process_time, 0
    start = clock()
    while not (n_rounds >= 3 and clock() - start >= float(budget) if budget is not None else
               n_rounds >= runs and clock() - start >= float(min_seconds or 0)):
        k = n_rounds % len(loaded)
        for item in loaded[k:] + loaded[:k]:
            t0, c0 = clock(), cpu_clock()
            item["engine"].invoke(item["feed"])
            c1, t1 = cpu_clock(), clock()
            item["times"].append((t1 - t0) * 1e3)
            item["cpu_s"] += c1 - c0
        n_rounds += 1


def _parity_outputs(loaded: list[dict], parity: dict) -> dict:
    """"artifact|engine" -> per output, the float outputs of each parity sample (first configuration of the pair)."""
    outputs = {}
    for item in loaded:
        cfg, engine = item["cfg"], item["engine"]
        key = f"{cfg['artifact']}|{cfg['engine']}"
        if cfg["artifact"] in parity and key not in outputs:
            stage(step="running", file=os.path.basename(cfg["path"]), artifact=cfg["artifact"], engine=cfg["engine"])
            outs = [engine.decode(engine.invoke(engine.prepare([x[None]]))) for x in parity[cfg["artifact"]]]
            outputs[key] = [[o[i].tolist() for o in outs] for i in range(len(outs[0]))] if outs else None
    return outputs


def run_job(job: dict, root: str, *, rss_probe=None) -> dict:
    """Load every configuration, time them in interleaved rounds, return {"machine", "results", "outputs"}.
    Each result carries its CPU time per inference and the machine state before and after the timed rounds."""
    (cpus, pin_reason), warmup, parity = _pin(job), int(job.get("warmup", 5)), {}
    if job.get("parity_inputs"):
        with np.load(os.path.join(root, job["parity_inputs"])) as npz:
            parity = {k: npz[k] for k in npz.files}
    loaded, skipped, runtimes = _load_all(job, root)
    cooldown = cool_down(max_temp_c=job.get("max_temp_c"), cooldown_s=job.get("cooldown_s"))
    for r in range(warmup):  # warm-up, interleaved like the timed rounds
        for item in loaded:
            item["engine"].invoke(item["feed"])
    before = machine_state()
    _timed_rounds(loaded, runs=int(job.get("runs", 50)), budget=job.get("time_budget_s"),
                  min_seconds=job.get("min_seconds"))
    after = machine_state()
    results = [{"engine": it["cfg"]["engine"], "artifact": it["cfg"]["artifact"], "threads": it["cfg"]["threads"],
                "warmup": warmup, "runs": len(it["times"]), **summarize(it["times"]), "load_ms": it["load_ms"],
                "first_ms": it["first_ms"], "peak_rss_mb": None if rss_probe is None else rss_probe(it["index"]),
                "cpu_ms": it["cpu_s"] * 1e3 / len(it["times"]), "pinned": cpus, "pin_reason": pin_reason,
                "min_seconds": job.get("min_seconds"), "cooldown": cooldown, "state_before": before,
                "state_after": after} for it in loaded]
    return {"machine": machine_description(runtimes), "results": results, "outputs": _parity_outputs(loaded, parity),
            "skipped": skipped}


def _subprocess_probe(job_path: str):
    import subprocess

    def run(index: int) -> float | None:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), job_path, "--probe", str(index)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for line in proc.stdout.splitlines():
            if line.startswith(RESULT_MARKER):
                return json.loads(line[len(RESULT_MARKER):])["peak_rss_mb"]
        raise RunnerError(f"RSS probe {index} failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")

    return run


def _kill_group(signum, frame):  # pragma: no cover - exercised by the hang tests through a subprocess
    sys.stderr.write("edgeport runner: deadline reached, killing its process group\n")
    sys.stderr.flush()
    os.killpg(0, signal.SIGKILL)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--discover"]:
        print(RESULT_MARKER + json.dumps(discover()), flush=True)
        return 0
    if not argv:
        sys.stderr.write(__doc__)
        return 2
    job_path = os.path.abspath(argv[0])
    root = os.path.dirname(job_path)
    pid_file = os.path.join(root, "runner.pid")
    try:
        with open(job_path) as fh:
            job = json.load(fh)
        if "--probe" in argv:
            out = probe(job, root, int(argv[argv.index("--probe") + 1]))
        else:
            try:
                os.setpgrp()  # the runner and its probes form one group the host can kill
            except OSError:
                pass
            with open(pid_file, "w") as fh:  # the host's cleanup kills this group (on a timeout)
                fh.write(str(os.getpgrp()))
            if "--deadline" in argv:
                signal.signal(signal.SIGALRM, _kill_group)
                signal.alarm(max(1, int(float(argv[argv.index("--deadline") + 1]))))
            out = run_job(job, root, rss_probe=_subprocess_probe(job_path) if job.get("rss", True) else None)
    except BrokenArtifact as exc:
        print(RESULT_MARKER + json.dumps({"error": str(exc), "broken_artifact": exc.file}), flush=True)
        return 3
    except RunnerError as exc:
        print(RESULT_MARKER + json.dumps({"error": str(exc)}), flush=True)
        return 3
    except Exception as exc:  # noqa: BLE001 - a broken artifact or runtime: one line back to the host
        import traceback

        traceback.print_exc()
        print(RESULT_MARKER + json.dumps({"error": f"runner failed: {type(exc).__name__}: {exc}"}), flush=True)
        return 4
    finally:
        if "--probe" not in argv:  # finished: no pid for the cleanup to kill (it could be reused by then)
            try:
                os.unlink(pid_file)
            except OSError:
                pass
    print(RESULT_MARKER + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
