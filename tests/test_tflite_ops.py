"""Every lowering of the ONNX -> TFLite converter against ONNX Runtime, on tiny one-node (or few-node) graphs,
with several attribute combinations. fp32 TFLite must match ORT to 1e-5 relative; layout-only cases must emit no
TRANSPOSE."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from onnx import helper

from _tflite_helpers import make_model, run_ort, run_tflite
from edgeport.errors import UnsupportedOpError
from edgeport.export.tflite import convert, supported_ops
from edgeport.export.tflite.shuffle import ShufflePassStats

R = np.random.default_rng(0)


def rnd(*shape, scale=1.0):
    return (R.standard_normal(shape) * scale).astype(np.float32)


N = helper.make_node
X4 = rnd(1, 4, 9, 10)   # odd/even spatial on purpose
X8 = rnd(1, 8, 8, 8)
GELU_C = {"s2": np.array(np.sqrt(2.0), np.float32), "is2": np.array(1 / np.sqrt(2.0), np.float32),
          "one": np.array(1.0, np.float32), "half": np.array(0.5, np.float32), "three": np.array(3.0, np.float32),
          "k1": np.array(0.044715, np.float32), "k2": np.array(np.sqrt(2 / np.pi), np.float32)}

# (id, nodes, inputs, initializers, allow_transpose)
CASES = [
    # ---- Conv
    ("conv3x3_p1", [N("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
     {"x": X4}, {"w": rnd(6, 4, 3, 3), "b": rnd(6)}, False),
    ("conv3x3_s2_p1_even", [N("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
     {"x": X8}, {"w": rnd(5, 8, 3, 3)}, False),
    ("conv3x3_s2_p1_odd", [N("Conv", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1])],
     {"x": X4}, {"w": rnd(5, 4, 3, 3)}, False),
    ("conv_asym_pads", [N("Conv", ["x", "w"], ["y"], pads=[0, 2, 1, 0])], {"x": X4}, {"w": rnd(3, 4, 3, 2)}, False),
    ("conv_dilated", [N("Conv", ["x", "w"], ["y"], dilations=[2, 2], pads=[2, 2, 2, 2])],
     {"x": X4}, {"w": rnd(4, 4, 3, 3)}, False),
    ("conv_5x5_s2_p2", [N("Conv", ["x", "w"], ["y"], strides=[2, 2], pads=[2, 2, 2, 2])],
     {"x": X8}, {"w": rnd(4, 8, 5, 5)}, False),
    ("conv_grouped_g2", [N("Conv", ["x", "w", "b"], ["y"], group=2, pads=[1, 1, 1, 1])],
     {"x": X8}, {"w": rnd(6, 4, 3, 3), "b": rnd(6)}, False),
    ("conv_grouped_1x1_g4", [N("Conv", ["x", "w"], ["y"], group=4)], {"x": X8}, {"w": rnd(12, 2, 1, 1)}, False),
    ("conv_depthwise", [N("Conv", ["x", "w", "b"], ["y"], group=8, pads=[1, 1, 1, 1], strides=[2, 2])],
     {"x": X8}, {"w": rnd(8, 1, 3, 3), "b": rnd(8)}, False),
    ("conv_depthwise_mult2_dil2", [N("Conv", ["x", "w"], ["y"], group=4, dilations=[2, 2], pads=[2, 2, 2, 2])],
     {"x": X4}, {"w": rnd(8, 1, 3, 3)}, False),
    ("conv_same_upper_s2", [N("Conv", ["x", "w"], ["y"], auto_pad="SAME_UPPER", strides=[2, 2])],
     {"x": X4}, {"w": rnd(3, 4, 3, 3)}, False),
    ("conv_same_lower_s2", [N("Conv", ["x", "w"], ["y"], auto_pad="SAME_LOWER", strides=[2, 2])],
     {"x": X8}, {"w": rnd(3, 8, 4, 4)}, False),
    # ---- ConvTranspose
    ("convT_k3_s2_p1_op1", [N("ConvTranspose", ["x", "w", "b"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1],
                              output_padding=[1, 1])], {"x": X4}, {"w": rnd(4, 3, 3, 3), "b": rnd(3)}, False),
    ("convT_k4_s2_p1", [N("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1])],
     {"x": X8}, {"w": rnd(8, 2, 4, 4)}, False),
    ("convT_k2_s2", [N("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2])], {"x": X4}, {"w": rnd(4, 5, 2, 2)}, False),
    # ---- BatchNormalization
    ("batchnorm", [N("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], epsilon=1e-3)],
     {"x": X4}, {"s": rnd(4), "b": rnd(4), "m": rnd(4), "v": np.abs(rnd(4)) + 0.5}, False),
    # ---- Gemm / MatMul
    ("gemm_transB", [N("Flatten", ["x"], ["f"]), N("Gemm", ["f", "w", "b"], ["y"], transB=1)],
     {"x": rnd(1, 6, 1, 1)}, {"w": rnd(5, 6), "b": rnd(5)}, False),
    ("gemm_alpha_beta", [N("Gemm", ["x", "w", "b"], ["y"], alpha=0.5, beta=2.0)],
     {"x": rnd(3, 6)}, {"w": rnd(6, 4), "b": rnd(1, 4)}, False),
    ("matmul_const", [N("MatMul", ["x", "w"], ["y"])], {"x": rnd(2, 6)}, {"w": rnd(6, 3)}, False),
    ("matmul_act", [N("MatMul", ["x", "z"], ["y"])], {"x": rnd(2, 3, 6), "z": rnd(2, 6, 4)}, {}, False),
    ("matmul_vectors", [N("MatMul", ["x", "w"], ["m"]), N("MatMul", ["z", "m"], ["y"])],
     {"x": rnd(6), "z": rnd(2, 3, 4)},
     {"w": rnd(6, 4)}, False),
    # ---- element-wise, broadcasting against NHWC activations
    ("add_chan_const", [N("Add", ["x", "c"], ["y"])], {"x": X4}, {"c": rnd(4, 1, 1)}, False),
    ("add_two_acts", [N("Add", ["x", "z"], ["y"])], {"x": X4, "z": rnd(1, 4, 9, 10)}, {}, False),
    ("sub_const_first", [N("Sub", ["c", "x"], ["y"])], {"x": X4}, {"c": rnd(1, 4, 1, 10)}, False),
    ("mul_scalar", [N("Mul", ["x", "c"], ["y"])], {"x": X4}, {"c": np.array(1.5, np.float32)}, False),
    ("div_by_gap", [N("GlobalAveragePool", ["x"], ["g"]), N("Add", ["g", "one"], ["g1"]),
                    N("Div", ["x", "g1"], ["y"])], {"x": np.abs(X4)}, {"one": np.array(1.0, np.float32)}, False),
    ("se_mul", [N("ReduceMean", ["x", "ax"], ["g"], keepdims=1), N("Sigmoid", ["g"], ["s"]),
                N("Mul", ["x", "s"], ["y"])], {"x": X4}, {"ax": np.array([2, 3], np.int64)}, False),
    ("max_min_variadic", [N("Max", ["x", "z", "c"], ["m"]), N("Min", ["m", "c2"], ["y"])],
     {"x": X4, "z": rnd(1, 4, 9, 10)}, {"c": rnd(10), "c2": np.array(0.7, np.float32)}, False),
    ("sum3", [N("Sum", ["x", "z", "c"], ["y"])], {"x": X4, "z": rnd(1, 4, 9, 10)}, {"c": rnd(4, 1, 1)}, False),
    # ---- activations
    ("relu", [N("Relu", ["x"], ["y"])], {"x": X4}, {}, False),
    ("clip_relu6", [N("Clip", ["x", "lo", "hi"], ["y"])], {"x": X4 * 4},
     {"lo": np.array(0, np.float32), "hi": np.array(6, np.float32)}, False),
    ("clip_generic", [N("Clip", ["x", "lo", "hi"], ["y"])], {"x": X4},
     {"lo": np.array(-0.5, np.float32), "hi": np.array(0.8, np.float32)}, False),
    ("clip_min_only", [N("Clip", ["x", "lo"], ["y"])], {"x": X4}, {"lo": np.array(-0.2, np.float32)}, False),
    # ONNX Clip is numpy.clip: min > max gives `max` everywhere (found by the ONNX backend node tests)
    ("clip_min_above_max", [N("Clip", ["x", "lo", "hi"], ["y"])], {"x": X4},
     {"lo": np.array(0.5, np.float32), "hi": np.array(-0.5, np.float32)}, False),
    ("prelu_channel", [N("PRelu", ["x", "s"], ["y"])], {"x": X4}, {"s": rnd(4, 1, 1)}, False),
    ("prelu_scalar", [N("PRelu", ["x", "s"], ["y"])], {"x": X4}, {"s": np.array([0.25], np.float32)}, False),
    # slopes all <= 1 (MAXIMUM form, incl. negative slopes), all >= 1 (MINIMUM form), computed at run time
    ("prelu_slopes_below_1", [N("PRelu", ["x", "s"], ["y"])], {"x": X4},
     {"s": np.array([0.0, 0.3, -0.7, 1.0], np.float32).reshape(4, 1, 1)}, False),
    ("prelu_slopes_above_1", [N("PRelu", ["x", "s"], ["y"])], {"x": X4},
     {"s": np.array([1.0, 1.5, 3.0, 2.0], np.float32).reshape(4, 1, 1)}, False),
    ("prelu_computed_slope", [N("Sigmoid", ["s0"], ["s"]), N("PRelu", ["x", "s"], ["y"])],
     {"x": X4, "s0": rnd(4, 1, 1)}, {}, False),
    ("leaky_relu", [N("LeakyRelu", ["x"], ["y"], alpha=0.1)], {"x": X4}, {}, False),
    ("sigmoid", [N("Sigmoid", ["x"], ["y"])], {"x": X4}, {}, False),
    ("silu_pattern", [N("Sigmoid", ["x"], ["s"]), N("Mul", ["x", "s"], ["y"])], {"x": X4}, {}, False),
    ("hard_sigmoid_default", [N("HardSigmoid", ["x"], ["y"])], {"x": X4 * 4}, {}, False),
    ("hard_sigmoid_torch", [N("HardSigmoid", ["x"], ["y"], alpha=1 / 6, beta=0.5)], {"x": X4 * 4}, {}, False),
    ("hard_swish", [N("HardSwish", ["x"], ["y"])], {"x": X4 * 4}, {}, False),
    ("tanh", [N("Tanh", ["x"], ["y"])], {"x": X4}, {}, False),
    ("elu", [N("Elu", ["x"], ["y"], alpha=0.7)], {"x": X4}, {}, False),
    ("unary_chain", [N("Abs", ["x"], ["a"]), N("Sqrt", ["a"], ["b"]), N("Neg", ["b"], ["c"]),
                     N("Exp", ["c"], ["d"]), N("Identity", ["d"], ["y"])], {"x": X4}, {}, False),
    # ---- concat / split / slice on the channel axis and others
    ("concat_c", [N("Concat", ["x", "z"], ["y"], axis=1)], {"x": X4, "z": rnd(1, 2, 9, 10)}, {}, False),
    ("concat_h_const", [N("Concat", ["x", "c"], ["y"], axis=2)], {"x": X4}, {"c": rnd(1, 4, 2, 10)}, False),
    ("concat_neg_axis", [N("Concat", ["x", "z"], ["y"], axis=-1)], {"x": X4, "z": rnd(1, 4, 9, 3)}, {}, False),
    ("split_c_equal", [N("Split", ["x"], ["a", "b"], axis=1, num_outputs=2), N("Sub", ["a", "b"], ["y"])],
     {"x": X8}, {}, False),
    ("split_c_uneven", [N("Split", ["x", "s"], ["a", "b", "c"], axis=1), N("Concat", ["c", "a", "b"], ["y"], axis=1)],
     {"x": X8}, {"s": np.array([2, 5, 1], np.int64)}, False),
    ("split_w", [N("Split", ["x"], ["a", "b"], axis=3, num_outputs=2), N("Add", ["a", "b"], ["y"])],
     {"x": X4}, {}, False),
    ("slice_channels", [N("Slice", ["x", "st", "en", "ax"], ["y"])], {"x": X8},
     {"st": np.array([2], np.int64), "en": np.array([6], np.int64), "ax": np.array([1], np.int64)}, False),
    ("slice_hw_step2", [N("Slice", ["x", "st", "en", "ax", "sp"], ["y"])], {"x": X4},
     {"st": np.array([1, 0], np.int64), "en": np.array([9, 100], np.int64), "ax": np.array([2, 3], np.int64),
      "sp": np.array([2, 3], np.int64)}, False),
    ("slice_negative", [N("Slice", ["x", "st", "en", "ax", "sp"], ["y"])], {"x": X4},
     {"st": np.array([-1], np.int64), "en": np.array([-100], np.int64), "ax": np.array([-1], np.int64),
      "sp": np.array([-2], np.int64)}, False),
    # ---- reshape family
    ("flatten_after_gap", [N("GlobalAveragePool", ["x"], ["g"]), N("Flatten", ["g"], ["y"])], {"x": X4}, {}, False),
    ("reshape_after_gap", [N("GlobalMaxPool", ["x"], ["g"]), N("Reshape", ["g", "s"], ["y"])],
     {"x": X4}, {"s": np.array([1, -1], np.int64)}, False),
    ("flatten_spatial", [N("Flatten", ["x"], ["y"], axis=1)], {"x": X4}, {}, True),
    ("flatten_negative_axis", [N("Flatten", ["x"], ["y"], axis=-1)], {"x": X4}, {}, True),
    ("flatten_negative_axis_2", [N("Flatten", ["x"], ["y"], axis=-2)], {"x": X4}, {}, True),
    ("squeeze_unsqueeze", [N("ReduceMean", ["x", "ax"], ["g"], keepdims=1), N("Squeeze", ["g", "sq"], ["s"]),
                           N("Unsqueeze", ["s", "sq"], ["y"])], {"x": X4},
     {"ax": np.array([2, 3], np.int64), "sq": np.array([2, 3], np.int64)}, False),
    ("channel_shuffle_g2", [N("Reshape", ["x", "s1"], ["r"]), N("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3, 4]),
                            N("Reshape", ["t", "s2"], ["y"])], {"x": X8},
     {"s1": np.array([1, 2, 4, 8, 8], np.int64), "s2": np.array([1, 8, 8, 8], np.int64)}, True),
    ("channel_shuffle_g3_odd", [N("Reshape", ["x", "s1"], ["r"]), N("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3, 4]),
                                N("Reshape", ["t", "s2"], ["y"])], {"x": rnd(1, 6, 5, 7)},
     {"s1": np.array([1, 3, 2, 5, 7], np.int64), "s2": np.array([1, 6, 5, 7], np.int64)}, True),
    ("transpose_then_conv", [N("Transpose", ["x"], ["t"], perm=[0, 1, 3, 2]), N("Relu", ["t"], ["y"])],
     {"x": X4}, {}, True),
    ("transpose_nchw_to_nhwc_out", [N("Transpose", ["x"], ["y"], perm=[0, 2, 3, 1])], {"x": X4}, {}, True),
    ("transpose_3d", [N("Transpose", ["x"], ["t"], perm=[0, 2, 1]), N("MatMul", ["t", "w"], ["y"])],
     {"x": rnd(1, 5, 6)}, {"w": rnd(5, 3)}, True),
    # ---- pad
    ("pad_constant", [N("Pad", ["x", "p", "v"], ["y"], mode="constant")], {"x": X4},
     {"p": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64), "v": np.array(0.5, np.float32)}, False),
    ("pad_reflect", [N("Pad", ["x", "p"], ["y"], mode="reflect")], {"x": X4},
     {"p": np.array([0, 0, 2, 1, 0, 0, 1, 2], np.int64)}, False),
    ("pad_axes_channels", [N("Pad", ["x", "p", "", "ax"], ["y"])], {"x": X4},
     {"p": np.array([1, 3], np.int64), "ax": np.array([1], np.int64)}, False),
    # ---- pools
    ("maxpool_k3s2p1_even", [N("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
     {"x": X8}, {}, False),
    ("maxpool_k3s2p1_odd", [N("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
     {"x": X4}, {}, False),
    ("maxpool_k2s2_ceil", [N("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)],
     {"x": X4}, {}, False),
    ("maxpool_k3s1_same", [N("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], auto_pad="SAME_UPPER")], {"x": X4}, {},
     False),
    ("avgpool_include_pad", [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                               count_include_pad=1)], {"x": X4}, {}, False),
    ("avgpool_exclude_pad", [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
     {"x": X8}, {}, False),
    ("avgpool_s1_same_exclude", [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
     {"x": X4}, {}, False),
    ("avgpool_ceil_include", [N("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                ceil_mode=1, count_include_pad=1)], {"x": X8}, {}, False),
    ("avgpool_ceil_exclude", [N("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)],
     {"x": X4}, {}, False),
    ("global_avg", [N("GlobalAveragePool", ["x"], ["y"])], {"x": X4}, {}, False),
    ("global_max", [N("GlobalMaxPool", ["x"], ["y"])], {"x": X4}, {}, False),
    # ---- reductions / softmax
    ("reducemean_hw_keep0", [N("ReduceMean", ["x", "ax"], ["y"], keepdims=0)], {"x": X4},
     {"ax": np.array([2, 3], np.int64)}, False),
    ("reducemean_c", [N("ReduceMean", ["x", "ax"], ["y"], keepdims=1)], {"x": X4}, {"ax": np.array([1], np.int64)},
     False),
    ("reducemax_c_keep0", [N("ReduceMax", ["x", "ax"], ["y"], keepdims=0)], {"x": X4},
     {"ax": np.array([1], np.int64)}, True),
    ("reducesum_min", [N("ReduceSum", ["x", "ax"], ["s"], keepdims=1), N("ReduceMin", ["s", "ax2"], ["y"])],
     {"x": X4}, {"ax": np.array([3], np.int64), "ax2": np.array([1], np.int64)}, False),
    ("softmax_c", [N("Softmax", ["x"], ["y"], axis=1)], {"x": X4}, {}, False),
    ("softmax_2d", [N("Softmax", ["x"], ["y"])], {"x": rnd(2, 7)}, {}, False),
    ("logsoftmax_2d", [N("LogSoftmax", ["x"], ["y"], axis=1)], {"x": rnd(2, 7)}, {}, False),
    # ---- resize
    ("resize_nearest_x2_asym_floor", [N("Resize", ["x", "", "sc"], ["y"], mode="nearest",
                                        coordinate_transformation_mode="asymmetric", nearest_mode="floor")],
     {"x": X4}, {"sc": np.array([1, 1, 2, 2], np.float32)}, False),
    ("resize_nearest_3to7_torch", [N("Resize", ["x", "", "", "sz"], ["y"], mode="nearest",
                                     coordinate_transformation_mode="asymmetric", nearest_mode="floor")],
     {"x": rnd(1, 4, 3, 3)}, {"sz": np.array([1, 4, 7, 7], np.int64)}, False),
    ("resize_nearest_half_pixel", [N("Resize", ["x", "", "sc"], ["y"], mode="nearest")],
     {"x": X4}, {"sc": np.array([1, 1, 2, 2], np.float32)}, False),
    ("resize_nearest_down_half_pixel", [N("Resize", ["x", "", "", "sz"], ["y"], mode="nearest")],
     {"x": X8}, {"sz": np.array([1, 8, 4, 4], np.int64)}, False),
    ("resize_linear_half_pixel", [N("Resize", ["x", "", "sc"], ["y"], mode="linear")],
     {"x": X4}, {"sc": np.array([1, 1, 2, 2], np.float32)}, False),
    # align_corners with scales and a rounded output length: ORT's (and torch's) (out - 1) denominator
    ("resize_linear_align_corners_down_scales", [N("Resize", ["x", "", "sc"], ["y"], mode="linear",
                                                    coordinate_transformation_mode="align_corners")],
     {"x": X4}, {"sc": np.array([1, 1, 0.6, 0.6], np.float32)}, True),
    ("resize_linear_align_corners", [N("Resize", ["x", "", "", "sz"], ["y"], mode="linear",
                                       coordinate_transformation_mode="align_corners")],
     {"x": X4}, {"sz": np.array([1, 4, 17, 13], np.int64)}, False),
    ("resize_linear_pytorch_half_pixel", [N("Resize", ["x", "", "", "sz"], ["y"], mode="linear",
                                            coordinate_transformation_mode="pytorch_half_pixel")],
     {"x": rnd(1, 4, 3, 3)}, {"sz": np.array([1, 4, 7, 7], np.int64)}, False),
    ("resize_linear_asymmetric", [N("Resize", ["x", "", "sc"], ["y"], mode="linear",
                                    coordinate_transformation_mode="asymmetric")],
     {"x": X4}, {"sc": np.array([1, 1, 1.5, 2], np.float32)}, False),
    ("resize_nearest_ceil_fallback", [N("Resize", ["x", "", "", "sz"], ["y"], mode="nearest",
                                        coordinate_transformation_mode="half_pixel", nearest_mode="ceil")],
     {"x": rnd(1, 4, 3, 3)}, {"sz": np.array([1, 4, 7, 7], np.int64)}, False),
    # modes with no TFLite kernel: one constant interpolation matrix per axis (FULLY_CONNECTED / BATCH_MATMUL)
    ("resize_cubic_half_pixel", [N("Resize", ["x", "", "sc"], ["y"], mode="cubic")],
     {"x": X4}, {"sc": np.array([1, 1, 2, 1.5], np.float32)}, False),
    ("resize_cubic_align_exclude", [N("Resize", ["x", "", "", "sz"], ["y"], mode="cubic", cubic_coeff_a=-0.5,
                                      exclude_outside=1, coordinate_transformation_mode="align_corners")],
     {"x": X4}, {"sz": np.array([1, 4, 5, 13], np.int64)}, False),
    ("resize_linear_antialias_down", [N("Resize", ["x", "", "", "sz"], ["y"], mode="linear", antialias=1)],
     {"x": X8}, {"sz": np.array([1, 8, 3, 5], np.int64)}, False),
    ("resize_tf_crop_extrapolate", [N("Resize", ["x", "roi", "", "sz"], ["y"], mode="linear",
                                      coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=2.0)],
     {"x": X4}, {"roi": np.array([0, 0, 0.2, -0.1, 1, 1, 0.9, 1.2], np.float32),
                 "sz": np.array([1, 4, 6, 7], np.int64)}, False),
    ("resize_nearest_keep_aspect", [N("Resize", ["x", "", "", "sz"], ["y"], mode="nearest", axes=[2, 3],
                                      keep_aspect_ratio_policy="not_larger")],
     {"x": X4}, {"sz": np.array([14, 30], np.int64)}, False),
    # ---- constants and static shapes
    ("constant_shape_reshape", [N("Constant", [], ["c"], value=helper.make_tensor("v", 1, [4, 1, 1], [1, 2, 3, 4])),
                                N("Mul", ["x", "c"], ["m"]), N("Shape", ["m"], ["s"]),
                                N("Reshape", ["m", "s"], ["y"])], {"x": X4}, {}, False),
    # ---- transformer-era ops (issue 17): GELU patterns, Erf, LayerNorm, Pow, attention matmuls, any-axis softmax
    ("gelu_erf_pattern", [N("Div", ["x", "s2"], ["d"]), N("Erf", ["d"], ["e"]), N("Add", ["e", "one"], ["a"]),
                          N("Mul", ["x", "a"], ["m"]), N("Mul", ["m", "half"], ["y"])], {"x": X4 * 3}, GELU_C, False),
    ("gelu_erf_pattern_half_first", [N("Mul", ["x", "is2"], ["d"]), N("Erf", ["d"], ["e"]),
                                     N("Mul", ["half", "x"], ["h"]), N("Add", ["one", "e"], ["a"]), N("Mul", ["h", "a"], ["y"])],
     {"x": rnd(2, 5, 6) * 3}, GELU_C, False),
    ("gelu_tanh_pattern", [N("Pow", ["x", "three"], ["p"]), N("Mul", ["p", "k1"], ["q"]), N("Add", ["x", "q"], ["s"]),
                           N("Mul", ["s", "k2"], ["u"]), N("Tanh", ["u"], ["t"]), N("Add", ["t", "one"], ["a"]),
                           N("Mul", ["x", "half"], ["h"]), N("Mul", ["h", "a"], ["y"])], {"x": X4 * 3}, GELU_C, False),
    ("gelu_erf_doubled", [N("Div", ["x", "s2"], ["d"]), N("Erf", ["d"], ["e"]), N("Add", ["one", "e"], ["a"]),
                          N("Mul", ["a", "x"], ["y"])], {"x": X4 * 3}, GELU_C, False),
    ("gelu_erf_doubled_shared_const", [N("Div", ["x", "s2"], ["d"]), N("Erf", ["d"], ["e"]),
                                       N("Add", ["e", "one"], ["a"]), N("Mul", ["x", "a"], ["m"]),
                                       N("Div", ["m", "s2"], ["d2"]), N("Erf", ["d2"], ["e2"]),
                                       N("Add", ["e2", "one"], ["a2"]), N("Mul", ["m", "a2"], ["y"])],
     {"x": X4}, GELU_C, False),
    ("gelu_onnx20", [N("Gelu", ["x"], ["y"])], {"x": rnd(1, 7, 12) * 3}, {}, False, 20),
    ("gelu_onnx20_tanh", [N("Gelu", ["x"], ["y"], approximate="tanh")], {"x": rnd(1, 7, 12) * 3}, {}, False, 20),
    ("erf_alone", [N("Erf", ["x"], ["y"])], {"x": X4 * 2}, {}, False),
    ("erf_shared_input", [N("Div", ["x", "s2"], ["d"]), N("Erf", ["d"], ["e"]), N("Add", ["e", "d"], ["y"])],
     {"x": X4 * 3}, GELU_C, False),
    ("layernorm_last", [N("LayerNormalization", ["x", "g", "b"], ["y"], epsilon=1e-6)], {"x": rnd(2, 5, 16)},
     {"g": rnd(16), "b": rnd(16)}, False),
    ("layernorm_axis1_4d", [N("LayerNormalization", ["x", "g"], ["y"], axis=1)], {"x": X4}, {"g": rnd(4, 9, 10)},
     False),
    ("layernorm_channels_nhwc", [N("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
                                 N("LayerNormalization", ["t", "g", "b"], ["l"]),
                                 N("Transpose", ["l"], ["y"], perm=[0, 3, 1, 2])], {"x": X4},
     {"g": rnd(4), "b": rnd(4)}, False),
    ("layernorm_decomposed_opset13", [N("ReduceMean", ["x"], ["m"], axes=[-1]), N("Sub", ["x", "m"], ["d"]),
                                      N("Pow", ["d", "two"], ["p"]), N("ReduceMean", ["p"], ["v"], axes=[-1]),
                                      N("Add", ["v", "eps"], ["ve"]), N("Sqrt", ["ve"], ["sd"]),
                                      N("Div", ["d", "sd"], ["n"]), N("Mul", ["n", "g"], ["ng"]),
                                      N("Add", ["ng", "b"], ["y"])], {"x": rnd(1, 6, 10)},
     {"two": np.array(2.0, np.float32), "eps": np.array(1e-5, np.float32), "g": rnd(10), "b": rnd(10)}, False, 13),
    ("pow_forms", [N("Abs", ["x"], ["a"]), N("Pow", ["a", "h"], ["p1"]), N("Pow", ["p1", "three"], ["p2"]),
                   N("Pow", ["p2", "g"], ["p3"]), N("Pow", ["p3", "mh"], ["y"])], {"x": X4 + 0.1},
     {"h": np.array(0.5, np.float32), "three": np.array(3.0, np.float32), "g": np.array(1.7, np.float32),
      "mh": np.array(-0.5, np.float32)}, False),
    ("pow_computed_exponent", [N("Abs", ["x"], ["a"]), N("Sigmoid", ["z"], ["e"]), N("Pow", ["a", "e"], ["y"])],
     {"x": X4 + 0.1, "z": rnd(4, 1, 1)}, {}, False),
    ("attention_matmuls", [N("MatMul", ["q", "kt"], ["s"]), N("Softmax", ["s"], ["p"], axis=-1),
                           N("MatMul", ["p", "v"], ["y"])], {"q": rnd(2, 5, 4), "kt": rnd(2, 4, 5),
                                                            "v": rnd(2, 5, 3)}, {}, False),
    ("matmul_k_transposed", [N("Transpose", ["k"], ["kt"], perm=[0, 2, 1]), N("MatMul", ["q", "kt"], ["y"])],
     {"q": rnd(2, 5, 4), "k": rnd(2, 6, 4)}, {}, False),
    # 4-D heads from a token tensor: (B, N, H*d) -> (B, N, H, d) -> (B, H, N, d); K read transposed
    ("attention_heads_4d", [N("Reshape", ["x", "s4"], ["r"]), N("Transpose", ["r"], ["q"], perm=[0, 2, 1, 3]),
                            N("Transpose", ["r"], ["kt"], perm=[0, 2, 3, 1]), N("MatMul", ["q", "kt"], ["s"]),
                            N("Softmax", ["s"], ["y"], axis=-1)], {"x": rnd(1, 5, 8)},
     {"s4": np.array([1, 5, 2, 4], np.int64)}, True),
    ("softmax_axis_h_nhwc", [N("Softmax", ["x"], ["y"], axis=2)], {"x": X4}, {}, False),
    ("logsoftmax_axis0_3d", [N("LogSoftmax", ["x"], ["y"], axis=1)], {"x": rnd(2, 5, 3)}, {}, False),
    ("reduce_l2", [N("ReduceL2", ["x", "ax"], ["y"], keepdims=1)], {"x": X4}, {"ax": np.array([1], np.int64)}, False),
    ("reduce_l2_hw_keep0", [N("ReduceL2", ["x", "ax"], ["y"], keepdims=0)], {"x": X4},
     {"ax": np.array([2, 3], np.int64)}, False),
    ("instancenorm", [N("InstanceNormalization", ["x", "g", "b"], ["y"], epsilon=1e-3)], {"x": X4},
     {"g": rnd(4), "b": rnd(4)}, False),
    # torch GroupNorm(2, 4): reshape to (N, 2, -1), InstanceNorm, reshape back, per-channel affine
    ("groupnorm_pattern", [N("Reshape", ["x", "s3"], ["r"]), N("InstanceNormalization", ["r", "one2", "zero2"], ["i"]),
                           N("Reshape", ["i", "s4"], ["n"]), N("Mul", ["n", "g"], ["m"]), N("Add", ["m", "b"], ["y"])],
     {"x": X4}, {"s3": np.array([1, 2, -1], np.int64), "one2": np.ones(2, np.float32), "zero2": np.zeros(2, np.float32),
                 "s4": np.array([1, 4, 9, 10], np.int64), "g": rnd(4, 1, 1), "b": rnd(4, 1, 1)}, True),
    # ---- indexing and logic
    ("gather_scalar_token", [N("Gather", ["x", "i"], ["y"], axis=1)], {"x": rnd(1, 5, 8)},
     {"i": np.array(0, np.int64)}, False),
    ("gather_channels_nhwc", [N("Gather", ["x", "i"], ["y"], axis=1)], {"x": X8}, {"i": np.array([3, 1, 7], np.int64)},
     False),
    ("gather_range_neg", [N("Gather", ["x", "i"], ["y"], axis=-1)], {"x": X4}, {"i": np.array([-4, -3], np.int64)},
     False),
    # (the 3-D output leaves in ONNX layout: one TRANSPOSE at the output boundary)
    ("gather_scalar_w_nhwc", [N("Gather", ["x", "i"], ["y"], axis=3)], {"x": X4}, {"i": np.array(2, np.int64)}, True),
    ("gather_2d_indices", [N("Gather", ["x", "i"], ["y"], axis=0)], {"x": rnd(6, 3)},
     {"i": np.array([[0, 5], [2, 2]], np.int64)}, False),
    ("gather_computed_indices", [N("TopK", ["s", "k"], ["v", "i"], axis=-1), N("Gather", ["x", "i"], ["y"], axis=0)],
     {"x": rnd(7, 3), "s": rnd(7)}, {"k": np.array([3], np.int64)}, False),
    ("topk_last", [N("TopK", ["x", "k"], ["y", "i"], axis=-1)], {"x": rnd(2, 9)}, {"k": np.array([4], np.int64)},
     False),
    ("topk_smallest", [N("TopK", ["x", "k"], ["y", "i"], axis=0, largest=0)], {"x": rnd(9, 2)},
     {"k": np.array([3], np.int64)}, True),
    ("topk_channels_nhwc", [N("TopK", ["x", "k"], ["y", "i"], axis=1)], {"x": X8}, {"k": np.array([2], np.int64)},
     False),
    ("where_compare", [N("Greater", ["x", "z"], ["g"]), N("Less", ["x", "c"], ["l"]), N("Equal", ["g", "l"], ["e"]),
                       N("Not", ["e"], ["ne"]), N("Where", ["ne", "x", "z"], ["y"])],
     {"x": X4, "z": rnd(1, 4, 9, 10)}, {"c": np.array(0.3, np.float32)}, False),
    ("where_const_values", [N("GreaterOrEqual", ["x", "c"], ["g"]), N("Where", ["g", "a", "b"], ["y"])], {"x": X4},
     {"c": rnd(4, 1, 1), "a": np.array(1.0, np.float32), "b": rnd(1, 1, 10)}, False),
    ("cast_compare", [N("LessOrEqual", ["x", "c"], ["g"]), N("Cast", ["g"], ["f"], to=1), N("Mul", ["x", "f"], ["y"])],
     {"x": X4}, {"c": np.array(0.1, np.float32)}, False),
    ("expand_tile", [N("ReduceMean", ["x", "ax"], ["g"], keepdims=1), N("Expand", ["g", "sh"], ["e"]),
                     N("Tile", ["e", "rep"], ["t"]), N("Add", ["t", "z"], ["y"])], {"x": X4, "z": rnd(1, 4, 9, 20)},
     {"ax": np.array([2, 3], np.int64), "sh": np.array([1, 1, 9, 10], np.int64),
      "rep": np.array([1, 1, 1, 2], np.int64)}, False),
    # Range / ConstantOfShape / Shape arithmetic on static shapes: folded before lowering, no op emitted
    ("folded_range_constantofshape", [N("Shape", ["x"], ["s"]), N("Gather", ["s", "i3"], ["w"]),
                                      N("Range", ["zero", "w", "one"], ["r"]), N("Cast", ["r"], ["rf"], to=1),
                                      N("ConstantOfShape", ["s"], ["c"], value=helper.make_tensor("v", 1, [1], [0.5])),
                                      N("Mul", ["c", "rf"], ["cr"]), N("Add", ["x", "cr"], ["y"])], {"x": X4},
     {"i3": np.array(3, np.int64), "zero": np.array(0, np.int64), "one": np.array(1, np.int64)}, False),
]


def _check(case_id, nodes, inputs, inits, allow_transpose, tmp_path, opset=18, *, input_layout="nhwc"):
    model = make_model(nodes, inputs, inits, ("y",), opset=opset)
    ref = run_ort(model, inputs)
    res = convert(model, out_dir=tmp_path, precisions=["fp32"], input_layout=input_layout)
    got = run_tflite(res.artifacts["fp32"], res, inputs)
    for r, g in zip(ref, got):
        assert r.shape == g.shape, (case_id, r.shape, g.shape)
        scale = max(float(np.abs(r).max()), 1e-6)
        err = float(np.abs(r - g).max())
        assert err <= 1e-5 * max(scale, 1.0), f"{case_id}: max abs err {err:.3g} (max|ref| {scale:.3g})"
    if not allow_transpose:
        assert "TRANSPOSE" not in res.ops["fp32"], (case_id, res.ops["fp32"])
        assert res.layout_transposes == 0
    return res


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_lowering_matches_ort(case, tmp_path):
    _check(*case[:5], tmp_path, *case[5:])


def test_every_lowering_has_a_case():
    covered = {n.op_type for c in CASES for n in c[1]}
    missing = sorted(set(supported_ops()) - covered - {"Upsample"})
    assert not missing, f"lowerings without a unit case: {missing}"


@pytest.mark.parametrize("case_id", ["conv3x3_s2_p1_even", "concat_c", "flatten_after_gap"])
def test_nchw_input_layout(case_id, tmp_path):
    case = next(c for c in CASES if c[0] == case_id)
    res = _check(case[0], case[1], case[2], case[3], True, tmp_path, input_layout="nchw")
    assert res.input_shapes["x"] == case[2]["x"].shape
    assert res.layout_transposes == 0


@pytest.mark.parametrize("case_id", ["channel_shuffle_g2", "channel_shuffle_g3_odd"])
def test_channel_shuffle_is_three_tiled_transposes(case_id, tmp_path, monkeypatch):
    """A shuffle the pass keeps is lowered as (HW, C) -> (C, HW), a swap of whole H*W rows, and back: three TRANSPOSEs
    XNNPACK tiles (5x cheaper in INT8 than one 5-D transpose of every pixel's channels), exact, no layout round
    trip counted. (The shuffle pass is switched off here: it would absorb these shuffles into slices.)"""
    monkeypatch.setattr(sys.modules["edgeport.export.tflite.convert"], "remove_channel_shuffles_with_stats",
                        lambda model, **forms: (model, {}, ShufflePassStats()))
    case = next(c for c in CASES if c[0] == case_id)
    res = _check(*case[:5], tmp_path, *case[5:])
    assert res.ops["fp32"].get("TRANSPOSE", 0) == 3
    assert res.layout_transposes == 0


def test_unsupported_op_names_op_and_node_and_writes_nothing(tmp_path):
    x = rnd(1, 4, 5, 5)
    model = make_model([N("Relu", ["x"], ["r"]), N("Round", ["r"], ["y"], name="my_round_node")], {"x": x})
    with pytest.raises(UnsupportedOpError) as ei:
        convert(model, out_dir=tmp_path / "out", precisions=["fp32", "fp16"])
    msg = str(ei.value)
    assert "'Round'" in msg and "my_round_node" in msg and "Conv" in msg
    assert ei.value.op_type == "Round" and ei.value.node_name == "my_round_node"
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def _shuffle_head_block(pool: str):
    """A user-style AugShuffleNet tail: 1x1 conv, channel shuffle in 4 groups, global mean, linear."""
    import torch

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(8, 16, 1)
            self.conv2 = torch.nn.Conv2d(8, 8, 1)
            self.dw = torch.nn.Conv2d(16, 16, 3, padding=1, groups=16)
            self.fc = torch.nn.Linear(16, 5)

        def forward(self, x):
            if pool == "concat_mean":  # AugShuffleNet-style: the shuffled tensor is a concat of two producers
                x = torch.cat([x, torch.relu(self.conv2(x))], 1)
            else:
                x = torch.relu(self.conv(x))
            n, c, h, w = x.shape
            x = x.view(n, 4, c // 4, h, w).transpose(1, 2).reshape(n, c, h, w)
            x = self.dw(x)
            if pool in ("mean", "concat_mean"):
                x = x.mean((2, 3))
            else:
                x = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1)
            return self.fc(x)

    torch.manual_seed(0)
    return Block().eval()


@pytest.mark.parametrize("pool", ["mean", "gap_flatten", "concat_mean"])
def test_shuffle_before_mean_and_linear_is_absorbed_into_the_linear(pool, tmp_path):
    """The shuffle pass never emits an op the converter cannot lower: a channel shuffle that reaches a linear layer
    through a global mean is absorbed into the linear's weights (the mean commutes with a channel permutation)."""
    import io

    import onnx
    import torch

    block = _shuffle_head_block(pool)
    x = rnd(1, 8, 6, 6)
    buf = io.BytesIO()
    torch.onnx.export(block, torch.from_numpy(x), buf, input_names=["x"], output_names=["y"], opset_version=17,
                      dynamo=False)
    model = onnx.load_from_string(buf.getvalue())
    ref = run_ort(model, {"x": x})
    res = convert(model, out_dir=tmp_path, precisions=["fp32"])
    got = run_tflite(res.artifacts["fp32"], res, {"x": x})
    assert np.abs(ref[0] - got[0]).max() <= 1e-5 * max(1.0, float(np.abs(ref[0]).max()))
    assert "GATHER" not in res.ops["fp32"] and "TRANSPOSE" not in res.ops["fp32"], dict(res.ops["fp32"])
    assert res.layout_transposes == 0


@pytest.mark.parametrize("case_id", ["gelu_erf_pattern", "gelu_erf_pattern_half_first", "gelu_tanh_pattern",
                                     "gelu_erf_doubled", "gelu_erf_doubled_shared_const"])
def test_gelu_patterns_become_one_gelu_op(case_id, tmp_path):
    """Every exporter spelling of GELU (incl. the doubled one whose 0.5 onnxsim folded into the next layer) is one
    TFLite GELU: no DIV/EXP of the Erf polynomial is left, whose computed divisors fail in full INT8."""
    case = next(c for c in CASES if c[0] == case_id)
    res = _check(*case[:5], tmp_path, *case[5:])
    ops = res.ops["fp32"]
    assert ops.get("GELU") == (2 if case_id.endswith("shared_const") else 1), ops
    assert not {"DIV", "EXP", "ABS"} & set(ops), ops
