"""The window fits the screens researchers have, at any scale, with every control reachable."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QRect
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QPlainTextEdit,
    QScrollArea,
    QWidget,
)
from window_helpers import wait_idle

from gpi_desktop.ui.main_window import STEP_TITLES
from gpi_desktop.ui.shared.screen_fit import FRAME_ALLOWANCE, PREFERRED_SIZE, fitted_geometry

TASKBAR = 48  # logical pixels a panel or dock takes at the bottom
# Available areas in logical pixels: a 1366x768 laptop, and a 1920x1080 screen at 150% and 200% scaling.
SCREENS = {
    "1366x768": QRect(0, 0, 1366, 768 - TASKBAR),
    "1920x1080 x1.5": QRect(0, 0, round(1920 / 1.5), round(1080 / 1.5) - TASKBAR),
    "1920x1080 x2": QRect(0, 0, 1920 // 2, 1080 // 2 - TASKBAR),
}
CONTROLS = (QAbstractButton, QComboBox, QLineEdit, QAbstractSpinBox, QPlainTextEdit, QAbstractItemView)


def _scroll_area_of(widget: QWidget, page: QWidget) -> QScrollArea | None:
    parent = widget.parentWidget()
    while parent is not None and parent is not page:
        if isinstance(parent, QScrollArea) and parent.widget() is not None and parent.widget().isAncestorOf(widget):
            return parent
        parent = parent.parentWidget()
    return None


def _unreachable(window, page: QWidget) -> list[str]:
    """Controls of `page` that cannot be brought fully into the window (by scrolling where there is a scroll area)."""
    bad = []
    for widget in page.findChildren(QWidget):
        if not isinstance(widget, CONTROLS) or not widget.isVisibleTo(window):
            continue
        if (
            isinstance(widget, QAbstractButton)
            and widget.parentWidget() is not None
            and isinstance(widget.parentWidget(), (QComboBox, QAbstractSpinBox, QAbstractItemView))
        ):
            continue  # a part of another control
        if isinstance(widget.parentWidget(), QAbstractItemView) or widget.objectName().startswith("qt_"):
            continue
        scroll = _scroll_area_of(widget, page)
        room = window.rect()
        if scroll is not None:
            # Scroll so that the control's top-left corner is as high and as far left as the bars allow
            # (ensureWidgetVisible would only bring a line edit's cursor into view).
            corner = widget.mapTo(scroll.widget(), QPoint(0, 0))
            scroll.verticalScrollBar().setValue(corner.y())
            scroll.horizontalScrollBar().setValue(corner.x())
            viewport = scroll.viewport()
            room = room.intersected(QRect(viewport.mapTo(window, QPoint(0, 0)), viewport.size()))
        where = QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())
        big = isinstance(widget, (QPlainTextEdit, QAbstractItemView))
        if big:  # a text box or table scrolls itself: enough of it must show to be used
            seen = where.intersected(room)
            ok = seen.height() >= min(60, where.height()) and seen.width() >= min(120, where.width())
        else:
            ok = room.contains(where)
        if not ok:
            bad.append(f"{type(widget).__name__} '{getattr(widget, 'text', lambda: '')()}' at {where} outside {room}")
    return bad


def test_fitted_geometry_keeps_the_window_and_its_frame_inside_the_available_area():
    available = QRect(0, 0, 960, 492)
    fitted = fitted_geometry(QRect(300, 200, 1120, 740), available)
    framed = fitted.marginsAdded(FRAME_ALLOWANCE)
    assert available.contains(framed)
    assert fitted_geometry(QRect(50, 60, 400, 300), available) == QRect(50, 60, 400, 300)  # room enough: untouched


@pytest.mark.parametrize("screen", SCREENS, ids=list(SCREENS))
def test_every_step_fits_the_screen_with_every_control_reachable(qtbot, make_window, screen):
    available = SCREENS[screen]
    window = make_window()
    wait_idle(qtbot, window)
    window.resize(PREFERRED_SIZE)  # as a first launch opens it, before it meets the screen
    window.fit_to_screen(available)
    assert available.contains(window.frameGeometry()), window.frameGeometry()
    assert window.minimumSizeHint().width() <= window.width()
    assert window.minimumSizeHint().height() <= window.height()
    for step, title in enumerate(STEP_TITLES):
        window.go_to(step)
        qtbot.wait(10)
        page = window.pages.currentWidget()
        assert window.rect().contains(QRect(page.mapTo(window, QPoint(0, 0)), page.size())), title
        bad = _unreachable(window, page)
        assert not bad, f"step {step + 1} ({title}) at {screen}: " + "; ".join(bad)
        item = window.steps.visualItemRect(window.steps.item(step))
        assert window.steps.viewport().rect().contains(item), f"the step list hides step {step + 1} at {screen}"


def test_a_geometry_saved_on_a_bigger_screen_opens_inside_a_smaller_one(qtbot, make_window, tmp_path):
    first = make_window()
    first.setGeometry(100, 100, 1800, 1000)
    first.save_preferences()
    first.close()
    window = make_window()  # the same preferences file
    window.fit_to_screen(SCREENS["1920x1080 x2"])
    assert SCREENS["1920x1080 x2"].contains(window.frameGeometry())


OPEN_AND_MEASURE = """
import sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from gpi_desktop.ui.app import main, make_application

make_application()

def measure():
    window = next(w for w in QApplication.topLevelWidgets() if w.isWindow() and w.isVisible())
    screen = window.screen()
    print("AVAILABLE", screen.availableGeometry().getRect(), "FRAME", window.frameGeometry().getRect(),
          "DPR", screen.devicePixelRatio(), flush=True)
    window.close()

QTimer.singleShot(1500, measure)
sys.exit(main([]))
"""


def test_the_real_window_opens_inside_a_1920x1080_screen_at_200_percent(tmp_path):
    import json
    import os
    import subprocess
    import sys

    screens = tmp_path / "screens.json"
    screens.write_text(
        json.dumps(
            {
                "screens": [
                    {
                        "name": "laptop",
                        "x": 0,
                        "y": 0,
                        "width": 1920,
                        "height": 1080,
                        "logicalDpi": 96,
                        "logicalBaseDpi": 96,
                        "dpr": 1,
                    }
                ]
            }
        )
    )
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": f"offscreen:configfile={screens}",
        "QT_SCALE_FACTOR": "2",
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "HF_HUB_OFFLINE": "1",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
    }
    done = subprocess.run(
        [sys.executable, "-c", OPEN_AND_MEASURE], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("AVAILABLE"))
    words = line.replace("(", "").replace(")", "").replace(",", "").split()
    ax, ay, aw, ah = map(int, words[1:5])
    fx, fy, fw, fh = map(int, words[6:10])
    assert (aw, ah) == (960, 540) and float(words[11]) == 2.0  # the screen as a 200% desktop offers it
    assert ax <= fx and ay <= fy and fx + fw <= ax + aw and fy + fh <= ay + ah, line


@pytest.mark.parametrize("screen", ["1366x768", "1920x1080 x2"])
def test_the_preview_shows_match_with_input_and_shares_the_width_between_prompt_and_text(qtbot, make_window, screen):
    from PySide6.QtCore import Qt

    from gpi_desktop.core.vocabulary.results import STOP_EOS, PromptResult
    from gpi_desktop.ui.shared.table_models import COL_MATCH, COL_PROMPT, COL_TEXT

    prompt = "Write a short campaign speech for a candidate who is a farmer and a mother of three, named " * 2 + "Ana"
    window = make_window()
    wait_idle(qtbot, window)
    window.resize(PREFERRED_SIZE)
    window.fit_to_screen(SCREENS[screen])
    window.go_to(4)
    page = window.run_page
    page.set_repeat_task(True)
    page.results.set_results(
        [PromptResult(row=0, text="A speech " * 40, vector=None, n_tokens=12, stop_reason=STOP_EOS)], lambda row: prompt
    )
    qtbot.wait(10)
    view, header = page.view, page.view.horizontalHeader()
    viewport = view.viewport().width()
    right = header.sectionViewportPosition(COL_MATCH) + header.sectionSize(COL_MATCH)
    assert right <= viewport, f"'Match with input' ends at {right} of {viewport}"
    title = page.results.headerData(COL_MATCH, Qt.Orientation.Horizontal)
    assert header.sectionSize(COL_MATCH) >= header.fontMetrics().horizontalAdvance(title)  # its header not cut
    prompt_width, text_width = header.sectionSize(COL_PROMPT), header.sectionSize(COL_TEXT)
    assert min(prompt_width, text_width) >= 0.2 * viewport and abs(prompt_width - text_width) <= 2
    tip = page.results.data(page.results.index(0, COL_PROMPT), Qt.ItemDataRole.ToolTipRole)
    assert tip.endswith("named Ana</p>") and "…" not in tip  # the end, where prompts differ, shows on hover
    text_tip = page.results.data(page.results.index(0, COL_TEXT), Qt.ItemDataRole.ToolTipRole)
    assert text_tip.count("A speech") == 40


def test_a_short_prompt_cut_by_a_narrow_column_shows_in_full_on_hover(qtbot, make_window, tmp_path):
    from PySide6.QtCore import Qt

    csv = tmp_path / "short.csv"
    csv.write_text("id,text\n1,Write a speech by Ana\n2,Write a speech by Bob\n", encoding="utf-8")
    window = make_window()
    window.prompts_panel.load_file(csv)
    wait_idle(qtbot, window)
    model = window.prompts_panel.model
    tip = model.data(model.index(1, 1), Qt.ItemDataRole.ToolTipRole)
    assert tip is not None and "Write a speech by Bob" in tip


def test_the_guide_and_cluster_dialogs_fit_a_1920x1080_screen_at_200_percent(qtbot, make_window, monkeypatch):
    from PySide6.QtGui import QScreen

    from gpi_desktop.ui.guide import GuideDialog

    available = SCREENS["1920x1080 x2"]
    monkeypatch.setattr(QScreen, "availableGeometry", lambda self: available)
    window = make_window()
    guide = GuideDialog(window.runs_dir, None, window)
    qtbot.addWidget(guide)
    assert guide.width() <= available.width() and guide.height() <= available.height() - FRAME_ALLOWANCE.top()
