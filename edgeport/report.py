"""DIR/report.json: the one module that owns its schema (docs/report.md).

- `SECTIONS` declares every top-level section: its JSON type, the type of its values, and how a step's result is
  folded in (set, merged by key, appended). `load_report` validates a file against it and migrates older schema
  versions, so a corrupt, foreign or future report.json is one `ReportError` line (exit 2), never a traceback.
- Artifacts are typed: `ArtifactKind` (one enum for every artifact name) and `ArtifactEntry` (file name, size and
  sha256 recorded when the file was written). Every reader gets an artifact's path through
  `Report.artifact_path`, which refuses a missing, changed or stale file.
- Device parity is typed: `DeviceParity` (an artifact x engine on a target vs this machine) holds one
  `OutputParity` per model output and passes only when every output does; `load_report` checks each entry.
- Steps return typed results; `Report.apply(result)` writes a result's `report_sections()` into the report. The
  report is an output of the steps, written from their results.

Writes are atomic (edgeport.files), so an interrupted run never leaves a truncated report.
"""
from __future__ import annotations

import enum
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol

from edgeport.errors import OutputDirError, ReportError
from edgeport.files import (atomic_write_bytes, atomic_write_text, check_out_dir, prepare_out_dir,  # noqa: F401
                            sha256_file)
from edgeport.metrics import HIGHER_IS_BETTER

SCHEMA_VERSION = 2
REPORT_NAME = "report.json"


# ---- artifacts --------------------------------------------------------------------------------------------------
class ArtifactKind(str, enum.Enum):
    """Every artifact edgeport writes into DIR; the value is its name in report.json."""

    ONNX = "onnx"
    TFLITE_FP32 = "tflite_fp32"
    TFLITE_INT8 = "tflite_int8"
    TFLITE_FP16 = "tflite_fp16"
    TFLITE_DYNAMIC = "tflite_dynamic"
    ONNX_INT8 = "onnx_int8"

    def __str__(self) -> str:
        return self.value

    @property
    def file_name(self) -> str:
        """The file this artifact is written to in DIR."""
        return _FILES[self]

    @property
    def runtime(self) -> str:
        """onnxruntime | tflite: the kind of engine that runs it."""
        return "tflite" if self.value.startswith("tflite") else "onnxruntime"

    @property
    def precision(self) -> str:
        return {"onnx": "fp32", "onnx_int8": "int8"}.get(self.value, self.value.removeprefix("tflite_"))

    @classmethod
    def tflite(cls, precision: str) -> "ArtifactKind":
        return cls(f"tflite_{getattr(precision, 'value', precision)}")

    @classmethod
    def parse(cls, name: str) -> "ArtifactKind":
        try:
            return cls(name)
        except ValueError:
            raise ReportError(f"unknown artifact {name!r}; valid: {', '.join(k.value for k in cls)}") from None


_FILES = {ArtifactKind.ONNX: "model.onnx", ArtifactKind.TFLITE_FP32: "model_fp32.tflite",
          ArtifactKind.TFLITE_INT8: "model_int8.tflite", ArtifactKind.TFLITE_FP16: "model_fp16.tflite",
          ArtifactKind.TFLITE_DYNAMIC: "model_dynamic.tflite", ArtifactKind.ONNX_INT8: "model_int8.onnx"}


@dataclass(frozen=True)
class FileRecord:
    """A file in DIR as edgeport wrote it: name (relative to DIR), size in bytes, sha256."""

    file: str
    size: int
    sha256: str

    @classmethod
    def of(cls, out_dir: str | os.PathLike, file: str) -> "FileRecord":
        p = Path(out_dir) / file
        return cls(file, p.stat().st_size, sha256_file(p))

    def to_json(self) -> dict:
        return {"file": self.file, "size": self.size, "sha256": self.sha256}

    @classmethod
    def from_json(cls, d: Any, *, where: str) -> "FileRecord":
        if not (isinstance(d, dict) and isinstance(d.get("file"), str) and isinstance(d.get("size"), int)
                and isinstance(d.get("sha256"), str)):
            raise ReportError(f"{where}: expected {{file, size, sha256}}, got {_short(d)}")
        return cls(d["file"], d["size"], d["sha256"])

    def verify(self, out_dir: str | os.PathLike, *, what: str) -> Path:
        """The file's path; raises StaleArtifactError when it is missing or differs from what was written."""
        p = Path(out_dir) / self.file
        if not p.is_file():
            raise StaleArtifactError(f"{what}: {p} is missing", hint="re-run `edgeport export` into this folder")
        if p.stat().st_size != self.size or sha256_file(p) != self.sha256:
            raise StaleArtifactError(f"{what}: {p} changed since edgeport wrote it (its sha256 differs from "
                                     f"report.json)", hint="re-run `edgeport export` into this folder")
        return p


class StaleArtifactError(ReportError):
    """An artifact listed in report.json is missing or is not the file edgeport wrote."""


@dataclass(frozen=True)
class ArtifactEntry:
    """One artifact: its kind, its file record, and the converter's tensor map beside it (TFLite only)."""

    kind: ArtifactKind
    record: FileRecord
    tensor_map: FileRecord | None = None

    @property
    def file(self) -> str:
        return self.record.file

    @classmethod
    def written(cls, out_dir: str | os.PathLike, kind: ArtifactKind, file: str | None = None, *,
                tensor_map: str | None = None) -> "ArtifactEntry":
        """The entry of a file just written into DIR (hashes it now)."""
        return cls(kind, FileRecord.of(out_dir, file or kind.file_name),
                   FileRecord.of(out_dir, tensor_map) if tensor_map else None)

    def to_json(self) -> dict:
        d = self.record.to_json()
        if self.tensor_map is not None:
            d["tensor_map"] = self.tensor_map.to_json()
        return d

    @classmethod
    def from_json(cls, name: str, d: Any) -> "ArtifactEntry":
        kind = ArtifactKind.parse(name)
        rec = FileRecord.from_json(d, where=f"report.json artifacts.{name}")
        tm = d.get("tensor_map")
        return cls(kind, rec, FileRecord.from_json(tm, where=f"artifacts.{name}.tensor_map") if tm else None)


# ---- device parity ----------------------------------------------------------------------------------------------
# What one output of a device-parity check holds (edgeport.metrics.device_parity_metrics), in report.json's order.
DEVICE_PARITY_METRICS = ("cosine_min", "sqnr_db", "max_abs", "max_abs_rel", "top1_agreement", "near_ties",
                         "top1_decisive")
DEVICE_PARITY_REFERENCE = "this machine, same artifact"


def _worse(metric: str):
    """min or max: which way `metric` gets worse (metrics.HIGHER_IS_BETTER; max_abs and near_ties: larger)."""
    return min if HIGHER_IS_BETTER.get(metric, False) else max


@dataclass(frozen=True)
class OutputParity:
    """One output of an artifact on a target vs the same output on this machine, on the same samples: its index
    and name in the model, its metrics (None: a report written before that metric was recorded) and whether it
    met bench's bar (edgeport.runtime.bench)."""

    index: int
    name: str
    ok: bool
    cosine_min: float | None = None
    sqnr_db: float | None = None
    max_abs: float | None = None
    max_abs_rel: float | None = None
    top1_agreement: float | None = None
    near_ties: int | None = None
    top1_decisive: float | None = None

    def metrics(self) -> dict[str, float | int | None]:
        return {k: getattr(self, k) for k in DEVICE_PARITY_METRICS}

    def to_json(self) -> dict:
        return {"index": self.index, "name": self.name, **self.metrics(), "ok": self.ok}

    @classmethod
    def from_json(cls, d: Any, *, where: str) -> "OutputParity":
        if not (isinstance(d, dict) and isinstance(d.get("index"), int) and isinstance(d.get("name"), str)
                and isinstance(d.get("ok"), bool)):
            raise ReportError(f"{where}: expected {{index, name, ok, {', '.join(DEVICE_PARITY_METRICS)}}}, "
                              f"got {_short(d)}")
        for k in DEVICE_PARITY_METRICS:
            if d.get(k) is not None and (isinstance(d[k], bool) or not isinstance(d[k], (int, float))):
                raise ReportError(f"{where}.{k} is not a number: {_short(d[k])}")
        return cls(index=d["index"], name=d["name"], ok=d["ok"], **{k: d.get(k) for k in DEVICE_PARITY_METRICS})


@dataclass(frozen=True)
class DeviceParity:
    """One artifact x engine on a target vs the same artifact run on this machine: one OutputParity per model
    output, in the model's order. It passes only when every output passes. report.json's entry also carries, at
    its top level, each metric's worst value over the outputs and `worst_output` (the first failing output, else
    the lowest cosine_min), so a reader of the headline numbers sees the failing output's."""

    target: str
    artifact: str
    outputs: tuple[OutputParity, ...]
    engine: str | None = None
    device: str | None = None
    device_arch: str | None = None
    samples: int | None = None
    reference: str | None = DEVICE_PARITY_REFERENCE

    @property
    def ok(self) -> bool:
        return bool(self.outputs) and all(o.ok for o in self.outputs)

    @property
    def failed(self) -> tuple[OutputParity, ...]:
        return tuple(o for o in self.outputs if not o.ok)

    @property
    def worst_output(self) -> OutputParity | None:
        lowest = float("-inf")
        return min(self.outputs, key=lambda o: (o.ok, lowest if o.cosine_min is None else o.cosine_min),
                   default=None)

    def summary(self) -> dict[str, float | int | None]:
        """Each metric's worst value over the outputs that recorded it (None when none did)."""
        out = {}
        for k in DEVICE_PARITY_METRICS:
            values = [v for v in (getattr(o, k) for o in self.outputs) if v is not None]
            out[k] = _worse(k)(values) if values else None
        return out

    def to_json(self) -> dict:
        worst = self.worst_output
        return {"target": self.target, "device": self.device, "artifact": self.artifact, "engine": self.engine,
                "reference": self.reference, **self.summary(), "samples": self.samples, "ok": self.ok,
                "device_arch": self.device_arch, "worst_output": worst.name if worst else None,
                "outputs": [o.to_json() for o in self.outputs]}

    @classmethod
    def from_json(cls, d: Any, *, where: str) -> "DeviceParity":
        """An entry of report.json `device_parity`. One written before every output was compared (no `outputs`)
        reads as its first output alone, under the name `output_0`, with the entry's `ok`."""
        if not (isinstance(d, dict) and isinstance(d.get("target"), str) and isinstance(d.get("artifact"), str)
                and isinstance(d.get("ok"), bool)):
            raise ReportError(f"{where}: expected {{target, artifact, ok, outputs, ...}}, got {_short(d)}")
        raw = d.get("outputs")
        if raw is None:
            outputs = (OutputParity.from_json({**{k: d.get(k) for k in DEVICE_PARITY_METRICS}, "index": 0,
                                               "name": "output_0", "ok": d["ok"]}, where=where),)
        elif isinstance(raw, list) and raw:
            outputs = tuple(OutputParity.from_json(o, where=f"{where}.outputs[{i}]") for i, o in enumerate(raw))
        else:
            raise ReportError(f"{where}.outputs should be a non-empty list, got {_short(raw)}")
        entry = cls(target=d["target"], artifact=d["artifact"], outputs=outputs, engine=d.get("engine"),
                    device=d.get("device"), device_arch=d.get("device_arch"), samples=d.get("samples"),
                    reference=d.get("reference"))
        if entry.ok != d["ok"]:
            raise ReportError(f"{where}: ok is {str(d['ok']).lower()} but its outputs say "
                              f"{str(entry.ok).lower()}", hint="delete the entry or re-run `edgeport bench`")
        return entry


def device_parity_entries(data: Mapping[str, Any]) -> list[DeviceParity]:
    """report.json `device_parity` as typed entries, in the order they were written (oldest first)."""
    return [DeviceParity.from_json(d, where=f"device_parity[{i}]")
            for i, d in enumerate(data.get("device_parity") or [])]



def float_op_groups(info: Mapping[str, Any]) -> list[tuple[str, str, list[str], int, str]]:
    """(artifact, ONNX op, TFLite ops, count, why) per group of ops an INT8 model computes in float
    (artifact_info.<artifact>.float_ops, written by the conversion: export/tflite/float_ops.py), in report order."""
    groups: dict[tuple, int] = {}
    for art, i in (info or {}).items():
        for f in (i or {}).get("float_ops") or []:
            key = (art, f["onnx_op"], tuple(f.get("tflite_ops") or ()), f.get("why") or f.get("reason", ""))
            groups[key] = groups.get(key, 0) + 1
    return [(art, op, list(tfl), n, why) for (art, op, tfl, why), n in groups.items()]


def float_op_lines(info: Mapping[str, Any]) -> list[str]:
    """What the terminal says of the ops an INT8 model keeps float: one line per artifact, one per group."""
    lines, last = [], None
    for art, op, tfl, n, why in float_op_groups(info):
        if art != last:
            total = len((info[art] or {}).get("float_ops") or [])
            lines.append(f"{art}: {total} ONNX op{'s' if total != 1 else ''} stay float inside the INT8 model "
                         "(DEQUANTIZE / QUANTIZE around them):")
            last = art
        lines.append(f"  {op} x{n} (TFLite {'+'.join(tfl) or '-'}): {why}")
    return lines


def xnnpack_lines(info: Mapping[str, Any]) -> list[str]:
    """What the terminal says of a TFLite artifact that XNNPACK does not run whole (artifact_info.<a>.xnnpack, written
    by the conversion): one line each, naming the ops left to the builtin kernels and why; nothing when it does."""
    lines = []
    for art, i in (info or {}).items():
        x = (i or {}).get("xnnpack")
        if not x or x.get("complete"):
            continue
        if x.get("error"):
            lines.append(f"{art}: XNNPACK cannot prepare it: {x['error']}")
            continue
        left = ", ".join(f"{op} x{n}" for op, n in (x.get("builtin_ops") or {}).items()) or "-"
        lines.append(f"{art}: XNNPACK runs it in {x['partitions']} partitions, not whole; left to TFLite's builtin "
                     f"kernels: {left} ({x.get('why', '')})")
    return lines


def noise_floor_rows(parity: Mapping[str, Any]) -> list[list[str]]:
    """One row per float32 artifact whose max_abs_rel bound was widened by the model's float noise floor
    (parity.<a>.noise_floor, written by validation): artifact, max_abs_rel, the bound, the floor, the factor the
    floor was multiplied by, where it was measured."""
    rows = []
    for art, p in (parity or {}).items():
        if (nf := (p or {}).get("noise_floor")) and p.get("max_abs_rel") is not None:
            where = "; ".join(f"{k}: {' vs '.join(v['engines'])} differ by {max(v['per_output']):.2g}"
                              for k, v in nf.get("files", {}).items())
            rows.append([art, f"{p['max_abs_rel']:.2g}", f"{(p.get('thresholds') or {}).get('max_abs_rel', 0):.2g}",
                         f"{nf['max_abs_rel']:.2g}", f"{nf['factor']:g}x", where])
    return rows


def noise_floor_lines(parity: Mapping[str, Any]) -> list[str]:
    """What the terminal says of each row of `noise_floor_rows`: one line per artifact."""
    return [f"{art}: max_abs_rel {value} is above the spec's float bound; held to {factor} this model's own float "
            f"noise floor instead ({bound}; {where})" for art, value, bound, _, factor, where in noise_floor_rows(parity)]


# ---- the schema -------------------------------------------------------------------------------------------------
class Fold(str, enum.Enum):
    """How a step's value for a section is written: replace it, merge by key (dicts), or append (lists)."""

    SET = "set"
    MERGE = "merge"
    APPEND = "append"


@dataclass(frozen=True)
class Section:
    name: str
    json_type: type  # dict | list | int
    fold: Fold
    value_type: type | None = None  # for dict sections: the type of each value; for lists: of each item
    doc: str = ""


SECTIONS: dict[str, Section] = {s.name: s for s in (
    Section("schema_version", int, Fold.SET, doc="the schema version of this file"),
    Section("tool", dict, Fold.SET, str, "versions of the tools that wrote it"),
    Section("source", dict, Fold.SET, None, "what was exported: kind, name, checkpoint, sha256, arguments"),
    Section("model", dict, Fold.SET, None, "name, family, input_shape, num_classes, mean, std, params, macs, outputs "
            "(name, shape, kind)"),
    Section("artifacts", dict, Fold.MERGE, dict, "artifact -> {file, size, sha256[, tensor_map]}"),
    Section("artifact_info", dict, Fold.MERGE, dict, "artifact -> precision, layout, io dtype, converter details"),
    Section("ops", dict, Fold.MERGE, dict, "artifact -> {op type: count}"),
    Section("calibration", dict, Fold.MERGE, None, "calibration and validation samples, methods"),
    Section("conversion", dict, Fold.MERGE, None, "seconds per conversion step"),
    Section("parity", dict, Fold.MERGE, dict, "artifact -> parity metrics vs the reference"),
    Section("layers", dict, Fold.SET, None, "per-layer INT8 attribution"),
    Section("accuracy", dict, Fold.SET, None, "accuracy on labelled samples"),
    Section("latency", list, Fold.APPEND, dict, "one entry per target x engine x artifact x threads"),
    Section("device_parity", list, Fold.APPEND, dict, "target outputs vs this machine's, every output "
            "(DeviceParity)"),
    Section("recommendation", dict, Fold.SET, None, "the decision per target: best, runner-up, ratio of p50s "
            "(edgeport/recommend.py)"),
    Section("failures", dict, Fold.MERGE, str, "step -> one-line error of the last run"),
    Section("steps", dict, Fold.MERGE, dict, "step -> key, seconds, finished, outputs"),
)}
TOP_KEYS = tuple(SECTIONS)


class StepOutput(Protocol):
    """What a step returns: a typed result that knows which report sections it fills."""

    def report_sections(self) -> Mapping[str, Any]: ...


def _short(v: Any) -> str:
    text = json.dumps(v, default=str) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_sections(data: Any, *, path: Path) -> dict:
    """Raise ReportError naming the first section whose shape does not match SECTIONS."""
    if not isinstance(data, dict):
        raise ReportError(f"{path} is not an edgeport report (top level is a {type(data).__name__}, not an object)",
                          hint="delete it or choose another --out")
    for name, value in data.items():
        sec = SECTIONS.get(name)
        if sec is None:
            continue  # a key a newer minor version added: kept as is
        if not isinstance(value, sec.json_type) or isinstance(value, bool):
            raise ReportError(f"{path}: section {name!r} should be a {sec.json_type.__name__}, "
                              f"got {type(value).__name__}", hint="delete it or re-run with --force")
        items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        if sec.value_type is not None and any(not isinstance(v, sec.value_type) for v in items):
            raise ReportError(f"{path}: section {name!r} holds entries that are not "
                              f"{sec.value_type.__name__}s", hint="delete it or re-run with --force")
    for name, d in (data.get("artifacts") or {}).items():
        ArtifactEntry.from_json(name, d)
    try:
        device_parity_entries(data)
    except ReportError as exc:
        raise ReportError(f"{path}: {exc.message}", hint=exc.hint) from None
    return data


def _migrate(data: dict, *, path: Path) -> dict:
    """Bring an older report.json to SCHEMA_VERSION. v1 -> v2: artifacts were {name: file}; the files present now
    are hashed (a v1 report recorded no digest), missing ones are dropped with their sections."""
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ReportError(f"{path}: schema_version {version!r} is not an integer")
    if version > SCHEMA_VERSION:
        raise ReportError(f"{path} has schema_version {version}, newer than this edgeport reads ({SCHEMA_VERSION})",
                          hint="upgrade edgeport or re-run into another --out")
    if version == 1:
        arts = data.get("artifacts")
        if isinstance(arts, dict):
            migrated = {}
            for name, f in arts.items():
                if isinstance(f, str) and (path.parent / f).is_file():
                    migrated[name] = FileRecord.of(path.parent, f).to_json()
            data["artifacts"] = migrated
        data["schema_version"] = SCHEMA_VERSION
    return data


def tool_versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("edgeport", "torch", "onnx", "onnxruntime", "onnxsim", "tensorflow-cpu", "tensorflow",
                 "ai-edge-litert", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


class Report:
    """A validated report.json. Sections are read with `get`; artifacts through the typed accessors; steps' results
    are written with `apply`; `save()` writes atomically in SECTIONS order."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data

    @property
    def out_dir(self) -> Path:
        return self.path.parent

    # -- plain sections
    def get(self, key: str, default=None):
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value

    def merge(self, key: str, value: dict) -> None:
        self.data.setdefault(key, {}).update(value)

    def append(self, key: str, items: list) -> None:
        self.data.setdefault(key, []).extend(items)

    def drop(self, *keys: str) -> None:
        for k in keys:
            self.data.pop(k, None)

    def apply(self, result: StepOutput) -> "Report":
        """Write a step's typed result into its sections, each folded as SECTIONS says."""
        for name, value in result.report_sections().items():
            fold = SECTIONS[name].fold
            if name == "artifacts":
                value = {str(k): (v.to_json() if isinstance(v, ArtifactEntry) else v) for k, v in value.items()}
            elif name == "device_parity":
                value = [v.to_json() if isinstance(v, DeviceParity) else v for v in value]
            if fold is Fold.SET:
                self.set(name, value)
            elif fold is Fold.MERGE:
                self.merge(name, dict(value))
            else:
                self.append(name, list(value))
        return self

    # -- artifacts
    def artifacts(self) -> dict[ArtifactKind, ArtifactEntry]:
        return {ArtifactKind.parse(n): ArtifactEntry.from_json(n, d) for n, d in (self.get("artifacts") or {}).items()}

    def artifact_names(self) -> list[str]:
        return list(self.get("artifacts") or {})

    def artifact_file(self, name: str | ArtifactKind) -> str:
        return ArtifactEntry.from_json(str(name), self._artifact_json(name)).file

    def artifact_path(self, name: str | ArtifactKind, *, verify: bool = True) -> Path:
        """DIR/<file> of an artifact; with `verify`, refuses a missing or changed file (StaleArtifactError)."""
        entry = ArtifactEntry.from_json(str(name), self._artifact_json(name))
        if not verify:
            return self.out_dir / entry.file
        return entry.record.verify(self.out_dir, what=str(name))

    def tensor_map_path(self, name: str | ArtifactKind) -> Path | None:
        """The verified path of an artifact's saved tensor map, or None when the converter wrote none."""
        entry = ArtifactEntry.from_json(str(name), self._artifact_json(name))
        if entry.tensor_map is None:
            return None
        return entry.tensor_map.verify(self.out_dir, what=f"{name} tensor map")

    def _artifact_json(self, name) -> dict:
        arts = self.get("artifacts") or {}
        if str(name) not in arts:
            raise ReportError(f"{self.path} lists no artifact {str(name)!r}; it has {sorted(arts) or 'none'}",
                              hint=f"run `edgeport export` into {self.out_dir} first")
        return arts[str(name)]

    def remove_artifacts(self, names) -> None:
        """Forget artifacts (and their per-artifact sections) without touching files."""
        names = {str(n) for n in names}
        for sec in ("artifacts", "artifact_info", "ops", "parity"):
            d = self.get(sec)
            if isinstance(d, dict):
                self.set(sec, {k: v for k, v in d.items() if k not in names})

    def save(self) -> Path:
        self.data["schema_version"] = SCHEMA_VERSION
        ordered = {k: self.data[k] for k in TOP_KEYS if k in self.data}
        ordered.update({k: v for k, v in self.data.items() if k not in ordered})
        atomic_write_text(self.path, json.dumps(ordered, indent=2, sort_keys=False, default=_json_default) + "\n")
        return self.path


def load_report(out_dir: str | os.PathLike, *, create: bool = False) -> Report:
    """DIR/report.json, validated and migrated; a new empty report when it does not exist and `create`."""
    path = Path(out_dir) / REPORT_NAME
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ReportError(f"{path} is not valid JSON ({exc})", hint="delete it or use --force") from None
        except OSError as exc:
            raise OutputDirError(f"cannot read {path}: {exc.strerror}") from None
        if not isinstance(data, dict):
            validate_sections(data, path=path)
        data = validate_sections(_migrate(data, path=path), path=path)
    elif create:
        data = {"schema_version": SCHEMA_VERSION}
    else:
        raise ReportError(f"{path} does not exist", hint=f"run `edgeport export` or `edgeport run` into {out_dir} first")
    data.setdefault("tool", tool_versions())
    return Report(path, data)


def new_report(out_dir: str | os.PathLike) -> Report:
    """A new, empty report for DIR (not yet saved). The artifacts an earlier report listed are edgeport's own files:
    those still exactly as edgeport wrote them (same size and sha256) are removed with the old report.json, so no
    other model's artifact survives beside the new report. A report.json that cannot be read is left to be
    overwritten (it describes nothing edgeport can trust)."""
    out = Path(out_dir)
    try:
        old = load_report(out) if (out / REPORT_NAME).is_file() else None
    except ReportError:
        old = None
    if old is not None:
        remove_owned_files(old)
        old.path.unlink()  # until the new artifacts are written, DIR lists nothing
    return Report(out / REPORT_NAME, {"schema_version": SCHEMA_VERSION, "tool": tool_versions()})


def remove_owned_files(report: Report, *, keep: tuple[str, ...] = ()) -> None:
    """Delete the artifact files (and tensor maps) `report` lists, except `keep`, when they are still exactly the
    files edgeport wrote; a file the user changed or replaced is left alone."""
    for kind, entry in report.artifacts().items():
        if kind.value in keep:
            continue
        for rec in (entry.record, entry.tensor_map):
            p = report.out_dir / rec.file if rec is not None else None
            if p is not None and p.is_file() and p.stat().st_size == rec.size and sha256_file(p) == rec.sha256:
                p.unlink()


def _json_default(obj):
    import numpy as np

    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
