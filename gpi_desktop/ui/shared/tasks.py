"""Running core's long operations off the main thread (after Orange's concurrent.TaskState).

`TaskRunner` owns one QThread and one worker object moved to it; it runs one
task at a time. A task is a plain function `fn(state) -> result` from core;
the `QtTaskState` it receives turns core's progress calls into Qt signals,
which Qt queues to the main thread because their receivers live there. Cancel
only sets a thread-safe flag that core polls between decoding steps.

`Operation` is one kind of work on a runner with its own handlers (after Anki's
`CollectionOp(...).success(...).failure(...)` and Orange's ConcurrentMixin with
on_done/on_exception): a window starts each operation with the handlers that
belong to it, so it never has to remember which task is running to know what
a progress report or a failure means.

`BackgroundCalls` is for short calls that may block for an unknown time and
cannot be cancelled (a locked keyring, a model config read over the network):
they run on daemon threads so that a call that never returns cannot keep the
program from closing, and their result comes back on the main thread.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot

from gpi_desktop.core.vocabulary.errors import Cancelled, GpiError
from gpi_desktop.core.vocabulary.progress import Progress

log = logging.getLogger(__name__)


class QtTaskState(QObject):
    """core's TaskState protocol, told from the worker thread, heard on the main thread."""

    status = Signal(str)
    progress = Signal(object)  # Progress
    partial_result = Signal(object)  # whatever the task reports, e.g. PromptResult

    def __init__(self) -> None:
        super().__init__()
        self._interrupt = threading.Event()

    def set_status(self, message: str) -> None:
        self.status.emit(message)

    def set_progress(self, progress: Progress) -> None:
        self.progress.emit(progress)

    def set_partial_result(self, result: Any) -> None:
        self.partial_result.emit(result)

    def request_interruption(self) -> None:
        self._interrupt.set()

    def is_interruption_requested(self) -> bool:
        return self._interrupt.is_set()


def _ignore(*_args: Any) -> None:
    pass


@dataclass
class Handlers:
    """What one task's reports and its end are handed to, on the main thread (each does nothing unless set)."""

    status: Callable[[str], None] = _ignore
    progress: Callable[[Progress], None] = _ignore
    partial_result: Callable[[Any], None] = _ignore
    ended: Callable[[], None] = _ignore  # first, whatever the outcome
    succeeded: Callable[[Any], None] = _ignore  # the task's return value
    failed: Callable[[BaseException], None] = _ignore  # the exception (a GpiError carries the plain sentence)
    cancelled: Callable[[], None] = _ignore


@dataclass(frozen=True)
class _Job:
    fn: Callable[[QtTaskState], Any]
    state: QtTaskState
    handlers: Handlers


OUTCOME_DONE = "done"
OUTCOME_FAILED = "failed"
OUTCOME_CANCELLED = "cancelled"


class _Worker(QObject):
    """Lives in the runner's thread; runs each job it is sent there."""

    finished = Signal(object, str, object)  # job, outcome, result or exception

    @Slot(object)
    def run(self, job: _Job) -> None:
        try:
            result = job.fn(job.state)
        except Cancelled:
            self.finished.emit(job, OUTCOME_CANCELLED, None)
        except Exception as exc:  # noqa: BLE001 - every failure must reach the window
            if not _is_user_error(exc):
                log.exception("A background task failed")
            self.finished.emit(job, OUTCOME_FAILED, exc)
        else:
            self.finished.emit(job, OUTCOME_DONE, result)


def _is_user_error(exc: BaseException) -> bool:
    return isinstance(exc, GpiError)


class _Current:
    """The running task's state, shared with the clean-up that runs when the runner is destroyed."""

    state: QtTaskState | None = None


def _thread_stopper(thread: QThread, current: _Current) -> Callable[..., None]:
    def stop(*_args: Any) -> None:
        if current.state is not None:
            current.state.request_interruption()
        thread.quit()
        thread.wait()

    return stop


class TaskRunner(QObject):
    """One worker thread, one task at a time; every signal arrives on the main thread."""

    busy_changed = Signal(bool)
    status = Signal(str)
    progress = Signal(object)  # Progress
    partial_result = Signal(object)
    succeeded = Signal(object)  # the task's return value
    failed = Signal(object)  # the exception (a GpiError carries the plain sentence)
    cancelled = Signal()

    _submit = Signal(object)

    def __init__(self, name: str = "gpi-worker", parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread = QThread(self)
        self._thread.setObjectName(name)
        self._worker = _Worker()
        self._worker.moveToThread(self._thread)
        self._submit.connect(self._worker.run)
        self._worker.finished.connect(self._on_finished)
        # Connected before anyone else can connect: the task's own handlers hear each report first.
        self.status.connect(self._tell_status)
        self.progress.connect(self._tell_progress)
        self.partial_result.connect(self._tell_partial_result)
        self._thread.finished.connect(self._worker.deleteLater)
        self._job: _Job | None = None
        self._current = _Current()
        # Deleting a running QThread aborts the program ("QThread: Destroyed while thread is still
        # running"): if the runner goes (its window deleted without shutdown), end the thread first.
        self.destroyed.connect(_thread_stopper(self._thread, self._current))
        self._thread.start()

    def is_busy(self) -> bool:
        return self._job is not None

    def start(self, fn: Callable[[QtTaskState], Any], handlers: Handlers | None = None) -> QtTaskState:
        """Run `fn(state)` in the worker thread. Raises RuntimeError while another task runs.

        `handlers` hear this task's reports and its end (before the runner's own signals);
        an `Operation` is the usual way to give them.
        """
        if self._job is not None:
            raise RuntimeError("a task is already running")
        if not self._thread.isRunning():
            raise RuntimeError("the worker thread has been shut down")
        state = QtTaskState()
        state.status.connect(self.status)
        state.progress.connect(self.progress)
        state.partial_result.connect(self.partial_result)
        self._job = _Job(fn, state, handlers or Handlers())
        self._current.state = state
        self.busy_changed.emit(True)
        self._submit.emit(self._job)
        return state

    def cancel(self) -> None:
        if self._job is not None:
            self._job.state.request_interruption()

    def _handlers(self) -> Handlers:
        # A report is always delivered before its task's end (Qt queues both in order), so the
        # running job is the one that sent it.
        return self._job.handlers if self._job is not None else Handlers()

    @Slot(str)
    def _tell_status(self, text: str) -> None:
        self._handlers().status(text)

    @Slot(object)
    def _tell_progress(self, progress: Progress) -> None:
        self._handlers().progress(progress)

    @Slot(object)
    def _tell_partial_result(self, result: Any) -> None:
        self._handlers().partial_result(result)

    @Slot(object, str, object)
    def _on_finished(self, job: _Job, outcome: str, payload: Any) -> None:
        if job is not self._job:
            return
        self._job = None
        self._current.state = None
        self.busy_changed.emit(False)
        handlers = job.handlers
        handlers.ended()
        if outcome == OUTCOME_DONE:
            handlers.succeeded(payload)
            self.succeeded.emit(payload)
        elif outcome == OUTCOME_CANCELLED:
            handlers.cancelled()
            self.cancelled.emit()
        else:
            handlers.failed(payload)
            self.failed.emit(payload)

    def shutdown(self, timeout_ms: int = -1) -> bool:
        """Ask the running task to stop, end the thread and wait for it; True when it has ended."""
        self.cancel()
        self._thread.quit()
        finished = self._thread.wait() if timeout_ms < 0 else self._thread.wait(timeout_ms)
        return bool(finished)


class Operation:
    """One task on a `TaskRunner`, started with handlers of its own.

        Operation(runner, export).on_progress(show).success(done).failure(failed).start()

    Only this task's reports reach its handlers. When it ends, `on_end`'s handler runs
    first, then exactly one of success (the return value), failure (the exception) and
    cancelled. `start` refuses, runs nothing and returns False while the runner is busy
    with any task, this one included: a second click cannot start a second run.
    """

    def __init__(self, runner: TaskRunner, fn: Callable[[QtTaskState], Any]) -> None:
        self._runner = runner
        self._fn = fn
        self._handlers = Handlers(ended=self._ended)
        self._on_end: Callable[[], None] = _ignore
        self._running = False

    @property
    def running(self) -> bool:
        """True from a successful `start` until the handlers of its end have been called."""
        return self._running

    def on_status(self, fn: Callable[[str], None]) -> "Operation":
        self._handlers.status = fn
        return self

    def on_progress(self, fn: Callable[[Progress], None]) -> "Operation":
        self._handlers.progress = fn
        return self

    def on_partial_result(self, fn: Callable[[Any], None]) -> "Operation":
        self._handlers.partial_result = fn
        return self

    def on_end(self, fn: Callable[[], None]) -> "Operation":
        self._on_end = fn
        return self

    def success(self, fn: Callable[[Any], None]) -> "Operation":
        self._handlers.succeeded = fn
        return self

    def failure(self, fn: Callable[[BaseException], None]) -> "Operation":
        self._handlers.failed = fn
        return self

    def on_cancelled(self, fn: Callable[[], None]) -> "Operation":
        self._handlers.cancelled = fn
        return self

    def start(self) -> bool:
        """Start the task in the runner's thread; False (nothing started) while the runner is busy."""
        if self._runner.is_busy():
            return False
        self._runner.start(self._fn, self._handlers)
        self._running = True
        return True

    def cancel(self) -> None:
        """Ask this task to stop (its cancelled or failure handler follows); nothing when it is not running."""
        if self._running:
            self._runner.cancel()

    def _ended(self) -> None:
        self._running = False
        self._on_end()


class BackgroundCalls(QObject):
    """Short, uncancellable calls on daemon threads; callbacks run on the main thread."""

    _done = Signal(object, object)  # callback, value
    pending_changed = Signal(int)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pending = 0
        self._threads: set[threading.Thread] = set()
        self._done.connect(self._deliver)

    @property
    def pending(self) -> int:
        return self._pending

    def call(
        self,
        fn: Callable[[], Any],
        on_result: Callable[[Any], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._pending += 1
        self.pending_changed.emit(self._pending)

        def target() -> None:
            try:
                value = fn()
            except Exception as exc:  # noqa: BLE001 - reported to the window
                if not _is_user_error(exc):
                    log.exception("A background call failed")
                self._emit(on_error, exc)
            else:
                self._emit(on_result, value)
            finally:
                self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=target, name="gpi-background-call", daemon=True)
        self._threads.add(thread)
        thread.start()

    def wait(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` in all for the calls still out; True when none is left.

        The window waits before it goes: a daemon thread still inside a C++
        library when the interpreter shuts down can abort the whole process.
        A call that does not come back in time (a keyring waiting to be
        unlocked) is left behind rather than holding the window open.
        """
        deadline = time.monotonic() + timeout_s
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in list(self._threads))

    def _emit(self, callback: Callable[[Any], None], value: Any) -> None:
        try:
            self._done.emit(callback, value)
        except RuntimeError:
            pass  # the window was closed while the call was out; nobody is waiting for it

    @Slot(object, object)
    def _deliver(self, callback: Callable[[Any], None], value: Any) -> None:
        self._pending -= 1
        try:
            callback(value)
        finally:
            self.pending_changed.emit(self._pending)
