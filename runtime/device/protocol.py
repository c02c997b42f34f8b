"""The benchmark runner: Python stdlib + numpy + one interpreter (ONNX Runtime and/or a TFLite interpreter).

This is the one file edgeport copies to a device (Raspberry Pi over ssh, Android over adb) and to a job folder on
this machine (`--target local`), and runs there as `python3 device_runner.py ...`. It is assembled at ship time
from the modules of `edgeport.runtime.device` (its header names them, their line ranges here, and the sha256 of
the text that follows the header); the host imports the same modules, so host and device numbers come from one
implementation. It imports nothing but the stdlib, numpy and the interpreter it is asked for. How to call it:
`USAGE` below.

JOB.json (paths relative to the job file's folder):
    {"artifacts": [{"name": "tflite_int8", "file": "m_int8.tflite"}],
     "engines": ["tflite", "onnxruntime"], "threads": [1, 2], "warmup": 5, "runs": 50, "time_budget_s": null,
     "pin": "0,1" | "big" | null, "parity_inputs": "parity.npz" | null, "rss": true, "seed": 0,
     "min_seconds": null, "cooldown_s": null, "max_temp_c": null}
parity.npz holds, per artifact and input, the samples of that input stacked on a leading axis (S, *input_shape) in
the artifact's own layout (key `<artifact>:<input index>`, inputs in the artifact's order; floats, or an integer
input's own dtype); sample s feeds row s of every input. The result carries each configuration's float outputs for
them (every output).

Timing: every configuration is loaded first, then timed in rounds: each round runs one inference of every
configuration, in an order rotated per round, so slow drift (thermal, other load) hits all configurations alike.
A timed inference is set-input + invoke + read-output with inputs already in the model's dtype.
Peak RSS: ru_maxrss of a separate process per configuration (`--probe`) that loads it and runs first + warm-up
inferences; it includes the Python + numpy + runtime baseline of that process.
CPU time: process CPU time (all threads) around each timed inference. Load average, /proc/stat and thermal zones
are read right before and after the timed rounds; the host judges them (edgeport.runtime.results). Without "pin",
cores differing in cpuinfo_max_freq: the fastest ones. /sys is read under $EDGEPORT_SYSFS_ROOT (tests: a fake tree).

This first part: the protocol with the host (the result and stage lines, the errors a job reports).
"""
from __future__ import annotations

import json
import os
import sys

RESULT_MARKER = "EDGEPORT-RESULT "
STAGE_MARKER = "EDGEPORT-STAGE "  # on stderr before each artifact is loaded and first run: a crash is blamed on it
USAGE = """usage:
    python3 device_runner.py --discover                  # JSON: python, numpy, machine, interpreters found
    python3 device_runner.py JOB.json [--deadline S]      # runs the job, prints "EDGEPORT-RESULT <json>" on stdout
    python3 device_runner.py JOB.json --probe I           # one configuration alone in this process: peak RSS
"""

try:
    import numpy as np  # noqa: F401 - the first numpy import of the assembled runner: a device without it is told
except ImportError as _exc:  # on a device: say so in the one line the host reads
    if __name__ != "__main__":
        raise
    print(RESULT_MARKER + json.dumps({"error": f"numpy is not installed for {sys.executable} ({_exc}); "
                                               f"pip install numpy (or apt install python3-numpy) there"}), flush=True)
    sys.exit(3)


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


def result_line(data: dict) -> str:
    """The one line the host reads from stdout: RESULT_MARKER + JSON."""
    return RESULT_MARKER + json.dumps(data)
