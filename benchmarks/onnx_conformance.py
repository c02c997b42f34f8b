"""Run the ONNX package's own backend node tests through the TFLite converter (fp32) for every op the converter
claims, and write docs/conformance.md with pass/total per op.

The installed `onnx` wheel (1.23) does not ship `onnx/backend/test/data/node/*`; it ships the generators those files
are made from (`onnx.backend.test.case.node`), so the cases come from `collect_testcases(op_type)`: same models, same
inputs and expected outputs (data set 0).

Eligible case: a non-"_expanded" node test whose nodes are all claimed ops and whose inputs and outputs are float32.
Input 0 stays a runtime input (NHWC when 4-D); the other inputs (weights, scales, second operands) are embedded as
constants, as they are in an exported model. Tolerance: |got - expected| <= 1e-5 + 1e-3 * |expected|.
Outcomes: pass, mismatch, unsupported (the converter raised UnsupportedOpError for an attribute combination it does
not lower — named in the table), error (anything else).

    python benchmarks/onnx_conformance.py [--out docs/conformance.md] [--ops Conv,Relu]
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from edgeport.errors import UnsupportedOpError  # noqa: E402
from edgeport.export.tflite import convert, supported_ops  # noqa: E402

NODE_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"
# the runtime input may be float32 or bool (Where's condition, Not); outputs float32, or an integer / bool result
# (TopK's indices, comparisons), compared exactly
_IN_TYPES = (np.dtype(np.float32), np.dtype(bool))
_OUT_TYPES = (np.dtype(np.float32), np.dtype(np.int64), np.dtype(np.int32), np.dtype(bool))


def eligible_cases(ops: set[str] | None = None):
    """Yield (name, main_op, model, inputs, outputs) for every eligible node test case (data set 0)."""
    from onnx.backend.test.case.node import collect_testcases

    claimed = set(supported_ops())
    wanted = ops or claimed
    # collect_testcases() builds its list once per process: a second call with another op_type returns the first
    # call's cases, so take every case in one call and group them by op here.
    by_op = collections.defaultdict(list)
    for case in collect_testcases():
        if case.name.endswith("_expanded") or "_expanded_ver" in case.name or case.model is None or not case.data_sets:
            continue
        types = [n.op_type for n in case.model.graph.node]
        if not types:
            continue
        name = case.name.lower().replace("_", "")
        main = next((t for t in sorted(set(types), key=len, reverse=True) if t.lower() in name), types[-1])
        by_op[main].append(case)
    for op in sorted(wanted):
        for case in sorted(by_op.get(op, []), key=lambda c: c.name):
            m = case.model
            if any(not v.type.HasField("tensor_type") for v in list(m.graph.input) + list(m.graph.output)):
                continue  # optional / sequence / map values: not tensors of a CNN graph
            types = [n.op_type for n in m.graph.node]
            if not set(types) <= claimed or any(n.domain not in ("", "ai.onnx") for n in m.graph.node):
                continue
            ins, outs = case.data_sets[0]
            ins, outs = [np.asarray(i) for i in ins], [np.asarray(o) for o in outs]
            if not ins or ins[0].dtype not in _IN_TYPES or any(o.dtype not in _OUT_TYPES for o in outs):
                continue
            yield case.name, op, m, ins, outs


def run_case(m: onnx.ModelProto, ins: list, outs: list) -> tuple[str, str]:
    m2 = onnx.ModelProto()
    m2.CopyFrom(m)
    m = m2
    names = [v.name for v in m.graph.input]
    if len(ins) != len(names) or ins[0].size == 0:
        return "excluded", "inputs not float32 / empty"
    # inputs after the first become constants
    for name, arr in zip(names[1:], ins[1:]):
        m.graph.initializer.append(numpy_helper.from_array(arr, name))
    del m.graph.input[1:]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            res = convert(m, out_dir=tmp, precisions=["fp32"])
            from ai_edge_litert.interpreter import Interpreter

            it = Interpreter(model_path=str(res.artifacts["fp32"]), num_threads=1)
            it.allocate_tensors()
            x = ins[0]
            if x.ndim == 4:
                x = x.transpose(0, 2, 3, 1)
            it.set_tensor(it.get_input_details()[0]["index"], np.ascontiguousarray(x))
            it.invoke()
            for k, (name, exp) in enumerate(zip(res.output_names, outs)):
                y = it.get_tensor(it.get_output_details()[k]["index"])
                y = np.transpose(y, np.argsort(res.output_perms[name]))
                if y.shape != exp.shape:
                    return "mismatch", f"shape {y.shape} vs {exp.shape}"
                if exp.dtype != np.float32:
                    if not np.array_equal(y.astype(exp.dtype), exp):
                        return "mismatch", f"{int(np.sum(y.astype(exp.dtype) != exp))} of {exp.size} values differ"
                    continue
                if not np.allclose(y, exp, rtol=1e-3, atol=1e-5, equal_nan=True):
                    return "mismatch", f"max abs err {float(np.nanmax(np.abs(y - exp))):.3g}"
    except UnsupportedOpError as e:
        detail = str(e).split("; supported ops")[0]
        return "unsupported", detail.split(": ", 1)[-1]
    except Exception as e:  # a conformance report records every other failure, it does not stop
        return "error", f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
    return "pass", ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "conformance.md"))
    ap.add_argument("--ops", default="", help="comma-separated op types (default: every claimed op)")
    a = ap.parse_args(argv)
    ops = set(filter(None, a.ops.split(","))) or None
    per_op = collections.defaultdict(collections.Counter)
    notes = collections.defaultdict(list)
    for name, op, model, ins, outs in eligible_cases(ops):
        status, why = run_case(model, ins, outs)
        per_op[op][status] += 1
        if status != "pass":
            notes[op].append(f"`{name}`: {status}{' — ' + why if why else ''}")
        print(f"{status:11s} {name} {why}", flush=True)
    claimed = sorted(set(supported_ops()) if ops is None else ops)
    lines = ["# ONNX backend node-test conformance (TFLite fp32)", "",
             "Generated by `python benchmarks/onnx_conformance.py` (do not edit). Cases: the `onnx` wheel's node",
             f"test generators (`onnx.backend.test.case.node.collect_testcases`, onnx {onnx.__version__}; the wheel",
             "does not ship `backend/test/data/node`), data set 0, every non-expanded case",
             "whose nodes are all claimed ops, whose first input is float32 or bool and whose outputs are float32 or",
             "integer / bool (those compared exactly). Input 0 is the runtime",
             "input (NHWC when 4-D); other inputs are embedded as constants, as in an exported model. Tolerance",
             "1e-5 + 1e-3·|expected|. Excluded: ops not claimed, cases whose runtime input is integer or string, or",
             "whose outputs are float16/float64/string, optional/sequence values, `_expanded` function bodies.", "",
             "Known difference: `test_resize_downsample_scales_linear_align_corners` expects the ONNX reference's",
             "align_corners denominator (length_original * scale - 1, unrounded); ONNX Runtime and torch use the",
             "rounded output length, and edgeport follows them (its parity is checked against both).", "",
             "| op | pass | total | unsupported (attribute combinations not lowered) | mismatch / error |",
             "|---|---|---|---|---|"]
    tp = tt = 0
    for op in claimed:
        c = per_op.get(op, collections.Counter())
        total = sum(v for k, v in c.items() if k != "excluded")
        tp += c["pass"]
        tt += total
        lines.append(f"| {op} | {c['pass']} | {total} | {c['unsupported']} | {c['mismatch'] + c['error']} |")
    lines += ["", f"**Total: {tp} / {tt} pass.**", "", "## Cases that do not pass", ""]
    for op in claimed:
        for n in notes.get(op, []):
            lines.append(f"- {op}: {n}")
    if ops is None:
        Path(a.out).write_text("\n".join(lines) + "\n")
        import json

        per = {op: {"passed": per_op[op]["pass"], "total": sum(v for k, v in per_op[op].items() if k != "excluded")}
               for op in claimed}
        Path(a.out).with_suffix(".json").write_text(json.dumps(
            {"onnx": onnx.__version__, "passed": tp, "total": tt, "per_op": per}, indent=1) + "\n")
    print(f"TOTAL {tp}/{tt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
