"""What the runner reads about the machine, raw (the host interprets it: edgeport.runtime.results and
cpu_features): the CPU (cpuinfo, cores, affinity, max frequencies for --pin big), load, /proc/stat, thermal zones,
peak RSS, and which interpreters this Python has (`discover`).

Part of the device runner (see protocol.py). /sys is read under $EDGEPORT_SYSFS_ROOT when set (tests: a fake tree).
"""
from __future__ import annotations

import os
import platform
import resource
import sys
import time

import numpy as np

from .interpreters import TFLITE_MODULES, tflite_interpreter_class
from .protocol import RunnerError

RSS_METHOD = ("VmHWM of one fresh process per configuration (load + first + warm-up inferences; includes "
              "Python/numpy)")
SYSFS_ROOT_ENV = "EDGEPORT_SYSFS_ROOT"
COOLDOWN_POLL_S = 1.0
# --max-temp without --cooldown: wait at most this long (a phone in a warm room may never cool enough: the run goes
COOLDOWN_DEFAULT_BOUND_S = 300.0  # on, and the entry records that the temperature was not reached)


def sys_path(path: str) -> str:  # `path` under $EDGEPORT_SYSFS_ROOT when set (a fake tree in tests)
    return os.path.join(os.environ.get(SYSFS_ROOT_ENV) or "/", path.lstrip("/"))


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:  # absent (no such zone, not Linux) or unreadable
        return None


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (all of them where the OS has no affinity call)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def core_max_freqs() -> dict[int, int]:
    """CPU id -> cpuinfo_max_freq (kHz) of the CPUs this process may run on (those that expose one)."""
    texts = {c: (_read(sys_path(f"/sys/devices/system/cpu/cpu{c}/cpufreq/cpuinfo_max_freq")) or "").strip()
             for c in allowed_cpus()}
    return {c: int(t) for c, t in texts.items() if t.isdigit()}


def parse_pin(pin) -> list[int] | None:
    """'0,1' / '4-7' / 'big' (the cores with the highest cpuinfo_max_freq) -> sorted CPU ids."""
    if pin in (None, ""):
        return None
    pin = str(pin)
    if pin == "big":
        freqs = core_max_freqs()
        if not freqs:
            raise RunnerError("--pin big: this device exposes no cpufreq max frequencies; give CPU ids, e.g. 4-7")
        return sorted(c for c, f in freqs.items() if f == max(freqs.values()))
    cpus = set()
    for part in pin.split(","):
        lo, _, hi = part.partition("-")
        try:
            cpus.update(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            raise RunnerError(f"bad CPU list {pin!r}; use e.g. 0,1 or 4-7 or big") from None
    return sorted(cpus)


def default_pin() -> tuple[list[int] | None, str | None]:
    """(the fastest cores, why) on a CPU whose cores differ in cpuinfo_max_freq; (None, None) otherwise."""
    freqs = core_max_freqs()
    if len(set(freqs.values())) < 2:
        return None, None
    big, top, low = parse_pin("big"), max(freqs.values()) / 1e6, min(freqs.values()) / 1e6
    return big, (f"big cores {','.join(map(str, big))} by default: cores differ in max frequency "
                 f"({top:.2f} GHz vs {low:.2f} GHz); --pin overrides")


def thermal_temps() -> dict[str, float]:
    """Thermal zone -> temperature (deg C) from /sys/class/thermal/thermal_zone*/temp (millidegrees)."""
    root, temps = sys_path("/sys/class/thermal"), {}
    for zone in sorted(z for z in (os.listdir(root) if os.path.isdir(root) else []) if z.startswith("thermal_zone")):
        raw = (_read(os.path.join(root, zone, "temp")) or "").strip()
        kind = (_read(os.path.join(root, zone, "type")) or "").strip()
        if raw.lstrip("-").isdigit():
            temps[f"{zone}:{kind}" if kind else zone] = int(raw) / 1000.0
    return temps


def cpuinfo_head() -> str:
    """The first processor's block of /proc/cpuinfo (model name, flags/Features) plus ARM's trailing Hardware /
    Model lines; the host parses it (edgeport.runtime.cpu_features.parse_cpuinfo)."""
    blocks = (_read("/proc/cpuinfo") or "").split("\n\n")
    return "\n".join(blocks[:1] + [b for b in blocks[1:] if b.strip() and not b.lstrip().startswith("processor")])


def machine_state() -> dict:
    """Raw now: 1-min load average, /proc/stat `cpu` (jiffies), clock tick, thermal zones, process CPU and wall s."""
    load = _read("/proc/loadavg")
    cpu_line = next((ln.split()[1:] for ln in (_read("/proc/stat") or "").splitlines() if ln.startswith("cpu ")), None)
    return {"loadavg1": float(load.split()[0]) if load else None,
            "stat_cpu": [int(v) for v in cpu_line] if cpu_line else None, "clock_tck": os.sysconf("SC_CLK_TCK"),
            "temps_c": thermal_temps(), "process_cpu_s": time.process_time(), "wall_s": time.perf_counter()}


def cool_down(*, max_temp_c: float | None, cooldown_s: float | None) -> dict | None:
    """The gate before timing. With `max_temp_c`: wait until every thermal zone is below it, at most `cooldown_s`
    (default COOLDOWN_DEFAULT_BOUND_S). Without: pause `cooldown_s`. None when neither is set."""
    if max_temp_c is None and not cooldown_s:
        return None
    start, hottest, reached, bound = time.monotonic(), None, None, float(cooldown_s or COOLDOWN_DEFAULT_BOUND_S)
    while max_temp_c is not None:  # leaves by `break` only
        hottest = max(thermal_temps().values(), default=None)
        reached = None if hottest is None else hottest < max_temp_c
        if reached is not False or time.monotonic() - start >= bound:
            break
        time.sleep(COOLDOWN_POLL_S)
    else:  # no temperature bar: a plain pause
        time.sleep(bound)
    if reached is False:
        sys.stderr.write(f"edgeport runner: still {hottest:.1f} C after {bound:.0f} s, above --max-temp "
                         f"{max_temp_c}; timing anyway\n")
    return {"waited_s": time.monotonic() - start, "max_temp_c": max_temp_c, "reached": reached, "temp_c": hottest}


def machine_description(runtimes: dict | None = None) -> dict:
    """The machine: arch, CPU model, cores, affinity, versions; `cpuinfo` (raw) for the host to parse features from."""
    head, cpuinfo = cpuinfo_head(), {}
    for line in head.splitlines():
        key, _, value = line.partition(":")
        cpuinfo.setdefault(key.strip(), value.strip())
    cpu_model = cpuinfo.get("model name") or cpuinfo.get("Model") or cpuinfo.get("Hardware") or platform.processor()
    if "CPU part" in cpuinfo:
        cpu_model = f"{cpu_model} (implementer {cpuinfo.get('CPU implementer')}, part {cpuinfo['CPU part']})".strip()
    return {"arch": platform.machine(), "cpu_model": cpu_model, "cores": os.cpu_count(), "affinity": allowed_cpus(),
            "system": f"{platform.system()} {platform.release()}", "hostname": platform.node(),
            "python": platform.python_version(), "numpy": np.__version__, "runtimes": dict(runtimes or {}),
            "rss_method": RSS_METHOD, "cpuinfo": head}


def discover() -> dict:
    """This Python, the machine, and each interpreter module: its version, or None and why it does not load."""
    found = {}
    for module in ("onnxruntime",) + TFLITE_MODULES:
        try:
            if module == "onnxruntime":
                import onnxruntime
                found[module] = onnxruntime.__version__
            else:
                found[module] = tflite_interpreter_class(module)[1]
        except Exception as exc:  # noqa: BLE001
            found[module] = None
            found[module + "_error"] = f"{type(exc).__name__}: {exc}"[:200]
    return {"python": sys.executable, "machine": machine_description(), "interpreters": found}


def peak_rss_mb() -> float:
    """This process's peak resident set (MB): VmHWM from /proc/self/status. Not ru_maxrss: Linux carries the
    parent's high-water mark over fork + exec into it, so a probe started by a runner holding every model loaded
    would report the runner's peak instead of its own."""
    hwm = [ln.split()[1] for ln in (_read("/proc/self/status") or "").splitlines() if ln.startswith("VmHWM:")]
    return int(hwm[0]) / 1024.0 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
