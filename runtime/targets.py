"""Where a benchmark runs: `local`, `ssh://user@host[:port]` (Raspberry Pi, any Linux board), `adb://SERIAL` (Android).

Every target does the same thing with a *job folder* (job.json, the artifacts, parity.npz and device_runner.py):
copy it to a fresh temp folder on the device, run `python3 device_runner.py job.json` there with a deadline, bring
the JSON result back, and remove the folder and any process it left (`kill -9 -PGID` from runner.pid). Failures
raise TargetError naming the target and what to do.
"""
from __future__ import annotations

import enum
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from edgeport.errors import TargetError
from edgeport.registry import Registry
from edgeport.runtime.device_runner import RESULT_MARKER

RUNNER_FILE = Path(__file__).with_name("device_runner.py")


class TargetKind(str, enum.Enum):
    LOCAL = "local"
    SSH = "ssh"
    ADB = "adb"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class TargetOptions:
    """Per-run settings every target understands. `timeout_s` bounds each remote step (the run included)."""

    timeout_s: float = 600.0
    python: str | None = None  # interpreter on the device; None: discover python3 / python
    ssh_config: str | None = None  # `ssh -F`; None: the user's ~/.ssh/config
    remote_tmp: str | None = None  # parent of the temp folder; None: $TMPDIR or /tmp (ssh), /data/local/tmp (adb)
    benchmark_binary: str | None = None  # adb: TFLite benchmark_model (host path) instead of the Python runner


class Target(Protocol):
    kind: TargetKind
    url: str

    def run_job(self, job_dir: Path, *, options: TargetOptions) -> dict: ...


TARGETS: Registry[type] = Registry("target kind")


class TargetSpecError(TargetError):
    """A --target string that is not a target URL: bad input (exit 2), not a device failure (exit 3)."""

    exit_code = 2


def parse_target(url: str) -> "Target":
    """'local' | 'ssh://user@host[:port]' | 'adb://SERIAL' -> a Target. Raises TargetSpecError (exit 2) otherwise."""
    url = str(url).strip()
    if url == "local":
        return TARGETS.get("local")(url=url)
    parts = urlsplit(url)
    if parts.scheme == "ssh":
        if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment or parts.password:
            raise TargetSpecError(f"target {url!r}: expected ssh://user@host[:port] (host required, no path or password)")
        try:
            port = parts.port
        except ValueError:
            raise TargetSpecError(f"target {url!r}: the port must be a number 1-65535 (ssh://user@host[:port])") from None
        return TARGETS.get("ssh")(url=url, user=parts.username, host=parts.hostname, port=port)
    if parts.scheme == "adb":
        serial = url[len("adb://"):]
        if not serial or "/" in serial or any(c.isspace() for c in serial):
            raise TargetSpecError(f"target {url!r}: expected adb://SERIAL (as `adb devices` lists it)")
        return TARGETS.get("adb")(url=url, serial=serial)
    raise TargetSpecError(f"target {url!r}: use local, ssh://user@host[:port] or adb://SERIAL")


def parse_result(target: str, stdout: str, stderr: str, returncode: int) -> dict:
    """The runner's JSON (the last RESULT_MARKER line); a runner error becomes TargetError."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_MARKER)]
    if not lines:
        tail = " | ".join((stderr or stdout).strip().splitlines()[-3:])
        hint = ("it was killed: out of memory? check `dmesg` on the device or bench fewer artifacts at once"
                if returncode in (137, -9) else "check the Python, numpy and runtimes on the device")
        raise TargetError(f"{target}: the runner printed no result (exit {returncode}): {tail}", hint=hint)
    try:
        data = json.loads(lines[-1][len(RESULT_MARKER):])
    except ValueError:
        raise TargetError(f"{target}: the runner's result line is not valid JSON (output cut off?)",
                          hint="run again; check the device's free memory and disk") from None
    if "error" in data:
        raise TargetError(f"{target}: {data['error']}")
    return data


def _kill_tree(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_local(cmd: list[str], *, timeout: float, cwd: str | None = None, stdin=subprocess.DEVNULL):
    """Run cmd in its own process group; on timeout kill the group. Returns (rc, out, err) or None on timeout."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        return None
    return proc.returncode, out, err


def cleanup_script(remote_dir: str) -> str:
    """Kill the runner's process group (runner.pid: written by the launching shell before `exec`, so it exists as
    soon as the runner does; the runner makes it its process-group id) and remove the temp folder."""
    d = shlex.quote(remote_dir)
    return (f"if [ -f {d}/runner.pid ]; then p=$(cat {d}/runner.pid); kill -9 -$p 2>/dev/null; "
            f"kill -9 $p 2>/dev/null; fi; rm -rf {d}; [ ! -e {d} ] && echo CLEAN")


def launch(remote_dir: str, command: str) -> str:
    """Shell text that records the runner's pid in REMOTE/runner.pid and execs `command` (same pid) there."""
    return f"cd {shlex.quote(remote_dir)} && echo $$ > runner.pid && exec {command}"


FREE_KB = ("f=$(df -Pk \"$d\" 2>/dev/null | awk 'NR==2{print $4}'); "
           "[ -n \"$f\" ] || f=$(stat -f -c '%a %S' \"$d\" 2>/dev/null | awk '{print int($1*$2/1024)}'); "
           "echo \"FREE=$f\"")
"""Shell text printing FREE=<KiB available> for the folder in $d (df; busybox df without a mount table: statfs)."""


def check_free(url: str, free_kb: str | None, need_kb: int, remote: str, hint: str) -> None:
    """TargetError when the device folder has less than need_kb + 64 KiB available (unknown: no check)."""
    try:
        free = int(free_kb) if free_kb not in (None, "") else None
    except ValueError:
        free = None
    if free is not None and free < need_kb + 64:
        raise TargetError(f"{url}: the device disk is full: {free} KiB free in {remote}, {need_kb} KiB needed",
                          hint=hint)


# ---- local --------------------------------------------------------------------------------------------------------

@TARGETS.decorator("local")
@dataclass
class LocalTarget:
    """This machine: the runner in a child process of this Python (its own process group, killed on timeout)."""

    url: str = "local"
    kind: TargetKind = TargetKind.LOCAL

    def device_name(self, machine: dict) -> str:
        return machine.get("hostname") or "local"

    def run_job(self, job_dir: Path, *, options: TargetOptions) -> dict:
        shutil.copy(RUNNER_FILE, job_dir / RUNNER_FILE.name)
        python = options.python or sys.executable
        res = run_local([python, RUNNER_FILE.name, "job.json", "--deadline", str(options.timeout_s + 30)],
                        cwd=str(job_dir), timeout=options.timeout_s)
        if res is None:
            raise TargetError(f"local: the benchmark did not finish within {options.timeout_s:g} s and was killed",
                              hint="raise --timeout or lower --runs")
        return parse_result("local", res[1], res[2], res[0])


# ---- ssh ----------------------------------------------------------------------------------------------------------

SSH_ERRORS = (  # (stderr pattern, what it means, what to do)
    ("Permission denied", "refused the key", "check `ssh {dest}` works without a password (ssh-copy-id, IdentityFile)"),
    ("Host key verification failed", "host key unknown or changed",
     "run `ssh {dest}` once and verify the host key; edgeport never disables host-key checking"),
    ("No RSA host key is known", "host key unknown", "run `ssh {dest}` once and verify the host key"),
    ("Connection refused", "unreachable (connection refused)", "is sshd running and the port right?"),
    ("Could not resolve hostname", "unreachable (unknown host name)", "check the host name or ~/.ssh/config"),
    ("timed out", "unreachable (timed out)", "check the address, network and that the device is on"),
    ("No route to host", "unreachable (no route)", "check the address and network"),
    ("Network is unreachable", "unreachable (network)", "check the network"),
    ("Connection closed", "closed the connection", "check sshd logs on the device"),
)


@TARGETS.decorator("ssh")
@dataclass
class SshTarget:
    """A Linux device over the system `ssh`/`scp` binaries, so ~/.ssh/config, keys, ProxyJump and known_hosts apply.

    Always BatchMode (no password prompts) and a connect timeout; host-key checking stays as the user configured it.
    """

    url: str
    user: str | None
    host: str
    port: int | None = None
    kind: TargetKind = TargetKind.SSH

    @property
    def dest(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def device_name(self, machine: dict) -> str:
        return f"{self.host} ({machine.get('hostname', '?')})"

    def _opts(self, options: TargetOptions, *, port_flag: str) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(min(options.timeout_s, 20))}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if options.ssh_config:
            opts = ["-F", options.ssh_config] + opts
        if self.port:
            opts += [port_flag, str(self.port)]
        return opts

    def _ssh(self, script: str, options: TargetOptions, *, timeout: float | None = None, step: str):
        if shutil.which("ssh") is None:
            raise TargetError(f"{self.url}: no `ssh` client on this machine", hint="apt-get install openssh-client")
        cmd = ["ssh", *self._opts(options, port_flag="-p"), self.dest, script]
        res = run_local(cmd, timeout=timeout or options.timeout_s)
        if res is None:
            return None
        self._check_ssh(res, step)
        return res

    def _check_ssh(self, res, step: str) -> None:
        rc, out, err = res
        if rc != 255:
            return
        for pattern, meaning, todo in SSH_ERRORS:
            if pattern in err:
                raise TargetError(f"{self.url}: {meaning} while {step}", hint=todo.format(dest=self.dest))
        raise TargetError(f"{self.url}: ssh failed while {step}: {' | '.join(err.strip().splitlines()[-2:])}")

    def run_job(self, job_dir: Path, *, options: TargetOptions) -> dict:
        shutil.copy(RUNNER_FILE, job_dir / RUNNER_FILE.name)
        need_kb = sum(p.stat().st_size for p in job_dir.iterdir()) // 1024 + 1
        parent = options.remote_tmp or "${TMPDIR:-/tmp}"
        parent_q = parent if parent.startswith("${") else shlex.quote(parent)
        pythons = [options.python] if options.python else ["python3", "python"]
        probe = (f"d=$(mktemp -d {parent_q}/edgeport-XXXXXX) || exit 41; echo \"DIR=$d\"; "
                 f"for p in {' '.join(shlex.quote(p) for p in pythons)}; do "
                 f"if command -v \"$p\" >/dev/null 2>&1; then echo \"PY=$(command -v \"$p\")\"; break; fi; done; "
                 + FREE_KB)
        res = self._ssh(probe, options, step="creating a temp folder")
        if res is None:
            raise TargetError(f"{self.url}: no answer within {options.timeout_s:g} s", hint="check the device")
        info = dict(line.split("=", 1) for line in res[1].splitlines() if "=" in line)
        if "DIR" not in info:
            raise TargetError(f"{self.url}: cannot create a temp folder in {parent}: {res[2].strip()}",
                              hint="pass another --remote-dir")
        remote = info["DIR"]
        try:
            if "PY" not in info:
                raise TargetError(f"{self.url}: no Python on the device ({', '.join(pythons)}: not found)",
                                  hint="install python3 with numpy and ai-edge-litert or onnxruntime there "
                                       "(apt install python3-numpy; pip install ai-edge-litert), or pass "
                                       "--device-python PATH")
            check_free(self.url, info.get("FREE"), need_kb, remote, "free space on the device or pass --remote-dir")
            self._copy(job_dir, remote, options)
            return self._run(remote, info["PY"], options)
        finally:
            self.cleanup(remote, options)

    def cleanup(self, remote: str, options: TargetOptions) -> None:
        """Best effort (never hides the error that got us here): kill the runner's group, remove the folder."""
        try:
            res = self._ssh(cleanup_script(remote), options, timeout=60, step="cleaning up")
        except TargetError as exc:
            print(f"edgeport: warning: {exc}; {remote} may be left on the device", file=sys.stderr)
            return
        if res is None or "CLEAN" not in res[1]:
            print(f"edgeport: warning: {self.url}: could not remove {remote} on the device", file=sys.stderr)

    def _copy(self, job_dir: Path, remote: str, options: TargetOptions) -> None:
        if shutil.which("scp") is None:
            raise TargetError(f"{self.url}: no `scp` client on this machine", hint="apt-get install openssh-client")
        files = sorted(str(p) for p in job_dir.iterdir())
        cmd = ["scp", "-q", *self._opts(options, port_flag="-P"), *files, f"{self.dest}:{remote}/"]
        res = run_local(cmd, timeout=options.timeout_s)
        if res is None:
            raise TargetError(f"{self.url}: copying the artifacts did not finish within {options.timeout_s:g} s")
        if res[0] != 0:
            err = res[2]
            if "No space" in err or "Failure" in err or "quota" in err.lower():
                raise TargetError(f"{self.url}: the device disk is full (copy to {remote} failed: {err.strip()})",
                                  hint="free space on the device or pass --remote-dir")
            self._check_ssh((255, res[1], err), "copying the artifacts")
            raise TargetError(f"{self.url}: copying the artifacts failed: {err.strip()}")

    def _run(self, remote: str, python: str, options: TargetOptions) -> dict:
        py = shlex.quote(python)
        discover = self._ssh(launch(remote, f"{py} device_runner.py --discover"), options,
                             step="discovering interpreters")
        if discover is None:
            raise TargetError(f"{self.url}: interpreter discovery hung for {options.timeout_s:g} s; killed")
        found = parse_result(self.url, discover[1], discover[2], discover[0])["interpreters"]
        check_interpreters(self.url, found, remote, python)
        res = self._ssh(launch(remote, f"{py} device_runner.py job.json --deadline {options.timeout_s + 30:g}"),
                        options, step="running the benchmark")
        if res is None:
            raise TargetError(f"{self.url}: the benchmark did not finish within {options.timeout_s:g} s; the remote "
                              f"runner was killed and {remote} removed", hint="raise --timeout or lower --runs")
        data = parse_result(self.url, res[1], res[2], res[0])
        data["interpreters"] = found
        return data


def check_interpreters(url: str, found: dict, remote: str, python: str) -> None:
    """TargetError when the device's Python has no interpreter edgeport can use."""
    kinds = {"onnxruntime": bool(found.get("onnxruntime")),
             "tflite": any(found.get(m) for m in ("ai_edge_litert", "tflite_runtime", "tensorflow"))}
    if not any(kinds.values()):
        raise TargetError(f"{url}: {python} on the device has neither ONNX Runtime nor a TFLite interpreter",
                          hint="pip install ai-edge-litert (or tflite-runtime with numpy<2) or onnxruntime there")


# ---- adb ----------------------------------------------------------------------------------------------------------

@TARGETS.decorator("adb")
@dataclass
class AdbTarget:
    """An Android device through the `adb` client (ADB_SERVER_SOCKET / ANDROID_SERIAL apply as usual).

    Files go to /data/local/tmp/edgeport-XXXX. The Python runner is used where the device has Python (Termux:
    pass --device-python); with --benchmark-binary, TFLite's benchmark_model is pushed and its output parsed.
    """

    url: str
    serial: str
    kind: TargetKind = TargetKind.ADB
    TERMUX_PYTHON = "/data/data/com.termux/files/usr/bin/python3"

    def device_name(self, machine: dict) -> str:
        return machine.get("device_model") or self.serial

    def adb(self, args: list[str], options: TargetOptions, *, timeout: float | None = None, step: str):
        exe = shutil.which("adb")
        if exe is None:
            raise TargetError(f"{self.url}: no `adb` client on this machine",
                              hint="apt-get install adb, or install Android platform-tools")
        res = run_local([exe, "-s", self.serial, *args], timeout=timeout or options.timeout_s)
        if res is None:
            return None
        rc, out, err = res
        text = out + err
        if "not found" in err and "device" in err or "no devices" in err or "offline" in err:
            raise TargetError(f"{self.url}: device {self.serial} is not connected while {step} ({err.strip()})",
                              hint="check `adb devices`; enable USB debugging and accept the host key")
        if "cannot connect to daemon" in text or "failed to start daemon" in text:
            raise TargetError(f"{self.url}: no adb server while {step}", hint="run `adb start-server`")
        if "unauthorized" in text:
            raise TargetError(f"{self.url}: the device refused this host's adb key",
                              hint="accept the RSA key prompt on the phone")
        return res

    def shell(self, script: str, options: TargetOptions, *, timeout: float | None = None, step: str):
        return self.adb(["shell", script], options, timeout=timeout, step=step)

    def run_job(self, job_dir: Path, *, options: TargetOptions) -> dict:
        parent = options.remote_tmp or "/data/local/tmp"
        remote = f"{parent.rstrip('/')}/edgeport-{secrets.token_hex(4)}"
        if options.benchmark_binary and not Path(options.benchmark_binary).is_file():
            raise TargetError(f"{self.url}: --benchmark-binary {options.benchmark_binary} does not exist on this "
                              f"machine", hint="build or download TFLite's benchmark_model for the device's ABI "
                                               "(android_aarch64) and pass its path")
        res = self.shell(f"d={shlex.quote(remote)}; mkdir -p \"$d\" && echo OK && {FREE_KB}", options,
                         step="creating a temp folder")
        if res is None:
            raise TargetError(f"{self.url}: no answer within {options.timeout_s:g} s while creating {remote}",
                              hint="check `adb devices` and the device")
        if "OK" not in res[1]:
            raise TargetError(f"{self.url}: cannot create {remote}: {(res[1] + res[2]).strip()}",
                              hint="pass another --remote-dir")
        try:
            info = dict(line.split("=", 1) for line in res[1].splitlines() if "=" in line)
            if options.benchmark_binary:
                from edgeport.runtime.benchmark_model import run_benchmark_model

                files = [Path(options.benchmark_binary)] + [p for p in job_dir.iterdir() if p.suffix == ".tflite"]
                check_free(self.url, info.get("FREE"), sum(p.stat().st_size for p in files) // 1024 + 1, remote,
                           "free space on the device (/data/local/tmp) or pass --remote-dir")
                return run_benchmark_model(self, job_dir, remote, options)
            shutil.copy(RUNNER_FILE, job_dir / RUNNER_FILE.name)
            need_kb = sum(p.stat().st_size for p in job_dir.iterdir()) // 1024 + 1
            check_free(self.url, info.get("FREE"), need_kb, remote,
                       "free space on the device (/data/local/tmp) or pass --remote-dir")
            self.push(job_dir, remote, options)
            pin = json.loads((job_dir / "job.json").read_text()).get("pin")
            return self._run_python(remote, options, pin=pin)
        finally:
            self.cleanup(remote, options)

    def cleanup(self, remote: str, options: TargetOptions) -> None:
        """Best effort (never hides the error that got us here): kill the runner's group, remove the folder."""
        try:
            res = self.shell(cleanup_script(remote), options, timeout=60, step="cleaning up")
        except TargetError as exc:
            print(f"edgeport: warning: {exc}; {remote} may be left on the device", file=sys.stderr)
            return
        if res is None or "CLEAN" not in res[1]:
            print(f"edgeport: warning: {self.url}: could not remove {remote} on the device", file=sys.stderr)

    def push(self, job_dir: Path, remote: str, options: TargetOptions, files: list[Path] | None = None) -> None:
        for path in files or sorted(job_dir.iterdir()):
            res = self.adb(["push", str(path), f"{remote}/{path.name}"], options, step="pushing the artifacts")
            if res is None:
                raise TargetError(f"{self.url}: pushing {path.name} did not finish within {options.timeout_s:g} s")
            if res[0] != 0:
                err = (res[1] + res[2]).strip()
                if "No space" in err or "space left" in err:
                    raise TargetError(f"{self.url}: the device disk is full (pushing {path.name}: {err})",
                                      hint="free space in /data/local/tmp")
                raise TargetError(f"{self.url}: pushing {path.name} failed: {err}")

    def pin_mask(self, pin: str | None, options: TargetOptions) -> str | None:
        """--pin as a taskset hex mask ("big": the cores with the highest cpuinfo_max_freq)."""
        if not pin:
            return None
        if pin == "big":
            res = self.shell("for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq; do "
                             "echo \"$f $(cat $f)\"; done", options, step="reading CPU frequencies")
            freqs = {int(m.group(1)): int(m.group(2)) for m in re.finditer(r"cpu(\d+)/cpufreq/\S+ (\d+)", res[1])}
            if not freqs:
                raise TargetError(f"{self.url}: --pin big: no cpufreq information; give CPU ids, e.g. --pin 4-7")
            top = max(freqs.values())
            cpus = [c for c, f in freqs.items() if f == top]
        else:
            from edgeport.runtime.device_runner import RunnerError, parse_pin

            try:
                cpus = parse_pin(pin)
            except RunnerError as exc:
                raise TargetError(f"{self.url}: {exc}") from None
        return format(sum(1 << c for c in cpus), "x")

    def _find_python(self, options: TargetOptions) -> str:
        candidates = [options.python] if options.python else ["python3", "python", self.TERMUX_PYTHON]
        script = "; ".join(f"if command -v {shlex.quote(p)} >/dev/null 2>&1; then command -v {shlex.quote(p)}; exit 0; fi"
                           for p in candidates) + "; exit 1"
        res = self.shell(script, options, step="looking for Python")
        if res is None or res[0] != 0 or not res[1].strip():
            raise TargetError(f"{self.url}: no Python on the device ({', '.join(candidates)}: not found)",
                              hint="install Termux python + numpy + ai-edge-litert and pass --device-python, or "
                                   "use TFLite's benchmark_model with --benchmark-binary")
        return res[1].strip().splitlines()[-1]

    def _run_python(self, remote: str, options: TargetOptions, *, pin: str | None) -> dict:
        python = self._find_python(options)
        py = shlex.quote(python)
        discover = self.shell(launch(remote, f"{py} device_runner.py --discover"), options,
                              step="discovering interpreters")
        if discover is None:
            raise TargetError(f"{self.url}: interpreter discovery hung for {options.timeout_s:g} s; killed")
        found = parse_result(self.url, discover[1], discover[2], discover[0])["interpreters"]
        check_interpreters(self.url, found, remote, python)
        mask = self.pin_mask(pin, options)
        prefix = f"taskset {mask} " if mask else ""
        res = self.shell(launch(remote, f"{prefix}{py} device_runner.py job.json --deadline {options.timeout_s + 30:g}"),
                         options, step="running the benchmark")
        if res is None:
            raise TargetError(f"{self.url}: the benchmark did not finish within {options.timeout_s:g} s; the remote "
                              f"runner was killed and {remote} removed", hint="raise --timeout or lower --runs")
        data = parse_result(self.url, res[1], res[2], res[0])
        model = self.shell("getprop ro.product.model", options, timeout=30, step="reading the model name")
        if model and model[0] == 0 and model[1].strip():
            data["machine"]["device_model"] = model[1].strip()
        data["interpreters"] = found
        return data

