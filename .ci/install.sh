#!/usr/bin/env bash
# Installs edgeport and its Python dependencies on a fresh machine (Python 3.11, pip, root or a venv).
# torch first, pinned to the local CPU wheel: any other torch request pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[${extras}]"
python -c "import edgeport, torch, tensorflow, ai_edge_litert, onnxruntime; print('edgeport', edgeport.__version__, 'torch', torch.__version__)" 2>/dev/null
