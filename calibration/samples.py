"""The calibration-data protocol: a sized iterable of `{input_name: float32 ndarray (1, C, H, W)}`.

Every quantizer (TFLite, ONNX Runtime) and the validator consume a `SampleSet`. Arrays are in torch layout (NCHW),
batch 1, RGB, normalised as the model spec says ((x/255 - mean) / std); `SampleSet.nhwc(i)` gives the TFLite layout.
A model with several inputs (a second tensor, int64 token ids) gets the others as `extras` ({name: (N, ...)} in
the input's own dtype); each sample then yields `{image name: (1, C, H, W), other name: (1, ...), ...}`.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from edgeport.errors import CalibrationError


class Split(str, enum.Enum):
    """Which part of a source: calibration samples and validation samples never overlap."""

    CALIBRATION = "calibration"
    VALIDATION = "validation"

    def __str__(self) -> str:
        return self.value


class CalibrationMethod(str, enum.Enum):
    """How activation ranges are chosen from the calibration samples.

    MINMAX: the observed min/max (TFLite's and ORT's default). PERCENTILE: clip outliers at a percentile of the
    absolute activations. ENTROPY: KL-divergence threshold (ONNX Runtime only). PER_TENSOR: each activation tensor
    gets the candidate range (min/max, percentiles, MSE-optimal clipping) with the least quantization error on a
    calibration hold-out (range_select.py; TFLite). AUTO: the method (minmax, percentile, per-tensor) whose INT8
    model has the least output error on the calibration hold-out (TFLite; ONNX Runtime uses percentile for both).
    """

    MINMAX = "minmax"
    PERCENTILE = "percentile"
    ENTROPY = "entropy"
    PER_TENSOR = "per-tensor"
    AUTO = "auto"

    def __str__(self) -> str:
        return self.value


def tflite_calibration_method(method) -> str:
    """The range method the TFLite INT8 conversion uses for a user-facing one: entropy is ONNX Runtime's only, so
    TFLite keeps its min/max there."""
    m = str(getattr(method, "value", method))
    return "minmax" if m == CalibrationMethod.ENTROPY.value else m


def ort_calibration_method(method) -> str:
    """The method ONNX Runtime's INT8 model uses for a user-facing one: per-tensor and auto are TFLite's only, so
    ONNX Runtime uses percentile there, the fixed rule that was at least as good as min/max on every real
    checkpoint measured (docs/calibration.md, *Which range method is the default*: PP-OCR recognizer 26 -> 69 %
    identical strings, Lite0 +1 dB, classifier and digits +0.1-0.3 dB)."""
    m = str(getattr(method, "value", method))
    return CalibrationMethod.PERCENTILE.value if m in (CalibrationMethod.PER_TENSOR.value,
                                                       CalibrationMethod.AUTO.value) else m


def check_int8_io(*, calibration_method, io_dtype) -> None:
    """Raise ExportError for a TFLite calibration method that cannot keep the requested model I/O type: only the
    min/max path writes float or uint8 I/O (the recalibrated path goes through the int8-I/O quantizer entry). Pure
    string rules, no TensorFlow: the CLI checks them before any work."""
    from edgeport.errors import ExportError

    m, io = str(getattr(calibration_method, "value", calibration_method)), str(getattr(io_dtype, "value", io_dtype))
    if m != CalibrationMethod.MINMAX.value and io != "int8":
        raise ExportError(f"calibration method {m} writes int8 model I/O only, not {io}",
                          hint=f"use --io int8 with --calibration-method {m}")


@dataclass(frozen=True)
class InputSpec:
    """One model input: its name, full static shape (batch first), numpy dtype name, and for an integer input the
    exclusive upper bound of valid values when the model says it (the size of the table it indexes), else None."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    high: int | None = None

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 4 and np.dtype(self.dtype).kind == "f"

    def describe(self) -> str:
        return f"{self.name} {list(self.shape)} {self.dtype}"


class SampleSet:
    """`len()` samples, each a float32 (1, C, H, W) array; iteration yields `{input_name: array}`.

    `loader(i)` produces sample i (already preprocessed); results are cached, so iterating twice (calibration then
    validation of several artifacts) reads every image once. `labels` (one int per sample) is set when the source
    knows the classes. `info()` is what report.json records.
    """

    def __init__(
        self,
        *,
        input_name: str,
        shape: tuple[int, int, int],
        length: int,
        loader: Callable[[int], np.ndarray],
        source: str,
        split: Split,
        seed: int | None = None,
        labels: list[int] | None = None,
        description: str = "",
        ids: list[str] | None = None,
        extras: dict[str, np.ndarray] | None = None,
        extras_source: str | None = None,
    ):
        if length <= 0:
            raise CalibrationError(f"{source}: no samples", hint="point --calibration at data with at least one image")
        if labels is not None and len(labels) != length:
            raise ValueError(f"{len(labels)} labels for {length} samples")
        self.input_name = input_name
        self.shape = tuple(int(s) for s in shape)
        self._length = length
        self._loader = loader
        self._cache: dict[int, np.ndarray] = {}
        self.source = source
        self.split = Split(split)
        self.seed = seed
        self.labels = labels
        self.description = description
        # A stable identity per sample (file path, photo + crop, array index): proves two sets are disjoint.
        self.ids = ids or [f"{source}:{split}:{i}" for i in range(length)]
        # the model's other inputs: {name: (length, ...)}, and where they came from (an .npz, or random)
        self.extras = dict(extras or {})
        self.extras_source = extras_source
        for name, a in self.extras.items():
            if len(a) != length:
                raise ValueError(f"extra input {name!r} has {len(a)} samples for {length}")

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < self._length:
            raise IndexError(i)
        if i not in self._cache:
            x = np.asarray(self._loader(i), dtype=np.float32)
            if x.ndim == 3:
                x = x[None]
            if x.shape != (1, *self.shape):
                raise CalibrationError(
                    f"{self.source}: sample {i} has shape {x.shape}, expected {(1, *self.shape)} (NCHW)"
                )
            self._cache[i] = np.ascontiguousarray(x)
        return self._cache[i]

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for i in range(self._length):
            yield {self.input_name: self[i], **{k: v[i:i + 1] for k, v in self.extras.items()}}

    def with_extras(self, extras: dict[str, np.ndarray], *, source: str) -> "SampleSet":
        """This set with the model's other inputs added ({name: (len, ...)}; `source` says where they came from)."""
        parent = self
        return SampleSet(input_name=self.input_name, shape=self.shape, length=self._length, loader=lambda i: parent[i],
                         source=self.source, split=self.split, seed=self.seed, labels=self.labels,
                         description=self.description, ids=self.ids, extras=extras, extras_source=source)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every input, samples stacked: {image name: float32 (N, C, H, W), other name: (N, ...)}."""
        return {self.input_name: self.array(), **self.extras}

    def nhwc(self, i: int) -> np.ndarray:
        """Sample i as float32 (1, H, W, C), the TFLite input layout."""
        return np.ascontiguousarray(self[i].transpose(0, 2, 3, 1))

    def array(self) -> np.ndarray:
        """All samples stacked: float32 (N, C, H, W)."""
        return np.concatenate([self[i] for i in range(self._length)], axis=0)

    def take(self, n: int) -> "SampleSet":
        """The first n samples; CalibrationError when there are fewer than n."""
        if n > self._length:
            raise CalibrationError(
                f"{self.source}: {n} {self.split} samples asked, only {self._length} available",
                hint="lower --num-calibration or add data",
            )
        parent = self
        return SampleSet(
            input_name=self.input_name, shape=self.shape, length=n, loader=lambda i: parent[i], source=self.source,
            split=self.split, seed=self.seed, labels=None if self.labels is None else self.labels[:n],
            description=self.description, ids=self.ids[:n], extras={k: v[:n] for k, v in self.extras.items()},
            extras_source=self.extras_source,
        )

    def info(self) -> dict:
        """What report.json records for this set."""
        out = {"source": self.source, "split": str(self.split), "count": len(self), "seed": self.seed,
               "input_name": self.input_name, "shape": list(self.shape)}
        if self.description:
            out["description"] = self.description
        if self.labels is not None:
            out["labelled"] = True
        if self.extras:
            out["other_inputs"] = {k: {"shape": list(v.shape[1:]), "dtype": v.dtype.name, "from": self.extras_source}
                                   for k, v in self.extras.items()}
        return out

    def __repr__(self) -> str:
        return f"SampleSet({self.source!r}, {self.split}, n={len(self)}, shape={self.shape}, seed={self.seed})"
