"""Ignored events are logged at most once per interval per reason, and what was held back is
counted in the next line."""

from __future__ import annotations

import logging

import pytest

from khook.core.outcome import Outcome
from khook.core.reasons import Code, Reason
from khook.logs import _FIELDS
from khook.recorder import LogRecorder
from khook.sampling import MAX_KEYS, OncePer
from tests.support.clock import FakeClock


def test_once_per_interval_per_key_with_the_count_held_back() -> None:
    clock = FakeClock()
    sampler = OncePer(60.0, clock)
    assert sampler.due("no-rule") == (True, 0)
    assert sampler.due("no-rule") == (False, 0)
    assert sampler.due("no-hook") == (True, 0), "each key has its own interval"
    clock.advance(59)
    assert sampler.due("no-rule") == (False, 0)
    clock.advance(1)
    assert sampler.due("no-rule") == (True, 2), "two were held back since the last line"
    assert sampler.due("no-rule") == (False, 0)


def test_the_keys_remembered_are_bounded() -> None:
    sampler = OncePer(60.0, FakeClock())
    for i in range(MAX_KEYS):
        assert sampler.due(f"k{i}")[0]
    assert sampler.due("one-too-many") == (False, 0)


def test_ignored_events_log_at_info_once_a_minute_per_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    recorder = LogRecorder(clock)
    no_rule = Outcome(ignored=Reason(Code.NO_RULE, "Pod default/x shows nothing failing"))
    deleted = Outcome(ignored=Reason(Code.DELETED, "Pod was deleted"))
    caplog.set_level(logging.DEBUG, logger="khook.pipeline")
    for outcome in (no_rule, no_rule, no_rule, deleted):
        recorder.record(outcome)
    clock.advance(60)
    recorder.record(no_rule)
    lines = [(r.levelno, getattr(r, _FIELDS)) for r in caplog.records]
    assert [(level, f["reason"]) for level, f in lines] == [
        (logging.INFO, "no-rule"),
        (logging.DEBUG, "no-rule"),
        (logging.DEBUG, "no-rule"),
        (logging.INFO, "deleted"),
        (logging.INFO, "no-rule"),
    ]
    assert lines[-1][1]["heldBack"] == 2 and lines[0][1]["why"].startswith("Pod default/x")
    assert "heldBack" not in lines[1][1]
