"""Step 2: every route x precision converts every prepared model, each conversion in its own process.

edgeport runs under this interpreter; onnx2tf and litert-torch under their venvs' interpreters (`envs.py`).
Each conversion writes WORK/models/<key>/<route>/<precision>.json: {ok, convert_s (the converter call only),
wall_s (the whole process, imports included), artifact, command, error}. A failed install or conversion is a
result like any other: it is rendered in the table with its error.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import HERE, Precision, Route, artifact_dir, model_dir, read_json, write_json
from envs import Peer, venv_env, venv_python

TIMEOUT_S = 1800
WORKERS = {Route.EDGEPORT: "worker_edgeport.py", Route.ONNX2TF: "worker_onnx2tf.py",
           Route.LITERT_TORCH: "worker_litert_torch.py"}
PEER_OF = {Route.ONNX2TF: Peer.ONNX2TF, Route.LITERT_TORCH: Peer.LITERT_TORCH}


def _command(route: Route, precision: Precision, *, mdir: Path, onnx: Path, out: Path, result: Path) -> list[str]:
    py = sys.executable if route is Route.EDGEPORT else str(venv_python(PEER_OF[route]))
    cmd = [py, str(HERE / WORKERS[route]), "--out", str(out), "--precision", str(precision), "--result", str(result)]
    if route is Route.LITERT_TORCH:
        cmd += ["--model", str(mdir / "model.json")]
        calib = mdir / "calib_nchw.npy"
    elif route is Route.ONNX2TF:
        cmd += ["--onnx", str(onnx)]
        calib = mdir / "calib_nhwc.npy"
    else:
        cmd += ["--onnx", str(onnx)]
        calib = mdir / "calib_nchw.npy"
    if precision is Precision.INT8:
        cmd += ["--calib", str(calib)]
    return cmd


def convert_one(route: Route, precision: Precision, *, work: Path, key: str, bound: bool = False,
                env_error: str | None = None, reuse: bool = False, log=print) -> dict:
    """Convert one (model, route, precision); returns and writes the result dict. `bound`: the shuffle-free twin.
    `reuse`: keep an existing successful result whose artifact still exists."""
    mdir = model_dir(work, key)
    base = mdir / "bound" if bound else mdir
    out = base / str(route) if bound else artifact_dir(work, key, route)
    out.mkdir(parents=True, exist_ok=True)
    result_path = out / f"{precision}.json"
    old = read_json(result_path)
    if reuse and old and old.get("ok") and Path(old.get("artifact", "")).is_file():
        log(f"  convert {key}{' (bound)' if bound else ''} {route} {precision}: reused ({old.get('convert_s')} s)")
        return old
    if env_error is not None:
        res = {"ok": False, "error": f"{route} could not be installed: {env_error}"}
        write_json(result_path, res)
        return res
    cmd = _command(route, precision, mdir=mdir, onnx=base / "model.onnx", out=out / f"tmp-{precision}"
                   if route is Route.ONNX2TF else out, result=result_path)
    if result_path.exists():
        result_path.unlink()
    env = venv_env(PEER_OF[route]) if route in PEER_OF else None
    log(f"  convert {key}{' (bound)' if bound else ''} {route} {precision} ...")
    t0 = time.perf_counter()
    try:
        # onnx2tf reads its sample-data file from the working directory (see prepare.write_onnx2tf_sample_file)
        proc = subprocess.run(cmd, cwd=str(work / "onnx2tf-cwd") if route is Route.ONNX2TF else str(out),
                              env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        wall = time.perf_counter() - t0
        res = read_json(result_path) or {"ok": False, "error": f"worker wrote no result (exit {proc.returncode})"}
        if not res.get("ok"):
            res["stderr_tail"] = proc.stderr[-2500:]
    except subprocess.TimeoutExpired:
        wall = time.perf_counter() - t0
        res = {"ok": False, "error": f"timed out after {TIMEOUT_S} s"}
    res["wall_s"] = round(wall, 1)
    res["argv"] = cmd
    if res.get("ok") and route is Route.ONNX2TF:  # move the one file we keep out of onnx2tf's output folder
        final = out / f"model_{precision}.tflite"
        Path(res["artifact"]).replace(final)
        res["artifact_onnx2tf_name"] = Path(res["artifact"]).name
        res["artifact"] = str(final)
        shutil.rmtree(out / f"tmp-{precision}", ignore_errors=True)  # saved_model + other variants: disk
    if res.get("ok"):
        res["size_bytes"] = Path(res["artifact"]).stat().st_size
    write_json(result_path, res)
    status = f"ok {res.get('convert_s')} s" if res.get("ok") else f"FAILED: {res.get('error', '')[:200]}"
    log(f"    {status} (wall {res['wall_s']} s)")
    return res


def convert_all(*, work: Path, keys: list[str], routes: list[Route], precisions: list[Precision],
                env_errors: dict[Route, str], reuse: bool = False, parallel_routes: bool = False, log=print) -> None:
    """Every (model, route, precision), plus edgeport on the shuffle-free twins. `parallel_routes`: one queue per
    route, the queues run concurrently (each conversion is still one process; models in order within a route)."""
    queues: dict[Route, list[tuple]] = {r: [] for r in routes}
    for key in keys:
        for route in routes:
            for p in precisions:
                queues[route].append((route, p, key, False))
        if (model_dir(work, key) / "bound" / "model.onnx").exists() and Route.EDGEPORT in routes:
            for p in precisions:
                queues[Route.EDGEPORT].append((Route.EDGEPORT, p, key, True))

    def run(queue):
        for route, p, key, bound in queue:
            try:
                convert_one(route, p, work=work, key=key, bound=bound, env_error=env_errors.get(route), reuse=reuse,
                            log=log)
            except Exception as exc:  # noqa: BLE001 - the orchestration itself must not stop the other routes
                log(f"  convert {key} {route} {p}: orchestration error {type(exc).__name__}: {exc}")

    if not parallel_routes:
        for q in queues.values():
            run(q)
        return
    import threading

    threads = [threading.Thread(target=run, args=(q,), name=str(r)) for r, q in queues.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def load_results(work: Path, key: str) -> dict:
    """{(route, precision, bound): result dict} for everything converted for `key`."""
    out = {}
    mdir = model_dir(work, key)
    for bound, base in ((False, mdir), (True, mdir / "bound")):
        for route in Route:
            for p in Precision:
                r = read_json(base / str(route) / f"{p}.json")
                if r is not None:
                    out[(str(route), str(p), bound)] = r
    return out


if __name__ == "__main__":
    print(json.dumps(load_results(Path(sys.argv[1]), sys.argv[2]), indent=1, default=str))
