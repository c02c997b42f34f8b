"""What made INT8 slower than fp32 on XNNPACK, held off (issue 19, docs/int8_speed.md): a PAD that feeds two
convolutions (XNNPACK then runs it as its own pad operator instead of folding it into each convolution), and the
coverage report that names the ops XNNPACK leaves to TFLite's builtin kernels. No timing is asserted."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import torch

from edgeport.export.onnx_export import export_onnx
from edgeport.export.tflite import convert, xnnpack_coverage
from edgeport.export.tflite.flatbuffer import op_names, unpack
from edgeport.export.tflite.pad_unshare import unshare_conv_pads


def _pad_consumers(model_bytes: bytes) -> list[int]:
    """Number of consumers of every PAD output in the model."""
    model = unpack(model_bytes)
    sg = model.subgraphs[0]
    names = op_names(model)
    return [sum(op.outputs[0] in list(o.inputs) for o in sg.operators)
            for op, name in zip(sg.operators, names) if name == "PAD"]


def _tf_int8(fn, shape, path):
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    conv.representative_dataset = lambda: ([rng.standard_normal(shape).astype(np.float32)] for _ in range(8))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    path.write_bytes(conv.convert())
    return path


def _run(blob: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=blob, num_threads=1)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"]).copy()


class _ImageAndPool(torch.nn.Module):
    """ESPNetV2's stem beside its input reinforcement: a strided conv and a strided average pool of the same image,
    both with PyTorch's symmetric pad 1 (written as one explicit PAD (1, 0) for each)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, 2, 1)
        self.pool = torch.nn.AvgPool2d(3, 2, 1)
        self.head = torch.nn.Conv2d(11, 8, 1)

    def forward(self, x):
        return self.head(torch.cat([torch.relu(self.conv(x)), self.pool(x)], 1))


def test_int8_pads_feed_one_convolution_each(tmp_path):
    torch.manual_seed(0)
    export_onnx(_ImageAndPool().eval(), input_shape=(1, 3, 32, 32), path=tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    cal = [{"input": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)} for _ in range(4)]
    res = convert(tmp_path / "m.onnx", out_dir=tmp_path, precisions=["int8"], calibration=cal,
                  bias_correction_samples=0)
    blob = res.artifacts["int8"].read_bytes()
    assert res.ops["int8"].get("PAD", 0) >= 2, res.ops["int8"]  # the conv's and the pool's, one each
    assert _pad_consumers(blob) == [1] * res.ops["int8"]["PAD"]
    assert unshare_conv_pads(blob) == (blob, 0)
    assert xnnpack_coverage(res.artifacts["int8"]).complete


def test_unshare_conv_pads_is_exact(tmp_path):
    """A PAD TensorFlow merged for two convolutions is split; the INT8 outputs stay bit-identical."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((3, 3, 8, 8)).astype(np.float32)
    w2 = rng.standard_normal((3, 3, 8, 1)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec((1, 16, 16, 8), tf.float32)], autograph=False)
    def two_convs(x):
        p = tf.pad(x, [[0, 0], [1, 0], [1, 0], [0, 0]])
        a = tf.nn.conv2d(p, w1, 2, "VALID")
        b = tf.nn.depthwise_conv2d(tf.pad(x, [[0, 0], [1, 0], [1, 0], [0, 0]]), w2, [1, 2, 2, 1], "VALID")
        return a + b

    blob = _tf_int8(two_convs, (1, 16, 16, 8), tmp_path / "two.tflite").read_bytes()
    assert _pad_consumers(blob) == [2]
    split, added = unshare_conv_pads(blob)
    assert added == 1 and _pad_consumers(split) == [1, 1]
    x = rng.integers(-128, 128, size=(1, 16, 16, 8)).astype(np.int8)
    np.testing.assert_array_equal(_run(split, x), _run(blob, x))


def test_xnnpack_coverage_names_the_ops_left_to_builtin_kernels(tmp_path):
    """Signed-INT8 AVERAGE_POOL_2D is not an XNNPACK op (ai-edge-litert 2.3): the report names it."""
    w = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec((1, 16, 16, 8), tf.float32)], autograph=False)
    def pooled(x):
        return tf.nn.conv2d(tf.nn.avg_pool2d(tf.nn.conv2d(x, w, 1, "VALID"), 2, 2, "VALID"), w, 1, "VALID")

    cov = xnnpack_coverage(_tf_int8(pooled, (1, 16, 16, 8), tmp_path / "pool.tflite"))
    assert not cov.complete and cov.builtin_ops == {"AVERAGE_POOL_2D": 1}, cov
    assert "AVERAGE_POOL_2D x1" in str(cov)


def test_fully_delegated_model_reports_no_builtin_ops(tmp_path):
    w = np.random.default_rng(0).standard_normal((1, 1, 8, 8)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec((1, 16, 16, 8), tf.float32)], autograph=False)
    def plain(x):
        return tf.nn.relu(tf.nn.conv2d(x, w, 1, "VALID"))

    cov = xnnpack_coverage(_tf_int8(plain, (1, 16, 16, 8), tmp_path / "plain.tflite"))
    assert cov.complete and cov.builtin_ops == {} and str(cov) == "all"


class _HardNet(torch.nn.Module):
    """MobileNetV3's patterns: hard-swish into a conv, into a depthwise conv and into an SE block (mean, hard-sigmoid
    gate, multiply, projection), a mean into the classifier; plus one hard-swish whose output meets an Add (a factor
    cannot pass an Add), which must stay as it is."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 16, 3, 2, 1)
        self.dw = torch.nn.Conv2d(16, 16, 3, 1, 1, groups=16)
        self.fc1, self.fc2 = torch.nn.Conv2d(16, 8, 1), torch.nn.Conv2d(8, 16, 1)
        self.proj = torch.nn.Conv2d(16, 16, 1)
        self.side = torch.nn.Conv2d(16, 16, 1)
        self.head = torch.nn.Linear(16, 10)
        self.act = torch.nn.Hardswish()

    def forward(self, x):
        y = self.act(self.dw(self.act(self.stem(x))))
        gate = torch.nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(y.mean((2, 3), keepdim=True)))))
        y = self.proj(y * gate)
        r = self.act(self.side(y))
        return self.head((r + y).mean((2, 3)))


def test_hard_activation_scales_fold_into_the_weights_exactly(tmp_path):
    import onnx
    import onnxruntime as ort

    from edgeport.export.tflite.act_scale_fold import fold_hard_activation_scales
    from edgeport.export.tflite.graph import OnnxGraph

    torch.manual_seed(0)
    export_onnx(_HardNet().eval(), input_shape=(1, 3, 32, 32), path=tmp_path / "m.onnx")
    model = OnnxGraph.from_model(onnx.load(str(tmp_path / "m.onnx"))).model
    folded, n = fold_hard_activation_scales(model)
    ops = [node.op_type for node in folded.graph.node]
    assert n == 3 and ops.count("HardSwish") == 1 and "HardSigmoid" not in ops, ops  # the Add-bound one is kept
    renamed = {o for node in folded.graph.node for o in node.output if "__x" in o}
    assert any(o.endswith("__x6") for o in renamed) and any(o.endswith("__x36") for o in renamed), renamed
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    ref, got = (np.concatenate([ort.InferenceSession(m.SerializeToString()).run(None, {"input": x[i:i + 1]})[0]
                                for i in range(2)]) for m in (model, folded))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5 * float(np.abs(ref).max()))


def test_int8_hard_activations_lose_their_scalar_multiplies_and_fp32_is_untouched(tmp_path):
    torch.manual_seed(0)
    export_onnx(_HardNet().eval(), input_shape=(1, 3, 32, 32), path=tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    cal = [{"input": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)} for _ in range(4)]
    both = convert(tmp_path / "m.onnx", out_dir=tmp_path / "both", precisions=["fp32", "int8"], calibration=cal,
                   bias_correction_samples=0)
    alone = convert(tmp_path / "m.onnx", out_dir=tmp_path / "alone", precisions=["fp32"])
    assert both.artifacts["fp32"].read_bytes() == alone.artifacts["fp32"].read_bytes()
    # INT8 MULs: one per folded hard-swish (relu6(x + 3) * x), the SE multiply, and the kept hard-swish's two;
    # the unfolded forms had one more per hard-swish and hard-sigmoid (their x * 1/6)
    assert both.ops["int8"]["MUL"] == 2 + 1 + 2, both.ops["int8"]
    assert xnnpack_coverage(both.artifacts["int8"]).complete and both.float_tensors["int8"] == []
