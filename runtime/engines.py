"""The one way edgeport runs a model: ONNX Runtime, TFLite interpreters and torch eager (the reference) behind one
interface, used by validation, per-layer attribution, bench, the device runner and the tests.

    >>> from edgeport.runtime import open_engine, run, run_batches
    >>> eng = open_engine("tflite", "DIR/model_int8.tflite", threads=2)
    >>> [y] = run(eng, [x_nhwc_float32])          # float32 in (artifact layout), float32 out, quantized inside
    >>> [ys] = run_batches(eng, [xs_nhwc])        # (N, ...) samples in, (N, ...) outputs out, one sample at a time

Inputs and outputs are lists (one array per model input / output, in the model's order). Integer (INT8/UINT8/
INT16) inputs are quantized and outputs dequantized with the tensor's own scale and zero point, in float64
(`quantize` / `dequantize` of edgeport.runtime.device.interpreters). The ONNX Runtime and TFLite engines are the
classes of the device runner (edgeport.runtime.device, assembled into the one file copied to devices by
runtime/runner_file.py), so a number measured on the host and one measured on a Pi come from the same code.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from edgeport.errors import ArtifactError, TargetError
from edgeport.registry import Registry
from edgeport.runtime.device import interpreters
from edgeport.runtime.device.protocol import BrokenArtifact, RunnerError

quantize = interpreters.quantize
dequantize = interpreters.dequantize


class EngineKind(str, enum.Enum):
    ONNXRUNTIME = "onnxruntime"
    TFLITE = "tflite"
    TORCH = "torch"

    def __str__(self) -> str:
        return self.value


@runtime_checkable
class Engine(Protocol):
    """A loaded model. `prepare` converts float32 inputs (artifact layout) to the model's dtype (quantizing with
    the tensor's own scale/zero point); `invoke` is the timed call; `decode` returns float32 outputs."""

    kind: str
    runtime: str

    def input_specs(self) -> list[tuple[str, tuple, str]]: ...
    def prepare(self, inputs: list[np.ndarray]) -> Any: ...
    def invoke(self, feed: Any) -> Any: ...
    def decode(self, raw: Any) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class EngineEntry:
    """A registered engine: its kind, fixed options, and the artifact suffixes it runs."""

    name: str
    kind: EngineKind
    options: dict = field(default_factory=dict)
    suffixes: tuple[str, ...] = ()


ENGINES: Registry[EngineEntry] = Registry("engine")
for _name, (_kind, _opts) in interpreters.RUNNER_ENGINES.items():
    ENGINES.register(_name, EngineEntry(_name, EngineKind(_kind), dict(_opts),
                                        (".onnx",) if _kind == "onnxruntime" else (".tflite",)))
ENGINES.register("torch", EngineEntry("torch", EngineKind.TORCH, {}, (".pt",)))

# The engine an artifact file runs on when the caller does not choose (validation, tests): by suffix.
DEFAULT_ENGINES = {".onnx": "onnxruntime", ".tflite": "tflite"}


def default_engine(path: str | Path) -> str:
    """The registered engine that runs the artifact file `path` by default: onnxruntime for .onnx, tflite (the
    interpreter's default XNNPACK delegate) for .tflite. Raises TargetError for another suffix."""
    suffix = Path(path).suffix
    if suffix not in DEFAULT_ENGINES:
        raise TargetError(f"{path}: no engine runs {suffix or 'suffix-less'} files "
                          f"(artifacts are {', '.join(DEFAULT_ENGINES)})")
    return DEFAULT_ENGINES[suffix]


class TorchEngine:
    """torch eager on an nn.Module (the reference). Inputs NCHW float32 (any batch); outputs float32.
    `threads` None leaves torch's (process-wide) thread count as it is."""

    kind = "torch"

    def __init__(self, module, *, threads: int | None, input_shape: tuple[int, ...]):
        import torch

        if threads is not None:
            torch.set_num_threads(int(threads))
        self.module = module.eval()
        self.runtime = f"torch {torch.__version__}"
        self._shape = tuple(input_shape)

    def input_specs(self):
        return [("input", self._shape, "float32")]

    def prepare(self, inputs):
        import torch

        return [torch.from_numpy(np.ascontiguousarray(x, np.float32)) for x in inputs]

    def invoke(self, feed):
        import torch

        with torch.inference_mode():
            out = self.module(*feed)
        return out if isinstance(out, (list, tuple)) else [out]

    def decode(self, raw):
        return [r.detach().numpy().astype(np.float32) for r in raw]


def run(engine: Engine, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """prepare -> invoke -> decode: one float32 array per model input in, one float32 array per output out."""
    return engine.decode(engine.invoke(engine.prepare(inputs)))


def run_batches(engine: Engine, inputs: list[np.ndarray], *, batch: int = 1,
                on_sample: Callable[[int, Engine], None] | None = None) -> list[np.ndarray]:
    """inputs: one float32 array (N, ...) per model input (artifact layout), samples on axis 0. Runs `batch` samples
    per invoke (1 for an artifact with a fixed batch-1 input) and returns one float32 array (N, ...) per model
    output. `on_sample(i, engine)`, when given, is called after each invoke with the index of the first sample of
    that invoke (per-layer attribution reads intermediate tensors there)."""
    n = len(inputs[0])
    if any(len(x) != n for x in inputs):
        raise ValueError(f"inputs hold different sample counts: {[len(x) for x in inputs]}")
    per_output: list[list[np.ndarray]] | None = None
    for i in range(0, n, batch):
        outs = run(engine, [x[i:i + batch] for x in inputs])
        if per_output is None:
            per_output = [[] for _ in outs]
        for acc, y in zip(per_output, outs):
            acc.append(y)
        if on_sample is not None:
            on_sample(i, engine)
    return [np.concatenate(acc, axis=0) for acc in per_output or []]


def open_engine(name: str, artifact: Any, *, threads: int | None = 1, input_shape: tuple[int, ...] | None = None,
                tflite_modules: tuple[str, ...] = interpreters.TFLITE_MODULES,
                preserve_all_tensors: bool = False) -> Engine:
    """Open `artifact` (a path, or a TFLite flatbuffer as bytes; for "torch" an nn.Module plus `input_shape`) with
    the registered engine `name`.

    threads: intra-op threads (None only for torch: leave its thread count alone). preserve_all_tensors: TFLite
    builtin kernels ("tflite-builtin") only, every intermediate tensor stays readable after invoke.
    Raises UnknownNameError for an unknown engine, ArtifactError when the file is not a valid model (corrupt,
    truncated), TargetError when the runtime is missing on this machine or the options do not fit the engine.
    """
    entry = ENGINES.get(name)
    if entry.kind is EngineKind.TORCH:
        if input_shape is None:
            raise TypeError("the torch engine needs input_shape")
        return TorchEngine(artifact, threads=threads, input_shape=input_shape)
    if threads is None:
        raise TypeError(f"engine {name!r} needs a thread count")
    try:
        source = artifact if isinstance(artifact, bytes) else str(artifact)
        engine = interpreters.open_engine(name, source, threads=threads, tflite_modules=tflite_modules,
                                          preserve_all_tensors=preserve_all_tensors)
    except BrokenArtifact as exc:
        raise ArtifactError(str(exc)) from None
    except RunnerError as exc:
        raise TargetError(f"local: {exc}") from None
    engine.run = lambda inputs: run(engine, inputs)  # convenience
    return engine
