"""Take the README's screenshots of the real window on the demo model.

    xvfb-run -a -s "-screen 0 1280x800x24" env QT_QPA_PLATFORM=xcb python docs/screenshots/take_screenshots.py

Writes docs/screenshots/{1-access,2-model,3-prompts,4-settings,5-running,6-preview,7-export,8-estimate}.png. Uses a temporary
settings file and data folder, and an in-memory keyring, so nothing of the user's is read or changed.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import keyring
from keyring.backends import null

OUT = Path(__file__).resolve().parent
RUNNING_AFTER = 3  # results in the preview when the "running" picture is taken


def main() -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the default model's check must not wait for a network
    from PySide6.QtCore import QEventLoop, QSettings

    from gpi_desktop.ui.app import make_application
    from gpi_desktop.ui.main_window import (
        STEP_ACCESS,
        STEP_ESTIMATE,
        STEP_EXPORT,
        STEP_MODEL,
        STEP_PROMPTS,
        STEP_SETTINGS,
        MainWindow,
    )
    from gpi_desktop.ui.shared.prompter import ScriptedPrompter

    keyring.set_keyring(null.Keyring())
    app = make_application()
    tmp = Path(tempfile.mkdtemp(prefix="gpi-shots-"))
    window = MainWindow(
        QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat),
        data_dir=tmp / "data",
        prompter=ScriptedPrompter({"Export finished": "Close"}),
    )
    window.resize(1180, 760)
    window.show()

    def wait(predicate, seconds=300):
        deadline = time.monotonic() + seconds
        while not predicate():
            if time.monotonic() > deadline:
                raise SystemExit("timed out")
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 30)

    def settle():
        for _ in range(20):
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)

    def shot(name):
        settle()
        path = OUT / f"{name}.png"
        window.grab().save(str(path))
        print("wrote", path)

    window.model_panel.use_demo_model()
    window.prompts_panel.sample_button.click()
    wait(lambda: window.calls.pending == 0 and not window.model_panel.is_checking())
    window.go_to(STEP_ACCESS)
    shot("1-access")
    window.go_to(STEP_MODEL)
    wait(lambda: window.calls.pending == 0)  # showing the step lists the cached models in the background
    shot("2-model")
    window.go_to(STEP_PROMPTS)
    window.prompts_panel.view.selectRow(2)
    shot("3-prompts")
    window.go_to(STEP_SETTINGS)
    window.settings_panel.max_tokens.setValue(120)
    window.settings_panel.batch_spin.setValue(1)  # one prompt at a time, so the picture catches the run midway
    shot("4-settings")

    seen = []
    window.runner.partial_result.connect(seen.append)
    window.start_run()
    wait(lambda: len(seen) >= RUNNING_AFTER)
    shot("5-running")
    wait(lambda: window.outcome is not None)
    window.run_page.view.selectRow(1)  # row 3 hit the token limit: left unselected, its highlight shows
    shot("6-preview")
    window.export_to(tmp / "export")
    wait(lambda: window.last_export is not None)
    window.go_to(STEP_EXPORT)
    shot("7-export")
    step = window.estimate_step
    wait(lambda: step.preview is not None)  # the sample prompts' simulated treatment and outcome are chosen
    step.epochs_spin.setValue(20)
    done = []
    step.estimated.connect(done.append)
    step.estimate_to(tmp / "report")
    wait(lambda: bool(done) and not window.runner.is_busy())
    window.go_to(STEP_ESTIMATE)
    shot("8-estimate")
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
