"""Latency result entries: the report.json `latency` schema, the `noisy` verdict, and the printed table.

The runner (edgeport.runtime.device, shipped as device_runner.py) returns raw numbers: wall and process-CPU time of
each timed inference, and the machine's counters (load average, /proc/stat, thermal zones) right before and after
the timed rounds. This module turns them into each entry's `conditions` and its `noisy` verdict, so the rules live in
one place, on the host.
"""
from __future__ import annotations

from edgeport.runtime.cpu_features import parse_cpuinfo

LATENCY_FIELDS = ("target", "device", "engine", "artifact", "threads", "warmup", "runs", "p50_ms", "p90_ms",
                  "p99_ms", "mean_ms", "std_ms", "min_ms", "load_ms", "first_ms", "peak_rss_mb", "cpu_ms", "cpu_util",
                  "pinned", "min_seconds", "conditions", "noisy", "noisy_reasons")

# ---- the `noisy` verdict: thresholds ------------------------------------------------------------------------------
# A compute-bound inference keeps the calling thread on a core for its whole duration (ORT and XNNPACK's thread
# pools run work on the caller too), so process CPU time per inference >= wall time when the process had its cores.
# Below 85 % it waited for a core for a seventh of the time or more. Evidence that an undisturbed inference sits
# near 1.0: on the 2-vCPU AMD EPYC of docs/devices.md, the median (unpreempted) inference of a conv stack took
# 2.17 ms wall for a mean 2.18 ms of CPU, while the run as a whole, on a machine loaded by other jobs, was at 0.66.
NOISY_MIN_CPU_WALL = 0.85
# Spread: the slowest tenth of inferences more than 1.3x the median means something regularly took the core or
# the clock changed (thermal, frequency scaling). A chosen bound, looser than MLPerf Mobile's "p90 repeats within
# 5 %" (which compares runs, not percentiles); the loaded runs above were at 2.8-2.9.
NOISY_MAX_P90_P50 = 1.3
# Load: runnable threads other than ours (1-minute load average minus our thread count), per core; above one per
# core, every core had a queue. The 1-minute average lags, so the CPU demand measured over the timed rounds from
# /proc/stat (other processes' busy cores + our threads) is checked too.
NOISY_MAX_LOAD_PER_CORE = 1.0
NOISY_MAX_DEMAND_PER_CORE = 1.0
# Steal: time the hypervisor gave this VM's CPUs to another guest; a few percent already shifts a p50.
NOISY_MAX_STEAL_PCT = 3.0
_STAT_IDLE, _STAT_IOWAIT, _STAT_STEAL = 3, 4, 7  # /proc/stat `cpu` line: user nice system idle iowait irq softirq steal


def describe_machine(machine: dict) -> dict:
    """The runner's machine description with its raw /proc/cpuinfo head replaced by parsed `cpu_features`
    (edgeport.runtime.cpu_features: x86 AVX2/AVX-512/VNNI/AMX, ARM dotprod/i8mm/fp16, ORT's INT8 kernel path)."""
    out = dict(machine)
    text = out.pop("cpuinfo", None)
    if text:
        out["cpu_features"] = parse_cpuinfo(text, machine=out.get("arch"), source="/proc/cpuinfo").to_dict()
    return out


def conditions(result: dict, *, cores: int | None) -> dict | None:
    """The machine's state around the timed rounds (None for results without the runner's counters, e.g.
    benchmark_model): load average before/after, steal and other processes' CPU demand over the rounds,
    hottest thermal zone before/after, seconds timed, the cool-down gate and why the runner pinned cores."""
    b, a = result.get("state_before"), result.get("state_after")
    if not b or not a:
        return None
    seconds = a["wall_s"] - b["wall_s"]
    out = {"seconds": seconds, "loadavg1_before": b["loadavg1"], "loadavg1_after": a["loadavg1"],
           "steal_pct": None, "other_cores": None, "cores": cores,
           "temp_c_before": max(b["temps_c"].values(), default=None),
           "temp_c_after": max(a["temps_c"].values(), default=None),
           "cooldown": result.get("cooldown"), "pin_reason": result.get("pin_reason")}
    if b.get("stat_cpu") and a.get("stat_cpu"):
        delta = [y - x for x, y in zip(b["stat_cpu"][:8], a["stat_cpu"][:8])]
        total = sum(delta)
        if total > 0:
            out["steal_pct"] = 100.0 * delta[_STAT_STEAL] / total
            busy_s = (total - delta[_STAT_IDLE] - delta[_STAT_IOWAIT] - delta[_STAT_STEAL]) / a["clock_tck"]
            own_s = a["process_cpu_s"] - b["process_cpu_s"]
            out["other_cores"] = max(busy_s - own_s, 0.0) / seconds if seconds > 0 else None
    return out


def noisy_reasons(entry: dict) -> list[str] | None:
    """Why `entry` cannot be trusted ([] = it can), each reason "rule: numbers"; None when nothing was measured
    to judge it by (benchmark_model results)."""
    reasons, judged = [], False
    threads, mean, cpu = entry["threads"], entry.get("mean_ms"), entry.get("cpu_ms")
    if cpu is not None and mean:
        judged = True
        if cpu / mean < NOISY_MIN_CPU_WALL:
            reasons.append(f"cpu/wall: CPU time {cpu / mean:.0%} of wall (< {NOISY_MIN_CPU_WALL:.0%}: waited for a core)")
    p50, p90 = entry.get("p50_ms"), entry.get("p90_ms")
    if p50 and p90 is not None:
        judged = True
        if p90 / p50 > NOISY_MAX_P90_P50:
            reasons.append(f"spread: p90/p50 {p90 / p50:.2f} (> {NOISY_MAX_P90_P50})")
    c = entry.get("conditions")
    cores = (c or {}).get("cores")
    if c and cores:
        judged = True
        loads = [v for v in (c["loadavg1_before"], c["loadavg1_after"]) if v is not None]
        if loads and (max(loads) - threads) / cores > NOISY_MAX_LOAD_PER_CORE:
            reasons.append(f"load: load average {max(loads):.2f} on {cores} cores "
                           f"(> {NOISY_MAX_LOAD_PER_CORE:g}/core besides ours)")
        if c["other_cores"] is not None and (c["other_cores"] + threads) / cores > NOISY_MAX_DEMAND_PER_CORE:
            reasons.append(f"load: others used {c['other_cores']:.2f} cores + our {threads} thread(s) "
                           f"> {cores} cores")
        if c["steal_pct"] is not None and c["steal_pct"] > NOISY_MAX_STEAL_PCT:
            reasons.append(f"steal: {c['steal_pct']:.1f}% (> {NOISY_MAX_STEAL_PCT:g}%)")
    return reasons if judged else None


def make_entry(*, target: str, device: str, result: dict, machine: dict) -> dict:
    """One `latency` entry: exactly LATENCY_FIELDS + `machine` (CPU model and features, cores, runtime versions,
    RSS method). `result`: one of the runner's results; fields it lacks (benchmark_model) are None."""
    entry = {"target": target, "device": device}
    entry.update({k: result.get(k) for k in LATENCY_FIELDS[2:16]})
    cpu, mean = result.get("cpu_ms"), result.get("mean_ms")
    entry["cpu_ms"] = cpu
    entry["cpu_util"] = cpu / (mean * result["threads"]) if cpu is not None and mean else None
    entry["pinned"] = result.get("pinned")
    entry["min_seconds"] = result.get("min_seconds")
    entry["conditions"] = conditions(result, cores=machine.get("cores"))
    reasons = noisy_reasons(entry)
    entry["noisy"] = None if reasons is None else bool(reasons)
    entry["noisy_reasons"] = reasons or []
    entry["machine"] = machine
    return entry


# Short names of the rules in the table's `noisy` column (the reasons in full: report.json, `noisy_lines`).
_RULE_LABELS = {"cpu/wall": "wait", "spread": "spread", "load": "load", "steal": "steal"}


def noisy_label(entry: dict) -> str:
    """'-' (trusted), e.g. 'wait,load' (the rules that fired; wait = CPU time below wall time) or '?' (not judged)."""
    if entry.get("noisy") is None:
        return "?"
    rules = dict.fromkeys(r.split(":", 1)[0] for r in entry.get("noisy_reasons") or [])
    return ",".join(_RULE_LABELS.get(r, r) for r in rules) if rules else "-"


def conditions_lines(entries: list[dict]) -> list[str]:
    """What the runner did to the machine and saw on it, once per distinct state (pinning, cool-down, CPU)."""
    lines: list[str] = []
    for e in entries:
        c, m = e.get("conditions") or {}, e.get("machine") or {}
        feats = m.get("cpu_features") or {}
        flags = [k for k in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx", "asimddp", "i8mm", "fp16")
                 if feats.get(k)]
        cands = [f"{e['target']}: CPU {feats.get('model_name', m.get('cpu_model', '?'))} "
                 f"[{' '.join(flags) or 'no SIMD flags read'}], INT8 kernels {feats.get('int8_kernel_path', '?')}"]
        if c.get("pin_reason"):
            cands.append(f"{e['target']}: pinned to {c['pin_reason']}")
        cd = c.get("cooldown")
        if cd:
            what = ("no thermal zone to read" if cd["reached"] is None and cd["max_temp_c"] is not None else
                    f"{cd['temp_c']:.1f} C {'<' if cd['reached'] else 'still >='} {cd['max_temp_c']:g} C"
                    if cd["max_temp_c"] is not None else "fixed pause")
            cands.append(f"{e['target']}: cool-down waited {cd['waited_s']:.0f} s ({what})")
        if c:
            temps = (f", {c['temp_c_before']:.1f} -> {c['temp_c_after']:.1f} C"
                     if c.get("temp_c_before") is not None and c.get("temp_c_after") is not None else "")
            load = " -> ".join(f"{v:.2f}" for v in (c["loadavg1_before"], c["loadavg1_after"]) if v is not None)
            cands.append(f"{e['target']}: timed {c['seconds']:.1f} s, load average {load or '?'} on "
                         f"{c.get('cores')} cores, steal {_pct(c.get('steal_pct'))}{temps}")
        lines += [x for x in cands if x not in lines]
    return lines


def noisy_lines(entries: list[dict]) -> list[str]:
    """The noisy verdicts in a few lines: the machine-wide reasons (load, steal) once per distinct text, then one
    line per configuration with its own (CPU time vs wall, spread)."""
    shared: list[str] = []
    own = []
    for e in entries:
        if not e.get("noisy"):
            continue
        mine = []
        for r in e["noisy_reasons"]:
            if r.split(":", 1)[0] in ("load", "steal"):
                if r not in shared:
                    shared.append(r)
            else:
                mine.append(r)
        if mine:
            own.append(f"noisy: {e['artifact']} ({e['engine']}, {e['threads']} thr): " + "; ".join(mine))
    n = sum(bool(e.get("noisy")) for e in entries)
    head = [f"noisy: {n} of {len(entries)} entries; machine: " + "; ".join(shared)] if shared else []
    return head + own


def _pct(v: float | None) -> str:
    return "?" if v is None else f"{v:.1f}%"


def latency_table(entries: list[dict], *, title: str = "latency"):
    """A rich Table of entries (ms; cpu = process CPU ms per inference, all threads; ratio column = p50 / the
    fastest p50 in the table; noisy = the rules that fired, '-' when none). Min, mean, load and first-inference
    times are in report.json and report.html; the table keeps to ~120 columns (target and device columns only when
    the entries come from several targets: the title names a single one)."""
    from rich.table import Table

    several = len({e["target"] for e in entries}) > 1
    table = Table(title=title)
    cols = (("target", "device") if several else ()) + ("engine", "artifact", "thr", "runs", "p50", "p90", "p99",
                                               "cpu", "RSS", "×fastest", "noisy")
    for col in cols:
        table.add_column(col, justify="left" if col in ("target", "device", "engine", "artifact", "noisy")
                         else "right")
    best = min((e["p50_ms"] or e["mean_ms"] for e in entries), default=1.0) or 1.0
    for e in entries:
        rss = "-" if e.get("peak_rss_mb") is None else f"{e['peak_rss_mb']:.0f}M"
        table.add_row(*((e["target"], e["device"]) if several else ()), e["engine"], e["artifact"],
                      str(e["threads"]), str(e["runs"]), _ms(e["p50_ms"]), _ms(e["p90_ms"]), _ms(e["p99_ms"]),
                      _ms(e.get("cpu_ms")), rss, f"{(e['p50_ms'] or e['mean_ms']) / best:.2f}", noisy_label(e))
    return table


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"
