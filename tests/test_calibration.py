"""Calibration data: the protocol every source yields, preprocessing from the model spec, determinism, disjoint
calibration / validation splits (by content), real photographs by default, and clear errors on bad input."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeport.calibration import SOURCES, SampleSet, Split, from_iterable, load_samples, parse_source
from edgeport.calibration.photos import CALIBRATION_PHOTOS, VALIDATION_PHOTOS
from edgeport.errors import CalibrationError
from edgeport.models import get_spec
from edgeport.validation import choose_validation_samples

CIFAR = get_spec("shufflenet_v2_cifar_x0_5")  # (3, 32, 32), CIFAR mean/std
IMAGENET = get_spec("efficientnet_lite0")  # (3, 224, 224), ImageNet mean/std
SMALL = (3, 40, 48)  # a non-square export size: sources must follow the export's input shape, not the spec's


def _hash(a: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()


def _write_images(root: Path, n: int, *, size=(60, 50), classes: int = 2, seed: int = 0) -> list[Path]:
    """n distinct RGB images in root/<class>/; smooth gradients so every file has different content."""
    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        d = root / str(i % classes)
        d.mkdir(parents=True, exist_ok=True)
        yy, xx = np.mgrid[0:size[1], 0:size[0]]
        base = rng.uniform(0, 255, 3)
        img = np.stack([(base[c] + (xx * (c + 1) + yy * (i + 1)) % 256) % 256 for c in range(3)], -1).astype(np.uint8)
        p = d / f"img{i:03d}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(img).save(p)
        files.append(p)
    return files


# ---- one factory per registered source: how the protocol tests reach it -------------------------------------

def _make_default(tmp_path, **kw):
    return load_samples("default", model_spec=CIFAR, **kw)


def _make_digits(tmp_path, **kw):
    return load_samples("digits", model_spec=CIFAR, **kw)


def _make_folder(tmp_path, **kw):
    root = tmp_path / "imgs"
    if not root.exists():
        _write_images(root, 12)
    return load_samples(str(root), model_spec=CIFAR, **kw)


def _make_arrays(tmp_path, **kw):
    path = tmp_path / "cal.npz"
    if not path.exists():
        shape = kw.get("input_shape") or CIFAR.input_shape
        rng = np.random.default_rng(1)
        np.savez(path, input=rng.standard_normal((10, *shape)).astype(np.float32), labels=np.arange(10) % 3)
    return load_samples(str(path), model_spec=CIFAR, **kw)


MAKERS = {"default": _make_default, "digits": _make_digits, "folder": _make_folder, "arrays": _make_arrays}


def test_every_registered_source_has_a_test():
    assert set(SOURCES.names()) == set(MAKERS), (
        f"sources without a protocol test: {sorted(set(SOURCES.names()) - set(MAKERS))}; "
        f"stale test entries: {sorted(set(MAKERS) - set(SOURCES.names()))}"
    )


def _check_protocol(s: SampleSet, shape, n: int | None = None):
    assert isinstance(s, SampleSet)
    assert len(s) > 0 and (n is None or len(s) == n)
    items = list(s)
    assert len(items) == len(s)
    for item in items:
        assert set(item) == {s.input_name}
        x = item[s.input_name]
        assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.shape == (1, *shape)
        assert np.isfinite(x).all()
    assert s.array().shape == (len(s), *shape)
    assert s.nhwc(0).shape == (1, shape[1], shape[2], shape[0])
    assert len(set(s.ids)) == len(s), "sample ids must be unique"
    info = s.info()
    assert info["count"] == len(s) and info["split"] == str(s.split)


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_source_yields_the_protocol(kind, tmp_path):
    s = MAKERS[kind](tmp_path, num=6, seed=3)
    _check_protocol(s, CIFAR.input_shape, 6)
    assert s.seed == 3


@pytest.mark.parametrize("kind", ["default", "folder"])
def test_source_follows_the_export_input_shape(kind, tmp_path):
    s = MAKERS[kind](tmp_path, num=3, input_shape=SMALL)
    _check_protocol(s, SMALL, 3)


def test_iterable_yields_the_protocol():
    import torch

    xs = torch.randn(10, *CIFAR.input_shape)
    ys = torch.arange(10) % 4
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xs, ys), batch_size=4)
    s = from_iterable(loader, input_shape=CIFAR.input_shape, num=7)
    _check_protocol(s, CIFAR.input_shape, 7)
    np.testing.assert_array_equal(s.array(), xs[:7].numpy())
    assert s.labels == [int(v) for v in ys[:7]]
    # NHWC numpy arrays and dict items are accepted too
    nhwc = [np.random.default_rng(i).standard_normal((1, 32, 32, 3)).astype(np.float32) for i in range(3)]
    s2 = from_iterable(nhwc, input_shape=CIFAR.input_shape)
    np.testing.assert_array_equal(s2[1], nhwc[1].transpose(0, 3, 1, 2))
    s3 = from_iterable([{"input": x} for x in nhwc], input_shape=CIFAR.input_shape)
    assert len(s3) == 3 and s3.labels is None


# ---- preprocessing follows the model spec ---------------------------------------------------------------------

def _unnormalise(x: np.ndarray, spec) -> np.ndarray:
    """(1, 3, H, W) model input -> HxWx3 pixel values 0..255 (float)."""
    return (x[0].transpose(1, 2, 0) * np.asarray(spec.std) + np.asarray(spec.mean)) * 255.0


@pytest.mark.parametrize("spec", [CIFAR, IMAGENET], ids=lambda s: s.name)
def test_folder_normalises_with_the_spec_mean_std(spec, tmp_path):
    color = (200, 30, 120)
    Image.fromarray(np.full((50, 70, 3), color, np.uint8)).save(tmp_path / "flat.png")
    x = load_samples(str(tmp_path), model_spec=spec)[0]
    assert x.shape == (1, *spec.input_shape)
    expected = (np.asarray(color) / 255.0 - np.asarray(spec.mean)) / np.asarray(spec.std)
    np.testing.assert_allclose(x[0].reshape(3, -1).mean(1), expected, atol=1e-5)
    np.testing.assert_allclose(x[0].reshape(3, -1).std(1), 0, atol=1e-5)


def test_folder_resizes_then_centre_crops(tmp_path):
    """A 2:1 image, black left half / white right half: the short side is resized to the spec's resize size (256 for
    ImageNet's 224 crops), then the centre 224x224 is cropped, so the edge lands in the middle of the crop."""
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 100:] = 255
    Image.fromarray(img).save(tmp_path / "half.png")
    assert IMAGENET.resize_size == 256 and IMAGENET.crop_size == 224
    px = _unnormalise(load_samples(str(tmp_path), model_spec=IMAGENET)[0], IMAGENET)
    assert px.shape == (224, 224, 3)
    # resized to 256x512, crop columns 144..367: the edge (column 256) is output column 112
    assert np.all(px[:, :110] < 1) and np.all(px[:, 114:] > 254), "the crop is not centred"
    np.testing.assert_allclose(px.std(axis=0), 0, atol=1e-3)
    # a square image at a 32-pixel spec without a resize margin: resized straight to 32x32
    sq = np.zeros((64, 64, 3), np.uint8)
    sq[:32] = 255
    Image.fromarray(sq).save(tmp_path / "half.png")
    px = _unnormalise(load_samples(str(tmp_path), model_spec=CIFAR)[0], CIFAR)
    assert px.shape == (32, 32, 3) and np.all(px[:15] > 254) and np.all(px[17:] < 1)


def test_default_photos_use_the_spec_mean_std():
    """Un-normalising with the spec's mean/std must give back 8-bit pixel values (integers within 0..255)."""
    for spec in (CIFAR, IMAGENET):
        x = load_samples("default", model_spec=spec, num=2)[1]
        px = _unnormalise(x, spec)
        assert px.min() > -1e-3 and px.max() < 255 + 1e-3
        np.testing.assert_allclose(px, np.round(px), atol=2e-3)


def test_digits_follow_the_spec():
    s = load_samples("digits", model_spec=CIFAR, num=4)
    px = _unnormalise(s[0], CIFAR)
    np.testing.assert_allclose(px, np.round(px), atol=2e-3)
    assert px.min() > -1e-3 and px.max() < 255 + 1e-3
    np.testing.assert_allclose(px[..., 0], px[..., 1], atol=2e-3, err_msg="grey digits: identical RGB channels")
    assert all(0 <= y <= 9 for y in s.labels)
    with pytest.raises(CalibrationError, match="square"):
        load_samples("digits", model_spec=CIFAR, input_shape=SMALL)


# ---- determinism -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_deterministic_by_seed(kind, tmp_path):
    a = MAKERS[kind](tmp_path, num=5, seed=7).array()
    b = MAKERS[kind](tmp_path, num=5, seed=7).array()
    np.testing.assert_array_equal(a, b)
    c = MAKERS[kind](tmp_path, num=5, seed=8).array()
    assert not np.array_equal(a, c), f"{kind}: another seed must draw other samples"


# ---- calibration and validation never overlap ----------------------------------------------------------------

@pytest.mark.parametrize("spec", [CIFAR, IMAGENET], ids=lambda s: s.name)
def test_default_splits_are_disjoint_photos(spec):
    n = 24 if spec is CIFAR else 8
    cal = load_samples("default", model_spec=spec, num=n, split="calibration")
    val = load_samples("default", model_spec=spec, num=n, split="validation")
    assert not {_hash(x) for x in cal.array()} & {_hash(x) for x in val.array()}
    assert not set(cal.ids) & set(val.ids)
    assert not set(CALIBRATION_PHOTOS) & set(VALIDATION_PHOTOS)
    assert {i.split(":")[1] for i in cal.ids} <= set(CALIBRATION_PHOTOS)
    assert {i.split(":")[1] for i in val.ids} <= set(VALIDATION_PHOTOS)


def test_digits_splits_are_disjoint_by_content():
    cal = load_samples("digits", model_spec=CIFAR, num=1257, split="calibration")  # the whole train split
    val = load_samples("digits", model_spec=CIFAR, split="validation")  # the whole held-out split
    assert len(val) == 540
    ch = {_hash(x) for x in cal.array()}
    vh = {_hash(x) for x in val.array()}
    assert len(ch) == 1257 and len(vh) == 540, "no duplicate images inside a split"
    assert not ch & vh
    assert not set(cal.ids) & set(val.ids)


def test_validation_refuses_samples_that_were_used_for_calibration(tmp_path):
    """A folder has no held-out split: validating on the calibration folder itself must be refused."""
    root = tmp_path / "imgs"
    _write_images(root, 6)

    class FakeReport(dict):
        def get(self, k, d=None):
            return super().get(k, d)

    rep = FakeReport(model={"input_shape": [1, *CIFAR.input_shape]},
                     calibration={"calibration": {"source": str(root), "count": 6, "seed": 0}})
    with pytest.raises(CalibrationError, match="also calibration samples"):
        choose_validation_samples(rep, spec=CIFAR, samples=str(root), num=None, seed=None)
    held, calib = choose_validation_samples(rep, spec=CIFAR, samples=None, num=8, seed=None)
    assert held.source == "default" and held.split == Split.VALIDATION and len(calib) == 6


# ---- the default source is real photographs -------------------------------------------------------------------

def test_default_is_real_photographs_not_noise():
    s = load_samples("default", model_spec=IMAGENET, num=8)
    assert "skimage.data photos" in s.description
    for x in s.array():
        img = x.mean(0)  # grey, 224x224
        assert img.std() > 0.05, "a flat image is not a photograph"
        # natural images are smooth: neighbouring pixels correlate strongly; noise does not
        corr = np.corrcoef(img[:, :-1].ravel(), img[:, 1:].ravel())[0, 1]
        assert corr > 0.6, f"horizontal neighbour correlation {corr:.2f}: looks like noise"
    # and distinct crops, not one image repeated
    assert len({_hash(x) for x in s.array()}) == len(s)
    noise = np.random.default_rng(0).standard_normal((224, 224))
    assert abs(np.corrcoef(noise[:, :-1].ravel(), noise[:, 1:].ravel())[0, 1]) < 0.1  # the check can tell


def test_parse_source():
    assert parse_source("default").kind == "default"
    assert parse_source("digits").kind == "digits"


# ---- bad input: clear CalibrationError ----------------------------------------------------------------------

def test_empty_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_text("no images here")
    with pytest.raises(CalibrationError, match="no JPEG or PNG images"):
        load_samples(str(tmp_path), model_spec=CIFAR)


def test_unreadable_image_is_named(tmp_path):
    _write_images(tmp_path, 3)
    bad = tmp_path / "0" / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(CalibrationError, match=r"cannot read image .*broken\.jpg"):
        load_samples(str(tmp_path), model_spec=CIFAR)


@pytest.mark.parametrize("shape", [(5, 3, 16, 16), (5, 32, 32), (5, 1, 32, 32), (2, 3, 32, 32, 1), (10,)])
def test_wrong_array_shape(shape, tmp_path):
    p = tmp_path / "bad.npy"
    np.save(p, np.zeros(shape, np.float32))
    with pytest.raises(CalibrationError, match=r"does not fit the model input; expected \(N, 3, 32, 32\)"):
        load_samples(str(p), model_spec=CIFAR)


def test_bad_arrays(tmp_path):
    p = tmp_path / "u8.npy"
    np.save(p, np.zeros((4, 3, 32, 32), np.uint8))
    with pytest.raises(CalibrationError, match="dtype uint8"):
        load_samples(str(p), model_spec=CIFAR)
    p = tmp_path / "nan.npy"
    a = np.zeros((4, 3, 32, 32), np.float32)
    a[1, 0, 0, 0] = np.nan
    np.save(p, a)
    with pytest.raises(CalibrationError, match="NaN"):
        load_samples(str(p), model_spec=CIFAR)
    p = tmp_path / "two.npz"
    np.savez(p, a=a, b=a)
    with pytest.raises(CalibrationError, match="holds arrays"):
        load_samples(str(p), model_spec=CIFAR)
    p = tmp_path / "garbage.npy"
    p.write_bytes(b"garbage")
    with pytest.raises(CalibrationError, match="cannot read array file"):
        load_samples(str(p), model_spec=CIFAR)
    with pytest.raises(CalibrationError, match="does not exist"):
        load_samples(str(tmp_path / "missing.npz"), model_spec=CIFAR)


def test_fewer_samples_than_asked(tmp_path):
    _write_images(tmp_path / "imgs", 3)
    with pytest.raises(CalibrationError, match="5 calibration samples asked, only 3 available"):
        load_samples(str(tmp_path / "imgs"), model_spec=CIFAR, num=5)
    np.save(tmp_path / "a.npy", np.zeros((4, 3, 32, 32), np.float32))
    with pytest.raises(CalibrationError, match="10 calibration samples asked, only 4 available"):
        load_samples(str(tmp_path / "a.npy"), model_spec=CIFAR, num=10)
    with pytest.raises(CalibrationError, match="600 validation samples asked, only 540 available"):
        load_samples("digits", model_spec=CIFAR, split="validation", num=600)
    with pytest.raises(CalibrationError, match="yielded only 2"):
        from_iterable([np.zeros((2, 3, 32, 32), np.float32)], input_shape=CIFAR.input_shape, num=5)
    with pytest.raises(CalibrationError, match="yielded no samples"):
        from_iterable([], input_shape=CIFAR.input_shape)
    with pytest.raises(CalibrationError, match="must be positive"):
        load_samples("default", model_spec=CIFAR, num=0)
    s = load_samples("default", model_spec=CIFAR, num=3)
    with pytest.raises(CalibrationError, match="4 calibration samples asked, only 3"):
        s.take(4)


def test_unknown_source(tmp_path):
    with pytest.raises(CalibrationError, match="neither a folder, an .npy/.npz file nor one of default, digits"):
        load_samples("imagenet_val", model_spec=CIFAR)
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(CalibrationError, match="not .npy/.npz"):
        load_samples(str(tmp_path / "x.txt"), model_spec=CIFAR)


def test_errors_exit_with_bad_input_code():
    assert CalibrationError("x").exit_code == 2


# ---- calibration methods ----------------------------------------------------------------------------------

def test_percentile_ranges_are_exact():
    from edgeport.calibration.ranges import RangeCollector

    rng = np.random.default_rng(0)
    batches = [rng.standard_t(2, size=(1, 4, 16, 16)).astype(np.float32) for _ in range(10)]
    allv = np.concatenate([b.ravel() for b in batches])
    mm = RangeCollector(method="minmax", num_samples=10)
    pc = RangeCollector(method="percentile", percentile=99.0, num_samples=10)
    for b in batches:
        mm.update("t", b)
        pc.update("t", b)
    assert mm.ranges()["t"] == (float(allv.min()), float(allv.max()))
    lo, hi = pc.ranges()["t"]
    # the k-th largest / smallest value, k = ceil(n * 1%) + 1: between neighbouring order statistics of quantile p
    srt = np.sort(allv)
    k = int(np.ceil(allv.size * 0.01)) + 1
    assert hi == srt[-k] and lo == srt[k - 1]
    assert abs(hi - np.quantile(allv, 0.99)) < 0.05 * (allv.max() - allv.min())
    assert hi < allv.max() and lo > allv.min()
    relu = RangeCollector(method="percentile", percentile=99.9, num_samples=1)
    relu.update("r", np.abs(batches[0]))
    assert relu.ranges()["r"][0] == 0.0, "ranges always contain 0"


def _tiny_onnx(path: Path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3
    fc = rng.standard_normal((10, 8)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fc"], ["logits"], transB=1, name="fc")]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
                          initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(fc, "fc")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))


def _qdq_scales(path: Path) -> dict:
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    return {n.input[0]: float(init[n.input[1]]) for n in m.graph.node
            if n.op_type == "QuantizeLinear" and init[n.input[1]].size == 1}


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_ort_int8_methods(method, tmp_path):
    """Each ORT method gives a checked QDQ model; entropy and percentile choose narrower activation ranges than
    min/max on heavy-tailed data (ORT's stock entropy would equal min/max: too few histogram bins)."""
    from edgeport.validation import run_artifact
    from edgeport.export.ort_int8 import quantize_onnx_int8

    _tiny_onnx(tmp_path / "m.onnx")
    rng = np.random.default_rng(1)
    xs = [rng.standard_t(3, size=(1, 3, 8, 8)).astype(np.float32) for _ in range(16)]
    cal = from_iterable(xs, input_shape=(3, 8, 8))
    s = quantize_onnx_int8(onnx_path=tmp_path / "m.onnx", out_path=tmp_path / f"{method}.onnx", calibration=cal,
                           method=method)
    assert s["method"] == method and s["qdq_nodes"] > 0 and s["num_calibration"] == 16
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"
    x = np.concatenate(xs[:4])
    ref, y = run_artifact(tmp_path / "m.onnx", x), run_artifact(tmp_path / f"{method}.onnx", x)
    cos = np.sum(ref * y, 1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(y, axis=1)
    assert cos.min() > 0.98
    if method != "minmax":
        mm = tmp_path / "minmax_ref.onnx"
        quantize_onnx_int8(onnx_path=tmp_path / "m.onnx", out_path=mm, calibration=cal, method="minmax")
        a, b = _qdq_scales(mm), _qdq_scales(tmp_path / f"{method}.onnx")
        assert b["r"] < a["r"], f"{method} should clip the ReLU output's tail: scale {b['r']} vs min/max {a['r']}"
        if method == "entropy" and "logits" in a:
            assert b["logits"] == pytest.approx(a["logits"]), "graph outputs keep min/max"


def test_ort_int8_empty_calibration(tmp_path):
    from edgeport.export.ort_int8 import quantize_onnx_int8

    _tiny_onnx(tmp_path / "m.onnx")
    with pytest.raises(CalibrationError, match="empty"):
        quantize_onnx_int8(onnx_path=tmp_path / "m.onnx", out_path=tmp_path / "q.onnx", calibration=[])
