"""The converter's tensor map, saved beside each TFLite file: which ONNX tensor every TFLite tensor holds.

`convert()` writes `model_<precision>.tensormap.json` next to `model_<precision>.tflite`; per-layer validation reads
it back with `load_tensor_map` instead of replaying the converter's passes.

    >>> tm = load_tensor_map(tensor_map_path("out/model_int8.tflite"))
    >>> tm.tensors["stage2/Relu;..."]       # TensorOrigin(onnx_name, perm, channel_perm)

File contract (JSON, format `edgeport.tensormap`, version `TENSOR_MAP_VERSION`):
- `tensors`: {TFLite tensor name: {onnx_name, perm, channel_perm}}; `tflite = transpose(onnx, perm)` and, when the
  shuffle pass permuted that ONNX tensor's channels, `onnx_value[:, channel_perm]` is what the TFLite tensor holds.
  The graph outputs (TFLite names them after the signature, not the ONNX scope) are included, matched by position.
  A piece a split conv computes (`<tensor>_slice__sp<k>`) carries the channels of `<tensor>` it holds as its
  `channel_perm`.
- `channel_permutations`: {tensor of the rewritten ONNX graph: p} with `rewritten[:, i] == original[:, p[i]]`.
- `input_layout`: the TFLite model's 4-D input layout (nhwc | nchw).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from edgeport.errors import ExportError
from edgeport.files import atomic_write_text

TENSOR_MAP_SUFFIX = ".tensormap.json"
TENSOR_MAP_FORMAT = "edgeport.tensormap"
TENSOR_MAP_VERSION = 1
_HINT = "re-run edgeport export"


@dataclass
class TensorOrigin:
    """Where a TFLite tensor comes from: the ONNX tensor, its layout (tflite = transpose(onnx, perm)), and the
    channel permutation the shuffle pass applied to that ONNX tensor (None if none)."""

    onnx_name: str
    perm: tuple[int, ...]
    channel_perm: list[int] | None = None

    def as_dict(self) -> dict:
        return {"onnx_name": self.onnx_name, "perm": list(self.perm), "channel_perm": self.channel_perm}


@dataclass(frozen=True)
class TensorMapFile:
    """A loaded tensor map: `tensors` {TFLite tensor name: TensorOrigin}, `channel_permutations` {ONNX tensor: p},
    `input_layout` (nhwc | nchw) and the file's format `version`."""

    tensors: dict[str, TensorOrigin]
    channel_permutations: dict[str, list[int]]
    input_layout: str
    version: int = TENSOR_MAP_VERSION


def tensor_map_path(tflite_path: str | os.PathLike) -> Path:
    """The tensor map beside a TFLite file: model_int8.tflite -> model_int8.tensormap.json."""
    p = Path(tflite_path)
    stem = p.name[: -len(p.suffix)] if p.suffix else p.name
    return p.with_name(stem + TENSOR_MAP_SUFFIX)


def save_tensor_map(path: str | os.PathLike, *, tensors: Mapping[str, TensorOrigin],
                    channel_permutations: Mapping[str, list[int]], input_layout: str) -> None:
    """Write the map atomically (temporary file in the same folder, then os.replace)."""
    doc = {
        "format": TENSOR_MAP_FORMAT,
        "version": TENSOR_MAP_VERSION,
        "input_layout": str(getattr(input_layout, "value", input_layout)),
        "channel_permutations": {k: [int(i) for i in v] for k, v in channel_permutations.items()},
        "tensors": {name: {"onnx_name": o.onnx_name, "perm": [int(i) for i in o.perm],
                           "channel_perm": None if o.channel_perm is None else [int(i) for i in o.channel_perm]}
                    for name, o in tensors.items()},
    }
    atomic_write_text(path, json.dumps(doc, indent=1) + "\n")


def _ints(value, what: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        raise ValueError(f"{what} is not a list of integers")
    return value


def _origin(name: str, entry) -> TensorOrigin:
    if not isinstance(entry, dict) or not isinstance(entry.get("onnx_name"), str):
        raise ValueError(f"tensor {name!r} has no onnx_name")
    cp = entry.get("channel_perm")
    return TensorOrigin(entry["onnx_name"], tuple(_ints(entry.get("perm"), f"tensor {name!r} perm")),
                        None if cp is None else _ints(cp, f"tensor {name!r} channel_perm"))


def load_tensor_map(path: str | os.PathLike) -> TensorMapFile:
    """Read a tensor map written by `save_tensor_map`. A missing, corrupt or foreign file (or one of a newer format
    version) raises ExportError in one line naming the file and what is wrong."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"tensor map {path} does not exist", hint=_HINT) from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ExportError(f"tensor map {path} is not readable JSON: {str(e).splitlines()[0]}", hint=_HINT) from None
    if not isinstance(doc, dict) or doc.get("format") != TENSOR_MAP_FORMAT:
        raise ExportError(f"{path} is not an edgeport tensor map (no format {TENSOR_MAP_FORMAT!r})", hint=_HINT)
    version = doc.get("version")
    if not isinstance(version, int) or version != TENSOR_MAP_VERSION:
        raise ExportError(f"tensor map {path} has format version {version!r}; this edgeport reads version "
                          f"{TENSOR_MAP_VERSION}", hint=_HINT)
    try:
        layout, tensors, perms = doc.get("input_layout"), doc.get("tensors"), doc.get("channel_permutations")
        if not isinstance(layout, str) or not layout:
            raise ValueError("input_layout is missing")
        if not isinstance(tensors, dict) or not isinstance(perms, dict):
            raise ValueError("tensors or channel_permutations is not an object")
        return TensorMapFile(tensors={k: _origin(k, v) for k, v in tensors.items()},
                             channel_permutations={k: _ints(v, f"channel permutation {k!r}") for k, v in perms.items()},
                             input_layout=layout, version=version)
    except ValueError as e:
        raise ExportError(f"tensor map {path} is corrupt: {e}", hint=_HINT) from None
