"""The runtime layer on this machine: engines (and the guard that fails when a registered engine has no test),
statistics, interleaving, report.json `latency`, `edgeport bench --target local`, benchmark_model's output.

Models come from the project's own export (`edgeport export` of a tiny CNN, tests/device/tiny_models.py), exported
once per session. Target URLs and the target errors that need no device are tests/test_targets.py; the device side
(ssh/adb against emulated aarch64) is tests/device/test_arm_targets.py.
"""
from __future__ import annotations

import importlib.util
import inspect
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tiny_models import SHAPE_NCHW, cached_bench_dir, cached_two_output_dir, copy_bench_dir, two_input_model

from edgeport.cli import main
from edgeport.errors import TargetError
from edgeport.metrics import device_parity_metrics
from edgeport.report import load_report
from edgeport.runtime import (ENGINES, LATENCY_FIELDS, BenchSettings, EngineKind, bench, open_engine,
                              parse_target, run)
from edgeport.runtime.device import job as runner_job
from edgeport.runtime.device import machine, timing
from edgeport.runtime.device.protocol import RunnerError
from edgeport.runtime.benchmark_model import benchmark_command, parse_benchmark_output
from edgeport.runtime.layout import to_artifact_layout
from edgeport.runtime.results import latency_table
from edgeport.runtime.targets import LocalTarget


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> Path:
    return cached_bench_dir(tmp_path_factory.getbasetemp())


@pytest.fixture
def bench_dir(exported, tmp_path) -> Path:
    return copy_bench_dir(exported, tmp_path / "out")


def _torch_module(exported: Path):
    spec = importlib.util.spec_from_file_location("tiny_factory", exported.parent / "tiny-bench-src" / "tiny.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make()


def _samples(n=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *SHAPE_NCHW[1:])).astype(np.float32)


# ---- engines ------------------------------------------------------------------------------------------------------

def test_engines_agree_on_the_exported_model(exported):
    """torch eager (reference), ORT on model.onnx (NCHW), TFLite fp32 (NHWC, XNNPACK and builtin kernels) and INT8."""
    x = _samples()
    torch_eng = open_engine("torch", _torch_module(exported), input_shape=SHAPE_NCHW)
    ref = np.stack([run(torch_eng, [s[None]])[0] for s in x])
    ort = open_engine("onnxruntime", exported / "model.onnx")
    assert ort.input_specs()[0][1] == SHAPE_NCHW
    got = np.stack([ort.run([s[None]])[0] for s in x])
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-4)
    for name in ("tflite", "tflite-builtin"):
        lite = open_engine(name, exported / "model_fp32.tflite", threads=2)
        shape = lite.input_specs()[0][1]
        assert shape == (1, 16, 16, 3)  # the converter's NHWC input
        nhwc = to_artifact_layout(x, artifact_shape=shape, nchw_shape=SHAPE_NCHW)
        got = np.stack([lite.run([s[None]])[0] for s in nhwc])
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-3)
    int8 = open_engine("tflite", exported / "model_int8.tflite")
    nhwc = to_artifact_layout(x, artifact_shape=int8.input_specs()[0][1], nchw_shape=SHAPE_NCHW)
    got = np.stack([int8.run([s[None]])[0] for s in nhwc])
    m = device_parity_metrics(device=got, reference=ref)
    assert got.dtype == np.float32 and m["cosine_min"] > 0.98, m
    ort8 = open_engine("onnxruntime", exported / "model_int8.onnx")
    got = np.stack([ort8.run([s[None]])[0] for s in x])
    assert device_parity_metrics(device=got, reference=ref)["cosine_min"] > 0.98


@pytest.mark.parametrize("engine", ["onnxruntime-basic", "onnxruntime-unoptimized"])
def test_onnxruntime_basic_agrees_with_onnxruntime(exported, engine):
    """`onnxruntime-basic` (ORT with only the basic graph optimizations) and `onnxruntime-unoptimized` (none: one
    of the two evaluations of the float noise floor) run the same exported graphs: fp32 to float rounding, and the
    QDQ INT8 model (which `onnxruntime` fuses into integer kernels and these do not) closely, with the same top-1
    on every sample."""
    x = _samples(8, seed=11)
    for artifact in ("model.onnx", "model_int8.onnx"):
        full = open_engine("onnxruntime", exported / artifact)
        basic = open_engine(engine, exported / artifact)
        assert basic.kind == "onnxruntime" and basic.runtime == full.runtime
        assert basic.input_specs() == full.input_specs() == [(basic.input_specs()[0][0], SHAPE_NCHW, "float32")]
        want = np.stack([run(full, [s[None]])[0] for s in x])
        got = np.stack([run(basic, [s[None]])[0] for s in x])
        assert got.dtype == np.float32 and got.shape == want.shape == (8, 1, 10)
        if artifact == "model.onnx":
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)
        else:
            m = device_parity_metrics(device=got, reference=want)
            assert m["cosine_min"] > 0.999 and m["top1_agreement"] == 1.0, m


REGISTERED_ENGINES = tuple(ENGINES.names())
"""Every registered engine: test_registered_engine_runs_the_exported_model is parametrized over this."""


@pytest.mark.parametrize("name", REGISTERED_ENGINES)
def test_registered_engine_runs_the_exported_model(exported, name):
    """Each registered engine opens every exported artifact it runs (by suffix; torch: the module itself) and
    agrees with torch eager: fp32 to float rounding, INT8 by cosine."""
    x = _samples(4, seed=5)
    torch_eng = open_engine("torch", _torch_module(exported), input_shape=SHAPE_NCHW)
    ref = np.stack([run(torch_eng, [s[None]])[0] for s in x])
    entry = ENGINES.get(name)
    if entry.kind is EngineKind.TORCH:
        eng = open_engine(name, _torch_module(exported), input_shape=SHAPE_NCHW)
        np.testing.assert_array_equal(np.stack([run(eng, [s[None]])[0] for s in x]), ref)
        return
    files = sorted(p for p in exported.iterdir() if p.suffix in entry.suffixes)
    assert files, f"the export made no artifact {name} runs ({entry.suffixes})"
    for path in files:
        eng = open_engine(name, path)
        inputs = to_artifact_layout(x, artifact_shape=eng.input_specs()[0][1], nchw_shape=SHAPE_NCHW)
        got = np.stack([run(eng, [s[None]])[0] for s in inputs])
        assert got.dtype == np.float32 and got.shape == ref.shape, (path.name, got.dtype, got.shape)
        if "int8" in path.name:
            assert device_parity_metrics(device=got, reference=ref)["cosine_min"] > 0.98, path.name
        else:
            np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-3, err_msg=path.name)


def test_quantized_io_is_handled_inside_the_engine(exported):
    eng = open_engine("tflite", exported / "model_int8.tflite")
    [(_, shape, dtype)] = eng.input_specs()
    assert dtype == "int8"
    d_in, d_out = eng._in[0], eng._out[0]
    scale, zp = d_in["quantization"]
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32) * 3  # some values saturate
    [q] = eng.prepare([x])
    assert q.dtype == np.int8 and q.shape == shape
    expect = np.clip(np.round(x.astype(np.float64) / scale + zp), -128, 127).astype(np.int8)
    np.testing.assert_array_equal(q, expect)
    [raw] = eng.invoke([q])
    assert raw.dtype == np.int8
    [y] = eng.decode([raw])
    oscale, ozp = d_out["quantization"]
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, (raw.astype(np.float32) - ozp) * oscale, rtol=1e-6)


def test_missing_runtime_and_unknown_engine_are_clear_errors(exported):
    with pytest.raises(TargetError, match="no working TFLite interpreter"):
        open_engine("tflite", exported / "model_fp32.tflite", tflite_modules=("not_a_tflite_module",))
    with pytest.raises(KeyError, match="valid: "):
        open_engine("tensorrt", exported / "model.onnx")


def test_discover_lists_the_interpreters_of_this_python():
    found = machine.discover()
    assert found["interpreters"]["onnxruntime"] and found["interpreters"]["ai_edge_litert"]
    m = found["machine"]
    assert m["arch"] and m["cores"] >= 1 and m["python"] and m["numpy"] == np.__version__


# ---- statistics and interleaving --------------------------------------------------------------------------------

def test_summary_statistics():
    t = [5.0, 1.0, 2.0, 3.0, 4.0, 100.0, 2.5, 3.5, 1.5, 2.0]
    s = timing.summarize(t)
    a = np.asarray(t)
    assert s == pytest.approx({"p50_ms": np.percentile(a, 50), "p90_ms": np.percentile(a, 90),
                               "p99_ms": np.percentile(a, 99), "mean_ms": a.mean(), "std_ms": a.std(),
                               "min_ms": 1.0})
    assert s["min_ms"] <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"]
    with pytest.raises(RunnerError):
        timing.summarize([])


class _RecordingEngine:
    """Stands in for a loaded model in run_job: records the order of invocations."""

    log: list = []

    def __init__(self, name):
        self.name, self.runtime, self.kind = name, "fake 1.0", "tflite"

    def input_specs(self):
        return [("x", (1, 2), "float32")]

    def prepare(self, inputs):
        return inputs

    def invoke(self, feed):
        self.log.append(self.name)
        return [np.asarray(feed[0]).sum(keepdims=True)]

    def decode(self, raw):
        return [np.asarray(r, np.float32) for r in raw]


def test_configurations_are_interleaved_in_rotating_rounds(monkeypatch, tmp_path):
    _RecordingEngine.log = []
    monkeypatch.setattr(runner_job, "open_engine", lambda name, path, threads, tflite_modules: _RecordingEngine(
        f"{Path(path).name}/{threads}"))
    for f in ("a.tflite", "b.tflite"):
        (tmp_path / f).write_bytes(b"")
    job = {"artifacts": [{"name": "a", "file": "a.tflite"}, {"name": "b", "file": "b.tflite"}],
           "engines": ["tflite"], "threads": [1, 2], "warmup": 2, "runs": 4, "parity_inputs": None}
    out = runner_job.run_job(job, str(tmp_path))
    names = ["a.tflite/1", "a.tflite/2", "b.tflite/1", "b.tflite/2"]
    log = _RecordingEngine.log
    assert log[:4] == names  # first inference of each, in load order
    assert log[4:12] == names * 2  # warm-up rounds, interleaved
    timed = log[12:28]
    for r in range(4):  # round r starts at configuration r % 4: drift hits every configuration alike
        assert timed[4 * r:4 * r + 4] == names[r:] + names[:r]
    assert [e["runs"] for e in out["results"]] == [4, 4, 4, 4]
    assert all(e["warmup"] == 2 for e in out["results"])


class _ClockedEngine(_RecordingEngine):
    """Each inference advances the runner's (fake) clock by 1/64 s: exact in binary, so round counts are exact."""

    clock = [0.0]

    def invoke(self, feed):
        self.clock[0] += 1 / 64
        return super().invoke(feed)


@pytest.mark.parametrize("budget_s,rounds", [(0.01, 3), (0.125, 8)])
def test_time_budget_runs_at_least_three_rounds(monkeypatch, tmp_path, budget_s, rounds):
    """--time-budget S: rounds until S seconds have passed on the runner's clock, at least 3, whatever --runs says
    (1000 here): a budget shorter than one round still gives 3 rounds, and a budget of 8 rounds stops after 8."""
    _RecordingEngine.log = []
    _ClockedEngine.clock = [0.0]
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=lambda: _ClockedEngine.clock[0],
                                                      process_time=lambda: 0.0))
    monkeypatch.setattr(runner_job, "open_engine", lambda name, path, threads, tflite_modules: _ClockedEngine(path))
    (tmp_path / "a.tflite").write_bytes(b"")
    job = {"artifacts": [{"name": "a", "file": "a.tflite"}], "engines": ["tflite"], "threads": [1], "warmup": 0,
           "runs": 1000, "time_budget_s": budget_s}
    [entry] = runner_job.run_job(job, str(tmp_path))["results"]
    assert entry["runs"] == rounds
    assert len(_RecordingEngine.log) == 1 + rounds  # the first inference, then the timed rounds: nothing more


def test_pin_lists():
    assert machine.parse_pin("0,2-3") == [0, 2, 3]
    assert machine.parse_pin(None) is None
    with pytest.raises(RunnerError, match="bad CPU list"):
        machine.parse_pin("x-1")


def test_parity_tolerates_a_flip_only_on_a_near_tie():
    ref = np.array([[1.0, 0.99, -1.0], [2.0, 0.0, -1.0]], np.float32)  # sample 0: top-2 margin 0.5% of range
    flip_tie = np.array([[0.99, 1.0, -1.0], [2.0, 0.0, -1.0]], np.float32)
    m = device_parity_metrics(device=flip_tie, reference=ref)
    assert m["top1_agreement"] == 0.5 and m["near_ties"] == 1 and m["top1_decisive"] == 1.0
    flip_clear = np.array([[1.0, 0.99, -1.0], [0.0, 2.0, -1.0]], np.float32)
    m = device_parity_metrics(device=flip_clear, reference=ref)
    assert m["top1_agreement"] == 0.5 and m["top1_decisive"] == 0.0
    with pytest.raises(ValueError, match="differ in shape"):
        device_parity_metrics(device=ref[:1], reference=ref)


# ---- bench on the local target: report.json `latency` -------------------------------------------------------------

def test_bench_local_cli_appends_documented_latency_entries(bench_dir, capsys):
    rc = main(["--json", "bench", str(bench_dir), "--target", "local", "--runs", "6", "--warmup", "2",
               "--threads", "1,2", "--pin", "0"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    report = json.loads((bench_dir / "report.json").read_text())
    entries = report["latency"]
    assert printed["latency"] == entries
    # 4 artifacts (onnx, onnx_int8 -> onnxruntime; tflite_fp32, tflite_int8 -> tflite) x 2 thread counts
    assert sorted((e["artifact"], e["engine"], e["threads"]) for e in entries) == sorted(
        (a, eng, t) for a, eng in [("onnx", "onnxruntime"), ("onnx_int8", "onnxruntime"),
                                   ("tflite_fp32", "tflite"), ("tflite_int8", "tflite")] for t in (1, 2))
    for e in entries:
        assert set(e) == set(LATENCY_FIELDS) | {"machine"}
        assert e["target"] == "local" and e["warmup"] == 2 and e["runs"] == 6
        assert 0 < e["min_ms"] <= e["p50_ms"] <= e["p90_ms"] <= e["p99_ms"]
        assert e["min_ms"] <= e["mean_ms"] and e["std_ms"] >= 0
        assert e["load_ms"] > 0 and e["first_ms"] > 0 and 10 < e["peak_rss_mb"] < 4000
        m = e["machine"]
        assert m["arch"] == os.uname().machine and m["cores"] >= 1 and m["cpu_model"]
        assert m["affinity"] == [0]  # --pin 0
        assert set(m["runtimes"]) == {"onnxruntime", "tflite"} and "rss_method" in m
    # each configuration's RSS is its own process's peak, not the runner's (ORT loads more than LiteRT)
    rss = {e["engine"]: e["peak_rss_mb"] for e in entries}
    assert rss["onnxruntime"] != rss["tflite"]
    parity = report["device_parity"]
    assert {p["artifact"] for p in parity} == {"onnx", "onnx_int8", "tflite_fp32", "tflite_int8"}
    assert all(p["ok"] and p["cosine_min"] > 0.999999 and p["device_arch"] == os.uname().machine for p in parity)
    # a second run appends
    assert main(["--quiet", "bench", str(bench_dir), "--artifact", "tflite_int8", "--engine", "tflite",
                 "--runs", "3"]) == 0
    assert len(json.loads((bench_dir / "report.json").read_text())["latency"]) == len(entries) + 1


def test_latency_table_prints(bench_dir):
    from rich.console import Console

    outcome = bench(out_dir=bench_dir, target=parse_target("local"),
                    settings=BenchSettings(engines=("tflite",), runs=3, warmup=0, rss=False, parity=False),
                    save=False)
    assert all(e["peak_rss_mb"] is None for e in outcome.entries)
    con = Console(record=True, width=250)
    con.print(latency_table(outcome.entries))
    text = con.export_text()
    assert "tflite_int8" in text and "p99" in text and "×fastest" in text
    assert "latency" not in json.loads((bench_dir / "report.json").read_text())  # save=False


class _SkewedTarget(LocalTarget):
    """The local target, but its outputs come back perturbed: what a device with wrong kernels would return."""

    def run_job(self, job_dir, *, options):
        data = super().run_job(job_dir, options=options)
        for key, outs in data["outputs"].items():
            a = np.asarray(outs[0])
            outs[0] = (a[..., ::-1] * 3).tolist()  # other argmax, other direction
        return data


def test_device_parity_failure_is_reported_and_exits_1(bench_dir, monkeypatch, capsys):
    outcome = bench(out_dir=bench_dir, target=_SkewedTarget(),
                    settings=BenchSettings(engines=("tflite",), runs=2, warmup=0, rss=False))
    assert outcome.device_parity and not outcome.parity_ok
    assert all(not p.ok for p in outcome.device_parity)
    monkeypatch.setattr("edgeport.runtime.cli.parse_target", lambda url: _SkewedTarget())
    assert main(["bench", str(bench_dir), "--engine", "tflite", "--runs", "2", "--no-rss"]) == 1
    assert "DISAGREES" in capsys.readouterr().out
    saved = json.loads((bench_dir / "report.json").read_text())["device_parity"]
    assert saved and not any(p["ok"] for p in saved)


@pytest.fixture
def two_output_dir(tmp_path_factory, tmp_path) -> Path:
    """An export (fp32 + INT8, ONNX + TFLite) of a model with one input and two outputs: a (1, 4, 16, 16) map and
    (1, 10) logits."""
    return copy_bench_dir(cached_two_output_dir(tmp_path_factory.getbasetemp()), tmp_path / "two")


def test_device_parity_compares_every_output_of_a_two_output_model(two_output_dir):
    outcome = bench(out_dir=two_output_dir, target=parse_target("local"),
                    settings=BenchSettings(runs=2, warmup=0, rss=False))
    assert {(p.artifact, p.engine) for p in outcome.device_parity} == {
        ("onnx", "onnxruntime"), ("onnx_int8", "onnxruntime"), ("tflite_fp32", "tflite"), ("tflite_int8", "tflite")}
    for p in outcome.device_parity:
        local = open_engine(p.engine, two_output_dir / {"onnx": "model.onnx", "onnx_int8": "model_int8.onnx",
                                                         "tflite_fp32": "model_fp32.tflite",
                                                         "tflite_int8": "model_int8.tflite"}[p.artifact])
        assert [o.name for o in p.outputs] == local.output_names() == ["map", "logits"]  # named alike
        assert [o.index for o in p.outputs] == [0, 1] and p.samples == 8
        for o in p.outputs:  # the runner process vs this one, same machine: the same numbers
            assert o.ok and o.cosine_min > 0.999999 and o.sqnr_db > 100 and o.max_abs < 1e-5, (p.artifact, o)
    assert outcome.parity_ok
    saved = json.loads((two_output_dir / "report.json").read_text())["device_parity"]
    assert saved == [p.to_json() for p in outcome.device_parity]
    assert all(len(d["outputs"]) == 2 and d["ok"] for d in saved)
    assert load_report(two_output_dir).get("model")["outputs"] == [
        {"name": "map", "shape": [4, 16, 16], "kind": "dense_map"},
        {"name": "logits", "shape": [10], "kind": "classes"}]


def test_layers_compare_every_output_of_a_two_output_model(two_output_dir):
    """The TFLite outputs carry the ONNX output names and their tensor-map entries say which layout each output is
    in (the map NCHW here), so per-layer attribution compares both outputs, the map and the logits."""
    from edgeport.validation import attribute_layers

    layers = attribute_layers(onnx_path=two_output_dir / "model.onnx", samples=_samples(4),
                              tflite_path=two_output_dir / "model_int8.tflite")
    rows = {r["onnx_tensor"]: r for r in layers["layers"]}
    assert {"map", "logits"} <= set(rows) and not layers["skipped"], (sorted(rows), layers["skipped"])
    assert rows["map"]["op_type"] == "Conv" and rows["logits"]["op_type"] == "Gemm"


class _SecondOutputSkewed(LocalTarget):
    """The local target, with only the second output of every artifact coming back perturbed."""

    def run_job(self, job_dir, *, options):
        data = super().run_job(job_dir, options=options)
        for outs in data["outputs"].values():
            outs[1] = (np.asarray(outs[1])[..., ::-1] * 3).tolist()
        return data


def test_one_disagreeing_output_fails_device_parity_bench_and_recommendation(two_output_dir, monkeypatch, capsys):
    """The first output agrees, the second does not: each artifact's parity fails and names the second output,
    `edgeport bench` exits 1 and says which output disagrees, and the recommendation excludes the configurations."""
    from edgeport.recommend import Check, recommend

    monkeypatch.setattr("edgeport.runtime.cli.parse_target", lambda url: _SecondOutputSkewed())
    assert main(["bench", str(two_output_dir), "--runs", "2", "--warmup", "0", "--no-rss"]) == 1
    out = capsys.readouterr().out
    entries = load_report(two_output_dir).get("device_parity")
    assert len(entries) == 4
    for d in entries:
        first, second = d["outputs"]
        assert first["ok"] and not second["ok"] and not d["ok"], d
        assert d["worst_output"] == second["name"] and d["cosine_min"] == second["cosine_min"] < 0.999
        assert f"  output {first['name']}: agrees" in out and f"  output {second['name']}: DISAGREES" in out
        assert f"parity {d['artifact']} ({d['engine']}) runner process vs this process" in out
    assert out.count("DISAGREES (worst of 2 outputs") == 4
    local = recommend(load_report(two_output_dir).data).target("local")
    assert local.best is None and {c.check for c in local.excluded} == {Check.DEVICE_MISMATCH}
    assert all(f"disagree with this machine's: {e['outputs'][1]['name']}" in c.why
               for c, e in zip(sorted(local.excluded, key=lambda c: c.artifact),
                               sorted(entries, key=lambda e: e["artifact"])))


# ---- device parity of a model with two inputs: every input fed, from validate's samples ------------------------------

@pytest.fixture(scope="module")
def two_input_export(tmp_path_factory) -> tuple[Path, Path]:
    """(export dir, data.npz): the fp32 export (model.onnx, model_fp32.tflite) of an ONNX model with two inputs,
    images (1, 3, 16, 16) -> y = 2 images and ids (1, 4) -> z = 2 ids, and 16 samples of both keyed by input name."""
    root = tmp_path_factory.mktemp("two-input")
    import onnx

    onnx.save(two_input_model(), str(root / "two.onnx"))
    rng = np.random.default_rng(3)
    np.savez(root / "data.npz", images=rng.standard_normal((16, 3, 16, 16)).astype(np.float32),
             ids=rng.standard_normal((16, 4)).astype(np.float32))
    assert main(["--quiet", "export", str(root / "two.onnx"), "--precision", "fp32", "--out", str(root / "out")]) == 0
    return root / "out", root / "data.npz"


class _KeepingParity(LocalTarget):
    """The local target, keeping the parity samples of the job it ran ({npz key: array})."""

    kept: dict = {}

    def run_job(self, job_dir, *, options):
        with np.load(Path(job_dir) / "parity.npz") as z:
            type(self).kept = {k: z[k] for k in z.files}
        return super().run_job(job_dir, options=options)


TWO_INPUT = pytest.mark.xdist_group("two_input_export")  # one worker builds the module fixture once


@TWO_INPUT
@pytest.mark.parametrize("from_npz", [True, False], ids=["npz", "validate_default"])
def test_device_parity_feeds_every_input_the_samples_validate_uses(two_input_export, tmp_path, monkeypatch, capsys,
                                                                    from_npz):
    """`edgeport bench` on a two-input model: each artifact gets both inputs (the ONNX file NCHW, the TFLite file
    NHWC), row for row the held-out set `edgeport validate` builds (edgeport.validation.held_out_samples): from the
    .npz keyed by input name with --samples, else the default photos and seeded random ids, as validate says."""
    from edgeport.validation import held_out_samples, validate_dir

    exported, npz = two_input_export
    out = copy_bench_dir(exported, tmp_path / "out")
    monkeypatch.setattr("edgeport.runtime.cli.parse_target", lambda url: _KeepingParity())
    args = ["--samples", str(npz)] if from_npz else []
    assert main(["bench", str(out), "--runs", "2", "--warmup", "0", "--no-rss", *args]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    held = held_out_samples(out, num=8, samples=str(npz) if from_npz else None)
    want = held.arrays()
    assert list(want) == ["images", "ids"] and len(want["ids"]) == 8
    kept = _KeepingParity.kept
    assert sorted(kept) == ["onnx:0", "onnx:1", "tflite_fp32:0", "tflite_fp32:1"]
    np.testing.assert_array_equal(kept["onnx:0"], want["images"])
    np.testing.assert_array_equal(kept["tflite_fp32:0"], want["images"].transpose(0, 2, 3, 1))
    for key in ("onnx:1", "tflite_fp32:1"):
        np.testing.assert_array_equal(kept[key], want["ids"])
    ids_rows = {tuple(r) for r in np.load(npz)["ids"]}
    assert all(tuple(r) in ids_rows for r in kept["onnx:1"]) is from_npz  # the .npz rows, or made-up ones
    assert validate_dir(out, num=8, samples=str(npz) if from_npz else None, save=False).samples == held.info()
    saved = load_report(out).get("device_parity")
    assert sorted(d["artifact"] for d in saved) == ["onnx", "tflite_fp32"]
    for d in saved:
        assert d["ok"] and [o["name"] for o in d["outputs"]] == ["y", "z"] and d["samples"] == 8, d
    source = f"inputs ids: from {npz}" if from_npz else "inputs ids: seeded random data"
    assert "parity samples: 8 held-out samples of" in printed and source in printed, printed


@TWO_INPUT
def test_bench_without_samples_feeds_every_input_random_data(two_input_export, tmp_path):
    """Artifacts benched outside `edgeport bench` (no parity samples given): every input of each artifact gets
    seeded random data of its shape, not only the first."""
    out = copy_bench_dir(two_input_export[0], tmp_path / "out")
    outcome = bench(out_dir=out, target=_KeepingParity(), settings=BenchSettings(runs=2, warmup=0, rss=False),
                    save=False)
    assert {k: v.shape for k, v in _KeepingParity.kept.items()} == {
        "onnx:0": (8, 3, 16, 16), "onnx:1": (8, 4), "tflite_fp32:0": (8, 16, 16, 3), "tflite_fp32:1": (8, 4)}
    assert outcome.parity_ok and all(len(p.outputs) == 2 for p in outcome.device_parity)


def test_bad_artifact_selection_is_exit_2(bench_dir, tmp_path, capsys):
    assert main(["bench", str(bench_dir), "--artifact", "nope"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "tflite_int8" in err and len(err.strip().splitlines()) == 1
    assert main(["bench", str(tmp_path / "empty")]) == 2
    assert "report.json does not exist" in capsys.readouterr().err
    assert main(["bench", str(bench_dir), "--engine", "tensorrt"]) == 2


# ---- TFLite benchmark_model output ---------------------------------------------------------------------------------

OLD_OUTPUT = """STARTING!
Num runs: [50]
Graph: [/data/local/tmp/edgeport-1/model_int8.tflite]
Loaded model /data/local/tmp/edgeport-1/model_int8.tflite
Initialized session in 41.5ms.
Running benchmark for at least 5 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
count=5 first=21880 curr=13123 min=12985 max=21880 avg=14906.8 std=3464

Running benchmark for at least 50 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
count=50 first=13093 curr=13006 min=12911 max=14567 avg=13202.3 std=310

Inference timings in us: Init: 41530, First inference: 21880, Warmup (avg): 14906.8, Inference (avg): 13202.3
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual memory footprint of the model at runtime. Take the information at your one's own risk.
Peak memory footprint (MB): init=3.13672 overall=11.7617
"""

NEW_OUTPUT = """INFO: Running benchmark for at least 50 iterations and at least 0 seconds but terminate if exceeding 150 seconds.
INFO: count=50 first=221 curr=205 min=149 max=1220 avg=207.1 std=51 p5=160 median=200 p95=283

INFO: Inference timings in us: Init: 3210, First inference: 283, Warmup (avg): 206.86, Inference (avg): 207.1
INFO: Memory footprint delta from the start of the tool (MB): init=5.21094 overall=9.67188
INFO: Overall peak memory footprint (MB) via periodic monitoring: 12.0312
"""


def test_benchmark_model_output_is_parsed():
    old = parse_benchmark_output(OLD_OUTPUT)
    assert old["runs"] == 50 and old["mean_ms"] == pytest.approx(13.2023) and old["min_ms"] == pytest.approx(12.911)
    assert old["p50_ms"] is None and old["p90_ms"] is None and old["p99_ms"] is None
    assert old["load_ms"] == pytest.approx(41.53) and old["first_ms"] == pytest.approx(21.88)
    assert old["peak_rss_mb"] == pytest.approx(11.7617)
    new = parse_benchmark_output(NEW_OUTPUT)
    assert new["p50_ms"] == pytest.approx(0.2) and new["std_ms"] == pytest.approx(0.051)
    assert new["peak_rss_mb"] == pytest.approx(12.0312)  # the peak, not the delta line
    with pytest.raises(ValueError):
        parse_benchmark_output("ERROR: Could not open 'x.tflite'.\nERROR: Benchmarking failed.")


def test_benchmark_model_command_means_what_bench_says():
    cmd = benchmark_command(binary="/d/benchmark_model", graph="/d/m.tflite", threads=4, warmup=5, runs=50,
                            xnnpack=True, time_budget_s=None, taskset_mask="f0")
    assert cmd.startswith("taskset f0 /d/benchmark_model --graph=/d/m.tflite --num_threads=4")
    for flag in ("--warmup_runs=5", "--warmup_min_secs=0", "--num_runs=50", "--min_secs=0", "--use_xnnpack=true"):
        assert flag in cmd.split()
    cmd = benchmark_command(binary="b", graph="g", threads=1, warmup=0, runs=50, xnnpack=False, time_budget_s=2.5,
                            taskset_mask=None)
    assert "--min_secs=2.5" in cmd and "--num_runs=3" in cmd and "--use_xnnpack=false" in cmd


# ---- registry guard: a registered engine without a test fails here ----------------------------------------------

ENGINE_TESTS = {  # registered engine -> the test in this file that checks its numbers
    "onnxruntime": "test_engines_agree_on_the_exported_model",
    "onnxruntime-basic": "test_onnxruntime_basic_agrees_with_onnxruntime",
    "onnxruntime-unoptimized": "test_onnxruntime_basic_agrees_with_onnxruntime",
    "tflite": "test_engines_agree_on_the_exported_model",
    "tflite-builtin": "test_engines_agree_on_the_exported_model",
    "torch": "test_engines_agree_on_the_exported_model",
}


def test_every_registered_engine_has_a_test():
    registered = set(ENGINES.names())
    assert set(ENGINE_TESTS) == registered, (
        f"engines without a row in ENGINE_TESTS: {sorted(registered - set(ENGINE_TESTS))}; "
        f"rows for engines no longer registered: {sorted(set(ENGINE_TESTS) - registered)}")
    assert set(REGISTERED_ENGINES) == registered
    for name, test in ENGINE_TESTS.items():
        assert callable(globals().get(test)), f"engine {name!r}: {test} is not a test in {Path(__file__).name}"
        assert f'"{name}"' in inspect.getsource(globals()[test]), f"engine {name!r}: {test} never opens it"
