"""The export step: a resolved source -> DIR/model.onnx (verified against torch on ONNX Runtime) -> ExportResult."""
from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from edgeport.export.analysis import count_macs, op_histogram_onnx
from edgeport.errors import ExportError
from edgeport.export.checkpoint import LoadedSource, SourceKind
from edgeport.export.onnx_export import DEFAULT_OPSET, Exporter, export_onnx, simplify_onnx, verify_onnx
from edgeport.models.layers import count_params
from edgeport.files import prepare_out_dir
from edgeport.metrics import output_kind
from edgeport.report import ArtifactEntry, ArtifactKind

ONNX_NAME = "model.onnx"


def verification_inputs(spec, *, n: int = 4, seed: int = 20181) -> list[np.ndarray]:
    """Inputs for the ORT-vs-torch check: standard-normal NCHW float32 (the range of normalised images), fixed seed.

    Structural parity (does ONNX compute what torch computes) does not depend on image content; meaning-level checks
    on real photographs are `edgeport validate`'s job.
    """
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, *spec.input_shape), dtype=np.float32) for _ in range(n)]


def output_entries(model: onnx.ModelProto) -> list[dict]:
    """report.json `model.outputs`: each ONNX output's name (what the TFLite signature calls it too), its shape
    without the batch (None for a dynamic dimension) and its kind (edgeport.metrics.output_kind)."""
    out = []
    for o in model.graph.output:
        dims = [d.dim_value if d.HasField("dim_value") else None for d in o.type.tensor_type.shape.dim]
        known = all(d is not None for d in dims[1:])
        out.append({"name": o.name, "shape": dims[1:],
                    "kind": str(output_kind((1, *dims[1:]))) if known and dims else "other"})
    return out


@dataclass(frozen=True)
class ExportResult:
    """What the export step produced: DIR/model.onnx (verified against torch on ORT) and what it knows about it."""

    source: dict
    model: dict
    artifact: ArtifactEntry
    info: dict
    ops: dict
    seconds: float
    parity: dict | None = None
    out_dir: Path = Path(".")

    @property
    def onnx_path(self) -> Path:
        return self.out_dir / self.artifact.file

    def report_sections(self) -> dict:
        sections = {"source": self.source, "model": self.model, "artifacts": {ArtifactKind.ONNX: self.artifact},
                    "artifact_info": {"onnx": self.info}, "ops": {"onnx": self.ops},
                    "conversion": {"onnx_seconds": round(self.seconds, 3)}}
        if self.parity is not None:
            sections["parity"] = {"onnx": self.parity}
        return sections


def _export_torch(source: LoadedSource, *, path: Path, opset: int, exporter, dynamic_batch: bool):
    """(ONNX model, the exporter used, a note or None). A TorchScript archive that the dynamo exporter cannot
    trace (torch.export does not take ScriptModules) is exported with the legacy (TorchScript) exporter instead,
    and the note says so; for every other source a failing exporter is the error."""
    kw = dict(input_shape=source.spec.input_shape, path=path, opset=opset, dynamic_batch=dynamic_batch)
    try:
        return export_onnx(source.module, exporter=exporter, **kw), Exporter(exporter), None
    except ExportError as exc:
        if source.kind != SourceKind.TORCHSCRIPT or Exporter(exporter) != Exporter.DYNAMO:
            raise
        first = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).splitlines()[0].split(". ")[0][:120]
    model = export_onnx(source.module, exporter=Exporter.LEGACY, **kw)
    return model, Exporter.LEGACY, f"TorchScript source: the dynamo exporter failed ({first}); used the legacy exporter"


def export_step(
    *,
    source: LoadedSource,
    out_dir: str | Path,
    exporter: Exporter | str = Exporter.DYNAMO,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    n_verify: int = 4,
    on_stage=None,
) -> ExportResult:
    """Write DIR/model.onnx; return what report.json `source`, `model`, `artifacts.onnx`, `ops.onnx`,
    `parity.onnx` hold (the caller writes the report from the result). `on_stage(stage, status, detail)` hears
    each stage start ("start") and end ("done", its elapsed time): progress for the terminal.

    The ONNX file is exported and verified in a staging directory and moved into DIR only when verification passes,
    so a failure leaves no model.onnx behind.
    """
    out = prepare_out_dir(out_dir)
    spec = source.spec
    t0 = time.perf_counter()
    exporter_note = None
    with tempfile.TemporaryDirectory(dir=out, prefix=".stage-") as stage:
        staged = Path(stage) / ONNX_NAME
        if source.onnx_path is not None:
            with _stage(on_stage, "simplify (onnxsim)"):
                model = simplify_onnx(source.onnx_model())
                onnx.save(model, str(staged))
            verification = None
        else:
            with _stage(on_stage, f"torch -> ONNX ({Exporter(exporter)} exporter) + simplify"):
                model, exporter, exporter_note = _export_torch(source, path=staged, opset=opset, exporter=exporter,
                                                               dynamic_batch=dynamic_batch)
            with _stage(on_stage, f"verify ONNX Runtime vs torch ({n_verify} samples)"):
                verification = verify_onnx(
                    source.module, onnx_path=staged, inputs=verification_inputs(spec, n=n_verify),
                    rel_tol=spec.tolerances.fp32_rel, min_cosine=spec.tolerances.fp32_cosine,
                )
        seconds = time.perf_counter() - t0
        macs = count_macs(_static_copy(model, spec)) if dynamic_batch else count_macs(model)
        shutil.move(str(staged), str(out / ONNX_NAME))
    model_info = {
        "name": source.name, "family": spec.family, "input_shape": [1, *spec.input_shape],
        "num_classes": spec.num_classes, "mean": list(spec.mean), "std": list(spec.std),
        "channel_order": str(spec.channel_order),
        "params": count_params(source.module) if source.module is not None else None, "macs": macs,
        "outputs": output_entries(model),
    }
    info = {"precision": "fp32", "layout": "nchw", "io_dtype": "float32", "opset": _opset(model),
            "exporter": str(Exporter(exporter)) if source.onnx_path is None else "user",
            "dynamic_batch": dynamic_batch}
    if source.onnx_path is None and exporter_note:
        info["exporter_note"] = exporter_note
    parity = None
    if verification is not None:
        parity = {"max_abs_err": verification.max_abs_err, "rel_err": verification.rel_err,
                  "cosine_mean": verification.cosine_mean, "cosine_min": verification.cosine_min, "n_samples": verification.n_samples, "reference": "torch",
                  "inputs": "standard normal, seed 20181"}
    return ExportResult(source=source.report(), model=model_info,
                        artifact=ArtifactEntry.written(out, ArtifactKind.ONNX, ONNX_NAME), info=info,
                        ops=op_histogram_onnx(model), seconds=seconds, parity=parity, out_dir=out)


@contextlib.contextmanager
def _stage(on_stage, name: str):
    """Tell `on_stage` (when given) that stage `name` starts, and when it ends, how long it took."""
    t = time.perf_counter()
    if on_stage is not None:
        on_stage(name, "start", "")
    yield
    if on_stage is not None:
        on_stage(name, "done", f"{time.perf_counter() - t:.1f}s")


def _opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _static_copy(model: onnx.ModelProto, spec) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in list(m.graph.input) + list(m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    for vi in list(m.graph.value_info):
        m.graph.value_info.remove(vi)
    return m
