"""ShuffleNetV2's four design guidelines (Ma et al., ECCV 2018, Sec. 2) re-measured on today's runtimes, through
edgeport's own path (torch -> ONNX -> edgeport's TFLite converter / ORT INT8 -> the interleaved round-robin
benchmark runner on any target).

- `nets`: the G1-G4 micro-networks (`MicroNet`, `micro_networks`), equal FLOPs within a guideline by design;
- `analysis`: building each network's artifacts (`build_artifacts`, calibrated on `photo_crops` of real photographs)
  and turning one bench job's timings into ratios, outcomes and verdicts (`analyse`);
- `render`: console tables, docs/guidelines.md and the plots;
- `command`: `edgeport guidelines` (`add_guidelines_parser`, `cmd_guidelines`).

Comparisons are ratios from a single interleaved run (of each configuration's fastest round by default, or of its
median with --stat p50). Importing the package is cheap: torch, onnx and matplotlib load when they are used.
"""
from edgeport.guidelines.analysis import (COLUMNS, NOISE, NUM_CALIBRATION, STATS, Built, analyse, build_artifacts,
                                          check_equal_flops, classify, columns_for, photo_crops, verdict)
from edgeport.guidelines.command import add_guidelines_parser, cmd_guidelines, command_line
from edgeport.guidelines.nets import (CLAIMS, DEFAULT_SIZE, FLOPS_TOLERANCE, GUIDELINES, PAPER_NOTE, TITLES, MicroNet,
                                      micro_networks)
from edgeport.guidelines.render import NOTES_BEGIN, NOTES_END, machine_lines, plot, print_tables, write_markdown

__all__ = [
    "CLAIMS", "COLUMNS", "DEFAULT_SIZE", "FLOPS_TOLERANCE", "GUIDELINES", "NOISE", "NOTES_BEGIN", "NOTES_END",
    "NUM_CALIBRATION", "PAPER_NOTE", "STATS", "TITLES", "Built", "MicroNet", "add_guidelines_parser", "analyse",
    "build_artifacts", "check_equal_flops", "classify", "cmd_guidelines", "columns_for", "command_line",
    "machine_lines", "micro_networks", "photo_crops", "plot", "print_tables", "verdict", "write_markdown",
]
