"""Step 5: the table. Reads WORK/models/<key>/{prepare.json,<route>/<prec>.json}, WORK/measure.json and WORK/meta.json;
writes WORK/summary.json and the markdown document (docs/peers.md), and returns the markdown table for stdout.

The document is generated: the tables, the list of rows a peer wins (computed, with the margin), and then the
hand-written analysis in `notes.md` next to this file (why each win happens and what it would take to overtake it).
"""
from __future__ import annotations

from pathlib import Path

from common import HERE, Precision, Route, model_dir, read_json, write_json

# a latency difference below this fraction is called a tie: on the shared machine three back-to-back measurements of
# the same artifacts differed by 10-25 % (CPU time included), so smaller differences are not evidence
LATENCY_TIE = 0.15


def _f(v, fmt="{:.3g}", none="-"):
    return none if v is None else fmt.format(v)


def collect(work: Path, keys: list[str]) -> list[dict]:
    meas = (read_json(work / "measure.json", {}) or {}).get("results", {})
    rows = []
    for key in keys:
        prep = read_json(model_dir(work, key) / "prepare.json", {}) or {}
        for bound in (False, True):
            base = model_dir(work, key) / ("bound" if bound else "")
            for route in Route:
                if bound and route is not Route.EDGEPORT:
                    continue
                for p in Precision:
                    conv = read_json(base / str(route) / f"{p}.json")
                    if conv is None:
                        if bound and not (base / "model.onnx").exists():
                            continue
                        conv = {"ok": False, "error": "no result: the conversion did not finish in this run "
                                                      "(interrupted or still running)"}
                    m = meas.get(f"{key}|{route}|{p}|{'bound' if bound else 'model'}", {})
                    lat = m.get("latency", {})
                    row = {"model": key, "route": str(route), "precision": str(p), "bound": bound,
                           "ok": bool(conv.get("ok")) and "error" not in m,
                           "error": conv.get("error") or m.get("error"),
                           "convert_s": conv.get("convert_s"), "wall_s": conv.get("wall_s"),
                           "size_kb": (m.get("size_bytes") or conv.get("size_bytes") or 0) / 1024 or None,
                           "ops": m.get("ops"), "ops_total": m.get("ops_total"), "transposes": m.get("transposes"),
                           "parity": m.get("parity"), "command": conv.get("command"),
                           "p50_1": lat.get("1", {}).get("p50_ms"), "p90_1": lat.get("1", {}).get("p90_ms"),
                           "cpu_1": lat.get("1", {}).get("cpu_p50_ms"),
                           "p50_2": lat.get("2", {}).get("p50_ms"), "p90_2": lat.get("2", {}).get("p90_ms"),
                           "rounds_1": lat.get("1", {}).get("round_medians_ms"),
                           "torch_label_acc": prep.get("torch_label_accuracy"), "note": prep.get("note")}
                    rows.append(row)
    # ratio to the shuffle-free bound (same model, same precision, same thread count)
    for r in rows:
        b = next((x for x in rows if x["model"] == r["model"] and x["bound"] and x["precision"] == r["precision"]
                  and x["ok"]), None)
        r["bound_ratio_cpu"] = (r["cpu_1"] / b["cpu_1"]) if (b and r["cpu_1"] and b["cpu_1"] and not r["bound"]) \
            else None
        for t in ("1", "2"):
            r[f"bound_ratio_{t}"] = (r[f"p50_{t}"] / b[f"p50_{t}"]) if (b and r[f"p50_{t}"] and b[f"p50_{t}"]
                                                                     and not r["bound"]) else None
    return rows


def _notable(ops: dict | None, n: int = 4) -> str:
    if not ops:
        return "-"
    skip = {"CONV_2D", "DEPTHWISE_CONV_2D"}
    parts = [f"{k}{v}" for k, v in ops.items() if k not in skip][:n]
    return ", ".join(parts)


def table(rows: list[dict]) -> str:
    head = ("| model | route | prec | status | conv s | ops (notable) | TRANSPOSE | KB | cos mean/min | centered cos "
            "mean/min | max abs | top-1 agree | label acc | 1T CPU p50 ms | 1T p50/p90 ms | 2T p50/p90 ms | "
            "x bound CPU/1T/2T |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        name = r["model"] + (" (bound: no shuffle)" if r["bound"] else "")
        if not r["ok"]:
            err = (r["error"] or "failed").replace("|", "/").replace("\n", " ")[:160]
            lines.append(f"| {name} | {r['route']} | {r['precision']} | FAILED: {err} |" + " - |" * 13)
            continue
        p = r["parity"] or {}
        lines.append(
            f"| {name} | {r['route']} | {r['precision']} | ok | {_f(r['convert_s'], '{:.1f}')} | "
            f"{_f(r['ops_total'], '{:d}')} ({_notable(r['ops'])}) | {_f(r['transposes'], '{:d}')} | "
            f"{_f(r['size_kb'], '{:.0f}')} | "
            + (f"{p['cos_mean']:.4f}/{p['cos_min']:.4f} | {_f(p.get('ccos_mean'), '{:.4f}')}/"
               f"{_f(p.get('ccos_min'), '{:.4f}')} | {p['max_abs']:.3g} | {p['top1_agree']:.0%} | "
               f"{_f(p.get('label_acc'), '{:.0%}')} | " if p else "- | - | - | - | - | ")
            + f"{_f(r['cpu_1'], '{:.2f}')} | "
            + f"{_f(r['p50_1'], '{:.2f}')}/{_f(r['p90_1'], '{:.2f}')} | {_f(r['p50_2'], '{:.2f}')}/"
              f"{_f(r['p90_2'], '{:.2f}')} | "
            + (f"{_f(r['bound_ratio_cpu'], '{:.2f}')}/{_f(r['bound_ratio_1'], '{:.2f}')}/"
               f"{_f(r['bound_ratio_2'], '{:.2f}')} |" if r["bound_ratio_1"] else "- |"))
    return "\n".join(lines)


METRICS = [  # (key, label, better: "low"|"high", tie tolerance as a fraction (latency) or absolute)
    ("cpu_1", "1-thread p50 CPU time", "low", LATENCY_TIE),
    ("p50_1", "1-thread p50 latency", "low", LATENCY_TIE),
    ("p50_2", "2-thread p50 latency", "low", LATENCY_TIE),
    ("cos_mean", "mean cosine vs torch", "high", 0.0005),
    ("ccos_mean", "mean centered cosine vs torch", "high", 0.002),
    ("top1_agree", "top-1 agreement with torch", "high", 0.0),
    ("size_kb", "file size", "low", 0.01),
    ("transposes", "TRANSPOSE count", "low", 0),
    ("convert_s", "conversion time", "low", 0.10),
]


def _val(r, key):
    if key in ("cos_mean", "ccos_mean", "top1_agree"):
        return (r["parity"] or {}).get(key)
    return r.get(key)


def peer_wins(rows: list[dict]) -> list[dict]:
    """Every (model, precision, metric) where a peer is better than edgeport beyond the tie tolerance."""
    wins = []
    for model in dict.fromkeys(r["model"] for r in rows):
        for prec in ("fp32", "int8"):
            ours = next((r for r in rows if r["model"] == model and r["precision"] == prec and not r["bound"]
                         and r["route"] == "edgeport"), None)
            for r in rows:
                if r["model"] != model or r["precision"] != prec or r["bound"] or r["route"] == "edgeport":
                    continue
                if not r["ok"]:
                    continue
                if ours is None or not ours["ok"]:
                    wins.append({"model": model, "precision": prec, "peer": r["route"], "metric": "converts at all",
                                 "peer_value": "ok", "edgeport_value": (ours or {}).get("error", "missing")})
                    continue
                for key, label, better, tol in METRICS:
                    a, b = _val(r, key), _val(ours, key)
                    if a is None or b is None:
                        continue
                    rel = key in ("cpu_1", "p50_1", "p50_2", "size_kb", "convert_s")
                    margin = (b - a) / b if (better == "low" and rel and b) else (b - a if better == "low" else a - b)
                    if margin > tol:
                        wins.append({"model": model, "precision": prec, "peer": r["route"], "metric": label,
                                     "peer_value": a, "edgeport_value": b})
    return wins


def _wins_md(wins: list[dict]) -> str:
    if not wins:
        return "No peer beats edgeport on any row (beyond the tie tolerances).\n"
    out = ["| model | prec | peer | metric | peer | edgeport |", "|---|---|---|---|---|---|"]
    for w in wins:
        fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
        out.append(f"| {w['model']} | {w['precision']} | {w['peer']} | {w['metric']} | {fmt(w['peer_value'])} | "
                   f"{fmt(w['edgeport_value'])} |")
    return "\n".join(out) + "\n"


def _versions_md(meta: dict) -> str:
    lines = ["| environment | versions |", "|---|---|"]
    main = meta.get("main_env", {})
    lines.append("| edgeport (main env) | " + ", ".join(f"{k} {v}" for k, v in main.items()) + " |")
    for peer, v in (meta.get("peer_envs") or {}).items():
        if "error" in v:
            lines.append(f"| {peer} venv | install FAILED: {v['error'][-300:].replace('|', '/')} |")
        else:
            lines.append(f"| {peer} venv | " + ", ".join(f"{k} {val}" for k, val in v.items()) + " |")
    return "\n".join(lines)


def _errors_md(rows: list[dict]) -> str:
    failed = [r for r in rows if not r["ok"]]
    if not failed:
        return "Every conversion succeeded and every artifact ran.\n"
    return "\n".join(f"- `{r['model']}` {r['route']} {r['precision']}: `{(r['error'] or '').strip()[:1200]}`"
                     for r in failed) + "\n"


def render(*, work: Path, keys: list[str], doc: Path | None) -> str:
    rows = collect(work, keys)
    wins = peer_wins(rows)
    meta = read_json(work / "meta.json", {}) or {}
    proto = (read_json(work / "measure.json", {}) or {}).get("protocol", {})
    write_json(work / "summary.json", {"rows": rows, "peer_wins": wins, "meta": meta, "protocol": proto})
    tbl = table(rows)
    if doc is not None:
        mach = meta.get("machine", {})
        notes = (HERE / "notes.md").read_text() if (HERE / "notes.md").exists() else ""
        cmds = {}
        for r in rows:
            if r["ok"] and r.get("command") and r["model"] == keys[0] and not r["bound"]:
                cmds[(r["route"], r["precision"])] = r["command"]
        text = f"""# edgeport vs onnx2tf vs litert-torch: the same checkpoints, one run

Generated by `python benchmarks/peers/run.py` (then `benchmarks/peers/render.py`); the hand-written analysis at the
end is `benchmarks/peers/notes.md`. Raw numbers: `<work>/summary.json` (default work dir
`~/.cache/edgeport-peers/run`).

## Machine and versions

- {mach.get('cpu_model')}, {mach.get('cpus')} CPUs visible ({', '.join(mach.get('isa', []))}), {mach.get('mem')} RAM,
  {mach.get('platform')}. Load average when the run started: {' '.join(mach.get('loadavg_at_start', []))}
  (the machine is shared with other jobs: latency is noisy, see the protocol).
- Latency runtime: {proto.get('runtime')}; {proto.get('rounds')} rounds x ({proto.get('warmup')} warm-up +
  {proto.get('runs')} timed) runs per configuration, threads {proto.get('threads')}, every route's interpreters in
  one process and interleaved (configuration order rotated each round); timed: {proto.get('timed')}.
  Measurement took {proto.get('seconds')} s; load average at its start/end: {proto.get('loadavg_start')} /
  {proto.get('loadavg_end')}.

{_versions_md(meta)}

## What each route does here

- **edgeport**: `edgeport.export.tflite.convert(model.onnx, precisions=[p], calibration=..., io_dtype="int8",
  input_layout="nhwc")` — the public converter, default options (channel-shuffle pass, bias correction on INT8).
- **onnx2tf**: `onnx2tf.convert(...)` on the same simplified ONNX file; INT8 = `-oiqt -qt per-channel -iqd int8 -oqd
  int8 -cind input calib_nhwc.npy 0 1` (the same normalised calibration samples; no `-prf`). Its sample-data file
  is written into its working directory so it does not download one; the venv's `bin/` is on PATH for `onnxsim`.
- **litert-torch**: `litert_torch.convert(to_channel_last_io(module, args=[0]), sample)` from the same weights
  (NHWC input); INT8 = PT2E `PT2EQuantizer` symmetric per-channel static config, observers fed the same calibration
  samples, `convert_pt2e(fold_quantize=False)`, then `litert_torch.convert(..., quant_config=QuantConfig(...))`.
- All INT8 models are full-integer (int8 input and output); parity feeds them inputs quantized with each model's own
  input scale/zero-point and dequantizes the output.
- Data: calibration = 64 samples of the model's calibration split; parity = 64 held-out samples of the disjoint
  validation split (`edgeport.calibration.load_samples(split="validation")`): crops of the held-out photographs
  (6 bundled photos, disjoint from the calibration photos) for the ImageNet-shaped models, held-out scikit-learn digits for the digits models (which also have label accuracy). torch fp32
  logits are the reference. Random-init models' INT8 numbers compare routes with each other, not with a trained model.
- Columns: "cos" = cosine of the logits vs torch per held-out sample (mean/min); "centered cos" = the same after
  subtracting torch's mean logit vector over the held-out set from both sides (the input-dependent part; random-init
  nets give nearly the same logits for every input, see the notes); "top-1 agree" = argmax equal to torch's;
  "label acc" = accuracy against the labels (digits only); "1T CPU p50" = CPU time of the calling thread per
  1-thread inference (not inflated by other jobs on the machine); "1T/2T p50/p90" = wall clock with 1/2 threads.
- "x bound CPU/1T/2T": the row's 1T CPU, 1T wall and 2T wall p50 divided by those of the same network with its
  channel shuffles deleted (`channel_shuffle=False`, same weights), converted by edgeport, same precision: the lower
  bound of any correct conversion of a ShuffleNet on this runtime.
- conv s: the converter call only (imports excluded), one conversion per process; wall time with imports is in
  summary.json.

## Results

{tbl}

## Rows a peer wins (computed; latency ties within {LATENCY_TIE:.0%} are not counted)

{_wins_md(wins)}
## Failures

{_errors_md(rows)}
{notes}"""
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(text)
    return tbl


if __name__ == "__main__":  # python render.py WORK key1,key2 [doc]
    import sys

    print(render(work=Path(sys.argv[1]), keys=sys.argv[2].split(","), doc=Path(sys.argv[3]) if len(sys.argv) > 3
                 else None))
