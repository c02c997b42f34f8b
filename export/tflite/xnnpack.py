"""What ai-edge-litert's default XNNPACK delegate takes of a TFLite model: its partitions, and the ops it leaves to
TFLite's builtin kernels (the converter's INT8 goal is one partition; the coverage corpus lists what is left)."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class XnnpackCoverage:
    """How ai-edge-litert's default XNNPACK delegate takes a model: `partitions` DELEGATE nodes; `complete` when one
    delegate runs the whole graph (it produces the model's outputs: a partition count alone misses a trailing op left
    to the builtin kernels); `builtin_ops` {op name: count} of the ops XNNPACK left to TFLite's builtin kernels."""

    partitions: int
    complete: bool
    builtin_ops: dict[str, int] = field(default_factory=dict)

    runtime: str = ""  # the interpreter package and version that decided it: another runtime may take more

    WHY = ("the XNNPACK delegate of {runtime} takes no kernel for them at this precision or with these parameters: "
           "they run on TFLite's builtin kernels, and each hand-over between the partitions costs a copy")

    def to_json(self) -> dict:
        """report.json artifact_info.<tflite artifact>.xnnpack."""
        out = {"partitions": self.partitions, "complete": self.complete, "builtin_ops": dict(self.builtin_ops),
               "runtime": self.runtime}
        if not self.complete:
            out["why"] = self.WHY.format(runtime=self.runtime or "this TFLite runtime")
        return out

    def __str__(self) -> str:
        if self.complete:
            return "all"
        left = ", ".join(f"{op} x{n}" for op, n in self.builtin_ops.items())
        return f"{self.partitions} partitions + builtin ops" + (f" ({left})" if left else "")


def _builtin_ops(ops: list[dict], graph_outputs: set[int]) -> dict[str, int]:
    """{op name: count} of the ops no DELEGATE node took. The interpreter lists every original op beside the DELEGATE
    nodes; an op is delegated iff its outputs are inside a delegate: a tensor a delegate produces, or one consumed
    only by delegated ops. So an op is builtin when it feeds a delegate or a graph output that no delegate produces,
    or feeds a builtin op (a fixed point from the graph's ends)."""
    delegates = [d for d in ops if d["op_name"] == "DELEGATE"]
    real = [d for d in ops if d["op_name"] != "DELEGATE"]
    produced = {int(t) for d in delegates for t in d["outputs"]}
    ends = {int(t) for d in delegates for t in d["inputs"]} | graph_outputs
    consumers: dict[int, list[int]] = {}
    for op in real:
        for t in op["inputs"]:
            consumers.setdefault(int(t), []).append(op["index"])
    builtin: set[int] = set()
    grew = True
    while grew:
        grew = False
        for op in real:
            outs = {int(t) for t in op["outputs"]}
            if op["index"] in builtin or outs & produced:
                continue
            if outs & ends or any(c in builtin for t in outs for c in consumers.get(t, ())):
                builtin.add(op["index"])
                grew = True
    return dict(sorted(Counter(op["op_name"] for op in real if op["index"] in builtin).items()))


def xnnpack_coverage(tflite_path: str | os.PathLike) -> XnnpackCoverage:
    """Load the model with the default delegates (XNNPACK, 1 thread) and report what XNNPACK runs."""
    from importlib.metadata import version

    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(tflite_path), num_threads=1)
    it.allocate_tensors()  # raises for a model XNNPACK cannot prepare
    ops = it._get_ops_details()
    delegates = [d for d in ops if d["op_name"] == "DELEGATE"]
    outputs = {d["index"] for d in it.get_output_details()}
    complete = len(delegates) == 1 and {int(t) for t in delegates[0]["outputs"]} == outputs
    return XnnpackCoverage(partitions=len(delegates), complete=complete,
                           builtin_ops={} if complete else _builtin_ops(ops, outputs),
                           runtime=f"ai-edge-litert {version('ai-edge-litert')}")
