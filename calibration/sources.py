"""Calibration / validation sources, one registry: `default` (bundled photographs), `digits` (scikit-learn's
handwritten digits), `folder` (JPEG/PNG, recursive), `arrays` (.npy / .npz), plus `from_iterable` for Python
iterables and torch DataLoaders. Every source returns a `SampleSet` (see samples.py for the protocol).

    >>> s = load_samples("default", model_spec=get_spec("efficientnet_lite0"), num=32, seed=0)
    >>> next(iter(s))["input"].shape      # (1, 3, 224, 224) float32, normalised, NCHW

`--calibration SPEC` strings: `default`, `digits`, a folder path, or a `.npy` / `.npz` path.

Models with several inputs (`other_inputs`: every input but the image one): an `.npz` keyed by input name gives
them all (the image as preprocessed float NCHW/NHWC, the others (N, ...) in their own shape, integer inputs as
integers); a missing key, another shape or another dtype kind is one CalibrationError naming the input and what was
expected. Any other source gives the image only: `MissingInputs.REFUSE` (calibration: ranges from made-up data
would be wrong) raises, `MissingInputs.RANDOM` (validation: fp32 parity holds for any input) fills the others with
seeded random data of their shape and dtype: floats ~ N(0, 1); integers uniform in [0, high) where `high` is the
size of the table the input indexes (InputSpec.high), else in [0, 2); booleans uniform.
"""
from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from edgeport.errors import CalibrationError
from edgeport.models import ModelSpec
from edgeport.registry import Registry

from . import digits as _digits
from . import photos as _photos
from .preprocess import normalize, preprocess_eval, random_resized_crop
from .samples import InputSpec, SampleSet, Split

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ARRAY_SUFFIXES = (".npy", ".npz")
# Default sample counts when --num-calibration / --num-validation are not given.
DEFAULT_COUNTS = {Split.CALIBRATION: 64, Split.VALIDATION: 64}
DEFAULT_SEED = 0


class MissingInputs(str, enum.Enum):
    """What to do when a source gives only the image input of a several-input model (see the module docstring)."""

    REFUSE = "refuse"
    RANDOM = "random"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class SourceSpec:
    """A parsed `--calibration` string: the registered source `kind` and its `location` (a path, or None)."""

    kind: str
    location: str | None = None

    def __str__(self) -> str:
        return self.kind if self.location is None else self.location


@dataclass(frozen=True)
class SourceRequest:
    """Everything a source factory needs. `input_shape` is (C, H, W) of the exported model."""

    location: str | None
    model_spec: ModelSpec
    input_shape: tuple[int, int, int]
    input_name: str
    split: Split
    num: int | None
    seed: int
    labelled: bool
    other_inputs: tuple[InputSpec, ...] = ()


SourceFactory = Callable[[SourceRequest], SampleSet]
SOURCES: Registry[SourceFactory] = Registry("calibration source")


def parse_source(text: str) -> SourceSpec:
    """`default` | `digits` | a folder | a .npy/.npz file -> SourceSpec; CalibrationError when it is none of these."""
    t = str(text).strip()
    if t in SOURCES and t not in ("folder", "arrays"):
        return SourceSpec(t)
    p = Path(t).expanduser()
    if p.suffix.lower() in ARRAY_SUFFIXES:
        if not p.is_file():
            raise CalibrationError(f"calibration array file {t!r} does not exist")
        return SourceSpec("arrays", str(p))
    if p.is_dir():
        return SourceSpec("folder", str(p))
    if p.exists():
        raise CalibrationError(
            f"calibration source {t!r} is a file but not .npy/.npz",
            hint="pass a folder of JPEG/PNG images, a .npy/.npz array file, 'default' or 'digits'",
        )
    named = [n for n in SOURCES.names() if n not in ("folder", "arrays")]
    raise CalibrationError(
        f"calibration source {t!r} is neither a folder, an .npy/.npz file nor one of {', '.join(named)}"
    )


def load_samples(
    source: str | SourceSpec,
    *,
    model_spec: ModelSpec,
    input_shape: tuple[int, int, int] | None = None,
    input_name: str = "input",
    split: Split | str = Split.CALIBRATION,
    num: int | None = None,
    seed: int = DEFAULT_SEED,
    labelled: bool = False,
    other_inputs: Sequence[InputSpec] = (),
    missing_inputs: MissingInputs = MissingInputs.REFUSE,
) -> SampleSet:
    """Samples from a source, preprocessed for `model_spec` at `input_shape` (default: the spec's).

    `num` None: the source's default count (64 for the photo/digit sources; everything for folders and arrays;
    the whole held-out split for `digits` validation). Fewer available than `num` -> CalibrationError.
    `other_inputs`: the model's inputs besides `input_name` (see the module docstring).
    """
    spec = source if isinstance(source, SourceSpec) else parse_source(source)
    if num is not None and num <= 0:
        raise CalibrationError(f"the number of samples must be positive, got {num}")
    req = SourceRequest(
        location=spec.location, model_spec=model_spec,
        input_shape=tuple(int(s) for s in (input_shape or model_spec.input_shape)), input_name=input_name,
        split=Split(split), num=num, seed=int(seed), labelled=labelled, other_inputs=tuple(other_inputs),
    )
    samples = SOURCES.get(spec.kind)(req)
    missing = [i for i in other_inputs if i.name not in samples.extras]
    if missing and MissingInputs(missing_inputs) is MissingInputs.REFUSE:
        raise CalibrationError(
            f"{spec}: gives the image input {input_name!r} only; the model also takes "
            f"{', '.join(i.describe() for i in missing)}",
            hint="pass an .npz keyed by input name with every input (N samples on axis 0)")
    if missing:
        samples = samples.with_extras(random_inputs(missing, n=len(samples), seed=req.seed), source="random")
    return samples


def random_inputs(inputs: Sequence[InputSpec], *, n: int, seed: int) -> dict[str, np.ndarray]:
    """{name: (n, *shape[1:])} seeded random data of each input's dtype (see the module docstring)."""
    rng = np.random.default_rng([seed, 7])
    out = {}
    for spec in inputs:
        shape, dt = (n, *spec.shape[1:]), np.dtype(spec.dtype)
        if dt.kind == "b":
            out[spec.name] = rng.integers(0, 2, shape).astype(bool)
        elif dt.kind in "iu":
            out[spec.name] = rng.integers(0, spec.high or 2, shape).astype(dt)
        else:
            out[spec.name] = rng.standard_normal(shape).astype(dt)
    return out


def _npz_other_inputs(path: Path, inputs: Sequence[InputSpec], chosen: np.ndarray, n_total: int) -> dict:
    """The other inputs from an .npz keyed by input name, the samples `chosen`; CalibrationError naming the input
    and what was expected for a missing key, another shape, sample count or dtype kind."""
    out = {}
    with np.load(path, allow_pickle=False) as z:
        for spec in inputs:
            want = f"({n_total}, {', '.join(map(str, spec.shape[1:]))}) {spec.dtype}"
            if spec.name not in z:
                raise CalibrationError(f"{path}: no array for model input {spec.name!r}; expected {want} "
                                       f"(keys: {', '.join(z.keys())})")
            a = z[spec.name]
            if a.ndim == len(spec.shape) - 1:
                a = a[None]
            dt = np.dtype(spec.dtype)
            if tuple(a.shape[1:]) != tuple(spec.shape[1:]) or len(a) != n_total:
                raise CalibrationError(f"{path}: input {spec.name!r} has shape {tuple(a.shape)}; expected {want}")
            kinds_ok = (a.dtype.kind in "iu") == (dt.kind in "iu") and (a.dtype.kind == "b") == (dt.kind == "b")
            if not kinds_ok:
                raise CalibrationError(f"{path}: input {spec.name!r} is {a.dtype.name}; expected {want}")
            out[spec.name] = np.ascontiguousarray(a[chosen].astype(dt))
    return out


def _pick(n_available: int, req: SourceRequest, what: str, *, default_all: bool) -> np.ndarray:
    """Indices of the samples to use: all (in order) or a seeded subset of `req.num`."""
    if n_available == 0:
        raise CalibrationError(f"{what}: no samples found")
    num = req.num if req.num is not None else (n_available if default_all else min(n_available, DEFAULT_COUNTS[req.split]))
    if num > n_available:
        raise CalibrationError(
            f"{what}: {num} {req.split} samples asked, only {n_available} available",
            hint="lower --num-calibration or add data",
        )
    if num == n_available:
        return np.arange(n_available)
    return np.sort(np.random.default_rng(req.seed).permutation(n_available)[:num])


# ---- default: real photographs ------------------------------------------------------------------------------

@SOURCES.decorator("default")
def _default_source(req: SourceRequest) -> SampleSet:
    """Random resized crops (+ flips) of scikit-image's sample photographs; calibration and validation use
    disjoint photos. Sample i uses photo i mod P and an RNG seeded by (seed, split, i): deterministic by seed."""
    names = _photos.photos_for(req.split)
    num = req.num if req.num is not None else DEFAULT_COUNTS[req.split]
    if req.num is not None and req.num <= 0:
        raise CalibrationError("the number of samples must be positive")
    split_id = 0 if req.split == Split.CALIBRATION else 1
    _, H, W = req.input_shape

    def load(i: int) -> np.ndarray:
        rng = np.random.default_rng([req.seed, split_id, i])
        img = random_resized_crop(_photos.load_photo(names[i % len(names)]), rng=rng, size_hw=(H, W))
        return normalize(img, spec=req.model_spec, channels=req.input_shape[0])

    return SampleSet(
        input_name=req.input_name, shape=req.input_shape, length=num, loader=load, source="default",
        split=req.split, seed=req.seed, description=f"random resized crops of skimage.data photos: {', '.join(names)}",
        ids=[f"default:{names[i % len(names)]}:{req.seed}:{split_id}:{i}" for i in range(num)],
    )


# ---- digits: scikit-learn's handwritten digits --------------------------------------------------------------

@SOURCES.decorator("digits")
def _digits_source(req: SourceRequest) -> SampleSet:
    """Calibration: a seeded subset of the train split. Validation: the held-out split (all 540 by default)."""
    if req.input_shape[1] != req.input_shape[2]:
        raise CalibrationError(f"digits: needs a square input, got {req.input_shape}")
    images, labels = _digits.digits_images(req.input_shape[1])
    train, held = _digits.digits_split()
    pool = train if req.split == Split.CALIBRATION else held
    chosen = pool[_pick(len(pool), req, "digits", default_all=req.split == Split.VALIDATION)]

    def load(i: int) -> np.ndarray:
        return normalize(images[chosen[i]], spec=req.model_spec, channels=req.input_shape[0])

    return SampleSet(
        input_name=req.input_name, shape=req.input_shape, length=len(chosen), loader=load, source="digits",
        split=req.split, seed=req.seed, labels=[int(labels[j]) for j in chosen],
        description=f"sklearn load_digits upsampled to {req.input_shape[1]}x{req.input_shape[2]}, "
                    f"{'train' if req.split == Split.CALIBRATION else 'held-out'} split",
        ids=[f"digits:{int(j)}" for j in chosen],
    )


# ---- folder: JPEG / PNG, recursive ---------------------------------------------------------------------------

def _image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise CalibrationError(f"cannot read image {path}: {exc}", hint="remove or replace the file") from None


def _folder_labels(root: Path, files: list[Path]) -> list[int]:
    """Class of each file = its first-level subfolder; folder names that are all integers are class indices,
    otherwise classes are numbered in sorted folder-name order."""
    rel = [f.relative_to(root).parts for f in files]
    if any(len(r) < 2 for r in rel):
        loose = [str(f) for f, r in zip(files, rel) if len(r) < 2][:3]
        raise CalibrationError(
            f"labelled folder {root}: images must sit in one subfolder per class; found {', '.join(loose)} at the top"
        )
    classes = sorted({r[0] for r in rel})
    if all(c.isdigit() for c in classes):
        return [int(r[0]) for r in rel]
    index = {c: i for i, c in enumerate(classes)}
    return [index[r[0]] for r in rel]


@SOURCES.decorator("folder")
def _folder_source(req: SourceRequest) -> SampleSet:
    """Every JPEG/PNG under the folder (recursive, sorted by path), evaluation transform (resize + centre crop)."""
    root = Path(req.location)
    files = _image_files(root)
    if not files:
        raise CalibrationError(f"folder {root} contains no JPEG or PNG images (searched recursively)")
    chosen = [files[i] for i in _pick(len(files), req, f"folder {root}", default_all=True)]
    # labels when every image sits in a class subfolder; a flat folder validates without labels
    nested = all(len(p.relative_to(root).parts) > 1 for p in chosen)
    labels = _folder_labels(root, chosen) if req.labelled and nested else None

    def load(i: int) -> np.ndarray:
        return preprocess_eval(_read_image(chosen[i]), spec=req.model_spec, input_shape=req.input_shape)

    s = SampleSet(
        input_name=req.input_name, shape=req.input_shape, length=len(chosen), loader=load, source=str(root),
        split=req.split, seed=req.seed, labels=labels, description=f"{len(chosen)} images from {root}",
        ids=[f"file:{p.resolve()}" for p in chosen],
    )
    for i in range(len(s)):  # read everything now: an unreadable file fails here, not halfway through quantization
        s[i]
    return s


# ---- arrays: .npy / .npz ------------------------------------------------------------------------------------

def _load_array_file(path: Path, input_name: str) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npy":
            return np.load(path, allow_pickle=False)
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.keys())
            if input_name in keys:
                return z[input_name]
            if len(keys) == 1:
                return z[keys[0]]
            raise CalibrationError(f"{path} holds arrays {keys}; name one {input_name!r} or keep a single array")
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"cannot read array file {path}: {exc}") from None


def conform_batch(a: Any, *, input_shape: tuple[int, int, int], what: str) -> np.ndarray:
    """An (N, C, H, W) or (N, H, W, C) array (or one sample without N) -> float32 (N, C, H, W).

    uint8 arrays are raw pixels: they are NOT normalised here (use a folder for raw images); float arrays are taken
    as already preprocessed. Any other shape -> CalibrationError naming the accepted ones.
    """
    a = np.asarray(a)
    C, H, W = input_shape
    if a.ndim == 3:
        a = a[None]
    if a.ndim == 4 and a.shape[1:] == (C, H, W):
        out = a
    elif a.ndim == 4 and a.shape[1:] == (H, W, C):
        out = a.transpose(0, 3, 1, 2)
    else:
        raise CalibrationError(
            f"{what}: array of shape {a.shape} does not fit the model input; expected (N, {C}, {H}, {W}) (NCHW) or "
            f"(N, {H}, {W}, {C}) (NHWC)"
        )
    if not np.issubdtype(out.dtype, np.floating):
        raise CalibrationError(f"{what}: array dtype {a.dtype}; expected float32 samples already normalised per the model spec")
    if not np.isfinite(out).all():
        raise CalibrationError(f"{what}: array contains NaN or inf")
    return np.ascontiguousarray(out, dtype=np.float32)


@SOURCES.decorator("arrays")
def _array_source(req: SourceRequest) -> SampleSet:
    """A .npy/.npz array of preprocessed float samples, NCHW or NHWC; labels from an .npz key `labels` if present."""
    path = Path(req.location)
    batch = conform_batch(_load_array_file(path, req.input_name), input_shape=req.input_shape, what=str(path))
    labels = None
    if req.labelled and path.suffix.lower() == ".npz":
        with np.load(path) as z:
            if "labels" in z:
                labels = [int(v) for v in z["labels"]]
    chosen = _pick(len(batch), req, str(path), default_all=True)
    extras = None
    if req.other_inputs and path.suffix.lower() == ".npz":
        extras = _npz_other_inputs(path, req.other_inputs, chosen, len(batch))
    return SampleSet(
        input_name=req.input_name, shape=req.input_shape, length=len(chosen), loader=lambda i: batch[chosen[i]],
        source=str(path), split=req.split, seed=req.seed,
        labels=None if labels is None else [labels[j] for j in chosen],
        description=f"{len(chosen)} arrays from {path}", ids=[f"array:{path.resolve()}:{int(j)}" for j in chosen],
        extras=extras, extras_source=str(path) if extras else None,
    )


# ---- Python iterables / torch DataLoaders (API only) --------------------------------------------------------

def from_iterable(
    data: Iterable[Any],
    *,
    input_shape: tuple[int, int, int],
    input_name: str = "input",
    num: int | None = None,
    split: Split | str = Split.CALIBRATION,
    source: str = "iterable",
) -> SampleSet:
    """Any iterable of preprocessed samples -> SampleSet. Items may be arrays/tensors ((N,)C,H,W or (N,)H,W,C),
    `(x, y)` pairs as a torch DataLoader yields (y becomes the labels), or `{input_name: x}` dicts. Batches are
    split into single samples. Stops after `num` samples; fewer than `num` -> CalibrationError."""
    xs: list[np.ndarray] = []
    ys: list[int] = []
    have_labels = True
    for item in data:
        y = None
        if isinstance(item, dict):
            if input_name not in item:
                raise CalibrationError(f"{source}: item has keys {list(item)}, expected {input_name!r}")
            x = item[input_name]
        elif isinstance(item, (tuple, list)) and len(item) == 2:
            x, y = item
        else:
            x = item
        x = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        batch = conform_batch(x, input_shape=input_shape, what=source)
        if y is None:
            have_labels = False
        else:
            y = y.detach().cpu().numpy() if hasattr(y, "detach") else np.asarray(y)
            ys.extend(int(v) for v in np.atleast_1d(y))
        xs.extend(batch[i:i + 1] for i in range(len(batch)))
        if num is not None and len(xs) >= num:
            break
    if not xs:
        raise CalibrationError(f"{source}: the iterable yielded no samples")
    if num is not None and len(xs) < num:
        raise CalibrationError(f"{source}: {num} samples asked, the iterable yielded only {len(xs)}")
    n = num or len(xs)
    xs = xs[:n]
    labels = ys[:n] if have_labels and len(ys) >= n else None
    digest = hashlib.sha1(b"".join(x.tobytes() for x in xs)).hexdigest()[:12]
    return SampleSet(
        input_name=input_name, shape=input_shape, length=n, loader=lambda i: xs[i], source=source, split=Split(split),
        labels=labels, description=f"{n} samples from a Python iterable", ids=[f"{source}:{digest}:{i}" for i in range(n)],
    )
