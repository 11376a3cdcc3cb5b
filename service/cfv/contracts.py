"""What cfv's processes agree on, whichever side they are: the outcome of a command in its JSON form, and the
PostgreSQL NOTIFY channels through which workers wake the gateways (outcomes) and the relay (new events); and
what a command message names even when it cannot be read as one."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

Outcome = dict[str, Any]  # the JSON form of cfv_schemas.outcomes.Outcome, built directly on the hot path
REPLY_CHANNEL_PREFIX = "cfv_reply_"
OUTBOX_CHANNEL = "cfv_outbox"


def reply_channel(gateway_id: str) -> str:
    """The LISTEN channel on which a gateway hears the outcomes of its commands."""
    return REPLY_CHANNEL_PREFIX + gateway_id


@dataclass(frozen=True, slots=True)
class NamedOperation:
    """An operation named by a message that cannot be applied, and who may be waiting for it."""

    id: uuid.UUID
    workspace_id: int
    reply_to: str | None


_UUID = re.compile(r"^[0-9a-fA-F-]{36}$")


def named_operations(body: bytes) -> list[NamedOperation]:
    """Best effort: the operations a command message names, malformed as it may be (to mark them failed, or show
    them to an operator)."""
    try:
        data = orjson.loads(body)
        found = []
        for command in data.get("commands", []):
            op, ws, reply_to = command.get("id"), command.get("workspace_id"), command.get("reply_to")
            if (isinstance(op, str) and _UUID.match(op) and isinstance(ws, int) and not isinstance(ws, bool)
                    and 0 < ws < 2**63):  # beyond bigint it names no workspace, and Postgres would refuse it
                found.append(NamedOperation(uuid.UUID(op), ws, reply_to if isinstance(reply_to, str) else None))
        return found
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return []
