"""`gpi-desktop --self-test` drives the real window through the whole flow on the bundled demo model."""

from __future__ import annotations

from gpi_desktop.selftest import CheckFailed, Report, run_self_test


def test_the_self_test_passes_on_the_bundled_demo_model(qtbot, tmp_path, memory_keyring):
    lines = []
    report = Report(say=lines.append)
    run_self_test(tmp_path, report)
    assert report.ok, lines
    assert report.passed >= 20
    assert any("hidden_states.npy" in line for line in lines)
    assert all(line.startswith("PASS  ") for line in lines)


def test_a_failed_check_is_printed_and_stops_the_flow():
    lines = []
    report = Report(say=lines.append)
    try:
        report.check(False, "something", "because")
    except CheckFailed:
        pass
    else:
        raise AssertionError("a failed check must stop the flow")
    assert lines == ["FAIL  something: because"]
    assert not report.ok
