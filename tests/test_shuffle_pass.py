"""The channel-shuffle pass on its own (ONNX in, ONNX out), checked with ONNX Runtime: the rewritten graph computes
exactly what the original computes, for every zoo model that contains a shuffle and for every form a shuffle that
feeds a grouped conv can take; `perms` describes the rewritten tensors' channel order; the op budget of each form."""
from __future__ import annotations

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgeport.export.onnx_export import export_onnx
from edgeport.export.tflite import convert
from edgeport.export.tflite.graph import OnnxGraph
from edgeport.export.tflite.shuffle import (REWRITERS, GroupedShuffleForm, PieceForm, find_channel_shuffles,
                                            remove_channel_shuffles_with_stats, shuffle_permutation,
                                            split_sliced_convs)
from edgeport.errors import ExportError
from edgeport.models import build_model, get_spec, model_names

# one model per shuffle layout: ShuffleNetV2 (split + concat), AugShuffleNet (partial split), ShuffleNetV1 with
# 2, 3 and 8 groups (shuffle feeds a grouped conv) and FBNet-A (grouped projections with a shuffle)
CASES = ["shufflenet_v2_cifar_x0_5", "augshufflenet_x0_5", "shufflenet_v1_g2_x1_0", "shufflenet_v1_g3_x0_5",
         "shufflenet_v1_g8_x0_5", "fbnet_a"]
# the default run keeps one case per layout kind (split+concat, partial split, shuffle into a grouped conv, FBNet);
# the 2- and 8-group ShuffleNetV1 cases run under `slow`
FAST_CASES = {"shufflenet_v2_cifar_x0_5", "augshufflenet_x0_5", "shufflenet_v1_g3_x0_5", "fbnet_a"}


_CACHE: dict[str, tuple] = {}


def _onnx(name, tmp_path):
    if name not in _CACHE:
        _CACHE[name] = _export(name, tmp_path)
    return _CACHE[name]


def _export(name, tmp_path):
    spec = get_spec(name)
    shape = (1,) + tuple(spec.test_input_shape or spec.input_shape)
    torch.manual_seed(0)
    path = tmp_path / f"{name}.onnx"
    export_onnx(build_model(name).eval(), input_shape=shape, path=path)
    return OnnxGraph.from_model(onnx.load(str(path))).model, shape


def _run(model, x, outputs=None):
    m = onnx.ModelProto()
    m.CopyFrom(model)
    if outputs:
        del m.graph.output[:]
        m.graph.output.extend(onnx.helper.make_empty_tensor_value_info(o) for o in outputs)
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, {s.get_inputs()[0].name: x})))


def test_shuffle_permutation_is_the_shufflenet_shuffle():
    x = np.arange(12).reshape(1, 12, 1, 1)
    shuffled = x.reshape(1, 3, 4, 1, 1).transpose(0, 2, 1, 3, 4).reshape(1, 12, 1, 1)
    assert np.array_equal(shuffled[0, :, 0, 0], x[0, shuffle_permutation(12, 3), 0, 0])


@pytest.mark.parametrize("form", list(GroupedShuffleForm))
@pytest.mark.parametrize("name", [n if n in FAST_CASES else pytest.param(n, marks=pytest.mark.slow) for n in CASES])
def test_rewrite_is_exact_and_perms_describe_it(name, form, tmp_path):
    model, shape = _onnx(name, tmp_path)
    found = find_channel_shuffles(model)
    assert found, f"{name}: no channel shuffle found"
    out, perms, stats = remove_channel_shuffles_with_stats(model, grouped_form=form)
    assert stats.shuffles_found == len(found) and stats.gathers == 0
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    ref, got = _run(model, x), _run(out, x)
    for k in ref:
        peak = float(np.abs(ref[k]).max())
        np.testing.assert_allclose(got[k], ref[k], rtol=0, atol=1e-5 * max(peak, 1.0), err_msg=f"{name} {form}")
    # perms: every permuted tensor of the rewritten graph is the original tensor with its channels reordered
    names = sorted(perms)[:: max(1, len(perms) // 8)]
    if get_spec(name).family in ("shufflenet_v2", "augshufflenet"):  # absorbed shuffles leave permuted tensors
        assert names, f"{name}: the pass permuted no tensor"
    if not names:
        return
    # a piece a split conv computes is named after the tensor it was sliced from
    base = {k: re.sub(r"_slice__sp\d+$", "", k) for k in names}
    a, b = _run(model, x, sorted(set(base.values()))), _run(out, x, names)
    for k in names:
        np.testing.assert_allclose(b[k], a[base[k]][:, perms[k]], rtol=0, atol=1e-4, err_msg=k)


@pytest.mark.parametrize("name", ["shufflenet_v1_g3_x0_5", "fbnet_a"])
def test_grouped_consumer_forms_have_their_op_budget(name, tmp_path):
    model, _ = _onnx(name, tmp_path)
    n = len(find_channel_shuffles(model))
    ops = {}
    for form in GroupedShuffleForm:
        out, _, stats = remove_channel_shuffles_with_stats(model, grouped_form=form)
        ops[form] = [node.op_type for node in out.graph.node]
        groups = [next((a.i for a in node.attribute if a.name == "group"), 1) for node in out.graph.node
                  if node.op_type == "Conv"]
        if form is GroupedShuffleForm.TRANSPOSE:
            assert stats.shuffles_materialised == n and ops[form].count("Transpose") == n
        elif form is GroupedShuffleForm.SLICES:
            assert stats.shuffles_materialised == 0 and "Transpose" not in ops[form] and stats.slices >= 2 * n
        else:  # every consuming grouped conv became one dense conv: no copy at all
            assert stats.densified == n and stats.slices == 0 and "Transpose" not in ops[form]
            assert sum(g > 1 for g in groups) < sum(
                next((a.i for a in node.attribute if a.name == "group"), 1) > 1
                for node in model.graph.node if node.op_type == "Conv")


def test_v2_has_no_transpose_in_any_form(tmp_path):
    model, _ = _onnx("shufflenet_v2_cifar_x0_5", tmp_path)
    for form in GroupedShuffleForm:
        for pieces in PieceForm:
            out, _, stats = remove_channel_shuffles_with_stats(model, grouped_form=form, piece_form=pieces)
            assert stats.shuffles_materialised == 0 and stats.densified == 0
            assert "Transpose" not in [node.op_type for node in out.graph.node]


def test_convert_rejects_an_unknown_form(tmp_path):
    model, _ = _onnx("shufflenet_v1_g3_x0_5", tmp_path)
    with pytest.raises(ExportError, match="grouped shuffle form 'diagonal'"):
        convert(model, out_dir=tmp_path / "out", precisions=["fp32"], grouped_shuffle_form="diagonal")
    with pytest.raises(ExportError, match="shuffle piece form 'gathers'.*choose from \\['slices', 'convs'\\]"):
        convert(model, out_dir=tmp_path / "out", precisions=["fp32"], shuffle_piece_form="gathers")
    assert not (tmp_path / "out").exists()


def test_every_shuffle_model_family_is_covered():
    fams = {get_spec(n).family for n in model_names() if get_spec(n).family in
            {"shufflenet_v1", "shufflenet_v2", "augshufflenet"}}
    assert fams <= {get_spec(n).family for n in CASES}


def _sliced_conv_model(ranges, *, extra_reader=False, step=1):
    """x -> Conv(8 -> 12, 3x3, bias) -> Relu -> one channel Slice per range -> graph outputs."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal((12, 8, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(12).astype(np.float32), "b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"])]
    outs = []
    for k, (a, e) in enumerate(ranges):
        for nm, v in (("st", a), ("en", e), ("ax", 1), ("sp", step)):
            inits.append(numpy_helper.from_array(np.array([v], np.int64), f"{nm}{k}"))
        nodes.append(helper.make_node("Slice", ["r", f"st{k}", f"en{k}", f"ax{k}", f"sp{k}"], [f"y{k}"]))
        outs.append(helper.make_tensor_value_info(f"y{k}", TensorProto.FLOAT, [1, -(-(e - a) // step), 6, 6]))
    if extra_reader:
        nodes.append(helper.make_node("Sigmoid", ["r"], ["z"]))
        outs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 12, 6, 6]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 6])],
                              outs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_split_sliced_convs_computes_each_slice_with_its_own_conv():
    model = _sliced_conv_model([(9, 12), (0, 3), (5, 9)])  # channels 3-4 are read by nobody
    out, n, pieces = split_sliced_convs(model)
    onnx.checker.check_model(out)
    ops = [node.op_type for node in out.graph.node]
    assert n == 1 and "Slice" not in ops and ops.count("Conv") == 3 and ops.count("Relu") == 3
    assert pieces == {"y0": ("r", 9, 12), "y1": ("r", 0, 3), "y2": ("r", 5, 9)}
    rows = sorted(numpy_helper_dims(out, node.input[1])[0] for node in out.graph.node if node.op_type == "Conv")
    assert rows == [3, 3, 4]  # the unread channels are no longer computed
    x = np.random.default_rng(0).standard_normal((1, 8, 6, 6)).astype(np.float32)
    ref, got = _run(model, x), _run(out, x)
    assert set(ref) == set(got) == {"y0", "y1", "y2"}
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)


def numpy_helper_dims(model, name):
    return next(tuple(i.dims) for i in model.graph.initializer if i.name == name)


@pytest.mark.parametrize("case", ["overlapping", "other_reader", "strided"])
def test_split_sliced_convs_leaves_what_it_cannot_split_exactly(case):
    model = {"overlapping": lambda: _sliced_conv_model([(0, 6), (4, 12)]),
             "other_reader": lambda: _sliced_conv_model([(0, 6), (6, 12)], extra_reader=True),
             "strided": lambda: _sliced_conv_model([(0, 12)], step=2)}[case]()
    out, n, pieces = split_sliced_convs(model)
    assert n == 0 and out is model


@pytest.mark.parametrize("name", ["shufflenet_v2_cifar_x0_5", "augshufflenet_x0_5"])
def test_absorbed_shuffles_leave_no_slice_of_a_conv_output(name, tmp_path):
    """The absorbed V2/Aug graph reads each branch output in pieces; PieceForm.CONVS computes every piece with its
    own conv instead of copying it out with a Slice (PieceForm.SLICES, the default, keeps the slices)."""
    model, shape = _onnx(name, tmp_path)

    def sliced_conv_outputs(m):
        producer = {t: node for node in m.graph.node for t in node.output}
        hits = 0
        for node in m.graph.node:
            src = producer.get(node.input[0]) if node.op_type == "Slice" else None
            while src is not None and src.op_type in ("Relu", "Clip"):
                src = producer.get(src.input[0])
            hits += src is not None and src.op_type == "Conv" and \
                next((a.i for a in src.attribute if a.name == "group"), 1) == 1
        return hits

    kept, _, kept_stats = remove_channel_shuffles_with_stats(model)
    out, perms, stats = remove_channel_shuffles_with_stats(model, piece_form="convs")
    assert kept_stats.convs_split == 0 and sliced_conv_outputs(kept) > 0
    assert stats.convs_split > 0 and sliced_conv_outputs(out) == 0
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    ref, got = _run(model, x), _run(out, x)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=0, atol=1e-5 * max(float(np.abs(ref[k]).max()), 1.0))
    # every piece's perms entry says which channels of the original tensor it computes
    pieces = {k: re.sub(r"_slice__sp\d+$", "", k) for k in perms if re.search(r"_slice__sp\d+$", k)}
    assert len(pieces) >= stats.convs_split * 2
    a, b = _run(model, x, sorted(set(pieces.values()))), _run(out, x, sorted(pieces))
    for k, base in pieces.items():
        np.testing.assert_allclose(b[k], a[base][:, perms[k]], rtol=0, atol=1e-4, err_msg=k)


@pytest.mark.parametrize("name", ["shufflenet_v2_cifar_x0_5", "shufflenet_v1_g3_x0_5"])
def test_convert_reports_what_the_pass_did(name, tmp_path):
    model, _ = _onnx(name, tmp_path)
    n = len(find_channel_shuffles(model))
    res = convert(model, out_dir=tmp_path / "out", precisions=["fp32"])
    st = res.shuffle_pass
    assert res.shuffle_pass_applied and st["found"] == n and st["grouped_form"] == "transpose"
    assert st["absorbed"] + st["kept"] + st["densified"] == n and st["piece_form"] == "slices"
    if get_spec(name).family == "shufflenet_v2":  # every shuffle absorbed; the pieces read as slices by default
        assert st["absorbed"] == n and st["convs_split"] == 0 and st["slices"] == res.ops["fp32"]["SLICE"] > 0
        assert st["concats"] > 0
        res = convert(model, out_dir=tmp_path / "convs", precisions=["fp32"], shuffle_piece_form="convs")
        st = res.shuffle_pass  # or each computed by its own conv
        assert st["piece_form"] == "convs" and st["convs_split"] > 0 and st["slices"] == 0
        assert res.ops["fp32"].get("SLICE", 0) == 0
    else:  # ShuffleNetV1: every shuffle feeds a grouped conv and is kept
        assert st["kept"] == n and st["absorbed"] == 0


# -- every registered rewriter (shuffle.REWRITERS) has a case that makes it rewrite a node -------------------------

def _after_shuffle(op_nodes, consts=None, outputs=("y",)):
    """x (1,8,4,4) -> Conv 1x1 -> "c" -> channel shuffle (2 groups) -> "s" -> `op_nodes` -> `outputs`."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    inits = {"w": rng.standard_normal((8, 8, 1, 1)), "b": rng.standard_normal(8),
             "shape5": np.array([1, 2, 4, 4, 4], np.int64), "shape4": np.array([1, 8, 4, 4], np.int64),
             **(consts or {})}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"]),
             helper.make_node("Reshape", ["c", "shape5"], ["r5"]),
             helper.make_node("Transpose", ["r5"], ["t5"], perm=[0, 2, 1, 3, 4]),
             helper.make_node("Reshape", ["t5", "shape4"], ["s"]), *op_nodes]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4])],
        [helper.make_empty_tensor_value_info(o) for o in outputs],
        [numpy_helper.from_array(np.asarray(v, np.int64 if v.dtype == np.int64 else np.float32), k)
         for k, v in ((k, np.asarray(v)) for k, v in inits.items())])
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    return OnnxGraph.from_model(model).model


def _rewriter_case(op):
    from onnx import helper

    n = helper.make_node
    rng = np.random.default_rng(7)
    per_channel = rng.standard_normal((1, 8, 1, 1)) + 2.0
    cases = {
        "Conv": lambda: _after_shuffle([n("Conv", ["s", "w2"], ["y"])], {"w2": rng.standard_normal((6, 8, 1, 1))}),
        "BatchNormalization": lambda: _after_shuffle(
            [n("BatchNormalization", ["s", "g", "be", "m", "v"], ["y"])],
            {"g": rng.standard_normal(8), "be": rng.standard_normal(8), "m": rng.standard_normal(8),
             "v": rng.random(8) + 0.5}),
        "PRelu": lambda: _after_shuffle([n("PRelu", ["s", "slope"], ["y"])], {"slope": rng.random((8, 1, 1))}),
        "Clip": lambda: _after_shuffle([n("Clip", ["s", "lo", "hi"], ["y"])],
                                       {"lo": np.array(-0.5, np.float32), "hi": np.array(0.7, np.float32)}),
        "Add": lambda: _after_shuffle([n("Add", ["s", "c"], ["y"])]),  # two tracked inputs in different orders
        "Mul": lambda: _after_shuffle([n("Mul", ["k", "s"], ["y"])], {"k": per_channel}),  # constant first
        "Sub": lambda: _after_shuffle([n("Sub", ["s", "k"], ["y"])], {"k": per_channel}),
        "Div": lambda: _after_shuffle([n("Div", ["s", "k"], ["y"])], {"k": np.array(3.0, np.float32)}),
        "Concat": lambda: _after_shuffle([n("Concat", ["s", "c"], ["cat"], axis=1), n("Conv", ["cat", "w2"], ["y"])],
                                         {"w2": rng.standard_normal((4, 16, 1, 1))}),
        "Split": lambda: _after_shuffle([n("Split", ["s", "sizes"], ["y0", "y1"], axis=1)],
                                        {"sizes": np.array([3, 5], np.int64)}, outputs=("y0", "y1")),
        "Slice": lambda: _after_shuffle([n("Slice", ["s", "st", "en", "ax"], ["y"])],
                                        {"st": np.array([2], np.int64), "en": np.array([7], np.int64),
                                         "ax": np.array([1], np.int64)}),
    }
    assert op in cases, f"shuffle-pass rewriter {op!r} is registered but has no test case here"
    return cases[op]()


def test_every_rewriter_has_a_case():
    for op in REWRITERS.names():
        _rewriter_case(op)


@pytest.mark.parametrize("op", sorted(REWRITERS.names()))
def test_every_registered_rewriter_rewrites_exactly(op):
    """Each registered rewriter is exercised (it rewrote a node: a registered one never hit fails here), and the
    rewritten graph computes exactly what the original computes."""
    model = _rewriter_case(op)
    out, perms, stats = remove_channel_shuffles_with_stats(model)
    assert stats.shuffles_found == 1 and stats.rewrites.get(op, 0) >= 1, (op, stats.rewrites)
    x = np.random.default_rng(0).standard_normal((1, 8, 4, 4)).astype(np.float32)
    ref, got = _run(model, x), _run(out, x)
    assert set(ref) == set(got)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=0, atol=1e-5, err_msg=f"{op}: {k}")

