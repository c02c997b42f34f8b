"""Typed errors. Each says what is wrong and what to do; the CLI prints the message and exits with `exit_code`."""
from __future__ import annotations

import difflib


class EdgeportError(Exception):
    """Base class. `exit_code` is what the CLI returns (2: bad input, 1: a check failed, 3: a target failed)."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UnknownNameError(EdgeportError, KeyError):
    """A name that is not in a registry; the message lists the valid ones."""

    def __init__(self, kind: str, name: str, valid: list[str] | tuple[str, ...], *, suggestion: str | None = None):
        if suggestion is None:
            close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=0.6)
            suggestion = close[0] if close else None
        hint = f"did you mean {suggestion!r}? " if suggestion else ""
        super().__init__(f"unknown {kind} {name!r}; {hint}valid: {', '.join(sorted(valid))}")
        self.kind, self.name, self.valid, self.suggestion = kind, name, tuple(valid), suggestion

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return self.message


class ModelBuildError(EdgeportError):
    """Bad builder arguments, or a user factory that does not return an nn.Module."""


class CheckpointError(EdgeportError):
    """A checkpoint that cannot be read, needs trust, or does not fit the model."""


class InputShapeError(EdgeportError):
    """An input shape of the wrong rank or with non-positive sizes."""


class ExportError(EdgeportError):
    """The exporter itself failed."""


class UnsupportedOpError(ExportError):
    """An ONNX op the converter has no lowering for; names the op type and node."""

    def __init__(self, op_type: str, node_name: str, supported: list[str] | tuple[str, ...], detail: str = ""):
        msg = f"unsupported ONNX op {op_type!r} at node {node_name!r}"
        if detail:
            msg += f": {detail}"
        msg += f"; supported ops: {', '.join(sorted(supported))}"
        super().__init__(msg)
        self.op_type, self.node_name, self.supported = op_type, node_name, tuple(supported)


class ParityError(EdgeportError):
    """An artifact does not compute what its reference computes. Carries the numbers."""

    exit_code = 1

    def __init__(self, artifact: str, metric: str, value: float, threshold: float, *, detail: str = ""):
        msg = f"{artifact}: {metric} = {value:.6g} misses the threshold {threshold:.6g}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)
        self.artifact, self.metric, self.value, self.threshold = artifact, metric, value, threshold


class CalibrationError(EdgeportError):
    """Calibration data that is missing, empty, unreadable or of the wrong shape."""


class TargetError(EdgeportError):
    """A device target that is malformed, unreachable or failed; names the target."""

    exit_code = 3


class RunnerBuildError(EdgeportError):
    """The device runner's modules (edgeport.runtime.device) break a rule of their assembly into one file: an
    edgeport bug or a damaged install, never the user's input."""

    exit_code = 4


class OutputDirError(EdgeportError):
    """The output directory is a file or cannot be written."""


class ReportError(OutputDirError):
    """A report.json that is missing, corrupt, of another shape or a newer schema, or that lists an artifact that
    is missing or changed since edgeport wrote it."""


class ArtifactError(EdgeportError):
    """An artifact file that is not a valid model (corrupt, truncated) or that crashed the runtime loading it: bad
    input (exit 2), named in the message; never reported as a device failure."""
