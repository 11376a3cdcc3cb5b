"""Webhook delivery (``cfv webhooks``): sends the event log's change events to the workspaces' webhooks, signed as
Standard Webhooks says, at least once and in order.

Each webhook has a cursor in its workspace's event log (``webhooks.cursor``). A delivery process reads the events
after it (:func:`cfv.store.events.read_page`, with the webhook creator's read access and the webhook's filters)
and POSTs them one at a time, in position order: a 2xx within ``CFV_WEBHOOK_TIMEOUT`` moves the cursor past the
event. A failure is recorded and the same event is tried again after an exponential, jittered back-off; nothing
after it is sent meanwhile (head-of-line blocking per webhook: so every key's events, (subject, field), arrive in
order). An event that keeps failing for ``CFV_WEBHOOK_GIVE_UP_AFTER`` is given up (logged and recorded) and the
next one is sent; after ``CFV_WEBHOOK_DISABLE_AFTER`` consecutive failures the webhook is disabled with the
reason, and re-enabling it resumes at its cursor.

Several delivery processes may run: each webhook is delivered by one at a time, the one holding its advisory lock
(a session lock on the connection it delivers with; it goes if that process dies). They wake on the workers'
``NOTIFY cfv_outbox`` and otherwise look every ``CFV_WEBHOOK_POLL_INTERVAL``. Nothing here touches the write path:
the event log is read, as the replay API reads it.

No server-side request forgery: every address a delivery connects to is checked when it is resolved (a resolver
that refuses non-public addresses, unless ``CFV_WEBHOOK_ALLOW_PRIVATE``), redirects are not followed (a 3xx is a
failure). Secrets are never logged, nor URLs (which may carry tokens): a webhook is named by its id and host.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import orjson
import structlog
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from cfv_schemas.events import CONTENT_TYPE

from cfv import metrics
from cfv.contracts import OUTBOX_CHANNEL
from cfv.domain import webhooks as rules
from cfv.faults import TRANSIENT_ERRORS, keep_serving
from cfv.settings import Settings
from cfv.store import events
from cfv.store import webhooks as stored
from cfv.store.database import Connection, connect, create_pool
from cfv.store.webhooks import Webhook

log = structlog.get_logger("cfv.webhooks")
_PRUNE_BATCH = 500
_ERROR_LENGTH = 500


class RefusedAddress(aiohttp.ClientConnectionError):
    """A webhook's host resolved to an address deliveries may not reach."""


class GuardedResolver(AbstractResolver):
    """Resolves as aiohttp does, and refuses a host that resolves to a non-public address: checked as the
    connection is made, so a DNS answer that changed since the webhook was registered is caught."""

    def __init__(self) -> None:
        self._resolver = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        for result in found:
            address = rules.literal_address(result["host"])
            why = "not an IP address" if address is None else rules.address_refusal(address)
            if why is not None:
                raise RefusedAddress(f"{host} resolves to {why}: refused")  # never which (internal names)
        return found

    async def close(self) -> None:
        await self._resolver.close()


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one POST of an event came to."""

    status: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return self.status is not None and 200 <= self.status < 300


def _host(url: str) -> str:
    return urlsplit(url).hostname or "?"


class Deliverer:
    """Delivers the due webhooks' events until drained."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._box = rules.SecretBox.from_setting(settings.secret_keys.get_secret_value())
        self._unopened: set[int] = set()  # webhooks whose secret no key opens (logged once, until one does)
        self._wake = asyncio.Event()
        self._stopping = False
        self._stopped = asyncio.Event()
        self.delivered = 0

    async def run(self) -> None:
        """Deliver until cancelled or drained, surviving lost connections to the database."""
        try:
            await keep_serving(self._serve, stopping=lambda: self._stopping, what="webhook delivery", log=log,
                               expected=TRANSIENT_ERRORS)
        finally:
            self._stopped.set()

    async def drain(self) -> None:
        """Stop once the deliveries in flight are answered and recorded; return when stopped."""
        self._stopping = True
        self._wake.set()
        await self._stopped.wait()

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def _serve(self) -> None:
        settings = self._settings
        concurrency = max(1, min(settings.webhook_concurrency, settings.db_pool_size - 2))
        pool = await create_pool(settings.database_url, size=concurrency + 2)
        listening: asyncpg.Connection[Any] | None = None
        resolver = None if settings.webhook_allow_private else GuardedResolver()
        http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, limit=concurrency * 2),
            timeout=aiohttp.ClientTimeout(total=settings.webhook_timeout), trust_env=False,
            headers={"User-Agent": "cfv-webhooks"})
        running: dict[int, asyncio.Task[bool]] = {}
        retries: asyncio.Task[None] | None = None
        try:
            listening = await connect(settings.database_url)
            await listening.add_listener(OUTBOX_CHANNEL, self._notified)
            log.info("webhook delivery running", concurrency=concurrency)
            pruned_at = 0.0
            while not self._stopping:
                if listening.is_closed():  # notifications would go unheard: start again, listening anew
                    raise ConnectionError("the connection listening for new events was lost")
                self._wake.clear()
                async with pool.acquire() as connection:
                    due = await stored.due(connection)
                for webhook_id in due:
                    if len(running) >= concurrency:
                        break
                    if webhook_id not in running:
                        task = asyncio.create_task(self._deliver(pool, http, webhook_id))
                        running[webhook_id] = task
                        task.add_done_callback(functools.partial(self._finished, running, webhook_id))
                if retries is None or retries.done():
                    if retries is not None and not retries.cancelled() and retries.exception() is not None:
                        log.warning("webhook retries interrupted", error=repr(retries.exception()))
                    retries = asyncio.create_task(self._retries(pool, http))
                if time.monotonic() - pruned_at > settings.prune_every:
                    pruned_at = time.monotonic()
                    await self._prune(pool)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), settings.webhook_poll_interval)
            # Draining: the deliveries in flight finish their current event (each checks _stopping between events).
            if running or retries is not None:
                await asyncio.gather(*running.values(), *([retries] if retries else []), return_exceptions=True)
        finally:
            left: list[asyncio.Task[Any]] = [*running.values(), *([retries] if retries else [])]
            for task in left:
                task.cancel()
            for task in left:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await http.close()
            if resolver is not None:  # the connector closes only a resolver it made itself
                await resolver.close()
            if listening is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(listening.close(), 2)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), 5)

    def _finished(self, running: dict[int, asyncio.Task[bool]], webhook_id: int, _: object) -> None:
        task = running.pop(webhook_id, None)
        if task is None or task.cancelled():
            return
        if task.exception() is not None:
            log.warning("webhook delivery interrupted", webhook_id=webhook_id, error=repr(task.exception()))
        elif task.result():
            self._wake.set()  # a slot is free, and others may be due (not when another process held this one: that
            # would only ask again at once, and again, while it delivers)

    async def _prune(self, pool: asyncpg.Pool[Any]) -> None:
        async with pool.acquire() as connection:
            while await stored.prune_deliveries(connection, older_than=self._settings.webhook_delivery_retention,
                                                limit=_PRUNE_BATCH) == _PRUNE_BATCH:
                pass

    async def _deliver(self, pool: asyncpg.Pool[Any], http: aiohttp.ClientSession, webhook_id: int) -> bool:
        """Deliver one webhook's due events, holding its lock; False if another process holds it."""
        async with pool.acquire() as connection:
            if not await stored.try_lock(connection, webhook_id=webhook_id):
                return False
            try:
                await self._deliver_locked(connection, http, webhook_id)
            finally:
                with contextlib.suppress(*TRANSIENT_ERRORS):
                    await stored.unlock(connection, webhook_id=webhook_id)
        return True

    async def _deliver_locked(self, connection: Connection, http: aiohttp.ClientSession,
                              webhook_id: int) -> None:
        settings = self._settings
        while not self._stopping:
            webhook = await stored.to_deliver(connection, webhook_id=webhook_id)
            if webhook is None or webhook.disabled_at is not None:
                return
            if webhook.next_attempt_at is not None and webhook.next_attempt_at > datetime.now(UTC):
                return
            if webhook.creator_role is None:
                reason = f"its creator (user {webhook.created_by}) was deactivated"
                await stored.disable(connection, webhook_id=webhook_id, reason=reason)
                log.warning("webhook disabled", webhook_id=webhook_id, reason=reason)
                return
            try:
                secret = self._box.open(webhook.secret)
            except rules.SecretUnavailable as unavailable:
                # Nothing is sent or counted as failed: the events wait for the key (a fix of the configuration).
                if webhook_id not in self._unopened:
                    self._unopened.add(webhook_id)
                    log.error("cannot sign a webhook's deliveries, which wait", webhook_id=webhook_id,
                              host=_host(webhook.url), reason=str(unavailable))
                return
            self._unopened.discard(webhook_id)
            subject_types = webhook.subject_types
            page = await events.read_page(
                connection, workspace_id=webhook.workspace_id, after=webhook.cursor, limit=settings.webhook_batch,
                user_id=webhook.created_by, account_role=webhook.creator_role, types=webhook.event_types,
                subject_type=subject_types[0] if subject_types and len(subject_types) == 1 else None,
                field_ids=webhook.custom_field_ids)
            head_attempts, failing_since = webhook.head_attempts, webhook.head_failing_since
            for text in page.events:
                if self._stopping:
                    return
                event = orjson.loads(text)
                if subject_types and event.get("data", {}).get("subject_type") not in subject_types:
                    continue  # left out by the filter: the cursor moves past it with what follows
                position = int(event["position"])
                attempt = await self.send(http, webhook, secret, text, event)
                if attempt.ok:
                    metrics.WEBHOOK_DELIVERIES.labels("succeeded").inc()
                    self.delivered += 1
                    progress = await stored.delivered(connection, webhook_id=webhook_id, position=position,
                                                      event_id=event["id"], event_type=event["type"],
                                                      response_status=attempt.status or 0,
                                                      duration_ms=attempt.duration_ms, attempt=head_attempts + 1)
                    head_attempts, failing_since = 0, None
                    if not progress.enabled:
                        return
                    if progress.updated_at != webhook.updated_at:
                        break  # changed through the API (its secret, URL, filters): read it again
                    continue
                now = datetime.now(UTC)
                failing_since = failing_since or now
                give_up = (now - failing_since).total_seconds() >= settings.webhook_give_up_after
                head_attempts += 1
                delay = rules.retry_delay(head_attempts, first=settings.webhook_retry_first,
                                          ceiling=settings.webhook_retry_ceiling)
                error = (attempt.error or "")[:_ERROR_LENGTH]
                metrics.WEBHOOK_DELIVERIES.labels("given_up" if give_up else "failed").inc()
                reason = (f"{settings.webhook_disable_after} consecutive failed deliveries; the last: {error} "
                          f"(event at position {position})")
                progress = await stored.failed(
                    connection, webhook_id=webhook_id, position=position, event_id=event["id"],
                    event_type=event["type"], response_status=attempt.status, error=error,
                    duration_ms=attempt.duration_ms, attempt=head_attempts, give_up=give_up, retry_in=delay,
                    disable_after=settings.webhook_disable_after, disable_reason=reason)
                if give_up:
                    log.warning("webhook delivery given up", webhook_id=webhook_id, host=_host(webhook.url),
                                position=position, event_id=event["id"], attempts=head_attempts, error=error)
                    head_attempts, failing_since = 0, None
                else:
                    log.info("webhook delivery failed", webhook_id=webhook_id, host=_host(webhook.url),
                             position=position, attempt=head_attempts, error=error, retry_in=round(delay, 2))
                if not progress.enabled:
                    metrics.WEBHOOKS_DISABLED.inc()
                    log.warning("webhook disabled", webhook_id=webhook_id, host=_host(webhook.url), reason=reason)
                    return
                if not give_up:
                    return  # the same event again after the back-off; nothing after it before
                if progress.updated_at != webhook.updated_at:
                    break
            else:
                # Every event shown was delivered or given up (or left out): the cursor goes as far as the page
                # looked.
                if page.next_after > webhook.cursor:
                    await stored.skipped_to(connection, webhook_id=webhook_id, position=page.next_after)
                if not page.events and page.next_after <= webhook.cursor:
                    return

    async def send(self, http: aiohttp.ClientSession, webhook: Webhook, secret: str, text: str,
                   event: dict[str, Any]) -> Attempt:
        """POST one event to the webhook, signed with its (opened) ``secret``; never raises for what the receiver (or
        its address) does."""
        body = text.encode()
        timestamp = int(time.time())
        headers = {"Content-Type": CONTENT_TYPE, "webhook-id": str(event["id"]),
                   "webhook-timestamp": str(timestamp),
                   "webhook-signature": rules.sign(secret, str(event["id"]), timestamp, body)}
        began = time.monotonic()

        def took() -> int:
            return int((time.monotonic() - began) * 1000)

        refusal = rules.url_refusal(webhook.url)
        if refusal is None and not self._settings.webhook_allow_private:
            literal = rules.literal_address(urlsplit(webhook.url).hostname or "")
            why = None if literal is None else rules.address_refusal(literal)
            refusal = None if why is None else f"{literal} is {why}: refused"
        if refusal is not None:
            return Attempt(None, refusal, took())
        try:
            async with http.post(webhook.url, data=body, headers=headers, allow_redirects=False) as answer:
                await answer.content.read(4096)  # enough to let the connection be reused; the rest is not wanted
                status = answer.status
        except TimeoutError:
            return Attempt(None, f"no answer within {self._settings.webhook_timeout:g} s", took())
        except RefusedAddress as error:
            return Attempt(None, str(error), took())
        except aiohttp.ClientError as error:
            return Attempt(None, f"{type(error).__name__}: {error}", took())
        except OSError as error:
            return Attempt(None, f"{type(error).__name__}: {error}", took())
        if 200 <= status < 300:
            return Attempt(status, None, took())
        if 300 <= status < 400:
            return Attempt(status, f"answered {status}: redirects are not followed", took())
        return Attempt(status, f"answered {status}", took())

    async def _retries(self, pool: asyncpg.Pool[Any], http: aiohttp.ClientSession) -> None:
        """Send the retries asked through the API (apart from the webhooks' order), each claimed by one process."""
        while not self._stopping:
            # One at a time: the claim holds its row (and so a DELETE of its webhook) until the POST is answered.
            async with pool.acquire() as connection, connection.transaction():
                claimed = await stored.claim_retries(connection, limit=1)
                for retry in claimed:
                    await self._retry(connection, http, retry)
            if not claimed:
                return

    async def _retry(self, connection: Connection, http: aiohttp.ClientSession,
                     retry: stored.Retry) -> None:
        webhook = retry.webhook
        text, error = None, "the event is no longer kept, or no longer readable by the webhook's creator"
        try:
            secret = self._box.open(webhook.secret)
        except rules.SecretUnavailable as unavailable:
            secret, error = "", f"cannot sign the delivery: {unavailable}"
        if secret and webhook.creator_role is not None:
            page = await events.read_page(connection, workspace_id=webhook.workspace_id, after=retry.position - 1,
                                          limit=1, user_id=webhook.created_by, account_role=webhook.creator_role)
            if page.events and orjson.loads(page.events[0]).get("position") == retry.position:
                text = page.events[0]
        if text is None:
            await stored.settle_retry(connection, delivery_id=retry.delivery_id, status="failed", response_status=None,
                                      error=error, duration_ms=0)
            metrics.WEBHOOK_DELIVERIES.labels("failed").inc()
            return
        attempt = await self.send(http, webhook, secret, text, orjson.loads(text))
        await stored.settle_retry(connection, delivery_id=retry.delivery_id,
                                  status="succeeded" if attempt.ok else "failed", response_status=attempt.status,
                                  error=None if attempt.error is None else attempt.error[:_ERROR_LENGTH],
                                  duration_ms=attempt.duration_ms)
        metrics.WEBHOOK_DELIVERIES.labels("succeeded" if attempt.ok else "failed").inc()
        log.info("webhook retry sent", webhook_id=webhook.id, host=_host(webhook.url), position=retry.position,
                 status=attempt.status, error=attempt.error)
