"""report.json's schema: every section round-trips through apply -> save -> load, artifacts carry sha256 that every
reader checks, and a corrupt, foreign or future file is one ReportError line."""
from __future__ import annotations

import json

import pytest

from edgeport.errors import ReportError
from edgeport.report import (SCHEMA_VERSION, SECTIONS, ArtifactEntry, ArtifactKind, DeviceParity, Fold,
                             OutputParity, StaleArtifactError, device_parity_entries, load_report, new_report)

# A device-parity entry as bench writes it: a two-output model, the second output disagreeing.
DEVICE_PARITY = DeviceParity(
    target="ssh://u@h", artifact="tflite_int8", engine="tflite", device="pi", device_arch="aarch64", samples=8,
    outputs=(OutputParity(index=0, name="seg", ok=True, cosine_min=1.0, sqnr_db=float("inf"), max_abs=0.0,
                          max_abs_rel=0.0, top1_agreement=1.0, near_ties=0, top1_decisive=1.0),
             OutputParity(index=1, name="logits", ok=False, cosine_min=0.9, sqnr_db=9.5, max_abs=0.25,
                          max_abs_rel=0.05, top1_agreement=0.75, near_ties=1, top1_decisive=0.8)))

# One realistic value per section, as the steps write them. A section added to SECTIONS without a sample fails
# test_every_section_has_a_sample.
SAMPLES = {
    "schema_version": SCHEMA_VERSION,
    "tool": {"edgeport": "0.1.0", "numpy": "2.0"},
    "source": {"kind": "zoo", "name": "shufflenet_v2_x1_0", "checkpoint": None, "builder_args": {}},
    "model": {"name": "m", "family": "shufflenet", "input_shape": [1, 3, 32, 32], "num_classes": 10,
              "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "params": 1234, "macs": 5678},
    "artifacts": None,  # built from real files in the test
    "artifact_info": {"tflite_int8": {"precision": "int8", "layout": "nhwc", "io_dtype": "int8"}},
    "ops": {"tflite_int8": {"CONV_2D": 3, "ADD": 1}},
    "calibration": {"calibration": {"source": "digits", "count": 8}, "method": "minmax"},
    "conversion": {"onnx_seconds": 1.5, "tflite_int8_s": 2.25},
    "parity": {"tflite_int8": {"cosine_mean": 0.999, "cosine_min": 0.99, "sqnr_db": 31.5, "passed": True}},
    "layers": {"layers": [{"depth": 0, "onnx_tensor": "x", "sqnr_db": 40.0}], "n_layers": 1},
    "accuracy": {"artifacts": {"tflite_int8": {"accuracy": 0.98, "drop_points": 0.5}}},
    "latency": [{"target": "local", "engine": "tflite", "artifact": "tflite_int8", "threads": 1, "p50_ms": 1.25}],
    "device_parity": [DEVICE_PARITY.to_json()],
    "recommendation": {"statistic": "p50_ms", "bar": {"min_agreement": None, "min_accuracy": None}, "targets": {
        "local": {"best": {"artifact": "tflite_int8", "engine": "tflite", "threads": 1, "p50_ms": 1.25,
                           "check": "validated"}, "runner_up": None, "ratio": None, "validated": True,
                  "ranking": [], "excluded": []}}},
    "failures": {"bench:ssh://u@h": "ssh://u@h: connection refused"},
    "steps": {"export": {"key": "abc", "seconds": 1.0, "finished": "2026-12-07T00:00:00+0000", "outputs": {}}},
}


class _Result:
    def __init__(self, sections):
        self.sections = sections

    def report_sections(self):
        return self.sections


def test_every_section_has_a_sample():
    assert set(SAMPLES) == set(SECTIONS), "add a sample for each new report section"


@pytest.mark.parametrize("name", [n for n in SECTIONS if n != "schema_version"])
def test_section_round_trip(tmp_path, name):
    (tmp_path / "model_int8.tflite").write_bytes(b"tflite bytes")
    value = SAMPLES[name]
    if name == "artifacts":
        value = {ArtifactKind.TFLITE_INT8: ArtifactEntry.written(tmp_path, ArtifactKind.TFLITE_INT8)}
    rep = new_report(tmp_path).apply(_Result({name: value}))
    rep.save()
    back = load_report(tmp_path)
    expected = {"tflite_int8": {"file": "model_int8.tflite", "size": 12,
                                "sha256": value[ArtifactKind.TFLITE_INT8].record.sha256}} if name == "artifacts" else value
    assert back.get(name) == expected
    assert back.get("schema_version") == SCHEMA_VERSION
    if SECTIONS[name].fold is Fold.APPEND:  # a second result appends
        back.apply(_Result({name: value})).save()
        assert load_report(tmp_path).get(name) == value + value
    elif SECTIONS[name].fold is Fold.MERGE and name != "artifacts":
        back.apply(_Result({name: {"other": value[next(iter(value))]}})).save()
        assert set(load_report(tmp_path).get(name)) == set(value) | {"other"}


@pytest.mark.parametrize("name", [n for n in SECTIONS if n != "schema_version"])
def test_section_of_another_shape_is_one_line(tmp_path, name):
    wrong = [] if SECTIONS[name].json_type is dict else {}
    (tmp_path / "report.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION, name: wrong}))
    with pytest.raises(ReportError, match=name):
        load_report(tmp_path)


@pytest.mark.parametrize("text, match", [
    ("[1, 2]", "not an edgeport report"),
    ("{not json", "not valid JSON"),
    (json.dumps({"schema_version": SCHEMA_VERSION + 1}), "newer than this edgeport"),
    (json.dumps({"schema_version": "two"}), "not an integer"),
    (json.dumps({"schema_version": 2, "artifacts": {"tflite_int8": "model_int8.tflite"}}), "artifacts.*not dicts"),
    (json.dumps({"schema_version": 2, "artifacts": {"tflite_int8": {"file": "m.tflite"}}}), "file, size, sha256"),
    (json.dumps({"schema_version": 2, "artifacts": {"mystery": {"file": "a", "size": 1, "sha256": "x"}}}),
     "unknown artifact 'mystery'"),
])
def test_corrupt_or_foreign_report_is_one_line(tmp_path, text, match):
    (tmp_path / "report.json").write_text(text)
    with pytest.raises(ReportError, match=match) as info:
        load_report(tmp_path)
    assert "\n" not in str(info.value)


def test_missing_report_says_what_to_do(tmp_path):
    with pytest.raises(ReportError, match="edgeport export"):
        load_report(tmp_path)


def test_artifact_path_refuses_changed_and_missing_files(tmp_path):
    f = tmp_path / "model_fp32.tflite"
    f.write_bytes(b"original")
    rep = new_report(tmp_path).apply(_Result({"artifacts": {
        ArtifactKind.TFLITE_FP32: ArtifactEntry.written(tmp_path, ArtifactKind.TFLITE_FP32)}}))
    rep.save()
    assert load_report(tmp_path).artifact_path("tflite_fp32") == f
    f.write_bytes(b"replaced")  # same size, other bytes: only the digest can tell
    with pytest.raises(StaleArtifactError, match="changed since edgeport wrote it"):
        load_report(tmp_path).artifact_path("tflite_fp32")
    f.unlink()
    with pytest.raises(StaleArtifactError, match="missing"):
        load_report(tmp_path).artifact_path("tflite_fp32")
    with pytest.raises(ReportError, match="lists no artifact 'tflite_int8'"):
        load_report(tmp_path).artifact_path("tflite_int8")


def test_schema_1_is_migrated_with_digests_of_the_present_files(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    (tmp_path / "report.json").write_text(json.dumps({
        "schema_version": 1, "artifacts": {"onnx": "model.onnx", "tflite_int8": "model_int8.tflite"}}))
    rep = load_report(tmp_path)
    assert rep.get("schema_version") == SCHEMA_VERSION
    assert rep.artifact_names() == ["onnx"]  # the missing file is not carried over
    assert rep.artifact_path("onnx") == tmp_path / "model.onnx"


def test_new_report_removes_only_files_edgeport_wrote(tmp_path):
    """A new export into DIR drops the previous model's artifacts that are unchanged, keeps a file the user
    replaced, and never touches other files."""
    for name in ("model.onnx", "model_int8.tflite"):
        (tmp_path / name).write_bytes(name.encode())
    (tmp_path / "notes.txt").write_text("mine")
    new_report(tmp_path).apply(_Result({"artifacts": {
        ArtifactKind.ONNX: ArtifactEntry.written(tmp_path, ArtifactKind.ONNX),
        ArtifactKind.TFLITE_INT8: ArtifactEntry.written(tmp_path, ArtifactKind.TFLITE_INT8)}})).save()
    (tmp_path / "model.onnx").write_bytes(b"the user's own file")
    rep = new_report(tmp_path)
    assert not (tmp_path / "model_int8.tflite").exists()
    assert (tmp_path / "model.onnx").read_bytes() == b"the user's own file"
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "report.json").exists() and rep.artifact_names() == []


def test_artifact_kinds_name_their_files():
    assert {k.file_name for k in ArtifactKind} == {"model.onnx", "model_fp32.tflite", "model_int8.tflite",
                                                   "model_fp16.tflite", "model_dynamic.tflite", "model_int8.onnx"}
    assert ArtifactKind.tflite("int8") is ArtifactKind.TFLITE_INT8
    assert [k.runtime for k in (ArtifactKind.ONNX_INT8, ArtifactKind.TFLITE_FP16)] == ["onnxruntime", "tflite"]


def test_device_parity_entries_are_typed_and_every_output_counts(tmp_path):
    """The entry written for a two-output model: per output metrics, the worst of each at the top level, `ok` false
    because one output fails; read back it is the same typed entry (through apply of the typed result, too)."""
    d = DEVICE_PARITY.to_json()
    assert [o["name"] for o in d["outputs"]] == ["seg", "logits"] and d["worst_output"] == "logits"
    assert (d["ok"], d["cosine_min"], d["sqnr_db"], d["max_abs"], d["near_ties"], d["top1_decisive"]) == (
        False, 0.9, 9.5, 0.25, 1, 0.8)
    assert DeviceParity.from_json(d, where="x") == DEVICE_PARITY
    assert [o.name for o in DEVICE_PARITY.failed] == ["logits"]
    new_report(tmp_path).apply(_Result({"device_parity": [DEVICE_PARITY]})).save()
    back = load_report(tmp_path)
    assert back.get("device_parity") == [d] and device_parity_entries(back.data) == [DEVICE_PARITY]
    agree = DeviceParity(target="local", artifact="onnx", outputs=(DEVICE_PARITY.outputs[0],))
    assert agree.ok and agree.to_json()["sqnr_db"] == float("inf")


def test_a_device_parity_entry_from_before_every_output_was_compared_reads_as_one_output(tmp_path):
    old = {"target": "ssh://pi@h", "device": "pi", "artifact": "tflite_int8", "engine": "tflite",
           "cosine_min": 0.99, "max_abs": 0.1, "top1_agreement": 1.0, "samples": 8, "ok": False}
    (tmp_path / "report.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION, "device_parity": [old]}))
    [entry] = device_parity_entries(load_report(tmp_path).data)
    assert not entry.ok and [(o.index, o.name, o.ok, o.cosine_min, o.sqnr_db) for o in entry.outputs] == [
        (0, "output_0", False, 0.99, None)]


@pytest.mark.parametrize("change, match", [
    (lambda d: d.update(outputs=[]), r"device_parity\[0\]\.outputs should be a non-empty list"),
    (lambda d: d["outputs"][1].pop("name"), r"device_parity\[0\]\.outputs\[1\]: expected \{index, name, ok"),
    (lambda d: d["outputs"][0].update(cosine_min="1.0"), r"outputs\[0\]\.cosine_min is not a number"),
    (lambda d: d.update(ok=True), r"ok is true but its outputs say false"),
    (lambda d: d.pop("target"), r"device_parity\[0\]: expected \{target, artifact, ok"),
], ids=["no_outputs", "unnamed_output", "text_metric", "ok_not_its_outputs", "no_target"])
def test_a_malformed_device_parity_entry_is_one_line(tmp_path, change, match):
    d = DEVICE_PARITY.to_json()
    change(d)
    (tmp_path / "report.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION, "device_parity": [d]}))
    with pytest.raises(ReportError, match=match) as info:
        load_report(tmp_path)
    assert "\n" not in str(info.value) and str(tmp_path) in str(info.value)
