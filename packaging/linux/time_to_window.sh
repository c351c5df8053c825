#!/usr/bin/env bash
# Print the seconds from launching the window program until its main window is
# mapped on the X display, then the CPU seconds it used until then
# (run it under Xvfb: xvfb-run -a bash time_to_window.sh [LAUNCHER] [TIMEOUT_S]).
# This is what a user waits for after clicking the menu entry; it goes through
# the real launcher and Qt's xcb platform plugin, not the offscreen one.
set -euo pipefail
LAUNCHER=${1:-gpi-desktop}
TIMEOUT_S=${2:-180}

start=$(date +%s.%N)
# The real X11 platform plugin, whatever the caller's environment says (CI sets offscreen).
QT_QPA_PLATFORM=xcb "$LAUNCHER" >/dev/null 2>&1 &
pid=$!
status=0
if timeout "$TIMEOUT_S" xdotool search --sync --onlyvisible --name 'GPI Desktop' >/dev/null 2>&1; then
    end=$(date +%s.%N)
    # Also the CPU seconds the program used until then (user + system), a figure
    # that other jobs on a shared machine disturb less than the wall-clock time.
    ticks=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    awk -v s="$start" -v e="$end" -v t="$ticks" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.2f %.2f\n", e - s, t / hz }'
else
    echo "time_to_window: no 'GPI Desktop' window within $TIMEOUT_S s" >&2
    status=1
fi
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
exit "$status"
