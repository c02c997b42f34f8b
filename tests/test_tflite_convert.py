"""End-to-end ONNX -> TFLite conversion of every zoo model: fp32 parity vs torch, the TRANSPOSE audit, the
precisions/IO variants, atomic writes, full INT8 of every family. (INT8 quality on the real EfficientNet-Lite0
checkpoint: tests/test_validate.py, through the CLI as a user gets it.)"""
from __future__ import annotations

import inspect
import re
import sys

import numpy as np
import onnx
import pytest
import torch

from _tflite_helpers import run_tflite
from edgeport.errors import CalibrationError, ExportError
from edgeport.export.onnx_export import export_onnx
from edgeport.export.tflite import Precision, convert, op_histogram, xnnpack_coverage
from edgeport.export.tflite.pad_unshare import unshare_conv_pads
from edgeport.export.tflite.tensor_map import (TENSOR_MAP_SUFFIX, TensorMapFile, TensorOrigin, load_tensor_map,
                                               save_tensor_map, tensor_map_path)
from edgeport.export.tflite.shuffle import find_channel_shuffles
from edgeport.models import build_model, get_model_entry, get_spec, model_names
from conftest import parametrized_names, zoo_params

ZOO = model_names()
# Models whose architecture contains a channel shuffle; the TRANSPOSE audit runs them with channel_shuffle=False.
SHUFFLE_FAMILIES = {"shufflenet_v1", "shufflenet_v2", "augshufflenet"}
# families whose every shuffle the pass absorbs into the surrounding convolutions (zero TRANSPOSE ops)
ABSORBED = {"shufflenet_v2", "augshufflenet"}


def _shape(name):
    spec = get_spec(name)
    return (1,) + tuple(spec.test_input_shape or spec.input_shape)


def _export(name, tmp_path, **kw):
    torch.manual_seed(0)
    model = build_model(name, **kw)
    path = tmp_path / "model.onnx"
    export_onnx(model, input_shape=_shape(name), path=path)
    return model, path


def _parity(model, res, shape, seed=0):
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))
    with torch.no_grad():
        ref = model(x).numpy()
    got = run_tflite(res.artifacts["fp32"], res, {res.input_names[0]: x.numpy()})[0]
    cos = float((ref * got).sum() / (np.linalg.norm(ref) * np.linalg.norm(got) + 1e-30))
    return cos, float(np.abs(ref - got).max()), float(np.abs(ref).max())


@pytest.mark.parametrize("name", zoo_params(ZOO))
def test_zoo_fp32_parity_and_transpose_audit(name, tmp_path, zoo_onnx):
    model, path = zoo_onnx(name)  # the export test_zoo's export-parity test checks against torch
    res = convert(path, out_dir=tmp_path, precisions=["fp32"])
    cos, err, peak = _parity(model, res, _shape(name))
    assert cos >= 0.99999, f"{name}: cosine {cos:.7f}"
    assert err <= 1e-4 * peak, f"{name}: max abs err {err:.3g} > 1e-4 x max|logit| {peak:.3g}"
    assert op_histogram(res.artifacts["fp32"]) == res.ops["fp32"]
    coverage = xnnpack_coverage(res.artifacts["fp32"])
    assert coverage.complete, f"{name}: XNNPACK leaves part of the fp32 graph to builtin kernels ({coverage})"
    shuffles = len(find_channel_shuffles(onnx.load(str(path))))
    transposes = res.ops["fp32"].get("TRANSPOSE", 0)
    if shuffles == 0 or get_spec(name).family in ABSORBED:
        assert transposes == 0, f"{name}: {res.ops['fp32']}"
    else:  # a shuffle that feeds a grouped conv is kept (GroupedShuffleForm.TRANSPOSE): three tiled transposes each
        assert transposes <= 3 * shuffles, f"{name}: {transposes} TRANSPOSE ops for {shuffles} shuffles"


@pytest.mark.parametrize("name", zoo_params(sorted(
    n for n in ZOO if get_spec(n).family in SHUFFLE_FAMILIES
    and "channel_shuffle" in inspect.signature(get_model_entry(n).builder).parameters)))
def test_shuffle_models_without_shuffle_have_no_transpose(name, tmp_path):
    model, path = _export(name, tmp_path, channel_shuffle=False)
    res = convert(path, out_dir=tmp_path, precisions=["fp32"])
    assert res.ops["fp32"].get("TRANSPOSE", 0) == 0, res.ops["fp32"]
    # an equal channel split is SPLIT, which XNNPACK runs; SPLIT_V would stay on the builtin kernels
    assert "SPLIT_V" not in res.ops["fp32"], res.ops["fp32"]
    cos, err, peak = _parity(model, res, _shape(name))
    assert cos >= 0.99999 and err <= 1e-4 * peak


def test_every_registered_model_is_tested():
    """Every registered model has a conversion test (in the default run or under `slow`, which CI runs)."""
    tested = parametrized_names(test_zoo_fp32_parity_and_transpose_audit)
    missing = sorted(set(model_names()) - tested)
    assert not missing, f"registered models without a conversion test: {missing}"
    assert tested - set(model_names()) == set(), "the conversion test names models that are not registered"


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_zoo_fp32_parity_full_size(name, tmp_path):
    spec = get_spec(name)
    torch.manual_seed(0)
    model = build_model(name)
    shape = (1,) + tuple(spec.input_shape)
    export_onnx(model, input_shape=shape, path=tmp_path / "m.onnx")
    res = convert(tmp_path / "m.onnx", out_dir=tmp_path, precisions=["fp32"])
    cos, err, peak = _parity(model, res, shape)
    assert cos >= 0.99999 and err <= 1e-4 * peak, (cos, err, peak)


def _calib(shape, n, seed=0):
    from edgeport.calibration import Split, load_samples

    spec = get_spec("mobilenet_v2")
    return load_samples("default", model_spec=spec, input_shape=shape[1:], num=n, seed=seed, split=Split.CALIBRATION)


@pytest.mark.parametrize("io_dtype,np_dtype", [("int8", np.int8), pytest.param("uint8", np.uint8, marks=pytest.mark.slow),
                                               pytest.param("float", np.float32, marks=pytest.mark.slow)])
def test_all_precisions_and_io_types(io_dtype, np_dtype, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    model, path = _export("mobilenet_v2", tmp_path)
    res = convert(path, out_dir=tmp_path / "out", precisions=list(Precision), calibration=_calib(_shape("mobilenet_v2"), 8),
                  io_dtype=io_dtype)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "model_dynamic.tensormap.json", "model_dynamic.tflite", "model_fp16.tensormap.json", "model_fp16.tflite",
        "model_fp32.tensormap.json", "model_fp32.tflite", "model_int8.tensormap.json", "model_int8.tflite"]
    it = Interpreter(model_path=str(res.artifacts["int8"]))
    assert it.get_input_details()[0]["dtype"] == np_dtype
    assert it.get_input_details()[0]["shape"].tolist() == [1, 64, 64, 3]
    assert res.float_tensors["int8"] == []
    assert res.calibration_samples == 8
    assert set(res.timings) >= {"lower_s", "convert_fp32_s", "convert_int8_s", "total_s"}


def test_tensor_map_names_onnx_tensors(tmp_path):
    model, path = _export("mobilenet_v2", tmp_path)
    res = convert(path, out_dir=tmp_path, precisions=["fp32"])
    import onnx

    names = {o for n in onnx.load(str(path)).graph.node for o in n.output}
    tmap = res.tensor_map["fp32"]
    assert len(tmap) >= 40
    assert all(o.onnx_name in names for o in tmap.values())
    assert any(o.perm == (0, 2, 3, 1) for o in tmap.values())


def test_tensor_map_file_round_trip(tmp_path):
    tensors = {"a/Relu;b/Conv2D": TensorOrigin("a", (0, 2, 3, 1), [1, 0, 2]), "logits": TensorOrigin("y", (0, 1))}
    perms = {"a": [1, 0, 2], "a_slice__sp3": [2, 0]}
    path = tensor_map_path(tmp_path / "model_int8.tflite")
    assert path == tmp_path / "model_int8.tensormap.json" and path.name.endswith(TENSOR_MAP_SUFFIX)
    save_tensor_map(path, tensors=tensors, channel_permutations=perms, input_layout="nchw")
    assert [p.name for p in tmp_path.iterdir()] == ["model_int8.tensormap.json"]  # no temporary file left
    tm = load_tensor_map(path)
    assert tm == TensorMapFile(tensors=tensors, channel_permutations=perms, input_layout="nchw")
    assert tm.version == 1 and list(tm.tensors) == list(tensors)


@pytest.mark.parametrize("case", ["missing", "not_json", "foreign", "newer", "bad_tensor", "no_layout"])
def test_tensor_map_file_refuses_a_missing_corrupt_or_foreign_file(case, tmp_path):
    import json

    path = tmp_path / "model_int8.tensormap.json"
    save_tensor_map(path, tensors={"t": TensorOrigin("x", (0, 2, 3, 1))}, channel_permutations={},
                    input_layout="nhwc")
    doc = json.loads(path.read_text())
    if case == "missing":
        path.unlink()
    elif case == "not_json":
        path.write_text(path.read_text()[:40])
    elif case == "foreign":
        path.write_text(json.dumps({"artifacts": {}}))
    elif case == "newer":
        path.write_text(json.dumps({**doc, "version": 99}))
    elif case == "bad_tensor":
        path.write_text(json.dumps({**doc, "tensors": {"t": {"onnx_name": "x", "perm": "0231"}}}))
    else:
        path.write_text(json.dumps({k: v for k, v in doc.items() if k != "input_layout"}))
    with pytest.raises(ExportError) as ei:
        load_tensor_map(path)
    msg = str(ei.value)
    assert str(path) in msg and "re-run edgeport export" in msg and "\n" not in msg, msg


@pytest.mark.parametrize("pieces", ["slices", "convs"])
def test_saved_tensor_map_is_what_per_layer_validation_needs(pieces, tmp_path):
    """convert() writes model_<precision>.tensormap.json beside each TFLite file: every tensor the converter maps,
    the graph outputs (matched by position), and the shuffle pass's channel permutations (split-conv pieces too)."""
    from ai_edge_litert.interpreter import Interpreter

    name = "shufflenet_v2_cifar_x0_5"
    _, path = _export(name, tmp_path)
    res = convert(path, out_dir=tmp_path / "out", precisions=["fp32", "int8"], calibration=_calib(_shape(name), 4),
                  shuffle_piece_form=pieces)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "model_fp32.tensormap.json", "model_fp32.tflite", "model_int8.tensormap.json", "model_int8.tflite"]
    for prec in ("fp32", "int8"):
        assert res.tensor_map_files[prec] == tensor_map_path(res.artifacts[prec])
        tm = load_tensor_map(res.tensor_map_files[prec])
        assert tm.tensors == res.tensor_map[prec] and tm.channel_permutations == res.channel_permutations
        assert tm.input_layout == "nhwc"
    # (checked equal, when the file was introduced, to what per-layer validation recomputed by replaying the
    # converter's passes: calibration.layers._tensor_map)
    tm = load_tensor_map(res.tensor_map_files["int8"])
    outputs = Interpreter(model_path=str(res.artifacts["int8"])).get_output_details()
    assert [tm.tensors[d["name"]].onnx_name for d in outputs] == res.output_names
    assert tm.channel_permutations, "the absorbed shuffles permute tensors"
    split = [o for o in tm.tensors.values() if re.search(r"_slice__sp\d+$", o.onnx_name)]
    if pieces == "convs":  # each piece a split conv computes says which channels of its tensor it holds
        assert split and all(o.channel_perm == tm.channel_permutations[o.onnx_name] for o in split)


def test_int8_without_calibration_and_bad_samples_write_nothing(tmp_path):
    model, path = _export("shufflenet_v2_cifar_x0_5", tmp_path)
    out = tmp_path / "out"
    with pytest.raises(CalibrationError):
        convert(path, out_dir=out, precisions=["fp32", "int8"])
    with pytest.raises(CalibrationError, match="lacks input"):
        convert(path, out_dir=out, precisions=["fp32", "int8"], calibration=[{"wrong": np.zeros((1, 3, 32, 32))}])
    assert not out.exists() or not any(out.iterdir())


def _xnnpack_interpreter(path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)  # default delegates: XNNPACK
    it.allocate_tensors()  # raises "failed to create XNNPACK runtime" for a model XNNPACK cannot run
    return it


def _max_activation_scale(path) -> float:
    it = _xnnpack_interpreter(path)
    scales = [d["quantization"][0] for d in it.get_tensor_details() if d["dtype"] == np.int8 and d["quantization"][0]]
    return max(scales)


@pytest.mark.parametrize("producer", ["relu", "none", "hardswish"])
def test_int8_padded_maxpool_keeps_sane_scales_and_runs_on_xnnpack(producer, tmp_path):
    """Regression: a PADV2 with the lowest float as padding gave the producer a scale of 1e36 in INT8 (every
    activation rounded to one value) and XNNPACK refused the model. Both replacements (zero pad after a non-negative
    producer, edge replication otherwise) must keep scales sane, run on XNNPACK and stay exact in fp32."""
    act = {"relu": torch.nn.ReLU(), "none": torch.nn.Identity(), "hardswish": torch.nn.Hardswish()}[producer]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, 2, 1), act, torch.nn.MaxPool2d(3, 2, 1),
                                torch.nn.Conv2d(16, 8, 3, 1, 1), torch.nn.Flatten(), torch.nn.Linear(8 * 16 * 16, 10)).eval()
    export_onnx(model, input_shape=(1, 3, 64, 64), path=tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    cal = [{"input": rng.standard_normal((1, 3, 64, 64)).astype(np.float32)} for _ in range(8)]
    res = convert(tmp_path / "m.onnx", out_dir=tmp_path, precisions=["fp32", "int8"], calibration=cal)
    assert "PADV2" not in res.ops["int8"], res.ops["int8"]
    assert _max_activation_scale(res.artifacts["int8"]) < 1.0
    cos, err, peak = _parity(model, res, (1, 3, 64, 64))
    assert cos >= 0.99999 and err <= 1e-4 * peak


@pytest.mark.parametrize("pool", ["max", "avg", "avg_exclude_pad"])
def test_pooling_pads_are_written_on_the_row_view(pool, tmp_path):
    """A PAD in front of a pool is not fused by XNNPACK, and XNNPACK copies a PAD one innermost row at a time: on NHWC
    that is one row of C values per pixel (a 112x112x16 stem max-pool's PAD cost 5x the pool). The pooling lowerings
    pad the (N, H, W*C) view instead: every PAD/CONCATENATION that feeds a pool reads a rank-3 tensor, both models
    stay one XNNPACK partition, and the result is exact. XNNPACK has no INT8 average pool either: the INT8 model
    computes it as a depthwise conv with 1/9 weights (and a border rescale where padding is excluded)."""
    from ai_edge_litert.interpreter import Interpreter

    layer = {"max": torch.nn.MaxPool2d(3, 2, 1), "avg": torch.nn.AvgPool2d(3, 2, 1, count_include_pad=True),
             "avg_exclude_pad": torch.nn.AvgPool2d(3, 2, 1, count_include_pad=False)}[pool]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, 2, 1), torch.nn.ReLU(), layer, torch.nn.Conv2d(16, 8, 1),
                                torch.nn.Flatten(), torch.nn.Linear(8 * 8 * 8, 10)).eval()
    export_onnx(model, input_shape=(1, 3, 32, 32), path=tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    cal = [{"input": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)} for _ in range(4)]
    res = convert(tmp_path / "m.onnx", out_dir=tmp_path, precisions=["fp32", "int8"], calibration=cal,
                  bias_correction_samples=0)
    for prec in ("fp32", "int8"):
        it = Interpreter(model_path=str(res.artifacts[prec]), num_threads=1)
        it.allocate_tensors()
        ops = [d for d in it._get_ops_details() if d["op_name"] != "DELEGATE"]
        names = [d["op_name"] for d in ops]
        consumer = {int(i): d["op_name"] for d in ops for i in d["inputs"]}
        # a PAD in front of a convolution stays NHWC (XNNPACK fuses that one); a pool's PAD is on the row view
        pads = [d for d in ops if d["op_name"] == "PAD"
                and consumer.get(int(d["outputs"][0])) not in ("CONV_2D", "DEPTHWISE_CONV_2D")]
        if pool != "max" and prec == "int8":  # no INT8 average pool in XNNPACK: a 1/9 depthwise conv instead
            assert "AVERAGE_POOL_2D" not in names and names.count("DEPTHWISE_CONV_2D") == 1 and not pads, names
        else:
            assert len(pads) == 1, names
            assert len(it.get_tensor_details()[pads[0]["inputs"][0]]["shape"]) == 3
        assert xnnpack_coverage(res.artifacts[prec]).complete
    cos, err, peak = _parity(model, res, (1, 3, 32, 32))
    assert cos >= 0.99999 and err <= 1e-4 * peak
    x = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = np.concatenate([run_tflite(res.artifacts["int8"], res, {res.input_names[0]: x[i:i + 1]})[0]
                          for i in range(4)])
    assert _sqnr(ref, got) >= 25.0


@pytest.mark.parametrize("slopes", ["per_channel", "shared"])
def test_int8_prelu_is_integer_in_xnnpack_and_accurate(slopes, tmp_path):
    """INT8 PReLU: one shared slope is LEAKY_RELU, per-channel slopes x + k * (leaky(x) - x); either way no float
    tensor (the Keras spelling left a NEG the quantizer kept in float), one XNNPACK delegate for the whole graph, and
    INT8 as close to torch as the same network with a LeakyReLU of the mean slope (this toy net's INT8 noise floor is
    ~19-22 dB, so the control, not a fixed number, is the bar)."""
    rng = np.random.default_rng(0)
    cal = [{"input": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(8)]
    x = np.random.default_rng(1).standard_normal((4, 3, 16, 16)).astype(np.float32)
    weight = torch.linspace(-0.3, 0.6, 16) if slopes == "per_channel" else torch.tensor([0.2])

    def int8_sqnr(act, tag):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, 1, 1), act, torch.nn.Conv2d(16, 8, 1),
                                    torch.nn.Flatten(), torch.nn.Linear(8 * 16 * 16, 10)).eval()
        export_onnx(model, input_shape=(1, 3, 16, 16), path=tmp_path / f"{tag}.onnx")
        res = convert(tmp_path / f"{tag}.onnx", out_dir=tmp_path / tag, precisions=["int8"], calibration=cal,
                      bias_correction_samples=0)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = np.concatenate([run_tflite(res.artifacts["int8"], res, {res.input_names[0]: x[i:i + 1]})[0]
                              for i in range(4)])
        return res, _sqnr(ref, got)

    prelu = torch.nn.PReLU(weight.numel())
    with torch.no_grad():
        prelu.weight.copy_(weight)
    res, sqnr = int8_sqnr(prelu, "prelu")
    _, control = int8_sqnr(torch.nn.LeakyReLU(float(weight.mean())), "leaky")
    assert "NEG" not in res.ops["int8"] and "LEAKY_RELU" in res.ops["int8"], res.ops["int8"]
    assert res.float_tensors["int8"] == []
    assert xnnpack_coverage(res.artifacts["int8"]).complete
    assert sqnr >= control - 1.0, (sqnr, control)


def _one_per_family() -> list[str]:
    seen: dict[str, str] = {}
    for n in ZOO:
        seen.setdefault(get_spec(n).family, n)
    # plus the variants whose ops differ from their family's first: SiLU/SE, DFC resize, FBNetV3, hard-swish/SE
    return sorted(set(seen.values()) | {"efficientnet_b0", "ghostnetv2_x1_0", "fbnetv3_b", "mobilenet_v3_small"})


@pytest.mark.slow
@pytest.mark.parametrize("name", _one_per_family())
def test_zoo_int8_runs_on_xnnpack_with_sane_scales(name, tmp_path):
    """One model of every family converts to full INT8 (no float tensor left), XNNPACK runs the whole graph, and no
    activation scale is blown up by a constant. Random-init weights with BatchNorm statistics from real-photo crops
    (a raw init's activations shrink to ~1e-6, scales XNNPACK declines); INT8 *accuracy* is checked on trained
    models."""
    from edgeport.calibration import Split, load_samples
    from edgeport.models import calibrate_batchnorm

    shape = _shape(name)
    crops = load_samples("default", model_spec=get_spec(name), input_shape=shape[1:], num=8, split=Split.CALIBRATION)
    torch.manual_seed(0)
    x = torch.from_numpy(np.concatenate([next(iter(r.values())) for r in crops]))
    model = calibrate_batchnorm(build_model(name), inputs=x)
    path = tmp_path / "model.onnx"
    export_onnx(model, input_shape=shape, path=path)
    res = convert(path, out_dir=tmp_path, precisions=["int8"], calibration=list(crops)[:4],
                  bias_correction_samples=2)
    assert _max_activation_scale(res.artifacts["int8"]) < 1e4
    # full integer, all of it in XNNPACK (PReLU, average pools and nearest upsampling have INT8-specific forms)
    assert res.float_tensors["int8"] == []
    assert xnnpack_coverage(res.artifacts["int8"]).complete
    # every explicit PAD feeds one convolution, so XNNPACK folds it (a shared one runs as its own pad operator)
    assert unshare_conv_pads(res.artifacts["int8"].read_bytes())[1] == 0
    assert res.bias_correction is not None and res.bias_correction["layers"] > 0


def test_bias_correction_lowers_int8_error_and_keeps_shared_biases_apart(tmp_path):
    """Bias correction on a small conv net: the INT8 model's error against the fp32 model on held-out inputs does
    not grow, only biases change (weights identical), and two convs whose biases TensorFlow stored in one buffer
    (both zero) are corrected independently."""
    from edgeport.export.tflite.bias_correction import correct_biases
    from edgeport.export.tflite.flatbuffer import unpack as _unpack

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, 1, 1), torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 3, 1, 1),
                                torch.nn.ReLU(), torch.nn.Conv2d(16, 16, 1), torch.nn.ReLU(),
                                torch.nn.Conv2d(16, 16, 1), torch.nn.Flatten(), torch.nn.Linear(16 * 16 * 16, 10)).eval()
    with torch.no_grad():
        model[4].bias.zero_()
        model[6].bias.zero_()
    export_onnx(model, input_shape=(1, 3, 16, 16), path=tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    cal = [{"input": rng.uniform(0, 1, (1, 3, 16, 16)).astype(np.float32)} for _ in range(16)]
    res = convert(tmp_path / "m.onnx", out_dir=tmp_path, precisions=["fp32", "int8"], calibration=cal,
                  bias_correction_samples=0)
    f32, q8 = res.artifacts["fp32"].read_bytes(), res.artifacts["int8"].read_bytes()
    xs = [c["input"].transpose(0, 2, 3, 1).copy() for c in cal]
    fixed, rep = correct_biases(q8, float_model=f32, inputs=xs[:8])
    assert rep.layers == 5 and rep.corrected >= 1

    def err(blob):
        from ai_edge_litert.interpreter import Interpreter

        f = Interpreter(model_content=f32)
        q = Interpreter(model_content=blob)
        f.allocate_tensors(), q.allocate_tensors()
        tot = 0.0
        for x in xs[8:]:
            f.set_tensor(f.get_input_details()[0]["index"], x)
            f.invoke()
            d = q.get_input_details()[0]
            sc, zp = d["quantization"]
            q.set_tensor(d["index"], np.clip(np.round(x / sc + zp), -128, 127).astype(np.int8))
            q.invoke()
            o = q.get_output_details()[0]
            y = (q.get_tensor(o["index"]).astype(np.float32) - o["quantization"][1]) * o["quantization"][0]
            tot += float(((y - f.get_tensor(f.get_output_details()[0]["index"])) ** 2).sum())
        return tot

    assert err(fixed) <= err(q8) * 1.05
    before, after = _unpack(q8), _unpack(fixed)
    sg_b, sg_a = before.subgraphs[0], after.subgraphs[0]
    for tb, ta in zip(sg_b.tensors, sg_a.tensors):
        if tb.type != 2:  # not INT32 (biases): weights and everything else unchanged
            data_b = before.buffers[tb.buffer].data
            data_a = after.buffers[ta.buffer].data
            assert (data_b is None and data_a is None) or bytes(bytearray(data_b)) == bytes(bytearray(data_a))
    bias_buffers = [ta.buffer for ta in sg_a.tensors if ta.type == 2]
    assert len(bias_buffers) == len(set(bias_buffers)), "a corrected bias still shares its buffer"


def _sqnr(ref, got):
    return float(10 * np.log10((ref ** 2).sum() / max(((ref - got) ** 2).sum(), 1e-30)))


def test_int8_hard_swish_runs_in_xnnpack_at_the_fused_ops_fidelity(tmp_path, monkeypatch):
    """XNNPACK has no INT8 HARD_SWISH: the INT8 trace writes hard-swish as ADD(RELU6) + MUL with its 1/6 moved into
    the weights that read it (act_scale_fold.py), so MobileNetV3's INT8 model is one XNNPACK partition (20 with the
    fused op) and as close to fp32 as the fused op's model."""
    from edgeport.calibration import Split, load_samples
    from edgeport.models import calibrate_batchnorm

    name = "mobilenet_v3_small"
    spec = get_spec(name)
    shape = _shape(name)
    cal = load_samples("default", model_spec=spec, input_shape=shape[1:], num=32, split=Split.CALIBRATION)
    held = load_samples("default", model_spec=spec, input_shape=shape[1:], num=16, split=Split.VALIDATION)
    torch.manual_seed(0)
    x = torch.from_numpy(np.concatenate([next(iter(r.values())) for r in cal]))
    model = calibrate_batchnorm(build_model(name), inputs=x)  # trained-like activation scales
    export_onnx(model, input_shape=shape, path=tmp_path / "m.onnx")
    # bias correction off: the comparison is of the two hard-swish forms alone
    res = convert(tmp_path / "m.onnx", out_dir=tmp_path / "split", precisions=["fp32", "int8"], calibration=cal,
                  bias_correction_samples=0)
    monkeypatch.setattr(sys.modules["edgeport.export.tflite.convert"], "_INT8_FORMS", set())
    fused = convert(tmp_path / "m.onnx", out_dir=tmp_path / "fused", precisions=["int8"], calibration=cal,
                    bias_correction_samples=0)
    assert res.ops["fp32"].get("HARD_SWISH", 0) > 0  # fp32 keeps the fused op (XNNPACK runs it in fp32)
    assert "HARD_SWISH" not in res.ops["int8"] and fused.ops["int8"].get("HARD_SWISH", 0) > 0
    assert xnnpack_coverage(res.artifacts["int8"]).complete
    assert xnnpack_coverage(fused.artifacts["int8"]).partitions > 1
    assert res.float_tensors["int8"] == []
    feeds = [{res.input_names[0]: next(iter(r.values()))} for r in held]
    ref = np.concatenate([run_tflite(res.artifacts["fp32"], res, f)[0] for f in feeds])
    split_q = np.concatenate([run_tflite(res.artifacts["int8"], res, f)[0] for f in feeds])
    fused_q = np.concatenate([run_tflite(fused.artifacts["int8"], fused, f)[0] for f in feeds])
    assert _sqnr(ref, split_q) >= _sqnr(ref, fused_q) - 0.5, (_sqnr(ref, split_q), _sqnr(ref, fused_q))
