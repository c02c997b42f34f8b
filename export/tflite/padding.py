"""Spatial padding arithmetic shared by convolutions and pools (ONNX explicit/auto pads vs TF SAME/VALID)."""
from __future__ import annotations

import math

from edgeport.errors import UnsupportedOpError


def onnx_pads(attrs: dict, in_sizes, kernel, strides, dilations, *, ceil_mode: bool = False) -> tuple[list, list]:
    """(begin, end) pads per spatial axis as ONNX defines them, including auto_pad and ceil_mode extension.

    The end pad is trimmed to what the last window actually reads (PyTorch's symmetric pad on an even input
    with stride 2 never reads its last row), so a smaller PAD is emitted and SAME matches more often.
    """
    n = len(in_sizes)
    auto = attrs.get("auto_pad", "NOTSET")
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(n):
            out = math.ceil(in_sizes[i] / strides[i])
            total = max((out - 1) * strides[i] + eff[i] - in_sizes[i], 0)
            small = total // 2
            b, e = (small, total - small) if auto == "SAME_UPPER" else (total - small, small)
            begin.append(b)
            end.append(e)
    elif auto == "VALID":
        begin, end = [0] * n, [0] * n
    else:
        pads = list(attrs.get("pads", [0] * (2 * n)))
        begin, end = pads[:n], pads[n:]
    outs = []
    for i in range(n):
        span = in_sizes[i] + begin[i] + end[i] - eff[i]
        out = (math.ceil(span / strides[i]) if ceil_mode else span // strides[i]) + 1
        if ceil_mode and (out - 1) * strides[i] >= in_sizes[i] + begin[i]:
            out -= 1  # a window must start inside the input or the begin pad (ONNX/PyTorch rule)
        outs.append(out)
    new_end = [max((outs[i] - 1) * strides[i] + eff[i] - in_sizes[i] - begin[i], 0) for i in range(n)]
    return list(begin), new_end


def out_sizes(in_sizes, begin, end, kernel, strides, dilations) -> list[int]:
    return [(in_sizes[i] + begin[i] + end[i] - ((kernel[i] - 1) * dilations[i] + 1)) // strides[i] + 1
            for i in range(len(in_sizes))]


def tf_same_pads(in_sizes, kernel, strides, dilations) -> tuple[list, list]:
    begin, end = [], []
    for i in range(len(in_sizes)):
        out = math.ceil(in_sizes[i] / strides[i])
        total = max((out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - in_sizes[i], 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return begin, end


def choose_padding(in_sizes, begin, end, kernel, strides, dilations) -> str:
    """'VALID' if no padding, 'SAME' if TF's SAME equals the ONNX pads (same output size), else 'EXPLICIT'."""
    if not any(begin) and not any(end):
        return "VALID"
    sb, se = tf_same_pads(in_sizes, kernel, strides, dilations)
    if sb == list(begin):
        # end pads may differ only where the extra pad is never read: compare output sizes
        o1 = out_sizes(in_sizes, begin, end, kernel, strides, dilations)
        o2 = out_sizes(in_sizes, sb, se, kernel, strides, dilations)
        if o1 == o2:
            return "SAME"
    return "EXPLICIT"


def spatial_params(node, attrs: dict, in_sizes, kernel) -> tuple[list, list]:
    n = len(in_sizes)
    strides = list(attrs.get("strides", [1] * n))
    dilations = list(attrs.get("dilations", [1] * n))
    if len(strides) != n or len(dilations) != n:
        raise UnsupportedOpError(node.op_type, node.name, [], "strides/dilations rank mismatch")
    return strides, dilations
