"""Retry pauses grow, and stop growing at their ceiling; a serving loop outlives its failures until stopped."""

from __future__ import annotations

from typing import Any

import pytest
from cfv import faults
from cfv.faults import Backoff, keep_serving


async def test_delays_double_up_to_the_ceiling() -> None:
    backoff = Backoff(first=0.001, ceiling=0.004)
    seen = []
    for _ in range(4):
        seen.append(backoff.delay)
        await backoff.pause()
    assert seen == [0.001, 0.002, 0.004, 0.004]


def test_pauses_are_jittered_between_half_and_the_whole_delay() -> None:
    backoff = Backoff(first=1.0)
    pauses = [backoff.jittered() for _ in range(200)]
    assert all(0.5 <= pause <= 1.0 for pause in pauses)
    assert len(set(pauses)) > 100  # spread, not lockstep
    assert min(pauses) < 0.6 and max(pauses) > 0.9


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def warning(self, event: str, **_: Any) -> None:
        self.lines.append(("warning", event))

    def exception(self, event: str, **_: Any) -> None:
        self.lines.append(("exception", event))


async def test_a_serving_loop_restarts_after_failures_until_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults.Backoff, "jittered", lambda self: 0.0)
    failures: list[BaseException] = [ConnectionResetError("lost"), KeyError("a bug")]
    calls = 0
    stopping = False

    async def serve() -> None:
        nonlocal calls, stopping
        calls += 1
        if failures:
            raise failures.pop(0)
        stopping = True  # asked to stop while serving: it returns, and is not run again

    log = _Log()
    await keep_serving(serve, stopping=lambda: stopping, what="relay", log=log, expected=(OSError,))
    assert calls == 3
    assert log.lines == [("warning", "relay interrupted, restarting"), ("exception", "relay failed, restarting")]
