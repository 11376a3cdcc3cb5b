"""What cfv's processes agree on, whichever side they are: the outcome of a command in its JSON form, and the
PostgreSQL NOTIFY channels through which workers wake the gateways (outcomes) and the relay (new events)."""

from __future__ import annotations

from typing import Any

Outcome = dict[str, Any]  # the JSON form of cfv_schemas.outcomes.Outcome, built directly on the hot path
REPLY_CHANNEL_PREFIX = "cfv_reply_"
OUTBOX_CHANNEL = "cfv_outbox"


def reply_channel(gateway_id: str) -> str:
    """The LISTEN channel on which a gateway hears the outcomes of its commands."""
    return REPLY_CHANNEL_PREFIX + gateway_id
