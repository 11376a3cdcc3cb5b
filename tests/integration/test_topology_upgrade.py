"""Shard queues declared by an earlier cfv, with its delivery limit and dead-letter exchange as arguments (a queue's
arguments are fixed when it is made; these now come from the policy cfv-commands), are used as they are, with a
warning, rather than stopping every process."""

from __future__ import annotations

import aio_pika
from cfv.broker import topology
from cfv.settings import Settings
from support import Workspace, captured_logs, running_stack


async def test_a_shard_queue_with_the_old_arguments_is_used_as_it_is(settings: Settings,
                                                                    workspace: Workspace) -> None:
    settings = settings.model_copy(update={"command_shards": 1})
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel()
        await channel.declare_queue(topology.shard_queue(0), durable=True,
                                    arguments={**topology.SHARD_QUEUE_ARGUMENTS, "x-delivery-limit": 10,
                                               "x-dead-letter-exchange": topology.DEAD_LETTER_EXCHANGE})
        with captured_logs() as logged:
            declared = await topology.declare(channel, shards=1)
        assert [q.name for q in declared.shard_queues] == [topology.shard_queue(0)]
        assert [(e["event"][:40], e["queue"]) for e in logged if e["log_level"] == "warning"] == [
            ("shard queue was made with arguments that", topology.shard_queue(0))]
    finally:
        await connection.close()
    async with running_stack(settings) as stack:  # gateway, worker and relay all start on it, and serve
        field = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
        status, body, _ = await stack.request("POST", "/api/v1/custom_field_values", workspace, json={
            "custom_field_value": {"subject_type": "Story", "subject_id": 1, "custom_field_id": field["id"],
                                   "value": 5}})
        assert status == 200, body
