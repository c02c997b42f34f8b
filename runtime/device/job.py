"""A job: its configurations (artifact x engine x threads) loaded, warmed up, timed in rounds, its parity samples
run, and the result the host reads; `probe` measures one configuration's peak RSS in a process of its own.

Part of the device runner (see protocol.py).
"""
from __future__ import annotations

import os
import time

import numpy as np

from .interpreters import RUNNER_ENGINES, TFLITE_MODULES, artifact_engine_kind, open_engine
from .machine import cool_down, default_pin, machine_description, machine_state, parse_pin, peak_rss_mb
from .protocol import RunnerError, RuntimeMissing, stage
from .timing import random_inputs, summarize, timed_rounds


def _configs(job: dict, root: str) -> list[dict]:
    configs = []
    for art in job["artifacts"]:
        path = os.path.join(root, art["file"])
        for engine in job["engines"]:
            if RUNNER_ENGINES[engine][0] != artifact_engine_kind(path):
                continue
            for threads in job["threads"]:
                configs.append({"artifact": art["name"], "path": path, "engine": engine, "threads": int(threads)})
    if not configs:
        raise RunnerError("no (artifact, engine) pair matches: .onnx runs on onnxruntime*, .tflite on tflite*")
    return configs


def _load(cfg: dict, modules) -> tuple:
    stage(step="loading", file=os.path.basename(cfg["path"]), artifact=cfg["artifact"], engine=cfg["engine"])
    t0 = time.perf_counter()
    engine = open_engine(cfg["engine"], cfg["path"], threads=cfg["threads"], tflite_modules=modules)
    return engine, (time.perf_counter() - t0) * 1e3


def probe(job: dict, root: str, index: int) -> dict:
    cfg = _configs(job, root)[index]
    engine, _ = _load(cfg, job.get("tflite_modules") or TFLITE_MODULES)
    feed = engine.prepare(random_inputs(engine.input_specs(), job.get("seed", 0)))
    for _ in range(1 + max(int(job.get("warmup", 0)), 2)):
        engine.invoke(feed)
    return {"peak_rss_mb": peak_rss_mb()}


def _pin(job: dict) -> tuple[list[int] | None, str | None]:
    """Pin this process as the job says; without "pin", to the big cores of a heterogeneous CPU."""
    cpus, reason = (parse_pin(job["pin"]), None) if job.get("pin") else default_pin()
    try:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
    except OSError as exc:
        raise RunnerError(f"cannot pin to CPUs {cpus}: {exc}") from None
    return cpus, reason


def _load_all(job: dict, root: str) -> tuple[list[dict], list[dict], dict]:
    runtimes, loaded, skipped = {}, [], []
    for index, cfg in enumerate(_configs(job, root)):
        try:
            engine, load_ms = _load(cfg, job.get("tflite_modules") or TFLITE_MODULES)
        except RuntimeMissing as exc:
            skipped.append(dict(artifact=cfg["artifact"], engine=cfg["engine"], threads=cfg["threads"], reason=str(exc)))
            continue
        runtimes[cfg["engine"]] = engine.runtime
        stage(step="running", file=os.path.basename(cfg["path"]), artifact=cfg["artifact"], engine=cfg["engine"])
        feed = engine.prepare(random_inputs(engine.input_specs(), job.get("seed", 0)))
        t0 = time.perf_counter()
        engine.invoke(feed)
        loaded.append({"cfg": cfg, "engine": engine, "feed": feed, "load_ms": load_ms, "index": index,
                       "first_ms": (time.perf_counter() - t0) * 1e3, "times": [], "cpu_s": 0.0})
    stage(step="timing")  # every file loaded and ran once: a later crash is not one file's
    if not loaded:
        raise RunnerError("no configuration can run here: " + "; ".join(sorted({s["reason"] for s in skipped})))
    return loaded, skipped, runtimes


def parity_samples(npz) -> dict:
    """parity.npz -> {artifact: [one (S, ...) array per input, in the artifact's input order]} (keys
    `<artifact>:<input index>`)."""
    grouped = {}
    for key in npz.files:
        artifact, _, index = key.rpartition(":")
        grouped.setdefault(artifact, {})[int(index)] = npz[key]
    return {artifact: [xs[i] for i in sorted(xs)] for artifact, xs in grouped.items()}


def _parity_outputs(loaded: list[dict], parity: dict) -> dict:
    """"artifact|engine" -> per output, the float outputs of each parity sample (first configuration of the pair);
    sample s feeds row s of every input."""
    outputs = {}
    for item in loaded:
        cfg, engine = item["cfg"], item["engine"]
        key = f"{cfg['artifact']}|{cfg['engine']}"
        if cfg["artifact"] in parity and key not in outputs:
            stage(step="running", file=os.path.basename(cfg["path"]), artifact=cfg["artifact"], engine=cfg["engine"])
            xs = parity[cfg["artifact"]]
            outs = [engine.decode(engine.invoke(engine.prepare([x[s:s + 1] for x in xs])))
                    for s in range(len(xs[0]))]
            outputs[key] = [[o[i].tolist() for o in outs] for i in range(len(outs[0]))] if outs else None
    return outputs


def run_job(job: dict, root: str, *, rss_probe=None) -> dict:
    """Load every configuration, time them in interleaved rounds, return {"machine", "results", "outputs"}.
    Each result carries its CPU time per inference and the machine state before and after the timed rounds."""
    (cpus, pin_reason), warmup, parity = _pin(job), int(job.get("warmup", 5)), {}
    if job.get("parity_inputs"):
        with np.load(os.path.join(root, job["parity_inputs"])) as npz:
            parity = parity_samples(npz)
    loaded, skipped, runtimes = _load_all(job, root)
    cooldown = cool_down(max_temp_c=job.get("max_temp_c"), cooldown_s=job.get("cooldown_s"))
    for r in range(warmup):  # warm-up, interleaved like the timed rounds
        for item in loaded:
            item["engine"].invoke(item["feed"])
    before = machine_state()
    timed_rounds(loaded, runs=int(job.get("runs", 50)), budget=job.get("time_budget_s"),
                 min_seconds=job.get("min_seconds"))
    after = machine_state()
    results = [{"engine": it["cfg"]["engine"], "artifact": it["cfg"]["artifact"], "threads": it["cfg"]["threads"],
                "warmup": warmup, "runs": len(it["times"]), **summarize(it["times"]), "load_ms": it["load_ms"],
                "first_ms": it["first_ms"], "peak_rss_mb": None if rss_probe is None else rss_probe(it["index"]),
                "cpu_ms": it["cpu_s"] * 1e3 / len(it["times"]), "pinned": cpus, "pin_reason": pin_reason,
                "min_seconds": job.get("min_seconds"), "cooldown": cooldown, "state_before": before,
                "state_after": after} for it in loaded]
    return {"machine": machine_description(runtimes), "results": results, "outputs": _parity_outputs(loaded, parity),
            "skipped": skipped}
