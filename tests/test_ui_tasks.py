"""The worker thread: core's TaskState as Qt signals, one task at a time, cancel, failures, shutdown;
operations, each with handlers of its own."""

from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtCore import QThread

from gpi_desktop.core.vocabulary.errors import Cancelled, PromptFileError
from gpi_desktop.core.vocabulary.progress import Progress, check_cancel
from gpi_desktop.ui.shared.tasks import BackgroundCalls, Operation, TaskRunner


@pytest.fixture
def runner(qtbot):
    r = TaskRunner("test-worker")
    yield r
    assert r.shutdown(10_000)


def test_progress_and_results_arrive_on_the_main_thread_in_order(qtbot, runner):
    seen = []
    main = QThread.currentThread()
    worker_threads = []

    def task(state):
        worker_threads.append(threading.current_thread())
        for i in range(5):
            state.set_partial_result(i)
            state.set_progress(Progress(i + 1, 5, tokens_per_second=10.0))
        state.set_status("almost")
        return "done"

    runner.partial_result.connect(lambda r: seen.append(("result", r, QThread.currentThread() is main)))
    runner.progress.connect(lambda p: seen.append(("progress", p.done, QThread.currentThread() is main)))
    with qtbot.waitSignal(runner.succeeded, timeout=10_000) as blocker:
        runner.start(task)
    assert blocker.args == ["done"]
    assert worker_threads[0] is not threading.main_thread()
    assert [s[1] for s in seen if s[0] == "result"] == [0, 1, 2, 3, 4]
    assert [s[1] for s in seen if s[0] == "progress"] == [1, 2, 3, 4, 5]
    assert all(on_main for *_, on_main in seen)
    assert not runner.is_busy()


def test_only_one_task_runs_at_a_time(qtbot, runner):
    release = threading.Event()
    runner.start(lambda state: release.wait(10))
    with pytest.raises(RuntimeError):
        runner.start(lambda state: None)
    with qtbot.waitSignal(runner.succeeded, timeout=10_000):
        release.set()
    runner.start(lambda state: None)  # free again
    qtbot.waitUntil(lambda: not runner.is_busy(), timeout=10_000)


def test_cancel_sets_the_flag_the_task_polls_and_reports_cancelled(qtbot, runner):
    steps = []

    def task(state):
        for i in range(10_000):
            check_cancel(state)
            steps.append(i)
            state.set_partial_result(i)
            time.sleep(0.002)
        return "never"

    runner.start(task)
    qtbot.waitUntil(lambda: len(steps) >= 3, timeout=10_000)
    with qtbot.waitSignal(runner.cancelled, timeout=10_000):
        runner.cancel()
    assert len(steps) < 10_000
    assert not runner.is_busy()


def test_a_user_error_reaches_the_window_as_the_exception(qtbot, runner):
    def task(state):
        raise PromptFileError("The prompts file is empty.")

    with qtbot.waitSignal(runner.failed, timeout=10_000) as blocker:
        runner.start(task)
    assert isinstance(blocker.args[0], PromptFileError)
    assert str(blocker.args[0]) == "The prompts file is empty."


def test_busy_changes_are_signalled(qtbot, runner):
    states = []
    runner.busy_changed.connect(states.append)
    with qtbot.waitSignal(runner.succeeded, timeout=10_000):
        runner.start(lambda state: 1)
    assert states == [True, False]


def _recorded(runner, fn, seen: list) -> Operation:
    """An operation whose every handler notes what it was told in `seen`."""
    return (
        Operation(runner, fn)
        .on_status(lambda text: seen.append(("status", text)))
        .on_progress(lambda progress: seen.append(("progress", progress.done)))
        .on_partial_result(lambda result: seen.append(("partial", result)))
        .on_end(lambda: seen.append(("end",)))
        .success(lambda value: seen.append(("success", value)))
        .failure(lambda error: seen.append(("failure", error)))
        .on_cancelled(lambda: seen.append(("cancelled",)))
    )


def test_an_operation_hears_its_reports_then_its_end_then_its_result(qtbot, runner):
    seen = []

    def task(state):
        state.set_status("working")
        state.set_progress(Progress(1, 2))
        state.set_partial_result("first")
        return 42

    operation = _recorded(runner, task, seen)
    with qtbot.waitSignal(runner.succeeded, timeout=10_000):
        assert operation.start()
        assert operation.running
    assert seen == [("status", "working"), ("progress", 1), ("partial", "first"), ("end",), ("success", 42)]
    assert not operation.running


def test_a_failure_handler_gets_the_error_and_the_success_handler_is_not_called(qtbot, runner):
    seen = []

    def task(state):
        raise PromptFileError("The prompts file is empty.")

    with qtbot.waitSignal(runner.failed, timeout=10_000):
        _recorded(runner, task, seen).start()
    assert [entry[0] for entry in seen] == ["end", "failure"]
    error = seen[1][1]
    assert isinstance(error, PromptFileError) and str(error) == "The prompts file is empty."


def test_a_cancelled_operation_ends_in_its_cancelled_handler(qtbot, runner):
    seen = []
    started = threading.Event()

    def task(state):
        started.set()
        while True:
            check_cancel(state)
            time.sleep(0.002)

    operation = _recorded(runner, task, seen)
    operation.start()
    assert started.wait(10)
    with qtbot.waitSignal(runner.cancelled, timeout=10_000):
        operation.cancel()
    assert seen == [("end",), ("cancelled",)]


def test_a_second_start_while_one_runs_is_refused_and_hears_nothing_of_the_first(qtbot, runner):
    release = threading.Event()
    first, second = [], []

    def slow(state):
        release.wait(10)
        state.set_progress(Progress(1, 1))
        return "first"

    ran = []
    running = _recorded(runner, slow, first)
    assert running.start()
    refused = _recorded(runner, lambda state: ran.append(True), second)
    assert not refused.start()
    assert not running.start()  # the same operation twice is refused too
    assert not refused.running
    refused.cancel()  # not running: asks nothing of the runner
    with qtbot.waitSignal(runner.succeeded, timeout=10_000):
        release.set()
    assert first == [("progress", 1), ("end",), ("success", "first")]
    assert second == [] and ran == []
    assert refused.start()  # free again
    qtbot.waitUntil(lambda: not refused.running, timeout=10_000)
    assert ran == [True] and second == [("end",), ("success", None)]


def test_an_operation_without_handlers_runs_and_the_runner_still_signals(qtbot, runner):
    with qtbot.waitSignal(runner.succeeded, timeout=10_000) as blocker:
        Operation(runner, lambda state: state.set_progress(Progress(1, 1)) or "ok").start()
    assert blocker.args == ["ok"]


def test_shutdown_stops_a_running_task_and_ends_the_thread(qtbot):
    runner = TaskRunner("test-shutdown")
    started = threading.Event()

    def task(state):
        started.set()
        while True:
            if state.is_interruption_requested():
                raise Cancelled()
            time.sleep(0.005)

    runner.start(task)
    assert started.wait(10)
    assert runner.shutdown(10_000)
    assert not runner._thread.isRunning()


def test_background_calls_deliver_results_and_errors_on_the_main_thread(qtbot):
    calls = BackgroundCalls()
    main = QThread.currentThread()
    got = []
    calls.call(
        lambda: threading.current_thread().name,
        lambda v: got.append((v, QThread.currentThread() is main)),
        lambda e: got.append(("error", e)),
    )
    calls.call(
        lambda: 1 / 0,
        lambda v: got.append(v),
        lambda e: got.append((type(e).__name__, QThread.currentThread() is main)),
    )
    qtbot.waitUntil(lambda: calls.pending == 0, timeout=10_000)
    assert ("gpi-background-call", True) in got
    assert ("ZeroDivisionError", True) in got


def test_deleting_the_owner_of_a_busy_runner_stops_its_thread_instead_of_aborting(qtbot):
    from PySide6.QtCore import QObject
    from shiboken6 import Shiboken

    owner = QObject()
    runner = TaskRunner("test-owned", owner)
    thread = runner._thread
    started = threading.Event()
    stopped = threading.Event()

    def task(state):
        started.set()
        while not state.is_interruption_requested():
            time.sleep(0.005)
        stopped.set()
        raise Cancelled()

    runner.start(task)
    assert started.wait(10)
    Shiboken.delete(owner)  # what Qt does when a window that owns a runner is deleted
    assert stopped.is_set()
    assert not Shiboken.isValid(thread)


def test_wait_lets_calls_finish_but_does_not_hang_on_one_that_never_returns(qtbot):
    calls = BackgroundCalls()
    release = threading.Event()
    calls.call(lambda: time.sleep(0.2), lambda v: None, lambda e: None)
    assert calls.wait(10)
    calls.call(lambda: release.wait(30), lambda v: None, lambda e: None)  # a keyring waiting to be unlocked
    start = time.monotonic()
    assert not calls.wait(0.3)
    assert time.monotonic() - start < 2
    release.set()
    assert calls.wait(10)
    qtbot.waitUntil(lambda: calls.pending == 0, timeout=10_000)


def test_closing_the_window_stops_model_checks_and_waits_for_calls_still_out(qtbot, make_window):
    window = make_window()
    window.model_panel.set_model("another/model")  # starts the debounce of a new check
    assert window.model_panel.is_checking()
    window.close()
    assert not window.isVisible()
    assert not window.model_panel._debounce.isActive()  # no new check starts after the window is gone
    assert all(not t.is_alive() for t in window.calls._threads)


def test_an_operation_in_the_background_hears_its_reports_its_end_and_its_result_on_the_main_thread(qtbot):
    calls = BackgroundCalls()
    main = QThread.currentThread()
    heard = []

    def task(state):
        state.set_status("reading")
        state.set_progress(Progress(1, 1))
        return 42

    operation = (
        Operation(calls, task)
        .on_status(lambda text: heard.append(("status", text, QThread.currentThread() is main)))
        .on_progress(lambda p: heard.append(("progress", p.done, QThread.currentThread() is main)))
        .on_end(lambda: heard.append(("end", None, QThread.currentThread() is main)))
        .success(lambda value: heard.append(("success", value, QThread.currentThread() is main)))
    )
    assert operation.start()
    qtbot.waitUntil(lambda: calls.pending == 0, timeout=10_000)
    assert heard == [("status", "reading", True), ("progress", 1, True), ("end", None, True), ("success", 42, True)]
    assert not operation.running


def test_a_background_operation_is_cancelled_through_its_state(qtbot):
    calls = BackgroundCalls()
    started, ended = threading.Event(), []

    def task(state):
        started.set()
        while not state.is_interruption_requested():
            time.sleep(0.005)
        check_cancel(state)

    operation = Operation(calls, task).on_cancelled(lambda: ended.append("cancelled")).failure(ended.append)
    operation.start()
    assert started.wait(10)
    operation.cancel()
    qtbot.waitUntil(lambda: calls.pending == 0, timeout=10_000)
    assert ended == ["cancelled"]


def test_background_calls_run_on_a_bounded_number_of_threads_and_all_finish(qtbot):
    calls = BackgroundCalls(max_threads=2)
    running, most, lock, release = [0], [0], threading.Lock(), threading.Event()
    results = []

    def task():
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(10)
        with lock:
            running[0] -= 1
        return threading.current_thread().name

    for _ in range(6):
        calls.call(task, results.append, results.append)
    assert len(calls._threads) == 2
    qtbot.waitUntil(lambda: running[0] == 2, timeout=10_000)  # two at once, the other four wait their turn
    release.set()
    assert calls.wait(10)
    qtbot.waitUntil(lambda: calls.pending == 0, timeout=10_000)
    assert results == ["gpi-background-call"] * 6 and most[0] == 2
