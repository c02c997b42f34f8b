"""AugShuffleNet vs ShuffleNetV2 (CIFAR layout, 32x32): params and MACs against the published numbers, latency of
fp32 / INT8 TFLite (XNNPACK) and ONNX Runtime measured in ONE interleaved benchmark job, and digits accuracy of the
trained x0.5 checkpoints through every artifact. Writes docs/augshufflenet.md, docs/augshufflenet.json and
docs/img/augshufflenet_*.png.

    python benchmarks/augshufflenet_vs_v2.py                    # the full comparison (about 5 minutes on 2 cores)
    python benchmarks/augshufflenet_vs_v2.py --widths x0_5 --ratios 0.375 --runs 10 --out /tmp/aug

Seed 000 (the AugShuffleNet author's blog post) asserts AugShuffleNet is faster than ShuffleNetV2 at every width and
that even r=0.125 at 1.5x keeps ~80 % of the FLOPs / ~77 % of the params; it never measured latency. This script
makes the assertion a measurement through edgeport's own export / convert / benchmark path.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CKPT_DIR = ROOT / "calibration" / "checkpoints"
WIDTHS = ("x0_5", "x1_0", "x1_5")
RATIOS = (0.375, 0.25, 0.125)
COLUMNS = {  # column -> (engine, precision, display)
    "tflite_fp32": ("tflite", "fp32", "XNNPACK fp32"),
    "tflite_int8": ("tflite", "int8", "XNNPACK INT8"),
    "ort_fp32": ("onnxruntime", "fp32", "ORT fp32"),
    "ort_int8": ("onnxruntime", "int8", "ORT INT8"),
}
# The author's AugShuffleNet-Plus repo, CIFAR-10, r = 0.375 (models.md section 3): (params, MACs).
PUBLISHED_AUG = {"x0_5": (0.33e6, 10.20e6), "x1_0": (1.21e6, 43.55e6), "x1_5": (2.22e6, 85.38e6)}
# Seed 000 / the blog: AugShuffleNet 1.5x at r=0.125 has 79.6 % of ShuffleNetV2 1.5x's FLOPs and 76.7 % of its
# params (CIFAR-10).
PUBLISHED_R0125_X1_5 = {"macs_vs_v2": 0.796, "params_vs_v2": 0.767}
NOISE = 0.05


def variants(widths, ratios) -> list[dict]:
    out = []
    for w in widths:
        out.append({"key": f"v2_{w}", "model": f"shufflenet_v2_cifar_{w}", "width": w, "ratio": 0.5, "kwargs": {},
                    "family": "ShuffleNetV2"})
        for r in ratios:
            out.append({"key": f"aug_{w}_r{int(r * 1000):04d}", "model": f"augshufflenet_{w}", "width": w,
                        "ratio": r, "kwargs": {} if r == 0.375 else {"split_ratio": r}, "family": "AugShuffleNet"})
    return out


def _checkpoint(model_name: str) -> Path | None:
    p = CKPT_DIR / f"{model_name}_digits.pt"
    return p if p.is_file() else None


def build(v: dict, art_dir: Path, *, columns: list[str], seed: int = 0) -> dict:
    """Model -> ONNX (+ params, MACs) -> TFLite fp32/INT8 and ORT INT8 (calibrated on digits train images)."""
    import torch

    from edgeport.native import captured_native_output
    from edgeport.calibration import load_samples
    from edgeport.export.analysis import count_macs
    from edgeport.export.onnx_export import export_onnx
    from edgeport.export.ort_int8 import quantize_onnx_int8
    from edgeport.export.tflite.convert import convert
    from edgeport.export.zoo_stats import zoo_stats
    from edgeport.models import build_model, get_spec
    from edgeport.models.layers import count_params

    t0 = time.perf_counter()
    spec = get_spec(v["model"])
    torch.manual_seed(seed)
    model = build_model(v["model"], **v["kwargs"])
    ckpt = _checkpoint(v["model"]) if v["ratio"] in (0.5, 0.375) else None
    if ckpt is not None:
        model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
        model.eval()
    onnx_path = art_dir / f"{v['key']}.onnx"
    with captured_native_output():
        export_onnx(model, input_shape=spec.input_shape, path=onnx_path)
    info = {**v, "params": count_params(model), "macs": count_macs(onnx_path), "checkpoint": ckpt.name if ckpt else None,
            "files": {}}
    if not v["kwargs"]:  # the registered default: cross-check with the zoo's cached statistics
        zs = zoo_stats(v["model"])
        info["zoo_stats"] = {"params": zs["params"], "macs": zs["macs"]}
    calib = load_samples("digits", model_spec=spec, num=64, seed=seed)
    precs = [COLUMNS[c][1] for c in columns if COLUMNS[c][0] == "tflite"]
    if precs:
        with tempfile.TemporaryDirectory(dir=art_dir) as tmp, captured_native_output():
            res = convert(onnx_path, out_dir=tmp, precisions=precs, calibration=calib)
            for p in precs:
                name = f"{v['key']}_tflite_{p}.tflite"
                Path(res.artifacts[p]).replace(art_dir / name)
                info["files"][f"tflite_{p}"] = name
    if "ort_fp32" in columns:
        info["files"]["ort_fp32"] = onnx_path.name
    if "ort_int8" in columns:
        name = f"{v['key']}_ort_int8.onnx"
        with captured_native_output():
            quantize_onnx_int8(onnx_path=onnx_path, out_path=art_dir / name, calibration=calib)
        info["files"]["ort_int8"] = name
    info["build_s"] = round(time.perf_counter() - t0, 1)
    return info


def digits_accuracy(info: dict, art_dir: Path) -> dict:
    """Held-out digits accuracy (540 images) of the torch checkpoint and of every artifact built from it."""
    import torch

    from edgeport.calibration import load_samples
    from edgeport.models import build_model, get_spec
    from edgeport.runtime import open_engine

    spec = get_spec(info["model"])
    held = load_samples("digits", model_spec=spec, split="validation")
    x = held.array()
    y = np.asarray(held.labels)
    model = build_model(info["model"])
    model.load_state_dict(torch.load(CKPT_DIR / info["checkpoint"], map_location="cpu", weights_only=True))
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(torch.from_numpy(x[i:i + 128])).argmax(1) for i in range(0, len(x), 128)]).numpy()
    acc = {"torch fp32": float((pred == y).mean())}
    for col, fname in info["files"].items():
        eng = open_engine(COLUMNS[col][0], art_dir / fname, threads=1)
        nhwc = COLUMNS[col][0] == "tflite"
        preds = []
        for i in range(len(x)):
            xi = x[i:i + 1].transpose(0, 2, 3, 1) if nhwc else x[i:i + 1]
            preds.append(int(np.argmax(eng.run([np.ascontiguousarray(xi)])[0])))
        acc[COLUMNS[col][2]] = float((np.asarray(preds) == y).mean())
    return {"n": int(len(y)), "accuracy": acc}


def machine_lines(machine: dict) -> list[str]:
    from edgeport.guidelines import machine_lines as ml

    return ml(machine)


def write_docs(out: Path, *, infos: list[dict], entries: list[dict], accuracy: dict, columns: list[str],
               settings: dict, machine: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stat = settings["stat"]
    other = "p50" if stat == "min" else "min"
    by = {s_: {(e["artifact"], e["engine"]): e[f"{s_}_ms"] for e in entries} for s_ in ("min", "p50")}
    for info in infos:
        info["ms"] = {c: by[stat].get((f"{info['key']}_{c}", COLUMNS[c][0])) for c in columns}
        info[f"ms_{other}"] = {c: by[other].get((f"{info['key']}_{c}", COLUMNS[c][0])) for c in columns}
    v2 = {i["width"]: i for i in infos if i["family"] == "ShuffleNetV2"}
    why = ("the least-disturbed round: on a machine shared with other jobs the median is inflated by preemption"
           if stat == "min" else "the median round")
    L = ["# AugShuffleNet vs ShuffleNetV2, measured", "",
         f"Generated by `{settings['command']}` on {settings['date']}. All latencies come from ONE interleaved "
         "benchmark job (every round runs every configuration once, in a rotated order); comparisons are ratios "
         f"of each configuration's {stat} time from that run ({why}; the {other} ratio is shown next to it).", "",
         "## Machine", "", *machine_lines(machine), "",
         "## Settings", "",
         f"- input 1x3x32x32 (CIFAR layout: stride-1 stem, no max-pool), {settings['threads']} thread(s), "
         f"{settings['runs']} timed rounds after {settings['warmup']} warm-up rounds, target `{settings['target']}`",
         "- path: torch -> `export_onnx` -> edgeport's TFLite converter (fp32 and full INT8) and ORT static INT8 "
         "(QDQ), both calibrated on 64 digits train images; shuffles are removed exactly by the converter's shuffle "
         "pass (TFLite); ORT runs the ONNX graph as exported",
         "- AugShuffleNet: `models/shufflenet.py` (augmented blocks in the 10 stride-1 blocks of stages 3-4, shuffle "
         "groups 2, with the channel shuffle). The published numbers are the author's AugShuffleNet-Plus (the same "
         "block without the shuffle: params and MACs identical)",
         "- x0.5 models carry the digits-trained checkpoints (`calibration/checkpoints`); the others are randomly "
         "initialised (latency does not depend on the weights' values)", ""]
    # params / MACs
    L += ["## Parameters and multiply-adds", "",
          "MACs are counted exactly from the exported ONNX graph (`edgeport.export.analysis.count_macs`); the "
          "registered defaults are cross-checked with `edgeport.export.zoo_stats`.", "",
          "| model | r | params | MMACs | published params | published MMACs | params vs V2 | MACs vs V2 |",
          "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for i in infos:
        base = v2[i["width"]]
        pub_p = pub_m = "-"
        if i["family"] == "AugShuffleNet" and i["ratio"] == 0.375:
            pp, pm = PUBLISHED_AUG[i["width"]]
            pub_p = f"{pp / 1e6:.2f}M ({i['params'] / pp - 1:+.1%})"
            pub_m = f"{pm / 1e6:.2f} ({i['macs'] / pm - 1:+.1%})"
        if i["family"] == "AugShuffleNet" and i["ratio"] == 0.125 and i["width"] == "x1_5":
            pub_p = f"{PUBLISHED_R0125_X1_5['params_vs_v2']:.1%} of V2"
            pub_m = f"{PUBLISHED_R0125_X1_5['macs_vs_v2']:.1%} of V2"
        zs = i.get("zoo_stats")
        zs_note = "" if not zs or (zs["params"] == i["params"] and zs["macs"] == i["macs"]) else " (zoo_stats differs!)"
        L.append(f"| {i['model']}{zs_note} | {i['ratio']:g} | {i['params'] / 1e6:.3f}M | {i['macs'] / 1e6:.2f} | "
                 f"{pub_p} | {pub_m} | {i['params'] / base['params']:.1%} | {i['macs'] / base['macs']:.1%} |")
    L.append("")
    # latency
    L += [f"## Latency ({stat} ms) and ratio to ShuffleNetV2 of the same width", "",
          "| model | r | MMACs | " + " | ".join(f"{COLUMNS[c][2]} ms | vs V2 | vs V2 ({other})" for c in columns)
          + " |", "|---|---:|---:|" + "---:|---:|---:|" * len(columns)]
    faster = {c: [] for c in columns}
    for i in infos:
        base = v2[i["width"]]
        cells = [i["model"], f"{i['ratio']:g}", f"{i['macs'] / 1e6:.1f}"]
        for c in columns:
            t, tb = i["ms"][c], base["ms"][c]
            r = None if t is None or not tb else t / tb
            if i["family"] == "AugShuffleNet" and r is not None:
                faster[c].append((i["width"], i["ratio"], r))
            to, tbo = i[f"ms_{other}"][c], base[f"ms_{other}"][c]
            ro = None if to is None or not tbo else to / tbo
            cells += ["-" if t is None else f"{t:.3f}", "-" if r is None else f"{r:.2f}",
                      "-" if ro is None else f"{ro:.2f}"]
        L.append("| " + " | ".join(cells) + " |")
    L.append("")
    L += ["Seed 000's claim, \"AugShuffleNet is faster than ShuffleNetV2\", per runtime (faster = ratio below "
          f"{1 - NOISE:.2f}, slower = above {1 + NOISE:.2f}, else no measurable difference):", ""]
    for c in columns:
        rs = faster[c]
        n_f = sum(r <= 1 - NOISE for *_, r in rs)
        n_s = sum(r >= 1 + NOISE for *_, r in rs)
        d = [f"{w.replace('x', '').replace('_', '.')}x r={r:g}: {x:.2f}" for w, r, x in rs]
        L.append(f"- **{COLUMNS[c][2]}**: faster in {n_f}/{len(rs)}, slower in {n_s}/{len(rs)} ({'; '.join(d)})")
    L.append("")
    # accuracy
    if accuracy:
        names = list(next(iter(accuracy.values()))["accuracy"])
        L += ["## Digits accuracy of the trained x0.5 variants (540 held-out images)", "",
              "| model | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        for m, a in accuracy.items():
            L.append(f"| {m} | " + " | ".join(f"{a['accuracy'][k]:.2%}" for k in names) + " |")
        L.append("")
    # plots
    img = out / "img"
    img.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(columns), figsize=(3.4 * len(columns), 3.3), squeeze=False)
    for ax, c in zip(axes[0], columns):
        for fam, marker in (("ShuffleNetV2", "o"), ("AugShuffleNet", "^")):
            pts = [(i["macs"] / 1e6, i["ms"][c], i) for i in infos if i["family"] == fam and i["ms"][c]]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, label=fam)
            for x, y, i in pts:
                if fam == "AugShuffleNet":
                    ax.annotate(f"{i['ratio']:g}", (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
        ax.set_title(COLUMNS[c][2], fontsize=9)
        ax.set_xlabel("MMACs")
        ax.set_ylabel(f"{stat} ms")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(img / "augshufflenet_latency.png", dpi=110)
    plt.close(fig)
    L += ["![latency vs MACs](img/augshufflenet_latency.png)", "",
          "(labels: AugShuffleNet split ratio r; ShuffleNetV2 = circles)", ""]
    notes_begin, notes_end = "<!-- notes: kept when the report is regenerated -->", "<!-- end notes -->"
    md = out / "augshufflenet.md"
    old = ""
    if md.exists():
        t = md.read_text()
        if notes_begin in t and notes_end in t:
            old = t[t.index(notes_begin):t.index(notes_end) + len(notes_end)]
    L += ["## Notes", "", old or f"{notes_begin}\n(no notes yet)\n{notes_end}", ""]
    md.write_text("\n".join(L))
    (out / "augshufflenet.json").write_text(json.dumps(
        {"settings": settings, "machine": machine, "models": infos, "accuracy": accuracy, "latency": entries},
        indent=1, default=str) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--widths", default=",".join(WIDTHS))
    ap.add_argument("--ratios", default=",".join(str(r) for r in RATIOS))
    ap.add_argument("--columns", default=",".join(COLUMNS), help=f"comma list of {', '.join(COLUMNS)}")
    ap.add_argument("--target", default="local")
    ap.add_argument("--runs", type=int, default=150)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stat", choices=("min", "p50"), default="min",
                    help="per-configuration statistic for the ratios (min: least-disturbed round)")
    ap.add_argument("--no-accuracy", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "docs")
    args = ap.parse_args(argv)

    from edgeport.runtime.bench import BenchSettings, bench_artifacts
    from edgeport.runtime.targets import TargetOptions, parse_target

    widths = [w.strip() for w in args.widths.split(",") if w.strip()]
    ratios = [float(r) for r in args.ratios.split(",") if r.strip()]
    columns = [c.strip() for c in args.columns.split(",") if c.strip()]
    target = parse_target(args.target)
    vs = variants(widths, ratios)
    with tempfile.TemporaryDirectory(prefix="edgeport-aug-") as tmp:
        art = Path(tmp)
        infos = []
        for k, v in enumerate(vs, 1):
            try:
                info = build(v, art, columns=columns)
            except Exception as exc:  # noqa: BLE001 - e.g. a split ratio that does not divide a width
                print(f"[{k}/{len(vs)}] {v['model']} r={v['ratio']:g}: skipped: {exc}", flush=True)
                continue
            infos.append(info)
            print(f"[{k}/{len(vs)}] {v['model']} r={v['ratio']:g}: {info['params'] / 1e6:.3f}M params, "
                  f"{info['macs'] / 1e6:.2f} MMACs, built in {info['build_s']} s", flush=True)
        accuracy = {}
        if not args.no_accuracy:
            for info in infos:
                if info["checkpoint"]:
                    a = digits_accuracy(info, art)
                    accuracy[info["model"]] = a
                    print(f"digits accuracy {info['model']}: " + ", ".join(
                        f"{k} {v:.2%}" for k, v in a["accuracy"].items()), flush=True)
        artifacts = {f"{i['key']}_{c}": art / f for i in infos for c, f in i["files"].items()}
        engines = tuple(dict.fromkeys(COLUMNS[c][0] for c in columns))
        n = sum(len(i["files"]) for i in infos)
        print(f"timing {n} configurations interleaved on {target.url}: {args.warmup} + {args.runs} rounds ...",
              flush=True)
        t0 = time.perf_counter()
        outcome = bench_artifacts(artifacts=artifacts, target=target,
                                  options=TargetOptions(timeout_s=3600),
                        settings=BenchSettings(engines=engines, threads=(args.threads,), warmup=args.warmup,
                                               runs=args.runs, parity=target.url != "local", rss=False))
        print(f"timed in {time.perf_counter() - t0:.0f} s", flush=True)
    settings = {"command": "python benchmarks/augshufflenet_vs_v2.py " + " ".join(sys.argv[1:] if argv is None else argv),
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "target": target.url,
                "threads": args.threads, "runs": args.runs, "warmup": args.warmup, "columns": columns,
                "stat": args.stat}
    args.out.mkdir(parents=True, exist_ok=True)
    write_docs(args.out, infos=infos, entries=outcome.entries, accuracy=accuracy, columns=columns,
               settings=settings, machine=outcome.machine)
    p50 = {(e["artifact"], e["engine"]): e[f"{args.stat}_ms"] for e in outcome.entries}
    print(f"\n{args.stat} ms\n{'model':28s} {'r':>6s} {'params':>9s} {'MMACs':>7s} " + " ".join(f"{COLUMNS[c][2]:>13s}" for c in columns))
    for i in infos:
        print(f"{i['model']:28s} {i['ratio']:6g} {i['params'] / 1e6:8.3f}M {i['macs'] / 1e6:7.2f} " + " ".join(
            f"{p50.get((i['key'] + '_' + c, COLUMNS[c][0])) or float('nan'):13.3f}" for c in columns))
    print(f"\nwrote {args.out / 'augshufflenet.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
