#!/usr/bin/env python3
"""A stand-in for TFLite's `benchmark_model` binary -- NOT the real tool (stdlib + numpy + ai_edge_litert).

The real `benchmark_model` for Android is a C++ binary built from the TensorFlow tree (or downloaded from the TFLite
site); no package registry has an aarch64 build, so the device tests push this script instead (it runs on the
emulated aarch64 device's Python). It takes the real tool's flags and prints what the real tool prints, in the same
format (TF 2.x), from a real LiteRT interpreter timing the given graph:

    INFO: Num threads: [1] ... INFO: Initialized session in 3.2ms.
    INFO: count=12 first=283 curr=164 min=153 max=611 avg=206.86 std=52 p5=160 median=195 p95=291
    INFO: Inference timings in us: Init: 3210, First inference: 283, Warmup (avg): 206.86, Inference (avg): 207.1
    INFO: Overall peak memory footprint (MB) via periodic monitoring: 12.0312

Flags honoured like the real tool: --graph, --num_threads, --warmup_runs, --warmup_min_secs (default 0.5),
--num_runs (default 50), --min_secs (default 1), --max_secs (default 150), --use_xnnpack, --help. Inputs are random
(as the real tool's default). A missing or unreadable graph fails like the real tool (ERROR lines, exit 1).
"""
import sys
import time

FLAGS = {"graph": "", "num_threads": "-1", "warmup_runs": "1", "warmup_min_secs": "0.5", "num_runs": "50",
         "min_secs": "1", "max_secs": "150", "use_xnnpack": "false", "run_delay": "-1", "enable_op_profiling": "false"}


def usage() -> str:
    return "usage: benchmark_model\nFlags:\n" + "".join(f"\t--{k}={v}\n" for k, v in FLAGS.items())


def parse(argv):
    flags = dict(FLAGS)
    for arg in argv:
        if arg in ("--help", "-h"):
            print(usage())
            sys.exit(0)
        key, eq, value = arg.lstrip("-").partition("=")
        if not arg.startswith("--") or not eq or key not in FLAGS:
            print(f"ERROR: Unknown flag or bad format: {arg}\n{usage()}")
            sys.exit(1)
        flags[key] = value
    return flags


def stat_line(times_us):
    import numpy as np

    t = np.asarray(times_us, np.float64)
    return (f"count={len(t)} first={int(t[0])} curr={int(t[-1])} min={int(t.min())} max={int(t.max())} "
            f"avg={t.mean():.6g} std={int(round(t.std()))} p5={int(np.percentile(t, 5))} "
            f"median={int(np.percentile(t, 50))} p95={int(np.percentile(t, 95))}")


def peak_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def phase(interp, n_min, secs_min, secs_max):
    times = []
    start = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - start
        if (len(times) >= n_min and elapsed >= secs_min) or (times and elapsed >= secs_max):
            return times
        t0 = time.perf_counter()
        interp.invoke()
        times.append((time.perf_counter() - t0) * 1e6)


def main(argv) -> int:
    flags = parse(argv)
    print("INFO: STARTING!")
    print("INFO: Log parameter values verbosely: [0]")
    threads = int(flags["num_threads"])
    print(f"INFO: Num threads: [{threads}]")
    print(f"INFO: Graph: [{flags['graph']}]")
    xnnpack = flags["use_xnnpack"].lower() in ("1", "true")
    print(f"INFO: Use xnnpack: [{int(xnnpack)}]")
    try:
        with open(flags["graph"], "rb"):
            pass
    except OSError:
        print(f"ERROR: Could not open '{flags['graph']}'.")
        print("ERROR: Failed to initialize the interpreter")
        print("ERROR: Benchmarking failed.")
        return 1
    import numpy as np
    from ai_edge_litert import interpreter as lite

    print(f"INFO: Loaded model {flags['graph']}")
    t0 = time.perf_counter()
    kwargs = {"model_path": flags["graph"], "num_threads": threads if threads > 0 else None}
    if not xnnpack:
        kwargs["experimental_op_resolver_type"] = lite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interp = lite.Interpreter(**kwargs)
        interp.allocate_tensors()
    except Exception as exc:  # noqa: BLE001
        print(f"ERROR: {exc}")
        print("ERROR: Benchmarking failed.")
        return 1
    init_us = (time.perf_counter() - t0) * 1e6
    if xnnpack:
        print("INFO: XNNPACK delegate created.")
    print(f"INFO: The input model file size (MB): {len(open(flags['graph'], 'rb').read()) / 1e6:g}")
    print(f"INFO: Initialized session in {init_us / 1e3:.3g}ms.")
    rng = np.random.default_rng(0)
    for d in interp.get_input_details():
        dtype = np.dtype(d["dtype"])
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            x = rng.integers(info.min, info.max, size=d["shape"], endpoint=True).astype(dtype)
        else:
            x = rng.uniform(-1, 1, size=d["shape"]).astype(dtype)
        interp.set_tensor(d["index"], x)
    max_secs = float(flags["max_secs"])
    warm_n, warm_s = int(flags["warmup_runs"]), float(flags["warmup_min_secs"])
    print(f"INFO: Running benchmark for at least {warm_n} iterations and at least {warm_s:g} seconds but terminate "
          f"if exceeding {max_secs:g} seconds.")
    warm = phase(interp, max(warm_n, 1), warm_s, max_secs)
    print("INFO: " + stat_line(warm) + "\n")
    runs_n, runs_s = int(flags["num_runs"]), float(flags["min_secs"])
    print(f"INFO: Running benchmark for at least {runs_n} iterations and at least {runs_s:g} seconds but terminate "
          f"if exceeding {max_secs:g} seconds.")
    timed = phase(interp, max(runs_n, 1), runs_s, max_secs)
    print("INFO: " + stat_line(timed) + "\n")
    print(f"INFO: Inference timings in us: Init: {int(init_us)}, First inference: {int(warm[0])}, "
          f"Warmup (avg): {np.mean(warm):.6g}, Inference (avg): {np.mean(timed):.6g}")
    print("INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to "
          "the actual memory footprint of the model at runtime. Take the information at your one's own risk.")
    print(f"INFO: Overall peak memory footprint (MB) via periodic monitoring: {peak_mb():.6g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
