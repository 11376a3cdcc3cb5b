"""Fault suite: cfv as separate processes (gateway, relay, two workers) under a load of half sync, half async
writes, with one fault injected per scenario; every acknowledged write is then checked against the value history
and the change events.

Run: ``.venv/bin/python bench/chaos.py [--profile short|long] [--only NAME ...]``. The short profile runs in CI
(``.ci/run``, about two minutes); the long one (``--profile long``, about fifteen) loads harder, for longer,
and repeats the faults.

Scenarios: ``worker-kill`` (kill -9 of every worker, restarted a second later), ``relay-kill``,
``gateway-kill`` (mid-request), ``rabbitmq-restart`` (``rabbitmqctl stop_app`` / ``start_app``),
``postgres-restart`` (``pg_ctlcluster ... restart``), ``crash-loop`` (the workspace's lock held by a long
transaction while the workers are killed again and again, then released) and ``poison`` (messages no worker can
apply, published mid-load). Each writes its own subjects: one stream of increasing values per subject, each
write sent once its predecessor was answered.

Printed per scenario: writes sent and acknowledged (200 or 202), acknowledged writes lost, values applied
twice, subjects whose history is out of order, events missing and events out of order per key (first copies;
duplicates are allowed, at least once), 500 and 503 answers, the seconds from the end of the fault (the
process restarted, the dependency back, the lock released) to the first answer applying a write sent after
it, and the dead-letter queue's depth. It exits 1 if anything acknowledged was lost, doubled or reordered, an
event is missing or out of order, any answer was a 500, or the dead-letter queue holds anything but the
poison. Restarting RabbitMQ and PostgreSQL needs the right to (root on this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import orjson
from cfv.broker import topology
from cfv.store.accounts import issue_key
from cfv.store.migrate import apply_migrations
from cfv.store.queries import query
from cfv_schemas.signing import sign_message
from e2e import ADMIN_DSN, fresh_database, fresh_vhost, machine

ROOT = Path(__file__).resolve().parent.parent
DSN = ADMIN_DSN.rsplit("/", 1)[0] + "/cfv_chaos"
AMQP = "amqp://guest:guest@127.0.0.1:5672/cfv_chaos"
PORT = 18090
BASE = f"http://127.0.0.1:{PORT}"


@dataclass(frozen=True)
class Profile:
    streams: int  # subjects written at once, one stream each
    before: float  # seconds of load before the fault
    after: float  # seconds of load after it
    repeats: int  # times the fault is injected
    crash_loop_kills: int


PROFILES = {"short": Profile(streams=8, before=2.0, after=4.0, repeats=1, crash_loop_kills=4),
            "long": Profile(streams=32, before=10.0, after=30.0, repeats=5, crash_loop_kills=12)}


class Service:
    """cfv's processes, each started, killed and restarted by role."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        role = name.split("-")[0]
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("CFV_")},
               "CFV_DATABASE_URL": DSN, "CFV_AMQP_URL": AMQP, "CFV_HTTP_PORT": str(PORT), "CFV_LOG_LEVEL": "WARNING",
               "CFV_DB_POOL_SIZE": "4", "CFV_RATE_LIMIT_WRITES": str(10**9),
               "CFV_RATE_LIMIT_PREFIX": f"cfv-chaos:{os.getpid()}:{time.time()}", "CFV_WRITE_TIMEOUT": "5"}
        with (self.log_dir / f"{name}.log").open("ab") as out:
            self.procs[name] = subprocess.Popen([sys.executable, "-m", "cfv", role], env=env, cwd=ROOT,  # noqa: S603
                                                stdout=out, stderr=subprocess.STDOUT)

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()

    def workers(self) -> list[str]:
        return sorted(name for name in self.procs if name.startswith("worker"))

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


@dataclass
class Write:
    subject: int
    value: int
    sync: bool
    sent_at: float
    status: int | None = None  # None: no answer (connection lost)
    answered_at: float = 0.0
    operation: uuid.UUID | None = None

    @property
    def acked(self) -> bool:
        return self.status in (200, 202)


@dataclass
class Load:
    """One stream per subject, writing 1, 2, 3... in order, every other write waiting for its outcome."""

    http: aiohttp.ClientSession
    key: str
    field_id: int
    subjects: list[int]
    writes: list[Write] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        await asyncio.gather(*(self._stream(s) for s in self.subjects))

    def stop(self) -> None:
        self._stop.set()

    async def _stream(self, subject: int) -> None:
        value = 0
        while not self._stop.is_set():
            value += 1
            write = Write(subject, value, sync=value % 2 == 0, sent_at=time.monotonic())
            self.writes.append(write)
            headers = {"X-API-Key": self.key, "Content-Type": "application/json"}
            if not write.sync:
                headers["Prefer"] = "respond-async"
            body = {"custom_field_value": {"subject_type": "Story", "subject_id": subject,
                                           "custom_field_id": self.field_id, "value": value}}
            try:
                async with self.http.post(f"{BASE}/api/v1/custom_field_values", data=orjson.dumps(body),
                                          headers=headers, timeout=aiohttp.ClientTimeout(total=20)) as answer:
                    write.status = answer.status
                    write.answered_at = time.monotonic()
                    data = await answer.json(content_type=None)
                    if answer.status == 202:
                        write.operation = uuid.UUID(data["operation"]["id"])
            except (TimeoutError, aiohttp.ClientError, ValueError):
                await asyncio.sleep(0.2)  # the gateway is away: a client would back off too
            if write.status == 503:
                await asyncio.sleep(0.2)


class Events:
    """Every change event, from a durable queue bound to ``cfv.events`` (it outlives a broker restart), consumed
    by a loop that connects again whenever its connection is lost (not aio-pika's robust connection, whose
    restored consumer can be lost while a restarted broker's quorum queue elects its leader)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._consume())
        await asyncio.wait_for(self._ready.wait(), 30)

    async def _consume(self) -> None:
        while True:
            try:
                connection = await aio_pika.connect(AMQP)
                async with connection:
                    channel = await connection.channel()
                    exchange = await channel.declare_exchange(topology.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC,
                                                              durable=True)
                    queue = await channel.declare_queue("chaos.events", durable=True,
                                                        arguments={"x-queue-type": "quorum"})
                    await queue.bind(exchange, routing_key="*.*.*.*")  # value events only
                    async with queue.iterator() as messages:
                        self._ready.set()
                        async for message in messages:
                            self.received.append(orjson.loads(message.body))
                            await message.ack()
            except asyncio.CancelledError:
                raise
            except Exception:  # the broker went away, or is not ready yet: connect again
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@dataclass
class Verdict:
    name: str
    sent: int = 0
    acked: int = 0
    lost: int = 0
    twice: int = 0
    reordered: int = 0
    events_missing: int = 0
    events_reordered: int = 0
    errors_500: int = 0
    answers_503: int = 0
    recovery: float | None = None
    dead_letters: int = 0
    expected_dead: int = 0
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.twice or self.reordered or self.events_missing or self.events_reordered
                    or self.errors_500 or self.dead_letters != self.expected_dead or self.acked == 0)

    def line(self) -> str:
        recovery = f"{self.recovery:6.2f}" if self.recovery is not None else "     -"
        return (f"{self.name:<18}{self.sent:>6}{self.acked:>6}{self.lost:>5}{self.twice:>6}{self.reordered:>6}"
                f"{self.events_missing:>8}{self.events_reordered:>8}{self.errors_500:>5}{self.answers_503:>5}"
                f"{recovery:>9}{self.dead_letters:>5}  {'ok' if self.ok else 'FAILED'}")


HEADER = (f"{'scenario':<18}{'sent':>6}{'acked':>6}{'lost':>5}{'twice':>6}{'order':>6}{'ev.miss':>8}"
          f"{'ev.ord':>8}{'500':>5}{'503':>5}{'recover':>9}{'DLQ':>5}")


class Chaos:
    """The service, its load and its faults."""

    def __init__(self, profile: Profile, log_dir: Path) -> None:
        self.profile = profile
        self.service = Service(log_dir)
        self.events = Events()
        self.key = ""
        self.workspace_id = 0
        self.field_id = 0
        self._next_subject = 1
        self.fault_over = 0.0  # when the last fault ended (a process restarted, a dependency back, a lock released)

    async def setup(self) -> None:
        await fresh_database("cfv_chaos")
        await asyncio.to_thread(apply_migrations, DSN)
        await fresh_vhost("cfv_chaos")
        db = await asyncpg.connect(DSN)
        self.workspace_id = await db.fetchval(query("create_workspace"), "chaos", "chaos")
        self.key = (await issue_key(db, self.workspace_id, name="chaos")).secret
        await db.close()
        for name in ("gateway", "relay", "worker-1", "worker-2"):
            self.service.start(name)
        await self.until_serving()
        async with aiohttp.ClientSession() as http, http.post(
                f"{BASE}/api/v1/custom_fields", headers={"X-API-Key": self.key},
                json={"custom_field": {"name": "n", "subject_type": "Story", "value_type": "number"}}) as answer:
            assert answer.status == 201, await answer.text()
            self.field_id = int(next(iter((await answer.json())["custom_fields"])))
        await self.events.start()

    async def until_serving(self) -> None:
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{BASE}/healthz") as answer:
                        if answer.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise RuntimeError("the gateway did not come up")

    async def scenario(self, name: str, fault: Callable[[], Awaitable[None]], *,
                       poison: int = 0) -> Verdict:
        subjects = list(range(self._next_subject, self._next_subject + self.profile.streams))
        self._next_subject += self.profile.streams
        dead_before = await self.dead_letters()
        async with aiohttp.ClientSession() as http:
            load = Load(http, self.key, self.field_id, subjects)
            running = asyncio.create_task(load.run())
            await asyncio.sleep(self.profile.before)
            await fault()
            fault_over = self.fault_over
            await asyncio.sleep(self.profile.after)
            load.stop()
            await running
        verdict = await self.verify(name, load, fault_over)
        verdict.dead_letters = await self.dead_letters() - dead_before
        verdict.expected_dead = poison
        return verdict

    async def verify(self, name: str, load: Load, fault_over: float) -> Verdict:
        verdict = Verdict(name, sent=len(load.writes), acked=sum(w.acked for w in load.writes),
                          errors_500=sum(w.status == 500 for w in load.writes),
                          answers_503=sum(w.status == 503 for w in load.writes))
        applied_after = [w.answered_at for w in load.writes if w.status == 200 and w.sent_at >= fault_over]
        verdict.recovery = min(applied_after) - fault_over if applied_after else None
        db = await asyncpg.connect(DSN)
        try:
            pending = [w.operation for w in load.writes if w.operation is not None]
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                left = await db.fetchval("SELECT count(*) FROM operations WHERE id = ANY($1::uuid[]) "
                                         "AND status = 'pending'", pending)
                if left == 0:
                    break
                await asyncio.sleep(0.2)
            subjects = sorted({w.subject for w in load.writes})
            rows = await db.fetch("SELECT subject_id, seq, (value #>> '{}')::bigint AS value FROM value_versions "
                                  "WHERE custom_field_id = $1 "
                                  "AND subject_id = ANY($2::text[]) ORDER BY subject_id, seq", self.field_id,
                                  [str(s) for s in subjects])
        finally:
            await db.close()
        history: dict[int, list[tuple[int, int]]] = {s: [] for s in subjects}
        for row in rows:
            history[int(row["subject_id"])].append((row["seq"], row["value"]))
        for subject, versions in history.items():
            values = [value for _, value in versions]
            verdict.twice += len(values) - len(set(values))
            if values != sorted(values):
                verdict.reordered += 1
                at = next(i for i in range(1, len(values)) if values[i] < values[i - 1])
                around = set(values[max(0, at - 3):at + 3])
                answers = {w.value: (w.status, "sync" if w.sync else "async") for w in load.writes
                           if w.subject == subject and w.value in around}
                verdict.details.append(f"subject {subject}: applied in the order {values[max(0, at - 3):at + 3]}; "
                                       f"answers {dict(sorted(answers.items()))}")
            acked = {w.value for w in load.writes if w.subject == subject and w.acked}
            verdict.lost += len(acked - set(values))
        await self._check_events(verdict, history)
        return verdict

    async def _check_events(self, verdict: Verdict, history: dict[int, list[tuple[int, int]]]) -> None:
        expected = {(str(s), seq) for s, versions in history.items() for seq, _ in versions}
        deadline = time.monotonic() + 30
        while True:
            first: dict[str, dict[str, Any]] = {}
            for event in self.events.received:
                data = event["data"]
                if data["custom_field_id"] == self.field_id and int(data["subject_id"]) in history:
                    first.setdefault(event["id"], event)
            seen = {(e["data"]["subject_id"], e["data"]["sequence"]) for e in first.values()}
            if expected <= seen or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        verdict.events_missing = len(expected - seen)
        if verdict.events_missing:
            db = await asyncpg.connect(DSN)
            try:
                unpublished = await db.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            finally:
                await db.close()
            verdict.details.append(f"{verdict.events_missing} events missing; {unpublished} not published by the "
                                   f"relay; {len(self.events.received)} received in all")
        order: dict[str, list[int]] = {}
        for event in first.values():  # arrival order of each event's first copy
            order.setdefault(event["data"]["subject_id"], []).append(event["data"]["sequence"])
        verdict.events_reordered = sum(sequence != sorted(sequence) for sequence in order.values())

    async def dead_letters(self) -> int:
        connection = await aio_pika.connect(AMQP)
        try:
            channel = await connection.channel()
            queue = await channel.declare_queue(topology.DEAD_LETTER_QUEUE, passive=True)
            return int(queue.declaration_result.message_count or 0)
        finally:
            await connection.close()

    # --- the faults -------------------------------------------------------------------------------------

    async def kill_workers(self) -> None:
        for _ in range(self.profile.repeats):
            names = self.service.workers()
            for name in names:
                self.service.kill(name)
            await asyncio.sleep(1.0)
            for name in names:
                self.service.start(name)
            self.fault_over = time.monotonic()
            await asyncio.sleep(2.0)

    async def kill_relay(self) -> None:
        for _ in range(self.profile.repeats):
            self.service.kill("relay")
            await asyncio.sleep(1.0)
            self.service.start("relay")
            self.fault_over = time.monotonic()
            await asyncio.sleep(2.0)

    async def kill_gateway(self) -> None:
        for _ in range(self.profile.repeats):
            self.service.kill("gateway")  # mid-request: the load keeps it busy
            await asyncio.sleep(0.5)
            self.service.start("gateway")
            self.fault_over = time.monotonic()
            await self.until_serving()
            await asyncio.sleep(2.0)

    async def restart_rabbitmq(self) -> None:
        for _ in range(self.profile.repeats):
            await _run("rabbitmqctl", "stop_app")
            await asyncio.sleep(2.0)
            await _run("rabbitmqctl", "start_app")
            await _run("rabbitmqctl", "await_startup")
            self.fault_over = time.monotonic()
            await asyncio.sleep(3.0)

    async def restart_postgres(self) -> None:
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        for _ in range(self.profile.repeats):
            await _run("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast")
            self.fault_over = time.monotonic()
            await asyncio.sleep(3.0)

    async def crash_loop(self) -> None:
        blocker = await asyncpg.connect(DSN)
        try:
            async with blocker.transaction():
                await blocker.execute("SELECT pg_advisory_xact_lock($1)", self.workspace_id)
                for _ in range(self.profile.crash_loop_kills):
                    await asyncio.sleep(1.5)  # the workers take their prefetch and wait for the lock
                    names = self.service.workers()
                    for name in names:
                        self.service.kill(name)
                    for name in names:
                        self.service.start(name)
        finally:
            await blocker.close()
            self.fault_over = time.monotonic()

    async def publish_poison(self) -> None:
        connection = await aio_pika.connect(AMQP)
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(topology.COMMANDS_EXCHANGE)
            command = {"type": "write_values", "id": str(uuid.uuid4()), "workspace_id": self.workspace_id,
                       "actor": "chaos", "accepted_at": "2026-01-01T00:00:00Z",
                       "items": [{"subject_type": "Story", "subject_id": 999_999, "custom_field_id": self.field_id,
                                  "value": 1}]}
            unknown_version = orjson.dumps({"v": 99, "commands": [command]})
            for body in (b"\xff not JSON", unknown_version):
                await exchange.publish(aio_pika.Message(body, headers=sign_message(body, self.key),
                                                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                                       routing_key=str(self.workspace_id))
        finally:
            await connection.close()
            self.fault_over = time.monotonic()


async def _run(*command: str) -> None:
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.PIPE)
    _, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {err.decode(errors='replace')}")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="short")
    parser.add_argument("--only", nargs="*", help="run only these scenarios")
    parser.add_argument("--logs", default=str(ROOT / ".chaos-logs"), help="directory for the processes' logs")
    args = parser.parse_args()
    log_dir = Path(args.logs)
    shutil.rmtree(log_dir, ignore_errors=True)
    os.makedirs(log_dir)
    for noisy in ("aio_pika", "aiormq"):  # this client's own reconnections, while the broker restarts
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    print(machine())
    print(f"profile {args.profile}: {PROFILES[args.profile]}")
    chaos = Chaos(PROFILES[args.profile], log_dir)
    scenarios: dict[str, tuple[Callable[[], Awaitable[None]], int]] = {
        "worker-kill": (chaos.kill_workers, 0), "relay-kill": (chaos.kill_relay, 0),
        "gateway-kill": (chaos.kill_gateway, 0), "rabbitmq-restart": (chaos.restart_rabbitmq, 0),
        "postgres-restart": (chaos.restart_postgres, 0), "crash-loop": (chaos.crash_loop, 0),
        "poison": (chaos.publish_poison, 2)}
    chosen = args.only or list(scenarios)
    verdicts = []
    try:
        await chaos.setup()
        print(HEADER)
        for name in chosen:
            fault, poison = scenarios[name]
            verdict = await chaos.scenario(name, fault, poison=poison)
            verdicts.append(verdict)
            print(verdict.line(), flush=True)
            for detail in verdict.details:
                print(f"    {detail}", flush=True)
    finally:
        await chaos.events.close()
        chaos.service.stop()
    failed = [v.name for v in verdicts if not v.ok]
    print(f"{len(verdicts) - len(failed)} of {len(verdicts)} scenarios held" +
          (f"; FAILED: {', '.join(failed)} (logs in {log_dir})" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
