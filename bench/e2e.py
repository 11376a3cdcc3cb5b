"""End-to-end write benchmark: cfv's gateway vs a plain aiohttp+asyncpg endpoint vs asyncpg alone.

Run: ``.venv/bin/python bench/e2e.py [--writes N] [--bulks N] [--concurrency C]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import asyncpg
import orjson
from cfv.store.accounts import issue_key
from cfv.store.migrate import apply_migrations
from cfv.store.queries import query

ROOT = Path(__file__).resolve().parent.parent
ADMIN_DSN = os.environ.get("CFV_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DSN = ADMIN_DSN.rsplit("/", 1)[0] + "/cfv_bench"
RABBIT_API = "http://guest:guest@127.0.0.1:15672/api"
AMQP = "amqp://guest:guest@127.0.0.1:5672/cfv_bench"
PORT, BASELINE_PORT = 18080, 18081


def machine() -> str:
    cpu = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Python {platform.python_version()}"


async def prepare() -> str:
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute("DROP DATABASE IF EXISTS cfv_bench WITH (FORCE)")
    await admin.execute("CREATE DATABASE cfv_bench")
    await admin.close()
    await asyncio.to_thread(apply_migrations, DSN)
    async with aiohttp.ClientSession() as http:
        await http.delete(f"{RABBIT_API}/vhosts/cfv_bench")
        await http.put(f"{RABBIT_API}/vhosts/cfv_bench")
        await http.put(f"{RABBIT_API}/permissions/cfv_bench/guest", json={"configure": ".*", "write": ".*",
                                                                          "read": ".*"})
    db = await asyncpg.connect(DSN)
    workspace_id = await db.fetchval(query("create_workspace"), "bench", "bench")
    key = (await issue_key(db, workspace_id, name="bench")).secret
    await db.execute("CREATE TABLE bench_values (subject_id text, field_id bigint, value jsonb, "
                     "seq bigint NOT NULL DEFAULT 1, PRIMARY KEY (subject_id, field_id))")
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
        for _ in range(200):
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
    """CPU seconds used by each party: cfv's processes, PostgreSQL, RabbitMQ and this client."""

    def __init__(self, procs: dict[str, int]) -> None:
        self.procs = procs

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
            usage[name] = total
        return usage


METER: CpuMeter | None = None


def report(name: str, values: int, seconds: float, latencies: list[float],
           cpu_before: dict[str, float] | None = None) -> None:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    print(f"{name:<44} {values / seconds:>10,.0f} values/s   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms"
          f"   ({len(latencies)} requests, {values} values, {seconds:.1f} s)")
    if METER is not None and cpu_before is not None:
        after = METER.sample()
        parts = [f"{who} {(after[who] - cpu_before.get(who, 0.0)) / values * 1e6:,.0f}"
                 for who in after if after[who] - cpu_before.get(who, 0.0) > 0.005]
        print(f"{'':<44} CPU µs per value: " + ", ".join(parts))


async def http_phase(name: str, url: str, headers: dict[str, str], field_id: int, requests: int, per_request: int,
                     concurrency: int, offset: int) -> None:
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=concurrency)) as http:
        async def send(i: int) -> None:
            items = [{"subject_type": "Story", "subject_id": offset + (i * per_request + j) % 5000 + 1,
                      "custom_field_id": field_id, "value": i} for j in range(per_request)]
            body = {"custom_field_value": items[0]} if per_request == 1 else {"custom_field_values": items}
            async with http.post(url, data=orjson.dumps(body)) as answer:
                if answer.status != 200:
                    raise RuntimeError(f"{name}: {answer.status} {await answer.text()}")
                await answer.read()

        before = METER.sample() if METER else None
        seconds, latencies = await load(requests, concurrency, send)
    report(name, requests * per_request, seconds, latencies, before)


async def ceiling(name: str, requests: int, per_request: int, concurrency: int) -> None:
    pool = await asyncpg.create_pool(DSN, min_size=concurrency, max_size=concurrency)
    assert pool is not None
    sql = ("INSERT INTO bench_values (subject_id, field_id, value) SELECT * FROM unnest($1::text[], $2::bigint[], "
           "$3::text[]::jsonb[]) ON CONFLICT (subject_id, field_id) DO UPDATE SET value = excluded.value, "
           "seq = bench_values.seq + 1")

    async def send(i: int) -> None:
        ids = [str((i * per_request + j) % 5000 + 1) for j in range(per_request)]
        async with pool.acquire() as connection:
            await connection.execute(sql, ids, [1] * per_request, [str(i)] * per_request)

    before = METER.sample() if METER else None
    seconds, latencies = await load(requests, concurrency, send)
    report(name, requests * per_request, seconds, latencies, before)
    await pool.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writes", type=int, default=3000, help="single-value writes per contender")
    parser.add_argument("--bulks", type=int, default=100, help="100-item bulk writes per contender")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    args = parser.parse_args()
    print(machine())
    key = await prepare()
    procs = [start("-m", "cfv", "gateway"), start("-m", "cfv", "worker"), start("-m", "cfv", "relay"),
             start(str(ROOT / "bench" / "baseline_server.py"), DSN, str(BASELINE_PORT))]
    global METER
    METER = CpuMeter({"gateway": procs[0].pid, "worker": procs[1].pid, "relay": procs[2].pid,
                      "baseline": procs[3].pid})
    try:
        cfv_url = f"http://127.0.0.1:{PORT}/api/v1/custom_field_values"
        base_url = f"http://127.0.0.1:{BASELINE_PORT}/api/v1/custom_field_values"
        await until_up(cfv_url)
        await until_up(base_url)
        headers = {"X-API-Key": key, "Content-Type": "application/json"}
        async with aiohttp.ClientSession(headers=headers) as http, http.post(
            f"http://127.0.0.1:{PORT}/api/v1/custom_fields",
            data=orjson.dumps({"custom_field": {"name": "n", "subject_type": "Story", "value_type": "number"}}),
        ) as answer:
            field_id = int(next(iter((await answer.json())["custom_fields"])))
        c, w, b = args.concurrency, args.writes, args.bulks
        await http_phase("warm-up (cfv, single)", cfv_url, headers, field_id, 200, 1, c, 0)
        print(f"-- single-value writes, {c} in flight")
        await http_phase("cfv: HTTP → RabbitMQ → worker → Postgres", cfv_url, headers, field_id, w, 1, c, 0)
        await http_phase("plain aiohttp+asyncpg upsert endpoint", base_url, headers, field_id, w, 1, c, 0)
        await ceiling("asyncpg alone, one upsert per transaction", w, 1, min(c, 16))
        bc = max(2, c // 4)
        print(f"-- 100-item bulk writes, {bc} in flight")
        await http_phase("cfv: HTTP → RabbitMQ → worker → Postgres", cfv_url, headers, field_id, b, 100, bc, 0)
        await http_phase("plain aiohttp+asyncpg upsert endpoint", base_url, headers, field_id, b, 100, bc, 0)
        await ceiling("asyncpg alone, 100-row upsert per transaction", b, 100, bc)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
