"""Plain-words renderings in the window: progress lines, durations, links, the repeat match, download progress."""

from __future__ import annotations

from gpi_desktop.core.vocabulary.progress import Progress, ProgressKind
from gpi_desktop.ui.shared.formatting import linkify, progress_line
from gpi_desktop.ui.shared.textmatch import similarity
from gpi_desktop.ui.steps.run_step import RunPage


def test_progress_line_says_done_speed_and_time_left():
    assert progress_line(Progress(12, 100, tokens_per_second=35.24, seconds_elapsed=60.0)) == (
        "12 of 100 prompts \u00b7 35.2 tokens per second \u00b7 about 7 min 20 s left"
    )
    assert progress_line(Progress(100, 100, tokens_per_second=10, seconds_elapsed=4000)) == (
        "100 of 100 prompts \u00b7 10.0 tokens per second \u00b7 took 1 h 06 min"
    )
    assert progress_line(Progress(0, 5)) == "0 of 5 prompts"


def test_linkify_makes_addresses_clickable_and_escapes_the_rest():
    text = "Accept its licence at https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct, then <retry>."
    html = linkify(text)
    url = "https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct"
    assert f'<a href="{url}">{url}</a>, then &lt;retry&gt;.' in html
    assert (
        linkify("see https://huggingface.co/x/y.")
        == 'see <a href="https://huggingface.co/x/y">https://huggingface.co/x/y</a>.'
    )
    assert linkify("two\nlines") == "two<br>lines"


def test_similarity_scores_faithful_repeats_high_and_others_low():
    speech = "The mayor announced a plan to build affordable housing near the new train station. " * 5
    assert similarity(speech, speech) == 1.0
    assert similarity(speech, "  " + speech.replace(" ", "\n", 3)) == 1.0  # whitespace does not count
    assert similarity(speech, "Something else entirely.") < 0.3
    assert similarity("", "") == 1.0


def test_a_download_shows_its_own_words_and_a_percentage(qtbot):
    page = RunPage()
    qtbot.addWidget(page)
    total = 16_060_000_000  # more than a 32-bit progress bar can count
    page.show_progress(
        Progress(total // 4, total, message="4.0 GB of 16.1 GB, 50.0 MB/s, about 4 min left", kind=ProgressKind.BYTES)
    )
    assert page.progress_label.text() == "4.0 GB of 16.1 GB, 50.0 MB/s, about 4 min left"
    assert page.progress_bar.text() == "25%"
    page.show_progress(Progress(3, 10, tokens_per_second=5.0, seconds_elapsed=3.0))
    assert page.progress_bar.text() == "3 of 10 prompts"


def test_the_kind_of_progress_not_its_words_decides_whether_prompts_are_counted(qtbot):
    page = RunPage()
    qtbot.addWidget(page)
    page.show_progress(Progress(3, 10, message="a note from the engine"))  # prompts, whatever the words
    assert page.progress_bar.text() == "3 of 10 prompts"
    page.show_progress(Progress(500, 1000, kind=ProgressKind.BYTES))  # a download before its first words
    assert page.progress_bar.text() == "50%"
