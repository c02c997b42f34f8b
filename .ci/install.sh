#!/usr/bin/env bash
# Installs edgeport and its Python dependencies on a fresh machine (Python 3.11, pip, root or a venv).
# torch first, pinned to the local CPU wheel: any other torch request pulls a multi-GB CUDA build.
# A re-run with nothing changed skips pip: a stamp in the environment (or $EDGEPORT_INSTALL_STAMP_DIR) holds the
# sha256 of the install inputs (pyproject.toml, this script, the Python version, the checkout path, the extras).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-test}"
stamp_dir="${EDGEPORT_INSTALL_STAMP_DIR:-$(python -c 'import sys; print(sys.prefix)')}"
stamp="$stamp_dir/.edgeport-install-$extras"
key=$( { cat pyproject.toml .ci/install.sh; python --version 2>&1; pwd; echo "$extras"; } | sha256sum | cut -d' ' -f1)
installed() {  # the stamp matches and every package is still importable from here (find_spec: no heavy import)
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ] && python -c "
import importlib.util as u, sys
sys.exit(0 if all(u.find_spec(m) for m in ('edgeport', 'torch', 'tensorflow', 'ai_edge_litert', 'onnxruntime')) else 1)"
}
if installed; then
  echo "install: up to date (nothing changed since the last install; delete $stamp to force one)"
  exit 0
fi
echo "install [1/2]: torch 2.13.0 (CPU wheel) ..."
python -m pip install -q "torch==2.13.0"
echo "install [2/2]: edgeport and its dependencies ($extras: TensorFlow, ONNX Runtime, ai-edge-litert; a few minutes on a fresh machine) ..."
python -m pip install -q -e ".[${extras}]"
python -c "import edgeport; from importlib.metadata import version as v
print('edgeport', edgeport.__version__, *(f'{m} {v(m)}' for m in ('torch', 'tensorflow-cpu', 'ai-edge-litert', 'onnxruntime')))"
echo "$key" > "$stamp" 2>/dev/null || echo "install: note: cannot write $stamp; the next run installs again"
