"""Latency on x86 and ARM: one engine interface, honest statistics, local / ssh / adb targets, device parity.

    >>> from edgeport.runtime import bench, BenchSettings, parse_target
    >>> bench(out_dir="out/shufflenet", target=parse_target("ssh://pi@raspberrypi"), settings=BenchSettings(threads=(1, 4)))
"""
from edgeport.runtime.bench import BenchOutcome, BenchSettings, bench
from edgeport.runtime.engines import ENGINES, Engine, EngineKind, default_engine, open_engine, run, run_batches
from edgeport.runtime.layout import feature_maps_to_nchw, to_artifact_layout
from edgeport.runtime.noise import NOISE_FLOOR_ENGINES, float_noise_floor
from edgeport.runtime.results import LATENCY_FIELDS, latency_table
from edgeport.runtime.targets import TARGETS, TargetKind, TargetOptions, parse_target

__all__ = [
    "BenchOutcome", "BenchSettings", "bench", "ENGINES", "Engine", "EngineKind", "default_engine", "open_engine",
    "run", "run_batches", "NOISE_FLOOR_ENGINES", "float_noise_floor", "feature_maps_to_nchw", "to_artifact_layout",
    "LATENCY_FIELDS", "latency_table",
    "TARGETS", "TargetKind", "TargetOptions", "parse_target",
]
