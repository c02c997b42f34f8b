"""Runs INSIDE the onnx2tf venv (numpy 1.26, TensorFlow 2.19, onnx 1.19): one ONNX model -> one .tflite.

    python worker_onnx2tf.py --onnx M.onnx --out DIR --precision fp32|int8 [--calib calib_nhwc.npy] --result R.json

The working directory must hold `calibration_image_sample_data_20x128x128x3_float32.npy` (onnx2tf otherwise downloads
it from GitHub, even for fp32). INT8 is onnx2tf's full-integer model (`-oiqt`, per-channel, int8 input and output),
calibrated with `-cind input calib_nhwc.npy 0 1`: the same pre-normalised samples as every other route, so mean 0 and
std 1. `-prf` is never used (with `-cind` it silently produces a wrong model, fp32 included).
Writes R.json: {ok, convert_s, artifact, command, error}. Only the `onnx2tf.convert` call is timed (not imports).
"""
import argparse
import json
import os
import sys
import time
import traceback

OUTPUT_SUFFIX = {"fp32": "_float32.tflite", "int8": "_full_integer_quant.tflite"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--precision", choices=sorted(OUTPUT_SUFFIX), required=True)
    ap.add_argument("--calib")
    ap.add_argument("--result", required=True)
    a = ap.parse_args()
    stem = os.path.splitext(os.path.basename(a.onnx))[0]
    cli = ["onnx2tf", "-i", a.onnx, "-o", a.out, "-n"]
    kwargs = dict(input_onnx_file_path=a.onnx, output_folder_path=a.out, non_verbose=True)
    if a.precision == "int8":
        import numpy as np

        c = np.load(a.calib)
        kwargs.update(
            output_integer_quantized_tflite=True, quant_type="per-channel", input_quant_dtype="int8",
            output_quant_dtype="int8",
            custom_input_op_name_np_data_path=[["input", a.calib, np.zeros((1, 1, 1, c.shape[-1]), np.float32),
                                                np.ones((1, 1, 1, c.shape[-1]), np.float32)]],
        )
        cli += ["-oiqt", "-qt", "per-channel", "-iqd", "int8", "-oqd", "int8",
                "-cind", "input", a.calib, "[[[[0,0,0]]]]", "[[[[1,1,1]]]]"]
    result = {"ok": False, "command": " ".join(cli), "cwd": os.getcwd()}
    try:
        import onnx2tf

        t0 = time.perf_counter()
        onnx2tf.convert(**kwargs)
        result["convert_s"] = round(time.perf_counter() - t0, 2)
        path = os.path.join(a.out, stem + OUTPUT_SUFFIX[a.precision])
        if not os.path.isfile(path):
            raise FileNotFoundError(f"onnx2tf finished but wrote no {os.path.basename(path)}; "
                                    f"files: {sorted(os.listdir(a.out))}")
        result.update(ok=True, artifact=path)
    except SystemExit as exc:  # onnx2tf calls sys.exit on errors
        result["error"] = f"onnx2tf exited with {exc.code}"
    except BaseException as exc:  # noqa: BLE001 - any failure is a row in the table
        result["error"] = f"{type(exc).__name__}: {str(exc).strip()[:600]}"
        result["traceback"] = traceback.format_exc()[-3000:]
    with open(a.result, "w") as fh:
        json.dump(result, fh, indent=1)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
