"""End-to-end write benchmark: cfv (HTTP → RabbitMQ → worker → Postgres → events) against the plain endpoint a
user would build to get events (``baseline_server.py``), and asyncpg alone as the database's ceiling.

Run: ``.venv/bin/python bench/e2e.py [--writes N] [--bulks N] [--concurrency C] [--rounds R] [--soak]
[--profile DIR]``.

Every phase checks that each value got its change event: a queue bound to each contender's event exchange
must receive exactly one event per value written, and the time it takes after the phase's last answer is the
phase's *event lag*. A value counts as written once it is answered *and* announced: the rate a phase is judged
by (``values/s with events``, used by the ratios) divides its values by the time from its first request to its
last event; the rate of answers alone is printed beside it. CPU is read from ``/proc`` for each party (cfv's
processes, the baseline, PostgreSQL, RabbitMQ and this client) and printed per value. The contenders of a
phase take turns, ``--rounds`` times, so that the drifts of a shared machine fall on both alike. The ratios
the performance goals are stated in come last.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import loadgen
import orjson
import uvloop
from cfv.store.accounts import issue_key
from cfv.store.migrate import apply_migrations
from cfv.store.queries import query

ROOT = Path(__file__).resolve().parent.parent
ADMIN_DSN = os.environ.get("CFV_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DSN = ADMIN_DSN.rsplit("/", 1)[0] + "/cfv_bench"
RABBIT_API = "http://guest:guest@127.0.0.1:15672/api"
AMQP = "amqp://guest:guest@127.0.0.1:5672/cfv_bench"
PORT, BASELINE_PORT = 18080, 18081
SUBJECTS = 5000  # distinct subjects written in turn: most writes replace a value
OPEN_LOOP_CONNECTIONS = 64  # twice the requests in flight at 1,000/s and 30 ms


def machine() -> str:
    cpu = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Python {platform.python_version()}"


async def fresh_database(name: str) -> None:
    """An empty database ``name`` (dropped first if it exists)."""
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()


async def fresh_vhost(name: str) -> None:
    """An empty RabbitMQ virtual host ``name`` (deleted first if it exists) where guest may do anything."""
    async with aiohttp.ClientSession() as http:
        await http.delete(f"{RABBIT_API}/vhosts/{name}")
        await http.put(f"{RABBIT_API}/vhosts/{name}")
        await http.put(f"{RABBIT_API}/permissions/{name}/guest", json={"configure": ".*", "write": ".*",
                                                                       "read": ".*"})


async def prepare() -> str:
    await fresh_database("cfv_bench")
    await asyncio.to_thread(apply_migrations, DSN)
    await fresh_vhost("cfv_bench")
    db = await asyncpg.connect(DSN)
    workspace_id = await db.fetchval(query("create_workspace"), "bench", "bench")
    key = (await issue_key(db, workspace_id, name="bench")).secret
    await db.close()
    return key


def start(*args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CFV_DATABASE_URL": DSN, "CFV_AMQP_URL": AMQP, "CFV_HTTP_PORT": str(PORT),
           "CFV_LOG_LEVEL": "WARNING",
           # Rate limits are checked (their cost is part of the measure) but never reached, whatever --writes,
           # and a run does not inherit the counters of the one before (key ids restart with the database).
           "CFV_RATE_LIMIT_WRITES": str(10**9), "CFV_RATE_LIMIT_PREFIX": f"cfv-bench:{os.getpid()}"}
    return subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT)  # noqa: S603


async def until_up(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            try:
                async with http.post(url, data=b"{}"):
                    return  # any answer means it listens
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def load(total: int, concurrency: int, send: Callable[[int], Awaitable[None]]) -> tuple[float, list[float]]:
    """Run ``send(i)`` for i < total with ``concurrency`` in flight; return (seconds, latencies)."""
    latencies: list[float] = []
    counter = iter(range(total))

    async def client() -> None:
        for i in counter:
            began = time.perf_counter()
            await send(i)
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return time.perf_counter() - began, latencies


class CpuMeter:
    """CPU seconds used by each party: cfv's processes, the baseline, PostgreSQL, RabbitMQ and this client."""

    def __init__(self) -> None:
        self.procs: dict[str, int] = {}

    def _pids(self) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {name: [pid] for name, pid in self.procs.items()}
        found["postgres"], found["rabbitmq"] = [], []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm == "postgres":
                found["postgres"].append(int(entry.name))
            elif comm.startswith("beam"):
                found["rabbitmq"].append(int(entry.name))
        found["client"] = [os.getpid()]
        return found

    def sample(self) -> dict[str, float]:
        tick = os.sysconf("SC_CLK_TCK")
        usage: dict[str, float] = {}
        for name, pids in self._pids().items():
            total = 0.0
            for pid in pids:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                total += (int(fields[11]) + int(fields[12])) / tick
                if name in ("postgres", "rabbitmq"):  # and their exited children's (backends, autovacuum workers)
                    total += (int(fields[13]) + int(fields[14])) / tick
            usage[name] = total
        return usage

    def rss_mib(self, name: str) -> float:
        with open(f"/proc/{self.procs[name]}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0


METER = CpuMeter()


@dataclass
class Result:
    rate: float  # values per second, counting each value done when its event is out (if it has one)
    p50: float
    p99: float
    lag: float | None = None


@dataclass
class Events:
    """A queue bound to a contender's event exchange: counts the events each phase produced."""

    channel: aio_pika.abc.AbstractChannel
    exchanges: dict[str, str]
    queues: dict[str, aio_pika.abc.AbstractQueue] = field(default_factory=dict)

    async def bind(self) -> None:
        for who, exchange in self.exchanges.items():
            await self.channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
            queue = await self.channel.declare_queue(exclusive=True, auto_delete=True)
            await queue.bind(exchange, routing_key="*.*.*.*")  # value events only
            self.queues[who] = queue

    async def count(self, who: str) -> int:
        declared = await self.channel.declare_queue(self.queues[who].name, passive=True)
        assert declared.declaration_result.message_count is not None
        return declared.declaration_result.message_count

    async def settle(self, who: str, expected: int, since: float, patience: float = 120.0) -> float:
        """Seconds from ``since`` (the phase's last answer) until ``expected`` events arrived; then empty the
        queue. Fails loudly if an event is missing or doubled."""
        deadline = time.monotonic() + patience
        while (seen := await self.count(who)) < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{who}: {seen} events of {expected} after {patience:.0f} s")
            await asyncio.sleep(0.005)
        lag = time.perf_counter() - since
        await asyncio.sleep(0.2)  # a duplicate would arrive about now
        seen = await self.count(who)
        if seen != expected:
            raise RuntimeError(f"{who}: {seen} events for {expected} values")
        await self.queues[who].purge()
        return lag


EVENTS: Events | None = None


@dataclass
class Run:
    """One contender's share of a phase: what it wrote, how fast, and the CPU each party spent meanwhile."""

    values: int
    seconds: float
    latencies: list[float]
    cpu: dict[str, float]
    lag: float | None = None


def cpu_since(before: dict[str, float]) -> dict[str, float]:
    after = METER.sample()
    return {who: after[who] - before.get(who, 0.0) for who in after}


def report(name: str, runs: list[Run]) -> Result:
    """One line for a contender's runs (the rounds of a phase, taken together), and its CPU per value."""
    values = sum(r.values for r in runs)
    seconds = sum(r.seconds for r in runs)
    lags = [r.lag for r in runs if r.lag is not None]
    lag = sum(lags) if lags else None
    ordered = sorted(latency for r in runs for latency in r.latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    sustained = values / (seconds + (lag or 0.0))
    rounds = f", {len(runs)} rounds" if len(runs) > 1 else ""
    lag_text = "" if lag is None else (f"   events +{max(lags) * 1000:,.0f} ms: {sustained:,.0f} values/s with "
                                       "events")
    print(f"{name:<46} {values / seconds:>9,.0f} values/s   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms"
          f"   ({len(ordered)} requests, {values} values, {seconds:.1f} s{rounds}){lag_text}", flush=True)
    cpu: dict[str, float] = {}
    for r in runs:
        for who, spent in r.cpu.items():
            cpu[who] = cpu.get(who, 0.0) + spent
    parts = [f"{who} {spent / values * 1e6:,.0f}" for who, spent in cpu.items() if spent > 0.005]
    print(f"{'':<46} CPU µs per value: " + ", ".join(parts), flush=True)
    return Result(sustained, p50, p99, max(lags) if lags else None)


def split_url(url: str) -> tuple[str, str]:
    """``http://host:port/path`` as (``http://host:port``, ``/path``)."""
    scheme, _, rest = url.partition("://")
    host, _, path = rest.partition("/")
    return f"{scheme}://{host}", "/" + path


def body_of(field_id: int, i: int, per_request: int, offset: int = 0) -> bytes:
    items = [{"subject_type": "Story", "subject_id": offset + (i * per_request + j) % SUBJECTS + 1,
              "custom_field_id": field_id, "value": i} for j in range(per_request)]
    return orjson.dumps({"custom_field_value": items[0]} if per_request == 1 else {"custom_field_values": items})


async def http_run(who: str, url: str, headers: dict[str, str], field_id: int, requests: int, per_request: int,
                   concurrency: int, *, offset: int = 0) -> Run:
    """``requests`` writes of ``per_request`` values each, ``concurrency`` in flight, then their events."""
    base, path = split_url(url)
    async with loadgen.client(base, headers, concurrency) as http:
        async def send(i: int) -> None:
            status, answer = await http.post(path, body_of(field_id, offset + i, per_request))
            if status != 200:
                raise RuntimeError(f"{who}: {status} {answer.decode(errors='replace')}")

        before = METER.sample()
        seconds, latencies = await load(requests, concurrency, send)
    ended = time.perf_counter()
    lag = await EVENTS.settle(who, requests * per_request, ended) if EVENTS else None
    return Run(requests * per_request, seconds, latencies, cpu_since(before), lag)


async def http_phase(name: str, who: str, url: str, headers: dict[str, str], field_id: int, requests: int,
                     per_request: int, concurrency: int) -> Result:
    return report(name, [await http_run(who, url, headers, field_id, requests, per_request, concurrency)])


async def compare(contenders: list[tuple[str, str, str]], headers: dict[str, str], field_id: int, requests: int,
                  per_request: int, concurrency: int, rounds: int) -> list[Result]:
    """The contenders (name, who, url) in turn, ``rounds`` times, ``requests`` in all each: the machine's
    drifts (another tenant's load on the host, a checkpoint) fall on both alike."""
    runs: dict[str, list[Run]] = {who: [] for _, who, _ in contenders}
    share = max(1, requests // rounds)
    for n in range(rounds):
        for _, who, url in contenders:
            runs[who].append(await http_run(who, url, headers, field_id, share, per_request, concurrency,
                                            offset=n * share))
    return [report(name, runs[who]) for name, who, _ in contenders]


async def open_loop(name: str, who: str, url: str, headers: dict[str, str], field_id: int, rate: int,
                    seconds: float) -> Result:
    """Requests offered on a fixed schedule (``rate`` per second), whatever the answers; latency counts from
    the scheduled time, so a stall shows in every request it delays."""
    total = int(rate * seconds)
    latencies: list[float] = []
    # A fixed pool of connections, each with a sender, as load generators keep: a request due while every
    # connection is busy waits for the first one free, and its wait counts. Requests fall due in millisecond
    # ticks.
    base, path = split_url(url)
    due_requests: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    async with loadgen.client(base, headers, OPEN_LOOP_CONNECTIONS) as http:
        async def sender() -> None:
            while (scheduled := await due_requests.get()) is not None:
                i, due = scheduled
                status, answer = await http.post(path, body_of(field_id, i, 1))
                if status != 200:
                    raise RuntimeError(f"{name}: {status} {answer.decode(errors='replace')}")
                latencies.append(time.perf_counter() - due)

        senders = [asyncio.create_task(sender()) for _ in range(OPEN_LOOP_CONNECTIONS)]
        before = METER.sample()
        began = time.perf_counter()
        for i in range(total):
            due = began + i / rate
            delay = due - time.perf_counter()
            if delay > 0.001:
                await asyncio.sleep(delay)
            due_requests.put_nowait((i, due))
        for _ in senders:
            due_requests.put_nowait(None)
        await asyncio.gather(*senders)
        elapsed = time.perf_counter() - began
    ended = time.perf_counter()
    lag = await EVENTS.settle(who, total, ended) if EVENTS else None
    return report(name, [Run(total, elapsed, latencies, cpu_since(before), lag)])


async def ceiling(name: str, requests: int, per_request: int, concurrency: int) -> Result:
    """asyncpg alone: per transaction, the upsert and the outbox insert a write needs, with ``unnest``."""
    pool = await asyncpg.create_pool(DSN, min_size=concurrency, max_size=concurrency)
    assert pool is not None
    upsert = ("INSERT INTO bench_values (subject_id, field_id, value) SELECT * FROM unnest($1::text[], $2::bigint[], "
              "$3::text[]::jsonb[]) ON CONFLICT (subject_id, field_id) DO UPDATE SET value = excluded.value, "
              "seq = bench_values.seq + 1")
    outbox = ("INSERT INTO bench_outbox (routing_key, event, published_at) SELECT * FROM unnest($1::text[], "
              "$2::text[]::jsonb[]) CROSS JOIN now()")
    event = orjson.dumps({"specversion": "1.0", "id": "0" * 36, "source": "/workspaces/bench", "type": "x",
                          "data": {"subject_type": "Story", "custom_field_id": 1, "sequence": 1,
                                   "after": {"value": 1}}}).decode()

    async def send(i: int) -> None:
        ids = [str((i * per_request + j) % SUBJECTS + 1) for j in range(per_request)]
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(upsert, ids, [1] * per_request, [str(i)] * per_request)
            await connection.execute(outbox, ["bench.Story.1.changed"] * per_request, [event] * per_request)

    before = METER.sample()
    seconds, latencies = await load(requests, concurrency, send)
    result = report(name, [Run(requests * per_request, seconds, latencies, cpu_since(before))])  # before they exit
    await pool.close()
    return result


async def applied(db: asyncpg.Connection[Any]) -> int:
    return int(await db.fetchval("SELECT count(*) FROM operations WHERE status <> 'pending'"))


async def backlog(headers: dict[str, str], field_id: int, writes: int, concurrency: int,
                  procs: dict[str, subprocess.Popen[bytes]]) -> float:
    """Stop the worker, queue ``writes`` async writes, start it again: the rate at which it drains them."""
    print(f"-- backlog: {writes:,} async writes queued while the worker is stopped, then drained")
    worker = procs["worker"]
    worker.send_signal(signal.SIGINT)
    worker.wait(30)
    db = await asyncpg.connect(DSN)
    done_before = await applied(db)
    url = f"http://127.0.0.1:{PORT}/api/v1/custom_field_values"
    await http_phase_async(url, headers, field_id, writes, concurrency)
    began = time.perf_counter()
    procs["worker"] = start("-m", "cfv", "worker")
    METER.procs["worker"] = procs["worker"].pid
    before = METER.sample()
    while (done := await applied(db) - done_before) < writes:
        await asyncio.sleep(0.25)
        if time.perf_counter() - began > 3600:
            raise RuntimeError(f"the backlog did not drain: {done} of {writes}")
    seconds = time.perf_counter() - began
    await db.close()
    assert EVENTS is not None
    lag = await EVENTS.settle("cfv", writes, time.perf_counter(), patience=600)
    return report("cfv: backlog drained by the restarted worker", [Run(writes, seconds, [seconds], cpu_since(before),
                                                                       lag)]).rate


async def http_phase_async(url: str, headers: dict[str, str], field_id: int, writes: int, concurrency: int) -> None:
    base, path = split_url(url)
    async with loadgen.client(base, {**headers, "Prefer": "respond-async"}, concurrency) as http:
        async def send(i: int) -> None:
            status, answer = await http.post(path, body_of(field_id, i, 1))
            if status != 202:
                raise RuntimeError(f"async write: {status} {answer.decode(errors='replace')}")

        before = METER.sample()
        seconds, latencies = await load(writes, concurrency, send)
    report("cfv: async writes accepted (202)", [Run(writes, seconds, latencies, cpu_since(before))])


async def soak(headers: dict[str, str], field_id: int, writes: int, concurrency: int) -> dict[str, float]:
    """``writes`` sync single writes in rounds; the RSS growth of each cfv process across them."""
    print(f"-- soak: {writes:,} sync single writes, RSS before and after")
    url = f"http://127.0.0.1:{PORT}/api/v1/custom_field_values"
    names = ("gateway", "worker", "relay")
    rss = {name: METER.rss_mib(name) for name in names}
    done, round_size = 0, 50_000
    while done < writes:
        n = min(round_size, writes - done)
        await http_phase(f"cfv: soak round {done // round_size + 1}", "cfv", url, headers, field_id, n, 1,
                         concurrency)
        done += n
    growth = {}
    for name in names:
        after = METER.rss_mib(name)
        growth[name] = (after - rss[name]) / rss[name] * 100
        print(f"{'':<46} RSS {name}: {rss[name]:.0f} → {after:.0f} MiB ({growth[name]:+.1f} %)")
    return growth


@contextlib.contextmanager
def profiling(directory: str | None, names: list[str]) -> Any:
    """With ``--profile DIR``: py-spy records each named cfv process (collapsed stacks, ``DIR/<name>.txt``)."""
    if directory is None:
        yield
        return
    Path(directory).mkdir(parents=True, exist_ok=True)
    spy_command = shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if spy_command is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    spies = [subprocess.Popen([spy_command, "record", "-p", str(METER.procs[name]), "-r", "200", "-f", "raw",  # noqa: S603
                               "-o", f"{directory}/{name}.txt", "--nonblocking"], stdout=subprocess.DEVNULL)
             for name in names]
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(30)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writes", type=int, default=3000, help="single-value writes per contender")
    parser.add_argument("--bulks", type=int, default=100, help="100-item bulk writes per contender")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=1, help="rounds the contenders take turns in, per phase")
    parser.add_argument("--open-rate", type=int, default=1000, help="writes per second offered in the open loop")
    parser.add_argument("--open-seconds", type=float, default=5.0, help="length of the open loop")
    parser.add_argument("--soak", action="store_true", help="also the backlog and memory phases (several minutes)")
    parser.add_argument("--backlog", type=int, default=200_000, help="async writes queued in the backlog phase")
    parser.add_argument("--soak-writes", type=int, default=500_000, help="sync writes of the memory phase")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the cfv processes in the single-write phase")
    args = parser.parse_args()
    print(machine())
    key = await prepare()
    procs = {"gateway": start("-m", "cfv", "gateway"), "worker": start("-m", "cfv", "worker"),
             "relay": start("-m", "cfv", "relay"),
             "baseline": start(str(ROOT / "bench" / "baseline_server.py"), DSN, AMQP, str(BASELINE_PORT))}
    METER.procs = {name: proc.pid for name, proc in procs.items()}
    global EVENTS
    amqp = await aio_pika.connect(AMQP)
    try:
        cfv_url = f"http://127.0.0.1:{PORT}/api/v1/custom_field_values"
        base_url = f"http://127.0.0.1:{BASELINE_PORT}/api/v1/custom_field_values"
        await until_up(cfv_url)
        await until_up(base_url)
        EVENTS = Events(await amqp.channel(), {"cfv": "cfv.events", "baseline": "bench.events"})
        await EVENTS.bind()
        headers = {"X-API-Key": key, "Content-Type": "application/json"}
        async with aiohttp.ClientSession(headers=headers) as http, http.post(
            f"http://127.0.0.1:{PORT}/api/v1/custom_fields",
            data=orjson.dumps({"custom_field": {"name": "n", "subject_type": "Story", "value_type": "number"}}),
        ) as answer:
            field_id = int(next(iter((await answer.json())["custom_fields"])))
        c, w, b = args.concurrency, args.writes, args.bulks
        await http_phase("warm-up (cfv, single)", "cfv", cfv_url, headers, field_id, 500, 1, c)
        await http_phase("warm-up (plain endpoint, single)", "baseline", base_url, headers, field_id, 500, 1, c)
        print(f"-- single-value writes, {c} in flight")
        cfv = ("cfv: HTTP → RabbitMQ → worker → Postgres", "cfv", cfv_url)
        with profiling(args.profile, ["gateway", "worker", "relay"]):
            single, plain = await compare([cfv, ("plain endpoint: upsert + outbox, relay", "baseline", base_url)],
                                          headers, field_id, w, 1, c, args.rounds)
        await ceiling("asyncpg alone: upsert + outbox insert", w, 1, min(c, 16))
        bc = max(2, c // 4)
        print(f"-- 100-item bulk writes, {bc} in flight")
        bulk, plain_bulk = await compare([cfv, ("plain endpoint: unnest upsert + outbox, relay", "baseline",
                                                base_url)], headers, field_id, b, 100, bc, args.rounds)
        floor = await ceiling("asyncpg alone: 100-row unnest upsert + outbox", b * 4, 100, bc)
        print(f"-- open loop: single writes offered at {args.open_rate:,}/s for {args.open_seconds:g} s")
        opened = await open_loop("cfv: sync single writes on a schedule", "cfv", cfv_url, headers, field_id,
                                 args.open_rate, args.open_seconds)
        await open_loop("plain endpoint on the same schedule", "baseline", base_url, headers, field_id,
                        args.open_rate, args.open_seconds)
        drained, growth = None, None
        if args.soak:
            drained = await backlog(headers, field_id, args.backlog, c, procs)
            growth = await soak(headers, field_id, args.soak_writes, c)
        lags = [r.lag for r in (single, bulk, opened) if r.lag is not None]
        print("-- ratios (goal in brackets)")
        print(f"single writes, cfv / plain endpoint:         {single.rate / plain.rate:5.2f}x   (≥ 1.2)")
        print(f"bulk writes, cfv / asyncpg alone:             {bulk.rate / floor.rate:5.0%}   (≥ 40 %)")
        print(f"bulk writes, cfv / plain endpoint:           {bulk.rate / plain_bulk.rate:5.2f}x   (≥ 1.5)")
        print(f"open loop at {args.open_rate}/s, cfv p99:             {opened.p99:5.1f} ms (≤ 50 ms)")
        print(f"event lag after a phase, cfv, worst:        {max(lags):5.2f} s  (< 1 s)")
        if drained is not None and growth is not None:
            print(f"backlog drain rate / steady sync rate:       {drained / single.rate:5.2f}x   (≥ 1)")
            print("RSS growth over the soak:                     "
                  + ", ".join(f"{name} {g:+.1f} %" for name, g in growth.items()) + "   (≤ 10 %)")
    finally:
        await amqp.close()
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(10)


if __name__ == "__main__":
    uvloop.run(main())  # the client too: it shares the cores with what it measures
