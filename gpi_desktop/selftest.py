"""`gpi-desktop --self-test`: drive the real window through the whole flow on the demo model.

Headless (Qt's offscreen platform unless a platform is set), with a temporary
settings file and data folder so nothing of the user's is read or changed:
load the sample prompts, run on the bundled demo model, check the preview,
export to a temporary folder and check every exported file. Prints one line
per check and returns 0 when all pass, 1 otherwise. The packaged installer
runs it to prove the installation works.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gpi_desktop.core.vocabulary.progress import Progress

# A small limit keeps the self-test quick on any machine; the demo model's
# texts stop on their own or at the limit, so both stop reasons are exercised.
MAX_NEW_TOKENS = 48
STEP_TIMEOUT_S = 600


class CheckFailed(Exception):
    pass


@dataclass
class Report:
    say: Callable[[str], None] = print
    passed: int = 0
    failed: list[str] = field(default_factory=list)

    def check(self, condition: bool, what: str, detail: str = "") -> None:
        if condition:
            self.passed += 1
            self.say(f"PASS  {what}")
        else:
            self.failed.append(what)
            self.say(f"FAIL  {what}" + (f": {detail}" if detail else ""))
            raise CheckFailed(what)

    @property
    def ok(self) -> bool:
        return not self.failed


def _wait(app, predicate: Callable[[], bool], what: str, timeout_s: float = STEP_TIMEOUT_S) -> None:
    from PySide6.QtCore import QEventLoop

    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise CheckFailed(f"timed out after {timeout_s:.0f} s waiting for {what}")
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)


def run_self_test(work: Path, report: Report) -> None:
    """The flow itself; raises CheckFailed at the first failed check."""
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from gpi_desktop.ui.main_window import MainWindow
    from gpi_desktop.ui.shared.prompter import ScriptedPrompter
    from gpi_desktop.ui.shared.resources import demo_model_path, sample_prompts_path

    app = QApplication.instance()
    report.check(
        demo_model_path().joinpath("config.json").is_file(), f"the demo model is installed ({demo_model_path()})"
    )
    report.check(sample_prompts_path().is_file(), f"the sample prompts are installed ({sample_prompts_path()})")

    settings = QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat)
    prompter = ScriptedPrompter({"Export finished": "Close", "Stop and close?": "Stop and close"})
    window = MainWindow(settings, data_dir=work / "data", prompter=prompter)
    window.show()
    try:
        _flow(app, window, work, report)
    finally:
        window.runner.cancel()
        _wait(app, lambda: not window.runner.is_busy(), "the worker to stop", 120)
        window.close()
    report.check(
        not window.isVisible() and not window.runner._thread.isRunning(),
        "the window closes and its worker thread has ended",
    )


def _flow(app, window, work: Path, report: Report) -> None:
    import pandas as pd

    from gpi_desktop.ui.main_window import STEP_RUN
    from gpi_desktop.ui.shared.resources import sample_prompts_path

    window.model_panel.use_demo_model()
    window.settings_panel.max_tokens.setValue(MAX_NEW_TOKENS)
    window.prompts_panel.sample_button.click()
    _wait(app, lambda: not window.prompts_panel.is_loading(), "the sample prompts to load")
    table = window.prompts_panel.table
    expected = pd.read_csv(sample_prompts_path(), dtype=str, keep_default_na=False)
    report.check(
        table is not None and table.column == "prompt" and len(table) == len(expected),
        f"the sample prompts load: {len(expected)} rows, text column 'prompt' chosen",
        "got " + ("nothing" if table is None else f"{len(table)} rows, column {table.column!r}"),
    )
    report.check(window.run_blocker() is None, "Run is enabled", str(window.run_blocker()))

    _wait(app, lambda: not window.model_panel.is_checking(), "the model check")
    target = window.model_panel.last_target
    report.check(
        target is not None and target.hidden_size == 64,
        "the model check reads the demo model's hidden width (64)",
        window.model_panel.target_label.text(),
    )

    progress: list[Progress] = []
    ended: list[object] = []  # the outcome, or why the run did not finish
    window.runner.progress.connect(progress.append)
    window.run_finished.connect(ended.append)
    window.run_failed.connect(ended.append)
    window.start_run()
    _wait(app, lambda: bool(ended), "the run to finish")
    report.check(window.outcome is not None, "the run finishes on the demo model", window.run_page.status_label.text())
    outcome = window.outcome
    n = len(expected)
    report.check(window.pages.currentIndex() == STEP_RUN, "the window shows the run and preview step")
    report.check(
        bool(progress) and progress[-1].done == n == progress[-1].total,
        f"progress reaches {n} of {n}",
        f"last progress {progress[-1] if progress else None}",
    )
    bar = window.run_page.progress_bar
    report.check(bar.value() == bar.maximum(), "the progress bar is full")
    preview = window.run_page.results
    report.check(preview.rowCount() == n, f"the preview lists {n} rows", f"{preview.rowCount()} rows")
    report.check([preview.result_at(i).row for i in range(n)] == list(range(n)), "the preview is in row order")
    report.check(all(preview.result_at(i).n_tokens >= 1 for i in range(n)), "every row generated at least one token")
    window.run_page.view.selectRow(0)
    report.check(
        window.run_page.prompt_text.toPlainText() == expected["prompt"][0]
        and window.run_page.generated_text.toPlainText() == outcome.results[0].text,
        "selecting a row shows its prompt and generated text side by side",
    )

    folder = work / "export"
    exported: list[Path] = []
    window.export_finished.connect(exported.append)
    report.check(window.export_to(folder), "the export starts")
    _wait(app, lambda: bool(exported) or not window.runner.is_busy(), "the export to finish")
    report.check(bool(exported), "the export finishes", window.export_page.state_label.text())
    _check_export(folder, outcome, expected, report)
    code = window.export_page.code.toPlainText()
    report.check(
        "load_hiddens(" in code and str(folder / "hidden") in code,
        "the window shows the Python lines that load the export with gpi_pack",
    )


def _check_export(folder: Path, outcome, expected, report: Report) -> None:
    from gpi_desktop.core.output.verify import export_checks

    for check in export_checks(
        folder,
        expected["prompt"].tolist(),
        max_new_tokens=MAX_NEW_TOKENS,
        hidden_size=outcome.results[0].vector.size,
        texts=[r.text for r in outcome.results],
    ):
        report.check(check.ok, check.what, check.detail)


def _quiet_offscreen(mode, context, message: str) -> None:
    # The offscreen platform warns that it cannot honour window size hints; nothing is wrong.
    if "propagateSizeHints" not in message:
        sys.stderr.write(message + "\n")


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the demo model needs no network; never wait for one
    import keyring
    from keyring.backends import null
    from PySide6.QtCore import qInstallMessageHandler

    from gpi_desktop.ui.app import make_application

    # The demo model needs no token: leave the user's keyring alone (a locked one would ask to be unlocked).
    keyring.set_keyring(null.Keyring())
    qInstallMessageHandler(_quiet_offscreen)
    make_application()
    report = Report()
    print("GPI Desktop self-test: the whole flow on the bundled demo model.")
    with tempfile.TemporaryDirectory(prefix="gpi-self-test-") as tmp:
        try:
            run_self_test(Path(tmp), report)
        except CheckFailed:
            pass
        except Exception:
            report.failed.append("unexpected error")
            print("FAIL  unexpected error:\n" + traceback.format_exc(), file=sys.stdout)
    if report.ok:
        print(f"Self-test passed: {report.passed} checks.")
        return 0
    print(f"Self-test FAILED: {len(report.failed)} failed, {report.passed} passed.")
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
