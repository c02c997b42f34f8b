"""Target URLs and the target errors that need no device: malformed URLs (exit 2), an ssh user or host that reads
as an option, an unreachable ssh host, a local timeout, how ssh's and the runner's failures become one line; and the
guard that fails when a registered target scheme has no test.

The device side (ssh/adb against emulated aarch64) is tests/device/test_arm_targets.py; `--target local` end to end
is tests/test_runtime.py.
"""
from __future__ import annotations

import ast
import json
import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "device"))
from tiny_models import cached_bench_dir, copy_bench_dir  # noqa: E402
from watch import record_commands, until_empty  # noqa: E402

from edgeport.cli import main  # noqa: E402
from edgeport.errors import TargetError  # noqa: E402
from edgeport.runtime import TARGETS, parse_target  # noqa: E402
from edgeport.runtime.targets import TargetOptions, TargetSpecError, parse_result  # noqa: E402

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> Path:
    return cached_bench_dir(tmp_path_factory.getbasetemp())


@pytest.fixture
def bench_dir(exported, tmp_path) -> Path:
    return copy_bench_dir(exported, tmp_path / "out")


# ---- target URLs ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["ssh://", "ssh://pi@host:99999", "ssh://pi@host/some/path", "ssh://pi:pw@host",
                                 "ssh://-oProxyCommand=x@host", "ssh://pi@-oProxyCommand=x", "adb://", "adb://a b",
                                 "tcp://pi", "raspberrypi", ""])
def test_malformed_target_is_exit_2_naming_it(bench_dir, url, capsys):
    rc = main(["bench", str(bench_dir), "--target", url])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("edgeport: error: target ")
    assert repr(url) in err and ("ssh://user@host" in err or "adb://SERIAL" in err)
    with pytest.raises(TargetSpecError):
        parse_target(url)


def test_target_urls_parse():
    t = parse_target("ssh://pi@raspberrypi.local:2222").transport
    assert (t.user, t.host, t.port, t.dest) == ("pi", "raspberrypi.local", 2222, "pi@raspberrypi.local")
    assert parse_target("ssh://board").transport.dest == "board"
    assert parse_target("adb://R58M123ABC").transport.serial == "R58M123ABC"
    assert parse_target("adb://192.168.1.7:5555").transport.serial == "192.168.1.7:5555"


@pytest.mark.parametrize("url", ["ssh://-oProxyCommand=x@host", "ssh://-oProxyCommand=x", "ssh://pi@-host"])
def test_ssh_user_or_host_that_reads_as_an_option_is_refused(url):
    """`ssh -oProxyCommand=...@host` would run a command on this machine: such a URL is bad input, in one line."""
    with pytest.raises(TargetError) as info:
        parse_target(url)
    msg = str(info.value)
    assert msg == f"target {url!r}: the user and host must not start with '-' (ssh://user@host[:port])"
    assert info.value.exit_code == 2 and "\n" not in msg


def test_ssh_and_scp_options_end_before_the_host(monkeypatch, tmp_path):
    """Belt and braces: whatever the URL held, ssh and scp see `--` before the destination."""
    t = parse_target("ssh://pi@board:2222").transport
    options = TargetOptions(ssh_config="/etc/edgeport/ssh_config", timeout_s=30)
    cmd = t.command("echo hi", options)
    assert cmd[0] == "ssh" and cmd[-3:] == ["--", "pi@board", "echo hi"] and cmd.count("--") == 1
    assert cmd[1:3] == ["-F", "/etc/edgeport/ssh_config"] and cmd[cmd.index("-p") + 1] == "2222"
    copied = []
    monkeypatch.setattr("edgeport.runtime.transports.run_local",
                        lambda cmd, timeout: copied.append(cmd) or (0, "", ""))
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    job = tmp_path / "job.json"
    job.write_text("{}")
    t.push([job], "/tmp/edgeport-x", options)
    [scp] = copied
    assert scp[:2] == ["scp", "-q"] and scp[scp.index("-P") + 1] == "2222"
    assert scp[scp.index("--"):] == ["--", str(job), "pi@board:/tmp/edgeport-x/"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client (CI installs it: .ci/arm_target_up.sh)")
def test_unreachable_ssh_host_is_target_error_exit_3(bench_dir, monkeypatch, capsys):
    url = f"ssh://pi@127.0.0.1:{_closed_port()}"
    commands = record_commands(monkeypatch, "edgeport.runtime.transports")
    rc = main(["bench", str(bench_dir), "--target", url, "--ssh-config", "/dev/null", "--timeout", "20"])
    err = capsys.readouterr().err.strip()
    assert rc == 3, err
    assert len(err.splitlines()) == 1
    assert url in err and "unreachable (connection refused)" in err and "sshd running" in err
    # refused at once, not after the timeout: one ssh attempt (the temp-folder probe), answered with ssh's own
    # failure (255), no retry, no copy, and no cleanup of a folder that was never made
    assert [(c.argv[0], c.result is not None and c.result[0]) for c in commands] == [("ssh", 255)]
    assert "mktemp" in commands[0].script
    assert "latency" not in json.loads((bench_dir / "report.json").read_text())


def test_local_timeout_kills_the_runner(bench_dir, tmp_path, monkeypatch, capsys):
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(jobs))  # the job folder lands here: only our runner is looked for
    commands = record_commands(monkeypatch, "edgeport.runtime.targets")
    rc = main(["bench", str(bench_dir), "--target", "local", "--runs", "100000000", "--timeout", "3",
               "--no-rss", "--no-parity"])
    err = capsys.readouterr().err.strip()
    assert rc == 3, err
    assert err.startswith("edgeport: error: local: the benchmark did not finish within 3 s") and "--timeout" in err
    # the runner was started once, with the 3 s timeout, and that timeout killed it (run_local returned None)
    assert [(Path(c.argv[1]).name, c.timeout, c.result) for c in commands] == [("device_runner.py", 3.0, None)]
    assert until_empty(lambda: _runner_processes(str(jobs))) == [], "a runner survived the timeout"
    assert list(jobs.iterdir()) == []


def _runner_processes(under: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if "device_runner.py" in cmd and cwd.startswith(under):
            found.append(f"{pid}: {cmd}")
    return found


# ---- transport error classification (what ssh / the runner print -> one actionable line) --------------------------

@pytest.mark.parametrize("stderr,meaning", [
    ("root@127.0.0.1: Permission denied (publickey).", "refused the key"),
    ("No ED25519 host key is known for [h]:22 and you have requested strict checking.\nHost key verification failed.",
     "host key unknown or changed"),
    ("ssh: connect to host 10.9.9.9 port 22: Connection timed out", "unreachable (timed out)"),
    ("ssh: Could not resolve hostname nopi: Name or service not known", "unreachable (unknown host name)"),
])
def test_ssh_failures_are_classified(stderr, meaning):
    t = parse_target("ssh://pi@nopi")
    with pytest.raises(TargetError) as info:
        t.transport.check((255, "", stderr), "creating a temp folder")
    msg = str(info.value)
    assert msg.startswith("ssh://pi@nopi: " + meaning + " while creating a temp folder (") and "\n" not in msg
    t.transport.check((3, "", stderr), "running the benchmark")  # not ssh's own failure (255): the runner's business


def test_runner_results_are_parsed_or_explained():
    assert parse_result("t", "noise\nEDGEPORT-RESULT {\"a\": 1}\n", "", 0) == {"a": 1}
    with pytest.raises(TargetError, match=r"^t: no working TFLite"):
        parse_result("t", 'EDGEPORT-RESULT {"error": "no working TFLite interpreter"}', "", 3)
    with pytest.raises(TargetError, match=r"printed no result \(exit 137\): Traceback \| Killed \(it was killed: out of memory"):
        parse_result("t", "", "Traceback\nKilled", 137)
    with pytest.raises(TargetError, match="not valid JSON"):
        parse_result("t", "EDGEPORT-RESULT {\"a\": ", "", 0)


# ---- registry guard: a registered target scheme without a test fails here ----------------------------------------

TARGET_TESTS = {  # registered target scheme -> (an example URL, its file under tests/, the test that benches on it)
    "local": ("local", "test_runtime.py", "test_bench_local_cli_appends_documented_latency_entries"),
    "ssh": ("ssh://pi@raspberrypi.local:2222", "device/test_arm_targets.py",
            "test_ssh_bench_end_to_end_with_device_parity"),
    "adb": ("adb://R58M123ABC", "device/test_arm_targets.py", "test_adb_python_runner_pinned_and_cleaned_up"),
}

REGISTERED_SCHEMES = tuple(TARGETS.names())
"""Every registered target scheme: test_registered_scheme_parses_its_url is parametrized over this."""


@pytest.mark.parametrize("scheme", REGISTERED_SCHEMES)
def test_registered_scheme_parses_its_url(scheme):
    assert scheme in TARGET_TESTS, f"target scheme {scheme!r} is registered but has no row in TARGET_TESTS"
    url = TARGET_TESTS[scheme][0]
    target = parse_target(url)
    assert target.kind == TARGETS.get(scheme).kind and target.url == url
    with pytest.raises(TargetSpecError) as info:  # what an unknown scheme is told lists this one
        parse_target("nope://x")
    assert TARGETS.get(scheme).usage in str(info.value)


def _test_functions(path: Path) -> dict[str, str]:
    """Top-level test functions of a test file: name -> source."""
    text = path.read_text()
    return {n.name: ast.get_source_segment(text, n) for n in ast.parse(text).body
            if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_every_registered_target_scheme_has_a_test():
    registered = set(TARGETS.names())
    assert set(TARGET_TESTS) == registered, (
        f"target schemes without a row in TARGET_TESTS: {sorted(registered - set(TARGET_TESTS))}; "
        f"rows for schemes no longer registered: {sorted(set(TARGET_TESTS) - registered)}")
    assert set(REGISTERED_SCHEMES) == registered
    for scheme, (_, file, test) in TARGET_TESTS.items():
        tests = _test_functions(HERE / file)
        assert test in tests, f"target scheme {scheme!r}: {test} is not a test in tests/{file}"
        assert scheme in tests[test].lower(), f"target scheme {scheme!r}: {test} never uses it"
