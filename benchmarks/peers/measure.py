"""Step 3 (edgeport's environment, ONE process): parity and latency of every converted .tflite, all routes together.

    python measure.py --work WORK --models k1,k2,... [--rounds 6] [--runs 30] [--warmup 5] [--threads 1,2]
        --out WORK/measure.json

Parity: each artifact runs the held-out real images of its model (`heldout.npy`, edgeport.calibration split
"validation", disjoint from the calibration split); int8-IO models get their input quantized with the model's own
scale/zero-point and their output dequantized. Compared with torch fp32 logits (`ref_logits.npy`): cosine per sample
(mean/min), max abs difference, top-1 agreement, and label accuracy when the source has labels.

Latency: `ai_edge_litert.interpreter.Interpreter(num_threads=T)` with the default op resolver (XNNPACK delegate
applied). Every (model, route, precision, threads) interpreter is created up front; then in each round every
configuration runs `warmup` untimed + `runs` timed invokes, the configuration order rotated by one per round so no
route always runs first. Timed: set_tensor + invoke + get_tensor, wall clock and (for the 1-thread rows) the calling thread's CPU time, which
the machine's load does not inflate. Samples of all rounds are pooled into p50/p90;
per-round medians are kept to show the spread.
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np

from common import Precision, Route, model_dir, read_json, tflite_ops, write_json


def _interpreter(path: str, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=path, num_threads=threads)
    it.allocate_tensors()
    return it


def _to_input(x_nchw: np.ndarray, detail: dict) -> np.ndarray:
    """One NCHW float sample (1,C,H,W) -> what the interpreter's input wants (layout from its shape, int8 IO)."""
    shape = tuple(int(s) for s in detail["shape"])
    x = x_nchw
    if shape != tuple(x.shape):
        x = x.transpose(0, 2, 3, 1)
        if shape != tuple(x.shape):
            raise ValueError(f"input shape {shape} fits neither NCHW {x_nchw.shape} nor NHWC {x.shape}")
    dt = np.dtype(detail["dtype"])
    if dt.kind in "iu":
        scale, zp = detail["quantization"]
        info = np.iinfo(dt)
        x = np.clip(np.round(x / scale) + zp, info.min, info.max)
    return np.ascontiguousarray(x.astype(dt))


def _from_output(y: np.ndarray, detail: dict) -> np.ndarray:
    if np.dtype(detail["dtype"]).kind in "iu":
        scale, zp = detail["quantization"]
        return (y.astype(np.float32) - zp) * scale
    return y.astype(np.float32)


def parity(path: str, held: np.ndarray, ref: np.ndarray, labels: np.ndarray | None) -> dict:
    it = _interpreter(path, 1)
    ind, outd = it.get_input_details()[0], it.get_output_details()[0]
    got = []
    for i in range(len(held)):
        it.set_tensor(ind["index"], _to_input(held[i:i + 1], ind))
        it.invoke()
        got.append(_from_output(it.get_tensor(outd["index"]), outd).reshape(-1))
    got = np.stack(got).astype(np.float64)
    r = ref.reshape(len(ref), -1).astype(np.float64)
    cos = (got * r).sum(1) / np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(r, axis=1), 1e-30)
    # random-init nets give nearly the same logits for every input: plain cosine then only says the shared part
    # matches. Centered cosine: both sides minus torch's mean logit vector over the held-out set (the input-dependent
    # part only).
    mu = r.mean(0, keepdims=True)
    gc, rc = got - mu, r - mu
    ccos = (gc * rc).sum(1) / np.maximum(np.linalg.norm(gc, axis=1) * np.linalg.norm(rc, axis=1), 1e-30)
    margin = np.sort(r, 1)
    out = {"n": int(len(held)), "cos_mean": float(cos.mean()), "cos_min": float(cos.min()),
           "ccos_mean": float(ccos.mean()), "ccos_min": float(ccos.min()),
           "ref_top1_margin_median": float(np.median(margin[:, -1] - margin[:, -2])),
           "ref_spread": float(np.linalg.norm(rc, axis=1).mean() / max(np.linalg.norm(r, axis=1).mean(), 1e-30)),
           "max_abs": float(np.abs(got - r).max()), "max_abs_rel": float(np.abs(got - r).max() / np.abs(r).max()),
           "top1_agree": float((got.argmax(1) == r.argmax(1)).mean()),
           "input": {"shape": [int(s) for s in ind["shape"]], "dtype": np.dtype(ind["dtype"]).name},
           "output_dtype": np.dtype(outd["dtype"]).name}
    if labels is not None:
        out["label_acc"] = float((got.argmax(1) == labels).mean())
    return out


def artifacts(work: Path, key: str) -> list[tuple[str, str, bool, str]]:
    """[(route, precision, bound, path)] of every successful conversion of `key`."""
    out = []
    mdir = model_dir(work, key)
    for bound, base in ((False, mdir), (True, mdir / "bound")):
        for route in Route:
            for p in Precision:
                r = read_json(base / str(route) / f"{p}.json")
                if r and r.get("ok") and Path(r["artifact"]).is_file():
                    out.append((str(route), str(p), bound, r["artifact"]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--models", required=True)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out", required=True, type=Path)
    a = ap.parse_args(argv)
    threads = [int(t) for t in a.threads.split(",")]
    keys = [k for k in a.models.split(",") if k]

    results: dict[str, dict] = {}
    configs = []  # (id, interpreter, input index, input array, output index)
    for key in keys:
        mdir = model_dir(a.work, key)
        held = np.load(mdir / "heldout.npy")
        ref = np.load(mdir / "ref_logits.npy")
        labels = np.load(mdir / "heldout_labels.npy") if (mdir / "heldout_labels.npy").exists() else None
        for route, prec, bound, path in artifacts(a.work, key):
            rid = f"{key}|{route}|{prec}|{'bound' if bound else 'model'}"
            rec: dict = {"artifact": path, "size_bytes": Path(path).stat().st_size}
            try:
                rec["ops"] = tflite_ops(path)
                rec["transposes"] = int(rec["ops"].get("TRANSPOSE", 0))
                rec["ops_total"] = int(sum(rec["ops"].values()))
                if not bound:
                    rec["parity"] = parity(path, held, ref, labels)
                for t in threads:
                    it = _interpreter(path, t)
                    ind, outd = it.get_input_details()[0], it.get_output_details()[0]
                    configs.append((f"{rid}|{t}", it, ind["index"], _to_input(held[:1], ind), outd["index"]))
            except Exception as exc:  # noqa: BLE001 - a model the runtime cannot run is a result
                rec["error"] = f"{type(exc).__name__}: {str(exc).strip()[:500]}"
            results[rid] = rec
            print(f"  {rid}: {rec.get('parity', {}).get('cos_mean', '-')} {rec.get('error', '')}", flush=True)

    samples: dict[str, list[float]] = {c[0]: [] for c in configs}
    round_medians: dict[str, list[float]] = {c[0]: [] for c in configs}
    cpu: dict[str, list[float]] = {c[0]: [] for c in configs}  # CPU time of the calling thread
    load_start = Path("/proc/loadavg").read_text().split()[:3]
    t_start = time.time()
    for r in range(a.rounds):
        k = r % max(len(configs), 1)
        for cid, it, in_idx, x, out_idx in configs[k:] + configs[:k]:
            for _ in range(a.warmup):
                it.set_tensor(in_idx, x)
                it.invoke()
                it.get_tensor(out_idx)
            ts, cs = [], []
            for _ in range(a.runs):
                c0 = time.thread_time()
                t0 = time.perf_counter()
                it.set_tensor(in_idx, x)
                it.invoke()
                it.get_tensor(out_idx)
                ts.append((time.perf_counter() - t0) * 1e3)
                cs.append((time.thread_time() - c0) * 1e3)
            samples[cid] += ts
            cpu[cid] += cs
            round_medians[cid].append(float(np.median(ts)))
        print(f"  latency round {r + 1}/{a.rounds} done ({time.time() - t_start:.0f} s)", flush=True)
    for cid, ts in samples.items():
        rid, t = cid.rsplit("|", 1)
        arr = np.asarray(ts)
        results[rid].setdefault("latency", {})[t] = {
            "p50_ms": float(np.percentile(arr, 50)), "p90_ms": float(np.percentile(arr, 90)),
            "n": int(arr.size), "round_medians_ms": [round(v, 3) for v in round_medians[cid]],
            # with 1 thread XNNPACK runs on the calling thread: its CPU time is the work, whatever the machine's load
            "cpu_p50_ms": float(np.percentile(cpu[cid], 50)), "cpu_p90_ms": float(np.percentile(cpu[cid], 90))}
    del configs
    gc.collect()
    import importlib.metadata as md

    write_json(a.out, {"results": results, "protocol": {
        "rounds": a.rounds, "runs": a.runs, "warmup": a.warmup, "threads": threads,
        "runtime": f"ai-edge-litert {md.version('ai-edge-litert')} Interpreter, default resolver (XNNPACK)",
        "timed": "set_tensor + invoke + get_tensor",
        "loadavg_start": " ".join(load_start), "loadavg_end": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "seconds": round(time.time() - t_start, 1)}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
