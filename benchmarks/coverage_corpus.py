"""Phase A of the coverage corpus: build models with their maintainers' own code and export each to ONNX.

Runs in the upstream environment (torch 2.14.1 + torchvision + timm + ultralytics + third-party packages, see
DEVELOPERS.md), never imports edgeport. Random weights, no downloads. Each model becomes `DIR/<name>.onnx` plus
`DIR/<name>.json` (library, version, builder, input shape, input contract, exporter, seconds) or a `.json` with
`error` when the library cannot build or export it.

    /work/venv-upstream/bin/python benchmarks/coverage_corpus.py --out benchmarks/results/coverage_onnx
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

OPSET = 17
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "channel_order": "rgb"}
INCEPTION = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "channel_order": "rgb"}
ZERO_ONE = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "channel_order": "rgb"}


@dataclass(frozen=True)
class CorpusModel:
    """One corpus entry: `build()` returns an nn.Module (or, for `onnx_file` entries, nothing is built)."""

    name: str
    library: str          # the distribution whose code builds the model (its version is recorded)
    kind: str             # classifier | detector | segmenter | ocr
    input_shape: tuple[int, int, int]
    build: Callable | None = None
    contract: dict = field(default_factory=lambda: dict(IMAGENET))
    builder: str = ""     # how the maintainers' code is called, for the table
    exporter: str = "torch"   # torch | ultralytics | shipped (a trained ONNX file from a wheel)


def _tv(name: str, **kw):
    def build():
        import torchvision

        return torchvision.models.get_model(name, weights=None, **kw)
    return build


def _tv_ssdlite():
    """SSDLite320-MobileNetV3: backbone + head (box regression, class logits); torchvision's anchor decoding and NMS
    are host-side post-processing that mobile deployments keep outside the network."""
    import torch
    import torchvision

    det = torchvision.models.get_model("ssdlite320_mobilenet_v3_large", weights=None, weights_backbone=None)

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.head = det.backbone, det.head

        def forward(self, x):
            out = self.head(list(self.backbone(x).values()))
            return out["bbox_regression"], out["cls_logits"]

    return Head()


def _tv_seg(name: str):
    def build():
        import torch
        import torchvision

        seg = torchvision.models.get_model(name, weights=None, weights_backbone=None, num_classes=21)

        class Out(torch.nn.Module):  # the models return {"out": ...}; the map itself is the output
            def __init__(self):
                super().__init__()
                self.seg = seg

            def forward(self, x):
                return self.seg(x)["out"]

        return Out()
    return build


def _timm(name: str, **kw):
    def build():
        import timm

        return timm.create_model(name, pretrained=False, **kw)
    return build


def _pytorchcv(name: str):
    def build():
        from pytorchcv.model_provider import get_model

        return get_model(name, pretrained=False)
    return build


def _lukemelas_b0():
    from efficientnet_pytorch import EfficientNet

    m = EfficientNet.from_name("efficientnet-b0")
    m.set_swish(memory_efficient=False)  # the memory-efficient Swish is a custom autograd Function, not exportable
    return m


def _geffnet(name: str):
    def build():
        import geffnet

        return geffnet.create_model(name, pretrained=False)
    return build


def _augshufflenet():
    from augshufflenet_pytorch import AugShuffleNet1_0x

    return AugShuffleNet1_0x()


def _mobileone():
    from mobileone_pytorch import mobileone_s0

    return mobileone_s0()


TV = [("mobilenet_v2", {}), ("mobilenet_v3_small", {}), ("mobilenet_v3_large", {}), ("efficientnet_b0", {}),
      ("mnasnet0_5", {}), ("mnasnet1_0", {}), ("regnet_x_400mf", {}), ("regnet_y_400mf", {}), ("squeezenet1_1", {}),
      ("resnet18", {}), ("shufflenet_v2_x0_5", {}), ("shufflenet_v2_x1_0", {})]
TIMM_CNN = ["ghostnet_100", "efficientnet_lite0", "tf_efficientnet_lite0", "mobilenetv4_conv_small", "fbnetc_100",
            "mnasnet_100", "lcnet_050", "hardcorenas_a", "tinynet_e", "regnetx_002", "mobilenetv3_large_100",
            "mobilenetv2_100", "efficientnet_b0", "rexnet_100", "spnasnet_100", "mixnet_s", "ghostnetv2_100",
            "mobileone_s0", "convnext_atto", "repghostnet_050"]
TIMM_HYBRID = ["repvit_m1", "fastvit_t8", "mobilevit_xxs", "mobilevitv2_050", "efficientvit_b0", "edgenext_xx_small",
               "levit_128s", "efficientformerv2_s0", "tiny_vit_5m_224", "mobilenetv4_hybrid_medium",
               "deit_tiny_patch16_224"]
TIMM_INCEPTION_NORM = {"tf_efficientnet_lite0", "levit_128s", "deit_tiny_patch16_224", "mobilevit_xxs",
                       "mobilevitv2_050"}
THIRD_PARTY = [
    CorpusModel("pytorchcv_shufflenet_g3_w1", "pytorchcv", "classifier", (3, 224, 224), _pytorchcv("shufflenet_g3_w1"),
                builder="pytorchcv get_model('shufflenet_g3_w1')"),
    CorpusModel("pytorchcv_espnetv2_wd2", "pytorchcv", "classifier", (3, 224, 224), _pytorchcv("espnetv2_wd2"),
                builder="pytorchcv get_model('espnetv2_wd2')"),
    CorpusModel("pytorchcv_fbnet_cb", "pytorchcv", "classifier", (3, 224, 224), _pytorchcv("fbnet_cb"),
                builder="pytorchcv get_model('fbnet_cb')"),
    CorpusModel("pytorchcv_ghostnet", "pytorchcv", "classifier", (3, 224, 224), _pytorchcv("ghostnet"),
                builder="pytorchcv get_model('ghostnet')"),
    CorpusModel("pytorchcv_shufflenetv2_w1", "pytorchcv", "classifier", (3, 224, 224),
                _pytorchcv("shufflenetv2_w1"), builder="pytorchcv get_model('shufflenetv2_w1')"),
    CorpusModel("lukemelas_efficientnet_b0", "efficientnet-pytorch", "classifier", (3, 224, 224), _lukemelas_b0,
                builder="EfficientNet.from_name('efficientnet-b0')"),
    CorpusModel("geffnet_mobilenetv3_large_100", "geffnet", "classifier", (3, 224, 224),
                _geffnet("mobilenetv3_large_100"), builder="geffnet.create_model('mobilenetv3_large_100')"),
    CorpusModel("augshufflenet_1_0x", "augshufflenet-pytorch", "classifier", (3, 224, 224), _augshufflenet,
                builder="AugShuffleNet1_0x()"),
    CorpusModel("mobileone_pytorch_s0", "mobileone-pytorch", "classifier", (3, 224, 224), _mobileone,
                builder="mobileone_s0()"),
]
YOLO_SIZE = 320  # the smallest size the detect/segment heads keep their full stride set at; 640 is native
YOLO = [("yolov8n", "detector"), ("yolov8n-seg", "segmenter"), ("yolo11n", "detector"), ("yolo11n-seg", "segmenter")]
PPOCR = [("ppocr_cls_mobile_v2", "ch_ppocr_mobile_v2.0_cls_infer.onnx", (3, 48, 192), "tf"),
         ("ppocr_v4_det", "ch_PP-OCRv4_det_infer.onnx", (3, 320, 320), "imagenet"),
         ("ppocr_v4_rec", "ch_PP-OCRv4_rec_infer.onnx", (3, 48, 320), "tf")]


def corpus() -> list[CorpusModel]:
    """Every corpus entry, in table order."""
    out = [CorpusModel(f"tv_{n}", "torchvision", "classifier", (3, 224, 224), _tv(n, **kw),
                       builder=f"torchvision.models.get_model('{n}')") for n, kw in TV]
    out += [CorpusModel("tv_lraspp_mobilenet_v3_large", "torchvision", "segmenter", (3, 256, 256),
                        _tv_seg("lraspp_mobilenet_v3_large"), builder="get_model('lraspp_mobilenet_v3_large')"),
            CorpusModel("tv_deeplabv3_mobilenet_v3_large", "torchvision", "segmenter", (3, 256, 256),
                        _tv_seg("deeplabv3_mobilenet_v3_large"), builder="get_model('deeplabv3_mobilenet_v3_large')"),
            CorpusModel("tv_ssdlite320_mobilenet_v3_large", "torchvision", "detector", (3, 320, 320), _tv_ssdlite,
                        builder="get_model('ssdlite320_mobilenet_v3_large') backbone + head")]
    for n in TIMM_CNN + TIMM_HYBRID:
        out.append(CorpusModel(f"timm_{n}", "timm", "classifier", (3, 224, 224), _timm(n),
                               contract=dict(INCEPTION if n in TIMM_INCEPTION_NORM else IMAGENET),
                               builder=f"timm.create_model('{n}')"))
    out += THIRD_PARTY
    out += [CorpusModel(f"ultralytics_{n}", "ultralytics", kind, (3, YOLO_SIZE, YOLO_SIZE), None,
                        contract=dict(ZERO_ONE), builder=f"YOLO('{n}.yaml').export(format='onnx', imgsz={YOLO_SIZE})",
                        exporter="ultralytics")
            for n, kind in YOLO]
    tf = {"mean": [0.5] * 3, "std": [0.5] * 3, "channel_order": "bgr"}
    out += [CorpusModel(n, "rapidocr-onnxruntime", "ocr", shape, None,
                        contract=dict(tf if pre == "tf" else {**IMAGENET, "channel_order": "bgr"}),
                        builder=f"trained {fname} from the wheel", exporter="shipped")
            for n, fname, shape, pre in PPOCR]
    return out


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def _export_torch(module, shape, path: Path) -> str:
    """torch.onnx.export at opset 17 with the TorchScript exporter (what most deployment guides still run); the
    dynamo exporter (opset 18: it cannot write 17 for these graphs) when that fails."""
    import contextlib
    import io

    import torch

    x = torch.randn(1, *shape)
    module.eval()
    try:
        torch.onnx.export(module, (x,), str(path), opset_version=OPSET, dynamo=False)
        return f"torch.onnx.export(dynamo=False, opset {OPSET})"
    except Exception as exc:  # noqa: BLE001  (any exporter failure: try the other one)
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(module, (x,), str(path), opset_version=18, dynamo=True, external_data=False)
    return f"torch.onnx.export(dynamo=True, opset 18) (TorchScript exporter failed: {first})"


def _export_yolo(name: str, path: Path) -> str:
    """Ultralytics builds the network from its yaml (random weights) and exports with its own ONNX exporter."""
    import shutil

    from ultralytics import YOLO

    with tempfile.TemporaryDirectory() as tmp:
        yaml = f"{name}.yaml"
        model = YOLO(yaml)
        ckpt = Path(tmp) / f"{name}.pt"
        model.save(str(ckpt))  # export writes next to the model file
        written = YOLO(str(ckpt)).export(format="onnx", imgsz=YOLO_SIZE, opset=OPSET, simplify=False,
                                         dynamic=False)
        shutil.move(str(written), str(path))
    return "ultralytics YOLO.export(format='onnx')"


def _copy_ppocr(entry: CorpusModel, path: Path) -> str:
    import shutil

    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    fname = next(f for n, f, _, _ in PPOCR if n == entry.name)
    candidates = [Path(spec.origin).parent / "models" / fname] if spec and spec.origin else []
    candidates.append(Path(PPOCR_DIR) / fname if PPOCR_DIR else Path("/nonexistent"))
    src = next((c for c in candidates if c.is_file()), None)
    if src is None:
        raise FileNotFoundError(f"{fname}: rapidocr-onnxruntime==1.4.4 not installed here (pass --ppocr-dir)")
    shutil.copyfile(src, path)
    return "shipped (trained, PaddleOCR -> paddle2onnx)"


def _wheel_version(models_dir: Path) -> str:
    """The rapidocr-onnxruntime version of a models folder inside its installed package (its dist-info beside)."""
    found = sorted(models_dir.parent.parent.glob("rapidocr_onnxruntime-*.dist-info"))
    return found[-1].name.split("-")[1].removesuffix(".dist") if found else "unknown"


PPOCR_DIR: str | None = None


def build_one(entry: CorpusModel, out: Path) -> dict:
    """Build and export one entry; returns its manifest (written as DIR/<name>.json)."""
    import importlib.metadata  # noqa: F401

    record = {"name": entry.name, "library": entry.library, "version": _version(entry.library), "kind": entry.kind,
              "builder": entry.builder, "input_shape": list(entry.input_shape), "contract": entry.contract,
              "torch": _version("torch")}
    path = out / f"{entry.name}.onnx"
    t0 = time.perf_counter()
    try:
        if entry.exporter == "ultralytics":
            record["exporter"] = _export_yolo(entry.name.removeprefix("ultralytics_"), path)
        elif entry.exporter == "shipped":
            record["exporter"] = _copy_ppocr(entry, path)
            if record["version"] == "not installed" and PPOCR_DIR:
                record["version"] = _wheel_version(Path(PPOCR_DIR))
        else:
            module = entry.build()
            record["params"] = sum(p.numel() for p in module.parameters())
            record["exporter"] = _export_torch(module, entry.input_shape, path)
        record["onnx"] = path.name
    except Exception as exc:  # noqa: BLE001  (recorded per model; the corpus goes on)
        path.unlink(missing_ok=True)
        record["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
        record["traceback"] = traceback.format_exc()[-2000:]
    record["seconds"] = round(time.perf_counter() - t0, 2)
    (out / f"{entry.name}.json").write_text(json.dumps(record, indent=1))
    return record


def main(argv=None) -> int:
    global PPOCR_DIR
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for <name>.onnx + <name>.json")
    ap.add_argument("--only", default=None, help="comma list of corpus names (default: all)")
    ap.add_argument("--force", action="store_true", help="rebuild models whose .onnx already exists")
    ap.add_argument("--ppocr-dir", default=None, help="folder holding the PP-OCR ONNX files (default: the wheel's)")
    ap.add_argument("--list", action="store_true", help="print the corpus names and exit")
    args = ap.parse_args(argv)
    PPOCR_DIR = args.ppocr_dir
    entries = corpus()
    if args.list:
        print("\n".join(e.name for e in entries))
        return 0
    if args.only:
        wanted = set(args.only.split(","))
        entries = [e for e in entries if e.name in wanted]
    args.out.mkdir(parents=True, exist_ok=True)
    for e in entries:
        if not args.force and (args.out / f"{e.name}.onnx").is_file() and (args.out / f"{e.name}.json").is_file():
            print(f"{e.name}: cached", flush=True)
            continue
        rec = build_one(e, args.out)
        print(f"{e.name}: {rec.get('error') or rec['exporter']} ({rec['seconds']} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
