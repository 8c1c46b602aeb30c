#!/usr/bin/env bash
# Create the separate RecBole 1.2.1 virtualenv used for peer measurements.
# padrec itself never imports RecBole; this env lives outside the repository.
# Usage: bash benchmarks/recbole/setup_env.sh [VENV_DIR]   (default /work/venvs/recbole)
set -euo pipefail
VENV="${1:-/work/venvs/recbole}"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"

# CPU torch first (2.13.0 resolves to a local CPU wheel here; a plain `torch`
# would pull the CUDA build).
"$PY" -m pip install torch==2.13.0
# ray (a RecBole dependency) needs pkg_resources, removed from newer setuptools.
"$PY" -m pip install recbole==1.2.1 setuptools==80.9.0 numpy==1.26.4 \
    pandas==2.1.4 scipy==1.11.4

# Recent torch defaults torch.load(weights_only=True); RecBole's checkpoints
# hold its Config object, so its two torch.load calls need weights_only=False.
# Patched in the venv's site-packages only (idempotent).
"$PY" - <<'PYEOF'
import pathlib, re, importlib.util
spec = importlib.util.find_spec("recbole")
path = pathlib.Path(spec.submodule_search_locations[0]) / "trainer" / "trainer.py"
src = path.read_text()
calls = re.findall(r"torch\.load\([^\n]*\)", src)
new = src
for call in set(calls):
    if "weights_only" in call:
        continue
    new = new.replace(call, call[:-1] + ", weights_only=False)")
n_patched = len(re.findall(r"torch\.load\([^\n]*weights_only=False\)", new))
if new != src:
    path.write_text(new)
print(f"{path}: {n_patched} torch.load call(s) with weights_only=False")
if n_patched != 2:
    raise SystemExit(f"expected 2 patched torch.load calls, found {n_patched}")
PYEOF

"$PY" -c "import torch, recbole, numpy, pandas, scipy; print('torch', torch.__version__, 'recbole', recbole.__version__, 'numpy', numpy.__version__, 'pandas', pandas.__version__, 'scipy', scipy.__version__)"
"$PY" -m pip freeze > "$VENV/pip-freeze.txt"
echo "RecBole venv ready: $VENV (freeze in $VENV/pip-freeze.txt)"
