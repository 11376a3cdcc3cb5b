"""An integration that writes values by publishing signed commands straight to RabbitMQ, and reads the outcome
from the reply (RabbitMQ's direct reply-to), as docs/events.md and schemas/asyncapi.yaml describe.

    python examples/publisher.py --amqp amqp://guest:guest@127.0.0.1:5672/ --api-key cfv_... \\
        --workspace-id 1 --field 12 --subject-type Story --subject 7 --value 42

Prints the outcome (JSON) and exits 0 if the command succeeded, 1 if it failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from datetime import UTC, datetime

import aio_pika
from cfv_schemas.signing import sign_message

REPLY_TO = "amq.rabbitmq.reply-to"


async def publish(amqp: str, api_key: str, workspace_id: int, item: dict[str, object]) -> dict[str, object]:
    """Publish one ``write_values`` command and return its outcome (wrap in a timeout)."""
    command_id = str(uuid.uuid4())
    body = json.dumps({"v": 1, "commands": [{
        "type": "write_values", "id": command_id, "workspace_id": workspace_id,
        "accepted_at": datetime.now(UTC).isoformat(), "items": [item]}]}).encode()
    connection = await aio_pika.connect(amqp)
    try:
        channel = await connection.channel(publisher_confirms=True)
        replies: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        # Direct reply-to: consume the pseudo-queue (no ack) before publishing on the same channel.
        reply_queue = await channel.get_queue(REPLY_TO, ensure=False)
        await reply_queue.consume(replies.put, no_ack=True)
        exchange = await channel.get_exchange("cfv.commands", ensure=False)
        await exchange.publish(
            aio_pika.Message(body, content_type="application/json", headers=sign_message(body, api_key),
                             message_id=command_id, correlation_id=command_id, reply_to=REPLY_TO,
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=str(workspace_id))
        reply = await replies.get()
        assert reply.correlation_id == command_id
        [outcome] = json.loads(reply.body)
        assert isinstance(outcome, dict)
        return outcome
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--amqp", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--workspace-id", type=int, required=True)
    parser.add_argument("--field", type=int, required=True)
    parser.add_argument("--subject-type", default="Story")
    parser.add_argument("--subject", required=True)
    parser.add_argument("--value", required=True, help="a JSON value")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    subject: int | str = int(args.subject) if args.subject.isdigit() else args.subject
    item = {"subject_type": args.subject_type, "subject_id": subject, "custom_field_id": args.field,
            "value": json.loads(args.value)}
    outcome = asyncio.run(asyncio.wait_for(publish(args.amqp, args.api_key, args.workspace_id, item), args.timeout))
    print(json.dumps(outcome))
    sys.exit(0 if outcome["status"] == "succeeded" else 1)


if __name__ == "__main__":
    main()
