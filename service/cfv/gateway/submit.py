"""Submitting a write, face-neutral: build the core command, publish it, wait for its outcome (or not).

Both API faces translate their request into :class:`CommandItem` s and call :meth:`Submitter.submit`; they
differ only in how they render the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import structlog
from cfv_schemas.commands import (
    Command,
    CommandItem,
    DeleteField,
    DeleteProject,
    RegisterSubjects,
    SubjectPlacement,
    WriteValues,
)

from cfv.batching import Coalescer
from cfv.broker.publisher import CommandPublisher, PublishFailed
from cfv.contracts import Outcome
from cfv.domain.writes import ErrorType, ItemError, failed
from cfv.faults import TRANSIENT_ERRORS
from cfv.gateway.auth import Principal
from cfv.gateway.errors import ApiError, never_applied, unavailable, unconfirmed
from cfv.gateway.replies import ReplyWaiter
from cfv.store import operations as stored_operations

MAX_IDEMPOTENCY_KEY = 255
log = structlog.get_logger("cfv.gateway")


@dataclass(frozen=True, slots=True)
class Submitted:
    """What became of a submitted write: its outcome, or only its operation id if still pending."""

    operation_id: uuid.UUID
    outcome: Outcome | None


class Submitter:
    """Turns validated requests into commands on the broker."""

    def __init__(self, publisher: CommandPublisher, waiter: ReplyWaiter, pool: asyncpg.Pool[Any],
                 timeout: float) -> None:
        self._publisher = publisher
        self._waiter = waiter
        self._pool = pool
        self._timeout = timeout
        self._pending: Coalescer[tuple[uuid.UUID, int, bytes], None] = Coalescer(self._record_pending)

    async def check_broker(self) -> None:
        """Raise unless the broker can be published to (readiness)."""
        await self._publisher.check()

    async def submit(self, principal: Principal, items: list[CommandItem], *, idempotency_key: str | None,
                     request_id: str | None, wait: bool) -> Submitted:
        """Publish a write of ``items``; with ``wait``, return its outcome unless the wait times out."""
        command = WriteValues(items=items, **self._envelope(principal, idempotency_key, request_id, wait, items))
        return await self._send(principal, command, wait)

    async def delete_field(self, principal: Principal, field_id: int, *, idempotency_key: str | None,
                           request_id: str | None, wait: bool) -> Submitted:
        """Publish the deletion of a field and all its values; with ``wait``, return its outcome."""
        command = DeleteField(type="delete_field", custom_field_id=field_id,
                              **self._envelope(principal, idempotency_key, request_id, wait,
                                                {"delete_field": field_id}))
        return await self._send(principal, command, wait)

    async def delete_project(self, principal: Principal, project_id: uuid.UUID, *, idempotency_key: str | None,
                             request_id: str | None, wait: bool) -> Submitted:
        """Publish the deletion of a project, its properties and all their values; with ``wait``, return its
        outcome."""
        command = DeleteProject(type="delete_project", project_id=project_id,
                                **self._envelope(principal, idempotency_key, request_id, wait,
                                                {"delete_project": str(project_id)}))
        return await self._send(principal, command, wait)

    async def register_subjects(self, principal: Principal, subjects: list[SubjectPlacement], *,
                                idempotency_key: str | None, request_id: str | None,
                                wait: bool) -> Submitted:
        """Publish the placement of subjects in projects; with ``wait``, return its outcome."""
        content = {"register_subjects": [s.model_dump(mode="json") for s in subjects]}
        command = RegisterSubjects(type="register_subjects", subjects=subjects,
                                   **self._envelope(principal, idempotency_key, request_id, wait, content))
        return await self._send(principal, command, wait)

    def _envelope(self, principal: Principal, idempotency_key: str | None, request_id: str | None, wait: bool,
                  content: Any) -> dict[str, Any]:
        """What every command carries: its id, who, when, idempotency, the request it came with, and where to
        reply."""
        if idempotency_key is not None and not _valid_idempotency_key(idempotency_key):
            raise ApiError.one(400, "validation",
                               f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters of UTF-8 text",
                               "Idempotency-Key")
        return {"id": uuid.uuid4(), "workspace_id": principal.workspace_id, "actor": principal.actor,
                "accepted_at": datetime.now(UTC), "idempotency_key": idempotency_key,
                "request_hash": request_hash(content) if idempotency_key is not None else None,
                "request_id": request_id,
                "reply_to": self._waiter.gateway_id if wait else None}

    async def _send(self, principal: Principal, command: Command, wait: bool) -> Submitted:
        assert principal.signer is not None  # an authenticated principal always has one
        future = self._waiter.expect(command.id) if wait else None
        try:
            await self._publisher.submit(command, principal.signer, principal.public_key)
        except PublishFailed as error:
            if future is not None:
                self._waiter.forget(command.id, future)
            if error.uncertain:
                return await self._fence(principal, command)
            raise unavailable("the message broker") from None
        if future is not None:
            try:
                async with asyncio.timeout(self._timeout):  # cancels only this request's own future
                    return Submitted(command.id, await future)
            except TimeoutError:
                self._waiter.forget(command.id, future)
        await self._mark_pending(principal, command)
        return Submitted(command.id, None)

    async def _fence(self, principal: Principal, command: Command) -> Submitted:
        """The broker did not confirm ``command``, which may reach a worker all the same, at any time. Unless a
        worker applied it already (then its outcome is the answer), record it failed, so that no worker ever
        will: a write the client was told failed must not be applied later, after the writes it sent since."""
        outcome = failed(command.id, [ItemError(ErrorType.UNAVAILABLE, "the message broker did not confirm the "
                                                "write in time; it was not applied and never will be", "command")])
        try:
            async with asyncio.timeout(self._timeout), self._pool.acquire() as connection:
                settled = await stored_operations.fence(
                    connection, operation_id=command.id, workspace_id=command.workspace_id,
                    public_key=principal.public_key, failure=orjson.dumps(outcome).decode())
        except TRANSIENT_ERRORS as error:  # the database is away too: the command may or may not be applied
            log.warning("the broker did not confirm a write, which may still be applied", operation_id=str(command.id),
                        error=repr(error))
            raise unconfirmed(command.id) from None
        if settled is None or settled[0] == "pending":  # neither can be, for a new command id
            raise unconfirmed(command.id)
        recorded = settled[1]
        if recorded == outcome:
            log.warning("the broker did not confirm a write: recorded as never to be applied",
                        operation_id=str(command.id))
            raise never_applied(command.id)
        log.info("the broker did not confirm a write, which a worker had applied", operation_id=str(command.id))
        return Submitted(command.id, recorded)

    async def _mark_pending(self, principal: Principal, command: Command) -> None:
        """Record that the operation exists, so polling it finds it even before a worker took it."""
        # If the database is down, the command is still safe on the broker: the operation appears once applied.
        with contextlib.suppress(*TRANSIENT_ERRORS):
            await self._pending((command.id, command.workspace_id, principal.public_key))

    async def _record_pending(self, operations: list[tuple[uuid.UUID, int, bytes]]) -> list[None]:
        """Record operations as pending, all in one statement (async writes accepted together)."""
        ids, workspace_ids, public_keys = zip(*operations, strict=True)
        await stored_operations.mark_pending(self._pool, ids=ids, workspace_ids=workspace_ids,
                                             public_keys=public_keys)
        return [None] * len(operations)


def _valid_idempotency_key(key: str) -> bool:
    try:
        key.encode()
    except UnicodeEncodeError:  # header bytes that are not UTF-8 (aiohttp keeps them as surrogates)
        return False
    return 0 < len(key) <= MAX_IDEMPOTENCY_KEY


def request_hash(content: list[CommandItem] | dict[str, Any]) -> str:
    """A digest of a request's content, to tell an idempotent retry from a different request."""
    data = [item.model_dump(mode="json") for item in content] if isinstance(content, list) else content
    canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()
