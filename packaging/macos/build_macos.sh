#!/usr/bin/env bash
# Build "GPI Desktop.app" and a .dmg on macOS (Apple silicon; PyTorch ships no
# Intel-Mac wheels any more), from a clean checkout:
#
#   bash packaging/macos/build_macos.sh
#
# Optional: MACOS_SIGN_IDENTITY="Developer ID Application: ..." signs the app
# (hardened runtime), and NOTARY_PROFILE=<notarytool keychain profile> then
# notarises and staples the dmg. Unsigned, Gatekeeper asks the user to confirm
# the first launch (right-click > Open).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHON=${PYTHON:-python3}
VENV=${GPI_BUILD_VENV:-$ROOT/build/venv-macos}
TORCH_REQUIREMENT=${TORCH_REQUIREMENT:-torch==2.13.0}
APP="$ROOT/dist/GPI Desktop.app"

log() { printf '[build_macos %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
VPY="$VENV/bin/python"
log "installing $TORCH_REQUIREMENT (macOS wheels: CPU + Apple GPU through MPS) and the pinned build requirements"
"$VPY" -m pip install -q "$TORCH_REQUIREMENT"
# The point of the Apple-silicon build: the GPU through MPS. An Intel Mac (or an x86_64 Python under
# Rosetta) would get a torch without it, and a bundle that silently runs everything on the CPU.
[[ "$(uname -m)" == arm64 ]] || { echo "build_macos.sh builds for Apple silicon (arm64); this is $(uname -m)" >&2; exit 1; }
"$VPY" -c "import sys, torch; sys.exit(0 if torch.backends.mps.is_built() else 'this torch was built without MPS')"
"$VPY" -m pip install -q -r "$ROOT/packaging/requirements-build.txt"
"$VPY" -m pip install -q "$ROOT"

log "running PyInstaller"
HF_HUB_OFFLINE=1 "$VPY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$ROOT/dist" --workpath "$ROOT/build/pyinstaller" "$ROOT/packaging/gpi_desktop.spec"

log "self-test of the bundle"
QT_QPA_PLATFORM=offscreen "$APP/Contents/MacOS/gpi-desktop" --self-test

if [[ -n ${MACOS_SIGN_IDENTITY:-} ]]; then
    log "signing with $MACOS_SIGN_IDENTITY"
    codesign --deep --force --options runtime --timestamp --sign "$MACOS_SIGN_IDENTITY" "$APP"
    codesign --verify --deep --strict "$APP"
fi

VERSION=$(sed -n 's/^__version__ *= *"\([^"]*\)".*/\1/p' "$ROOT/gpi_desktop/__init__.py")
DMG="$ROOT/dist/gpi-desktop-$VERSION-macos-$(uname -m).dmg"
STAGE="$ROOT/build/dmg"
rm -rf "$STAGE" "$DMG" && mkdir -p "$STAGE"
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"  # drag-to-install
log "making $DMG"
hdiutil create -volname "GPI Desktop" -srcfolder "$STAGE" -fs HFS+ -format UDZO -ov "$DMG"

if [[ -n ${NOTARY_PROFILE:-} ]]; then
    log "notarising"
    xcrun notarytool submit "$DMG" --keychain-profile "$NOTARY_PROFILE" --wait
    xcrun stapler staple "$DMG"
fi
log "built $DMG ($(du -h "$DMG" | cut -f1))"
