"""`edgeport bench DIR`: time DIR's artifacts on a target and check the target's outputs against this machine's.

Data flow: report.json `artifacts` -> a job folder (job.json, artifacts, parity.npz, device_runner.py) -> target ->
runner JSON -> `latency` entries (appended to report.json) + `device_parity` (the target's outputs vs the same
artifact run here with the same engine: every output of the model, each against the bar below; an entry passes only
when all of its outputs do).

Parity samples: `parity_inputs`, every input of the model by name in the reference layout (images float32 NCHW,
other inputs in their own dtype), given to each artifact through runtime.layout.artifact_feed. `edgeport bench` and
`edgeport run` pass the held-out set `edgeport validate` uses (edgeport.validation.held_out_samples: the same input
contract, the same .npz keyed by input name); without it (artifacts outside an export folder) each artifact gets
seeded random data for every input, of that input's shape and dtype.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from edgeport.errors import EdgeportError, OutputDirError, TargetError
from edgeport.metrics import device_parity_metrics
from edgeport.native import captured_native_output
from edgeport.report import DEVICE_PARITY_METRICS, DeviceParity, OutputParity, Report, load_report
from edgeport.runtime.engines import ENGINES, EngineKind, open_engine, run_batches
from edgeport.runtime.device.timing import random_inputs
from edgeport.runtime.layout import artifact_feed
from edgeport.runtime.results import describe_machine, make_entry
from edgeport.runtime.targets import Target, TargetOptions

DEFAULT_ENGINES = ("onnxruntime", "tflite")
PARITY_SAMPLES = 8
# Same artifact, two machines: ARM and x86 kernels may round differently, but must agree this closely: cosine, and
# the same top-1 on every sample that is not a near-tie (see metrics.NEAR_TIE_FRACTION; an INT8 rounding step may
# flip a near-tie, and such flips are counted and shown, not failed).
DEVICE_PARITY_MIN_COSINE = 0.999
DEVICE_PARITY_MIN_TOP1 = 1.0


@dataclass(frozen=True)
class BenchSettings:
    engines: tuple[str, ...] = DEFAULT_ENGINES
    threads: tuple[int, ...] = (1,)
    warmup: int = 5
    runs: int = 50
    time_budget_s: float | None = None
    pin: str | None = None
    artifacts: tuple[str, ...] | None = None  # report.json artifact names; None: all present
    parity: bool = True
    rss: bool = True
    seed: int = 0
    min_seconds: float | None = None  # keep timing rounds until this many seconds and at least `runs` (MLPerf-style)
    cooldown_s: float | None = None  # pause before timing; with max_temp_c: the bound on the wait
    max_temp_c: float | None = None  # wait until every thermal zone is below this (targets with thermal zones)


@dataclass(frozen=True)
class ParityReference:
    """An artifact run on this machine with one engine on the parity samples: one (S, ...) array per model output,
    in the model's order, and the outputs' names."""

    names: tuple[str, ...]
    outputs: tuple[np.ndarray, ...]


@dataclass
class BenchOutcome:
    entries: list[dict]
    device_parity: list[DeviceParity] = field(default_factory=list)
    machine: dict = field(default_factory=dict)
    interpreters: dict = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)  # configurations the target has no runtime for, with why

    @property
    def parity_ok(self) -> bool:
        """Every compared artifact x engine agrees with this machine on every one of its outputs."""
        return all(p.ok for p in self.device_parity)

    def report_sections(self) -> dict:
        sections = {"latency": self.entries}
        if self.device_parity:
            sections["device_parity"] = self.device_parity
        return sections


def select_artifacts(report: Report, names: tuple[str, ...] | None, engines) -> dict[str, Path]:
    """report.json artifact name -> verified .onnx/.tflite path that one of `engines` runs. A listed artifact that is
    missing or changed since edgeport wrote it fails the command (StaleArtifactError names the file)."""
    out_dir = report.out_dir
    listed = report.artifact_names()
    if not listed:
        raise OutputDirError(f"{out_dir}/report.json lists no artifacts: run `edgeport export` into {out_dir} first")
    if names:
        unknown = [n for n in names if n not in listed]
        if unknown:
            raise OutputDirError(f"artifacts {unknown} are not in {out_dir}/report.json; it has {sorted(listed)}")
    suffixes = {s for e in engines for s in ENGINES.get(e).suffixes}
    chosen = {}
    for name in listed:
        if names and name not in names:
            continue
        if Path(report.artifact_file(name)).suffix in suffixes:
            chosen[name] = report.artifact_path(name)
    if not chosen:
        raise OutputDirError(f"no artifact in {out_dir} runs on engines {list(engines)} "
                             f"(.onnx -> onnxruntime*, .tflite -> tflite*)")
    return chosen


def parity_feed(engine, *, artifact: str, parity_inputs: Mapping[str, np.ndarray] | None,
                seed: int) -> list[np.ndarray]:
    """One artifact's parity samples: one array (S, ...) per input, in the engine's order and layout. From
    `parity_inputs` ({model input name: (S, ...)} in the reference layout), else PARITY_SAMPLES of seeded random
    data of each input's shape and dtype (runtime.device.timing.random_inputs)."""
    if parity_inputs is not None:
        return artifact_feed(engine, parity_inputs, artifact=artifact)
    return random_inputs([(n, (PARITY_SAMPLES, *shape[1:]), dt) for n, shape, dt in engine.input_specs()], seed)


def build_job(*, artifacts: dict[str, Path], job_dir: Path, settings: BenchSettings,
              parity_inputs: Mapping[str, np.ndarray] | None = None) -> dict[str, ParityReference]:
    """Write job.json, artifacts and parity.npz (key `<artifact>:<input index>`) into job_dir. Returns
    {"artifact|engine": this machine's outputs on the parity samples}."""
    engines = bench_engines(settings)
    feeds: dict[str, list[np.ndarray]] = {}
    references = {}
    for name, path in artifacts.items():
        (job_dir / path.name).write_bytes(path.read_bytes())
        if not settings.parity:
            continue
        for engine_name in [e for e in engines if path.suffix in ENGINES.get(e).suffixes]:
            try:
                local = open_engine(engine_name, path, threads=1)
            except TargetError:
                continue
            if name not in feeds:
                feeds[name] = parity_feed(local, artifact=name, parity_inputs=parity_inputs,
                                          seed=settings.seed + 20181)
            references[f"{name}|{engine_name}"] = ParityReference(
                names=tuple(local.output_names()), outputs=tuple(run_batches(local, feeds[name])))
    if feeds:
        np.savez(job_dir / "parity.npz", **{f"{n}:{i}": x for n, xs in feeds.items() for i, x in enumerate(xs)})
    job = {"artifacts": [{"name": n, "file": p.name} for n, p in artifacts.items()], "engines": engines,
           "threads": [int(t) for t in settings.threads], "warmup": settings.warmup, "runs": settings.runs,
           "time_budget_s": settings.time_budget_s, "pin": settings.pin,
           "parity_inputs": "parity.npz" if feeds else None, "rss": settings.rss, "seed": settings.seed,
           "min_seconds": settings.min_seconds, "cooldown_s": settings.cooldown_s, "max_temp_c": settings.max_temp_c}
    (job_dir / "job.json").write_text(json.dumps(job, indent=1))
    return references


def bench_engines(settings: BenchSettings) -> list[str]:
    return [e for e in settings.engines if ENGINES.get(e).kind is not EngineKind.TORCH]


def bench(*, out_dir: str | Path, target: Target, settings: BenchSettings = BenchSettings(),
          options: TargetOptions = TargetOptions(), save: bool = True,
          parity_inputs: Mapping[str, np.ndarray] | None = None) -> BenchOutcome:
    """The bench step on DIR: its report's (verified) artifacts timed on `target`; with `save`, the outcome's
    `latency` and `device_parity` entries are appended to DIR/report.json. `parity_inputs`: see the module
    docstring (`edgeport bench` passes edgeport.validation.held_out_samples(DIR).arrays())."""
    report = load_report(out_dir)
    artifacts = select_artifacts(report, settings.artifacts, bench_engines(settings))
    outcome = bench_artifacts(artifacts=artifacts, parity_inputs=parity_inputs, target=target, settings=settings,
                              options=options)
    if save:
        load_report(out_dir).apply(outcome).save()
    return outcome


def bench_artifacts(*, artifacts: dict[str, Path], target: Target, settings: BenchSettings = BenchSettings(),
                    options: TargetOptions = TargetOptions(),
                    parity_inputs: Mapping[str, np.ndarray] | None = None) -> BenchOutcome:
    """Time `artifacts` ({name: .onnx/.tflite path}) on `target` and compare the target's outputs with this
    machine's on the parity samples (`parity_inputs`: see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="edgeport-job-") as tmp:
        job_dir = Path(tmp)
        with captured_native_output():  # the interpreters' own log lines (e.g. "Created ... XNNPACK delegate")
            references = build_job(artifacts=artifacts, job_dir=job_dir, settings=settings,
                                   parity_inputs=parity_inputs)
        data = target.run_job(job_dir, options=options)
    machine = describe_machine(data["machine"])
    device = target.device_name(machine)
    entries = [make_entry(target=target.url, device=device, result=r, machine=machine) for r in data["results"]]
    parity = []
    for key, outs in data.get("outputs", {}).items():
        artifact, engine = key.split("|")
        ref = references.get(key)
        if ref is None:  # e.g. tflite_runtime only on the device: compare with any engine of this kind here
            ref = next((v for k, v in references.items() if k.startswith(artifact + "|")), None)
        if ref is None or outs is None:
            continue
        parity.append(DeviceParity(target=target.url, artifact=artifact, engine=engine, device=device,
                                   device_arch=machine.get("arch"), samples=len(outs[0]),
                                   outputs=compare_outputs(target=target.url, artifact=artifact, device=outs,
                                                           reference=ref)))
    return BenchOutcome(entries=entries, device_parity=parity, machine=machine,
                        interpreters=data.get("interpreters", {}), skipped=data.get("skipped", []))


def _output_passes(metrics: dict) -> bool:
    """One output's bar: cosine_min and the top-1 of every decisive sample (DEVICE_PARITY_MIN_*)."""
    return metrics["cosine_min"] >= DEVICE_PARITY_MIN_COSINE and metrics["top1_decisive"] >= DEVICE_PARITY_MIN_TOP1


def compare_outputs(*, target: str, artifact: str, device: list, reference: ParityReference
                    ) -> tuple[OutputParity, ...]:
    """Every output the target returned (per output: samples of values) against this machine's, each with the
    metrics of edgeport.metrics.device_parity_metrics and its own verdict. A different output count or shape is
    a TargetError naming the output."""
    if len(device) != len(reference.outputs):
        raise TargetError(f"{target}: {artifact} returned {len(device)} outputs, this machine "
                          f"{len(reference.outputs)}", hint="the device's runtime reads the model differently")
    out = []
    for i, (dev, ref) in enumerate(zip(device, reference.outputs)):
        name = reference.names[i] if i < len(reference.names) else f"output_{i}"
        try:
            m = device_parity_metrics(device=np.asarray(dev, np.float32), reference=ref)
        except ValueError as exc:
            raise TargetError(f"{target}: {artifact} output {name!r}: {exc}") from None
        out.append(OutputParity(index=i, name=name, ok=_output_passes(m),
                                **{k: m[k] for k in DEVICE_PARITY_METRICS}))
    return tuple(out)


__all__ = ["BenchSettings", "BenchOutcome", "ParityReference", "bench", "bench_artifacts", "build_job",
           "compare_outputs", "parity_feed", "select_artifacts", "EdgeportError"]
