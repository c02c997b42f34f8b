"""INT8 vs fp32 and TFLite vs ONNX Runtime speed-ups for a handful of zoo models, on this machine, in ONE run.

Each model is exported with edgeport's own pipeline (`edgeport export NAME --checkpoint CKPT --precision fp32,int8`;
random weights with BatchNorm statistics from real-photo crops, so INT8 has a working network's activation scales;
INT8 calibrated on the bundled photos) into --work (reused on the next run). Then
every (model, artifact, engine) configuration goes into a single job of the benchmark runner (the same
device_runner.py that runs on devices), which loads them all and times them in rotating rounds -- one inference of
each configuration per round -- so load from other processes on a shared machine hits all of them alike and the
ratios taken from the one run hold even when the absolute numbers drift.

    python benchmarks/runtime_speedups.py                        # default models, 1 thread, 40 rounds
    python benchmarks/runtime_speedups.py --models mobilenet_v2,ghostnet_x1_0 --threads 2 --runs 100
    python benchmarks/runtime_speedups.py --markdown              # the table as markdown (docs/devices.md)

Ratios per model: "INT8 speed-up" = fp32 time / INT8 time of the same engine; "TFLite vs ORT" = ORT time / TFLite
time of the same precision (>1: TFLite is faster). Two tables from the one run: with p50 and with min times (on a
machine shared with other jobs, min is the steadier estimate of what the kernels can do).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_MODELS = ("mobilenet_v3_small", "shufflenet_v2_x1_0", "ghostnet_x1_0", "mobilenet_v2", "efficientnet_lite0")
ARTIFACTS = {"onnx": "onnxruntime", "onnx_int8": "onnxruntime", "tflite_fp32": "tflite", "tflite_int8": "tflite"}


def bn_calibrated_checkpoint(name: str, path: Path) -> Path:
    """The state dict of converter_speed.bn_calibrated_model(name): random weights with BatchNorm statistics from
    real-photo crops. A raw random init's activations shrink to ~1e-6 by the last stages, which gives INT8 scales no
    trained network has (and that XNNPACK declines), so INT8 timings of raw inits mean little."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from converter_speed import bn_calibrated_model

    torch.save(bn_calibrated_model(name).state_dict(), path)
    return path


def export(name: str, out: Path, num_calibration: int) -> Path:
    done = ("bn_calibrated.pt", "model.onnx", "model_int8.onnx", "model_fp32.tflite", "model_int8.tflite")
    if (out / "report.json").exists() and all((out / f).exists() for f in done):
        return out
    print(f"exporting {name} -> {out} ...", file=sys.stderr, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = bn_calibrated_checkpoint(name, out / "bn_calibrated.pt")
    subprocess.run([sys.executable, "-m", "edgeport.cli", "--quiet", "export", name, "--checkpoint", str(ckpt),
                    "--out", str(out), "--precision", "fp32,int8", "--num-calibration", str(num_calibration)],
                   check=True)
    return out


def measure(dirs: dict[str, Path], *, threads: int, runs: int, warmup: int, timeout: float) -> dict:
    """One job with every configuration, run by the local target (the runner in its own process)."""
    from edgeport.report import load_report
    from edgeport.runtime.targets import LocalTarget, TargetOptions

    with tempfile.TemporaryDirectory(prefix="edgeport-speedups-") as tmp:
        job_dir = Path(tmp)
        arts = []
        for model, d in dirs.items():
            report = load_report(d)
            for art in ARTIFACTS:
                path = report.artifact_path(art)
                link = job_dir / f"{model}__{path.name}"
                os.symlink(path.resolve(), link)
                arts.append({"name": f"{model}|{art}", "file": link.name})
        job = {"artifacts": arts, "engines": ["onnxruntime", "tflite"], "threads": [threads], "warmup": warmup,
               "runs": runs, "time_budget_s": None, "pin": None, "parity_inputs": None, "rss": False, "seed": 0}
        (job_dir / "job.json").write_text(json.dumps(job))
        return LocalTarget().run_job(job_dir, options=TargetOptions(timeout_s=timeout))


def table(data: dict, models, *, markdown: bool, stat: str = "p50_ms") -> str:
    p50 = {(r["artifact"].split("|")[0], r["artifact"].split("|")[1]): r[stat] for r in data["results"]}
    head = ["model", "ORT fp32", "ORT INT8", "TFLite fp32", "TFLite INT8", "INT8 speed-up ORT", "INT8 speed-up TFLite",
            "TFLite vs ORT fp32", "TFLite vs ORT INT8"]
    rows = []
    ms = lambda v: "-" if v is None else f"{v:.2f}"
    ratio = lambda a, b: "-" if a is None or b is None else f"{a / b:.2f}x"
    for m in models:  # "-": the configuration could not run (see the `skipped` lines)
        o, oq, t, tq = (p50.get((m, a)) for a in ("onnx", "onnx_int8", "tflite_fp32", "tflite_int8"))
        rows.append([m, ms(o), ms(oq), ms(t), ms(tq), ratio(o, oq), ratio(t, tq), ratio(o, t), ratio(oq, tq)])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = lambda r: "  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma list of zoo model names")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "edgeport-speedups"),
                    help="export folder (reused)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=40, help="timed rounds (one inference of every configuration each)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--num-calibration", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    work = Path(args.work)
    dirs = {m: export(m, work / m, args.num_calibration) for m in models}
    data = measure(dirs, threads=args.threads, runs=args.runs, warmup=args.warmup, timeout=args.timeout)
    m = data["machine"]
    print(f"machine: {m['arch']} {m['cpu_model']}, {m['cores']} cores (affinity {m['affinity']}), {m['system']}, "
          f"Python {m['python']}, numpy {m['numpy']}; " + ", ".join(m["runtimes"].values()))
    load = os.getloadavg()
    print(f"one interleaved run: {len(data['results'])} configurations x {args.runs} rounds after {args.warmup} "
          f"warm-up rounds, {args.threads} thread(s); load average after the run {load[0]:.1f} / {load[1]:.1f} / "
          f"{load[2]:.1f} on {os.cpu_count()} CPUs")
    for stat in ("p50_ms", "min_ms"):  # both from the same run; min is the steadier one on a loaded machine
        print(f"\n{stat[:-3]} (ms) and ratios of {stat[:-3]}s:\n")
        print(table(data, models, markdown=args.markdown, stat=stat))
    print()
    for sk in data.get("skipped", []):
        print(f"skipped {sk['artifact']} ({sk['engine']}): {sk['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
