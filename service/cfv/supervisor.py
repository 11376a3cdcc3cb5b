"""``cfv run``'s supervisor: keeps gateway, relay and workers running, each in its own process.

A process that exits (a crash, a kill, an out-of-memory kill) is started again after a back-off that grows
while it keeps exiting (jittered, up to ``ceiling``; back to ``first`` once it has run ``stable_after``
seconds), with a log line each time; the others keep serving. On :meth:`Supervisor.stop` every process gets
SIGINT (each one's graceful stop) and, after ``stop_timeout`` seconds, SIGKILL; should the supervisor itself
be killed, they get SIGINT from the kernel.

Hand-written rather than supervisord or honcho: those are configured by files and own the terminal; this is
forty lines that the ``cfv`` command can carry, and production runs each role in its own container anyway.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from cfv.faults import Backoff

log = structlog.get_logger("cfv.run")


@dataclass
class _Child:
    name: str
    command: list[str]
    backoff: Backoff
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float = 0.0
    restarts: int = field(default=0)


class Supervisor:
    """Runs ``(name, command)`` pairs as child processes and restarts those that exit, until stopped."""

    def __init__(self, commands: Sequence[tuple[str, list[str]]], *, first: float = 0.5, ceiling: float = 30.0,
                 stable_after: float = 60.0, stop_timeout: float = 30.0, tick: float = 0.1,
                 fatal_exit_codes: Collection[int] = (),
                 environments: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self._children = [_Child(name, list(command), Backoff(first, ceiling)) for name, command in commands]
        self._environments = environments or {}  # per name: variables set for that process only
        self._fatal = set(fatal_exit_codes)
        self._exit_code = 0
        self._first, self._ceiling = first, ceiling
        self._stable_after = stable_after
        self._stop_timeout = stop_timeout
        self._tick = tick
        self._stopping = False

    def pids(self) -> dict[str, int | None]:
        """The running process of each name (None while it waits to be restarted)."""
        return {c.name: c.process.pid if c.process else None for c in self._children}

    def stop(self, *_: object) -> None:
        """Ask :meth:`run` to stop every process and return (safe to call from a signal handler)."""
        self._stopping = True

    def run(self) -> int:
        """Start every process; restart those that exit until :meth:`stop`, or until one exits with a fatal
        code (a precondition restarting will not meet: its process said which); then stop them all. Returns
        0, or the fatal code."""
        for child in self._children:
            self._start(child)
        while not self._stopping:
            now = time.monotonic()
            for child in self._children:
                self._watch(child, now)
            time.sleep(self._tick)
        self._stop_all()
        return self._exit_code

    def _start(self, child: _Child) -> None:
        # Its own process group: a terminal's Ctrl-C reaches the supervisor alone, which passes it on once.
        child.process = subprocess.Popen(child.command, process_group=0,  # noqa: S603 (our own command lines)
                                         preexec_fn=_stop_with_parent,
                                         env={**os.environ, **self._environments.get(child.name, {})})
        child.started_at = time.monotonic()
        log.info("process started", process=child.name, pid=child.process.pid, restarts=child.restarts)

    def _watch(self, child: _Child, now: float) -> None:
        if child.process is None:
            if now >= child.restart_at:
                child.restarts += 1
                self._start(child)
            return
        code = child.process.poll()
        if code is None:
            return
        if code in self._fatal:
            log.error("process cannot run; stopping everything", process=child.name, exit_code=code)
            child.process = None
            self._exit_code = code
            self._stopping = True
            return
        if now - child.started_at >= self._stable_after:
            child.backoff = Backoff(self._first, self._ceiling)
        delay = child.backoff.next()
        log.warning("process exited; restarting it", process=child.name, pid=child.process.pid,
                    exit_code=code, restart_in=round(delay, 2))
        child.process = None
        child.restart_at = now + delay

    def _stop_all(self) -> None:
        running = [c.process for c in self._children if c.process is not None and c.process.poll() is None]
        for process in running:
            os.kill(process.pid, signal.SIGINT)
        deadline = time.monotonic() + self._stop_timeout
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("process did not stop in time; killing it", pid=process.pid)
                process.kill()
                process.wait()


_PR_SET_PDEATHSIG = 1


def _stop_with_parent() -> None:
    """In the child, before it runs: on Linux, receive SIGINT (a graceful stop) when the supervisor dies, even of
    SIGKILL, rather than run on as an orphan nobody supervises."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGINT)
