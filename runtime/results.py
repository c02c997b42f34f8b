"""Latency result entries: the report.json `latency` schema and the printed table."""
from __future__ import annotations

LATENCY_FIELDS = ("target", "device", "engine", "artifact", "threads", "warmup", "runs", "p50_ms", "p90_ms",
                  "p99_ms", "mean_ms", "std_ms", "min_ms", "load_ms", "first_ms", "peak_rss_mb")


def make_entry(*, target: str, device: str, result: dict, machine: dict) -> dict:
    """One `latency` entry: exactly LATENCY_FIELDS + `machine` (CPU model, cores, runtime versions, RSS method)."""
    entry = {"target": target, "device": device}
    entry.update({k: result[k] for k in LATENCY_FIELDS[2:]})
    entry["machine"] = machine
    return entry


def latency_table(entries: list[dict], *, title: str = "latency"):
    """A rich Table of entries (ms; ratio column = p50 / the fastest p50 in the table)."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("target", "device", "engine", "artifact", "thr", "runs", "p50", "p90", "p99", "mean±std", "min",
                "load", "first", "RSS MB", "×fastest"):
        table.add_column(col, justify="left" if col in ("target", "device", "engine", "artifact") else "right")
    best = min((e["p50_ms"] or e["mean_ms"] for e in entries), default=1.0) or 1.0
    for e in entries:
        rss = "-" if e.get("peak_rss_mb") is None else f"{e['peak_rss_mb']:.0f}"
        table.add_row(e["target"], e["device"], e["engine"], e["artifact"], str(e["threads"]), str(e["runs"]),
                      _ms(e["p50_ms"]), _ms(e["p90_ms"]), _ms(e["p99_ms"]), f"{_ms(e['mean_ms'])}±{_ms(e['std_ms'])}",
                      _ms(e["min_ms"]), _ms(e["load_ms"]), _ms(e["first_ms"]), rss, f"{(e['p50_ms'] or e['mean_ms']) / best:.2f}")
    return table


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"
