"""Where a benchmark runs: `local`, `ssh://user@host[:port]` (Raspberry Pi, any Linux board), `adb://SERIAL` (Android).

Every target does the same thing with a *job folder* (job.json, the artifacts, parity.npz and device_runner.py:
the runner assembled from edgeport.runtime.device when the job is shipped, runner_file.py). `local` runs it in a
child process here. A remote target (RemoteTarget, one flow for every transport of transports.py) stages it in a
fresh temp folder on the device, runs `python3 device_runner.py job.json` there with a deadline, reads the JSON
result it prints, and removes the folder and any process it left (`kill -9 -PGID` from runner.pid). Failures raise
TargetError naming the target and what to do.

The kinds of target are the registry TARGETS: each registered scheme says how its URL reads and how it is parsed,
and `parse_target` asks them in turn.
"""
from __future__ import annotations

import enum
import json
import re
import shlex
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol
from urllib.parse import urlsplit

from edgeport.errors import ArtifactError, TargetError
from edgeport.registry import Registry
from edgeport.runtime.benchmark_model import run_benchmark_model
from edgeport.runtime.device.machine import parse_pin
from edgeport.runtime.device.protocol import RESULT_MARKER, STAGE_MARKER, RunnerError
from edgeport.runtime.runner_file import RUNNER_NAME, assemble_runner
from edgeport.runtime.transports import AdbTransport, Result, SshTransport, TargetOptions, Transport, run_local

class TargetKind(str, enum.Enum):
    LOCAL = "local"
    SSH = "ssh"
    ADB = "adb"

    def __str__(self) -> str:
        return self.value


class Target(Protocol):
    kind: TargetKind
    url: str

    def device_name(self, machine: dict) -> str: ...

    def run_job(self, job_dir: Path, *, options: TargetOptions) -> dict: ...


class TargetSpecError(TargetError):
    """A --target string that is not a target URL: bad input (exit 2), not a device failure (exit 3)."""

    exit_code = 2


# ---- what the runner prints, and the shell text run on a device ----------------------------------------------------

def crash_signal(returncode: int) -> str | None:
    """The name of the signal that ended a process (-N from Python, 128+N from a shell), or None."""
    n = -returncode if returncode < 0 else returncode - 128 if 128 < returncode < 160 else None
    if n is None:
        return None
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


def blame_crash(target: str, stderr: str, returncode: int) -> ArtifactError | None:
    """The runner died of a signal while loading or first running one file (its last STAGE_MARKER line names it):
    an ArtifactError naming that file, not a device failure. None when the crash is not one file's."""
    sig = crash_signal(returncode)
    stages = [ln[len(STAGE_MARKER):] for ln in (stderr or "").splitlines() if ln.startswith(STAGE_MARKER)]
    if sig is None or not stages or sig == "SIGKILL":  # SIGKILL: out of memory or our own deadline
        return None
    try:
        last = json.loads(stages[-1])
    except ValueError:
        return None
    if not last.get("file"):
        return None
    where = "" if target == "local" else f" on {target} (or the device's runtime cannot read it: compare with " \
                                         f"`edgeport bench DIR --target local`)"
    return ArtifactError(f"{last['file']} crashed the {last.get('engine', 'runtime')} interpreter while "
                         f"{last.get('step', 'loading')} it ({sig}){where}: the file is broken (truncated or "
                         f"corrupt?); export it again")


def parse_result(target: str, stdout: str, stderr: str, returncode: int) -> dict:
    """The runner's JSON (the last RESULT_MARKER line); a runner error becomes TargetError, a broken artifact (one
    the runner refused, or one it crashed on) ArtifactError naming the file."""
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_MARKER)]
    if not lines and (blamed := blame_crash(target, stderr, returncode)) is not None:
        raise blamed
    if not lines:
        text = "\n".join(ln for ln in (stderr or stdout).splitlines() if not ln.startswith(STAGE_MARKER))
        tail = " | ".join(text.strip().splitlines()[-3:])
        hint = ("it was killed: out of memory? check `dmesg` on the device or bench fewer artifacts at once"
                if returncode in (137, -9) else "check the Python, numpy and runtimes on the device")
        raise TargetError(f"{target}: the runner printed no result (exit {returncode}): {tail}", hint=hint)
    try:
        data = json.loads(lines[-1][len(RESULT_MARKER):])
    except ValueError:
        raise TargetError(f"{target}: the runner's result line is not valid JSON (output cut off?)",
                          hint="run again; check the device's free memory and disk") from None
    if "broken_artifact" in data:
        raise ArtifactError(data["error"] if target == "local" else f"{target}: {data['error']}")
    if "error" in data:
        raise TargetError(f"{target}: {data['error']}")
    return data


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


def probe_script(mkdir: str, pythons: list[str]) -> str:
    """Shell text: run `mkdir` (sets $d), then print DIR=<folder>, PY=<the first of `pythons` found> and FREE=."""
    names = " ".join(shlex.quote(p) for p in pythons)
    return (f"{mkdir} || exit 41; echo \"DIR=$d\"; "
            f"for p in {names}; do "
            f"if command -v \"$p\" >/dev/null 2>&1; then echo \"PY=$(command -v \"$p\")\"; break; fi; done; "
            + FREE_KB)


def check_free(url: str, free_kb: str | None, need_kb: int, remote: str, hint: str) -> None:
    """TargetError when the device folder has less than need_kb + 64 KiB available (unknown: no check)."""
    try:
        free = int(free_kb) if free_kb not in (None, "") else None
    except ValueError:
        free = None
    if free is not None and free < need_kb + 64:
        raise TargetError(f"{url}: the device disk is full: {free} KiB free in {remote}, {need_kb} KiB needed",
                          hint=hint)


def check_interpreters(url: str, found: dict, remote: str, python: str) -> None:
    """TargetError when the device's Python has no interpreter edgeport can use."""
    kinds = {"onnxruntime": bool(found.get("onnxruntime")),
             "tflite": any(found.get(m) for m in ("ai_edge_litert", "tflite_runtime", "tensorflow"))}
    if not any(kinds.values()):
        raise TargetError(f"{url}: {python} on the device has neither ONNX Runtime nor a TFLite interpreter",
                          hint="pip install ai-edge-litert (or tflite-runtime with numpy<2) or onnxruntime there")


def _kib(files) -> int:
    return sum(p.stat().st_size for p in files) // 1024 + 1


# ---- local --------------------------------------------------------------------------------------------------------

@dataclass
class LocalTarget:
    """This machine: the runner in a child process of this Python (its own process group, killed on timeout)."""

    url: str = "local"
    kind: TargetKind = TargetKind.LOCAL

    def device_name(self, machine: dict) -> str:
        return machine.get("hostname") or "local"

    def run_job(self, job_dir: Path, *, options: TargetOptions) -> dict:
        runner = assemble_runner().write(job_dir)  # the file a device runs, run the same way here
        python = options.python or sys.executable
        res = run_local([python, runner.name, "job.json", "--deadline", str(options.timeout_s + 30)],
                        cwd=str(job_dir), timeout=options.timeout_s)
        if res is None:
            raise TargetError(f"local: the benchmark did not finish within {options.timeout_s:g} s and was killed",
                              hint="raise --timeout or lower --runs")
        return parse_result("local", res[1], res[2], res[0])


# ---- a device reached through a transport ---------------------------------------------------------------------------

@dataclass
class RemoteTarget:
    """A device reached through `transport`: stage the job folder in a temp folder there, run, read the result,
    clean up. Every remote step is bounded by `options.timeout_s`; the temp folder and the runner's process group
    are removed whatever happens after the folder exists."""

    url: str
    kind: TargetKind
    transport: Transport

    def device_name(self, machine: dict) -> str:
        return self.transport.device_name(machine)

    def shell(self, script: str, options: TargetOptions, *, timeout: float | None = None,
              step: str) -> Result | None:
        return self.transport.run(script, options, timeout=timeout, step=step)

    def push(self, job_dir: Path, remote: str, options: TargetOptions, files: list[Path] | None = None) -> None:
        self.transport.push(files or sorted(job_dir.iterdir()), remote, options)

    def run_job(self, job_dir: Path, *, options: TargetOptions) -> dict:
        binary = self._benchmark_binary(options)
        pythons = [options.python] if options.python else ["python3", "python", *self.transport.extra_pythons]
        remote, info = self._make_dir(options, pythons)
        try:
            if binary is not None:
                files = [binary] + [p for p in job_dir.iterdir() if p.suffix == ".tflite"]
                check_free(self.url, info.get("FREE"), _kib(files), remote, self.transport.disk_hint)
                return run_benchmark_model(self, job_dir, remote, options)
            assemble_runner().write(job_dir)
            if "PY" not in info:
                raise TargetError(f"{self.url}: no Python on the device ({', '.join(pythons)}: not found)",
                                  hint=self.transport.no_python_hint)
            check_free(self.url, info.get("FREE"), _kib(job_dir.iterdir()), remote, self.transport.disk_hint)
            self.push(job_dir, remote, options)
            pin = json.loads((job_dir / "job.json").read_text()).get("pin")
            return self._run_runner(remote, info["PY"], options, pin=pin)
        finally:
            self.cleanup(remote, options)

    def _benchmark_binary(self, options: TargetOptions) -> Path | None:
        """--benchmark-binary, checked before the device is touched (None: the Python runner)."""
        if not (options.benchmark_binary and self.transport.runs_benchmark_binary):
            return None
        binary = Path(options.benchmark_binary)
        if not binary.is_file():
            raise TargetError(f"{self.url}: --benchmark-binary {options.benchmark_binary} does not exist on this "
                              f"machine", hint="build or download TFLite's benchmark_model for the device's ABI "
                                               "(android_aarch64) and pass its path")
        return binary

    def _make_dir(self, options: TargetOptions, pythons: list[str]) -> tuple[str, dict]:
        """A fresh temp folder on the device: (its path, the probe's DIR/PY/FREE answers)."""
        mkdir, what = self.transport.mkdir_script(options.remote_tmp)
        res = self.shell(probe_script(mkdir, pythons), options, step="creating a temp folder")
        if res is None:
            raise TargetError(f"{self.url}: no answer within {options.timeout_s:g} s while creating {what}",
                              hint=self.transport.no_answer_hint)
        info = dict(line.split("=", 1) for line in res[1].splitlines() if "=" in line)
        if "DIR" not in info:
            raise TargetError(f"{self.url}: cannot create {what}: {(res[1] + res[2]).strip()}",
                              hint="pass another --remote-dir")
        return info["DIR"], info

    def cleanup(self, remote: str, options: TargetOptions) -> None:
        """Best effort (never hides the error that got us here): kill the runner's group, remove the folder."""
        try:
            res = self.shell(cleanup_script(remote), options, timeout=60, step="cleaning up")
        except TargetError as exc:
            print(f"edgeport: warning: {exc}; {remote} may be left on the device", file=sys.stderr)
            return
        if res is None or "CLEAN" not in res[1]:
            print(f"edgeport: warning: {self.url}: could not remove {remote} on the device", file=sys.stderr)

    def pin_mask(self, pin: str | None, options: TargetOptions) -> str | None:
        """--pin as a taskset hex mask ("big": the cores with the highest cpuinfo_max_freq)."""
        if not pin:
            return None
        if pin == "big":
            res = self.shell("for f in /sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq; do "
                             "echo \"$f $(cat $f)\"; done", options, step="reading CPU frequencies")
            freqs = {int(m.group(1)): int(m.group(2))
                     for m in re.finditer(r"cpu(\d+)/cpufreq/\S+ (\d+)", res[1] if res else "")}
            if not freqs:
                raise TargetError(f"{self.url}: --pin big: no cpufreq information; give CPU ids, e.g. --pin 4-7")
            top = max(freqs.values())
            cpus = [c for c, f in freqs.items() if f == top]
        else:
            try:
                cpus = parse_pin(pin)
            except RunnerError as exc:
                raise TargetError(f"{self.url}: {exc}") from None
        return format(sum(1 << c for c in cpus), "x")

    def _run_runner(self, remote: str, python: str, options: TargetOptions, *, pin: str | None) -> dict:
        """Discover the device's interpreters, then run the job (under taskset where the transport pins)."""
        py = shlex.quote(python)
        discover = self.shell(launch(remote, f"{py} {RUNNER_NAME} --discover"), options,
                              step="discovering interpreters")
        if discover is None:
            raise TargetError(f"{self.url}: interpreter discovery hung for {options.timeout_s:g} s; killed")
        found = parse_result(self.url, discover[1], discover[2], discover[0])["interpreters"]
        check_interpreters(self.url, found, remote, python)
        mask = self.pin_mask(pin, options) if self.transport.taskset_pin else None
        prefix = f"taskset {mask} " if mask else ""
        command = f"{prefix}{py} {RUNNER_NAME} job.json --deadline {options.timeout_s + 30:g}"
        res = self.shell(launch(remote, command), options, step="running the benchmark")
        if res is None:
            raise TargetError(f"{self.url}: the benchmark did not finish within {options.timeout_s:g} s; the remote "
                              f"runner was killed and {remote} removed", hint="raise --timeout or lower --runs")
        data = parse_result(self.url, res[1], res[2], res[0])
        model = self.transport.device_model(options)
        if model:
            data["machine"]["device_model"] = model
        data["interpreters"] = found
        return data


# ---- the registry of target schemes --------------------------------------------------------------------------------

@dataclass(frozen=True)
class TargetScheme:
    """A kind of target: how its URL reads (`usage`, shown in errors) and how such a URL becomes a Target.

    `url_scheme` is the `scheme://` a URL of this kind starts with; None: the URL is the bare word `kind` (local).
    `parse` gets the whole URL and raises TargetSpecError when it is malformed.
    """

    kind: TargetKind
    usage: str
    parse: Callable[[str], Target]
    url_scheme: str | None = None

    def accepts(self, url: str) -> bool:
        if self.url_scheme is None:
            return url == self.kind.value
        return url_scheme(url) == self.url_scheme


def url_scheme(url: str) -> str | None:
    """A URL's scheme, lowercase, read as urlsplit reads it (without parsing the rest), or None."""
    m = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", url)
    return m.group(1).lower() if m else None


SSH_USAGE = "ssh://user@host[:port]"
ADB_USAGE = "adb://SERIAL"


def parse_ssh(url: str) -> RemoteTarget:
    """ssh://user@host[:port]: a host, no path, query or password; user and host must not look like options."""
    malformed = f"target {url!r}: expected {SSH_USAGE} (host required, no path or password)"
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed [IPv6 bracket
        raise TargetSpecError(malformed) from None
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment or parts.password:
        raise TargetSpecError(malformed)
    try:
        port = parts.port
    except ValueError:
        raise TargetSpecError(f"target {url!r}: the port must be a number 1-65535 ({SSH_USAGE})") from None
    if (parts.username or "").startswith("-") or parts.hostname.startswith("-"):
        raise TargetSpecError(f"target {url!r}: the user and host must not start with '-' ({SSH_USAGE})")
    transport = SshTransport(url=url, user=parts.username, host=parts.hostname, port=port)
    return RemoteTarget(url=url, kind=TargetKind.SSH, transport=transport)


def parse_adb(url: str) -> RemoteTarget:
    """adb://SERIAL, as `adb devices` lists it (no '/', no whitespace)."""
    serial = url[len("adb://"):]
    if not serial or "/" in serial or any(c.isspace() for c in serial):
        raise TargetSpecError(f"target {url!r}: expected {ADB_USAGE} (as `adb devices` lists it)")
    return RemoteTarget(url=url, kind=TargetKind.ADB, transport=AdbTransport(url=url, serial=serial))


TARGETS: Registry[TargetScheme] = Registry("target kind")
TARGETS.register("local", TargetScheme(kind=TargetKind.LOCAL, usage="local", parse=lambda url: LocalTarget(url=url)))
TARGETS.register("ssh", TargetScheme(kind=TargetKind.SSH, usage=SSH_USAGE, parse=parse_ssh, url_scheme="ssh"))
TARGETS.register("adb", TargetScheme(kind=TargetKind.ADB, usage=ADB_USAGE, parse=parse_adb, url_scheme="adb"))


def parse_target(url: str) -> Target:
    """A target URL (one of the registered schemes: 'local' | 'ssh://user@host[:port]' | 'adb://SERIAL') -> a
    Target. Raises TargetSpecError (exit 2) otherwise."""
    url = str(url).strip()
    for _, scheme in TARGETS.items():
        if scheme.accepts(url):
            return scheme.parse(url)
    usages = [scheme.usage for _, scheme in TARGETS.items()]
    raise TargetSpecError(f"target {url!r}: use {', '.join(usages[:-1])} or {usages[-1]}")


__all__ = ["TARGETS", "TargetKind", "TargetOptions", "TargetScheme", "TargetSpecError", "Target", "LocalTarget",
           "RemoteTarget", "parse_target", "parse_result"]
