"""Plain words in the window: folders that cannot be opened, the export folder picker, the Help guide."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QLineEdit
from window_helpers import wait_idle

from gpi_desktop.ui.shared import prefs
from gpi_desktop.ui.steps.export_folder_dialog import ExportFolderDialog


def test_open_the_folder_without_a_file_manager_says_where_it_is(qtbot, make_window, monkeypatch, tmp_path):
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: False)  # a desktop with no file manager
    window = make_window()
    wait_idle(qtbot, window)
    window.last_export = tmp_path / "my export"
    window.open_export_folder()
    ((title, text),) = window.prompter.told
    assert "No file manager could open the folder" in text and str(tmp_path / "my export") in text
    window.open_log_folder()
    assert len(window.prompter.told) == 2


def test_open_the_folder_says_nothing_more_when_a_file_manager_opened_it(qtbot, make_window, monkeypatch, tmp_path):
    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    window = make_window()
    window.last_export = tmp_path
    window.open_export_folder()
    assert opened == [str(tmp_path)] and window.prompter.told == []


def test_the_export_picker_makes_a_typed_new_folder(qtbot, tmp_path):
    dialog = ExportFolderDialog(None, tmp_path)
    qtbot.addWidget(dialog)
    dialog.findChild(QLineEdit, "fileNameEdit").setText("study 1 export")
    dialog.accept()
    assert (tmp_path / "study 1 export").is_dir()
    assert Path(dialog.selectedFiles()[0]) == tmp_path / "study 1 export"
    assert dialog.result() == ExportFolderDialog.DialogCode.Accepted


def test_the_export_picker_starts_in_documents_then_in_the_last_export_folder(
    qtbot, make_window, monkeypatch, tmp_path
):
    from gpi_desktop.ui import export_actions

    documents = tmp_path / "Documents"
    documents.mkdir()
    monkeypatch.setattr(export_actions, "documents_folder", lambda: documents)
    started = []
    monkeypatch.setattr(ExportFolderDialog, "exec", lambda self: started.append(self.directory().absolutePath()) or 0)
    window = make_window()
    window.choose_export_folder()
    assert started == [str(documents)]
    last = tmp_path / "exports"
    last.mkdir()
    prefs.remember_folder(window.qsettings, "export", last)
    window.choose_export_folder()
    assert started[-1] == str(last)


def test_last_folder_falls_back_to_the_given_default(tmp_path):
    qs = QSettings(str(tmp_path / "p.ini"), QSettings.Format.IniFormat)
    assert prefs.last_folder(qs, "export", default=tmp_path) == str(tmp_path)
    assert prefs.last_folder(qs, "prompts") == str(Path.home())


def test_help_has_a_two_minute_guide_with_the_six_steps_the_export_and_where_jobs_are(qtbot, make_window):
    import re

    from gpi_desktop.ui.main_window import STEP_TITLES

    window = make_window()
    titles = [a.text() for m in window.menuBar().actions() if m.menu() for a in m.menu().actions()]
    guide_action = next(
        a for m in window.menuBar().actions() if m.menu() for a in m.menu().actions() if a.text().startswith("Guide")
    )
    assert "Guide (two minutes)" in titles
    window.settings_panel.prefix_edit.setText("vec_")
    guide_action.trigger()
    text = window.guide.browser.toPlainText()
    assert window.guide.isVisible()
    for heading in (
        "What GPI is",
        "The seven steps",
        "What the export holds",
        "Where jobs are kept",
        "How to cite the settings",
    ):
        assert heading in text
    for title in STEP_TITLES:
        assert title in text
    assert "load_hiddens" in text and "prefix='vec_'" in text  # the file names the export will use
    assert str(window.runs_dir) in text and "manifest.json" in text and "model.revision" in text
    words = len(re.findall(r"\w+", text))
    assert words < 600, words  # two minutes at a researcher's reading pace (~250-300 words a minute)
    window.guide.close()


def test_a_failure_is_its_own_sentence_for_the_user_and_names_what_failed_for_our_bug():
    from gpi_desktop.core.vocabulary.errors import PromptFileError
    from gpi_desktop.ui.shared.error_words import failure_sentence

    assert failure_sentence(PromptFileError("The prompts file is empty."), "x.csv could not be read") == (
        "The prompts file is empty."
    )
    assert failure_sentence(KeyError("row"), "x.csv could not be read") == (
        "x.csv could not be read: something unexpected went wrong (KeyError); the details are in the log file."
    )
