"""What the window tests do again and again: wait for background calls, fill the steps, run to the end."""

from __future__ import annotations

from pathlib import Path


def wait_idle(qtbot, window, timeout=60_000):
    """Until no background call (file read, keyring, model check) is out or about to start."""
    qtbot.waitUntil(lambda: window.calls.pending == 0 and not window.model_panel.is_checking(), timeout=timeout)


MAX_NEW = 12


def prepare(qtbot, window, model: Path, csv: Path, *, task: str = "create", batch: int = 0, max_new: int = MAX_NEW):
    window.model_panel.set_model(str(model))
    window.prompts_panel.load_file(csv)
    sp = window.settings_panel
    sp.max_tokens.setValue(max_new)
    sp.batch_spin.setValue(batch)
    sp.device_box.setCurrentIndex(sp.device_box.findData("cpu"))
    sp.task_box.setCurrentIndex(sp.task_box.findData(task))
    wait_idle(qtbot, window)
    assert window.prompts_panel.table is not None
    assert window.run_blocker() is None


def run_to_end(qtbot, window):
    with qtbot.waitSignal(window.run_finished, timeout=120_000) as blocker:
        window.run_page.run_button.click()
    qtbot.waitUntil(lambda: not window.runner.is_busy(), timeout=10_000)
    return blocker.args[0]


def stop_after_first_result(qtbot, window):
    def stop(_result):
        window.runner.partial_result.disconnect(stop)
        window.cancel_run()

    window.runner.partial_result.connect(stop)
    with qtbot.waitSignal(window.runner.cancelled, timeout=120_000):
        window.run_page.run_button.click()
    qtbot.waitUntil(lambda: not window.runner.is_busy(), timeout=10_000)
