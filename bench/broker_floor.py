"""What one change event costs the broker, and the ceiling that puts on evented bulk writes on this machine.

cfv announces every change as its own AMQP message (a CloudEvent with a routing key per subject type, field
and kind, so consumers bind to what they want). This measures, in isolation:

* RabbitMQ's CPU per event: events published the cheapest way there is (windows of 500 messages in one socket
  write, one wait for their confirms; :mod:`cfv.broker.confirmed`) to a topic exchange with one bound queue;
* PostgreSQL's CPU per value of the "asyncpg alone" ceiling of ``e2e.py`` (a 100-row unnest upsert and outbox
  insert per transaction), and that ceiling's rate.

No evented write can cost the machine less than the two together, so ``cores / (broker + database)`` bounds
the rate of any system that writes a value and publishes its event, before a line of its own code runs.

Run: ``.venv/bin/python bench/broker_floor.py [--events N]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

import aio_pika
import aiohttp
import asyncpg
import orjson
from cfv.broker.confirmed import ConfirmedPublisher, Outgoing
from e2e import ADMIN_DSN, RABBIT_API, CpuMeter, fresh_database, fresh_vhost, machine

VHOST = "cfv_floor"
AMQP = f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"
DSN = ADMIN_DSN.rsplit("/", 1)[0] + "/cfv_floor"


def cpu_of(meter: CpuMeter, who: str) -> float:
    return meter.sample()[who]


async def broker_cost(meter: CpuMeter, events: int) -> float:
    """RabbitMQ CPU seconds per event routed to one queue."""
    await fresh_vhost(VHOST)
    connection = await aio_pika.connect(AMQP)
    channel = await connection.channel()
    exchange = await channel.declare_exchange("cfv.events", aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(exchange, routing_key="#")
    publisher = await ConfirmedPublisher.connect(AMQP, name="floor")
    body = orjson.dumps({"specversion": "1.0", "id": str(uuid.uuid4()), "source": "/workspaces/acme",
                         "type": "cfv.value.replaced.v1", "data": {"subject_type": "Story", "x": "y" * 500}})
    window = [Outgoing("cfv.events", f"acme.Story.{n % 10}.replaced", body, str(uuid.uuid4()),
                       "cfv.value.replaced.v1", "application/cloudevents+json") for n in range(500)]
    try:
        before = cpu_of(meter, "rabbitmq")
        for _ in range(events // len(window)):
            await publisher.publish(window)
        spent = cpu_of(meter, "rabbitmq") - before
    finally:
        await publisher.close()
        await connection.close()
        async with aiohttp.ClientSession() as http:
            await http.delete(f"{RABBIT_API}/vhosts/{VHOST}")
    return spent / (events // len(window) * len(window))


async def database_cost(meter: CpuMeter, batches: int) -> tuple[float, float]:
    """(PostgreSQL CPU seconds per value, values per second) of 100-row unnest upserts + outbox inserts."""
    await fresh_database("cfv_floor")
    pool = await asyncpg.create_pool(DSN, min_size=8, max_size=8)
    assert pool is not None
    await pool.execute("CREATE TABLE v (subject_id text, field_id bigint, value jsonb, seq bigint NOT NULL DEFAULT 1, "
                       "PRIMARY KEY (subject_id, field_id)); CREATE TABLE o (id bigint GENERATED ALWAYS AS "
                       "IDENTITY PRIMARY KEY, routing_key text, event jsonb, published_at timestamptz)")
    event = orjson.dumps({"specversion": "1.0", "data": {"x": "y" * 500}}).decode()
    upsert = ("INSERT INTO v SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[]::jsonb[]) ON CONFLICT "
              "(subject_id, field_id) DO UPDATE SET value = excluded.value, seq = v.seq + 1")
    outbox = ("INSERT INTO o (routing_key, event, published_at) SELECT *, now() "
              "FROM unnest($1::text[], $2::text[]::jsonb[])")
    counter = iter(range(batches))

    async def client() -> None:
        for i in counter:
            ids = [str((i * 100 + j) % 5000 + 1) for j in range(100)]
            async with pool.acquire() as connection, connection.transaction():
                await connection.execute(upsert, ids, [1] * 100, [str(i)] * 100)
                await connection.execute(outbox, ["acme.Story.1.replaced"] * 100, [event] * 100)

    before, began = meter.sample(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(8)))
    seconds, spent = time.perf_counter() - began, meter.sample()["postgres"] - before["postgres"]
    await pool.close()
    admin = await asyncpg.connect(ADMIN_DSN)
    await admin.execute("DROP DATABASE IF EXISTS cfv_floor WITH (FORCE)")
    await admin.close()
    return spent / (batches * 100), batches * 100 / seconds


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000, help="events published to measure the broker")
    args = parser.parse_args()
    print(machine())
    meter = CpuMeter()
    broker = await broker_cost(meter, args.events)
    database, ceiling = await database_cost(meter, 400)
    cores = os.cpu_count() or 1
    bound = cores / (broker + database)
    print(f"RabbitMQ, per event routed to one queue (windows of 500, confirmed):  {broker * 1e6:6.1f} µs of CPU")
    print(f"PostgreSQL, per value of a 100-row unnest upsert + outbox insert:     {database * 1e6:6.1f} µs of CPU")
    print(f"asyncpg alone (the e2e ceiling):                                     {ceiling:8,.0f} values/s")
    print(f"any evented write on {cores} cores, broker and database alone:            ≤ {bound:8,.0f} values/s "
          f"= {bound / ceiling:.0%} of asyncpg alone")


if __name__ == "__main__":
    asyncio.run(main())
