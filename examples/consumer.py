"""A consumer of change events that never misses one: it tracks each key's (subject, field) ``sequence``, and
when one jumps (it was down, or joined late), fills the gap from the replay API (``GET /api/v1/events``) before
going on. Prints each change once, in order per key, as a JSON line: ``{"position", "subject", "field",
"sequence", "value"}``.

    python examples/consumer.py --amqp amqp://guest:guest@127.0.0.1:5672/ --api http://127.0.0.1:8080 \\
        --api-key cfv_... --workspace acme [--count N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import aio_pika
import aiohttp

#: The value events; definition events (fields, choices, …: ``cfv.field.created.v1`` …) are not this example's.
VALUE_TYPES = "cfv.value.created.v1,cfv.value.replaced.v1,cfv.value.deleted.v1"


class Tracker:
    """What was seen of each key, and the gap filling."""

    def __init__(self, http: aiohttp.ClientSession, api: str) -> None:
        self.http = http
        self.api = api
        self.last: dict[tuple[str, int], int] = {}  # key: its last sequence handled
        self.handled = 0

    async def receive(self, event: dict[str, Any]) -> None:
        """Handle a live event, first filling the key's gap if it skipped some."""
        if not event["type"].startswith("cfv.value."):
            return
        data = event["data"]
        key = (data["subject_id"], data["custom_field_id"])
        seen = self.last.get(key, 0)
        if data["sequence"] <= seen:
            return  # a duplicate (delivery is at least once)
        if data["sequence"] > seen + 1:
            await self.fill(key, data["sequence"])
        self.handle(event)

    async def fill(self, key: tuple[str, int], upto: int) -> None:
        """Read the log (from the start: this example keeps no position of its own) for the key's missing events."""
        after: int | None = None
        while self.last.get(key, 0) < upto - 1:
            query = f"?type={VALUE_TYPES}&custom_field_id={key[1]}&limit=1000" + (
                f"&after={after}" if after is not None else "")
            async with self.http.get(f"{self.api}/api/v1/events{query}") as answer:
                answer.raise_for_status()
                page = await answer.json()
            for event in page["events"]:
                data = event["data"]
                if (data["subject_id"], data["custom_field_id"]) == key and \
                        self.last.get(key, 0) < data["sequence"] < upto:
                    self.handle(event)
            if not page["events"]:
                raise RuntimeError(f"the log no longer holds the events of {key} before {upto}")
            after = page["next_after"]

    def handle(self, event: dict[str, Any]) -> None:
        data = event["data"]
        key = (data["subject_id"], data["custom_field_id"])
        assert data["sequence"] == self.last.get(key, 0) + 1, (key, data["sequence"])
        self.last[key] = data["sequence"]
        self.handled += 1
        after = data["after"]
        print(json.dumps({"position": event.get("position"), "subject": data["subject_id"],
                          "field": data["custom_field_id"], "sequence": data["sequence"],
                          "value": after["value"] if after else None}), flush=True)


async def consume(amqp: str, api: str, api_key: str, workspace: str, count: int | None) -> None:
    """Follow the workspace's events until ``count`` changes were handled (None: for ever)."""
    async with aiohttp.ClientSession(headers={"X-API-Key": api_key}) as http:
        tracker = Tracker(http, api)
        connection = await aio_pika.connect(amqp)
        try:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=100)
            queue = await channel.declare_queue(exclusive=True)
            # A value event's routing key is {workspace}.{subject_type}.{field}.{change}: four words (a definition
            # event's has five, {workspace}.definition.{kind}.{id}.{change}).
            await queue.bind("cfv.events", routing_key=f"{workspace}.*.*.*")
            print(json.dumps({"ready": True}), flush=True)
            async with queue.iterator() as messages:
                async for message in messages:
                    async with message.process():
                        await tracker.receive(json.loads(message.body))
                    if count is not None and tracker.handled >= count:
                        return
        finally:
            await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--amqp", required=True)
    parser.add_argument("--api", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--workspace", required=True, help="the workspace's slug")
    parser.add_argument("--count", type=int, help="stop after this many changes")
    args = parser.parse_args()
    asyncio.run(consume(args.amqp, args.api, args.api_key, args.workspace, args.count))


if __name__ == "__main__":
    main()
