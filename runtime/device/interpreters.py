"""The interpreters a job runs on: ONNX Runtime and the TFLite interpreters behind one interface (input specs,
prepare, invoke, decode), and the quantize / dequantize arithmetic of quantized inputs and outputs.

Part of the device runner (see protocol.py); the host's engine registry (edgeport.runtime.engines) wraps these same
classes. Interpreter modules are imported only when an engine is opened.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from .protocol import BrokenArtifact, RunnerError, RuntimeMissing, broken_file_error

TFLITE_MODULES = ("ai_edge_litert", "tflite_runtime", "tensorflow")
# ONNX Runtime input types other than float32 that a model may take (token ids, indices, masks)
ORT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_,
             "tensor(float16)": np.float16, "tensor(double)": np.float64}


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

    def output_names(self) -> list[str]:
        """The model's outputs, in the order `decode` returns them."""
        return list(self._outputs)

    def prepare(self, inputs: list[np.ndarray]):
        """float32 for float inputs; integer inputs (token ids, int64 indices) in their own type."""
        return {i.name: np.ascontiguousarray(x, dtype=ORT_TYPES.get(i.type, np.float32))
                for i, x in zip(self._inputs, inputs)}

    def invoke(self, feed):
        return self.session.run(self._outputs, feed)

    def decode(self, raw) -> list[np.ndarray]:
        return [np.asarray(r, np.float32) for r in raw]


def tflite_interpreter_class(module: str):
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
                mod, runtime = tflite_interpreter_class(module)
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

    def output_names(self) -> list[str]:
        """The model's outputs, in the order `decode` returns them."""
        return [d["name"] for d in self._out]

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
    "onnxruntime-unoptimized": ("onnxruntime", {"graph_optimization": "disable"}),
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
