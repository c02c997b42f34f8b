"""How the runner times: inference rounds interleaved across configurations, and the statistics of the times.

Part of the device runner (see protocol.py).
"""
from __future__ import annotations

import time

import numpy as np

from .protocol import RunnerError


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


def timed_rounds(loaded: list[dict], *, runs: int, budget: float | None, min_seconds: float | None) -> None:
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
