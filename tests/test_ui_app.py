"""`gpi_desktop.ui.app.main`: what `gpi-desktop` with no command runs."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import sys
from PySide6.QtCore import QTimer
from gpi_desktop.ui.app import main, make_application
app = make_application()
assert app.applicationName() == "GPI Desktop" and not app.windowIcon().isNull()
QTimer.singleShot(1500, lambda: [w.close() for w in app.topLevelWidgets() if w.isWindow()])
sys.exit(main([]))
"""


def test_main_opens_the_window_and_returns_0_when_it_is_closed(tmp_path):
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "HF_HUB_OFFLINE": "1",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
    }
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    saved = list((tmp_path / "cfg").rglob("*.conf"))
    assert saved and "max_new_tokens=1000" in saved[0].read_text()  # preferences written on close


WAIT_THEN_RUN = """
import sys
from pathlib import Path
from gpi_desktop.ui import main_window
from gpi_desktop.ui.app import main
real_show = main_window.MainWindow.show
def show_and_say(self):
    real_show(self)
    Path(sys.argv[1]).touch()
main_window.MainWindow.show = show_and_say
sys.exit(main([]))
"""


def test_sigterm_closes_the_window_like_stop_and_close_with_exit_130(tmp_path):
    import signal
    import time

    import pytest

    if not hasattr(signal, "SIGKILL"):
        pytest.skip("SIGTERM can be sent to a process on POSIX only")
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "HF_HUB_OFFLINE": "1",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
    }
    shown = tmp_path / "shown"
    proc = subprocess.Popen(
        [sys.executable, "-c", WAIT_THEN_RUN, str(shown)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not shown.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("Stopped. Finished prompts are kept")
    assert list((tmp_path / "cfg").rglob("*.conf"))  # closed as the window closes: preferences saved
