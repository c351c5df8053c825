"""Step 3's measure of the prompts against the model's context, made off the GUI thread.

Loading a tokenizer reads files and, for a hub model, fetches its small files;
counting 100,000 prompts through a chat template takes minutes. So the measure
runs as a background call, one at a time: a newer request stops the one out
(core polls the flag) and starts when it has returned. Each result carries the
inputs it was made for (`LengthsKey`); one for other inputs is never shown,
as the window ties results to job keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from gpi_desktop.ui.shared.error_words import failure_sentence
from gpi_desktop.ui.shared.tasks import BackgroundCalls, Operation

DEBOUNCE_MS = 300  # a burst of edits (typing an instruction) makes one measure


@dataclass(frozen=True)
class LengthsKey:
    """What the prompts' lengths depend on (the token limit does not: it only moves the line they must stay under)."""

    model: str
    revision: str | None
    task: str
    template: str
    template_options: tuple[tuple[str, str], ...]
    template_date: str | None
    prompts_sha256: str
    column: str
    rows: int


def lengths_key(settings, table) -> LengthsKey:
    """The key of measuring `table` (a core.prompts.PromptTable) for a run of `settings` (a RunSettings)."""
    options = tuple(sorted((str(k), repr(v)) for k, v in settings.template_options.items()))
    return LengthsKey(
        settings.model,
        settings.revision,
        settings.task,
        settings.template,
        options,
        settings.template_date,
        table.sha256,
        table.column,
        len(table),
    )


@dataclass(frozen=True)
class Measured:
    """A finished measure: the lengths (core.model.context.PromptLengths), or why there are none, in plain words."""

    key: LengthsKey
    lengths: Any = None
    error: str = ""


class ContextMeter(QObject):
    """Measures the latest inputs asked for; `measured` only ever carries those inputs' result."""

    measured = Signal(object)  # Measured
    progress = Signal(object)  # core.progress.Progress of the measure under way

    def __init__(self, calls: BackgroundCalls, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._calls = calls
        self._token_source: Callable[[], str | None] = lambda: None
        self._wanted: LengthsKey | None = None  # the inputs asked for last
        self._queued: tuple | None = None  # (key, settings, texts) to start once the measure out returns
        self._out: Operation | None = None  # the measure out now
        self._stopped = False
        # Tokenizers loaded, by (model, revision): a new instruction or file is measured without loading again.
        # Read and written only by the measure out, and there is one at a time.
        self._readers: dict[tuple[str, str | None], Any] = {}
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self._start)

    def set_token_source(self, source: Callable[[], str | None]) -> None:
        """`source()` is called on the worker thread, for a gated hub model's tokenizer files."""
        self._token_source = source

    def measure(self, settings, table) -> None:
        """Measure `table` for `settings`, unless these inputs are the ones already asked for."""
        key = lengths_key(settings, table)
        if self._stopped or key == self._wanted:
            return
        self._wanted = key
        self._queued = (key, settings, table.texts)
        if self._out is not None:
            self._out.cancel()  # it returns soon; the new one starts then
        self._debounce.start()

    def forget(self) -> None:
        """Nothing to measure (no model, no file, a half-typed option): stop what is out, show nothing."""
        self._wanted, self._queued = None, None
        self._debounce.stop()
        if self._out is not None:
            self._out.cancel()

    def measure_again(self) -> None:
        """Let the next `measure` of the same inputs run again (a token was added, the Hub is back)."""
        self.forget()

    def stop(self) -> None:
        """No more measures (the window is closing)."""
        self._stopped = True
        self.forget()

    def is_measuring(self) -> bool:
        return self._wanted is not None and (self._queued is not None or self._out is not None)

    def _start(self) -> None:
        if self._out is not None or self._queued is None or self._stopped:
            return
        (key, settings, texts), self._queued = self._queued, None
        readers, token_source = self._readers, self._token_source

        def measure(state):
            from gpi_desktop.core.generation.instructions import measure_prompt_lengths
            from gpi_desktop.core.model.models import load_tokenizer_only

            model = (settings.model, settings.revision)
            if model not in readers:
                readers.clear()  # one model's tokenizer at a time: they can be large
                readers[model] = load_tokenizer_only(settings, token=token_source())
            return measure_prompt_lengths(settings, texts, readers[model], state=state)

        self._out = (
            Operation(self._calls, measure)
            .on_progress(lambda progress: self._on_progress(key, progress))
            .success(lambda value: self._done(key, value))
            .failure(lambda error: self._done(key, error))
            .on_cancelled(lambda: self._done(key, None))
        )
        self._out.start()

    def _on_progress(self, key: LengthsKey, progress) -> None:
        if key == self._wanted:
            self.progress.emit(progress)

    def _done(self, key: LengthsKey, value) -> None:
        self._out = None
        if self._queued is not None:
            self._debounce.start()  # newer inputs were asked for meanwhile
            return
        if key != self._wanted or value is None:
            return  # stopped, or made for inputs no longer shown
        if isinstance(value, BaseException):
            self.measured.emit(Measured(key, error=failure_sentence(value, "The model's tokenizer could not be read")))
        else:
            self.measured.emit(Measured(key, lengths=value))
