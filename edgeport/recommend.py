"""The answer a user runs edgeport for: which artifact x engine x threads to ship on each target.

A pure function of report.json's sections (`parity`, `accuracy`, `latency`, `device_parity`): per target, the
fastest configuration (by p50, the one latency statistic used everywhere here) whose accuracy checks pass, the
runner-up and the ratio between them. What counts as passing:

- `parity.<artifact>.passed` is true with enforced thresholds (`Check.VALIDATED`);
- thresholds not enforced (an INT8 artifact of a random-init model: quantizing random weights says nothing about a
  trained model) rank as `Check.NOT_ENFORCED` and the recommendation says it is not validated;
- the reference itself (a user ONNX is its own reference) is `Check.REFERENCE`;
- a missed enforced threshold (`Check.FAILED`) or no parity entry (`Check.NOT_VALIDATED`) excludes the entry;
- an optional `AccuracyBar` (top-1 agreement with the reference, accuracy on labelled samples) excludes more;
- a configuration whose outputs on the target disagree with this machine's (`device_parity`, newest entry of that
  target x artifact x engine: any output that fails fails it, `Check.DEVICE_MISMATCH`) is excluded on that target.

`edgeport run` writes it to report.json `recommendation`; `edgeport compare` ranks several models with it.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from edgeport.metrics import passes
from edgeport.report import DeviceParity, device_parity_entries

STATISTIC = "p50_ms"


class Check(str, enum.Enum):
    """What the accuracy checks said about an artifact."""

    VALIDATED = "validated"
    NOT_ENFORCED = "not_enforced"
    REFERENCE = "reference"
    FAILED = "failed"
    NOT_VALIDATED = "not_validated"
    BELOW_BAR = "below_bar"
    DEVICE_MISMATCH = "device_mismatch"

    @property
    def eligible(self) -> bool:
        return self in (Check.VALIDATED, Check.NOT_ENFORCED, Check.REFERENCE)

    @property
    def words(self) -> str:
        return _WORDS[self]


_WORDS = {
    Check.VALIDATED: "accuracy checks passed",
    Check.NOT_ENFORCED: "NOT validated: random weights, thresholds reported but not enforced (give --checkpoint)",
    Check.REFERENCE: "the reference model itself",
    Check.FAILED: "missed an enforced accuracy threshold",
    Check.NOT_VALIDATED: "not validated (no parity result)",
    Check.BELOW_BAR: "below the accuracy bar",
    Check.DEVICE_MISMATCH: "its outputs on this target disagree with this machine's",
}


@dataclass(frozen=True)
class AccuracyBar:
    """Minimum top-1 agreement with the reference and minimum accuracy on labelled samples (fractions, 0..1).
    An artifact without the measured number is below a bar that asks for it."""

    min_agreement: float | None = None
    min_accuracy: float | None = None

    def misses(self, *, agreement: float | None, accuracy: float | None) -> list[str]:
        out = []
        if self.min_agreement is not None and not _at_least(agreement, self.min_agreement):
            out.append(f"top-1 agreement {_pct(agreement)} < {_pct(self.min_agreement)}")
        if self.min_accuracy is not None and not _at_least(accuracy, self.min_accuracy):
            out.append(f"accuracy {_pct(accuracy)} < {_pct(self.min_accuracy)}")
        return out

    def to_json(self) -> dict:
        return {"min_agreement": self.min_agreement, "min_accuracy": self.min_accuracy}


def _at_least(v: float | None, bar: float) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v)) and v >= bar


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


@dataclass(frozen=True)
class Candidate:
    """One measured configuration: (model,) artifact x engine x threads on a target, its p50 and its checks."""

    target: str
    artifact: str
    engine: str
    threads: int
    p50_ms: float
    check: Check
    model: str | None = None
    top1_agreement: float | None = None
    accuracy: float | None = None
    noisy: bool = False  # the latency entry's `noisy` verdict (a loaded machine, a wide spread)
    noisy_reasons: tuple[str, ...] = ()
    why: str = ""  # what excluded it

    @property
    def label(self) -> str:
        head = f"{self.model} " if self.model else ""
        return f"{head}{self.artifact} on {self.engine}, {self.threads} thread{'s' if self.threads != 1 else ''}"

    def sort_key(self) -> tuple:
        """Fastest first; a tie goes to a validated entry, then fewer threads, then the name (deterministic)."""
        return (self.p50_ms, self.check is not Check.VALIDATED, self.threads, self.model or "", self.artifact,
                self.engine)

    def to_json(self) -> dict:
        d = {"artifact": self.artifact, "engine": self.engine, "threads": self.threads, STATISTIC: self.p50_ms,
             "check": self.check.value, "top1_agreement": self.top1_agreement, "accuracy": self.accuracy}
        if self.model is not None:
            d = {"model": self.model, **d}
        if self.noisy:
            d["noisy"] = True
            d["noisy_reasons"] = list(self.noisy_reasons)
        if self.why:
            d["why"] = self.why
        return d


def float_counterpart(artifact: str) -> str | None:
    """The float artifact an INT8 artifact is quantized from: tflite_int8 -> tflite_fp32, onnx_int8 -> onnx; None
    for an artifact that is not INT8."""
    if "int8" not in artifact:
        return None
    return artifact.replace("int8", "fp32") if artifact.startswith("tflite") else artifact.replace("_int8", "")


@dataclass(frozen=True)
class Int8Slower:
    """An INT8 artifact measured slower than its float counterpart (same target, model, engine and threads)."""

    int8: Candidate
    float_: Candidate

    @property
    def ratio(self) -> float:
        """INT8 p50 / float p50 (> 1)."""
        return self.int8.p50_ms / self.float_.p50_ms

    def line(self) -> str:
        i, f = self.int8, self.float_
        threads = f"{i.threads} thread{'s' if i.threads != 1 else ''}"
        then = ("the float artifact is the faster one to ship here" if f.check.eligible
                else f"but {f.artifact} is excluded: {f.why or f.check.words}")
        return (f"int8 is {self.ratio:.2f}x slower than fp32 here: {i.model + ' ' if i.model else ''}{i.artifact} p50 "
                f"{i.p50_ms:.3g} ms vs {f.artifact} {f.p50_ms:.3g} ms on {i.engine}, {threads}; this CPU's INT8 "
                f"kernels do not pay off for this model, {then}")

    def to_json(self) -> dict:
        return {"model": self.int8.model, "int8": self.int8.artifact, "float": self.float_.artifact,
                "engine": self.int8.engine, "threads": self.int8.threads, "ratio": round(self.ratio, 4)}


def int8_slower(cands: Iterable[Candidate]) -> list[Int8Slower]:
    """Every INT8 entry slower than its float counterpart measured on the same target, model, engine and threads
    (eligible or not: a speed fact does not depend on the accuracy checks)."""
    cands = list(cands)
    by_key = {(c.target, c.model, c.artifact, c.engine, c.threads): c for c in cands}
    out = []
    for c in cands:
        twin = float_counterpart(c.artifact)
        f = by_key.get((c.target, c.model, twin, c.engine, c.threads)) if twin else None
        if f is not None and f.p50_ms > 0 and c.p50_ms > f.p50_ms:
            out.append(Int8Slower(c, f))
    return out


@dataclass(frozen=True)
class TargetChoice:
    """The decision for one target: `ranking` holds every eligible entry fastest first (best, runner-up, ...);
    `excluded` the measured entries whose checks failed or that fall below the bar."""

    target: str
    ranking: tuple[Candidate, ...]
    excluded: tuple[Candidate, ...] = ()

    @property
    def best(self) -> Candidate | None:
        return self.ranking[0] if self.ranking else None

    @property
    def runner_up(self) -> Candidate | None:
        return self.ranking[1] if len(self.ranking) > 1 else None

    @property
    def ratio(self) -> float | None:
        """runner-up p50 / best p50 (>= 1: how much faster the recommendation is)."""
        if self.best is None or self.runner_up is None or self.best.p50_ms <= 0:
            return None
        return self.runner_up.p50_ms / self.best.p50_ms

    @property
    def int8_slower(self) -> list[Int8Slower]:
        """INT8 entries slower than their float counterpart here (the recommendation says so)."""
        return int8_slower((*self.ranking, *self.excluded))

    @property
    def validated(self) -> bool:
        return self.best is not None and self.best.check in (Check.VALIDATED, Check.REFERENCE)

    def models_ranked(self) -> list[Candidate]:
        """The fastest eligible entry of each model, fastest model first (compare)."""
        seen: dict[str | None, Candidate] = {}
        for c in self.ranking:
            seen.setdefault(c.model, c)
        return list(seen.values())

    def lines(self) -> list[str]:
        """Plain-text sentences for the terminal, report.md and report.html."""
        if self.best is None:
            why = "; ".join(f"{c.label}: {c.why or c.check.words}" for c in self.excluded) or "nothing was measured"
            return [f"{self.target}: no configuration to recommend ({why})"]
        b = self.best
        out = [f"{self.target}: ship {b.label}, p50 {b.p50_ms:.3g} ms ({b.check.words})"]
        if b.noisy or (self.runner_up is not None and self.runner_up.noisy):
            reasons = (*b.noisy_reasons, *(self.runner_up.noisy_reasons if self.runner_up else ()))
            why = "; ".join(dict.fromkeys(reasons))
            out.append(f"  measured on a noisy machine ({why or 'see the latency table'}): re-measure before "
                       f"trusting the ratio")
        if self.runner_up is not None:
            r = self.runner_up
            tie = " (a tie)" if self.ratio == 1.0 else ""
            out.append(f"  runner-up {r.label}, p50 {r.p50_ms:.3g} ms: {self.ratio:.2f}x slower{tie}")
        else:
            out.append("  no runner-up: it is the only configuration that passed")
        for c in self.excluded:
            out.append(f"  excluded {c.label}, p50 {c.p50_ms:.3g} ms: {c.why or c.check.words}")
        out += [f"  {gap.line()}" for gap in self.int8_slower]
        return out

    def to_json(self) -> dict:
        return {"best": self.best.to_json() if self.best else None,
                "runner_up": self.runner_up.to_json() if self.runner_up else None,
                "ratio": None if self.ratio is None else round(self.ratio, 4),
                "validated": self.validated,
                "int8_slower": [gap.to_json() for gap in self.int8_slower],
                "ranking": [c.to_json() for c in self.ranking],
                "excluded": [c.to_json() for c in self.excluded]}


@dataclass(frozen=True)
class Recommendation:
    """The decision per target; `report_sections()` fills report.json `recommendation`."""

    targets: tuple[TargetChoice, ...]
    bar: AccuracyBar = field(default_factory=AccuracyBar)

    def target(self, url: str) -> TargetChoice | None:
        return next((t for t in self.targets if t.target == url), None)

    def lines(self) -> list[str]:
        if not self.targets:
            return ["no latency was measured: nothing to recommend"]
        return [ln for t in self.targets for ln in t.lines()]

    def to_json(self) -> dict:
        return {"statistic": STATISTIC, "bar": self.bar.to_json(),
                "targets": {t.target: t.to_json() for t in self.targets}}

    def report_sections(self) -> dict[str, Any]:
        return {"recommendation": self.to_json()}


def check_of(artifact: str, parity: Mapping[str, Mapping]) -> Check:
    """What the parity section says about one artifact."""
    p = parity.get(artifact)
    if p is None or "passed" not in p:
        refs = {q.get("reference") for q in parity.values()}
        return Check.REFERENCE if artifact == "onnx" and refs == {"onnx"} else Check.NOT_VALIDATED
    if not p.get("thresholds_enforced", True):
        return Check.NOT_ENFORCED
    return Check.VALIDATED if p["passed"] is True else Check.FAILED


def candidates(sections: Mapping[str, Any], *, model: str | None = None,
               bar: AccuracyBar = AccuracyBar()) -> list[Candidate]:
    """The latest timed latency entry of each configuration (target x artifact x engine x threads) of one report as a
    Candidate (its check decided by `parity` and `bar`). `latency` is appended in time order, so a later `bench` of
    the same configuration replaces the earlier measurement here instead of competing with it."""
    parity = sections.get("parity") or {}
    acc = (sections.get("accuracy") or {}).get("artifacts") or {}
    on_device = {(p.target, p.artifact, p.engine): p for p in device_parity_entries(sections)}  # newest wins
    latest: dict[tuple, Mapping] = {}
    for e in sections.get("latency") or []:
        if e.get(STATISTIC) is not None:
            latest[(e.get("target"), e.get("artifact"), e.get("engine"), int(e.get("threads") or 1))] = e
    out = []
    for e in latest.values():
        art = e["artifact"]
        agreement = (parity.get(art) or {}).get("top1_agreement")
        accuracy = (acc.get(art) or {}).get("accuracy")
        check = check_of(art, parity)
        if check is Check.REFERENCE and agreement is None:
            agreement = 1.0
        why = ""
        if check is Check.FAILED:
            why = "missed " + ", ".join(_missed(parity[art]))
        elif check.eligible:
            misses = bar.misses(agreement=agreement, accuracy=accuracy)
            if misses:
                check, why = Check.BELOW_BAR, "; ".join(misses)
        dp = on_device.get((e["target"], art, e.get("engine")))
        if dp is not None and not dp.ok and check is not Check.FAILED:
            check, why = Check.DEVICE_MISMATCH, _disagrees(dp)
        out.append(Candidate(target=e["target"], artifact=art, engine=e.get("engine", "?"),
                             threads=int(e.get("threads") or 1), p50_ms=float(e[STATISTIC]), check=check, model=model,
                             top1_agreement=agreement, accuracy=accuracy, noisy=e.get("noisy") is True,
                             noisy_reasons=tuple(e.get("noisy_reasons") or ()), why=why))
    return out


def _disagrees(dp: DeviceParity) -> str:
    """Why a configuration is excluded on a target: the outputs that disagree with this machine's."""
    what = ", ".join(f"{o.name} (cosine_min {o.cosine_min:.6g})" if o.cosine_min is not None else o.name
                     for o in dp.failed)
    return f"outputs on {dp.target} disagree with this machine's: {what}"


def _missed(p: Mapping) -> list[str]:
    return [f"{m} {p[m]:.4g} (needs {t:g})" for m, t in (p.get("thresholds") or {}).items()
            if m in p and p[m] is not None and not passes(m, p[m], t)] or ["its thresholds"]


def missed_thresholds(parity: Mapping[str, Mapping]) -> dict[str, str]:
    """artifact -> the enforced thresholds it missed, e.g. 'sqnr_db 12.3 (needs 25)' (a failed accuracy check)."""
    return {a: ", ".join(_missed(p)) for a, p in parity.items()
            if p.get("passed") is False and p.get("thresholds_enforced", True)}


def decide(cands: Iterable[Candidate], *, bar: AccuracyBar = AccuracyBar()) -> Recommendation:
    """Candidates (one report's or several models') -> the decision per target, targets in first-seen order."""
    by_target: dict[str, list[Candidate]] = {}
    for c in cands:
        by_target.setdefault(c.target, []).append(c)
    choices = []
    for target, cs in by_target.items():
        ranking = sorted((c for c in cs if c.check.eligible), key=Candidate.sort_key)
        excluded = sorted((c for c in cs if not c.check.eligible), key=Candidate.sort_key)
        choices.append(TargetChoice(target, tuple(ranking), tuple(excluded)))
    return Recommendation(tuple(choices), bar)


def recommend(sections: Mapping[str, Any], *, bar: AccuracyBar = AccuracyBar()) -> Recommendation:
    """report.json's sections -> the recommendation per target."""
    return decide(candidates(sections, bar=bar), bar=bar)


def refresh_recommendation(out_dir) -> Recommendation | None:
    """Recompute DIR/report.json's `recommendation` from its current sections, with the accuracy bar it was made
    with, after a standalone `bench` or `validate` changed the latency or parity it was made from (a stale one would
    name a configuration the new numbers no longer favour). None when the report has none (only `run` makes one)."""
    from edgeport.report import load_report

    rep = load_report(out_dir)
    old = rep.get("recommendation")
    if not isinstance(old, dict):
        return None
    saved = old.get("bar") if isinstance(old.get("bar"), dict) else {}
    bar = AccuracyBar(min_agreement=saved.get("min_agreement"), min_accuracy=saved.get("min_accuracy"))
    decision = recommend(rep.data, bar=bar)
    if decision.to_json() != old:
        rep.apply(decision).save()
    return decision


__all__ = ["STATISTIC", "AccuracyBar", "Candidate", "Check", "Int8Slower", "Recommendation", "TargetChoice",
           "candidates", "check_of", "decide", "float_counterpart", "int8_slower", "missed_thresholds", "recommend",
           "refresh_recommendation"]
