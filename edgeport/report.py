"""DIR/report.json: one document per output directory that every step adds to (schema: docs/report.md).

Writes are atomic (temp file in the same directory + os.replace), so an interrupted run never leaves a truncated
report or artifact that looks valid.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from edgeport.errors import OutputDirError

SCHEMA_VERSION = 1
REPORT_NAME = "report.json"
TOP_KEYS = ("schema_version", "tool", "source", "model", "artifacts", "artifact_info", "ops", "calibration",
            "conversion", "parity", "layers", "accuracy", "latency", "device_parity", "failures", "steps")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def check_out_dir(out: str | os.PathLike) -> Path:
    """Raise OutputDirError if `out` is a file, lies under a file, or cannot be created or written; creates nothing."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"output directory {out} exists and is a file", hint="choose another --out")
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe != out and not probe.is_dir():
        raise OutputDirError(f"cannot create output directory {out}: {probe} is a file", hint="choose another --out")
    if not _writable(probe):
        what = "output directory" if probe == out else f"cannot create output directory {out}: parent"
        raise OutputDirError(f"{what} {probe} is not writable", hint="choose another --out or fix permissions")
    return out


def _writable(d: Path) -> bool:
    """access(2) also refuses read-only mounts and immutable (chattr +i) folders, for root too."""
    return os.access(d, os.W_OK | os.X_OK)


# Leftovers of an interrupted run (temp files, staging folders): never valid artifacts, removed on the next run.
LEFTOVER_GLOBS = (".*.tmp", "*.tmp", ".stage-*", ".*.prepared.onnx")


def prepare_out_dir(out: str | os.PathLike) -> Path:
    """Create `out` if needed; raise OutputDirError if it is a file or not writable. Removes leftovers."""
    out = check_out_dir(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputDirError(f"cannot create output directory {out}: {exc.strerror}") from None
    if not _writable(out):
        raise OutputDirError(f"output directory {out} is not writable", hint="choose another --out or fix permissions")
    import shutil

    for pattern in LEFTOVER_GLOBS:
        for tmp in out.glob(pattern):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
    return out


def _tool_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("edgeport", "torch", "onnx", "onnxruntime", "onnxsim", "tensorflow-cpu", "tensorflow", "ai-edge-litert", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


class Report:
    """A dict-backed report.json. `update(section, value)` merges dict sections; `save()` writes atomically."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data

    @classmethod
    def load(cls, out_dir: str | os.PathLike, *, create: bool = True) -> "Report":
        path = Path(out_dir) / REPORT_NAME
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise OutputDirError(f"{path} is not valid JSON ({exc}); delete it or use --force") from None
        elif create:
            data = {"schema_version": SCHEMA_VERSION}
        else:
            raise OutputDirError(f"{path} does not exist: run `edgeport export` or `edgeport run` into {out_dir} first")
        data.setdefault("tool", _tool_versions())
        return cls(path, data)

    def get(self, key: str, default=None):
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def merge(self, key: str, value: dict) -> None:
        section = self.data.setdefault(key, {})
        section.update(value)

    def append(self, key: str, items: list) -> None:
        self.data.setdefault(key, []).extend(items)

    def save(self) -> Path:
        ordered = {k: self.data[k] for k in TOP_KEYS if k in self.data}
        ordered.update({k: v for k, v in self.data.items() if k not in ordered})
        atomic_write_text(self.path, json.dumps(ordered, indent=2, sort_keys=False, default=_json_default) + "\n")
        return self.path


def _json_default(obj):
    import numpy as np

    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
