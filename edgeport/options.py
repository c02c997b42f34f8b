"""One typed options object per step, each with ONE definition of its command-line flags.

`export`, `run` and `compare` register the same flags from these classes (`add_arguments`) and build the same
objects from the parsed arguments (`from_args`), so an option added to a step is available in every command that
runs the step. Building the parser imports nothing heavy (no torch, TensorFlow or ONNX).
"""
from __future__ import annotations

import argparse
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from edgeport.console import parse_csv, parse_shape, parse_thread_counts
from edgeport.errors import ExportError, ModelBuildError

# Closed choices as the CLI spells them; the steps turn them into their enums (Precision, IODtype, Exporter, ...).
PRECISIONS = ("fp32", "int8", "fp16", "dynamic")
IO_DTYPES = ("int8", "uint8", "float")
INPUT_LAYOUTS = ("nhwc", "nchw")
OUTPUT_LAYOUTS = ("nchw", "nhwc")
CALIBRATION_METHODS = ("minmax", "percentile", "entropy", "per-tensor", "auto")
BIAS_CORRECTIONS = ("empirical", "analytic", "none")
WEIGHT_ROUNDINGS = ("nearest", "adaptive", "sequential")
SHUFFLE_PIECE_FORMS = ("slices", "convs")
EXPORTERS = ("dynamo", "legacy")
ORT_INT8_SCHEMES = ("u8u8", "s8s8", "s8s8-7bit")
CHANNEL_ORDERS = ("rgb", "bgr")
# --preprocess presets: (mean, std) in 0-1 pixel units, applied as (x/255 - mean)/std.
PREPROCESS_PRESETS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # torchvision / timm
    "tf": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # (x - 127.5) / 127.5: TF / Keras "inception" style, in [-1, 1]
    "zero-one": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # x / 255
    "none": ((0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255)),  # raw 0-255 pixel values
}

# The range method when none is given: per-tensor (each activation tensor's range chosen by the quantization error it
# causes on a calibration hold-out: docs/calibration.md, "Which range method is the default"), min/max where the INT8
# model keeps float or uint8 I/O (only TensorFlow's min/max path writes those). ONNX Runtime's INT8 model then uses
# percentile ranges (edgeport.calibration.samples.ort_calibration_method).
DEFAULT_CALIBRATION_METHOD = "per-tensor"


def default_calibration_method(io_dtype: str) -> str:
    """The range method used when none is given, for INT8 model I/O `io_dtype` (see DEFAULT_CALIBRATION_METHOD)."""
    return DEFAULT_CALIBRATION_METHOD if str(getattr(io_dtype, "value", io_dtype)) == "int8" else "minmax"


def check_int8_refinement(*, weight_rounding: str, bias_correction: str) -> None:
    """Raise ExportError for refinement passes that contradict each other (plain strings: the CLI checks this before
    any work): sequential weight rounding refits every rounded layer's bias to its measured mean error, and the
    analytic correction, which predicts that error from float statistics alone, would then remove it a second time
    (measured on EfficientNet-Lite0: 23.9 dB -> 18.4 dB). The empirical correction measures what is left instead."""
    if str(weight_rounding) == "sequential" and str(bias_correction) == "analytic":
        raise ExportError("--weight-rounding sequential refits the biases itself; --bias-correction analytic would "
                          "correct the same mean error twice", hint="use --bias-correction empirical or none")


def parse_floats(text: str) -> tuple[float, ...]:
    """A comma list of numbers (argparse type): raises ArgumentTypeError, which argparse turns into exit 2."""
    try:
        values = tuple(float(p) for p in parse_csv(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected one number per channel, e.g. 0.485,0.456,0.406")
    return values


def parse_input_shape(text: str) -> tuple:
    """`C,H,W` -> (C, H, W); `NAME=d1,d2,...` -> (NAME, (d1, d2, ...)) for one input of a several-input model."""
    name, sep, dims = str(text).partition("=")
    if sep:
        if not name.strip():
            raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=d1,d2,... or C,H,W")
        return (name.strip(), parse_shape(dims))
    return parse_shape(text)


class InputShapeAction(argparse.Action):
    """`--input-shape C,H,W` sets `input_shape`; each `--input-shape NAME=dims` adds to `input_shapes`."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values and isinstance(values[0], str):
            setattr(namespace, "input_shapes", (*(getattr(namespace, "input_shapes", None) or ()), values))
        else:
            setattr(namespace, self.dest, values)


def _flag(flag: str, *, help: str, **kw) -> Any:
    """A dataclass field's argparse declaration (flag name, help, type/choices/action)."""
    return {"flag": flag, "help": help, **kw}


class _Options:
    """Mixin: `add_arguments(parser, **defaults)` and `from_args(args)` driven by the fields' `cli` metadata."""

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, *, only: tuple[str, ...] | None = None,
                      exclude: tuple[str, ...] = (), **defaults) -> None:
        """Register the fields' flags (`only`: just these field names; `exclude`: not these, which the command
        declares itself) with `defaults` overriding the fields'."""
        for f in fields(cls):
            cli = f.metadata.get("cli")
            if cli is None or (only is not None and f.name not in only) or f.name in exclude:
                continue
            kw = {k: v for k, v in cli.items() if k != "flag"}
            default = defaults.get(f.name, f.default if f.default_factory is MISSING else f.default_factory())
            if kw.get("action") == "append":
                kw["default"] = None  # argparse appends to a copy of the default: a tuple cannot grow
            elif kw.get("action") != "store_true":
                kw.setdefault("default", default)
                if kw.get("default") is not None and "%(default)" not in kw["help"]:
                    kw["help"] += " (default: %(default)s)"
            parser.add_argument(cli["flag"], dest=f.name, **kw)

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides):
        values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()
                  if not (v is None and (cls.__dataclass_fields__[k].metadata.get("cli") or {}).get("action") == "append")}
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True)
class SourceOptions(_Options):
    """What to export: SOURCE plus the flags that say how to build and load it (export, run)."""

    source: str | None = None
    checkpoint: str | None = field(default=None, metadata={"cli": _flag(
        "--checkpoint", help="state dict (.pt/.pth, nested or module.-prefixed), TorchScript, or pickled module")})
    builder_args: tuple[str, ...] = field(default=(), metadata={"cli": _flag(
        "--arg", action="append", metavar="KEY=VALUE", help="builder keyword argument (repeatable)")})
    input_shape: tuple[int, ...] | None = field(default=None, metadata={"cli": _flag(
        "--input-shape", type=parse_input_shape, action=InputShapeAction, metavar="C,H,W|NAME=DIMS",
        help="input shape (required for user models; fixes an ONNX file's dynamic dimensions); NAME=DIMS for one "
             "input of a several-input ONNX model (repeatable)")})
    # (input name, dims) pairs from `--input-shape NAME=DIMS`
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    trust: bool = field(default=False, metadata={"cli": _flag(
        "--trust-checkpoint", action="store_true",
        help="allow checkpoints that carry code: pickled modules, TorchScript archives")})
    exporter: str = field(default="dynamo", metadata={"cli": _flag(
        "--exporter", choices=EXPORTERS, help="torch ONNX exporter")})
    opset: int = field(default=18, metadata={"cli": _flag("--opset", type=int, help="ONNX opset")})
    preprocess: str | None = field(default=None, metadata={"cli": _flag(
        "--preprocess", choices=tuple(PREPROCESS_PRESETS), help="input normalisation preset: imagenet "
        "(torchvision), tf ((x-127.5)/127.5), zero-one (x/255), none (raw 0-255); default: the zoo spec's, "
        "imagenet for user models")})
    mean: tuple[float, ...] | None = field(default=None, metadata={"cli": _flag(
        "--mean", type=parse_floats, metavar="R,G,B", help="per-channel mean in 0-1 pixel units, in the model's "
        "channel order (overrides --preprocess)")})
    std: tuple[float, ...] | None = field(default=None, metadata={"cli": _flag(
        "--std", type=parse_floats, metavar="R,G,B", help="per-channel std in 0-1 pixel units, in the model's "
        "channel order (overrides --preprocess)")})
    channel_order: str | None = field(default=None, metadata={"cli": _flag(
        "--channel-order", choices=CHANNEL_ORDERS, help="colour order the model reads (default: rgb)")})
    pretrained: bool = field(default=False, metadata={"cli": _flag(
        "--pretrained", action="store_true", help="torchvision:NAME / timm:NAME: load the library's own pretrained "
        "weights (downloads them unless they are in the library's cache)")})

    def builder_kwargs(self) -> dict:
        return parse_builder_args(list(self.builder_args or ()))

    def named_input_shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(dims) for name, dims in self.input_shapes or ()}

    def input_contract(self) -> dict:
        """The declared input contract: {mean, std, channel_order}, only the keys the user set (a preset sets
        mean and std; --mean / --std override it). Used identically by calibration, validation and the report."""
        out: dict = {}
        if self.preprocess is not None:
            if self.preprocess not in PREPROCESS_PRESETS:
                raise ModelBuildError(f"unknown --preprocess {self.preprocess!r}; valid: "
                                      f"{', '.join(PREPROCESS_PRESETS)}")
            out["mean"], out["std"] = PREPROCESS_PRESETS[self.preprocess]
        for key in ("mean", "std"):
            values = getattr(self, key)
            if values is None:
                continue
            values = tuple(float(v) for v in values)
            if len(values) == 1:
                values = values * 3
            if len(values) != 3:
                raise ModelBuildError(f"--{key} has {len(values)} values; give one or three (R,G,B)")
            if key == "std" and any(v <= 0 for v in values):
                raise ModelBuildError(f"--std {','.join(map(str, values))}: every value must be positive")
            out[key] = values
        if self.channel_order is not None:
            if self.channel_order not in CHANNEL_ORDERS:
                raise ModelBuildError(f"--channel-order {self.channel_order!r}; valid: {', '.join(CHANNEL_ORDERS)}")
            out["channel_order"] = self.channel_order
        return out


@dataclass(frozen=True)
class ConvertOptions(_Options):
    """ONNX -> TFLite (+ ORT INT8): precisions, INT8 I/O and calibration, converter forms."""

    precisions: tuple[str, ...] = field(default=("fp32", "int8"), metadata={"cli": _flag(
        "--precision", type=parse_csv, help="comma list of fp32,int8,fp16,dynamic (TFLite artifacts; int8 also "
                                            "writes the ORT INT8 model)")})
    io_dtype: str = field(default="int8", metadata={"cli": _flag(
        "--io", choices=IO_DTYPES, help="INT8 model input/output type")})
    input_layout: str = field(default="nhwc", metadata={"cli": _flag(
        "--input-layout", choices=INPUT_LAYOUTS, help="TFLite input layout")})
    calibration: str = field(default="default", metadata={"cli": _flag(
        "--calibration", help="calibration data: default | digits | folder | .npy/.npz")})
    num_calibration: int | None = field(default=None, metadata={"cli": _flag(
        "--num-calibration", type=int, help="number of calibration samples (default: the source's own count)")})
    calibration_method: str | None = field(default=None, metadata={"cli": _flag(
        "--calibration-method", choices=CALIBRATION_METHODS,
        help="activation ranges: minmax, percentile (outlier clipping), entropy (ORT INT8 only), per-tensor (each "
             "tensor's best of min/max, percentiles, MSE clipping on a calibration hold-out; TFLite; ORT INT8 uses "
             "percentile), auto (the method with the least hold-out output error; TFLite) (default: per-tensor; minmax "
             "with --io float or uint8)")})
    bias_correction: str = field(default="empirical", metadata={"cli": _flag(
        "--bias-correction", choices=BIAS_CORRECTIONS,
        help="INT8 bias correction. TFLite: empirical (per layer, one INT8 inference per layer and sample), "
             "analytic (one float pass); ONNX Runtime INT8: each layer's own shift, one pass, unless none")})
    weight_rounding: str = field(default="nearest", metadata={"cli": _flag(
        "--weight-rounding", choices=WEIGHT_ROUNDINGS,
        help="TFLite INT8 weights: nearest (TensorFlow's rounding), adaptive (each weight rounded up or down by "
             "its layer's output error on calibration inputs, AdaRound's objective; costs a float pass and a few "
             "seconds per layer) or sequential (the same, layer by layer on the inputs the already rounded INT8 "
             "model feeds each layer, biases refitted with it; one INT8 inference per layer and sample; not with "
             "--bias-correction analytic)")})
    equalize: bool = field(default=False, metadata={"cli": _flag(
        "--equalize", action="store_true",
        help="cross-layer equalization of conv -> [ReLU] -> conv pairs before calibration (exact; ReLU6 pairs "
             "are skipped)")})
    shuffle_piece_form: str = field(default="slices", metadata={"cli": _flag(
        "--shuffle-pieces", choices=SHUFFLE_PIECE_FORMS,
        help="ShuffleNetV2-style absorbed shuffles: read channel pieces as slices or compute each piece with its "
             "own conv (faster INT8 on some CPUs: time both on your target)")})

    ort_int8_scheme: str = field(default="u8u8", metadata={"cli": _flag(
        "--ort-int8-scheme", choices=ORT_INT8_SCHEMES,
        help="integer types of model_int8.onnx: u8u8 gives the same numbers on every CPU; s8s8 saturates on x86 "
             "without VNNI; s8s8-7bit is exact everywhere with coarser weights")})

    output_layout: str = field(default="nchw", metadata={"cli": _flag(
        "--output-layout", choices=OUTPUT_LAYOUTS,
        help="layout of the TFLite models' 4-D outputs (segmentation maps, feature maps): nchw is the source "
             "model's (one TRANSPOSE per 4-D output), nhwc the converter's own")})

    def __post_init__(self):
        object.__setattr__(self, "precisions", tuple(p for p in self.precisions if p and p != "onnx"))
        if self.calibration_method is None:
            object.__setattr__(self, "calibration_method", default_calibration_method(self.io_dtype))


@dataclass(frozen=True)
class ValidateOptions(_Options):
    """Validation against torch: how many held-out samples, per-layer attribution."""

    num_validation: int | None = field(default=None, metadata={"cli": _flag(
        "--num-validation", type=int, help="number of held-out samples")})
    samples: str | None = field(default=None, metadata={"cli": _flag(
        "--samples", metavar="SOURCE",
        help="held-out data for validation and device parity: default, digits, a folder of images, or an .npy/.npz "
             "(keyed by input name for several inputs); default: the calibration source when it is default or "
             "digits, else the bundled photos. Never the calibration samples themselves")})
    layers: bool = True


@dataclass(frozen=True)
class BenchOptions(_Options):
    """Latency: targets, thread counts, runs."""

    targets: tuple[str, ...] = field(default=("local",), metadata={"cli": _flag(
        "--targets", type=parse_csv, help="comma list: local, ssh://user@host[:port], adb://SERIAL")})
    threads: tuple[int, ...] = field(default=(1,), metadata={"cli": _flag(
        "--threads", type=parse_thread_counts, help="comma list of thread counts")})
    runs: int = field(default=50, metadata={"cli": _flag("--runs", type=int, help="timed inferences")})
    warmup: int = field(default=10, metadata={"cli": _flag("--warmup", type=int, help="untimed inferences first")})
    timeout: float = field(default=600.0, metadata={"cli": _flag(
        "--timeout", type=float, help="seconds per remote benchmark before it is killed")})
    ssh_config: str | None = field(default=None, metadata={"cli": _flag(
        "--ssh-config", metavar="FILE", help="ssh -F file for ssh:// targets (default: your ~/.ssh/config)")})
    min_seconds: float | None = field(default=None, metadata={"cli": _flag(
        "--min-seconds", type=float, metavar="S",
        help="keep timing rounds until S seconds have passed, and at least --runs (MLPerf Mobile asks 60)")})
    cooldown: float | None = field(default=None, metadata={"cli": _flag(
        "--cooldown", type=float, metavar="S",
        help="pause S seconds before timing; with --max-temp, the longest wait for it (default 300)")})
    max_temp: float | None = field(default=None, metadata={"cli": _flag(
        "--max-temp", type=float, metavar="C",
        help="before timing, wait until every thermal zone of the target is below C degrees Celsius")})

    HYGIENE = ("min_seconds", "cooldown", "max_temp")  # the device-hygiene flags `bench` shares with run/compare


def parse_fraction(text: str) -> float:
    """'0.98' or '98%' -> 0.98 (argparse type: a value outside 0..1 is a usage error, exit 2)."""
    t = text.strip()
    try:
        v = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a fraction like 0.98 or a percentage like 98%") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be between 0 and 1 (or 0% and 100%)")
    return v


@dataclass(frozen=True)
class DecisionOptions(_Options):
    """The accuracy bar a recommendation must clear (`compare`): fractions 0..1, None = no bar."""

    min_agreement: float | None = field(default=None, metadata={"cli": _flag(
        "--min-agreement", type=parse_fraction, metavar="FRACTION",
        help="rank only configurations whose top-1 agreement with the reference is at least this (0.99 or 99%%)")})
    min_accuracy: float | None = field(default=None, metadata={"cli": _flag(
        "--min-accuracy", type=parse_fraction, metavar="FRACTION",
        help="rank only configurations whose accuracy on labelled samples is at least this (needs labels)")})


def add_source_argument(parser: argparse.ArgumentParser, *, optional: bool = False, help: str | None = None) -> None:
    """The positional SOURCE (optional for `run`, which defaults to the bundled model)."""
    text = help or "zoo model name, path/to/file.py:factory, model.onnx, or a TorchScript/.pt module"
    if optional:
        parser.add_argument("source", nargs="?", default=None, help=text)
    else:
        parser.add_argument("source", help=text)


def parse_builder_args(items: list[str] | None) -> dict:
    """`KEY=VALUE` strings -> dict with ints, floats, booleans and strings."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ModelBuildError(f"--arg {item!r}: expected KEY=VALUE")
        low = value.lower()
        if low in ("true", "false"):
            out[key] = low == "true"
            continue
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key] = value
    return out
