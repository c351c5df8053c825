#!/usr/bin/env bash
# Build the one-folder app into dist/gpi-desktop/ from a clean checkout.
#
#   bash packaging/build_linux.sh
#
# Makes (or reuses) a dedicated virtual environment in build/venv so that
# nothing installed on the build machine by hand ends up in the app, installs
# torch and the pinned build requirements into it, then runs PyInstaller.
#
# Environment:
#   PYTHON             interpreter that creates the venv (default: python3)
#   GPI_BUILD_VENV     where the venv lives (default: build/venv)
#   TORCH_REQUIREMENT  pip requirement for torch (default: torch==2.13.0)
#   TORCH_INDEX_URL    index that serves it, e.g. https://download.pytorch.org/whl/cpu
#                      for a CPU-only build on a stock machine, .../whl/cu128 for a CUDA
#                      build (see packaging/README.md, "GPU builds"). Default: pip's own
#                      configuration (on the lab machines it resolves to the CPU wheel).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
VENV=${GPI_BUILD_VENV:-$ROOT/build/venv}
TORCH_REQUIREMENT=${TORCH_REQUIREMENT:-torch==2.13.0}
TORCH_INDEX_URL=${TORCH_INDEX_URL:-}

log() { printf '[build_linux %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating the build environment in $VENV"
    "$PYTHON" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

# Reinstall only when what defines the environment changed: a rebuild after a
# code change then costs PyInstaller's time alone.
STAMP="$VENV/.gpi-build-stamp"
WANT=$(cat "$ROOT/packaging/requirements-build.txt" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
WANT="$WANT $TORCH_REQUIREMENT $TORCH_INDEX_URL"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" ]]; then
    log "installing $TORCH_REQUIREMENT${TORCH_INDEX_URL:+ from $TORCH_INDEX_URL}"
    if [[ -n "$TORCH_INDEX_URL" ]]; then
        "$VPY" -m pip install -q --index-url "$TORCH_INDEX_URL" "$TORCH_REQUIREMENT"
    else
        "$VPY" -m pip install -q "$TORCH_REQUIREMENT"
    fi
    log "installing the pinned build requirements"
    "$VPY" -m pip install -q -r "$ROOT/packaging/requirements-build.txt"
    # The project itself, so that a dependency added to pyproject.toml reaches
    # the build even before requirements-build.txt pins it.
    "$VPY" -m pip install -q "$ROOT"
    echo "$WANT" > "$STAMP"
fi
"$VPY" - <<'PY'
import torch, transformers, PySide6, PyInstaller
print(f"[build_linux] torch {torch.__version__} (CUDA {torch.version.cuda}), transformers {transformers.__version__}, "
      f"PySide6 {PySide6.__version__}, PyInstaller {PyInstaller.__version__}")
PY

log "running PyInstaller"
start=$(date +%s)
# Hooks import transformers and huggingface_hub while analysing; keep them offline.
PYTHONWARNINGS=ignore::DeprecationWarning HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$VPY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$ROOT/dist" --workpath "$ROOT/build/pyinstaller" \
    "$ROOT/packaging/gpi_desktop.spec"
log "built $ROOT/dist/gpi-desktop in $(( $(date +%s) - start )) s ($(du -sh "$ROOT/dist/gpi-desktop" | cut -f1))"
