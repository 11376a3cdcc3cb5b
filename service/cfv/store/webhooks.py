"""Webhooks in PostgreSQL: their definitions (managed by the gateway), their cursors in the event log and every
delivery attempt (written by the ``cfv webhooks`` processes). The events themselves are read with
:func:`cfv.store.events.read_page`, with the webhook creator's access."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from cfv.store.database import Connection
from cfv.store.queries import query


@dataclass(frozen=True, slots=True)
class Webhook:
    """A webhook as stored (its signing secret too, sealed: :class:`cfv.domain.webhooks.SecretBox` opens it)."""

    id: int
    workspace_id: int
    created_by: int
    url: str
    description: str | None
    event_types: list[str]
    subject_types: list[str] | None
    custom_field_ids: list[int] | None
    secret: str
    cursor: int
    head_attempts: int
    head_failing_since: datetime | None
    consecutive_failures: int
    next_attempt_at: datetime | None
    disabled_at: datetime | None
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime
    creator_role: str | None = None  # read for delivery only: the creator's account role (None: deactivated)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One attempt at delivering an event to a webhook."""

    id: int
    webhook_id: int
    position: int
    event_id: str
    event_type: str
    status: str
    attempt: int
    manual: bool
    response_status: int | None
    error: str | None
    duration_ms: int | None
    attempted_at: datetime


@dataclass(frozen=True, slots=True)
class Progress:
    """A webhook after an attempt was recorded: still enabled? changed through the API since (``updated_at``)?"""

    enabled: bool
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class Retry:
    """A retry asked through the API, claimed by a delivery process."""

    delivery_id: int
    position: int
    webhook: Webhook


_WEBHOOK_FIELDS = tuple(Webhook.__dataclass_fields__)


def _webhook(row: asyncpg.Record) -> Webhook:
    found = dict(row)
    return Webhook(**{name: found[name] for name in _WEBHOOK_FIELDS if name in found})


def _delivery(row: asyncpg.Record) -> Delivery:
    return Delivery(row["id"], row["webhook_id"], row["position"], str(row["event_id"]), row["event_type"],
                    row["status"], row["attempt"], row["manual"], row["response_status"], row["error"],
                    row["duration_ms"], row["attempted_at"])


# --- management (the gateway) -------------------------------------------------------------------------------


async def create(connection: Connection, *, workspace_id: int, created_by: int, url: str, description: str | None,
                 event_types: Sequence[str], subject_types: Sequence[str] | None,
                 custom_field_ids: Sequence[int] | None, secret: str) -> Webhook:
    """A new webhook, delivering the events committed from now on."""
    row = await connection.fetchrow(query("create_webhook"), workspace_id, created_by, url, description,
                                    list(event_types), _list(subject_types), _list(custom_field_ids), secret)
    assert row is not None
    return _webhook(row)


async def list_(connection: Connection, *, workspace_id: int, limit: int, offset: int) -> tuple[list[Webhook], int]:
    """A page of the workspace's webhooks, and how many it has."""
    rows = await connection.fetch(query("list_webhooks"), workspace_id, limit, offset)
    total = await connection.fetchval(query("count_webhooks"), workspace_id)
    return [_webhook(r) for r in rows], int(total)


async def get(connection: Connection, *, workspace_id: int, webhook_id: int) -> Webhook | None:
    """The workspace's webhook of that id (None: unknown, or another workspace's)."""
    row = await connection.fetchrow(query("get_webhook"), workspace_id, webhook_id)
    return None if row is None else _webhook(row)


async def update(connection: Connection, *, workspace_id: int, webhook_id: int, url: str, description: str | None,
                 event_types: Sequence[str], subject_types: Sequence[str] | None,
                 custom_field_ids: Sequence[int] | None, secret: str, enabled: bool | None) -> Webhook | None:
    """Change a webhook (``enabled``: True re-enables it where it stopped, False disables it, None leaves it)."""
    row = await connection.fetchrow(query("update_webhook"), workspace_id, webhook_id, url, description,
                                    list(event_types), _list(subject_types), _list(custom_field_ids), secret,
                                    enabled)
    return None if row is None else _webhook(row)


async def delete(connection: Connection, *, workspace_id: int, webhook_id: int) -> bool:
    """Delete a webhook and its attempts; False if there was none."""
    return await connection.fetchval(query("delete_webhook"), workspace_id, webhook_id) is not None


async def deliveries(connection: Connection, *, webhook_id: int, limit: int,
                     offset: int) -> tuple[list[Delivery], int]:
    """A page of a webhook's attempts, newest first, and how many it has."""
    rows = await connection.fetch(query("list_webhook_deliveries"), webhook_id, limit, offset)
    total = await connection.fetchval(query("count_webhook_deliveries"), webhook_id)
    return [_delivery(r) for r in rows], int(total)


async def request_retry(connection: Connection, *, webhook_id: int, delivery_id: int) -> Delivery | None:
    """A pending retry of the event of a webhook's attempt (None: no such attempt of that webhook)."""
    row = await connection.fetchrow(query("request_webhook_retry"), webhook_id, delivery_id)
    return None if row is None else _delivery(row)


# --- delivery (the `cfv webhooks` processes) ----------------------------------------------------------------


async def due(connection: Connection) -> list[int]:
    """The enabled webhooks due for an attempt, with events after their cursor."""
    return [r["id"] for r in await connection.fetch(query("due_webhooks"))]


async def try_lock(connection: Connection, *, webhook_id: int) -> bool:
    """Take the webhook's delivery lock on this connection (its session), if nobody holds it."""
    return bool(await connection.fetchval(query("webhook_lock"), webhook_id))


async def unlock(connection: Connection, *, webhook_id: int) -> None:
    """Release the webhook's delivery lock taken on this connection."""
    await connection.fetchval(query("webhook_unlock"), webhook_id)


async def to_deliver(connection: Connection, *, webhook_id: int) -> Webhook | None:
    """The webhook as it is now, with its creator's account role (None if the webhook was deleted)."""
    row = await connection.fetchrow(query("webhook_to_deliver"), webhook_id)
    return None if row is None else _webhook(row)


async def skipped_to(connection: Connection, *, webhook_id: int, position: int) -> None:
    """Nothing up to ``position`` is for this webhook: move its cursor there."""
    await connection.execute(query("webhook_skipped_to"), webhook_id, position)


async def delivered(connection: Connection, *, webhook_id: int, position: int, event_id: str, event_type: str,
                    response_status: int, duration_ms: int, attempt: int) -> Progress:
    """Record a success and move the cursor past it."""
    row = await connection.fetchrow(query("webhook_delivered"), webhook_id, position, event_id, event_type,
                                    response_status, duration_ms, attempt)
    return _progress(row)


async def failed(connection: Connection, *, webhook_id: int, position: int, event_id: str, event_type: str,
                 response_status: int | None, error: str, duration_ms: int, attempt: int, give_up: bool,
                 retry_in: float, disable_after: int, disable_reason: str) -> Progress:
    """Record a failure (given up: the cursor moves past it); disabled after ``disable_after`` in a row."""
    row = await connection.fetchrow(query("webhook_failed"), webhook_id, position, event_id, event_type,
                                    response_status, error, duration_ms, attempt, give_up, retry_in, disable_after,
                                    disable_reason)
    return _progress(row)


async def disable(connection: Connection, *, webhook_id: int, reason: str) -> None:
    """Disable a webhook that cannot deliver, with the reason."""
    await connection.execute(query("webhook_disable"), webhook_id, reason)


async def claim_retries(connection: Connection, *, limit: int) -> list[Retry]:
    """Retries asked through the API, locked until this connection's transaction ends (call inside one)."""
    rows = await connection.fetch(query("claim_webhook_retries"), limit)
    retries = []
    for r in rows:
        webhook = Webhook(r["id"], r["workspace_id"], r["created_by"], r["url"], None, r["event_types"],
                          r["subject_types"], r["custom_field_ids"], r["secret"], 0, 0, None, 0, None, None, None,
                          datetime.min, datetime.min, r["creator_role"])
        retries.append(Retry(r["delivery_id"], r["position"], webhook))
    return retries


async def settle_retry(connection: Connection, *, delivery_id: int, status: str, response_status: int | None,
                       error: str | None, duration_ms: int) -> None:
    """Record the outcome of a retry asked through the API."""
    await connection.execute(query("settle_webhook_retry"), delivery_id, status, response_status, error, duration_ms)


async def prune_deliveries(connection: Connection, *, older_than: float, limit: int) -> int:
    """Delete at most ``limit`` attempts older than ``older_than`` seconds; return how many went."""
    status = await connection.execute(query("prune_webhook_deliveries"), older_than, limit)
    return int(status.split()[-1])


def _progress(row: asyncpg.Record | None) -> Progress:
    if row is None:  # deleted meanwhile
        return Progress(False, None)
    return Progress(row["disabled_at"] is None, row["updated_at"])


def _list(items: Sequence[object] | None) -> list[object] | None:
    return None if items is None else list(items)


async def reseal_secrets(connection: Connection, reseal: Callable[[str], str]) -> int:
    """Replace every webhook's stored secret with ``reseal`` of it, all in one transaction (if ``reseal`` raises
    for one, none changes); return how many there are."""
    async with connection.transaction():
        rows = await connection.fetch(query("webhook_secrets_for_update"))
        await connection.execute(query("set_webhook_secrets"), [r["id"] for r in rows],
                                 [reseal(r["secret"]) for r in rows])
    return len(rows)
