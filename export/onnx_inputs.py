"""The inputs of a user's ONNX file: their real names, and static shapes for the dynamic ones.

A file exported elsewhere often has dynamic dimensions (batch, height, width: PP-OCR, Ultralytics with
`dynamic=True`). The converter needs static shapes, so `--input-shape` fixes them:

- `--input-shape C,H,W` (or N,C,H,W) applies to the image input: the only input, or the first 4-D one;
- `--input-shape NAME=d1,d2,...` applies to the input NAME (the full shape, or without a leading batch of 1).

A dynamic batch dimension left unnamed becomes 1. Any other dimension still dynamic is one InputShapeError naming
the input, the dimension and the flag to pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import onnx

from edgeport.calibration.samples import InputSpec
from edgeport.errors import InputShapeError


@dataclass(frozen=True)
class OnnxInput:
    """One graph input: its name, numpy dtype name, and dims (int, or the dim_param string / '?' when dynamic)."""

    name: str
    dtype: str
    dims: tuple

    @property
    def static(self) -> bool:
        return all(isinstance(d, int) and d > 0 for d in self.dims)


def graph_inputs(model: onnx.ModelProto) -> list[OnnxInput]:
    """The real inputs of `model` (initializers listed as inputs by old exporters are left out)."""
    inits = {i.name for i in model.graph.initializer}
    out = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name if tt.elem_type else "float32"
        dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?")
                     for d in tt.shape.dim)
        out.append(OnnxInput(vi.name, dtype, dims))
    return out


def _fit(inp: OnnxInput, dims: tuple[int, ...], flag: str) -> tuple[int, ...]:
    """`dims` for `inp`: its full shape, or its shape without a leading batch dimension (then batch 1)."""
    dims = tuple(int(d) for d in dims)
    if len(dims) == len(inp.dims) - 1:
        dims = (1, *dims)
    if len(dims) != len(inp.dims):
        raise InputShapeError(f"{flag}: {len(dims)} dimensions for ONNX input {inp.name!r}, which has "
                              f"{len(inp.dims)} ({list(inp.dims)})")
    if any(d <= 0 for d in dims):
        raise InputShapeError(f"{flag}: dimensions must be positive, got {list(dims)}")
    for i, (want, have) in enumerate(zip(dims, inp.dims)):
        if isinstance(have, int) and have > 0 and have != want:
            raise InputShapeError(f"{flag}: dimension {i} of ONNX input {inp.name!r} is fixed at {have} in the "
                                  f"file, not {want}")
    return dims


def static_input_shapes(inputs: list[OnnxInput], *, shape: tuple[int, ...] | None,
                        named: dict[str, tuple[int, ...]] | None = None) -> dict[str, tuple[int, ...]]:
    """{input name: static shape} for every input, from the file and the `--input-shape` values (see the module
    docstring). Raises InputShapeError for an unknown name or a dimension left dynamic."""
    named = dict(named or {})
    names = [i.name for i in inputs]
    unknown = [n for n in named if n not in names]
    if unknown:
        raise InputShapeError(f"--input-shape {unknown[0]}=...: the ONNX file has no input {unknown[0]!r} "
                              f"(its inputs: {', '.join(names)})")
    image = next((i for i in inputs if i.name not in named and len(i.dims) == 4), None)
    if len(inputs) == 1 and inputs[0].name not in named:
        image = inputs[0]
    shapes = {}
    for inp in inputs:
        if inp.name in named:
            shapes[inp.name] = _fit(inp, named[inp.name], f"--input-shape {inp.name}=")
        elif shape is not None and inp is image:
            shapes[inp.name] = _fit(inp, shape, "--input-shape")
        else:
            dims = tuple(1 if (i == 0 and not isinstance(d, int)) else d for i, d in enumerate(inp.dims))
            dynamic = [i for i, d in enumerate(dims) if not isinstance(d, int)]
            if dynamic:
                hint = (f"--input-shape {','.join('N' if not isinstance(d, int) else str(d) for d in inp.dims[1:])}"
                        if len(inputs) == 1 else f"--input-shape {inp.name}=...")
                raise InputShapeError(
                    f"ONNX input {inp.name!r} has dynamic dimension {dynamic[0]} ({dims[dynamic[0]]}) in "
                    f"{list(inp.dims)}", hint=f"fix it with {hint}")
            shapes[inp.name] = dims
    return shapes


def fix_input_shapes(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> onnx.ModelProto:
    """A copy of `model` whose inputs have the given static shapes; inferred shapes of other tensors are dropped
    (onnxsim infers them again from the static inputs)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    changed = False
    for vi in out.graph.input:
        if vi.name not in shapes:
            continue
        for d, v in zip(vi.type.tensor_type.shape.dim, shapes[vi.name]):
            if not (d.HasField("dim_value") and d.dim_value == v):
                d.Clear()
                d.dim_value = int(v)
                changed = True
    if changed:
        del out.graph.value_info[:]
        for o in out.graph.output:
            for d in o.type.tensor_type.shape.dim:
                if not d.HasField("dim_value"):
                    d.Clear()
    return out


def _index_bounds(model: onnx.ModelProto) -> dict[str, int]:
    """Graph input -> the size of the axis it indexes, for inputs used directly as Gather indices into a constant
    table (an embedding): valid values are [0, size)."""
    sizes = {i.name: list(i.dims) for i in model.graph.initializer}
    out: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type != "Gather" or len(node.input) < 2 or node.input[0] not in sizes:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        dims = sizes[node.input[0]]
        if dims:
            size = int(dims[axis % len(dims)])
            out[node.input[1]] = min(size, out.get(node.input[1], size))
    return out


def model_input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    """Every real input of a static-shape model as InputSpec (name, shape, dtype, index bound), in graph order."""
    bounds = _index_bounds(model)
    return [InputSpec(i.name, tuple(d if isinstance(d, int) else 1 for d in i.dims), i.dtype, bounds.get(i.name))
            for i in graph_inputs(model)]


def image_input(specs: list[InputSpec]) -> InputSpec:
    """The image input: the first 4-D float input (the one calibration images and `--input-shape C,H,W` feed),
    else the first input."""
    return next((s for s in specs if s.is_image), specs[0])
