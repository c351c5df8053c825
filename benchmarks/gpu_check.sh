#!/usr/bin/env bash
# The GPU check (issue 28; benchmarks/README.md, "The GPU check"): on a bare H100 or H200 machine whose only
# network is the package registries, installs the CUDA build of the project's torch, the project and
# bitsandbytes into a virtual environment, then runs benchmarks/gpu_check.py (parts a-e, one table at the end).
#
#   bash benchmarks/gpu_check.sh                 # on the GPU machine, from a fresh copy of the repository
#   bash benchmarks/gpu_check.sh --dry-run       # every part on the CPU with a tiny model; installs nothing
#   bash benchmarks/gpu_check.sh --parts a,d     # any gpu_check.py option passes through
#
# Environment: PYTHON (the Python to start from, default python3), GPU_CHECK_VENV (default .venv-gpu),
# TORCH_INDEX_URL (a PyTorch wheel index instead of PyPI), GPU_CHECK_NO_INSTALL=1 (use $PYTHON as it is).
# Exits with gpu_check.py's status: 0 when every check passed, 1 when one failed.
set -euo pipefail
cd "$(dirname "$0")/.."

dry_run=0
for arg in "$@"; do
  if [ "$arg" = "--dry-run" ]; then dry_run=1; fi
done

# The torch that .ci/run pins for the tests: the GPU check runs the same version, built for CUDA.
torch_version() {
  sed -n 's/.*"torch==\([0-9][0-9.]*\)".*/\1/p' .ci/run | head -n 1
}

driver_major() {
  local version
  version=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1 || true)
  echo "${version%%.*}"
}

cuda_build() {
  "$1" -c 'import torch; print(torch.version.cuda or "")' 2>/dev/null || true
}

install_torch() {
  local py=$1 version=$2 index=${TORCH_INDEX_URL:-} driver
  driver=$(driver_major)
  # PyPI's Linux x86_64 torch wheels are CUDA builds (torch 2.13.0: CUDA 13.0, which needs an NVIDIA driver
  # 580 or newer); an older driver gets a CUDA 12.6 build from PyTorch's own index.
  if [ -z "$index" ] && [ -n "$driver" ] && [ "$driver" -lt 580 ]; then
    index=https://download.pytorch.org/whl/cu126
  fi
  echo "== torch $version, CUDA build (driver ${driver:-unknown}; index ${index:-PyPI})"
  if [ -n "$index" ]; then
    "$py" -m pip install -q "torch==$version" --index-url "$index" || echo "WARNING: torch $version did not install"
  else
    "$py" -m pip install -q "torch==$version" || echo "WARNING: torch $version did not install"
  fi
  if [ -z "$(cuda_build "$py")" ] && [ -z "$index" ]; then
    # A pip configuration that prefers a CPU wheel (find-links, a CPU index) wins over PyPI's: ask PyPI alone.
    echo "   a CPU build of torch was installed; installing PyPI's CUDA build instead"
    "$py" -m pip install -q --force-reinstall --no-deps --index-url https://pypi.org/simple "torch==$version" \
      || echo "WARNING: PyPI's torch $version did not install"
  fi
}

install_all() {
  local base=${PYTHON:-python3} venv=${GPU_CHECK_VENV:-.venv-gpu} version
  version=$(torch_version)
  if [ -z "$version" ]; then
    echo "cannot read the torch version pinned in .ci/run" >&2
    exit 1
  fi
  if [ "$("$base" -c 'import sys; print(int(sys.prefix != sys.base_prefix))')" = 1 ]; then
    # Already a virtual environment (a machine image's own, holding its CUDA torch): installed into as it is,
    # since a new one made from it would see the system's packages, not this environment's.
    echo "== installing into the virtual environment of $base"
    PY=$base
  else
    echo "== virtual environment $venv (from $base)"
    # With the system's packages visible: a machine image's own CUDA torch is what is left if nothing installs.
    if [ ! -x "$venv/bin/python" ] && ! "$base" -m venv --system-site-packages "$venv"; then
      echo "WARNING: no virtual environment could be made; installing for $base itself"
      venv=""
    fi
    PY=${venv:+$venv/bin/python}
    PY=${PY:-$base}
  fi
  if timeout 60 "$PY" -m pip download -q --no-deps -d "$(mktemp -d)" "pip" >/dev/null 2>&1; then
    "$PY" -m pip install -q --upgrade pip || echo "WARNING: pip could not be upgraded"
    install_torch "$PY" "$version"
    echo "== the project and bitsandbytes"
    if ! "$PY" -m pip install -q -e ".[quantization]"; then
      echo "WARNING: the project with bitsandbytes did not install; trying without bitsandbytes"
      "$PY" -m pip install -q -e . \
        || echo "WARNING: the project did not install; running it from this checkout with what is installed"
    fi
  else
    echo "WARNING: no package registry answers pip: nothing is installed; running with what $PY has"
  fi
  echo "== what will run"
  "$PY" - "$version" <<'EOF'
import importlib.util, sys
import torch
pinned = sys.argv[1]
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), GPU available: {torch.cuda.is_available()}")
if not torch.__version__.startswith(pinned):
    print(f"WARNING: torch {torch.__version__} is not the project's torch {pinned}")
if importlib.util.find_spec("bitsandbytes") is None:
    print("WARNING: bitsandbytes is missing: part e will fail")
if not torch.cuda.is_available():
    sys.exit("no CUDA GPU is usable with this torch: nothing to check (use --dry-run for the CPU)")
EOF
}

# Without a network, pip's default retries would spend minutes on each install before giving up.
export PIP_RETRIES=${PIP_RETRIES:-2} PIP_DEFAULT_TIMEOUT=${PIP_DEFAULT_TIMEOUT:-30}
started=$(date +%s)
PY=${PYTHON:-python3}
if [ "$dry_run" = 0 ] && [ "${GPU_CHECK_NO_INSTALL:-0}" != 1 ]; then
  install_all
  echo "== installed in $(($(date +%s) - started)) s"
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$PY" benchmarks/gpu_check.py "$@"
