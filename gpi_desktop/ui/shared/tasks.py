"""Background work in the window: one `Operation` kind, run by one of two executors (after Orange's
concurrent.TaskState and Anki's CollectionOp / QueryOp).

An `Operation` is a plain function `fn(state) -> result` from core with handlers of its own: its
status, progress and partial results, its end, then exactly one of success, failure and cancelled,
all heard on the main thread. The `QtTaskState` it receives turns core's progress calls into Qt
signals, which Qt queues to the main thread because their receivers live there; cancel only sets a
thread-safe flag that core polls. A window starts each operation with the handlers that belong to
it, so it never has to remember which task is running to know what a report or a failure means.

Where it runs is the executor's business:
- `TaskRunner`, one QThread that runs one operation at a time (a run, an export, a merge, a cluster
  job folder: work on the user's files, which must not overlap); a second start is refused.
- `BackgroundCalls`, a few daemon threads (at most MAX_BACKGROUND_THREADS, each ending when there is
  nothing left to do) for short reads that may block for an unknown time (a locked keyring, a model
  config read over the network, measuring the prompts): a call that never returns cannot keep the
  program from closing. `BackgroundCalls.call(fn, on_result, on_error)` is the shorthand for an
  operation that needs no state.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

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
        except Exception as exc:
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

    def accepts(self) -> bool:
        """An Operation starts here only while no task runs."""
        return self._job is None

    def submit(self, fn: Callable[[QtTaskState], Any], handlers: Handlers) -> QtTaskState:
        return self.start(fn, handlers)

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
        _tell_end(job.handlers, outcome, payload)
        if outcome == OUTCOME_DONE:
            self.succeeded.emit(payload)
        elif outcome == OUTCOME_CANCELLED:
            self.cancelled.emit()
        else:
            self.failed.emit(payload)

    def shutdown(self, timeout_ms: int = -1) -> bool:
        """Ask the running task to stop, end the thread and wait for it; True when it has ended."""
        self.cancel()
        self._thread.quit()
        finished = self._thread.wait() if timeout_ms < 0 else self._thread.wait(timeout_ms)
        return bool(finished)


MAX_BACKGROUND_THREADS = 8  # short reads at once; more wait their turn


class Executor(Protocol):
    """Where an Operation runs: `TaskRunner` or `BackgroundCalls`."""

    def accepts(self) -> bool: ...

    def submit(self, fn: Callable[[QtTaskState], Any], handlers: Handlers) -> QtTaskState: ...


class Operation:
    """One piece of background work, started with handlers of its own.

        Operation(runner, export).on_progress(show).success(done).failure(failed).start()
        Operation(calls, lambda state: read(path)).success(show).failure(say).start()

    Only this operation's reports reach its handlers. When it ends, `on_end`'s handler runs
    first, then exactly one of success (the return value), failure (the exception) and
    cancelled. On a `TaskRunner`, `start` refuses, runs nothing and returns False while the
    runner is busy with any task, this one included: a second click cannot start a second run.
    """

    def __init__(self, executor: Executor, fn: Callable[[QtTaskState], Any]) -> None:
        self._executor = executor
        self._fn = fn
        self._handlers = Handlers(ended=self._ended)
        self._on_end: Callable[[], None] = _ignore
        self._state: QtTaskState | None = None
        self._running = False

    @property
    def running(self) -> bool:
        """True from a successful `start` until the handlers of its end have been called."""
        return self._running

    def on_status(self, fn: Callable[[str], None]) -> Operation:
        self._handlers.status = fn
        return self

    def on_progress(self, fn: Callable[[Progress], None]) -> Operation:
        self._handlers.progress = fn
        return self

    def on_partial_result(self, fn: Callable[[Any], None]) -> Operation:
        self._handlers.partial_result = fn
        return self

    def on_end(self, fn: Callable[[], None]) -> Operation:
        self._on_end = fn
        return self

    def success(self, fn: Callable[[Any], None]) -> Operation:
        self._handlers.succeeded = fn
        return self

    def failure(self, fn: Callable[[BaseException], None]) -> Operation:
        self._handlers.failed = fn
        return self

    def on_cancelled(self, fn: Callable[[], None]) -> Operation:
        self._handlers.cancelled = fn
        return self

    def start(self) -> bool:
        """Start it off the main thread; False (nothing started) while its runner is busy."""
        if self._running or not self._executor.accepts():
            return False
        self._state = self._executor.submit(self._fn, self._handlers)
        self._running = True
        return True

    def cancel(self) -> None:
        """Ask it to stop (its cancelled or failure handler follows); nothing when it is not running."""
        if self._running and self._state is not None:
            self._state.request_interruption()

    def _ended(self) -> None:
        self._running = False
        self._on_end()


class BackgroundCalls(QObject):
    """Operations on a few daemon threads, any number at once; their handlers run on the main thread."""

    _done = Signal(object, str, object)  # job, outcome, result or exception
    pending_changed = Signal(int)

    def __init__(self, parent: QObject | None = None, max_threads: int = MAX_BACKGROUND_THREADS) -> None:
        super().__init__(parent)
        self._max_threads = max_threads
        self._pending = 0  # started and not yet delivered
        self._queue: deque[_Job] = deque()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Condition()
        self._done.connect(self._deliver)

    @property
    def pending(self) -> int:
        return self._pending

    def call(
        self,
        fn: Callable[[], Any],
        on_result: Callable[[Any], None],
        on_error: Callable[[BaseException], None],
    ) -> Operation:
        """`Operation(self, lambda state: fn()).success(on_result).failure(on_error)`, started."""
        operation = Operation(self, lambda _state: fn()).success(on_result).failure(on_error)
        operation.start()
        return operation

    def accepts(self) -> bool:
        return True

    def submit(self, fn: Callable[[QtTaskState], Any], handlers: Handlers) -> QtTaskState:
        state = QtTaskState()
        state.status.connect(lambda text: handlers.status(text))
        state.progress.connect(lambda progress: handlers.progress(progress))
        state.partial_result.connect(lambda result: handlers.partial_result(result))
        self._pending += 1
        self.pending_changed.emit(self._pending)
        with self._lock:
            self._queue.append(_Job(fn, state, handlers))
            if len(self._threads) < self._max_threads:
                thread = threading.Thread(target=self._work, name="gpi-background-call", daemon=True)
                self._threads.add(thread)
                thread.start()
        return state

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._threads.discard(threading.current_thread())
                    self._lock.notify_all()
                    return
                job = self._queue.popleft()
            try:
                result = job.fn(job.state)
            except Cancelled:
                self._emit(job, OUTCOME_CANCELLED, None)
            except Exception as exc:
                if not _is_user_error(exc):
                    log.exception("A background call failed")
                self._emit(job, OUTCOME_FAILED, exc)
            else:
                self._emit(job, OUTCOME_DONE, result)

    def wait(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the calls still out to return; True when none is left.

        The window waits before it goes: a daemon thread still inside a C++
        library when the interpreter shuts down can abort the whole process.
        A call that does not come back in time (a keyring waiting to be
        unlocked) is left behind rather than holding the window open.
        """
        with self._lock:
            return self._lock.wait_for(lambda: not self._threads, max(0.0, timeout_s))

    def _emit(self, job: _Job, outcome: str, payload: Any) -> None:
        try:
            self._done.emit(job, outcome, payload)
        except RuntimeError:
            pass  # the window was closed while the call was out; nobody is waiting for it

    @Slot(object, str, object)
    def _deliver(self, job: _Job, outcome: str, payload: Any) -> None:
        self._pending -= 1
        try:
            _tell_end(job.handlers, outcome, payload)
        finally:
            self.pending_changed.emit(self._pending)


def _tell_end(handlers: Handlers, outcome: str, payload: Any) -> None:
    """A task's end to its handlers: `ended` first, then exactly one of succeeded, cancelled and failed."""
    handlers.ended()
    if outcome == OUTCOME_DONE:
        handlers.succeeded(payload)
    elif outcome == OUTCOME_CANCELLED:
        handlers.cancelled()
    else:
        handlers.failed(payload)
