"""Can a latency entry be trusted? CPU time beside wall time, the machine's state around the timed rounds, the
`noisy` verdict and its rules, device hygiene (big cores by default, thermal zones, the cool-down gate, a minimum
duration), and a test that loads this machine on purpose.

Sysfs is faked through EDGEPORT_SYSFS_ROOT (the runner reads /sys under it); the loaded-machine test builds a small
ONNX conv stack (~2.5 ms of CPU per inference on the AMD EPYC this was written on) and starts busy loops on the
runner's CPU, always stopping them.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgeport.runtime.bench import BenchSettings, bench_artifacts
from edgeport.runtime.device import job as runner_job
from edgeport.runtime.device import machine, timing
from edgeport.runtime.results import (LATENCY_FIELDS, NOISY_MAX_P90_P50, conditions_lines, describe_machine,
                                      latency_table, make_entry, noisy_label)
from edgeport.runtime.targets import parse_target

X86_CPUINFO = """processor\t: 0
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni lm
"""


def _state(*, load=0.1, stat=(100, 0, 50, 1000, 0, 0, 0, 0), cpu_s=0.0, wall_s=0.0, temps=None):
    return {"loadavg1": load, "stat_cpu": list(stat), "clock_tck": 100, "temps_c": temps or {},
            "process_cpu_s": cpu_s, "wall_s": wall_s}


def _result(**kw):
    base = {"engine": "onnxruntime", "artifact": "onnx", "threads": 1, "warmup": 5, "runs": 100, "p50_ms": 2.0,
            "p90_ms": 2.1, "p99_ms": 2.3, "mean_ms": 2.02, "std_ms": 0.05, "min_ms": 1.9, "load_ms": 30.0,
            "first_ms": 5.0, "peak_rss_mb": None, "cpu_ms": 2.0, "pinned": [1], "pin_reason": None,
            "min_seconds": None, "cooldown": None,
            # 1 s timed on 2 cores (200 jiffies): 100 busy, all ours (1.0 s of process CPU)
            "state_before": _state(), "state_after": _state(stat=(200, 0, 50, 1100, 0, 0, 0, 0), cpu_s=1.0,
                                                            wall_s=1.0)}
    base.update(kw)
    return base


def _entry(**kw):
    return make_entry(target="local", device="h", result=_result(**kw), machine={"cores": 2})


# ---- the verdict --------------------------------------------------------------------------------------------------

def test_a_quiet_run_is_trusted_and_carries_every_field():
    e = _entry()
    assert set(e) == set(LATENCY_FIELDS) | {"machine"}
    assert e["noisy"] is False and e["noisy_reasons"] == [] and noisy_label(e) == "-"
    assert e["cpu_ms"] == 2.0 and e["cpu_util"] == pytest.approx(2.0 / 2.02)
    c = e["conditions"]
    assert c["steal_pct"] == 0.0 and c["other_cores"] == pytest.approx(0.0) and c["seconds"] == 1.0


@pytest.mark.parametrize("kw,rule", [
    ({"cpu_ms": 1.0}, "cpu/wall"),  # half the wall time on a core: it waited for one
    ({"p90_ms": 2.0 * NOISY_MAX_P90_P50 + 0.1}, "spread"),
    ({"state_before": _state(load=3.5)}, "load"),  # 3.5 - our 1 thread = 2.5 others on 2 cores
    # 2.5 s of busy CPU in the 1 s timed, 1 s of it ours: others used 1.5 cores, + our thread > 2 cores
    ({"state_after": _state(stat=(350, 0, 50, 1000, 0, 0, 0, 0), cpu_s=1.0, wall_s=1.0)}, "load"),
    ({"state_after": _state(stat=(200, 0, 50, 1080, 0, 0, 0, 20), cpu_s=1.0, wall_s=1.0)}, "steal"),  # 10 %
])
def test_each_rule_flags_the_entry_with_its_reason(kw, rule):
    e = _entry(**kw)
    assert e["noisy"] is True
    assert any(r.startswith(rule + ":") for r in e["noisy_reasons"]), e["noisy_reasons"]
    assert {"cpu/wall": "wait"}.get(rule, rule) in noisy_label(e)


def test_benchmark_model_results_are_not_judged():
    r = {k: v for k, v in _result().items() if k not in ("cpu_ms", "state_before", "state_after")}
    r["p90_ms"] = None
    e = make_entry(target="adb://x", device="d", result=r, machine={"cores": 8})
    assert e["noisy"] is None and e["cpu_ms"] is None and e["conditions"] is None and noisy_label(e) == "?"


def test_cpu_features_are_parsed_on_the_host_from_the_runners_cpuinfo():
    m = describe_machine({"arch": "x86_64", "cores": 2, "cpuinfo": X86_CPUINFO})
    assert "cpuinfo" not in m
    f = m["cpu_features"]
    assert f["model_name"] == "AMD EPYC" and f["avx512_vnni"] and f["int8_kernel_path"] == "x86-avx512-vnni"
    e = make_entry(target="local", device="h", result=_result(), machine=m)
    assert "avx512_vnni" in conditions_lines([e])[0] and "x86-avx512-vnni" in conditions_lines([e])[0]


def test_table_shows_cpu_and_noisy_within_120_columns():
    from rich.console import Console

    con = Console(record=True, width=200)
    worst = dict(cpu_ms=1.0, p90_ms=9.0, artifact="tflite_int8", engine="tflite", peak_rss_mb=1234.0,
                 state_before=_state(load=9.0), state_after=_state(stat=(200, 0, 50, 1080, 0, 0, 0, 20), cpu_s=1.0,
                                                                  wall_s=1.0))
    entries = [_entry(), _entry(**worst)]
    for e in entries:
        e["device"] = "raspberrypi5"
    con.print(latency_table(entries, title="latency on ssh://pi@raspberrypi5 (ms)"))
    lines = con.export_text().splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 120, lines
    text = "\n".join(lines)
    assert "cpu" in text and "noisy" in text and "wait,spread,load,steal" in text and "×fastest" in text


# ---- device hygiene: fake sysfs -----------------------------------------------------------------------------------

def _fake_sysfs(root: Path, *, freqs: dict[int, int], temps: dict[str, int]) -> Path:
    for cpu, f in freqs.items():
        d = root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        d.mkdir(parents=True)
        (d / "cpuinfo_max_freq").write_text(f"{f}\n")
    for i, (kind, milli) in enumerate(temps.items()):
        d = root / f"sys/class/thermal/thermal_zone{i}"
        d.mkdir(parents=True)
        (d / "type").write_text(kind + "\n")
        (d / "temp").write_text(f"{milli}\n")
    return root


def test_big_cores_are_the_default_only_on_a_heterogeneous_cpu(tmp_path, monkeypatch):
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs to fake a big.LITTLE layout")
    little, big = cpus[0], cpus[1]
    hetero = _fake_sysfs(tmp_path / "hetero", freqs={little: 1_800_000, big: 2_400_000}, temps={})
    monkeypatch.setenv(machine.SYSFS_ROOT_ENV, str(hetero))
    pinned, reason = machine.default_pin()
    assert pinned == [big] and "2.40 GHz vs 1.80 GHz" in reason
    assert machine.parse_pin("big") == [big]
    homo = _fake_sysfs(tmp_path / "homo", freqs={c: 2_000_000 for c in cpus}, temps={})
    monkeypatch.setenv(machine.SYSFS_ROOT_ENV, str(homo))
    assert machine.default_pin() == (None, None)


def test_thermal_zones_and_the_cooldown_gate(tmp_path, monkeypatch):
    root = _fake_sysfs(tmp_path, freqs={}, temps={"cpu-thermal": 71_500, "gpu-thermal": 48_000})
    monkeypatch.setenv(machine.SYSFS_ROOT_ENV, str(root))
    assert machine.thermal_temps() == {"thermal_zone0:cpu-thermal": 71.5, "thermal_zone1:gpu-thermal": 48.0}
    clock = [0.0]
    monkeypatch.setattr(machine, "time", SimpleNamespace(monotonic=lambda: clock[0],
                                                         sleep=lambda s: clock.__setitem__(0, clock[0] + s)))
    hot = machine.cool_down(max_temp_c=60.0, cooldown_s=5.0)  # never cools: bounded wait, says it was not reached
    assert hot == {"waited_s": 5.0, "max_temp_c": 60.0, "reached": False, "temp_c": 71.5}
    cool = machine.cool_down(max_temp_c=80.0, cooldown_s=5.0)
    assert cool["reached"] is True and cool["waited_s"] == 0.0
    assert machine.cool_down(max_temp_c=None, cooldown_s=None) is None
    assert machine.cool_down(max_temp_c=None, cooldown_s=2.0)["waited_s"] == 2.0
    monkeypatch.setenv(machine.SYSFS_ROOT_ENV, str(tmp_path / "none"))
    assert machine.cool_down(max_temp_c=60.0, cooldown_s=5.0)["reached"] is None  # no zone: nothing to wait for


class _ClockedEngine:
    """Each inference advances the fake wall clock by 1/64 s and the fake CPU clock by 1/128 s."""

    kind, runtime = "tflite", "fake"
    clock = [0.0, 0.0]

    def __init__(self, path):
        pass

    def input_specs(self):
        return [("x", (1, 2), "float32")]

    def prepare(self, inputs):
        return inputs

    def invoke(self, feed):
        self.clock[0] += 1 / 64
        self.clock[1] += 1 / 128
        return [np.zeros(1, np.float32)]


def test_min_seconds_keeps_timing_past_runs_and_entries_record_it(tmp_path, monkeypatch):
    _ClockedEngine.clock = [0.0, 0.0]
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=lambda: _ClockedEngine.clock[0],
                                                        process_time=lambda: _ClockedEngine.clock[1]))
    monkeypatch.setattr(runner_job, "open_engine", lambda name, path, threads, tflite_modules: _ClockedEngine(path))
    monkeypatch.setenv(machine.SYSFS_ROOT_ENV, str(_fake_sysfs(tmp_path / "sys", freqs={}, temps={"soc": 40_000})))
    (tmp_path / "a.tflite").write_bytes(b"")
    job = {"artifacts": [{"name": "a", "file": "a.tflite"}], "engines": ["tflite"], "threads": [1], "warmup": 0,
           "runs": 4, "min_seconds": 0.5}
    [r] = runner_job.run_job(job, str(tmp_path))["results"]
    assert r["runs"] == 32  # 0.5 s of 1/64 s inferences, more than --runs 4
    assert r["cpu_ms"] == pytest.approx(1e3 / 128) and r["min_seconds"] == 0.5
    assert r["state_before"]["temps_c"] == {"thermal_zone0:soc": 40.0}
    e = make_entry(target="local", device="h", result=r, machine={"cores": 2})
    assert e["min_seconds"] == 0.5 and e["conditions"]["temp_c_after"] == 40.0
    assert e["cpu_util"] == pytest.approx(0.5)
    assert "wait" in noisy_label(e)  # half the wall time on a core


# ---- a machine loaded on purpose ----------------------------------------------------------------------------------

def _conv_stack(path: Path) -> Path:
    """4 x (3x3 conv 32 ch + ReLU) on 1x3x64x64, global pool: ~2.5 ms of CPU per inference, no torch needed."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, x, c = [], [], "x", 3
    for i in range(4):
        inits.append(numpy_helper.from_array((rng.standard_normal((32, c, 3, 3)) * 0.1).astype(np.float32), f"w{i}"))
        nodes += [helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        x, c = f"r{i}", 32
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["y"]))
    graph = helper.make_graph(nodes, "conv_stack",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 1, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture
def busy_cpu():
    """Two busy-loop processes pinned to one CPU for the test's duration; always stopped. Yields that CPU."""
    cpu = sorted(os.sched_getaffinity(0))[-1]
    code = f"import os\nos.sched_setaffinity(0, [{cpu}])\nwhile True:\n    pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    try:
        time.sleep(0.3)
        yield cpu
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(timeout=10)


# Two runs of 300 inferences each, each in a fresh runner process sharing its CPU with two busy loops (so it gets
# about a third of it). Measured on a 2-vCPU AMD EPYC VM shared with other jobs (docs/devices.md): 12 such runs gave
# cpu_ms 2.20-2.42 ms, back-to-back runs within 5 % (what runs on the other vCPU changes cache and memory
# bandwidth), while p50 wall time ranged 6.1-11.2 ms. 10 % holds that with margin and still catches wall time
# leaking into the figure (x3 here). One run in 13 came out at 3.39 ms while a TensorFlow export ran on the other
# vCPU: a neighbour that heavy can still fail this test.
CPU_FIGURE_TOLERANCE = 0.10


@pytest.mark.slow
def test_loaded_machine_is_flagged_and_cpu_time_still_repeats(tmp_path, busy_cpu):
    model = _conv_stack(tmp_path / "conv_stack.onnx")
    settings = BenchSettings(engines=("onnxruntime",), runs=300, warmup=10, pin=str(busy_cpu), rss=False,
                             parity=False)
    entries = []
    for _ in range(2):
        outcome = bench_artifacts(artifacts={"onnx": model}, target=parse_target("local"),
                                  settings=settings)
        [e] = outcome.entries
        entries.append(e)
        assert e["pinned"] == [busy_cpu]
        assert e["noisy"] is True
        assert {r.split(":")[0] for r in e["noisy_reasons"]} & {"load", "cpu/wall"}, e["noisy_reasons"]
    a, b = (e["cpu_ms"] for e in entries)
    assert abs(a - b) / min(a, b) <= CPU_FIGURE_TOLERANCE, (a, b, [e["p50_ms"] for e in entries])


def test_report_latency_table_shows_cpu_time_and_marks_noisy_entries_with_the_reason():
    from edgeport.render import latency_rows

    cols, rows = latency_rows([_entry(), _entry(cpu_ms=1.0), {"target": "adb://x", "threads": 1, "p50_ms": 1.0}])
    assert "cpu_ms" in cols and "cpu_util" in cols and cols[-1] == "noisy"
    quiet, noisy, old = (dict(zip(cols, r)) for r in rows)
    assert quiet["cpu_ms"] == "2" and quiet["noisy"] == "no"
    assert noisy["noisy"].startswith("yes: cpu/wall: CPU time 50% of wall")
    assert old["noisy"] == "-" and old["cpu_ms"] == "-"  # benchmark_model, or written before the verdict existed
