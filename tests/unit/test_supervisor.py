"""``cfv run``'s supervisor restarts a process that exits, with a growing back-off and a log line, and keeps the
others running (issue 14, item 7). Real child processes; no services."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cfv.supervisor import Supervisor
from support import captured_logs

STEADY = [sys.executable, "-c", "import time; time.sleep(60)"]
CRASHER = [sys.executable, "-c", "import sys; sys.exit(3)"]
STUBBORN = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(60)"]


def _until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@contextmanager
def _supervising(supervisor: Supervisor) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=supervisor.run)
    thread.start()
    try:
        yield thread
    finally:
        supervisor.stop()
        thread.join(30)


def _exits(logged: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logged if e["event"] == "process exited; restarting it"]


def test_an_exited_process_is_restarted_with_growing_pauses_and_the_others_keep_running() -> None:
    supervisor = Supervisor([("steady", STEADY), ("crasher", CRASHER)], first=0.05, ceiling=0.2)
    with captured_logs() as logged, _supervising(supervisor) as thread:
        _until(lambda: supervisor.pids()["steady"] is not None)
        steady = supervisor.pids()["steady"]
        _until(lambda: len(_exits(logged)) >= 5)
        assert supervisor.pids()["steady"] == steady  # untouched
    assert not thread.is_alive()
    exits = _exits(logged)[:5]
    assert {(e["process"], e["exit_code"], e["log_level"]) for e in exits} == {("crasher", 3, "warning")}
    pauses = [e["restart_in"] for e in exits]
    assert pauses[0] <= 0.05 and pauses[2] >= 0.1 and max(pauses) <= 0.2, pauses  # doubling, jittered, capped
    started = [e for e in logged if e["event"] == "process started" and e["process"] == "crasher"]
    assert [e["restarts"] for e in started[:3]] == [0, 1, 2]


def test_a_process_that_ran_long_enough_restarts_after_the_first_pause_again() -> None:
    supervisor = Supervisor([("crasher", CRASHER)], first=0.05, ceiling=10.0, stable_after=0.0)
    with captured_logs() as logged, _supervising(supervisor):
        _until(lambda: len(_exits(logged)) >= 4)
    assert max(e["restart_in"] for e in _exits(logged)) <= 0.05


def test_stop_asks_every_process_to_stop_then_kills_what_does_not() -> None:
    supervisor = Supervisor([("steady", STEADY), ("stubborn", STUBBORN)], stop_timeout=1.0)
    with captured_logs() as logged, _supervising(supervisor):
        _until(lambda: all(supervisor.pids().values()))
        pids = supervisor.pids()
        time.sleep(0.5)  # the stubborn one has set its handler
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid or 0, 0)  # gone, and reaped
    killed = [e for e in logged if e["log_level"] == "warning"]
    assert [(e["event"], e["pid"]) for e in killed] == [("process did not stop in time; killing it", pids["stubborn"])]


def test_the_processes_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """Killed with SIGKILL, the supervisor cannot stop its processes: the kernel does (SIGINT), rather than leave
    them running unsupervised."""
    log = tmp_path / "supervisor.log"
    script = f"from cfv.supervisor import Supervisor; Supervisor([('steady', {STEADY!r})]).run()"
    with log.open("wb") as out:
        supervisor = subprocess.Popen([sys.executable, "-c", script],  # noqa: S603 (our own script)
                                      stdout=out, stderr=subprocess.STDOUT)
    try:
        _until(lambda: "process started" in log.read_text())
        pid = int(re.search(r"pid=(\d+)", log.read_text()).group(1))  # type: ignore[union-attr]
        assert _alive(pid)
        supervisor.kill()
        supervisor.wait()
        _until(lambda: not _alive(pid), timeout=10)
    finally:
        supervisor.kill()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_process_exiting_with_a_fatal_code_stops_everything_instead_of_restarting() -> None:
    """Status 78: a precondition restarting will not meet (the process printed which): cfv run stops."""
    unmet = [sys.executable, "-c", "import sys; sys.exit(78)"]
    supervisor = Supervisor([("steady", STEADY), ("unmet", unmet)], first=0.05, ceiling=0.2, fatal_exit_codes={78})
    began = time.monotonic()
    with captured_logs() as logged:
        assert supervisor.run() == 78
    assert time.monotonic() - began < 20
    assert not _exits(logged), "nothing restarted"
    assert [(e["process"], e["exit_code"]) for e in logged if e["event"].startswith("process cannot run")] == [
        ("unmet", 78)]
    assert supervisor.pids() == {"steady": supervisor.pids()["steady"], "unmet": None}
