#!/usr/bin/env bash
# Create the separate RePlay (replay-rec 0.22.0, sb-ai-lab) virtualenv used for peer measurements.
# padrec itself never imports RePlay; this env lives outside the repository.
# Usage: bash benchmarks/replay/setup_env.sh [VENV_DIR]   (default /work/venvs/replay)
set -euo pipefail
VENV="${1:-/work/venvs/replay}"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"

# CPU torch first, pinned: 2.13.0 resolves to a local CPU wheel here; a plain `torch`
# would pull the CUDA build (GBs). replay-rec[torch] then keeps this torch.
"$PY" -m pip install torch==2.13.0
"$PY" -m pip install "replay-rec[torch]==0.22.0"

"$PY" -c "import torch, replay, lightning, pyarrow; print('torch', torch.__version__, 'replay-rec', replay.__version__, 'lightning', lightning.__version__, 'pyarrow', pyarrow.__version__)"
"$PY" -m pip freeze > "$VENV/pip-freeze.txt"
echo "RePlay venv ready: $VENV (freeze in $VENV/pip-freeze.txt)"
