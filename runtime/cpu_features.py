"""What the host CPU offers ONNX Runtime's integer kernels, read from /proc/cpuinfo (host only, no numpy).

ORT's CPU provider runs QDQ INT8 models on MLAS integer GEMMs chosen at start-up from CPUID
(onnxruntime/core/mlas/lib/platform.cpp). On x86 the u8s8 kernels of AVX2 and AVX-512 *without* VNNI multiply
with VPMADDUBSW, which adds each pair of u8*s8 products into a *saturating* int16: two products of up to
255 * 127 overflow it, so results depend on the CPU. VNNI (VPDPBUSD), AMX, the SSE fallback and every ARM
kernel accumulate in 32 bits and are exact. ORT's graph optimiser turns int8 QDQ activations into uint8 on x86
(`QDQS8ToU8Transformer`), so an s8s8 QDQ file runs as u8s8 there.

    >>> feats = cpu_features()
    >>> int8_kernel_path(feats)          # e.g. Int8KernelPath.X86_AVX512_VNNI
    >>> int8_kernel_path(feats).exact    # False on AVX2-only / AVX-512-without-VNNI x86 CPUs

Caveat: under qemu-user, /proc/cpuinfo is the host's, while ORT sees the CPUID of qemu's `-cpu` model.
"""
from __future__ import annotations

import enum
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")

_ARCH_ALIASES = {"x86_64": "x86_64", "amd64": "x86_64", "i386": "x86", "i686": "x86", "x86": "x86",
                 "aarch64": "aarch64", "arm64": "aarch64"}


class Int8KernelPath(str, enum.Enum):
    """ORT's (MLAS) integer GEMM path for u8s8 QDQ models on a CPU; `exact` is False where int16 pair sums saturate."""

    X86_AMX = "x86-amx"
    X86_AVX512_VNNI = "x86-avx512-vnni"
    X86_AVX_VNNI = "x86-avx-vnni"
    X86_AVX512_SATURATING = "x86-avx512-u8s8-saturating"
    X86_AVX2_SATURATING = "x86-avx2-u8s8-saturating"
    X86_SSE = "x86-sse-widening"
    ARM_I8MM = "arm-i8mm"
    ARM_DOTPROD = "arm-dotprod"
    ARM_NEON = "arm-neon"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value

    @property
    def exact(self) -> bool:
        """True when u8*s8 products are summed without a saturating int16 step (UNKNOWN: False, not known)."""
        return self not in (Int8KernelPath.X86_AVX512_SATURATING, Int8KernelPath.X86_AVX2_SATURATING,
                            Int8KernelPath.UNKNOWN)


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU features that decide ORT's integer kernels. `source`: where they were read ("/proc/cpuinfo", a
    file name, "text", or "unavailable" on systems without /proc/cpuinfo, where every flag is False)."""

    arch: str
    model_name: str
    avx2: bool = False
    avx512f: bool = False
    avx512bw: bool = False
    avx512_vnni: bool = False
    avx_vnni: bool = False
    amx: bool = False  # amx_tile and amx_int8
    asimd: bool = False
    asimddp: bool = False  # ARM dot product (SDOT/UDOT)
    i8mm: bool = False  # ARM int8 matrix multiply (SMMLA/UMMLA)
    fp16: bool = False  # ARM half-precision arithmetic (fphp and asimdhp)
    source: str = "text"

    def to_dict(self) -> dict:
        """JSON-ready: every field plus the integer kernel path ORT takes on this CPU."""
        path = int8_kernel_path(self)
        return {**asdict(self), "int8_kernel_path": path.value, "int8_exact": path.exact}


def _normalise_arch(machine: str) -> str:
    m = machine.strip().lower()
    if m.startswith("armv") or m == "arm":
        return "arm"
    return _ARCH_ALIASES.get(m, m or "unknown")


def _fields(text: str) -> dict[str, str]:
    """The first value of each `key : value` line (the first processor's block describes them all)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key and key not in out:
            out[key] = value.strip()
    return out


def parse_cpuinfo(text: str, *, machine: str | None = None, source: str = "text") -> CpuFeatures:
    """CpuFeatures from the text of /proc/cpuinfo (x86 `flags`, ARM `Features`). `machine`: platform.machine() of
    the host; without it the architecture is inferred from the text (x86 has `flags`, ARM `Features`)."""
    f = _fields(text)
    if machine:
        arch = _normalise_arch(machine)
    elif "flags" in f:
        arch = "x86_64" if "lm" in f["flags"].split() else "x86"
    elif "features" in f:
        arch = "arm" if f.get("cpu architecture", "8").strip() in ("7", "6") else "aarch64"
    else:
        arch = "unknown"
    flags = set((f.get("flags", "") + " " + f.get("features", "")).split())
    if "model name" in f:
        model = f["model name"]
    elif "cpu part" in f:
        model = f"ARM implementer {f.get('cpu implementer', '?')} part {f['cpu part']}"
        if "model" in f or "hardware" in f:
            model += f" ({f.get('model') or f.get('hardware')})"
    else:
        model = f.get("hardware", f.get("model", "unknown"))
    return CpuFeatures(
        arch=arch, model_name=model,
        avx2="avx2" in flags, avx512f="avx512f" in flags, avx512bw="avx512bw" in flags,
        avx512_vnni="avx512_vnni" in flags, avx_vnni="avx_vnni" in flags,
        amx={"amx_tile", "amx_int8"} <= flags,
        asimd="asimd" in flags or "neon" in flags, asimddp="asimddp" in flags, i8mm="i8mm" in flags,
        fp16={"fphp", "asimdhp"} <= flags, source=source,
    )


def cpu_features(*, cpuinfo: str | Path = CPUINFO) -> CpuFeatures:
    """This host's CpuFeatures (flags all False, source "unavailable", where the cpuinfo file does not exist)."""
    path = Path(cpuinfo)
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return CpuFeatures(arch=_normalise_arch(platform.machine()), model_name=platform.processor() or "unknown",
                           source="unavailable")
    return parse_cpuinfo(text, machine=platform.machine(), source=str(path))


def int8_kernel_path(features: CpuFeatures) -> Int8KernelPath:
    """The u8s8 GEMM ORT's MLAS picks for these features, in the order platform.cpp tests them."""
    if features.arch in ("x86_64", "x86"):
        if features.source == "unavailable":
            return Int8KernelPath.UNKNOWN
        if not features.avx2:
            return Int8KernelPath.X86_SSE
        if features.amx:
            return Int8KernelPath.X86_AMX
        if features.avx512f and features.avx512bw:  # AVX-512 core replaces the AVX2 / AVX-VNNI kernel
            return Int8KernelPath.X86_AVX512_VNNI if features.avx512_vnni else Int8KernelPath.X86_AVX512_SATURATING
        return Int8KernelPath.X86_AVX_VNNI if features.avx_vnni else Int8KernelPath.X86_AVX2_SATURATING
    if features.arch in ("aarch64", "arm"):
        if features.source == "unavailable":
            return Int8KernelPath.UNKNOWN
        if features.i8mm:
            return Int8KernelPath.ARM_I8MM
        return Int8KernelPath.ARM_DOTPROD if features.asimddp else Int8KernelPath.ARM_NEON
    return Int8KernelPath.UNKNOWN
