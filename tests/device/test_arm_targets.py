"""`edgeport bench` against the emulated ARM devices of .ci/arm_target_up.sh, for real (marker `device`; CI runs it).

The devices: an aarch64 Debian userland under proot + qemu-aarch64 (QEMU_CPU cortex-a72, a Raspberry Pi 4's core)
with aarch64 numpy, ai-edge-litert and onnxruntime; a key-only OpenSSH server on 127.0.0.1 whose sessions run in it;
the real Debian `adb` client talking to tests/device/fake_adb_server.py (serial emu-1) backed by the same userland.
Emulation is 300-600x slower than x86, so models are tiny and runs few; what these tests prove is the transport
path, the device's outputs against x86 (device parity), discovery, pinning, cleanup and the failure messages --
never absolute speed.

Needs the variables of $BASE/env.sh (ARM_SSH_TARGET, ARM_SSH_CONFIG, ARM_SSH_BADKEY_TARGET, ARM_SSH_MAXCPU_TARGET,
ARM_SSH_NEWHOST_TARGET, ADB_SERVER_SOCKET, ARM_ADB_TARGET). Without them every test FAILS (not skips) saying how to bring the devices up.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tiny_models import cached_bench_dir, cached_two_output_dir, copy_bench_dir, two_input_model
from watch import record_commands, until_empty

from edgeport.cli import main
from edgeport.runtime import BenchSettings, bench, parse_target
from edgeport.runtime.targets import TargetOptions

pytestmark = pytest.mark.device

HERE = Path(__file__).parent
ENV_VARS = ("ARM_SSH_TARGET", "ARM_SSH_CONFIG", "ARM_SSH_BADKEY_TARGET", "ARM_SSH_MAXCPU_TARGET",
            "ARM_SSH_NEWHOST_TARGET", "ADB_SERVER_SOCKET", "ARM_ADB_TARGET")
QUICK = ["--runs", "3", "--warmup", "1"]


@pytest.fixture(scope="session")
def arm(tmp_path_factory) -> dict:
    missing = [v for v in ENV_VARS if not os.environ.get(v)]
    if missing:
        pytest.fail(f"the emulated ARM devices are not up ({', '.join(missing)} unset): run "
                    f"`BASE=/tmp/edgeport-arm-ci bash .ci/arm_target_up.sh && . /tmp/edgeport-arm-ci/env.sh` first "
                    f"(.ci/run does this)", pytrace=False)
    env = {v: os.environ[v] for v in ENV_VARS}
    for tool in ("ssh", "scp", "adb"):
        if shutil.which(tool) is None:
            pytest.fail(f"no `{tool}` on this machine: run .ci/arm_target_up.sh (it installs it)", pytrace=False)
    env["ssh_host"] = parse_target(env["ARM_SSH_TARGET"]).transport.host
    env["serial"] = parse_target(env["ARM_ADB_TARGET"]).transport.serial
    return env


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> Path:
    return cached_bench_dir(tmp_path_factory.getbasetemp())


@pytest.fixture
def bench_dir(exported, tmp_path) -> Path:
    return copy_bench_dir(exported, tmp_path / "out")


def on_ssh_device(arm, command: str, host: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", "-F", arm["ARM_SSH_CONFIG"], "-o", "BatchMode=yes", host or arm["ssh_host"], command],
                          capture_output=True, text=True, timeout=120)


def on_adb_device(arm, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["adb", "-s", arm["serial"], "shell", command], capture_output=True, text=True, timeout=120)


def edgeport(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err.strip()


def device_leftovers(arm, folder: str, *, via: str = "ssh") -> list[str]:
    """edgeport-* folders in `folder` on the device, and runner processes still alive (proot runs the emulated
    processes as host processes, so /proc here sees them)."""
    run = on_ssh_device if via == "ssh" else on_adb_device
    listing = run(arm, f"ls -a {folder}").stdout.split()
    left = [f"{folder}/{n}" for n in listing if n.startswith("edgeport-")]
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "device_runner.py" in cmd and ("qemu-aarch64" in cmd or "proot" in cmd):  # emulated = ours
                left.append(f"process {pid}: {cmd}")
    return left


def one_line_error(err: str, target: str) -> None:
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"edgeport: error: {target}: "), err


# ---- ssh ----------------------------------------------------------------------------------------------------------

def test_ssh_bench_end_to_end_with_device_parity(arm, bench_dir):
    """All four artifacts on the emulated Pi: latency entries, peak RSS, interpreters discovered, and the aarch64
    outputs agree with this x86 machine's (fp32 to ~1e-7; INT8 bit-exact on cortex-a72)."""
    target = parse_target(arm["ARM_SSH_TARGET"])
    outcome = bench(out_dir=bench_dir, target=target, settings=BenchSettings(runs=3, warmup=1),
                    options=TargetOptions(ssh_config=arm["ARM_SSH_CONFIG"], timeout_s=300))
    assert sorted((e["artifact"], e["engine"]) for e in outcome.entries) == [
        ("onnx", "onnxruntime"), ("onnx_int8", "onnxruntime"), ("tflite_fp32", "tflite"), ("tflite_int8", "tflite")]
    m = outcome.machine
    assert m["arch"] == "aarch64" and "0xd08" in m["cpu_model"]  # Cortex-A72 part number
    assert m["runtimes"]["tflite"].startswith("ai_edge_litert") and m["runtimes"]["onnxruntime"].startswith("onnxrun")
    for e in outcome.entries:
        assert e["target"] == arm["ARM_SSH_TARGET"] and e["runs"] == 3 and e["warmup"] == 1
        assert 0 < e["min_ms"] <= e["p50_ms"] <= e["p99_ms"] and e["load_ms"] > 0 and e["first_ms"] > 0
        assert e["peak_rss_mb"] > 10
    # interpreter discovery on the device: numpy 2 there, so tflite_runtime 2.14 is found broken, with the reason
    found = outcome.interpreters
    assert found["ai_edge_litert"] and found["onnxruntime"] and found["tflite_runtime"] is None
    assert found.get("tflite_runtime_error")
    assert len(outcome.device_parity) == 4 and outcome.parity_ok
    for p in outcome.device_parity:
        [o] = p.outputs  # the tiny CNN has one output
        assert p.device_arch == "aarch64" and o.top1_agreement == 1.0 and o.cosine_min > 0.99999, p
        if p.artifact == "tflite_int8":
            assert o.max_abs == 0.0, p  # same int8 kernels on ARM and x86 (under cortex-a72)
    saved = json.loads((bench_dir / "report.json").read_text())
    assert len(saved["latency"]) == 4 and len(saved["device_parity"]) == 4
    assert device_leftovers(arm, "/tmp") == []


def test_ssh_device_parity_compares_every_output(arm, tmp_path_factory, tmp_path, capsys):
    """A model with two outputs (a 4-class map and 10 logits) on the emulated Pi: each artifact's parity holds one
    entry per output, every one of them agreeing with x86 (INT8 bit-exact under cortex-a72), printed per output."""
    out_dir = copy_bench_dir(cached_two_output_dir(tmp_path_factory.getbasetemp()), tmp_path / "two")
    rc, out, err = edgeport(capsys, "bench", out_dir, "--target", arm["ARM_SSH_TARGET"], "--ssh-config",
                            arm["ARM_SSH_CONFIG"], "--no-rss", *QUICK)
    assert rc == 0, err
    saved = json.loads((out_dir / "report.json").read_text())["device_parity"]
    assert sorted(d["artifact"] for d in saved) == ["onnx", "onnx_int8", "tflite_fp32", "tflite_int8"]
    for d in saved:
        assert d["device_arch"] == "aarch64" and d["ok"] and len(d["outputs"]) == 2, d
        for o in d["outputs"]:
            assert o["ok"] and o["cosine_min"] > 0.99999 and o["sqnr_db"] > 60, (d["artifact"], o)
            assert f"  output {o['name']}: agrees" in out
            if d["artifact"] == "tflite_int8":
                assert o["max_abs"] == 0.0, (d["artifact"], o)
    assert out.count("agrees (worst of 2 outputs") == 4 and "DISAGREES" not in out
    assert device_leftovers(arm, "/tmp") == []


def test_ssh_device_parity_feeds_every_input(arm, tmp_path, capsys):
    """A model with two inputs (an image and a second tensor) on the emulated Pi: both inputs reach the device, the
    samples `validate` uses from the .npz keyed by input name, and both outputs (2 x each input) come back exactly
    as on x86 (a wrong or missing second input would change z)."""
    import numpy as np
    import onnx

    onnx.save(two_input_model(), str(tmp_path / "two.onnx"))
    rng = np.random.default_rng(5)
    np.savez(tmp_path / "data.npz", images=rng.standard_normal((8, 3, 16, 16)).astype(np.float32),
             ids=rng.standard_normal((8, 4)).astype(np.float32))
    out_dir = tmp_path / "out"
    assert main(["--quiet", "export", str(tmp_path / "two.onnx"), "--precision", "fp32", "--out", str(out_dir)]) == 0
    rc, out, err = edgeport(capsys, "bench", out_dir, "--target", arm["ARM_SSH_TARGET"], "--ssh-config",
                            arm["ARM_SSH_CONFIG"], "--samples", tmp_path / "data.npz", "--no-rss", *QUICK)
    assert rc == 0, err
    assert f"inputs ids: from {tmp_path / 'data.npz'}" in " ".join(out.split())
    saved = json.loads((out_dir / "report.json").read_text())["device_parity"]
    assert sorted(d["artifact"] for d in saved) == ["onnx", "tflite_fp32"]
    for d in saved:
        assert d["device_arch"] == "aarch64" and d["ok"] and [o["name"] for o in d["outputs"]] == ["y", "z"], d
        assert all(o["max_abs"] == 0.0 for o in d["outputs"]), d
    assert device_leftovers(arm, "/tmp") == []


def test_ssh_cli_prints_the_table_and_a_second_interpreter(arm, bench_dir, capsys):
    """`edgeport bench --target ssh://...` through the CLI, with --device-python naming another interpreter on the
    device: python3-np1 has numpy<2 + tflite_runtime 2.14 and no ONNX Runtime, so the .onnx artifacts are skipped
    with the reason, and the .tflite ones run on tflite_runtime and agree with x86."""
    rc, out, err = edgeport(capsys, "bench", bench_dir, "--target", arm["ARM_SSH_TARGET"], "--ssh-config",
                            arm["ARM_SSH_CONFIG"], "--device-python", "python3-np1", "--no-rss", *QUICK)
    assert rc == 0, err
    assert "aarch64" in out and "tflite_runtime 2.14" in out and "latency on ssh://" in out
    assert out.count("agrees") == 2 and "DISAGREES" not in out
    assert "skipped onnx (onnxruntime" in out and "onnxruntime is not installed" in out
    entries = json.loads((bench_dir / "report.json").read_text())["latency"]
    assert {e["artifact"] for e in entries} == {"tflite_fp32", "tflite_int8"}
    assert all(e["machine"]["runtimes"]["tflite"].startswith("tflite_runtime 2.14") for e in entries)
    assert all(e["machine"]["numpy"].startswith("1.") for e in entries)


def test_device_parity_catches_a_device_that_disagrees(arm, bench_dir, capsys):
    """armpi-maxcpu is the same userland under qemu's `max` CPU model (dotprod/i8mm/SVE advertised): there XNNPACK's
    INT8 outputs differ from x86's by up to ~100 LSB. bench must say DISAGREES and exit 1 (not 0, not 3)."""
    rc, out, err = edgeport(capsys, "bench", bench_dir, "--target", arm["ARM_SSH_MAXCPU_TARGET"], "--ssh-config",
                            arm["ARM_SSH_CONFIG"], "--artifact", "tflite_int8,tflite_fp32", "--engine", "tflite",
                            "--no-rss", *QUICK)
    assert rc == 1, ("armpi-maxcpu no longer disagrees with x86 (a qemu other than Debian 12's 7.2 fixed its `max` "
                     "CPU emulation?); the parity check then needs another disagreeing device", out, err)
    assert "parity tflite_int8 (tflite) aarch64 vs this machine: DISAGREES" in out
    assert "parity tflite_fp32 (tflite) aarch64 vs this machine: agrees" in out
    parity = {p["artifact"]: p for p in json.loads((bench_dir / "report.json").read_text())["device_parity"]}
    assert not parity["tflite_int8"]["ok"] and parity["tflite_int8"]["max_abs"] > 0
    assert parity["tflite_fp32"]["ok"]


def test_ssh_refused_key(arm, bench_dir, capsys):
    rc, out, err = edgeport(capsys, "bench", bench_dir, "--target", arm["ARM_SSH_BADKEY_TARGET"], "--ssh-config",
                            arm["ARM_SSH_CONFIG"])
    assert rc == 3
    one_line_error(err, arm["ARM_SSH_BADKEY_TARGET"])
    assert "refused the key" in err and "ssh-copy-id" in err


def test_ssh_unknown_host_key_is_never_accepted_silently(arm, bench_dir, capsys):
    """armpi-newhost: the right key, but a known_hosts without the device's host key (StrictHostKeyChecking yes)."""
    rc, out, err = edgeport(capsys, "bench", bench_dir, "--target", arm["ARM_SSH_NEWHOST_TARGET"], "--ssh-config",
                            arm["ARM_SSH_CONFIG"])
    assert rc == 3
    one_line_error(err, arm["ARM_SSH_NEWHOST_TARGET"])
    assert "host key unknown or changed" in err and "never disables host-key checking" in err
    assert Path(arm["ARM_SSH_CONFIG"]).with_name("empty_known_hosts").read_text() == ""


@pytest.mark.parametrize("python,expect", [
    ("/opt/nothing/bin/python3", "no Python on the device (/opt/nothing/bin/python3: not found)"),
    ("python3-bare", "numpy is not installed for /usr/bin/python3.11"),
    ("python3-numpy-only", "has neither ONNX Runtime nor a TFLite interpreter"),
])
def test_ssh_device_without_python_numpy_or_interpreter(arm, bench_dir, capsys, python, expect):
    rc, out, err = edgeport(capsys, "bench", bench_dir, "--target", arm["ARM_SSH_TARGET"], "--ssh-config",
                            arm["ARM_SSH_CONFIG"], "--device-python", python)
    assert rc == 3, err
    one_line_error(err, arm["ARM_SSH_TARGET"])
    assert expect in err and ("pip install" in err or "--device-python" in err)
    assert device_leftovers(arm, "/tmp") == []


def test_full_disk_over_ssh_and_adb(arm, bench_dir, capsys):
    """/mnt/full on the device is a 4 MiB tmpfs (shared by the ssh and adb transports): fill it, then bench into it."""
    fill = on_ssh_device(arm, "dd if=/dev/zero of=/mnt/full/filler bs=64k 2>/dev/null; "
                              "stat -f -c '%a' /mnt/full")
    try:
        assert fill.stdout.strip() == "0", f"/mnt/full is not a full tmpfs on the device: {fill.stdout}{fill.stderr}"
        rc, out, err = edgeport(capsys, "bench", bench_dir, "--target", arm["ARM_SSH_TARGET"], "--ssh-config",
                                arm["ARM_SSH_CONFIG"], "--remote-dir", "/mnt/full")
        assert rc == 3, err
        one_line_error(err, arm["ARM_SSH_TARGET"])
        assert "the device disk is full: 0 KiB free in /mnt/full/edgeport-" in err and "--remote-dir" in err
        rc, out, err = edgeport(capsys, "bench", bench_dir, "--target", arm["ARM_ADB_TARGET"], "--remote-dir",
                                "/mnt/full")
        assert rc == 3, err
        one_line_error(err, arm["ARM_ADB_TARGET"])
        assert "the device disk is full" in err
        assert device_leftovers(arm, "/mnt/full") == []
    finally:
        on_ssh_device(arm, "rm -f /mnt/full/filler")


def assert_run_killed_by_the_timeout(commands, timeout_s: float) -> None:
    """The benchmark step, and only it, hit the timeout (run_local killed the client's process group), once; then
    the cleanup ran once and removed the folder."""
    timed_out = [c for c in commands if c.result is None]
    assert len(timed_out) == 1, [c.script for c in timed_out]
    assert "device_runner.py job.json" in timed_out[0].script and timed_out[0].timeout == timeout_s
    assert sum("device_runner.py job.json" in c.script for c in commands) == 1  # not retried
    cleanups = [c for c in commands if "rm -rf" in c.script]
    assert len(cleanups) == 1 and commands.index(cleanups[0]) > commands.index(timed_out[0])
    assert "CLEAN" in cleanups[0].result[1]


def test_ssh_hang_hits_the_timeout_and_nothing_is_left(arm, bench_dir, monkeypatch, capsys):
    commands = record_commands(monkeypatch, "edgeport.runtime.transports")
    rc, out, err = edgeport(capsys, "bench", bench_dir, "--target", arm["ARM_SSH_TARGET"], "--ssh-config",
                            arm["ARM_SSH_CONFIG"], "--artifact", "tflite_int8", "--engine", "tflite",
                            "--runs", "100000000", "--no-rss", "--no-parity", "--timeout", "15")
    assert rc == 3, err
    one_line_error(err, arm["ARM_SSH_TARGET"])
    assert "did not finish within 15 s" in err and "killed" in err and "--timeout" in err
    assert_run_killed_by_the_timeout(commands, 15)
    assert until_empty(lambda: device_leftovers(arm, "/tmp")) == []


# ---- adb ----------------------------------------------------------------------------------------------------------

def test_adb_python_runner_pinned_and_cleaned_up(arm, bench_dir, capsys):
    rc, out, err = edgeport(capsys, "--json", "bench", bench_dir, "--target", arm["ARM_ADB_TARGET"], "--pin", "1",
                            "--artifact", "tflite_int8,onnx", "--no-rss", *QUICK)
    assert rc == 0, err
    data = json.loads(out)
    entries = data["latency"]
    assert {(e["artifact"], e["engine"]) for e in entries} == {("tflite_int8", "tflite"), ("onnx", "onnxruntime")}
    for e in entries:
        assert e["target"] == arm["ARM_ADB_TARGET"] and e["device"] == "edgeport-emulated-a72"  # getprop
        assert e["machine"]["arch"] == "aarch64" and e["machine"]["affinity"] == [1]  # taskset 2 + the runner's pin
    assert len(data["device_parity"]) == 2 and all(p["ok"] and p["device_arch"] == "aarch64"
                                                    for p in data["device_parity"])
    assert device_leftovers(arm, "/data/local/tmp", via="adb") == []


def test_adb_benchmark_binary(arm, bench_dir, tmp_path, capsys):
    """--benchmark-binary: pushed, run per (artifact, engine, threads) under taskset, output parsed. The binary is
    tests/device/fake_benchmark_model.py (same CLI and output format as TFLite's benchmark_model; real LiteRT)."""
    binary = tmp_path / "benchmark_model"
    shutil.copy(HERE / "fake_benchmark_model.py", binary)
    rc, out, err = edgeport(capsys, "--json", "bench", bench_dir, "--target", arm["ARM_ADB_TARGET"],
                            "--benchmark-binary", binary, "--artifact", "tflite_int8,onnx",
                            "--engine", "tflite,tflite-builtin", "--pin", "0", *QUICK)
    assert rc == 0, err
    entries = json.loads(out)["latency"]
    assert [(e["artifact"], e["engine"]) for e in entries] == [
        ("tflite_int8", "tflite(benchmark_model)"), ("tflite_int8", "tflite-builtin(benchmark_model)")]
    for e in entries:
        assert e["runs"] == 3 and e["warmup"] == 1 and e["p90_ms"] is None and e["p99_ms"] is None
        assert 0 < e["min_ms"] <= e["p50_ms"] and e["load_ms"] > 0 and e["first_ms"] > 0 and e["peak_rss_mb"] > 1
        m = e["machine"]
        assert m["arch"] == "aarch64" and m["abi"] == "arm64-v8a" and m["pinned_mask"] == "1"
        assert e["device"] == "edgeport-emulated-a72"
    assert device_leftovers(arm, "/data/local/tmp", via="adb") == []


def test_adb_missing_benchmark_binary_and_missing_python(arm, bench_dir, tmp_path, capsys):
    rc, out, err = edgeport(capsys, "bench", bench_dir, "--target", arm["ARM_ADB_TARGET"], "--benchmark-binary",
                            tmp_path / "no" / "benchmark_model")
    assert rc == 3
    one_line_error(err, arm["ARM_ADB_TARGET"])
    assert "does not exist on this machine" in err and "benchmark_model" in err
    rc, out, err = edgeport(capsys, "bench", bench_dir, "--target", arm["ARM_ADB_TARGET"], "--device-python",
                            "/data/data/com.termux/files/usr/bin/python3")
    assert rc == 3
    one_line_error(err, arm["ARM_ADB_TARGET"])
    assert "no Python on the device" in err and "--benchmark-binary" in err
    rc, out, err = edgeport(capsys, "bench", bench_dir, "--target", "adb://emu-9")
    assert rc == 3
    one_line_error(err, "adb://emu-9")
    assert "not connected" in err and "adb devices" in err
    assert device_leftovers(arm, "/data/local/tmp", via="adb") == []


def test_adb_hang_hits_the_timeout_and_nothing_is_left(arm, bench_dir, monkeypatch, capsys):
    """The fake adb server, like a phone, keeps a command running after the client goes away: the cleanup must
    kill it on the device."""
    commands = record_commands(monkeypatch, "edgeport.runtime.transports")
    rc, out, err = edgeport(capsys, "bench", bench_dir, "--target", arm["ARM_ADB_TARGET"], "--artifact",
                            "tflite_int8", "--engine", "tflite", "--runs", "100000000", "--no-rss", "--no-parity",
                            "--timeout", "15")
    assert rc == 3, err
    one_line_error(err, arm["ARM_ADB_TARGET"])
    assert "did not finish within 15 s" in err
    assert_run_killed_by_the_timeout(commands, 15)
    assert until_empty(lambda: device_leftovers(arm, "/data/local/tmp", via="adb")) == []


# ---- the decision over every target kind ----------------------------------------------------------------------------

def test_run_recommends_per_target_for_local_ssh_and_adb(arm, exported, tmp_path, capsys):
    """`edgeport run --targets local,ssh://...,adb://...`: report.json `recommendation` has one decision per target,
    each naming a configuration measured on that target, and the terminal prints a line per target."""
    src = Path(exported).parent / (Path(exported).name + "-src")  # tiny.py and calib.npy of the cached export
    targets = ["local", arm["ARM_SSH_TARGET"], arm["ARM_ADB_TARGET"]]
    out = tmp_path / "run"
    rc, text, err = edgeport(capsys, "run", f"{src / 'tiny.py'}:make", "--input-shape", "3,16,16", "--exporter",
                             "legacy", "--precision", "fp32,int8", "--calibration", src / "calib.npy",
                             "--num-calibration", "16", "--num-validation", "16", "--no-layers", "--targets",
                             ",".join(targets), "--ssh-config", arm["ARM_SSH_CONFIG"], *QUICK, "--out", out)
    assert rc == 0, (text, err)
    rep = json.loads((out / "report.json").read_text())
    decisions = rep["recommendation"]["targets"]
    assert sorted(decisions) == sorted(targets), decisions
    measured = {(e["target"], e["artifact"], e["engine"], e["threads"]) for e in rep["latency"]}
    for target, d in decisions.items():
        best = d["best"]
        assert best is not None, (target, d)
        assert (target, best["artifact"], best["engine"], best["threads"]) in measured, (target, best)
        assert f"{target}: ship {best['artifact']}" in text, text
    assert device_leftovers(arm, "/tmp") == []
