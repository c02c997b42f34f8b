"""Activation ranges from calibration samples: exact min/max or exact percentiles (outlier clipping).

A percentile p clips each tail at the p-th percentile of ALL values a tensor takes over the calibration set:
hi = quantile(values, p/100), lo = quantile(values, 1 - p/100), computed exactly with a running top-k / bottom-k
(k = ceil(total * (1 - p/100)) + 1), so memory stays at k values per tensor, not the whole activation history.
Ranges always contain 0 (quantized zero must be exact).

`onnx_activation_ranges` runs ONNX Runtime with every intermediate tensor as an output (keyed by ONNX tensor name);
the TFLite side (tflite_ranges.py) uses the same collector on the TFLite float model's tensors.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import numpy as np

from .samples import CalibrationMethod

DEFAULT_PERCENTILE = 99.99


class RangeCollector:
    """Feed `update(name, array)` per sample; `ranges()` -> {name: (lo, hi)} for the chosen method."""

    def __init__(self, *, method: CalibrationMethod | str = CalibrationMethod.MINMAX, percentile: float = DEFAULT_PERCENTILE,
                 num_samples: int):
        self.method = CalibrationMethod(method)
        if self.method == CalibrationMethod.ENTROPY:
            raise ValueError("entropy ranges are ONNX Runtime's own (use quantize_onnx_int8)")
        if not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {percentile}")
        self.percentile = percentile
        self.num_samples = num_samples
        self._min: dict[str, float] = {}
        self._max: dict[str, float] = {}
        self._top: dict[str, np.ndarray] = {}
        self._bot: dict[str, np.ndarray] = {}
        self._k: dict[str, int] = {}

    def update(self, name: str, arr: np.ndarray) -> None:
        a = np.asarray(arr, dtype=np.float32).ravel()
        if a.size == 0:
            return
        lo, hi = float(a.min()), float(a.max())
        self._min[name] = min(lo, self._min.get(name, lo))
        self._max[name] = max(hi, self._max.get(name, hi))
        if self.method != CalibrationMethod.PERCENTILE:
            return
        k = self._k.setdefault(name, max(1, math.ceil(a.size * self.num_samples * (1 - self.percentile / 100.0)) + 1))
        if name in self._top and self._top[name].size >= k:
            # only values beyond the current k-th largest / smallest can enter the tails (exact, and cheap)
            top = np.concatenate([self._top[name], a[a > self._top[name].min()]])
            bot = np.concatenate([self._bot[name], a[a < self._bot[name].max()]])
        else:
            kk = min(k, a.size)
            top = np.partition(a, a.size - kk)[a.size - kk:]
            bot = np.partition(a, kk - 1)[:kk]
            if name in self._top:
                top = np.concatenate([self._top[name], top])
                bot = np.concatenate([self._bot[name], bot])
        if top.size > k:
            top = np.partition(top, top.size - k)[top.size - k:]
            bot = np.partition(bot, k - 1)[:k]
        self._top[name], self._bot[name] = top, bot

    def ranges(self) -> dict[str, tuple[float, float]]:
        out = {}
        for name in self._min:
            lo, hi = self._min[name], self._max[name]
            if self.method == CalibrationMethod.PERCENTILE:
                # the k-th largest of n values approximates quantile p; never widen beyond min/max
                hi = min(hi, float(np.min(self._top[name])))
                lo = max(lo, float(np.max(self._bot[name])))
            out[name] = (min(lo, 0.0), max(hi, 0.0))
        return out


def onnx_activation_ranges(
    onnx_path: str | Path,
    *,
    calibration: Iterable[dict[str, np.ndarray]],
    method: CalibrationMethod | str = CalibrationMethod.MINMAX,
    percentile: float = DEFAULT_PERCENTILE,
) -> dict[str, tuple[float, float]]:
    """{ONNX tensor name: (lo, hi)} over the calibration samples, for every float activation (graph inputs,
    node outputs; not initializers). Runs ONNX Runtime on CPU with all intermediate tensors exposed."""
    from edgeport.calibration.onnx_taps import TappedSession

    samples = list(calibration)
    tapped = TappedSession(onnx_path)
    col = RangeCollector(method=method, percentile=percentile, num_samples=len(samples))
    for feed in samples:
        for name, value in tapped.run(feed).items():
            col.update(name, value)
    return col.ranges()
