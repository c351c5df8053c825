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
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "XDG_DATA_HOME": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1", "PYTHON_KEYRING_BACKEND":
           "keyring.backends.null.Keyring"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    saved = list((tmp_path / "cfg").rglob("*.conf"))
    assert saved and "max_new_tokens=1000" in saved[0].read_text()  # preferences written on close
