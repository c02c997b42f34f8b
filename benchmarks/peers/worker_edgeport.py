"""Runs in edgeport's own environment (a separate process, like the peers): one ONNX model -> one .tflite with
`edgeport.export.tflite.convert`.

    python worker_edgeport.py --onnx M.onnx --out DIR --precision fp32|int8 [--calib calib_nchw.npy] --result R.json

INT8: full integer (int8 input and output, NHWC input), calibrated with the same pre-normalised samples as every
route. Writes R.json: {ok, convert_s, artifact, shuffle_pass_applied, timings, error}; only `convert` is timed.
"""
import argparse
import json
import sys
import time
import traceback


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--precision", choices=("fp32", "int8"), required=True)
    ap.add_argument("--calib")
    ap.add_argument("--result", required=True)
    a = ap.parse_args()
    result = {"ok": False, "command": f"edgeport.export.tflite.convert({a.onnx!r}, precisions=[{a.precision!r}])"}
    try:
        import numpy as np
        from edgeport.export.tflite import convert

        calibration = None
        if a.precision == "int8":
            arr = np.load(a.calib)
            calibration = [{"input": np.ascontiguousarray(x[None])} for x in arr]
        t0 = time.perf_counter()
        res = convert(a.onnx, out_dir=a.out, precisions=[a.precision], calibration=calibration, io_dtype="int8",
                      input_layout="nhwc")
        result["convert_s"] = round(time.perf_counter() - t0, 2)
        result.update(ok=True, artifact=str(res.artifacts[a.precision]),
                      shuffle_pass_applied=bool(getattr(res, "shuffle_pass_applied", False)),
                      timings={k: round(float(v), 3) for k, v in res.timings.items()})
    except BaseException as exc:  # noqa: BLE001 - any failure is a row in the table
        result["error"] = f"{type(exc).__name__}: {str(exc).strip()[:600]}"
        result["traceback"] = traceback.format_exc()[-3000:]
    with open(a.result, "w") as fh:
        json.dump(result, fh, indent=1)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
