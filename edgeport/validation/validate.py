"""`edgeport validate DIR`: every artifact in DIR against torch on held-out samples.

    edgeport validate out/ [--layers] [--labels FOLDER] [--threshold tflite_int8.top1_agreement=0.9 ...]

Reference: the torch model rebuilt from report.json `source` (zoo name + checkpoint, `file.py:function` with its
recorded sha256, builder arguments and checkpoint, TorchScript / pickled module); for ONNX sources (no torch
model) the exported ONNX is the reference. Samples: the VALIDATION split of the calibration source (held-out
photos for `default`, the held-out split for `digits`; `default` for folders/arrays), never overlapping the
calibration samples (checked). Writes report.json `parity` (edgeport.metrics.parity_metrics), `accuracy` (labelled
samples), `layers` (--layers) and `calibration.validation`; the CLI prints a table and raises ParityError (exit 1)
naming the first failing artifact + metric.

Thresholds per precision come from the model spec's `Tolerances` (see `thresholds`). INT8 thresholds are not
enforced for random-init zoo models (no checkpoint): quantizing random weights says nothing about a trained model;
explicit --threshold values always are.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from edgeport.calibration.samples import InputSpec, SampleSet, Split
from edgeport.calibration.sources import MissingInputs, load_samples
from edgeport.errors import CalibrationError, EdgeportError
from edgeport.export.checkpoint import rebuild_factory_source, rebuild_library_source, resolve_source
from edgeport.export.onnx_inputs import image_input, model_input_specs
from edgeport.metrics import FP32_NOISE_FACTOR, accuracy
from edgeport.models import ModelSpec, get_spec
from edgeport.report import load_report
from edgeport.runtime import NOISE_FLOOR_ENGINES, float_noise_floor

from .artifacts import run_artifact_outputs, run_reference_outputs
from .outputs import OutputKind, combine, compare_outputs
from .thresholds import ARTIFACT_ORDER, ARTIFACT_PRECISION, judge

RANDOM_INIT_NOTES = (
    "random-init weights: INT8 thresholds reported, not enforced (give --checkpoint to enforce)",
    "random-init weights cannot be rebuilt: the exported ONNX (verified against torch at export) is the reference",
)


class Failure(NamedTuple):
    """A missed threshold: the artifact, the metric, its value, the bound, and the output that missed it."""

    artifact: str
    metric: str
    value: float
    threshold: float
    output: str | None = None


@dataclass
class ValidationResult:
    """parity: artifact -> the worst value of each parity metric over the model's outputs, `outputs` (one entry per
    output: name, shape, kind, its metrics, passed), `worst_output`, thresholds, thresholds_enforced, precision,
    passed (edgeport.validation.outputs); thresholds: the bounds each artifact was held to; failures: one Failure per
    missed bound, in order; samples: the held-out set's description; accuracy / layers when computed; notes."""

    parity: dict[str, dict]
    thresholds: dict[str, dict[str, float]]
    failures: list[Failure]
    samples: dict
    accuracy: dict | None = None
    layers: dict | None = None
    notes: list[str] = field(default_factory=list)
    random_weights: str | None = None  # the zoo model's name when it was exported without trained weights

    def report_sections(self) -> dict:
        """report.json `parity` (merged by artifact), `calibration.validation`, `accuracy` and `layers`."""
        sections = {"parity": self.parity, "calibration": {"validation": self.samples}}
        if self.accuracy is not None:
            sections["accuracy"] = self.accuracy
        if self.layers is not None:
            sections["layers"] = self.layers
        return sections


@dataclass
class Reference:
    """What the artifacts are compared with: the torch module (`name` "torch") or the exported ONNX ("onnx").
    `inputs`: the model's inputs (from the exported ONNX); `output_names`: its outputs, in order."""

    module: object | None
    spec: ModelSpec
    onnx_path: Path | None
    random_init: bool = False
    inputs: list[InputSpec] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "torch" if self.module is not None else "onnx"

    @property
    def image(self) -> InputSpec | None:
        return image_input(self.inputs) if self.inputs else None

    def run(self, x: dict[str, np.ndarray]) -> list[np.ndarray]:
        """{input name: (N, ...)} -> one float32 (N, ...) array per output (NCHW maps)."""
        if self.module is not None:
            return run_reference_outputs(self.module, x)
        return run_artifact_outputs(self.onnx_path, x)


def _rebuild_reference(report, *, trust: bool):
    """(torch module or None, spec). Zoo and factory sources are rebuilt with their checkpoint; the declared input
    contract (report.json source.input_contract) is applied again, so validation samples match calibration's."""
    src = report.get("source") or {}
    model = report.get("model") or {}
    shape = tuple(model.get("input_shape", [])[1:]) or None
    kind = src.get("kind")
    contract = src.get("input_contract")
    if kind == "onnx":
        return None, resolve_source(src["onnx_path"] if Path(src.get("onnx_path") or "").is_file()
                                    else str(report.artifact_path("onnx")),
                                    input_shapes={k: tuple(v) for k, v in (src.get("input_shapes") or {}).items()},
                                    input_shape=None if src.get("input_shapes") else shape, contract=contract).spec
    if kind in ("factory", "library"):
        loaded = (rebuild_factory_source if kind == "factory" else rebuild_library_source)(src, trust=trust)
        return loaded.module, loaded.spec
    name = src.get("name") or model.get("name")
    source_str = name if kind == "zoo" else (src.get("checkpoint") if kind in ("torchscript", "module") else None)
    if source_str is None:
        raise EdgeportError(f"report.json source kind {kind!r} cannot be rebuilt for validation")
    spec_shape = None
    if kind == "zoo" and shape and tuple(get_spec(name).input_shape) != shape:
        spec_shape = shape
    loaded = resolve_source(
        source_str, checkpoint=src.get("checkpoint") if kind == "zoo" else None,
        builder_args=src.get("builder_args") or {}, input_shape=spec_shape if kind == "zoo" else shape, trust=trust,
        contract=contract,
    )
    return loaded.module, loaded.spec


def load_reference(report, *, onnx_path: Path | None, trust: bool) -> Reference:
    """The reference for DIR's artifacts. A zoo model without a checkpoint has random weights that cannot be
    rebuilt (a new torch model would be another random network): the exported ONNX, checked against torch at
    export (report.json parity.onnx), is the reference instead."""
    module, spec = _rebuild_reference(report, trust=trust)
    src = report.get("source") or {}
    random_init = (src.get("kind") == "zoo" or (src.get("kind") == "library" and not src.get("pretrained"))) \
        and not src.get("checkpoint")
    if (module is None or random_init) and onnx_path is None:
        raise EdgeportError("the reference is the exported ONNX (random-init weights or an ONNX source), but "
                            "report.json lists no onnx artifact; run `edgeport export` into this folder again")
    inputs, outputs = [], []
    if onnx_path is not None:
        import onnx

        model = onnx.load(str(onnx_path), load_external_data=False)
        inputs, outputs = model_input_specs(model), [o.name for o in model.graph.output]
    return Reference(module=None if random_init else module, spec=spec, onnx_path=onnx_path, random_init=random_init,
                     inputs=inputs, output_names=outputs)


def _calibration_info(report) -> dict:
    cal = report.get("calibration") or {}
    return cal.get("calibration", cal) if isinstance(cal, dict) else {}


def _input_shape(report, spec) -> tuple[int, ...]:
    return tuple((report.get("model") or {}).get("input_shape", [0, *spec.input_shape])[1:])


def choose_validation_samples(
    report, *, spec, samples: str | None, num: int | None, seed: int | None, input_name: str = "input",
    other_inputs: list[InputSpec] = (),
) -> tuple[SampleSet, SampleSet | None]:
    """(validation set, the calibration set it was checked against or None). Overlap -> CalibrationError. The
    model's `other_inputs` come from the same .npz, else are seeded random data (calibration.sources)."""
    cal = _calibration_info(report)
    cal_source = cal.get("source")
    if samples is None:
        samples = cal_source if cal_source in ("default", "digits") else "default"
    if seed is None:
        seed = cal.get("seed") if cal.get("seed") is not None else 0
    shape = _input_shape(report, spec)
    held = load_samples(samples, model_spec=spec, input_shape=shape, input_name=input_name, split=Split.VALIDATION,
                        num=num, seed=seed, labelled=True, other_inputs=other_inputs,
                        missing_inputs=MissingInputs.RANDOM)
    calib = None
    if cal_source and cal.get("count"):
        try:
            calib = load_samples(cal_source, model_spec=spec, input_shape=shape, input_name=input_name,
                                 split=Split.CALIBRATION, num=int(cal["count"]), seed=int(cal.get("seed") or 0))
        except CalibrationError:
            calib = None  # the calibration data moved; nothing to compare against
    if calib is not None:
        shared = set(calib.ids) & set(held.ids)
        if shared:
            raise CalibrationError(
                f"{len(shared)} validation samples are also calibration samples (e.g. {sorted(shared)[0]})",
                hint="validate on other data (--samples)",
            )
    return held, calib


def _held_out(report, reference: Reference, *, samples: str | None, num: int | None,
              seed: int | None) -> SampleSet:
    """The held-out set for every input of the reference's model (choose_validation_samples)."""
    image = reference.image
    held, _ = choose_validation_samples(
        report, spec=reference.spec, samples=samples, num=num, seed=seed,
        input_name=image.name if image is not None else "input",
        other_inputs=[i for i in reference.inputs if i is not image])
    return held


def held_out_samples(out_dir: str | Path, *, num: int | None = None, samples: str | None = None,
                     seed: int | None = None, trust: bool = False) -> SampleSet:
    """The samples `validate_dir` compares DIR's artifacts on, every input of the model: the image input under the
    model's input contract (report.json source, rebuilt like the reference), the other inputs from the same .npz
    keyed by input name, else seeded random data (`extras_source` "random"). `edgeport bench` feeds the first `num`
    of them to device parity (`.arrays()`), so a device is checked on what validation checked."""
    report = load_report(out_dir)
    onnx_path = report.artifact_path("onnx") if "onnx" in report.artifact_names() else None
    reference = load_reference(report, onnx_path=onnx_path, trust=trust)
    return _held_out(report, reference, samples=samples, num=num, seed=seed)


def output_layout(report, artifact: str) -> str:
    """The layout a TFLite artifact's 4-D outputs were written in: report.json artifact_info.<a>.output_layout;
    exports from before that key had them in the input layout (`layout`)."""
    info = (report.get("artifact_info") or {}).get(artifact) or {}
    return str(info.get("output_layout") or info.get("layout") or "nhwc")


def _judge_outputs(name: str, per_output: list[dict], *, reference: Reference, overrides: dict,
                   noise_floor: list[float] | None = None) -> tuple[dict, list[Failure]]:
    """Every output held to the artifact's thresholds -> (the artifact's parity entry, its failures).
    `noise_floor`: per output, the model's float noise floor when it was measured (widens the fp32 bound)."""
    failures: list[Failure] = []
    verdict = None
    for k, out in enumerate(per_output):
        verdict = judge(name, out, tol=reference.spec.tolerances, overrides=overrides,
                        random_init=reference.random_init, noise_floor=noise_floor[k] if noise_floor else None)
        out["passed"] = not verdict.failures
        label = out["name"] if len(per_output) > 1 else None
        failures += [Failure(name, metric, value, th, label) for metric, value, th in verdict.failures]
    entry = combine(per_output)
    entry.update(thresholds=verdict.thresholds, thresholds_enforced=verdict.enforced,
                 precision=ARTIFACT_PRECISION[name], passed=not failures)
    return entry, failures


def _judge_against_noise(name: str, per_output: list[dict], *, reference: Reference, overrides: dict,
                         files: dict[str, Path], x: dict[str, np.ndarray],
                         floors: dict[str, list[float]]) -> tuple[dict, list[Failure]]:
    """Judge the float32 artifact `name` again with its bound widened by the float noise floor (per output, the
    largest of the floors of the exported ONNX and of the artifact itself: edgeport.runtime.float_noise_floor),
    recorded as its parity entry's `noise_floor`. `floors` caches each file's floor across artifacts."""
    for key in dict.fromkeys(k for k in ("onnx", name) if k in files):
        if key not in floors:
            floors[key] = float_noise_floor(files[key], x)
    measured = {k: floors[k] for k in ("onnx", name) if k in floors}
    noise = [max(v) for v in zip(*measured.values())]
    entry, missed = _judge_outputs(name, per_output, reference=reference, overrides=overrides, noise_floor=noise)
    entry["noise_floor"] = {"max_abs_rel": max(noise), "per_output": noise, "factor": FP32_NOISE_FACTOR,
                            "files": {k: {"per_output": v, "engines": list(NOISE_FLOOR_ENGINES[files[k].suffix])}
                                      for k, v in measured.items()}}
    return entry, missed


def _compare_artifacts(report, artifacts: dict[str, Path], reference: Reference, ref: list[np.ndarray],
                       x: dict[str, np.ndarray], overrides: dict) -> tuple[dict, dict, list, dict]:
    """Run every artifact (in ARTIFACT_ORDER; the reference is not compared with itself, its export-time check
    stays in report.json) -> (parity, thresholds used, failures, outputs) per artifact. Every output is compared
    (edgeport.validation.outputs). A float32 artifact beyond the spec's max_abs_rel is judged again against the
    model's own float noise floor (measured then, once, on the same samples; edgeport.metrics.fp32_rel_bound),
    recorded as its `noise_floor`."""
    parity, used, failures, outputs = {}, {}, [], {}
    floors: dict[str, list[float]] = {}
    names = reference.output_names if len(reference.output_names) == len(ref) else [f"output_{i}" for i in
                                                                                     range(len(ref))]
    for name in [a for a in ARTIFACT_ORDER if a in artifacts and not (reference.name == "onnx" and a == "onnx")]:
        ys = run_artifact_outputs(artifacts[name], x, output_layout=output_layout(report, name))
        try:
            per_output = compare_outputs(ref, ys, names=names, reference_name=reference.name)
        except ValueError as exc:
            raise EdgeportError(f"{name}: {exc}; the artifact does not match its reference",
                                hint="re-run `edgeport export` into this folder") from None
        outputs[name] = ys
        parity[name], missed = _judge_outputs(name, per_output, reference=reference, overrides=overrides)
        if any(f.metric == "max_abs_rel" for f in missed) and ARTIFACT_PRECISION[name] == "fp32":
            parity[name], missed = _judge_against_noise(name, per_output, reference=reference, overrides=overrides,
                                                        files=artifacts, x=x, floors=floors)
        failures += missed
        used[name] = parity[name]["thresholds"]
    return parity, used, failures, outputs


def _class_output(ref: list[np.ndarray]) -> int | None:
    """Index of the first output that is a class vector (labelled accuracy is measured on it), else None."""
    from .outputs import output_kind

    return next((i for i, y in enumerate(ref) if output_kind(y.shape) is OutputKind.CLASSES), None)


def _labelled_accuracy(report, *, artifacts: dict[str, Path], reference: Reference, held: SampleSet,
                       ref: list[np.ndarray], outputs: dict[str, list[np.ndarray]],
                       labels: str | None) -> dict | None:
    """Accuracy of the reference and every compared artifact on labelled samples (the model's first class-vector
    output): the held-out set when it has labels, else the `labels` folder (one subfolder per class). None when
    neither has labels or no output is a class vector."""
    idx = _class_output(ref)
    labelled = held
    if labels is not None:
        labelled = load_samples(labels, model_spec=reference.spec, input_shape=_input_shape(report, reference.spec),
                                input_name=held.input_name, split=Split.VALIDATION, labelled=True,
                                other_inputs=[i for i in reference.inputs if i.name != held.input_name],
                                missing_inputs=MissingInputs.RANDOM)
        if labelled.labels is None:
            raise CalibrationError(f"--labels {labels}: no labels found (use one subfolder per class)")
    if labelled.labels is None or idx is None:
        return None
    if labelled is held:
        rows = {reference.name: accuracy(ref[idx], held.labels)}
        rows.update({name: accuracy(ys[idx], held.labels) for name, ys in outputs.items()})
    else:
        lx = labelled.arrays()
        rows = {reference.name: accuracy(reference.run(lx)[idx], labelled.labels)}
        rows.update({name: accuracy(run_artifact_outputs(artifacts[name], lx,
                                                         output_layout=output_layout(report, name))[idx],
                                    labelled.labels) for name in outputs})
    base = rows[reference.name]
    return {"samples": labelled.info(), "reference": reference.name,
            "artifacts": {k: {"accuracy": v, "drop_points": round(100.0 * (base - v), 4)} for k, v in rows.items()}}


def _layers(report, *, artifacts: dict[str, Path], x: dict[str, np.ndarray], plot: bool = True) -> dict:
    """Per-layer attribution of the INT8 TFLite model on the held-out samples of every input (`x`, by input name),
    through the converter's tensor map that report.json lists beside it (verified like the artifact; an export
    without one falls back to the file beside the model). `plot`: also draw DIR/layers_sqnr.png
    (`validate --layers`; `run` draws the report's own plot instead)."""
    from .layers import LAYER_SAMPLES, attribute_layers  # TensorFlow, through edgeport.export.tflite: only here

    layers = attribute_layers(onnx_path=artifacts["onnx"], tflite_path=artifacts["tflite_int8"],
                              samples={k: v[:LAYER_SAMPLES] for k, v in x.items()},
                              tensor_map=report.tensor_map_path("tflite_int8"),
                              plot_path=report.out_dir / "layers_sqnr.png" if plot else None,
                              title=(report.get("model") or {}).get("name"))
    layers.update(artifact="tflite_int8", reference="onnx", n_validation_samples=int(len(next(iter(x.values())))))
    return _with_modules(artifacts["onnx"], layers)


def _with_modules(onnx_path: Path, layers: dict) -> dict:
    """Each layer row (and worst row) gets `module`: the torch module path its ONNX node came from, where the export
    recorded it."""
    import onnx

    from edgeport.export.onnx_export import node_modules

    modules = node_modules(onnx.load(str(onnx_path), load_external_data=False))
    for row in [*layers.get("layers", []), *layers.get("worst", [])]:
        if row.get("node") in modules:
            row["module"] = modules[row["node"]]
    return layers


def _notes(reference: Reference, held: SampleSet) -> list[str]:
    notes = list(RANDOM_INIT_NOTES) if reference.random_init else []
    if held.extras_source == "random":
        notes.append(f"inputs {', '.join(held.extras)}: seeded random data of their shape and dtype (fp32 parity "
                     f"holds for any input); pass --samples FILE.npz keyed by input name to validate on real data")
    return notes


def validate_dir(
    out_dir: str | Path,
    *,
    samples: str | None = None,
    num: int | None = None,
    seed: int | None = None,
    labels: str | None = None,
    thresholds: dict[str | None, dict[str, float]] | None = None,
    layers: bool = False,
    trust: bool = False,
    save: bool = True,
    layers_plot: bool = True,
) -> ValidationResult:
    """Validate every artifact in `out_dir` (see the module docstring). Returns the result; does not raise on
    missed thresholds (the CLI does); writes report.json when `save`. An artifact file that is missing or not the
    one edgeport wrote (its sha256 differs from report.json) is refused (StaleArtifactError). Several-input models:
    the other inputs come from a `--samples` .npz keyed by input name, else seeded random data (noted)."""
    out = Path(out_dir)
    report = load_report(out)
    names = [n for n in report.artifact_names() if n in ARTIFACT_PRECISION]
    if not names:
        raise EdgeportError(f"{out}/report.json lists no artifacts; run `edgeport export` first")
    if layers and not {"tflite_int8", "onnx"} <= set(names):
        raise EdgeportError("--layers needs tflite_int8 and onnx artifacts in DIR")
    artifacts = {n: report.artifact_path(n) for n in names}
    reference = load_reference(report, onnx_path=artifacts.get("onnx"), trust=trust)
    held = _held_out(report, reference, samples=samples, num=num, seed=seed)
    x = held.arrays()
    ref = reference.run(x)
    parity, used, failures, outputs = _compare_artifacts(report, artifacts, reference, ref, x, thresholds or {})
    acc = _labelled_accuracy(report, artifacts=artifacts, reference=reference, held=held, ref=ref, outputs=outputs,
                             labels=labels)
    result = ValidationResult(parity=parity, thresholds=used, failures=failures, samples=held.info(), accuracy=acc,
                              layers=_layers(report, artifacts=artifacts, x=x, plot=layers_plot) if layers else None,
                              notes=_notes(reference, held),
                              random_weights=(report.get("source") or {}).get("name") if reference.random_init
                              else None)
    if save:
        report.apply(result).save()
    return result
