"""A download's progress and quiet: bytes counted as they are written, huggingface_hub's console bars silenced."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from gpi_desktop.core.vocabulary.errors import Cancelled
from gpi_desktop.core.vocabulary.formatting import human_bytes, human_duration
from gpi_desktop.core.vocabulary.progress import Progress, ProgressKind, TaskState

_PROGRESS_INTERVAL_S = 0.25


class ByteCounter:
    """Adds up bytes from every file's progress bar and reports through the TaskState."""

    def __init__(self, state: TaskState, total: int, model_id: str) -> None:
        self.state = state
        self.total = total
        self.model_id = model_id
        self.done = 0
        self.fetched = 0  # bytes that came over the network in this call (for the speed)
        self.started = time.monotonic()
        self._last_report = 0.0
        self._lock = threading.Lock()
        self._aborted = threading.Event()

    def abort(self) -> None:
        self._aborted.set()

    def check(self) -> None:
        if self._aborted.is_set() or self.state.is_interruption_requested():
            raise Cancelled()

    def add(self, n: int, *, fetched: bool = True) -> None:
        with self._lock:
            self.done += n
            if fetched:
                self.fetched += n
            now = time.monotonic()
            due = now - self._last_report >= _PROGRESS_INTERVAL_S or self.done >= self.total
            if due:
                self._last_report = now
        if due:
            self.report()
        self.check()

    def report(self) -> None:
        with self._lock:
            done, fetched = self.done, self.fetched
        elapsed = time.monotonic() - self.started
        speed = fetched / elapsed if elapsed > 0 else 0.0
        parts = [f"{human_bytes(done)} of {human_bytes(self.total)}"]
        if speed > 0 and done < self.total:
            parts.append(f"{human_bytes(speed)}/s")
            parts.append(f"about {human_duration((self.total - done) / speed)} left")
        self.state.set_progress(
            Progress(
                done=done, total=self.total, seconds_elapsed=elapsed, message=", ".join(parts), kind=ProgressKind.BYTES
            )
        )


class CountingFile:
    """The partial blob file, counting what huggingface_hub's http_get writes into it.

    Counting writes rather than relying on the `tqdm_class` hook keeps progress
    and cancel independent of how each huggingface_hub version drives its bars.
    """

    def __init__(self, raw: IO[bytes], counter: ByteCounter) -> None:
        self._raw = raw
        self._counter = counter

    def write(self, data: bytes) -> int:
        n = self._raw.write(data)
        self._counter.add(len(data))  # raises Cancelled when asked to stop: the bytes so far stay on disk
        return n

    def truncate(self, size: int | None = None) -> int:
        # http_get truncates when a server ignores the Range header and sends the whole file again.
        position = self._raw.tell()
        before = self._raw.seek(0, os.SEEK_END)
        self._raw.seek(position)
        after = self._raw.truncate(size)
        self._counter.add(after - before, fetched=False)
        return after

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def quiet(func: Callable[..., Any]) -> dict[str, Any]:
    """Keyword arguments that silence huggingface_hub's console progress bars, where the version has the hook."""
    return {"tqdm_class": SilentBar} if _supports(func, "tqdm_class") else {}


def _supports(func: Callable[..., Any], parameter: str) -> bool:
    import inspect

    try:
        return parameter in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


class SilentBar:
    """Shows nothing; wraps an iterable when given one, as tqdm does (thread_map iterates the bar)."""

    def __init__(self, iterable: Iterable[Any] | None = None, *args: Any, **kwargs: Any) -> None:
        self.iterable = iterable
        self.n = 0
        self.total = kwargs.get("total")

    def update(self, n: int = 1) -> None:
        pass

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *a, **k: None

    def __enter__(self) -> SilentBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __iter__(self) -> Iterator[Any]:
        return iter(self.iterable if self.iterable is not None else ())
