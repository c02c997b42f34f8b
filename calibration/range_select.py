"""Per-tensor activation ranges chosen by the quantization error they cause on a calibration hold-out.

For every activation tensor, the calibration samples are split by index into a *fit* part (3 of every 4 samples)
and a *hold-out* part (every 4th sample; never the validation split, which is a different set of images). Each
candidate range is derived from the fit samples:

- `minmax`: the observed min / max;
- `p99.9`, `p99.99`, `p99.999`: both tails clipped at that percentile;
- `mse`: the clipping range that minimises the tensor's own mean squared INT8 quantization error (clipping plus
  rounding, asymmetric int8 with the zero point TFLite uses), searched on the fit histogram.

The candidate with the least mean squared quantization error on the *hold-out* samples wins (ties go to the earlier
candidate, min/max first); its range is then recomputed on all calibration samples. A range fitted to three quarters
of the data that clips values the fourth quarter needs loses to min/max there, which is the point of the hold-out.

Values are kept in a `Histogram` whose bins have a power-of-two width and are aligned at 0, so a histogram can widen
(merge pairs of bins) and two histograms can be merged without re-reading any value. All ranges contain 0.

    >>> col = HistogramCollector(num_samples=len(samples))
    >>> for k, sample in enumerate(samples):
    ...     for name, value in tensors_of(sample).items():
    ...         col.update(name, value, sample_index=k)
    >>> choices = col.select()              # {name: RangeChoice}; choices[name].range -> (lo, hi)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BINS = 1 << 14
PERCENTILES = (99.9, 99.99, 99.999)
CANDIDATES = ("minmax", *(f"p{p:g}" for p in PERCENTILES), "mse")
HOLDOUT_EVERY = 4  # every 4th calibration sample is held out for the choice
SUBSAMPLE_CAP = 1 << 18  # values per tensor and sample that enter the histogram (exact min/max always kept)
QMIN, QMAX = -128, 127
_MSE_GRID = 48


class Histogram:
    """Counts of values in `BINS` bins of width 2**exp, bin i covering [i * w, (i + 1) * w), starting at `offset`."""

    def __init__(self) -> None:
        self.counts = np.zeros(BINS, dtype=np.float64)
        self.exp: int | None = None
        self.offset = 0
        self.lo = math.inf
        self.hi = -math.inf
        self._adds = 0

    @property
    def width(self) -> float:
        return math.ldexp(1.0, self.exp)

    @property
    def total(self) -> float:
        return float(self.counts.sum())

    def _rebin(self, exp: int, offset: int) -> None:
        """Move the counts to bins of width 2**exp starting at `offset` (exp >= self.exp; bins stay aligned at 0,
        so every old bin falls inside one new bin)."""
        keep = np.nonzero(self.counts)[0]
        steps = exp - self.exp
        if steps > 60:  # beyond int64 shifts: place each old bin by its centre
            idx = np.floor((keep + self.offset + 0.5) * (self.width / math.ldexp(1.0, exp))).astype(np.int64)
        else:
            idx = (keep.astype(np.int64) + self.offset) >> steps
        idx = np.clip(idx - offset, 0, BINS - 1)
        self.counts = np.bincount(idx, weights=self.counts[keep], minlength=BINS)
        self.exp, self.offset = exp, offset

    def _fit(self, lo: float, hi: float) -> None:
        """Widen / move the bins until [lo, hi] and what is already counted fit in BINS bins."""
        lo, hi = min(lo, self.lo), max(hi, self.hi)
        if self.exp is None:
            span = max(hi - lo, abs(hi), abs(lo), 1e-30)
            self.exp = math.frexp(span / (BINS - 2))[1]
            self.offset = math.floor(lo / self.width)
            return
        exp = self.exp
        while math.floor(hi / math.ldexp(1.0, exp)) - math.floor(lo / math.ldexp(1.0, exp)) >= BINS:
            exp += 1
        first, last = math.floor(lo / math.ldexp(1.0, exp)), math.floor(hi / math.ldexp(1.0, exp))
        offset = self.offset if exp == self.exp else (self.offset >> min(exp - self.exp, 62))
        offset = min(offset, first) if first < offset else max(offset, last - BINS + 1)
        if exp != self.exp or offset != self.offset:
            self._rebin(exp, offset)

    def add(self, values: np.ndarray) -> None:
        a = np.asarray(values, dtype=np.float32).ravel()
        if a.size == 0:
            return
        lo, hi = float(a.min()), float(a.max())
        if a.size > SUBSAMPLE_CAP:  # a strided subsample of a large map; min and max stay exact
            stride = -(-a.size // SUBSAMPLE_CAP)
            a = a[(self._adds * 7919) % stride::stride]
        self._adds += 1
        self._fit(lo, hi)
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
        idx = np.floor(a * np.float32(1.0 / self.width)).astype(np.int64) - self.offset
        np.clip(idx, 0, BINS - 1, out=idx)
        self.counts += np.bincount(idx, minlength=BINS)

    def merged(self, other: Histogram) -> Histogram:
        """A new histogram holding both (neither is changed)."""
        out = Histogram()
        for h in (self, other):
            if h.exp is None:
                continue
            if out.exp is None:
                out.exp, out.offset = h.exp, h.offset
            out._fit(h.lo, h.hi)
            if h.exp > out.exp:
                out._rebin(h.exp, out.offset >> (h.exp - out.exp))
                out._fit(h.lo, h.hi)
            src = Histogram()
            src.counts, src.exp, src.offset, src.lo, src.hi = h.counts.copy(), h.exp, h.offset, h.lo, h.hi
            if src.exp != out.exp or src.offset != out.offset:
                src._rebin(out.exp, out.offset)
            out.counts = out.counts + src.counts
            out.lo, out.hi = min(out.lo, h.lo), max(out.hi, h.hi)
        return out

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(bin centres clamped to the observed [lo, hi], counts) of the non-empty bins."""
        keep = np.nonzero(self.counts)[0]
        c = (keep + self.offset + 0.5) * self.width
        return np.clip(c, self.lo, self.hi), self.counts[keep]

    def quantile(self, q: float) -> float:
        """The value below which a fraction q of the counts lies (upper edge of the bin that reaches it)."""
        cum = np.cumsum(self.counts)
        i = int(np.searchsorted(cum, q * cum[-1], side="left"))
        return float(min(max((i + self.offset + (1 if q > 0.5 else 0)) * self.width, self.lo), self.hi))


def _with_zero(lo: float, hi: float) -> tuple[float, float]:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo <= 0:
        hi = lo + 1e-8
    return lo, hi


def quantization_mse(centres: np.ndarray, counts: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Mean squared error of asymmetric int8 quantization (clip + round, zero point rounded as TFLite does) of the
    values `centres` weighted by `counts`, for each row (lo, hi) of `ranges` (K x 2) -> (K,)."""
    r = np.atleast_2d(np.asarray(ranges, dtype=np.float64))
    lo = np.minimum(r[:, :1], 0.0)
    hi = np.maximum(r[:, 1:], lo + 1e-12)
    scale = (hi - lo) / (QMAX - QMIN)
    zp = np.clip(np.round(QMIN - lo / scale), QMIN, QMAX)
    q = np.clip(np.round(centres[None, :] / scale) + zp, QMIN, QMAX)
    err = ((q - zp) * scale - centres[None, :]) ** 2
    return (err * counts[None, :]).sum(axis=1) / max(float(counts.sum()), 1e-30)


def mse_range(hist: Histogram) -> tuple[float, float]:
    """The range with the least quantization MSE on `hist`: a grid over the upper clip (lower at min), then over the
    lower clip, twice (coordinate descent); one-sided tensors (lo >= 0 or hi <= 0) search only their open side."""
    c, n = hist.centres()
    lo, hi = _with_zero(hist.lo, hist.hi)
    fractions = np.linspace(1.0 / _MSE_GRID, 1.0, _MSE_GRID)
    for _ in range(2):
        if hi > 0:
            grid = np.stack([np.full(_MSE_GRID, lo), hist.hi * fractions], axis=1)
            hi = float(grid[int(np.argmin(quantization_mse(c, n, grid))), 1])
        if lo < 0:
            grid = np.stack([hist.lo * fractions, np.full(_MSE_GRID, hi)], axis=1)
            lo = float(grid[int(np.argmin(quantization_mse(c, n, grid))), 0])
    return _with_zero(lo, hi)


def candidate_ranges(hist: Histogram) -> dict[str, tuple[float, float]]:
    """{candidate name: (lo, hi)} derived from `hist` (names in CANDIDATES order)."""
    out = {"minmax": _with_zero(hist.lo, hist.hi)}
    for p in PERCENTILES:
        out[f"p{p:g}"] = _with_zero(hist.quantile(1 - p / 100), hist.quantile(p / 100))
    out["mse"] = mse_range(hist)
    return out


@dataclass(frozen=True)
class RangeChoice:
    """One tensor's choice: the winning candidate, its range on all samples, and every candidate's hold-out MSE
    relative to min/max's (1.0 = as good as min/max; lower is better)."""

    name: str
    chosen: str
    range: tuple[float, float]
    holdout_mse: dict[str, float]

    def as_dict(self) -> dict:
        return {"tensor": self.name, "chosen": self.chosen, "range": [round(v, 6) for v in self.range],
                "holdout_mse_vs_minmax": {k: round(v, 4) for k, v in self.holdout_mse.items()}}


def choose_range(name: str, fit: Histogram, holdout: Histogram) -> RangeChoice:
    """Pick the candidate (fitted on `fit`) with the least quantization MSE on `holdout`; refit it on both."""
    if holdout.exp is None or fit.exp is None:  # too few samples to hold any out: min/max of what there is
        both = fit if holdout.exp is None else holdout
        return RangeChoice(name, "minmax", _with_zero(both.lo, both.hi), {})
    cands = candidate_ranges(fit)
    c, n = holdout.centres()
    errs = quantization_mse(c, n, np.array(list(cands.values())))
    base = max(float(errs[0]), 1e-30)
    chosen = list(cands)[int(np.argmin(errs))]
    final = candidate_ranges(fit.merged(holdout))[chosen]
    return RangeChoice(name, chosen, final, {k: float(e) / base for k, e in zip(cands, errs)})


class HistogramCollector:
    """`update(name, array, sample_index=k)` per tensor and sample; `select()` -> {name: RangeChoice}.

    Also keeps each tensor's per-channel mean over all samples (`channel_means()`, last axis = channels, the
    TFLite NHWC layout), which cheap bias correction needs."""

    def __init__(self, *, num_samples: int, holdout_every: int = HOLDOUT_EVERY):
        self.num_samples = num_samples
        self.holdout_every = holdout_every
        self._fit: dict[str, Histogram] = {}
        self._hold: dict[str, Histogram] = {}
        self._sum: dict[str, np.ndarray] = {}
        self._n: dict[str, int] = {}

    def is_holdout(self, sample_index: int) -> bool:
        return self.num_samples >= 2 and sample_index % self.holdout_every == self.holdout_every - 1

    def update(self, name: str, arr: np.ndarray, *, sample_index: int) -> None:
        a = np.asarray(arr, dtype=np.float32)
        if a.size == 0:
            return
        part = self._hold if self.is_holdout(sample_index) else self._fit
        part.setdefault(name, Histogram()).add(a)
        self._fit.setdefault(name, Histogram())
        self._hold.setdefault(name, Histogram())
        if a.ndim >= 2:
            s = a.reshape(-1, a.shape[-1]).sum(axis=0, dtype=np.float64)
            self._sum[name] = s + self._sum.get(name, 0.0)
            self._n[name] = self._n.get(name, 0) + a.size // a.shape[-1]

    def channel_means(self) -> dict[str, np.ndarray]:
        """{name: per-channel mean over every sample and position} (tensors of rank >= 2)."""
        return {k: s / max(self._n[k], 1) for k, s in self._sum.items()}

    def select(self) -> dict[str, RangeChoice]:
        return {name: choose_range(name, self._fit[name], self._hold[name]) for name in self._fit}
