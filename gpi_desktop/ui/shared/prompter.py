"""Questions to the user, behind one small interface.

The window asks through a `Prompter`; the self-test and the tests hand it a
`ScriptedPrompter` that answers from a script and records what was asked, so
the real window can be driven end to end with no one at the keyboard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget


class Prompter:
    """Asks with message boxes. `ask` returns the index of the chosen answer; the last one is 'cancel'.

    `default` is the answer Enter takes: the caller passes the safe one whenever an answer destroys or
    stops work, so that a reflex Enter never costs a run.
    """

    def ask(
        self,
        parent: QWidget | None,
        title: str,
        text: str,
        choices: Sequence[str],
        *,
        details: str = "",
        warning: bool = False,
        default: int = 0,
        information: bool = False,
    ) -> int:
        """`information`: news with choices of what to do next ("Export finished"), not a question."""
        icon = _icon(warning, information)
        box = QMessageBox(icon, title, text, QMessageBox.StandardButton.NoButton, parent)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        if details:
            box.setInformativeText(details)
        buttons = []
        for i, label in enumerate(choices):
            last = i == len(choices) - 1
            role = QMessageBox.ButtonRole.RejectRole if last and len(choices) > 1 else QMessageBox.ButtonRole.AcceptRole
            buttons.append(box.addButton(label, role))
        box.setDefaultButton(buttons[default])
        box.setEscapeButton(buttons[-1])
        box.exec()
        clicked = box.clickedButton()
        return buttons.index(clicked) if clicked in buttons else len(choices) - 1

    def tell(self, parent: QWidget | None, title: str, text: str, *, error: bool = False) -> None:
        box = QMessageBox(
            QMessageBox.Icon.Critical if error else QMessageBox.Icon.Information,
            title,
            text,
            QMessageBox.StandardButton.Ok,
            parent,
        )
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.exec()


def _icon(warning: bool, information: bool) -> QMessageBox.Icon:
    if warning:
        return QMessageBox.Icon.Warning
    return QMessageBox.Icon.Information if information else QMessageBox.Icon.Question


@dataclass
class Asked:
    title: str
    text: str
    choices: tuple[str, ...]
    details: str = ""
    default: int = 0  # the answer Enter would take
    icon: QMessageBox.Icon = QMessageBox.Icon.Question

    @property
    def default_choice(self) -> str:
        return self.choices[self.default]


@dataclass
class ScriptedPrompter(Prompter):
    """Answers each question with the first scripted choice its title contains, else the first choice."""

    answers: dict[str, str] = field(default_factory=dict)  # title fragment -> choice label
    asked: list[Asked] = field(default_factory=list)
    told: list[tuple[str, str]] = field(default_factory=list)

    def ask(self, parent, title, text, choices, *, details="", warning=False, default=0, information=False) -> int:
        self.asked.append(Asked(title, text, tuple(choices), details, default, _icon(warning, information)))
        for fragment, label in self.answers.items():
            if fragment in title and label in choices:
                return list(choices).index(label)
        return 0

    def tell(self, parent, title, text, *, error=False) -> None:
        self.told.append((title, text))
