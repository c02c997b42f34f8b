"""TFLite's `benchmark_model` binary on an adb device: run it, and parse what it prints.

The binary is not in any package registry (the user builds it or downloads it from the TFLite site and passes
`--benchmark-binary`). It prints, per phase, `count=N first=US curr=US min=US max=US avg=US std=US` (newer builds add
`p5= median= p95=`; lines may carry an `INFO: ` prefix), then `Inference timings in us: Init: .., First inference: ..`
and memory lines. It reports no p90/p99: those fields stay null (and `p50_ms` is its median where printed).
`peak_rss_mb` is its "Overall peak memory footprint (MB) via periodic monitoring" (newer builds) or the `overall=`
of "Peak memory footprint (MB): init=.. overall=.." (older builds); the "Memory footprint delta" line is a delta, not
a peak, and is not used. Its defaults run *at least* one second (`--min_secs=1`, `--warmup_min_secs=0.5`): edgeport
passes 0 for both so `--runs`/`--warmup` mean what they say, and maps `--time-budget S` to `--min_secs=S`.
"""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from edgeport.errors import TargetError

_STAT = re.compile(r"count=(\d+)((?:\s+\w+=[-+\d.eE]+)+)")
_SUMMARY = re.compile(r"Inference timings in us: Init: ([\d.eE+]+), First inference: ([\d.eE+]+)")
_PEAK_MONITOR = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: ([\d.eE+]+)")
_PEAK_OLD = re.compile(r"Peak memory footprint \(MB\): init=([\d.eE+]+) overall=([\d.eE+]+)")


def parse_benchmark_output(text: str) -> dict:
    """The last `count=` line (the measured phase) + the summary line. Times in ms. Raises ValueError if absent."""
    stats = [m for m in _STAT.finditer(text)]
    measured = [m for m in stats if "avg=" in m.group(2) and "first=" in m.group(2)]
    if not measured:
        raise ValueError("no `count=... avg=... std=...` line in benchmark_model output")
    m = measured[-1]
    fields = dict(kv.split("=") for kv in m.group(2).split())
    out = {"runs": int(m.group(1)), "mean_ms": float(fields["avg"]) / 1e3, "std_ms": float(fields["std"]) / 1e3,
           "min_ms": float(fields["min"]) / 1e3, "max_ms": float(fields["max"]) / 1e3,
           "p50_ms": float(fields["median"]) / 1e3 if "median" in fields else None, "p90_ms": None, "p99_ms": None,
           "first_ms": float(fields["first"]) / 1e3, "load_ms": None, "peak_rss_mb": None}
    summary = _SUMMARY.search(text)
    if summary:
        out["load_ms"] = float(summary.group(1)) / 1e3
        out["first_ms"] = float(summary.group(2)) / 1e3
    peak = _PEAK_MONITOR.search(text)
    old = _PEAK_OLD.search(text)
    if peak:
        out["peak_rss_mb"] = float(peak.group(1))
    elif old:
        out["peak_rss_mb"] = float(old.group(2))
    return out


def benchmark_command(*, binary: str, graph: str, threads: int, warmup: int, runs: int, xnnpack: bool,
                      time_budget_s: float | None, taskset_mask: str | None) -> str:
    cmd = [binary, f"--graph={graph}", f"--num_threads={threads}", f"--warmup_runs={warmup}", "--warmup_min_secs=0",
           f"--use_xnnpack={'true' if xnnpack else 'false'}"]
    if time_budget_s:  # like the Python runner: rounds until S seconds, at least 3
        cmd += ["--num_runs=3", f"--min_secs={time_budget_s:g}"]
    else:
        cmd += [f"--num_runs={runs}", "--min_secs=0"]
    text = " ".join(shlex.quote(c) for c in cmd)
    return f"taskset {taskset_mask} {text}" if taskset_mask else text


def run_benchmark_model(target, job_dir: Path, remote: str, options) -> dict:
    """Push the binary and the .tflite artifacts, run one benchmark_model per (artifact, engine, threads)."""
    binary = Path(options.benchmark_binary)
    if not binary.is_file():  # RemoteTarget checks this before touching the device; kept for direct callers
        raise TargetError(f"{target.url}: --benchmark-binary {binary} does not exist on this machine",
                          hint="build or download TFLite's benchmark_model for the device's ABI (android_aarch64)")
    job = json.loads((job_dir / "job.json").read_text())
    arts = [a for a in job["artifacts"] if a["file"].endswith(".tflite")]
    if not arts:
        raise TargetError(f"{target.url}: benchmark_model runs .tflite artifacts only; none selected")
    target.push(job_dir, remote, options, files=[binary] + [job_dir / a["file"] for a in arts])
    exe = f"{remote}/{binary.name}"
    res = target.shell(f"chmod 755 {shlex.quote(exe)} && {shlex.quote(exe)} --help >/dev/null 2>&1; echo RC=$?",
                       options, step="starting benchmark_model")
    rc = re.search(r"RC=(\d+)", res[1] if res else "")
    if rc is None or int(rc.group(1)) in (126, 127):
        raise TargetError(f"{target.url}: {binary.name} does not run on the device (exit {rc.group(1) if rc else '?'})",
                          hint="is it built for this device's ABI (arm64-v8a)? `adb shell getprop ro.product.cpu.abi`")
    mask = target.pin_mask(job.get("pin"), options)
    results = []
    engines = [e for e in job["engines"] if e in ("tflite", "tflite-builtin")]
    for art in arts:
        for engine in engines:
            for threads in job["threads"]:
                cmd = benchmark_command(binary=exe, graph=f"{remote}/{art['file']}", threads=int(threads),
                                        warmup=int(job.get("warmup", 5)), runs=int(job.get("runs", 50)),
                                        xnnpack=engine == "tflite", time_budget_s=job.get("time_budget_s"),
                                        taskset_mask=mask)
                out = target.shell(cmd, options, step="running benchmark_model")
                if out is None:
                    raise TargetError(f"{target.url}: benchmark_model did not finish within {options.timeout_s:g} s; "
                                      f"killed", hint="raise --timeout or lower --runs")
                try:
                    stats = parse_benchmark_output(out[1] + out[2])
                except ValueError:
                    tail = " | ".join((out[1] + out[2]).strip().splitlines()[-3:])
                    raise TargetError(f"{target.url}: benchmark_model failed on {art['file']}: {tail}") from None
                stats.pop("max_ms")
                results.append({"engine": engine + "(benchmark_model)", "artifact": art["name"],
                                "threads": int(threads), "warmup": int(job.get("warmup", 5)), **stats})
    info = target.shell("uname -m; getprop ro.product.model; getprop ro.product.cpu.abi; "
                        "grep -c ^processor /proc/cpuinfo; grep -m1 -E '^(Hardware|CPU part)' /proc/cpuinfo",
                        options, timeout=30, step="describing the device")
    lines = (info[1].splitlines() if info and info[0] == 0 else []) + [""] * 5
    machine = {"arch": lines[0].strip() or "?", "cpu_model": lines[4].split(":", 1)[-1].strip() or "?",
               "abi": lines[2].strip() or None, "cores": int(lines[3]) if lines[3].strip().isdigit() else None,
               "runtimes": {"tflite": f"benchmark_model ({binary.name})"},
               "rss_method": "benchmark_model's own peak memory footprint line (MB)", "pinned_mask": mask}
    if lines[1].strip():
        machine["device_model"] = lines[1].strip()
    return {"machine": machine, "results": results, "outputs": {}}
