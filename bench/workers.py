"""One worker against two: how fast a backlog of writes to many workspaces drains, and how the shards spread.

Run: ``.venv/bin/python bench/workers.py [--writes N] [--workspaces W] [--rounds R]``.

Writes go to ``W`` workspaces (a workspace maps to one of the ``CFV_COMMAND_SHARDS`` shard queues, so two
workers only help when the load covers several shards). Each round queues ``N`` async single-value writes
(``Prefer: respond-async``) while no worker runs, then starts one worker, or two, and times the drain until every
write is applied; midway it asks RabbitMQ which worker is the active consumer of each shard. Rounds alternate
one and two workers, so the drifts of a shared machine fall on both alike. CPU is read from ``/proc`` for each
party, as ``e2e.py`` does. On a machine whose cores PostgreSQL, RabbitMQ and the workers share, a second
worker adds applying capacity only as far as the cores have room: the figures show where the limit is.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import subprocess
import time
from urllib.parse import quote

import aiohttp
import asyncpg
import e2e
import loadgen
import uvloop
from cfv.broker import topology
from cfv.store.accounts import issue_key
from cfv.store.migrate import apply_migrations
from cfv.store.queries import query

SHARDS = 4  # cfv's default; the workers read it from their settings too


async def prepare(workspaces: int) -> list[str]:
    """A fresh database and virtual host with ``workspaces`` workspaces; their keys."""
    await e2e.fresh_database("cfv_bench")
    await asyncio.to_thread(apply_migrations, e2e.DSN)
    await e2e.fresh_vhost("cfv_bench")
    db = await asyncpg.connect(e2e.DSN)
    keys = []
    for n in range(workspaces):
        workspace_id = await db.fetchval(query("create_workspace"), f"bench{n}", f"bench {n}")
        keys.append((await issue_key(db, workspace_id, name="bench")).secret)
    await db.close()
    return keys


async def create_fields(keys: list[str]) -> list[int]:
    fields = []
    async with aiohttp.ClientSession() as http:
        for key in keys:
            async with http.post(f"http://127.0.0.1:{e2e.PORT}/api/v1/custom_fields", headers={"X-API-Key": key},
                                 json={"custom_field": {"name": "n", "subject_type": "Story",
                                                        "value_type": "number"}}) as answer:
                fields.append(int(next(iter((await answer.json())["custom_fields"]))))
    return fields


async def queue_writes(keys: list[str], fields: list[int], writes: int, start: int) -> float:
    """``writes`` async writes spread evenly over the workspaces; the seconds they took to be accepted."""
    per_workspace = writes // len(keys)

    async def workspace(key: str, field_id: int) -> None:
        headers = {"X-API-Key": key, "Content-Type": "application/json", "Prefer": "respond-async"}
        async with loadgen.client(f"http://127.0.0.1:{e2e.PORT}", headers, 4) as http:
            async def send(i: int) -> None:
                status, answer = await http.post("/api/v1/custom_field_values",
                                                 e2e.body_of(field_id, start + i, 1))
                if status != 202:
                    raise RuntimeError(f"async write: {status} {answer.decode(errors='replace')}")
            await e2e.load(per_workspace, 4, send)

    began = time.perf_counter()
    await asyncio.gather(*(workspace(k, f) for k, f in zip(keys, fields, strict=True)))
    return time.perf_counter() - began


async def active_consumers() -> dict[int, str]:
    """The connection name of each shard queue's active consumer."""
    found: dict[int, str] = {}
    async with aiohttp.ClientSession() as http:
        for n in range(SHARDS):
            async with http.get(f"{e2e.RABBIT_API}/queues/cfv_bench/{topology.shard_queue(n)}") as answer:
                details = (await answer.json()).get("consumer_details", [])
            for consumer in details:
                if consumer.get("activity_status") == "single_active" and isinstance(
                        consumer.get("channel_details"), dict):
                    name = quote(consumer["channel_details"]["connection_name"], safe="")
                    async with http.get(f"{e2e.RABBIT_API}/connections/{name}") as answer:
                        found[n] = (await answer.json())["client_properties"]["connection_name"]
    return found


async def drain(count: int, writes: int, procs: dict[str, subprocess.Popen[bytes]]) -> tuple[float, dict[str, int],
                                                                                            dict[str, float]]:
    """Start ``count`` workers and wait until ``writes`` more operations are settled: (values/s, shards held by
    each worker midway, CPU µs per value per party)."""
    db = await asyncpg.connect(e2e.DSN)
    done_before = await e2e.applied(db)
    began = time.perf_counter()
    for n in range(count):
        procs[f"worker-{n}"] = e2e.start("-m", "cfv", "worker")
        e2e.METER.procs[f"worker-{n}"] = procs[f"worker-{n}"].pid
    before = e2e.METER.sample()
    held: dict[str, int] = {}
    while (done := await e2e.applied(db) - done_before) < writes:
        await asyncio.sleep(0.2)
        if not held and done > writes / 2:
            owners = await active_consumers()
            held = {name: list(owners.values()).count(name) for name in sorted(set(owners.values()))}
        if time.perf_counter() - began > 1800:
            raise RuntimeError(f"the backlog did not drain: {done} of {writes}")
    seconds = time.perf_counter() - began
    cpu = {name: used / writes * 1e6 for name, used in e2e.cpu_since(before).items() if used > 0}
    await db.close()
    for n in range(count):
        worker = procs.pop(f"worker-{n}")
        e2e.METER.procs.pop(f"worker-{n}")
        worker.send_signal(signal.SIGINT)
        worker.wait(30)
    return writes / seconds, held, cpu


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writes", type=int, default=40_000, help="async writes queued per round")
    parser.add_argument("--workspaces", type=int, default=16, help="workspaces the writes are spread over")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (one worker, two workers)")
    args = parser.parse_args()
    print(e2e.machine())
    keys = await prepare(args.workspaces)
    procs = {"gateway": e2e.start("-m", "cfv", "gateway"), "relay": e2e.start("-m", "cfv", "relay")}
    e2e.METER.procs = {name: proc.pid for name, proc in procs.items()}
    rates: dict[int, list[float]] = {1: [], 2: []}
    try:
        await e2e.until_up(f"http://127.0.0.1:{e2e.PORT}/api/v1/custom_field_values")
        fields = await create_fields(keys)
        written = 0
        for round_ in range(args.rounds):
            for count in (1, 2):
                accepted = await queue_writes(keys, fields, args.writes, written)
                writes = args.writes // len(keys) * len(keys)
                written += writes
                rate, held, cpu = await drain(count, writes, procs)
                rates[count].append(rate)
                print(f"round {round_ + 1}, {count} worker{'s' if count > 1 else ''}: {writes:,} queued in "
                      f"{accepted:.1f} s, drained at {rate:,.0f} values/s; active shards midway: "
                      + ", ".join(f"{name} {n}" for name, n in held.items()))
                print("   CPU µs per value: " + ", ".join(f"{name} {us:.0f}" for name, us in sorted(cpu.items())))
        one, two = statistics.median(rates[1]), statistics.median(rates[2])
        print(f"-- median drain rate: one worker {one:,.0f} values/s, two workers {two:,.0f} values/s: "
              f"{two / one:.2f}x")
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(10)


if __name__ == "__main__":
    uvloop.run(main())
