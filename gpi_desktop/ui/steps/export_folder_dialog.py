"""The export folder picker: starts in Documents (or the last export's folder) and takes a typed new folder name.

Qt's own folder dialog refuses a name that does not exist yet ("Directory not
found"), so a researcher could not simply type "study 1 export": this one makes
the folder (the parent must exist) and returns it.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QStandardPaths
from PySide6.QtWidgets import QFileDialog, QWidget

TITLE = "Choose the export folder, or type the name of a new one"


def documents_folder() -> Path:
    """The user's Documents folder, or the home folder where there is none."""
    found = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.DocumentsLocation)
    return Path(found) if found and Path(found).is_dir() else Path.home()


class ExportFolderDialog(QFileDialog):
    def __init__(self, parent: QWidget | None, start: Path) -> None:
        super().__init__(parent, TITLE, str(start))
        self.setFileMode(QFileDialog.FileMode.Directory)
        # Qt's own dialog on every system, so that a typed new name behaves the same everywhere.
        self.setOption(QFileDialog.Option.DontUseNativeDialog, True)
        self.setOption(QFileDialog.Option.ShowDirsOnly, True)
        self.setLabelText(QFileDialog.DialogLabel.FileName, "Folder:")
        self.setLabelText(QFileDialog.DialogLabel.Accept, "Export here")

    def typed_folder(self) -> Path | None:
        """The folder the name field names (relative names under the folder shown), or None when empty."""
        from PySide6.QtWidgets import QLineEdit

        edit = self.findChild(QLineEdit, "fileNameEdit")
        text = edit.text().strip().strip('"') if edit is not None else ""
        if not text:
            return None
        typed = Path(text).expanduser()
        return typed if typed.is_absolute() else Path(self.directory().absolutePath()) / typed

    def accept(self) -> None:
        typed = self.typed_folder()
        if typed is not None and not typed.exists() and typed.parent.is_dir():
            try:
                typed.mkdir()
            except OSError:
                pass  # Qt's dialog then says the folder cannot be used
        super().accept()
