"""Progress of the converter's stages: a callback told when each stage starts and ends, and the timer that tells it."""
from __future__ import annotations

import contextlib
import time
from typing import Callable

OnStage = Callable[[str, str, str], None]
"""`on_stage(stage, status, detail)`: status "start" (detail "") or "done" (detail: the elapsed time, "1.2s")."""


@contextlib.contextmanager
def timed_stage(on_stage: OnStage | None, name: str, timings: dict[str, float], key: str):
    """Time one stage into `timings[key]` and tell `on_stage` when it starts and ends."""
    t = time.perf_counter()
    if on_stage is not None:
        on_stage(name, "start", "")
    yield
    timings[key] = time.perf_counter() - t
    if on_stage is not None:
        on_stage(name, "done", f"{timings[key]:.1f}s")
