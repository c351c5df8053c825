"""Step 2 lists the models already in the Hugging Face cache (HF_HOME); one click uses one, no download."""

from __future__ import annotations

from pathlib import Path

import pytest
from hubserver import FakeHub, point_client_at, repo_from_folder
from window_helpers import wait_idle

from gpi_desktop.core.hub import cache, download
from gpi_desktop.core.vocabulary.formatting import human_bytes
from gpi_desktop.ui.main_window import STEP_ACCESS, STEP_MODEL, STEP_RUN

MODEL = "tiny-org/tiny-llama"
SHOT = Path("/tmp/gpi-model-step-cache.png")


@pytest.fixture
def fake_hub(monkeypatch, tmp_path, tiny_llama):
    """The tiny model on a fake Hub, with huggingface_hub pointed at it and an empty HF_HOME under tmp_path."""
    with FakeHub() as server:
        point_client_at(monkeypatch, server.url, tmp_path / "hf-home")
        server.add(repo_from_folder(MODEL, tiny_llama))
        yield server


def cache_rows(window) -> list[str]:
    panel = window.model_panel
    return [panel.cache_list.item(i).text() for i in range(panel.cache_list.count())]


def open_model_step(qtbot, window):
    window.go_to(STEP_MODEL)
    wait_idle(qtbot, window)


def on_disk(model_id: str) -> int:
    blobs = cache.hub_cache_dir() / ("models--" + model_id.replace("/", "--")) / "blobs"
    return sum(p.stat().st_size for p in blobs.iterdir())


def test_a_cached_model_is_listed_with_its_size_and_a_click_puts_its_id_in_the_model_field(
    qtbot, make_window, fake_hub, tmp_path
):
    download.download_model(MODEL)
    window = make_window()
    open_model_step(qtbot, window)
    panel = window.model_panel

    assert cache_rows(window) == [f"{MODEL} ({human_bytes(on_disk(MODEL))})"]
    assert panel.cache_list.isVisible()
    assert "HF_HUB_OFFLINE=1" in panel.cache_note.text()
    assert str(tmp_path / "hf-home" / "hub") in panel.cache_note.text()
    assert panel.cache_list.toolTip()

    changed = []
    panel.model_changed.connect(changed.append)
    item = panel.cache_list.item(0)
    rect = panel.cache_list.visualItemRect(item)
    from PySide6.QtCore import Qt

    qtbot.mouseClick(panel.cache_list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert panel.model() == MODEL
    assert changed == [MODEL]
    assert item.isSelected()
    wait_idle(qtbot, window)
    # The check reads the cached config: the hub id resolves to the tiny model without any download.
    assert panel.last_target is not None and panel.last_target.hidden_size == 64

    qtbot.wait(100)  # let the layout take in the new text before the picture
    panel.window().grab().save(str(SHOT))


def test_an_empty_cache_says_none_yet_and_the_list_fills_when_the_step_is_shown_again(qtbot, make_window, fake_hub):
    window = make_window()
    open_model_step(qtbot, window)
    panel = window.model_panel
    assert cache_rows(window) == []
    assert panel.cache_list.isHidden()
    assert panel.cache_note.text().startswith("None yet.")

    download.download_model(MODEL)  # e.g. by 'hf download' while the window was open
    window.go_to(STEP_ACCESS)
    open_model_step(qtbot, window)
    assert cache_rows(window) == [f"{MODEL} ({human_bytes(on_disk(MODEL))})"]
    assert not panel.cache_list.isHidden()


def test_a_run_that_downloads_a_hub_model_adds_it_to_the_list(qtbot, make_window, fake_hub, prompts_csv):
    window = make_window()
    open_model_step(qtbot, window)
    assert cache_rows(window) == []
    window.model_panel.set_model(MODEL)
    window.prompts_panel.load_file(prompts_csv)
    sp = window.settings_panel
    sp.max_tokens.setValue(4)
    sp.device_box.setCurrentIndex(sp.device_box.findData("cpu"))
    wait_idle(qtbot, window)
    assert window.run_blocker() is None

    with qtbot.waitSignal(window.run_finished, timeout=120_000):
        window.run_page.run_button.click()
    assert window.steps.currentRow() == STEP_RUN  # the list must refresh without step 2 being shown
    wait_idle(qtbot, window)
    assert [row.split(" (")[0] for row in cache_rows(window)] == [MODEL]


def test_a_model_whose_download_stopped_halfway_is_marked_not_finished(qtbot, make_window, fake_hub):
    folder = download.download_model(MODEL)
    (folder / "model.safetensors").unlink()  # as if the weights had not arrived yet
    window = make_window()
    open_model_step(qtbot, window)
    assert cache_rows(window)[0].endswith("download not finished")


def test_offline_mode_says_only_the_cached_models_can_be_used(qtbot, make_window, fake_hub, monkeypatch):
    from huggingface_hub import constants

    download.download_model(MODEL)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    window = make_window()
    open_model_step(qtbot, window)
    assert (
        "Offline mode is on (HF_HUB_OFFLINE=1): only these models can be used." in window.model_panel.cache_note.text()
    )
