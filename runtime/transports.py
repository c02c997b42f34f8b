"""How edgeport reaches a device: a Transport runs shell text there and copies files there.

Both transports drive the system clients, so the user's own configuration applies:

- SshTransport: `ssh` / `scp` (~/.ssh/config, keys, ProxyJump, known_hosts); always BatchMode (no password prompt)
  and a connect timeout; host-key checking stays as the user configured it; `--` ends the options before the host.
- AdbTransport: `adb -s SERIAL` (ADB_SERVER_SOCKET / ANDROID_SERIAL apply as usual).

A transport knows its own failures (a refused key, an unplugged phone) and raises TargetError naming the target
and what to do; a step that does not finish within its timeout returns None (its process group killed) and the
caller says which step hung. The remote-target flow that uses a transport is `targets.RemoteTarget`.
"""
from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from edgeport.errors import TargetError

Result = tuple[int, str, str]
"""(exit code, stdout, stderr) of one finished command."""


@dataclass(frozen=True)
class TargetOptions:
    """Per-run settings every target understands. `timeout_s` bounds each remote step (the run included)."""

    timeout_s: float = 600.0
    python: str | None = None  # interpreter on the device; None: discover python3 / python
    ssh_config: str | None = None  # `ssh -F`; None: the user's ~/.ssh/config
    remote_tmp: str | None = None  # parent of the temp folder; None: $TMPDIR or /tmp (ssh), /data/local/tmp (adb)
    benchmark_binary: str | None = None  # adb: TFLite benchmark_model (host path) instead of the Python runner


REMOTE_DIR_PATTERN = re.compile(r"/[A-Za-z0-9._/+@%,=:-]*")


def check_remote_dir(path: str) -> str:
    """--remote-dir: an absolute path of plain characters (no whitespace, quotes, `$`, `;`, backquotes, `~`), since
    it reaches the device's shell (quoted all the same) and scp's remote path. Raises ValueError saying so."""
    if not REMOTE_DIR_PATTERN.fullmatch(path or ""):
        raise ValueError(f"{path!r}: expected an absolute folder on the device of letters, digits and ._/+@%,=:- "
                         f"(e.g. /data/local/tmp or /home/pi/tmp)")
    return path


def _kill_tree(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_local(cmd: list[str], *, timeout: float, cwd: str | None = None,
              stdin=subprocess.DEVNULL) -> Result | None:
    """Run cmd in its own process group; on timeout kill the group. Returns (rc, out, err) or None on timeout."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(proc)
        return None
    return proc.returncode, out, err


class Transport(Protocol):
    """What the remote-target flow needs from a way of reaching a device."""

    url: str
    default_parent: ClassVar[str]  # parent of the temp folder when --remote-dir is not given (shell text)
    extra_pythons: ClassVar[tuple[str, ...]]  # looked for after python3 / python when --device-python is not given
    no_python_hint: ClassVar[str]
    no_answer_hint: ClassVar[str]
    disk_hint: ClassVar[str]
    taskset_pin: ClassVar[bool]  # also pin the runner with `taskset MASK` (--pin big resolved from cpufreq)
    runs_benchmark_binary: ClassVar[bool]  # --benchmark-binary applies (TFLite's benchmark_model instead of Python)

    def run(self, script: str, options: TargetOptions, *, timeout: float | None = None,
            step: str) -> Result | None: ...

    def push(self, files: list[Path], remote: str, options: TargetOptions) -> None: ...

    def mkdir_script(self, parent: str | None) -> tuple[str, str]: ...

    def device_model(self, options: TargetOptions) -> str | None: ...

    def device_name(self, machine: dict) -> str: ...


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


@dataclass
class SshTransport:
    """A Linux device (Raspberry Pi, any board) over the system `ssh` and `scp`. `user`/`host` never start with
    '-' (targets.parse_target refuses them), and the options end with `--` all the same."""

    url: str
    user: str | None
    host: str
    port: int | None = None

    default_parent: ClassVar[str] = "${TMPDIR:-/tmp}"
    extra_pythons: ClassVar[tuple[str, ...]] = ()
    no_python_hint: ClassVar[str] = ("install python3 with numpy and ai-edge-litert or onnxruntime there "
                                     "(apt install python3-numpy; pip install ai-edge-litert), or pass "
                                     "--device-python PATH")
    no_answer_hint: ClassVar[str] = "check the device"
    disk_hint: ClassVar[str] = "free space on the device or pass --remote-dir"
    taskset_pin: ClassVar[bool] = False  # the runner pins itself (job.json `pin`)
    runs_benchmark_binary: ClassVar[bool] = False

    @property
    def dest(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def device_name(self, machine: dict) -> str:
        return f"{self.host} ({machine.get('hostname', '?')})"

    def device_model(self, options: TargetOptions) -> str | None:
        return None

    def client_options(self, options: TargetOptions, *, port_flag: str) -> list[str]:
        """Options shared by ssh and scp (`port_flag`: -p for ssh, -P for scp)."""
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(min(options.timeout_s, 20))}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if options.ssh_config:
            opts = ["-F", options.ssh_config] + opts
        if self.port:
            opts += [port_flag, str(self.port)]
        return opts

    def command(self, script: str, options: TargetOptions) -> list[str]:
        """The ssh argv that runs `script` on the device."""
        return ["ssh", *self.client_options(options, port_flag="-p"), "--", self.dest, script]

    def run(self, script: str, options: TargetOptions, *, timeout: float | None = None,
            step: str) -> Result | None:
        if shutil.which("ssh") is None:
            raise TargetError(f"{self.url}: no `ssh` client on this machine", hint="apt-get install openssh-client")
        res = run_local(self.command(script, options), timeout=timeout or options.timeout_s)
        if res is None:
            return None
        self.check(res, step)
        return res

    def check(self, res: Result, step: str) -> None:
        """TargetError when ssh itself failed (exit 255), classified by what it printed; other exits are the
        remote command's business."""
        rc, out, err = res
        if rc != 255:
            return
        for pattern, meaning, todo in SSH_ERRORS:
            if pattern in err:
                raise TargetError(f"{self.url}: {meaning} while {step}", hint=todo.format(dest=self.dest))
        raise TargetError(f"{self.url}: ssh failed while {step}: {' | '.join(err.strip().splitlines()[-2:])}")

    def push(self, files: list[Path], remote: str, options: TargetOptions) -> None:
        if shutil.which("scp") is None:
            raise TargetError(f"{self.url}: no `scp` client on this machine", hint="apt-get install openssh-client")
        cmd = ["scp", "-q", *self.client_options(options, port_flag="-P"), "--", *(str(f) for f in files),
               f"{self.dest}:{remote}/"]
        res = run_local(cmd, timeout=options.timeout_s)
        if res is None:
            raise TargetError(f"{self.url}: copying the artifacts did not finish within {options.timeout_s:g} s")
        if res[0] != 0:
            err = res[2]
            if "No space" in err or "Failure" in err or "quota" in err.lower():
                raise TargetError(f"{self.url}: the device disk is full (copy to {remote} failed: {err.strip()})",
                                  hint=self.disk_hint)
            self.check((255, res[1], err), "copying the artifacts")
            raise TargetError(f"{self.url}: copying the artifacts failed: {err.strip()}")

    def mkdir_script(self, parent: str | None) -> tuple[str, str]:
        """Shell text setting $d to a fresh folder under `parent` (mktemp on the device), and how to name it.
        `parent`: the user's --remote-dir, always quoted for the remote shell; None: $TMPDIR or /tmp there."""
        parent_q = self.default_parent if parent is None else shlex.quote(parent)
        return f"d=$(mktemp -d {parent_q}/edgeport-XXXXXX)", f"a temp folder in {parent or self.default_parent}"


# ---- adb ----------------------------------------------------------------------------------------------------------

@dataclass
class AdbTransport:
    """An Android device through the `adb` client. Files go to /data/local/tmp/edgeport-XXXX. The Python runner is
    used where the device has Python (Termux: pass --device-python); with --benchmark-binary, TFLite's
    benchmark_model is pushed and its output parsed."""

    url: str
    serial: str

    TERMUX_PYTHON: ClassVar[str] = "/data/data/com.termux/files/usr/bin/python3"
    default_parent: ClassVar[str] = "/data/local/tmp"
    extra_pythons: ClassVar[tuple[str, ...]] = (TERMUX_PYTHON,)
    no_python_hint: ClassVar[str] = ("install Termux python + numpy + ai-edge-litert and pass --device-python, or "
                                     "use TFLite's benchmark_model with --benchmark-binary")
    no_answer_hint: ClassVar[str] = "check `adb devices` and the device"
    disk_hint: ClassVar[str] = "free space on the device (/data/local/tmp) or pass --remote-dir"
    taskset_pin: ClassVar[bool] = True
    runs_benchmark_binary: ClassVar[bool] = True

    def device_name(self, machine: dict) -> str:
        return machine.get("device_model") or self.serial

    def device_model(self, options: TargetOptions) -> str | None:
        """ro.product.model, or None when the device does not say."""
        model = self.run("getprop ro.product.model", options, timeout=30, step="reading the model name")
        if model and model[0] == 0 and model[1].strip():
            return model[1].strip()
        return None

    def adb(self, args: list[str], options: TargetOptions, *, timeout: float | None = None,
            step: str) -> Result | None:
        """`adb -s SERIAL ARGS`; TargetError when adb says the device or the server is not there."""
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

    def run(self, script: str, options: TargetOptions, *, timeout: float | None = None,
            step: str) -> Result | None:
        return self.adb(["shell", script], options, timeout=timeout, step=step)

    def push(self, files: list[Path], remote: str, options: TargetOptions) -> None:
        for path in files:
            res = self.adb(["push", str(path), f"{remote}/{path.name}"], options, step="pushing the artifacts")
            if res is None:
                raise TargetError(f"{self.url}: pushing {path.name} did not finish within {options.timeout_s:g} s")
            if res[0] != 0:
                err = (res[1] + res[2]).strip()
                if "No space" in err or "space left" in err:
                    raise TargetError(f"{self.url}: the device disk is full (pushing {path.name}: {err})",
                                      hint="free space in /data/local/tmp")
                raise TargetError(f"{self.url}: pushing {path.name} failed: {err}")

    def mkdir_script(self, parent: str | None) -> tuple[str, str]:
        """Shell text setting $d to a fresh folder under `parent` (named here: not every Android has mktemp; quoted
        for the remote shell). None: /data/local/tmp."""
        remote = f"{(parent or self.default_parent).rstrip('/')}/edgeport-{secrets.token_hex(4)}"
        return f"d={shlex.quote(remote)}; mkdir -p \"$d\"", remote
