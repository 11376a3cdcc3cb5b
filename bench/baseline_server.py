"""A plain aiohttp + asyncpg endpoint that upserts a value synchronously: the yardstick for cfv's gateway.

No broker, no history, no events: parse, upsert, answer. ``python bench/baseline_server.py DSN PORT``.
"""

from __future__ import annotations

import asyncio
import sys

import asyncpg
import orjson
from aiohttp import web

UPSERT = """
INSERT INTO bench_values (subject_id, field_id, value) VALUES ($1, $2, $3::jsonb)
ON CONFLICT (subject_id, field_id) DO UPDATE SET value = excluded.value, seq = bench_values.seq + 1
RETURNING seq
"""


async def main(dsn: str, port: int) -> None:
    pool = await asyncpg.create_pool(dsn, min_size=4, max_size=10)
    assert pool is not None

    async def write(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        one = body.get("custom_field_value")
        items = body.get("custom_field_values") or ([one] if one else [])
        if not items:
            return web.Response(status=400)
        async with pool.acquire() as connection, connection.transaction():
            seqs = [await connection.fetchval(UPSERT, str(i["subject_id"]), i["custom_field_id"],
                                              orjson.dumps(i["value"]).decode()) for i in items]
        return web.Response(body=orjson.dumps({"count": len(seqs)}), content_type="application/json")

    app = web.Application()
    app.router.add_post("/api/v1/custom_field_values", write)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
