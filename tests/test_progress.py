"""Progress lines a person reads: a percentage and an ETA where the total is known."""

from __future__ import annotations

import logging

import pytest

import tap_copernica.progress as progress_module
from tap_copernica.progress import RunProgress, duration


def test_durations_read_at_a_glance() -> None:
    assert [duration(s) for s in (0.4, 42, 185, 7620)] == [
        "0 s",
        "42 s",
        "3 min 05 s",
        "2 h 07 min",
    ]


def test_progress_lines_give_share_and_time_left(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = {"now": 1000.0}
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: clock["now"])
    progress = RunProgress(logging.getLogger("progress-test"), interval=0)
    with caplog.at_level(logging.INFO, logger="progress-test"):
        progress.position("profiles", 0, 10_000)
        clock["now"] += 10
        progress.position("profiles", 2_500, 10_000)  # 250 IDs a second
        progress.record("profiles", 1000)
    line = caplog.messages[-1]
    assert "25% of the ID range, about 30 s left" in line
    clock["now"] += 30
    progress.position("profiles", 10_000, 10_000)
    with caplog.at_level(logging.INFO, logger="progress-test"):
        progress.record("profiles", 1000)
    assert "100% of the ID range" in caplog.messages[-1]
    assert "left" not in caplog.messages[-1]


def test_a_stream_without_a_known_total_shows_no_share(caplog: pytest.LogCaptureFixture) -> None:
    progress = RunProgress(logging.getLogger("progress-test"), interval=0)
    with caplog.at_level(logging.INFO, logger="progress-test"):
        progress.record("ms_clicks", 1000)
    assert "% of" not in caplog.messages[-1]
