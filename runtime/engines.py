"""One interface over ONNX Runtime, TFLite interpreters and torch eager (the reference).

    >>> from edgeport.runtime import open_engine
    >>> eng = open_engine("tflite", "DIR/model_int8.tflite", threads=2)
    >>> [y] = eng.run([x_nhwc_float32])          # float32 in (artifact layout), float32 out, quantized inside

The ONNX Runtime and TFLite engines are the classes of `device_runner.py` (the file copied to devices), so a number
measured on the host and one measured on a Pi come from the same code.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from edgeport.errors import TargetError
from edgeport.registry import Registry
from edgeport.runtime import device_runner as _dr


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
for _name, (_kind, _opts) in _dr.RUNNER_ENGINES.items():
    ENGINES.register(_name, EngineEntry(_name, EngineKind(_kind), dict(_opts),
                                        (".onnx",) if _kind == "onnxruntime" else (".tflite",)))
ENGINES.register("torch", EngineEntry("torch", EngineKind.TORCH, {}, (".pt",)))


class TorchEngine:
    """torch eager on an nn.Module (the reference). Inputs NCHW float32; outputs float32."""

    kind = "torch"

    def __init__(self, module, *, threads: int, input_shape: tuple[int, ...]):
        import torch

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
    """prepare -> invoke -> decode: float32 in, float32 out."""
    return engine.decode(engine.invoke(engine.prepare(inputs)))


def open_engine(name: str, artifact: Any, *, threads: int = 1, input_shape: tuple[int, ...] | None = None,
                tflite_modules: tuple[str, ...] = _dr.TFLITE_MODULES) -> Engine:
    """Open `artifact` (a path; for "torch" an nn.Module plus `input_shape`) with the registered engine `name`.

    Raises UnknownNameError for an unknown engine, TargetError when the runtime is missing on this machine.
    """
    entry = ENGINES.get(name)
    if entry.kind is EngineKind.TORCH:
        if input_shape is None:
            raise TypeError("the torch engine needs input_shape")
        return TorchEngine(artifact, threads=threads, input_shape=input_shape)
    try:
        engine = _dr.open_engine(name, str(artifact), threads=threads, tflite_modules=tflite_modules)
    except _dr.RunnerError as exc:
        raise TargetError(f"local: {exc}") from None
    engine.run = lambda inputs: run(engine, inputs)  # convenience
    return engine


def engines_for(path: str) -> list[str]:
    """Registered engine names that run an artifact file (by suffix)."""
    return [n for n, e in ENGINES.items() if any(str(path).endswith(s) for s in e.suffixes)]


EngineFactory = Callable[..., Engine]
