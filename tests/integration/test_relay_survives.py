"""No long-running process dies of a lost connection: the relay outlives whatever its connections raise (once,
asyncpg's InternalClientError, which it did not expect, stopped it and with it every event) and goes on
publishing, in order."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
from cfv.relay import Relay
from cfv.settings import Settings
from support import EventCollector, Workspace, running_stack
from support.pipeline import number_field


class FlakyRelay(Relay):
    """A relay whose first two leads fail as a connection lost at the wrong moment makes them fail."""

    failures = 0

    async def _lead(self) -> None:
        if self.failures < 2:
            self.failures += 1
            raise (asyncpg.InternalClientError("cannot switch to state 15; another operation (2) is in progress")
                   if self.failures == 1 else RuntimeError("something nobody thought of"))
        await super()._lead()


async def test_the_relay_outlives_what_its_connections_raise(settings: Settings, workspace: Workspace,
                                                             events: EventCollector) -> None:
    relay = FlakyRelay(settings)
    running = asyncio.create_task(relay.run())
    try:
        async with running_stack(settings, relay=False) as stack:
            field_id = await number_field(stack, workspace)
            for value in range(5):
                status, body, _ = await stack.request("POST", "/api/v1/custom_field_values", workspace, json={
                    "custom_field_value": {"subject_type": "Story", "subject_id": 1, "custom_field_id": field_id,
                                           "value": value}})
                assert status == 200, body
            published = await events.wait_for_count(5, timeout=30)
            assert [e["data"]["after"]["value"] for e in published] == [0, 1, 2, 3, 4]
            assert relay.failures == 2 and not running.done()
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
