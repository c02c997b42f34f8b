"""Runs INSIDE the litert-torch venv (litert-torch, torchao, jax; edgeport installed --no-deps for the model zoo):
one nn.Module -> one .tflite.

    python worker_litert_torch.py --model model.json --out DIR --precision fp32|int8 [--calib calib_nchw.npy] \
        --result R.json

model.json: {zoo, builder_args, state_dict (path of a torch.save'd state dict), input_shape [C,H,W]}.
The module is wrapped with `litert_torch.to_channel_last_io(args=[0])`, so the .tflite takes NHWC like the other
routes. INT8: PT2E (`PT2EQuantizer`, symmetric per-channel static config), observers fed the same calibration
samples as every other route, then `litert_torch.convert(..., quant_config=QuantConfig(pt2e_quantizer=...))`.
Writes R.json: {ok, convert_s, artifact, error}; the timed part is everything after the module is built.
"""
import argparse
import json
import os
import sys
import time
import traceback


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--precision", choices=("fp32", "int8"), required=True)
    ap.add_argument("--calib")
    ap.add_argument("--result", required=True)
    a = ap.parse_args()
    result = {"ok": False}
    try:
        import numpy as np
        import torch
        import litert_torch
        from edgeport.models import build_model

        spec = json.load(open(a.model))
        module = build_model(spec["zoo"], **spec["builder_args"])
        module.load_state_dict(torch.load(spec["state_dict"], map_location="cpu", weights_only=True))
        module.eval()
        c, h, w = spec["input_shape"]
        nhwc = litert_torch.to_channel_last_io(module, args=[0]).eval()
        sample = (torch.zeros(1, h, w, c),)
        t0 = time.perf_counter()
        if a.precision == "fp32":
            edge = litert_torch.convert(nhwc, sample)
        else:
            from litert_torch.quantize import pt2e_quantizer as pq
            from litert_torch.quantize.quant_config import QuantConfig
            from torchao.quantization.pt2e import quantize_pt2e

            quantizer = pq.PT2EQuantizer().set_global(pq.get_symmetric_quantization_config(is_per_channel=True))
            m = torch.export.export(nhwc, sample).module()
            m = quantize_pt2e.prepare_pt2e(m, quantizer)
            calib = np.load(a.calib)  # (N, C, H, W) normalised
            with torch.no_grad():
                for x in calib:
                    m(torch.from_numpy(np.ascontiguousarray(x[None].transpose(0, 2, 3, 1))))
            m = quantize_pt2e.convert_pt2e(m, fold_quantize=False)
            edge = litert_torch.convert(m, sample, quant_config=QuantConfig(pt2e_quantizer=quantizer))
        path = os.path.join(a.out, f"model_{a.precision}.tflite")
        os.makedirs(a.out, exist_ok=True)
        edge.export(path)
        result["convert_s"] = round(time.perf_counter() - t0, 2)
        result.update(ok=True, artifact=path)
    except BaseException as exc:  # noqa: BLE001 - any failure is a row in the table
        result["error"] = f"{type(exc).__name__}: {str(exc).strip()[:600]}"
        result["traceback"] = traceback.format_exc()[-3000:]
    with open(a.result, "w") as fh:
        json.dump(result, fh, indent=1)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
