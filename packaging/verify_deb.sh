#!/usr/bin/env bash
# Full installer check on a Debian/Ubuntu machine (root; CI runs it from .ci/run):
#   build the one-folder app and the .deb, dpkg -i it, run the INSTALLED program
#   (--self-test headless as an unprivileged user, `run` on the demo model, `run`
#   with no stdout/stderr, `run` on a hub id from a local Hub look-alike, the
#   token in a real Secret Service, the window on Xvfb), check it wrote nothing
#   into its install folder, dpkg -P it and check nothing is left.
# Prints the .deb size and the time from launch to window shown, and writes
# them to dist/verify_deb_report.txt.
#
# GPI_VERIFY_SKIP_BUILD=1 reuses dist/ from an earlier build (for reruns).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PKG=gpi-desktop
PREFIX=/opt/gpi-desktop
T0=$(date +%s)
WORK=$(mktemp -d /tmp/gpi-verify-deb.XXXXXX)
REPORT="$ROOT/dist/verify_deb_report.txt"
INSTALLED=0

log() { printf '[verify_deb %s +%ss] %s\n' "$(date +%H:%M:%S)" "$(( $(date +%s) - T0 ))" "$*"; }
fail() { echo "verify_deb: FAIL: $*" >&2; exit 1; }

cleanup() {
    local status=$?
    if [[ -n ${HUB_PID:-} ]]; then kill "$HUB_PID" 2>/dev/null || true; fi
    # Never leave a half-verified package on the machine.
    if [[ $INSTALLED == 1 ]] && dpkg -s "$PKG" >/dev/null 2>&1; then
        dpkg -P "$PKG" >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

[[ $(id -u) == 0 ]] || fail "run as root (it installs and removes a .deb)"
if dpkg -s "$PKG" >/dev/null 2>&1; then
    log "removing an earlier $PKG installation first"
    dpkg -P "$PKG" >/dev/null
fi
[[ ! -e $PREFIX ]] || fail "$PREFIX exists but no package owns it; remove it by hand first"

apt_install() {  # install the named Debian packages that are missing
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    ((${#missing[@]})) || return 0
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
}

# --- build -----------------------------------------------------------------------------------
apt_install binutils  # objdump: build_deb.sh reads the glibc version the bundle needs
if [[ ${GPI_VERIFY_SKIP_BUILD:-0} != 1 ]]; then
    t=$(date +%s); bash "$ROOT/packaging/build_linux.sh"; BUILD_S=$(( $(date +%s) - t ))
else
    BUILD_S="(skipped)"
fi
t=$(date +%s); bash "$ROOT/packaging/build_deb.sh"; DEB_S=$(( $(date +%s) - t ))
VERSION=$(sed -n 's/^__version__ *= *"\([^"]*\)".*/\1/p' "$ROOT/gpi_desktop/__init__.py")
DEB="$ROOT/dist/${PKG}_${VERSION}_$(dpkg --print-architecture).deb"
[[ -f $DEB ]] || fail "$DEB was not built"
DEB_BYTES=$(stat -c %s "$DEB")
INSTALLED_KB=$(dpkg-deb -f "$DEB" Installed-Size)

# --- install ---------------------------------------------------------------------------------
# The package's own Depends (so that dpkg -i succeeds), plus the tools this check uses.
DEPENDS=$(dpkg-deb -f "$DEB" Depends | tr ',' '\n' | sed 's/(.*)//; s/|.*//; s/ //g' | grep -v '^$')
# shellcheck disable=SC2086
apt_install $DEPENDS xvfb xauth libx11-6 dbus gnome-keyring desktop-file-utils
log "dpkg -i $(basename "$DEB")"
INSTALLED=1
dpkg -i "$DEB" >/dev/null
[[ $(readlink -f /usr/bin/gpi-desktop) == "$PREFIX/gpi-desktop" ]] || fail "/usr/bin/gpi-desktop does not lead to $PREFIX/gpi-desktop"
desktop-file-validate /usr/share/applications/gpi-desktop.desktop || fail "the installed menu entry does not validate"
ICON=$(dpkg -L "$PKG" | grep -E '^/usr/share/icons/hicolor/.*/apps/gpi-desktop\.(png|svg)$' | head -1)
[[ -n $ICON && -f $ICON ]] || fail "no hicolor icon installed"
grep -q '^Icon=gpi-desktop$' /usr/share/applications/gpi-desktop.desktop || fail "the menu entry does not name the icon"
# A non-root user must be able to read every file (the demo model comes from a 0600 checkout file).
UNREADABLE=$(find "$PREFIX" ! -perm -o+r | head -3)
[[ -z $UNREADABLE ]] || fail "files not readable by other users: $UNREADABLE"
find "$PREFIX" -printf '%P %s %T@\n' | sort > "$WORK/tree-before.txt"

# The installed program runs as a fresh user would: its own HOME, no network, no token.
export HOME="$WORK/home" XDG_CONFIG_HOME="$WORK/home/.config" XDG_DATA_HOME="$WORK/home/.local/share" \
    XDG_CACHE_HOME="$WORK/home/.cache" XDG_STATE_HOME="$WORK/home/.local/state" XDG_RUNTIME_DIR="$WORK/run"
mkdir -p "$HOME" "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
export HF_HUB_OFFLINE=1
unset HF_TOKEN HUGGING_FACE_HUB_TOKEN PYTHONPATH PYTHONHOME VIRTUAL_ENV QT_QPA_PLATFORM || true
DEMO="$PREFIX/_internal/resources/demo-model"
PROMPTS="$PREFIX/_internal/resources/sample_prompts.csv"
N_PROMPTS=$(python3 -c 'import csv,sys; print(sum(1 for _ in csv.DictReader(open(sys.argv[1], encoding="utf-8-sig"))))' "$PROMPTS")
# A developer's venv (.ci/run activates one with `pip install -e .`) has its own
# gpi-desktop first on PATH: only the system's PATH, and the installed launcher by
# its full path, so that what runs below is the installed program.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
GPI=/usr/bin/gpi-desktop
cd "$WORK"  # nothing may depend on the checkout

log "installed: $($GPI --version)"

# As an ordinary user, as a researcher runs it: catches files only root can read.
log "gpi-desktop --self-test (headless, offscreen, as user nobody)"
USER_HOME="$WORK/nobody-home"
mkdir -p "$USER_HOME/run" && chmod 755 "$WORK" && chmod 700 "$USER_HOME/run" && chown -R nobody "$USER_HOME"
t=$(date +%s)
runuser -u nobody -- env -i PATH="$PATH" HOME="$USER_HOME" XDG_RUNTIME_DIR="$USER_HOME/run" TMPDIR="$USER_HOME" \
    QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1 timeout 900 "$GPI" --self-test | tee "$WORK/self-test.txt"
SELFTEST_S=$(( $(date +%s) - t ))
grep -q '^Self-test passed' "$WORK/self-test.txt" || fail "the installed self-test did not pass"
grep -q "demo model is installed ($PREFIX/_internal/resources/demo-model)" "$WORK/self-test.txt" \
    || fail "the self-test did not run from the installed bundle"

check_export() {  # check_export DIR: the export folder of docs/architecture.md for every sample prompt
    local out=$1
    for f in generated_texts.pkl generated_texts.csv hidden_states.npy manifest.json; do
        [[ -s $out/$f ]] || fail "$out/$f missing after gpi-desktop run"
    done
    local n; n=$(find "$out/hidden" -name 'hidden_*.pt' | wc -l)
    [[ $n == "$N_PROMPTS" ]] || fail "$out/hidden holds $n .pt files, expected $N_PROMPTS"
}

log "gpi-desktop run on the bundled demo model"
t=$(date +%s)
timeout 600 "$GPI" run --model "$DEMO" --prompts "$PROMPTS" --out "$WORK/run-out" --max-new-tokens 16
RUN_S=$(( $(date +%s) - t ))
check_export "$WORK/run-out"

# The second step in the frozen program: matplotlib's plots and torch's training, on that export and the
# sample prompts' simulated treatment and outcome.
log "gpi-desktop estimate on that export"
timeout 600 "$GPI" estimate --vectors "$WORK/run-out" --treatment treatment --outcome outcome --epochs 5 \
    --out "$WORK/estimate" --quiet || fail "gpi-desktop estimate exited with $?"
for f in estimate.json estimate.csv propensity.png validation_loss.png methods.txt; do
    [[ -s $WORK/estimate/$f ]] || fail "$WORK/estimate/$f missing after gpi-desktop estimate"
done

# The windowed-build trap: started from a menu (or on Windows without a console)
# the program has no stdout/stderr at all; transformers' logging and tqdm must not
# crash it. Closing both streams gives Python sys.stdout = sys.stderr = None.
log "gpi-desktop run with stdout and stderr closed"
timeout 600 "$GPI" run --model "$DEMO" --prompts "$PROMPTS" --out "$WORK/run-closed" --max-new-tokens 16 >&- 2>&- \
    || fail "gpi-desktop run with closed stdout/stderr exited with $?"
check_export "$WORK/run-closed"

# The download path of the frozen program (huggingface_hub, its HTTP client, the
# cache) against a local Hub look-alike: a public model runs, a gated one gives
# the plain access message and exit code 2, not a traceback.
log "gpi-desktop run on a hub id, downloaded from a local Hub look-alike"
python3 "$ROOT/packaging/linux/serve_fake_hub.py" "$DEMO" "$WORK/hub.url" &
HUB_PID=$!
for _ in $(seq 100); do [[ -s $WORK/hub.url ]] && break; sleep 0.1; done
[[ -s $WORK/hub.url ]] || fail "the local Hub look-alike did not start"
HUB_ENV=(env HF_ENDPOINT="$(cat "$WORK/hub.url")" HF_HUB_OFFLINE=0 HF_HOME="$WORK/hf-home")
timeout 600 "${HUB_ENV[@]}" "$GPI" run --model gpi-test/demo-model --prompts "$PROMPTS" --out "$WORK/run-hub" \
    --max-new-tokens 8 --quiet || fail "gpi-desktop run could not download and run a hub model"
check_export "$WORK/run-hub"
set +e
timeout 600 "${HUB_ENV[@]}" "$GPI" run --model gpi-test/gated-model --prompts "$PROMPTS" --out "$WORK/run-gated" \
    --max-new-tokens 8 --quiet 2> "$WORK/gated.txt"
GATED_RC=$?
set -e
kill "$HUB_PID" 2>/dev/null || true; wait "$HUB_PID" 2>/dev/null || true; HUB_PID=
sed 's/^/    /' "$WORK/gated.txt"
[[ $GATED_RC == 2 ]] && ! grep -q Traceback "$WORK/gated.txt" \
    || fail "a gated model gave exit code $GATED_RC instead of 2 with one plain sentence"

# Keyring backends are found through entry points; a frozen app that lost them
# says "no keyring" even where a Secret Service runs.
log "the token in a real Secret Service (gnome-keyring under dbus-run-session)"
GPI=$GPI dbus-run-session -- bash -c '
    set -euo pipefail
    echo -n verify-password | gnome-keyring-daemon --unlock --components=secrets >/dev/null
    echo "hf_InstallerCheckNotARealToken0123456789" | "$GPI" token set
    "$GPI" token status | tee status.txt
    grep -q "saved in Secret Service" status.txt
    "$GPI" token clear
    ! grep -rq InstallerCheckNotARealToken "$HOME/.local/state" "$HOME/.config" 2>/dev/null
' > "$WORK/token.txt" 2>&1 || { cat "$WORK/token.txt"; fail "the installed program could not use the Secret Service keyring"; }
sed 's/^/    /' "$WORK/token.txt"

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
log "time from launch to window shown (Xvfb, xcb platform plugin; load average $LOAD)"
STARTUP=()
STARTUP_CPU=()
for i in 1 2 3; do
    read -r s cpu < <(xvfb-run -a -s "-screen 0 1280x800x24" python3 "$ROOT/packaging/linux/time_to_window.py" "$GPI" 180) \
        || fail "the installed window did not appear on Xvfb"
    STARTUP+=("$s")
    STARTUP_CPU+=("$cpu")
    log "  launch $i: window shown after $s s ($cpu s of CPU)"
done

find "$PREFIX" -printf '%P %s %T@\n' | sort > "$WORK/tree-after.txt"
diff -u "$WORK/tree-before.txt" "$WORK/tree-after.txt" >&2 \
    || fail "running the program changed files in $PREFIX (dpkg -r would leave them behind)"

# --- uninstall -------------------------------------------------------------------------------
log "dpkg -P $PKG"
dpkg -P "$PKG" >/dev/null
INSTALLED=0
LEFT=()
for p in "$PREFIX" /usr/bin/gpi-desktop /usr/share/applications/gpi-desktop.desktop /usr/share/doc/$PKG; do
    [[ -e $p || -L $p ]] && LEFT+=("$p")
done
while IFS= read -r p; do LEFT+=("$p"); done < <(find /usr/share/icons -name 'gpi-desktop.*' 2>/dev/null)
((${#LEFT[@]} == 0)) || fail "left behind after dpkg -P: ${LEFT[*]}"
! dpkg -s "$PKG" >/dev/null 2>&1 || fail "dpkg still lists $PKG after dpkg -P"

# --- report ----------------------------------------------------------------------------------
mkdir -p "$ROOT/dist"
{
    echo "GPI Desktop .deb verification, $(date -u +%Y-%m-%dT%H:%MZ) on $(. /etc/os-release; echo "$PRETTY_NAME"), $(nproc) cores"
    echo "package:            $(basename "$DEB")"
    echo "deb size:           $DEB_BYTES bytes ($(( DEB_BYTES / 1048576 )) MiB), compression ${GPI_DEB_COMPRESSION:-zstd}"
    echo "installed size:     $(( INSTALLED_KB / 1024 )) MiB"
    echo "build (venv + PyInstaller): $BUILD_S s; packing the .deb: $DEB_S s"
    echo "installed self-test: passed in $SELFTEST_S s as an unprivileged user ($(grep -c '^PASS' "$WORK/self-test.txt") checks)"
    echo "installed run:       $N_PROMPTS prompts on the demo model in $RUN_S s (also passed with stdout/stderr closed)"
    echo "hub download:        a hub id downloaded from a local Hub look-alike and ran; a gated one exited 2 with a plain message"
    echo "keyring:             token set/status/clear through Secret Service (gnome-keyring) passed"
    echo "launch to window shown (Xvfb, 3 launches): ${STARTUP[*]} s wall clock, ${STARTUP_CPU[*]} s CPU (load average $LOAD on $(nproc) cores)"
    echo "uninstall:           dpkg -P left nothing in $PREFIX, /usr/bin, /usr/share/applications, /usr/share/icons"
    echo "total:               $(( $(date +%s) - T0 )) s"
} | tee "$REPORT"
log "PASS"
