"""What the runtime tests observe instead of the clock: the commands a target ran, and conditions polled to a deadline.

Tests never assert how long something took (timings live in benchmarks/). Where a test used to bound a duration, it
checks what the bound stood for (which step timed out and was killed, that a step ran once); where it slept before
looking at processes, it polls the real condition until it holds or a deadline passes.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class Command:
    """One command a target ran through `run_local`: its argv, the timeout it was given, and its (rc, out, err) or
    None when it timed out and its process group was killed."""

    argv: list[str]
    timeout: float
    result: tuple[int, str, str] | None

    @property
    def script(self) -> str:
        """The shell text (ssh's / `adb shell`'s last argument)."""
        return self.argv[-1]


def record_commands(monkeypatch, module: str) -> list[Command]:
    """Wrap `module.run_local` (edgeport.runtime.transports for ssh/adb, edgeport.runtime.targets for local) so
    every command it runs is appended to the returned list; the commands still run."""
    mod = importlib.import_module(module)
    real = mod.run_local
    calls: list[Command] = []

    def recording(cmd, *, timeout, **kwargs):
        res = real(cmd, timeout=timeout, **kwargs)
        calls.append(Command(list(cmd), timeout, res))
        return res

    monkeypatch.setattr(mod, "run_local", recording)
    return calls


def until_empty(probe: Callable[[], list], *, timeout_s: float = 60.0, interval_s: float = 0.1) -> list:
    """Call probe() until it returns an empty list or `timeout_s` has passed; return its last answer (assert on it:
    a non-empty answer lists what is still there)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(interval_s)
