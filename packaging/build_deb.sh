#!/usr/bin/env bash
# Package the one-folder app (dist/gpi-desktop/, from build_linux.sh) as a .deb.
#
#   bash packaging/build_deb.sh            -> dist/gpi-desktop_<version>_<arch>.deb
#
# Layout: the app in /opt/gpi-desktop, /usr/bin/gpi-desktop -> the launcher,
# a menu entry in /usr/share/applications and the icon in the hicolor theme.
# No maintainer scripts: dpkg's own triggers (hicolor-icon-theme,
# desktop-file-utils) refresh the icon cache and the menu, and every file is
# dpkg's, so `dpkg -r` removes it all.
#
# Environment: GPI_DEB_COMPRESSION = zstd (default) | xz | gzip | none. zstd packs the
#              1 GB tree in seconds where xz takes over 10 minutes on 2 cores; every dpkg
#              that can run this app (glibc >= 2.34 for Qt 6: Ubuntu 22.04+, Debian 12+) reads it.
#              GPI_DEB_MAINTAINER = the Maintainer field (your lab IT contact).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
APPDIR="$ROOT/dist/gpi-desktop"
COMPRESSION=${GPI_DEB_COMPRESSION:-zstd}
PKG=gpi-desktop
MAINTAINER=${GPI_DEB_MAINTAINER:-GPI Desktop project <noreply@gpi-desktop.invalid>}

log() { printf '[build_deb %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

[[ -x "$APPDIR/gpi-desktop" ]] || { echo "build_deb: $APPDIR/gpi-desktop is missing; run packaging/build_linux.sh first" >&2; exit 1; }

VERSION=$(sed -n 's/^__version__ *= *"\([^"]*\)".*/\1/p' "$ROOT/gpi_desktop/__init__.py")
ARCH=$(dpkg --print-architecture)
STAGE="$ROOT/build/deb/${PKG}_${VERSION}_${ARCH}"
OUT="$ROOT/dist/${PKG}_${VERSION}_${ARCH}.deb"

find_resource() {  # the first existing resources/<name> among the arguments
    for name in "$@"; do
        [[ -f "$ROOT/resources/$name" ]] && { echo "$ROOT/resources/$name"; return 0; }
    done
    return 1
}
ICON_PNG=$(find_resource gpi-desktop.png icon.png icons/gpi-desktop.png) || {
    echo "build_deb: no PNG icon in resources/ (gpi-desktop.png or icon.png)" >&2; exit 1; }
ICON_SVG=$(find_resource gpi-desktop.svg icon.svg icons/gpi-desktop.svg || true)

rm -rf "$STAGE" && mkdir -p "$STAGE/DEBIAN" "$STAGE/opt" "$STAGE/usr/bin" \
    "$STAGE/usr/share/applications" "$STAGE/usr/share/doc/$PKG"
mkdir -p "$STAGE/opt/$PKG" && cp -a "$APPDIR/." "$STAGE/opt/$PKG/"
ln -s "/opt/$PKG/gpi-desktop" "$STAGE/usr/bin/gpi-desktop"
install -m 0644 "$ROOT/packaging/linux/gpi-desktop.desktop" "$STAGE/usr/share/applications/gpi-desktop.desktop"

# hicolor wants the icon under its real pixel size.
SIZE=$(python3 -c 'import struct,sys; d=open(sys.argv[1],"rb").read(24); assert d[:8]==b"\x89PNG\r\n\x1a\n", "not a PNG"; w,h=struct.unpack(">II",d[16:24]); print(f"{w}x{h}")' "$ICON_PNG")
install -D -m 0644 "$ICON_PNG" "$STAGE/usr/share/icons/hicolor/$SIZE/apps/gpi-desktop.png"
if [[ -n "$ICON_SVG" ]]; then
    install -D -m 0644 "$ICON_SVG" "$STAGE/usr/share/icons/hicolor/scalable/apps/gpi-desktop.svg"
fi

cat > "$STAGE/usr/share/doc/$PKG/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: gpi-desktop
Comment: /opt/gpi-desktop bundles Python, PyTorch, Hugging Face transformers,
 Qt for Python (PySide6, LGPLv3) and their dependencies, each under its own
 licence; their licence files are inside /opt/gpi-desktop/_internal.

Files: *
License: MIT
COPYRIGHT

# Normalise permissions: the build tree may come from a umask-077 checkout.
find "$STAGE" -type d -exec chmod 0755 {} +
find "$STAGE" -type f -perm /111 -exec chmod 0755 {} +
find "$STAGE" -type f ! -perm /111 -exec chmod 0644 {} +

INSTALLED_KB=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
# The bundle carries the build machine's libpython, libstdc++ and friends, so it
# needs at least the newest glibc symbol version they reference: a .deb built on
# Debian 12 needs glibc 2.36, one built on Ubuntu 22.04 runs from 22.04 on.
GLIBC_MIN=$(find "$STAGE/opt/$PKG" -type f \( -name '*.so*' -o -name gpi-desktop \) -print0 \
    | xargs -0 objdump -T 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -u -V | tail -1 || true)
GLIBC_MIN=${GLIBC_MIN:-$(getconf GNU_LIBC_VERSION | cut -d' ' -f2)}
# Libraries the bundle loads from the system (PyInstaller leaves the graphics
# stack and glibc to the OS). libgtk-3 is only for the GTK look, and a Secret
# Service (gnome-keyring) is what keeps the token across sessions.
cat > "$STAGE/DEBIAN/control" <<CONTROL
Package: $PKG
Version: $VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $INSTALLED_KB
Depends: libc6 (>= $GLIBC_MIN), libgl1, libegl1, libdrm2, libxcb1, libxcb-icccm4, libxcb-keysyms1, libwayland-client0, libwayland-cursor0, libwayland-egl1
Recommends: gnome-keyring | kwalletmanager, libgtk-3-0
Section: science
Priority: optional
Description: texts and hidden states for GenAI-Powered Inference
 GPI Desktop gives a language model one prompt per observation, generates
 deterministically and keeps, for every observation, the generated text and
 a pooled vector of the model's last-layer hidden states, written exactly as
 gpi_pack's extract_and_save_hidden_states writes them.
 .
 Self-contained: Python, PyTorch and Qt are bundled in /opt/gpi-desktop.
CONTROL

log "packing $OUT ($COMPRESSION)"
start=$(date +%s)
rm -f "$OUT"
dpkg-deb --root-owner-group -Z"$COMPRESSION" --build "$STAGE" "$OUT" >/dev/null
log "built $OUT in $(( $(date +%s) - start )) s: $(du -h "$OUT" | cut -f1) (installed: $(( INSTALLED_KB / 1024 )) MiB)"
