"""`edgeport guidelines`: ShuffleNetV2's four design guidelines (Ma et al., ECCV 2018, Sec. 2) re-measured on
today's runtimes, through edgeport's own path (torch -> ONNX -> edgeport's TFLite converter / ORT INT8 -> the
interleaved round-robin benchmark runner on any target).

The micro-networks follow the paper's validation experiments (seeds 001/003; channel counts of the paper's "x1"
setting):

- G1 "equal channel width minimizes memory access cost": 10 blocks of two 1x1 convs (c1 -> c2 -> c1) with
  c1:c2 = 1:1, 1:2, 1:6, 1:12 at (almost) the same FLOPs, hw*c1*c2 = hw*128^2 per conv.
- G2 "excessive group convolution increases MAC": 10 stacked 1x1 group convs, g = 1, 2, 4, 8 with the channel
  count raised so hw*c^2/g stays hw*128^2.
- G3 "network fragmentation reduces the degree of parallelism": blocks of 1, 2 or 4 1x1 convs in series or in
  parallel (branches concatenated), widths chosen so every block has the 1-fragment block's FLOPs; 10 blocks.
- G4 "element-wise operations are non-negligible": 10 ResNet bottlenecks (1x1 -> 3x3 -> 1x1, width 128, inner 32)
  with and without the ReLUs and the shortcut add.

Every network is exported with `export_onnx`, converted with `edgeport.export.tflite.convert` (fp32, and full INT8
calibrated on deterministic crops of real photographs: the bundled skimage photos, stacked to the input's channel
count), quantized for ORT with `quantize_onnx_int8`, and all artifacts of all requested guidelines are timed in ONE
`edgeport.runtime.bench` job: every round runs every configuration once, in a rotated order, so drift and other load
hit all of them alike. Comparisons are ratios from that single run (of each configuration's fastest round by
default, or of its median with --stat p50).

    edgeport guidelines --out out/guidelines                      # G1-G4, XNNPACK fp32+INT8, ORT fp32+INT8
    edgeport guidelines --guideline G2 --engine tflite --precision int8 --runs 20
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

GUIDELINES = ("G1", "G2", "G3", "G4")
DEFAULT_SIZE = 28  # feature-map side: a ShuffleNet stage-2/3 sized map; keeps a full run to a few minutes
NUM_CALIBRATION = 16
FLOPS_TOLERANCE = 0.02  # the variants of one guideline have the baseline's MACs within 2 %
# A time ratio within 1 +- NOISE of 1.0 is "no measurable effect" (run-to-run spread of one interleaved run on a
# shared 2-core machine is a few per cent; see docs/guidelines.md).
NOISE = 0.05

TITLES = {
    "G1": "G1: equal channel width minimizes memory access cost",
    "G2": "G2: excessive group convolution increases memory access cost",
    "G3": "G3: network fragmentation reduces the degree of parallelism",
    "G4": "G4: element-wise operations are non-negligible",
}
# What the paper/seeds claim, in one line each (seed 003 = the paper's Sec. 2 in Chinese; seed 001 = a reading of it).
CLAIMS = {
    "G1": "c1:c2 = 1:1 is fastest; the further from 1:1, the slower (ARM 1:12 ~ 1.3x the 1:1 time)",
    "G2": "more groups at equal FLOPs are slower: g=8 ~ 2-4x the g=1 time on GPU, ~ 30 % fewer images/s on ARM",
    "G3": "fragmented blocks are slower at equal FLOPs (GPU 4-fragment up to ~ 3.5x); on ARM parallel "
          "fragments cost 15-20 %, series ones ~ 5 %",
    "G4": "removing ReLU and the shortcut gives ~ 20 % speed-up on GPU and ARM (recalled ARM table: 0.85x the time)",
}


# ---- the micro-networks ------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _nn():
    """The torch modules of the micro-networks (built on first use: importing this module stays cheap for the CLI)."""
    import types

    import torch
    import torch.nn as nn

    def _init(conv: nn.Conv2d, *, relu: bool) -> nn.Conv2d:
        """He init for ReLU layers, LeCun for linear ones: activations keep a unit-ish scale through 10-40 layers, so
        INT8 calibration sees sensible ranges. No bias (a bias would be folded by the converters anyway)."""
        fan_in = conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]
        with torch.no_grad():
            conv.weight.normal_(0.0, math.sqrt((2.0 if relu else 1.0) / fan_in))
        return conv


    def _conv(cin: int, cout: int, *, k: int = 1, groups: int = 1, relu: bool = True) -> nn.Conv2d:
        return _init(nn.Conv2d(cin, cout, k, 1, k // 2, groups=groups, bias=False), relu=relu)


    class ConvReLUStack(nn.Sequential):
        """conv(+ReLU) layers in series: [(cin, cout, groups), ...]."""

        def __init__(self, layers: list[tuple[int, int, int]], *, relu: bool = True):
            mods: list[nn.Module] = []
            for cin, cout, g in layers:
                mods.append(_conv(cin, cout, groups=g, relu=relu))
                if relu:
                    mods.append(nn.ReLU())
            super().__init__(*mods)


    class ParallelFragments(nn.Module):
        """`n` 1x1 conv+ReLU branches on the same input, each c -> c/n, concatenated back to c channels."""

        def __init__(self, c: int, n: int):
            super().__init__()
            if c % n:
                raise ValueError(f"{c} channels do not split into {n} branches")
            self.branches = nn.ModuleList(ConvReLUStack([(c, c // n, 1)]) for _ in range(n))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([b(x) for b in self.branches], dim=1)


    class Bottleneck(nn.Module):
        """ResNet bottleneck c -> m (1x1) -> m (3x3) -> c (1x1), optionally without its ReLUs and/or its shortcut."""

        def __init__(self, c: int, m: int, *, relu: bool, shortcut: bool):
            super().__init__()
            self.relu, self.shortcut = relu, shortcut
            self.conv1 = _conv(c, m, relu=relu)
            self.conv2 = _conv(m, m, k=3, relu=relu)
            # the last conv feeds an add: scale it down so 10 residual adds do not blow the range up
            self.conv3 = _conv(m, c, relu=False)
            if shortcut:
                with torch.no_grad():
                    self.conv3.weight.mul_(0.5)
            self.act = nn.ReLU() if relu else nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.act(self.conv1(x))
            y = self.act(self.conv2(y))
            y = self.conv3(y)
            if self.shortcut:
                y = y + x
            return self.act(y)

    return types.SimpleNamespace(torch=torch, nn=nn, conv=_conv, ConvReLUStack=ConvReLUStack,
                                 ParallelFragments=ParallelFragments, Bottleneck=Bottleneck)


@dataclass(frozen=True)
class MicroNet:
    """One variant of one guideline's experiment. `baseline`: the variant the others are compared with.
    `claim`: "slower" / "faster" = what the paper says this variant is relative to the baseline."""

    guideline: str
    key: str
    label: str
    build: Callable[[], "torch.nn.Module"]
    in_channels: int
    convs: tuple[tuple[int, int, int, int], ...]  # (cin, cout, groups, k) of every conv, for memory-access theory
    baseline: bool = False
    claim: str | None = None
    paper_arm: float | None = None  # the paper's ARM time ratio vs the baseline (recalled, see PAPER_NOTE)
    paper_gpu: float | None = None

    def design_macs(self, size: int) -> int:
        return sum(size * size * cin * cout // g * k * k for cin, cout, g, k in self.convs)

    def memory_access(self, size: int) -> int:
        """The paper's memory access cost: per conv hw*(c_in + c_out) + weights (values, not bytes)."""
        return sum(size * size * (cin + cout) + cin * cout // g * k * k for cin, cout, g, k in self.convs)


PAPER_NOTE = ("paper ratios are the paper's Tables 1-4 (x1 setting) converted from images/s (ARM, Snapdragon 810, 1 "
              "thread) and batches/s (GPU, 1080Ti) to time relative to the baseline; the tables are images in the "
              "seeds, these values were recalled (R) and not re-checked against the PDF")


def _sp(a: float, b: float) -> float:  # throughput ratio -> time ratio
    return round(a / b, 3)


def _g1(scale: float) -> list[MicroNet]:
    # paper: (128,128) (90,180) (52,312) (36,432); for 1:12 we use (37,444): 0.3 % off the 1:1 FLOPs instead of 5 %
    base = [(1, 128, 128, 76.2, 1480), (2, 90, 180, 72.9, 1296), (6, 52, 312, 69.1, 876), (12, 37, 444, 57.6, 748)]
    out = []
    for ratio, c1, c2, arm, gpu in base:
        c1, c2 = max(1, round(c1 * scale)), max(1, round(c2 * scale))
        convs = tuple(x for _ in range(10) for x in ((c1, c2, 1, 1), (c2, c1, 1, 1)))
        out.append(MicroNet(
            "G1", f"g1_1to{ratio}", f"1:{ratio} ({c1},{c2})",
            (lambda c1=c1, c2=c2: _nn().ConvReLUStack([(c1, c2, 1), (c2, c1, 1)] * 10)), c1, convs,
            baseline=ratio == 1, claim=None if ratio == 1 else "slower",
            paper_arm=_sp(76.2, arm), paper_gpu=_sp(1480, gpu)))
    return out


def _g2(scale: float) -> list[MicroNet]:
    base = [(1, 128, 40.0, 2451), (2, 180, 35.0, 1725), (4, 256, 32.9, 1026), (8, 360, 27.8, 634)]
    out = []
    for g, c, arm, gpu in base:
        c = max(g, int(round(c * scale / g)) * g)
        convs = tuple((c, c, g, 1) for _ in range(10))
        out.append(MicroNet(
            "G2", f"g2_g{g}", f"g={g} (c={c})", (lambda c=c, g=g: _nn().ConvReLUStack([(c, c, g)] * 10)), c, convs,
            baseline=g == 1, claim=None if g == 1 else "slower", paper_arm=_sp(40.0, arm), paper_gpu=_sp(2451, gpu)))
    return out


def _series_width(c: int, n: int) -> int:
    """Inner width m of an n-conv series block c -> m -> ... -> m -> c with the FLOPs of one c -> c conv:
    2cm + (n-2)m^2 = c^2."""
    if n == 2:
        return c // 2
    a, b = n - 2, 2 * c
    return int(round((-b + math.sqrt(b * b + 4 * a * c * c)) / (2 * a)))


def _g3(scale: float) -> list[MicroNet]:
    c = max(4, int(round(128 * scale / 4)) * 4)
    out = [MicroNet("G3", "g3_1frag", "1-fragment", lambda: _nn().ConvReLUStack([(c, c, 1)] * 10), c,
                    tuple((c, c, 1, 1) for _ in range(10)), baseline=True, paper_arm=1.0, paper_gpu=1.0)]
    for n, arm, gpu in ((2, 38.6, 1790), (4, 38.4, 752)):
        m = _series_width(c, n)
        layers = [(c, m, 1)] + [(m, m, 1)] * (n - 2) + [(m, c, 1)]
        out.append(MicroNet("G3", f"g3_{n}series", f"{n}-fragment-series (m={m})",
                            (lambda layers=layers: _nn().ConvReLUStack(layers * 10)), c,
                            tuple((a, b, g, 1) for _ in range(10) for a, b, g in layers),
                            claim="slower", paper_arm=_sp(40.2, arm), paper_gpu=_sp(2446, gpu)))
    for n, arm, gpu in ((2, 33.4, 1537), (4, 35.0, 691)):
        out.append(MicroNet("G3", f"g3_{n}parallel", f"{n}-fragment-parallel ({n}x{c // n})",
                            (lambda n=n: _nn().nn.Sequential(*[_nn().ParallelFragments(c, n) for _ in range(10)])), c,
                            tuple((c, c // n, 1, 1) for _ in range(10 * n)),
                            claim="slower", paper_arm=_sp(40.2, arm), paper_gpu=_sp(2446, gpu)))
    return out


def _g4(scale: float) -> list[MicroNet]:
    m = max(1, int(round(32 * scale)))
    c = 4 * m
    convs = tuple(x for _ in range(10) for x in ((c, m, 1, 1), (m, m, 1, 3), (m, c, 1, 1)))
    rows = [(True, True, 56.7, 2427), (True, False, 61.9, 2647), (False, True, 57.3, 2672), (False, False, 66.3, 2842)]
    out = []
    for relu, sc, arm, gpu in rows:
        key = f"g4_{'relu' if relu else 'norelu'}_{'sc' if sc else 'nosc'}"
        label = f"ReLU {'yes' if relu else 'no'}, shortcut {'yes' if sc else 'no'}"
        out.append(MicroNet(
            "G4", key, label,
            (lambda relu=relu, sc=sc: _nn().nn.Sequential(*[_nn().Bottleneck(c, m, relu=relu, shortcut=sc) for _ in range(10)])),
            c, convs, baseline=relu and sc, claim=None if relu and sc else "faster",
            paper_arm=_sp(56.7, arm), paper_gpu=_sp(2427, gpu)))
    return out


def micro_networks(guidelines=GUIDELINES, *, scale: float = 1.0) -> list[MicroNet]:
    """The variants of the requested guidelines, baseline first within each guideline."""
    makers = {"G1": _g1, "G2": _g2, "G3": _g3, "G4": _g4}
    out = []
    for g in guidelines:
        out.extend(makers[g](scale))
    return out


# ---- calibration: real-photo crops stacked to the input's channel count -------------------------------------------

def photo_crops(n: int, *, channels: int, size: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """n deterministic samples {"input": float32 (1, channels, size, size)}: each is ceil(channels/3) random resized
    crops of the bundled calibration photographs (ImageNet-normalised RGB), stacked on the channel axis."""
    from edgeport.calibration.photos import load_photo, photos_for
    from edgeport.calibration.preprocess import random_resized_crop

    names = photos_for("calibration")
    mean = np.asarray((0.485, 0.456, 0.406), np.float32)
    std = np.asarray((0.229, 0.224, 0.225), np.float32)
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, 8, i])
        parts = []
        for j in range(-(-channels // 3)):
            img = random_resized_crop(load_photo(names[(i + j) % len(names)]), rng=rng, size_hw=(size, size))
            parts.append(((img.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1))
        out.append({"input": np.ascontiguousarray(np.concatenate(parts)[:channels][None], dtype=np.float32)})
    return out


# ---- building the artifacts -------------------------------------------------------------------------------------

@dataclass
class Built:
    net: MicroNet
    macs: int  # counted from the exported ONNX graph
    files: dict[str, str] = field(default_factory=dict)  # column -> artifact file name
    seconds: float = 0.0


COLUMNS = {  # column -> (engine, precision, display name)
    "tflite_fp32": ("tflite", "fp32", "XNNPACK fp32"),
    "tflite_int8": ("tflite", "int8", "XNNPACK INT8"),
    "ort_fp32": ("onnxruntime", "fp32", "ORT fp32"),
    "ort_int8": ("onnxruntime", "int8", "ORT INT8"),
}


def columns_for(engines, precisions) -> list[str]:
    return [k for k, (e, p, _) in COLUMNS.items() if e in engines and p in precisions]


def build_artifacts(net: MicroNet, *, size: int, art_dir: Path, columns: list[str], seed: int = 0) -> Built:
    """Export `net` to ONNX, convert/quantize it for every column; files are named `<key>_<column>.<ext>`."""
    from edgeport.export.analysis import count_macs
    from edgeport.export.onnx_export import export_onnx
    from edgeport.export.ort_int8 import quantize_onnx_int8
    from edgeport.export.tflite.convert import convert

    t0 = time.perf_counter()
    _nn().torch.manual_seed(seed)
    model = net.build().eval()
    onnx_path = art_dir / f"{net.key}.onnx"
    export_onnx(model, input_shape=(net.in_channels, size, size), path=onnx_path)
    built = Built(net, count_macs(onnx_path))
    calib = None
    if any(COLUMNS[c][1] == "int8" for c in columns):
        calib = photo_crops(NUM_CALIBRATION, channels=net.in_channels, size=size, seed=seed)
    precs = [COLUMNS[c][1] for c in columns if COLUMNS[c][0] == "tflite"]
    if precs:
        with tempfile.TemporaryDirectory(dir=art_dir) as tmp:
            res = convert(onnx_path, out_dir=tmp, precisions=precs, calibration=calib)
            for p in precs:
                name = f"{net.key}_tflite_{p}.tflite"
                shutil.move(str(res.artifacts[p]), art_dir / name)
                built.files[f"tflite_{p}"] = name
    if "ort_fp32" in columns:
        built.files["ort_fp32"] = onnx_path.name
    if "ort_int8" in columns:
        name = f"{net.key}_ort_int8.onnx"
        quantize_onnx_int8(onnx_path=onnx_path, out_path=art_dir / name, calibration=calib)
        built.files["ort_int8"] = name
    built.seconds = time.perf_counter() - t0
    return built


# ---- analysis ---------------------------------------------------------------------------------------------------

def classify(ratio: float | None, claim: str) -> str:
    """One comparison: 'holds' (the variant is slower/faster as claimed by more than NOISE), 'no effect' (within
    NOISE) or 'reversed'."""
    if ratio is None:
        return "n/a"
    if claim == "slower":
        return "holds" if ratio >= 1 + NOISE else ("reversed" if ratio <= 1 - NOISE else "no effect")
    return "holds" if ratio <= 1 - NOISE else ("reversed" if ratio >= 1 + NOISE else "no effect")


def verdict(outcomes: list[str]) -> str:
    """Summary of a guideline's comparisons on one runtime."""
    outcomes = [o for o in outcomes if o != "n/a"]
    if not outcomes:
        return "n/a"
    n, held, rev = len(outcomes), outcomes.count("holds"), outcomes.count("reversed")
    if held == n:
        return f"HOLDS ({held}/{n})"
    if held == 0 and rev == 0:
        return f"DOES NOT HOLD (0/{n}, no measurable effect)"
    if held == 0:
        return f"DOES NOT HOLD (0/{n}, {rev} reversed)"
    return f"PARTLY ({held}/{n}" + (f", {rev} reversed)" if rev else ")")


STATS = {"min": "min_ms", "p50": "p50_ms"}


def analyse(built: list[Built], entries: list[dict], columns: list[str], *, stat: str = "min") -> dict:
    """{guideline: {"rows": [...], "verdicts": {column: str}}} from bench entries. `stat`: which per-configuration
    statistic the ratios and verdicts use ("min": the least-disturbed round, "p50": the median round); the other
    one's ratio is kept as `ratio_<other>`."""
    p50, tmin = {}, {}
    for e in entries:
        p50[(e["artifact"], e["engine"])] = e["p50_ms"]
        tmin[(e["artifact"], e["engine"])] = e["min_ms"]
    chosen, other_name = (tmin, "p50") if stat == "min" else (p50, "min")
    other = p50 if stat == "min" else tmin
    out: dict[str, dict] = {}
    for g in dict.fromkeys(b.net.guideline for b in built):
        rows_b = [b for b in built if b.net.guideline == g]
        base = next(b for b in rows_b if b.net.baseline)
        rows, per_col = [], {c: [] for c in columns}
        for b in rows_b:
            row = {"key": b.net.key, "label": b.net.label, "baseline": b.net.baseline, "claim": b.net.claim,
                   "macs": b.macs, "macs_vs_baseline": b.macs / base.macs, "paper_arm": b.net.paper_arm,
                   "paper_gpu": b.net.paper_gpu, "ms": {}, "ratio": {}, f"ratio_{other_name}": {}, "outcome": {}}
            for c in columns:
                eng = COLUMNS[c][0]
                t = chosen.get((f"{b.net.key}_{c}", eng))
                tb = chosen.get((f"{base.net.key}_{c}", eng))
                row["ms"][c] = t
                row["ratio"][c] = None if t is None or not tb else t / tb
                to, tbo = other.get((f"{b.net.key}_{c}", eng)), other.get((f"{base.net.key}_{c}", eng))
                row[f"ratio_{other_name}"][c] = None if to is None or not tbo else to / tbo
                if b.net.claim:
                    row["outcome"][c] = classify(row["ratio"][c], b.net.claim)
                    per_col[c].append(row["outcome"][c])
            rows.append(row)
        out[g] = {"title": TITLES[g], "claim": CLAIMS[g], "rows": rows, "stat": stat, "other_stat": other_name,
                  "verdicts": {c: verdict(v) for c, v in per_col.items()}}
    return out


# ---- output -----------------------------------------------------------------------------------------------------

def _fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}"


def print_tables(con, results: dict, columns: list[str]) -> None:
    from rich.table import Table

    for g, res in results.items():
        table = Table(title=f"{res['title']}\npaper: {res['claim']}", title_justify="left")
        table.add_column("variant")
        table.add_column("MMACs", justify="right")
        for c in columns:
            table.add_column(f"{COLUMNS[c][2]} {res['stat']} ms", justify="right")
            table.add_column("ratio", justify="right")
        table.add_column("paper ARM (R)", justify="right")
        table.add_column("paper GPU (R)", justify="right")
        for row in res["rows"]:
            cells = [row["label"] + (" (base)" if row["baseline"] else ""), f"{row['macs'] / 1e6:.1f}"]
            for c in columns:
                t = row["ms"][c]
                ratio = _fmt_ratio(row["ratio"][c])
                o = row["outcome"].get(c)
                mark = {"holds": "[green]", "reversed": "[red]", "no effect": "[yellow]"}.get(o, "")
                cells += ["-" if t is None else f"{t:.2f}", f"{mark}{ratio}" + ("[/]" if mark else "")]
            cells += [_fmt_ratio(row["paper_arm"]), _fmt_ratio(row["paper_gpu"])]
            table.add_row(*cells)
        con.print(table)
        for c in columns:
            con.print(f"  {g} on {COLUMNS[c][2]}: {res['verdicts'][c]}")
        con.print("")


def machine_lines(machine: dict) -> list[str]:
    from importlib import metadata

    vers = {}
    for dist in ("edgeport", "torch", "onnx", "onnxruntime", "onnxsim", "tensorflow-cpu", "ai-edge-litert", "numpy"):
        try:
            vers[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    lines = [
        f"- CPU: {machine.get('cpu_model', '?')} ({machine.get('arch', platform.machine())}), "
        f"{machine.get('cores', '?')} logical cores, affinity {machine.get('affinity', '?')}; "
        f"{machine.get('system', platform.platform())}; Python {machine.get('python', platform.python_version())}",
        "- runtimes that ran the timings: " + ", ".join(f"{k}: {v}" for k, v in (machine.get("runtimes") or {}).items()),
        "- packages: " + ", ".join(f"{k} {v}" for k, v in vers.items()),
    ]
    return lines


NOTES_BEGIN = "<!-- notes: kept when the report is regenerated -->"
NOTES_END = "<!-- end notes -->"


def write_markdown(path: Path, *, results: dict, columns: list[str], settings: dict, machine: dict,
                   plots: dict[str, str]) -> None:
    old_notes = ""
    if path.exists():
        text = path.read_text()
        if NOTES_BEGIN in text and NOTES_END in text:
            old_notes = text[text.index(NOTES_BEGIN):text.index(NOTES_END) + len(NOTES_END)]
    L = ["# ShuffleNetV2's guidelines G1-G4 on today's runtimes", "",
         f"Generated by `{settings['command']}` on {settings['date']} (one run; every number below comes from one "
         "interleaved benchmark job: each round runs every configuration once, in a rotated order).", "",
         "## Machine", "", *machine_lines(machine), "",
         "## Settings", "",
         f"- target `{settings['target']}`, {settings['threads']} thread(s), feature maps "
         f"{settings['size']}x{settings['size']}, channel scale x{settings['scale']:g} (the paper's \"x1\" channels), "
         f"{settings['runs']} timed rounds after {settings['warmup']} warm-up rounds; latency = the {settings['stat']} "
         "of a configuration's rounds (min = the least-disturbed round: on a machine shared with other jobs the "
         "median is inflated by preemption; the other statistic's ratio is shown next to it)",
         "- path: torch -> `export_onnx` (dynamo, onnxsim) -> edgeport's TFLite converter (fp32; full INT8 "
         f"calibrated on {NUM_CALIBRATION} deterministic crops of the bundled skimage photographs) and ORT static INT8 "
         "(QDQ, same samples); XNNPACK = the TFLite interpreter's default delegate; ORT = CPU provider, all graph "
         "optimizations",
         f"- ratio = this variant's time / the baseline's time on the same runtime. A ratio within 1 ± {NOISE:.2f} is "
         "\"no measurable effect\"; `holds` = the variant is slower (G1-G3) or faster (G4) than the baseline by "
         "more than that, as the paper says; `reversed` = the opposite by more than that",
         f"- {PAPER_NOTE}", ""]
    L += ["## Verdicts", "", "| guideline | " + " | ".join(COLUMNS[c][2] for c in columns) + " |",
          "|---|" + "---|" * len(columns)]
    for g, res in results.items():
        L.append(f"| {g} | " + " | ".join(res["verdicts"][c] for c in columns) + " |")
    L.append("")
    for g, res in results.items():
        L += [f"## {res['title']}", "", f"Paper / seeds: {res['claim']}.", "",
              "| variant | MMACs | " + " | ".join(f"{COLUMNS[c][2]} {res['stat']} ms | ratio | ratio of "
                                                  f"{res['other_stat']}" for c in columns)
              + " | paper ARM (R) | paper GPU (R) |",
              "|---|---:|" + "---:|---:|---:|" * len(columns) + "---:|---:|"]
        for row in res["rows"]:
            cells = [row["label"] + (" (baseline)" if row["baseline"] else ""), f"{row['macs'] / 1e6:.1f}"]
            for c in columns:
                t, r, o = row["ms"][c], row["ratio"][c], row["outcome"].get(c)
                cells += ["-" if t is None else f"{t:.3f}",
                          _fmt_ratio(r) + (f" ({o})" if o and o != "n/a" else ""),
                          _fmt_ratio(row[f"ratio_{res['other_stat']}"][c])]
            cells += [_fmt_ratio(row["paper_arm"]), _fmt_ratio(row["paper_gpu"])]
            L.append("| " + " | ".join(cells) + " |")
        L += ["", "Verdict: " + "; ".join(f"{COLUMNS[c][2]} **{res['verdicts'][c]}**" for c in columns) + ".", ""]
        if g in plots:
            L += [f"![{g}]({plots[g]})", ""]
    L += ["## Notes", "", old_notes or f"{NOTES_BEGIN}\n(no notes yet)\n{NOTES_END}", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    from edgeport.report import atomic_write_text

    atomic_write_text(path, "\n".join(L))


def plot(results: dict, columns: list[str], img_dir: Path, rel_prefix: str) -> dict[str, str]:
    """One bar chart per guideline: time ratio vs baseline per runtime, plus the paper's (recalled) ARM/GPU ratios."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for g, res in results.items():
        rows = res["rows"]
        series = [(COLUMNS[c][2], [r["ratio"][c] for r in rows], None) for c in columns]
        series += [("paper ARM (R)", [r["paper_arm"] for r in rows], "//"),
                   ("paper GPU (R)", [r["paper_gpu"] for r in rows], "..")]
        fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(rows) + 2), 3.6))
        width = 0.8 / len(series)
        x = np.arange(len(rows))
        for i, (name, vals, hatch) in enumerate(series):
            v = [np.nan if a is None else a for a in vals]
            ax.bar(x + (i - (len(series) - 1) / 2) * width, v, width, label=name, hatch=hatch,
                   color=None if hatch is None else "white", edgecolor="black" if hatch else None, linewidth=0.6)
        top = max((a for _, vals, _ in series for a in vals if a is not None), default=1.0)
        if top > 3:
            from matplotlib.ticker import FormatStrFormatter

            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhspan(1 - NOISE, 1 + NOISE, color="grey", alpha=0.15, linewidth=0)
        ax.set_xticks(x, [r["label"] for r in rows], fontsize=8)
        ax.set_ylabel("time / baseline time")
        ax.set_title(res["title"], fontsize=10)
        ax.legend(fontsize=7, ncol=3)
        fig.tight_layout()
        name = f"guidelines_{g.lower()}.png"
        fig.savefig(img_dir / name, dpi=110)
        plt.close(fig)
        out[g] = f"{rel_prefix}{name}"
    return out


# ---- the command ------------------------------------------------------------------------------------------------

def _list(text: str, allowed, what: str) -> tuple[str, ...]:
    vals = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [v for v in vals if v not in allowed]
    if bad or not vals:
        raise argparse.ArgumentTypeError(f"{text!r}: {what} must be a comma list of {', '.join(allowed)}")
    return vals


def add_guidelines_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("guidelines", help="re-measure ShuffleNetV2's design guidelines G1-G4 on a target")
    p.add_argument("--target", default="local", help="local | ssh://user@host[:port] | adb://SERIAL")
    p.add_argument("--engine", default="tflite,onnxruntime",
                   type=lambda t: _list(t, ("tflite", "onnxruntime"), "--engine"), help="tflite,onnxruntime")
    p.add_argument("--precision", default="fp32,int8", type=lambda t: _list(t, ("fp32", "int8"), "--precision"),
                   help="fp32,int8")
    p.add_argument("--guideline", default="G1,G2,G3,G4",
                   type=lambda t: _list(t.upper(), GUIDELINES, "--guideline"), help="comma list of G1,G2,G3,G4")
    p.add_argument("--stat", choices=sorted(STATS), default="min",
                   help="per-configuration statistic for ratios and verdicts: min (least-disturbed round; default, "
                        "robust on a shared machine) or p50")
    p.add_argument("--runs", type=int, default=100, help="timed rounds (each runs every configuration once)")
    p.add_argument("--warmup", type=int, default=5, help="untimed rounds first")
    p.add_argument("--threads", type=int, default=1, help="interpreter threads (the paper's ARM runs used 1)")
    p.add_argument("--size", type=int, default=DEFAULT_SIZE, help="feature-map height = width")
    p.add_argument("--scale", type=float, default=1.0, help="channel multiplier (the paper's x1, x2, x4)")
    p.add_argument("--out", default="guidelines-report", help="folder for guidelines.md, guidelines.json, img/")
    p.add_argument("--artifacts", default=None, metavar="DIR",
                   help="keep the ONNX/TFLite files in DIR (default: a temporary folder, removed)")
    p.add_argument("--timeout", type=float, default=1800.0, metavar="S", help="limit for the timing job")
    p.add_argument("--ssh-config", default=None, help="ssh -F file for ssh:// targets (default: ~/.ssh/config)")
    p.add_argument("--device-python", default=None, help="Python on the device (default: python3 / python)")
    p.set_defaults(func=cmd_guidelines)
    return p


def cmd_guidelines(args, con=None) -> int:
    from edgeport._native import captured_native_output
    from edgeport.errors import EdgeportError
    from edgeport.report import Report, atomic_write_text, prepare_out_dir
    from edgeport.runtime.bench import BenchSettings, bench
    from edgeport.runtime.targets import TargetOptions, parse_target

    if con is None:
        from edgeport.cli import Console

        con = Console()
    if args.runs < 1 or args.warmup < 0 or args.threads < 1 or args.size < 4 or args.scale <= 0:
        raise EdgeportError("--runs, --threads must be >= 1, --warmup >= 0, --size >= 4, --scale > 0")
    target = parse_target(args.target)
    columns = columns_for(args.engine, args.precision)
    out = prepare_out_dir(args.out)
    nets = micro_networks(args.guideline, scale=args.scale)
    tmp = None
    if args.artifacts:
        art_dir = prepare_out_dir(args.artifacts)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="edgeport-guidelines-")
        art_dir = Path(tmp.name)
    try:
        built = []
        t_start = time.perf_counter()
        for i, net in enumerate(nets, 1):
            with captured_native_output():
                b = build_artifacts(net, size=args.size, art_dir=art_dir, columns=columns)
            built.append(b)
            con.print(f"[{i}/{len(nets)}] {net.guideline} {net.label}: {b.macs / 1e6:.1f} MMACs, "
                      f"{len(b.files)} artifacts in {b.seconds:.1f} s")
        for g in args.guideline:
            group = [b for b in built if b.net.guideline == g]
            base = next(b for b in group if b.net.baseline).macs
            off = [f"{b.net.label} {b.macs / base - 1:+.1%}" for b in group if abs(b.macs / base - 1) > FLOPS_TOLERANCE]
            if off:
                raise EdgeportError(f"{g}: variants off the baseline FLOPs by more than {FLOPS_TOLERANCE:.0%}: {off}")
        report = Report.load(art_dir)
        report.set("artifacts", {f"{b.net.key}_{c}": f for b in built for c, f in b.files.items()})
        report.save()
        engines = tuple(dict.fromkeys(COLUMNS[c][0] for c in columns))
        n_cfg = sum(len(b.files) for b in built)
        con.print(f"timing {n_cfg} configurations on {target.url}, interleaved: {args.warmup} warm-up + {args.runs} "
                  f"timed rounds, {args.threads} thread(s) ...")
        t0 = time.perf_counter()
        settings = BenchSettings(engines=engines, threads=(args.threads,), warmup=args.warmup, runs=args.runs,
                                 parity=target.url != "local", rss=False)
        status = con.rich.status("timing (one job; no per-round progress from the runner)") \
            if not con.quiet and not con.json_mode else None
        if status:
            status.start()
        try:
            outcome = bench(out_dir=art_dir, target=target, settings=settings,
                            options=TargetOptions(timeout_s=args.timeout, ssh_config=args.ssh_config,
                                                  python=args.device_python), save=False)
        finally:
            if status:
                status.stop()
        con.print(f"timed in {time.perf_counter() - t0:.0f} s (total {time.perf_counter() - t_start:.0f} s)\n")
        bad_parity = [p for p in outcome.device_parity if not p["ok"]]
        results = analyse(built, outcome.entries, columns, stat=args.stat)
        print_tables(con, results, columns)
        settings_doc = {"command": "edgeport guidelines " + " ".join(_argv_tail()), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                        "target": target.url, "threads": args.threads, "size": args.size, "scale": args.scale,
                        "runs": args.runs, "warmup": args.warmup, "columns": columns, "stat": args.stat,
                        "guidelines": list(args.guideline)}
        plots = plot(results, columns, out / "img", "img/")
        write_markdown(out / "guidelines.md", results=results, columns=columns, settings=settings_doc,
                       machine=outcome.machine, plots=plots)
        atomic_write_text(out / "guidelines.json", json.dumps(
            {"settings": settings_doc, "machine": outcome.machine, "results": results, "latency": outcome.entries,
             "device_parity": outcome.device_parity, "noise_band": NOISE, "paper_note": PAPER_NOTE},
            indent=1, default=str) + "\n")
        con.print(f"wrote {out / 'guidelines.md'}, {out / 'guidelines.json'}, {len(plots)} plots in {out / 'img'}")
        if getattr(con, "json_mode", False):
            con.emit_json({"results": results, "machine": outcome.machine})
        if bad_parity:
            con.print(f"[red]{len(bad_parity)} artifacts disagree between {target.url} and this machine[/red]")
            return 1
        return 0
    finally:
        if tmp is not None:
            tmp.cleanup()


def _argv_tail() -> list[str]:
    argv = sys.argv[1:]
    return argv[argv.index("guidelines") + 1:] if "guidelines" in argv else []
