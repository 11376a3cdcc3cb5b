"""The yardstick for cfv's gateway: the plain endpoint a user would build to write a value *and* announce it.

One aiohttp + asyncpg process. A write upserts the value and inserts an outbox row in one transaction (a bulk
does both with ``unnest``, one statement each), then answers. A relay task in the same process publishes the
outbox to the ``bench.events`` topic exchange with publisher confirms (aio-pika, one message per event, the
confirms of a round awaited together) and marks what was confirmed. No broker on the write path, no history,
no idempotency, no access checks: the least a synchronous service with events must do. It runs on uvloop, as
cfv's processes do, so that the comparison is of designs, not of event loops.

``python bench/baseline_server.py DSN AMQP_URL PORT``
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika
import asyncpg
import orjson
import uvloop
from aiohttp import web

EXCHANGE = "bench.events"

SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_values (subject_id text, field_id bigint, value jsonb,
    seq bigint NOT NULL DEFAULT 1, PRIMARY KEY (subject_id, field_id));
CREATE TABLE IF NOT EXISTS bench_outbox (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    routing_key text NOT NULL, event jsonb NOT NULL, published_at timestamptz);
CREATE INDEX IF NOT EXISTS bench_outbox_unpublished ON bench_outbox (id) WHERE published_at IS NULL;
"""

UPSERT = """
INSERT INTO bench_values (subject_id, field_id, value) VALUES ($1, $2, $3::jsonb)
ON CONFLICT (subject_id, field_id) DO UPDATE SET value = excluded.value, seq = bench_values.seq + 1
RETURNING seq
"""
INSERT_EVENT = "INSERT INTO bench_outbox (routing_key, event) VALUES ($1, $2::jsonb)"

UPSERT_MANY = """
INSERT INTO bench_values (subject_id, field_id, value)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[]::jsonb[])
ON CONFLICT (subject_id, field_id) DO UPDATE SET value = excluded.value, seq = bench_values.seq + 1
RETURNING subject_id, field_id, seq
"""
INSERT_EVENTS = "INSERT INTO bench_outbox (routing_key, event) SELECT * FROM unnest($1::text[], $2::text[]::jsonb[])"

UNPUBLISHED = "SELECT id, routing_key, event::text FROM bench_outbox WHERE published_at IS NULL ORDER BY id LIMIT 500"
MARK_PUBLISHED = "UPDATE bench_outbox SET published_at = now() WHERE id = ANY($1::bigint[])"


def event(subject_id: str, field_id: int, value: Any, seq: int) -> tuple[str, str]:
    """A change event of about the size of cfv's, and its routing key."""
    body = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/workspaces/bench",
            "type": "value.changed", "subject": f"Story/{subject_id}/custom_fields/{field_id}",
            "time": datetime.now(UTC).isoformat(), "datacontenttype": "application/json",
            "data": {"subject_type": "Story", "subject_id": subject_id, "custom_field_id": field_id,
                     "sequence": seq, "after": {"value": value}}}
    return f"bench.Story.{field_id}.changed", orjson.dumps(body).decode()


async def relay(pool: asyncpg.Pool[Any], amqp_url: str, wake: asyncio.Event) -> None:
    """Publish the outbox in order, with confirms; mark what the broker confirmed."""
    connection = await aio_pika.connect_robust(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.declare_exchange(EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
    while True:
        rows = await pool.fetch(UNPUBLISHED)
        if not rows:
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), 1.0)
            continue
        await asyncio.gather(*(exchange.publish(
            aio_pika.Message(row["event"].encode(), content_type="application/cloudevents+json",
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT), routing_key=row["routing_key"])
            for row in rows))
        await pool.execute(MARK_PUBLISHED, [row["id"] for row in rows])


async def main(dsn: str, amqp_url: str, port: int) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=4, max_size=10)
    assert pool is not None
    await pool.execute(SCHEMA)
    wake = asyncio.Event()

    async def write(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        one = body.get("custom_field_value")
        items = body.get("custom_field_values") or ([one] if one else [])
        if not items:
            return web.Response(status=400)
        async with pool.acquire() as connection, connection.transaction():
            if len(items) == 1:
                item = items[0]
                subject_id, field_id, value = str(item["subject_id"]), item["custom_field_id"], item["value"]
                seq = await connection.fetchval(UPSERT, subject_id, field_id, orjson.dumps(value).decode())
                await connection.execute(INSERT_EVENT, *event(subject_id, field_id, value, seq))
                written = [{"subject_id": subject_id, "custom_field_id": field_id, "value": value, "sequence": seq}]
            else:
                rows = await connection.fetch(UPSERT_MANY, [str(i["subject_id"]) for i in items],
                                              [i["custom_field_id"] for i in items],
                                              [orjson.dumps(i["value"]).decode() for i in items])
                seqs = {(r["subject_id"], r["field_id"]): r["seq"] for r in rows}
                written = [{"subject_id": str(i["subject_id"]), "custom_field_id": i["custom_field_id"],
                            "value": i["value"], "sequence": seqs[(str(i["subject_id"]), i["custom_field_id"])]}
                           for i in items]
                events = [event(w["subject_id"], w["custom_field_id"], w["value"], w["sequence"]) for w in written]
                await connection.execute(INSERT_EVENTS, [k for k, _ in events], [e for _, e in events])
        wake.set()
        return web.Response(body=orjson.dumps({"count": len(written), "values": written}),
                            content_type="application/json")

    app = web.Application()
    app.router.add_post("/api/v1/custom_field_values", write)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await relay(pool, amqp_url, wake)


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
