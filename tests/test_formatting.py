"""Sizes and durations: the one wording core's messages, the window and the command line share."""

from __future__ import annotations

from gpi_desktop.core.vocabulary.formatting import human_bytes, human_duration


def test_durations_read_to_the_second_under_an_hour_and_to_the_minute_above():
    assert [human_duration(s) for s in (0, 59.4, 61, 89, 3599, 3600 * 2 + 59)] == [
        "0 s",
        "59 s",
        "1 min 01 s",
        "1 min 29 s",
        "59 min 59 s",
        "2 h 00 min",
    ]
    assert human_duration(-3) == "0 s"
    assert human_duration(None) == "unknown"


def test_sizes_are_decimal_with_one_decimal_from_a_kilobyte_up():
    assert [human_bytes(n) for n in (0, 512, 999, 1_500, 999_949, 1_500_000, 16_060_000_000, 3.2e15)] == [
        "0 bytes",
        "512 bytes",
        "999 bytes",
        "1.5 KB",
        "999.9 KB",
        "1.5 MB",
        "16.1 GB",
        "3200.0 TB",
    ]
    assert human_bytes(None) == "unknown"
