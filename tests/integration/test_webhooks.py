"""Webhooks (issue 11): the admin-only API, Standard Webhooks signatures (checked with the independent
``standardwebhooks`` library), delivery at least once and in order per key through a receiver that is down for a
while, retries with back-off, giving up, disabling and resuming, no server-side request forgery, the creator's
read access, two delivery processes at once, and the deliveries' record and retry endpoint.

A real aiohttp receiver listens on loopback (so these tests set ``CFV_WEBHOOK_ALLOW_PRIVATE``, except where they
check the refusals), and the delivery process runs in the test's process over the test's database."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest
from aiohttp import web
from cfv import metrics
from cfv.deliverer import Deliverer
from cfv.processes import run_webhooks
from cfv.settings import Settings
from cfv.store import webhooks as stored
from standardwebhooks import Webhook as Verifier
from standardwebhooks.exceptions import WebhookVerificationError
from support import Stack, Workspace, captured_logs, free_port, running_stack, wait_for
from support.kantata import item, write

WEBHOOKS = "/api/v1/webhooks"
VALUE_TYPES = ["cfv.value.created.v1", "cfv.value.replaced.v1", "cfv.value.deleted.v1"]
FAST = {"webhook_allow_private": True, "webhook_retry_first": 0.05, "webhook_retry_ceiling": 0.2,
        "webhook_poll_interval": 0.1, "webhook_timeout": 2.0}


class Receiver:
    """An HTTP endpoint on loopback that records what it is sent, and answers ``status`` (or, for the event ids in
    ``failing``, 500)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.status = 200
        self.delay = 0.0  # seconds before each answer
        self.arrived = 0  # requests begun (``hits`` holds those answered)
        self.failing: set[str] = set()
        self.hits: list[tuple[dict[str, str], bytes, int]] = []  # every request: headers, body, answer
        self.elsewhere = 0  # requests to the redirect's target
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def received(self) -> list[tuple[dict[str, str], bytes]]:
        """The requests answered 2xx."""
        return [(headers, body) for headers, body, status in self.hits if 200 <= status < 300]

    def events(self) -> list[dict[str, Any]]:
        """The events received (answered 2xx), decoded, in arrival order."""
        return [orjson.loads(body) for _, body in self.received]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        app.router.add_post("/elsewhere", self._elsewhere)
        app.router.add_post("/redirect", self._redirect)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _hook(self, request: web.Request) -> web.Response:
        self.arrived += 1
        body = await request.read()
        await asyncio.sleep(self.delay)
        status = 500 if request.headers.get("webhook-id") in self.failing else self.status
        self.hits.append((dict(request.headers), body, status))
        return web.Response(status=status)

    async def _elsewhere(self, request: web.Request) -> web.Response:
        self.elsewhere += 1
        return web.Response(status=200)

    async def _redirect(self, request: web.Request) -> web.Response:
        await request.read()
        raise web.HTTPFound("/elsewhere")

    async def wait_received(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        async def enough() -> bool:
            return len(self.received) >= count
        await wait_for(enough, timeout, f"{count} deliveries (have {len(self.received)})")
        return self.events()


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """The test's settings with quick retries and polling, and loopback receivers allowed."""
    return settings.model_copy(update=FAST)


@contextlib.asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    """A receiver listening until the block ends."""
    running = Receiver()
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with receiving() as running:
        yield running


@contextlib.asynccontextmanager
async def delivering(settings: Settings) -> AsyncIterator[Deliverer]:
    """A delivery process (in this process) until the block ends; then drained."""
    deliverer = Deliverer(settings)
    task = asyncio.create_task(deliverer.run())
    try:
        yield deliverer
    finally:
        await asyncio.wait_for(deliverer.drain(), 20)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def create_webhook(stack: Stack, workspace: Workspace, url: str, **spec: Any) -> dict[str, Any]:
    status, body, _ = await stack.request("POST", WEBHOOKS, workspace, json={"webhook": {
        "url": url, "event_types": VALUE_TYPES, **spec}})
    assert status == 201, body
    webhook: dict[str, Any] = next(iter(body["webhooks"].values()))
    return webhook


async def points_and_webhook(stack: Stack, workspace: Workspace, url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A number field on stories, then a webhook to ``url`` (so the field's event comes before its position)."""
    field = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
    return field, await create_webhook(stack, workspace, url)


async def write_each(stack: Stack, workspace: Workspace, field: dict[str, Any], *values: int) -> None:
    """Write each value to its own subject (value n to subject n), one request each."""
    for n in values:
        status, body, _ = await write(stack, workspace, item(field, n, subject_id=n))
        assert status == 200, body


async def get_webhook(stack: Stack, workspace: Workspace, webhook_id: str) -> dict[str, Any]:
    status, body, _ = await stack.request("GET", f"{WEBHOOKS}/{webhook_id}", workspace)
    assert status == 200, body
    webhook: dict[str, Any] = body["webhooks"][webhook_id]
    return webhook


async def deliveries(stack: Stack, workspace: Workspace, webhook_id: str) -> list[dict[str, Any]]:
    status, body, _ = await stack.request("GET", f"{WEBHOOKS}/{webhook_id}/deliveries?per_page=200", workspace)
    assert status == 200, body
    return [body["webhook_deliveries"][ref["id"]] for ref in body["results"]]


async def user_key(stack: Stack, workspace: Workspace, role: str, name: str = "Ann") -> tuple[str, Workspace]:
    """A user of ``role`` and a key of theirs: (user id, the workspace acting as them)."""
    status, body, _ = await stack.request("POST", "/api/v1/users", workspace, json={"user": {
        "name": name, "email": f"{name.lower()}@example.com", "account_role": role}})
    assert status == 201, body
    user_id = next(iter(body["users"]))
    status, body, _ = await stack.request("POST", f"/api/v1/users/{user_id}/api_keys", workspace, json={})
    assert status == 201, body
    return user_id, Workspace(workspace.id, workspace.slug, next(iter(body["api_keys"].values()))["key"])


def verified(secret: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The body, if its Standard Webhooks signature is valid under ``secret`` (else WebhookVerificationError)."""
    event: dict[str, Any] = Verifier(secret).verify(body, headers)
    return event


def check_per_key_order(received: list[dict[str, Any]]) -> dict[tuple[str, int], list[int]]:
    """Each key's sequences, in arrival order: they must be 1, 2, 3... (nothing missing, nothing out of order)."""
    by_key: dict[tuple[str, int], list[int]] = defaultdict(list)
    for event in received:
        by_key[(event["data"]["subject_id"], event["data"]["custom_field_id"])].append(event["data"]["sequence"])
    for key, sequences in by_key.items():
        assert sequences == list(range(1, len(sequences) + 1)), (key, sequences)
    return by_key


async def value_events(db: asyncpg.Connection[Any], workspace: Workspace, after: int) -> list[tuple[int, str]]:
    """The value events of the workspace's log after position ``after``: (position, CloudEvent text), in order.
    (Creating a field appends its definition event to the same log, so value events do not start at 1.)"""
    rows = await db.fetch("SELECT position, event::text AS event FROM events WHERE workspace_id = $1 "
                          "AND position > $2 AND type LIKE 'cfv.value.%' ORDER BY position", workspace.id, after)
    return [(r["position"], r["event"]) for r in rows]


# --- the API --------------------------------------------------------------------------------------------------


async def test_webhooks_are_managed_by_administrators_and_the_secret_is_shown_once(
        fast: Settings, workspace: Workspace, other_workspace: Workspace) -> None:
    async with running_stack(fast, worker=False, relay=False) as stack:
        made = await create_webhook(stack, workspace, "https://example.com/hook", description="CRM sync",
                                    subject_types=["Story"], custom_field_ids=[1, 2])
        assert made["secret"].startswith("whsec_") and len(made["secret"]) > 40
        assert made["status"] == "enabled" and made["position"] == 0 and made["description"] == "CRM sync"
        assert made["subject_types"] == ["Story"] and made["custom_field_ids"] == [1, 2]
        hook_id = made["id"]

        shown = await get_webhook(stack, workspace, hook_id)
        assert "secret" not in shown and made["secret"] not in orjson.dumps(shown).decode()
        status, body, _ = await stack.request("GET", WEBHOOKS, workspace)
        assert status == 200 and list(body["webhooks"]) == [hook_id] and body["count"] == 1, body
        assert made["secret"] not in orjson.dumps(body).decode()

        status, body, _ = await stack.request("PATCH", f"{WEBHOOKS}/{hook_id}", workspace,
                                              json={"webhook": {"description": "changed", "subject_types": None}})
        assert status == 200, body
        changed = body["webhooks"][hook_id]
        assert changed["description"] == "changed" and changed["subject_types"] is None and "secret" not in changed
        status, body, _ = await stack.request("PATCH", f"{WEBHOOKS}/{hook_id}", workspace,
                                              json={"rotate_secret": True})
        assert status == 200, body
        rotated = body["webhooks"][hook_id]["secret"]
        assert rotated.startswith("whsec_") and rotated != made["secret"]
        status, body, _ = await stack.request("PATCH", f"{WEBHOOKS}/{hook_id}", workspace, json={"enabled": False})
        assert status == 200 and body["webhooks"][hook_id]["status"] == "disabled", body
        assert body["webhooks"][hook_id]["disabled_reason"] == "disabled by an administrator"

        # Refusals: what is not valid, what is empty, who is not an administrator, another workspace's key.
        for spec, field in (({"url": "https://example.com", "event_types": ["cfv.nope.v1"]}, "event_types"),
                            ({"url": "ftp://example.com/x", "event_types": VALUE_TYPES}, "url"),
                            ({"url": "https://user:pw@example.com/", "event_types": VALUE_TYPES}, "url"),
                            ({"url": "https://example.com", "event_types": VALUE_TYPES,
                              "subject_types": ["Planet"]}, "subject_types")):
            status, body, _ = await stack.request("POST", WEBHOOKS, workspace, json={"webhook": spec})
            assert status == 422 and body["errors"][0]["field"] == field, (spec, body)
        status, body, _ = await stack.request("POST", WEBHOOKS, workspace, json={"webhook": {"url": "x"}})
        assert status == 400, body
        status, body, _ = await stack.request("PATCH", f"{WEBHOOKS}/{hook_id}", workspace, json={})
        assert status == 400, body

        _, viewer = await user_key(stack, workspace, "reports_viewer_with_cost")
        for method, path in (("GET", WEBHOOKS), ("POST", WEBHOOKS), ("GET", f"{WEBHOOKS}/{hook_id}"),
                             ("PATCH", f"{WEBHOOKS}/{hook_id}"), ("DELETE", f"{WEBHOOKS}/{hook_id}"),
                             ("GET", f"{WEBHOOKS}/{hook_id}/deliveries")):
            status, body, _ = await stack.request(method, path, viewer, json={"description": "x"})
            assert status == 403 and body["errors"][0]["type"] == "forbidden", (method, path, body)
        for method, path in (("GET", f"{WEBHOOKS}/{hook_id}"), ("PATCH", f"{WEBHOOKS}/{hook_id}"),
                             ("DELETE", f"{WEBHOOKS}/{hook_id}"), ("GET", f"{WEBHOOKS}/{hook_id}/deliveries")):
            status, body, _ = await stack.request(method, path, other_workspace, json={"description": "x"})
            assert status == 404, (method, path, body)
        status, body, _ = await stack.request("GET", WEBHOOKS, other_workspace)
        assert status == 200 and body["count"] == 0, body
        assert (await get_webhook(stack, workspace, hook_id))["description"] == "changed"

        status, _, _ = await stack.request("DELETE", f"{WEBHOOKS}/{hook_id}", workspace)
        assert status == 204
        status, _, _ = await stack.request("GET", f"{WEBHOOKS}/{hook_id}", workspace)
        assert status == 404


async def test_a_receiver_gets_every_event_signed_as_standard_webhooks_says(
        fast: Settings, workspace: Workspace, receiver: Receiver, db: asyncpg.Connection[Any]) -> None:
    succeeded_before = metrics.WEBHOOK_DELIVERIES.labels("succeeded")._value.get()
    with captured_logs() as logged:
        secrets = await _signed_deliveries(fast, workspace, receiver, db)
    assert metrics.WEBHOOK_DELIVERIES.labels("succeeded")._value.get() - succeeded_before >= 5
    text = repr(logged)
    assert "webhook delivery running" in text  # the capture saw the delivery process's lines
    for secret in secrets:  # never logged, in any form
        assert secret not in text and secret.removeprefix("whsec_") not in text


async def _signed_deliveries(fast: Settings, workspace: Workspace, receiver: Receiver,
                             db: asyncpg.Connection[Any]) -> list[str]:
    async with running_stack(fast) as stack, delivering(fast):
        field = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
        newest = await db.fetchval("SELECT max(position) FROM events WHERE workspace_id = $1", workspace.id)
        hook = await create_webhook(stack, workspace, receiver.url)
        start = hook["position"]
        assert newest and start == newest  # it starts at the log's newest (the field's event): from now on
        for n in range(1, 4):
            status, body, _ = await write(stack, workspace, item(field, n, subject_id=n))
            assert status == 200, body
        status, body, _ = await write(stack, workspace, item(field, 10, subject_id=1))
        assert status == 200, body
        await receiver.wait_received(4)

        stored = await value_events(db, workspace, 0)
        assert len(stored) == 4 and [p for p, _ in stored] == [start + n for n in range(1, 5)]
        assert [body for _, body in receiver.received] == [text.encode() for _, text in stored]  # exactly as logged
        for headers, body in receiver.received:
            event = verified(hook["secret"], headers, body)
            assert headers["webhook-id"] == event["id"]
            assert headers["Content-Type"] == "application/cloudevents+json"
        assert [e["position"] for e in receiver.events()] == [start + n for n in range(1, 5)]
        assert (await get_webhook(stack, workspace, hook["id"]))["position"] == start + 4

        # A rotated secret signs what follows; the old one no longer verifies.
        status, body, _ = await stack.request("PATCH", f"{WEBHOOKS}/{hook['id']}", workspace,
                                              json={"webhook": {"rotate_secret": True}})
        assert status == 200, body
        new_secret = body["webhooks"][hook["id"]]["secret"]
        status, body, _ = await write(stack, workspace, item(field, 11, subject_id=2))
        assert status == 200, body
        await receiver.wait_received(5)
        headers, last = receiver.received[-1]
        assert verified(new_secret, headers, last)["position"] == start + 5
        with pytest.raises(WebhookVerificationError):
            verified(hook["secret"], headers, last)
        with pytest.raises(WebhookVerificationError):  # and a body changed in transit does not verify
            verified(new_secret, headers, last.replace(b"11", b"12"))
    return [hook["secret"], new_secret]


async def test_a_receiver_that_was_down_gets_every_event_later_in_order_per_key(
        fast: Settings, workspace: Workspace, receiver: Receiver) -> None:
    await receiver.stop()  # not even listening, at first
    async with running_stack(fast) as stack, delivering(fast):
        points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
        size = await stack.create_field(workspace, name="Size", subject_type="Story", value_type="number")
        hook = await create_webhook(stack, workspace, receiver.url)
        start = hook["position"]  # the fields' events come before it
        for round_ in range(3):
            for subject in (1, 2):
                status, body, _ = await write(stack, workspace, item(points, round_, subject_id=subject),
                                              item(size, round_ + 100, subject_id=subject))
                assert status == 200, body

        async def failed_a_few(count: int) -> bool:
            return sum(d["status"] == "failed" for d in await deliveries(stack, workspace, hook["id"])) >= count
        await wait_for(lambda: failed_a_few(2), 20, "attempts to fail while nobody listens")
        refused = (await deliveries(stack, workspace, hook["id"]))[0]
        assert refused["status"] == "failed" and refused["response_status"] is None and refused["error"], refused
        assert refused["position"] == start + 1

        receiver.status = 500
        await receiver.start()  # listening now, but failing
        await wait_for(lambda: failed_a_few(4), 20, "attempts to fail with 500")
        assert all(status == 500 for _, _, status in receiver.hits)
        # Nothing passes the head.
        assert {orjson.loads(body)["position"] for _, body, _ in receiver.hits} == {start + 1}
        failing = await get_webhook(stack, workspace, hook["id"])
        assert failing["position"] == start and failing["consecutive_failures"] >= 4

        receiver.status = 200
        received = await receiver.wait_received(12)
        for headers, body in receiver.received:
            verified(hook["secret"], headers, body)
        assert sorted(e["position"] for e in received) == list(range(start + 1, start + 13))
        by_key = check_per_key_order(received)
        assert len(by_key) == 4 and all(len(s) == 3 for s in by_key.values())
        await wait_for(lambda: _position_is(stack, workspace, hook["id"], start + 12), 10, "the webhook's position")
        recovered = await get_webhook(stack, workspace, hook["id"])
        assert recovered["consecutive_failures"] == 0 and recovered["next_attempt_at"] is None
        attempts = await deliveries(stack, workspace, hook["id"])
        assert attempts[0]["status"] == "succeeded" and attempts[0]["response_status"] == 200
        assert any(d["response_status"] == 500 and d["error"] == "answered 500" for d in attempts)


async def _position_is(stack: Stack, workspace: Workspace, webhook_id: str, position: int) -> bool:
    return bool((await get_webhook(stack, workspace, webhook_id))["position"] == position)


async def test_consecutive_failures_disable_the_webhook_and_re_enabling_resumes_where_it_stopped(
        fast: Settings, workspace: Workspace, receiver: Receiver) -> None:
    settings = fast.model_copy(update={"webhook_disable_after": 3})
    receiver.status = 503
    async with running_stack(settings) as stack, delivering(settings):
        field, hook = await points_and_webhook(stack, workspace, receiver.url)
        start = hook["position"]
        await write_each(stack, workspace, field, 1, 2)

        async def disabled() -> bool:
            return bool((await get_webhook(stack, workspace, hook["id"]))["status"] == "disabled")
        await wait_for(disabled, 20, "the webhook to be disabled")
        shown = await get_webhook(stack, workspace, hook["id"])
        assert shown["disabled_reason"].startswith("3 consecutive failed deliveries; the last: answered 503"), shown
        assert shown["disabled_at"] and shown["position"] == start
        tried = len(receiver.hits)
        assert tried == 3

        status, body, _ = await write(stack, workspace, item(field, 3, subject_id=3))
        assert status == 200, body
        await asyncio.sleep(1)
        assert len(receiver.hits) == tried  # disabled: nothing is sent

        receiver.status = 200
        status, body, _ = await stack.request("PATCH", f"{WEBHOOKS}/{hook['id']}", workspace,
                                              json={"webhook": {"enabled": True}})
        assert status == 200 and body["webhooks"][hook["id"]]["status"] == "enabled", body
        assert body["webhooks"][hook["id"]]["disabled_reason"] is None
        received = await receiver.wait_received(3)
        assert [e["position"] for e in received] == [start + n for n in (1, 2, 3)]  # from where it stopped


async def test_an_event_failing_for_too_long_is_given_up_and_the_next_ones_follow(
        fast: Settings, workspace: Workspace, receiver: Receiver) -> None:
    settings = fast.model_copy(update={"webhook_give_up_after": 0.5})
    async with running_stack(settings) as stack, delivering(settings):
        field, hook = await points_and_webhook(stack, workspace, receiver.url)
        start = hook["position"]
        receiver.status = 500
        status, body, _ = await write(stack, workspace, item(field, 1, subject_id=1))
        assert status == 200, body

        async def tried() -> bool:
            return bool(receiver.hits)
        await wait_for(tried, 20, "a first attempt")
        first_id = orjson.loads(receiver.hits[0][1])["id"]
        receiver.failing, receiver.status = {first_id}, 200
        await write_each(stack, workspace, field, 2, 3)
        received = await receiver.wait_received(2)
        assert [e["position"] for e in received] == [start + 2, start + 3]
        attempts = await deliveries(stack, workspace, hook["id"])
        given_up = [d for d in attempts if d["status"] == "given_up"]
        assert [(d["position"], d["event_id"]) for d in given_up] == [(start + 1, first_id)]
        assert all(d["status"] == "failed" for d in attempts if d["position"] == start + 1 and d not in given_up)
        assert (await get_webhook(stack, workspace, hook["id"]))["status"] == "enabled"


# --- server-side request forgery ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/",
                                 "http://192.168.0.1/", "http://169.254.169.254/latest/meta-data/",
                                 "http://[::1]/", "http://[fd00:ec2::254]/", "http://0.0.0.0/", "http://224.0.0.1/",
                                 "http://[::ffff:127.0.0.1]/", "http://100.64.0.1/", "http://2130706433/"])
async def test_urls_reaching_private_addresses_are_refused(settings: Settings, workspace: Workspace,
                                                           url: str) -> None:
    assert not settings.webhook_allow_private  # the default
    async with running_stack(settings, worker=False, relay=False) as stack:
        status, body, _ = await stack.request("POST", WEBHOOKS, workspace, json={"webhook": {
            "url": url, "event_types": VALUE_TYPES}})
        assert status == 422, body
        [error] = body["errors"]
        assert error["field"] == "url" and error["reason"] == "forbidden_address", error
        assert "public addresses only" in error["message"]


async def test_a_private_address_is_refused_at_delivery_too_and_redirects_are_not_followed(
        fast: Settings, settings: Settings, workspace: Workspace, receiver: Receiver,
        db: asyncpg.Connection[Any]) -> None:
    strict = settings.model_copy(update={**FAST, "webhook_allow_private": False})
    async with running_stack(fast) as stack:
        field = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
        by_name = await create_webhook(stack, workspace, f"http://localhost:{receiver.port}/hook")
        by_address = await create_webhook(stack, workspace, receiver.url)
        redirected = await create_webhook(stack, workspace, f"http://127.0.0.1:{receiver.port}/redirect")
        status, body, _ = await stack.request("PATCH", f"{WEBHOOKS}/{by_name['id']}", workspace,
                                              json={"url": "http://example.com/"})
        assert status == 200, body
        # As if the host's address had changed since: the delivery resolves it again, and refuses it.
        await db.execute("UPDATE webhooks SET url = $1 WHERE id = $2", f"http://localhost:{receiver.port}/hook",
                         int(by_name["id"]))
        status, body, _ = await write(stack, workspace, item(field, 1))
        assert status == 200, body
        async with delivering(strict):
            async def both_failed() -> bool:
                return all([await deliveries(stack, workspace, h["id"]) for h in (by_name, by_address)])
            await wait_for(both_failed, 20, "the refused attempts")
        for hook in (by_name, by_address):
            attempt = (await deliveries(stack, workspace, hook["id"]))[-1]
            assert attempt["status"] == "failed" and attempt["response_status"] is None, attempt
            assert "refused" in attempt["error"] and "loopback" in attempt["error"], attempt
        assert receiver.hits == []  # nothing reached the receiver

        async with delivering(fast):
            async def redirect_tried() -> bool:
                return any(d["response_status"] == 302 for d in await deliveries(stack, workspace, redirected["id"]))
            await wait_for(redirect_tried, 20, "the redirected attempt")
        attempt = next(d for d in await deliveries(stack, workspace, redirected["id"]) if d["response_status"])
        assert attempt["status"] == "failed" and attempt["response_status"] == 302, attempt
        assert "redirects are not followed" in attempt["error"]
        assert receiver.elsewhere == 0

        status, body, _ = await stack.request("PATCH", f"{WEBHOOKS}/{by_address['id']}", workspace,
                                              json={"url": "http://example.com/"})
        assert status == 200, body
    async with running_stack(settings, worker=False, relay=False) as stack:
        status, body, _ = await stack.request("PATCH", f"{WEBHOOKS}/{by_address['id']}", workspace,
                                              json={"url": "http://[::1]:9/hook"})
        assert status == 422 and body["errors"][0]["reason"] == "forbidden_address", body


# --- access, concurrency, the record ----------------------------------------------------------------------------


async def test_deliveries_carry_only_what_the_creator_may_read(fast: Settings, workspace: Workspace,
                                                                receiver: Receiver) -> None:
    async with running_stack(fast) as stack, delivering(fast):
        points = await stack.create_field(workspace, name="Points", subject_type="User", value_type="number",
                                          read_access="account_collaboration")
        cost = await stack.create_field(workspace, name="Cost", subject_type="Estimate", value_type="number",
                                        read_access="account_admin", write_access="account_admin")
        ann, as_ann = await user_key(stack, workspace, "account_admin")
        hook = await create_webhook(stack, as_ann, receiver.url)
        assert hook["created_by"] == ann
        start = hook["position"]  # the fields' events come before it
        status, body, _ = await write(stack, workspace, item(cost, 1, subject_id=1))
        assert status == 200, body
        await receiver.wait_received(1)  # an administrator reads every field
        status, body, _ = await stack.request("PATCH", f"/api/v1/users/{ann}", workspace,
                                              json={"user": {"account_role": "reports_viewer_with_cost"}})
        assert status == 200, body
        status, body, _ = await write(stack, workspace, item(cost, 2, subject_id=2), item(points, 3, subject_id=3))
        assert status == 200, body
        status, body, _ = await write(stack, workspace, item(points, 4, subject_id=4))
        assert status == 200, body
        received = await receiver.wait_received(3)
        await asyncio.sleep(0.5)
        received = receiver.events()
        assert [(e["position"], e["data"]["custom_field_id"]) for e in received] == [
            (start + 1, int(cost["id"])), (start + 3, int(points["id"])),
            (start + 4, int(points["id"]))]  # not the cost at start + 2
        await wait_for(lambda: _position_is(stack, workspace, hook["id"], start + 4), 10,
                       "the position to pass start + 2")

        # A deactivated creator's webhook stops, with the reason.
        status, body, _ = await stack.request("DELETE", f"/api/v1/users/{ann}", workspace)
        assert status == 204, body
        status, body, _ = await write(stack, workspace, item(points, 5, subject_id=5))
        assert status == 200, body

        async def disabled() -> bool:
            return bool((await get_webhook(stack, workspace, hook["id"]))["status"] == "disabled")
        await wait_for(disabled, 20, "the webhook to be disabled")
        assert "was deactivated" in (await get_webhook(stack, workspace, hook["id"]))["disabled_reason"]
        assert len(receiver.received) == 3


async def test_filters_choose_what_is_delivered(fast: Settings, workspace: Workspace, receiver: Receiver) -> None:
    async with running_stack(fast) as stack, delivering(fast):
        story = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
        other = await stack.create_field(workspace, name="Other", subject_type="Story", value_type="number")
        task = await stack.create_field(workspace, name="Hours", subject_type="Estimate", value_type="number")
        await create_webhook(stack, workspace, receiver.url, event_types=["cfv.value.replaced.v1"],
                             subject_types=["Story", "Estimate"], custom_field_ids=[int(story["id"]), int(task["id"])])
        for value in (1, 2):
            status, body, _ = await write(stack, workspace, item(story, value), item(other, value),
                                          item(task, value))
            assert status == 200, body
        received = await receiver.wait_received(2)
        await asyncio.sleep(0.5)
        assert sorted((e["type"], e["data"]["custom_field_id"]) for e in receiver.events()) == [
            ("cfv.value.replaced.v1", int(story["id"])), ("cfv.value.replaced.v1", int(task["id"]))], received


async def test_two_delivery_processes_deliver_each_event_once(fast: Settings, workspace: Workspace,
                                                              receiver: Receiver) -> None:
    async with running_stack(fast) as stack:
        field = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
        hooks = [await create_webhook(stack, workspace, receiver.url) for _ in range(3)]
        stop = asyncio.Event()
        processes = [asyncio.create_task(run_webhooks(fast, stop)) for _ in range(2)]
        try:
            for n in range(10):
                status, body, _ = await write(stack, workspace, item(field, n, subject_id=n % 3 + 1))
                assert status == 200, body
            await receiver.wait_received(30)
            await asyncio.sleep(1)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*processes), 20)  # both stop gracefully
        assert len(receiver.hits) == 30
        per_hook: dict[str, list[int]] = defaultdict(list)
        for headers, body in receiver.received:
            for hook in hooks:
                with contextlib.suppress(WebhookVerificationError):
                    per_hook[hook["id"]].append(verified(hook["secret"], headers, body)["position"])
        assert {h: sorted(p) for h, p in per_hook.items()} == {
            h["id"]: list(range(h["position"] + 1, h["position"] + 11)) for h in hooks}
        for positions in per_hook.values():
            assert positions == sorted(positions)  # each webhook in order


async def test_the_deliveries_are_listed_and_one_can_be_sent_again(
        fast: Settings, workspace: Workspace, other_workspace: Workspace, receiver: Receiver) -> None:
    async with running_stack(fast) as stack, delivering(fast):
        field, hook = await points_and_webhook(stack, workspace, receiver.url)
        start = hook["position"]
        await write_each(stack, workspace, field, 1, 2)
        received = await receiver.wait_received(2)
        attempts = await deliveries(stack, workspace, hook["id"])
        assert [(d["position"], d["status"], d["response_status"], d["attempt"], d["manual"]) for d in attempts] == [
            (start + 2, "succeeded", 200, 1, False), (start + 1, "succeeded", 200, 1, False)]
        assert [d["event_id"] for d in attempts] == [received[1]["id"], received[0]["id"]]
        assert all(d["attempted_at"] and d["duration_ms"] is not None and d["error"] is None for d in attempts)

        first = attempts[-1]
        retry_path = f"{WEBHOOKS}/{hook['id']}/deliveries/{first['id']}/retry"
        status, body, _ = await stack.request("POST", retry_path, other_workspace)
        assert status == 404, body
        status, body, _ = await stack.request("POST", f"{WEBHOOKS}/{hook['id']}/deliveries/987654/retry", workspace)
        assert status == 404, body
        status, body, _ = await stack.request("POST", retry_path, workspace)
        assert status == 202, body
        pending = next(iter(body["webhook_deliveries"].values()))
        assert pending["status"] == "pending" and pending["manual"] and pending["position"] == start + 1
        assert pending["attempt"] == 2
        await receiver.wait_received(3)
        headers, again = receiver.received[-1]
        assert headers["webhook-id"] == first["event_id"]
        assert verified(hook["secret"], headers, again)["position"] == start + 1

        async def settled() -> bool:
            return (await deliveries(stack, workspace, hook["id"]))[0]["status"] == "succeeded"
        await wait_for(settled, 10, "the retry to be recorded")
        assert (await deliveries(stack, workspace, hook["id"]))[0]["id"] == pending["id"]
        assert (await get_webhook(stack, workspace, hook["id"]))["position"] == start + 2  # a retry moves nothing


async def test_a_webhook_another_process_holds_waits_without_spinning_and_is_delivered_once_it_lets_go(
        fast: Settings, workspace: Workspace, receiver: Receiver, db: asyncpg.Connection[Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    tries = 0
    try_lock = stored.try_lock

    async def counted(connection: Any, *, webhook_id: int) -> bool:
        nonlocal tries
        tries += 1
        return await try_lock(connection, webhook_id=webhook_id)
    monkeypatch.setattr(stored, "try_lock", counted)
    async with running_stack(fast) as stack:
        field = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
        hook = await create_webhook(stack, workspace, receiver.url)
        # Another delivery process, as far as the lock says (its session holds the webhook's lock).
        await db.fetchval("SELECT pg_advisory_lock(-7302, $1::integer)", int(hook["id"]))
        status, body, _ = await write(stack, workspace, item(field, 1))
        assert status == 200, body
        async with delivering(fast):
            await asyncio.sleep(1.5)
            assert receiver.hits == []  # not while the other holds it
            assert 1 <= tries <= 40, tries  # it looked every poll interval (0.1 s), not in a loop
            await db.fetchval("SELECT pg_advisory_unlock(-7302, $1::integer)", int(hook["id"]))
            received = await receiver.wait_received(1)  # the other "died": this one takes over
        assert [e["position"] for e in received] == [hook["position"] + 1]


async def test_a_new_url_is_tried_at_once_whatever_the_back_off_of_the_old_one(
        fast: Settings, workspace: Workspace, receiver: Receiver) -> None:
    settings = fast.model_copy(update={"webhook_retry_first": 600.0, "webhook_retry_ceiling": 600.0})
    receiver.status = 500
    fixed = Receiver()
    await fixed.start()
    try:
        async with running_stack(settings) as stack, delivering(settings):
            field = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
            hook = await create_webhook(stack, workspace, receiver.url)
            status, body, _ = await write(stack, workspace, item(field, 1))
            assert status == 200, body

            async def backing_off() -> bool:
                return (await get_webhook(stack, workspace, hook["id"]))["next_attempt_at"] is not None
            await wait_for(backing_off, 20, "the first failure")
            assert len(receiver.hits) == 1  # the next attempt is minutes away
            status, body, _ = await stack.request("PATCH", f"{WEBHOOKS}/{hook['id']}", workspace,
                                                  json={"webhook": {"url": fixed.url}})
            assert status == 200 and body["webhooks"][hook["id"]]["next_attempt_at"] is None, body
            received = await fixed.wait_received(1, timeout=10)
            assert [e["position"] for e in received] == [hook["position"] + 1] and len(receiver.hits) == 1
    finally:
        await fixed.stop()


async def test_a_secret_rotated_while_events_are_being_delivered_signs_those_that_follow(
        fast: Settings, workspace: Workspace, receiver: Receiver) -> None:
    receiver.delay = 0.3
    async with running_stack(fast) as stack:
        field = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
        hook = await create_webhook(stack, workspace, receiver.url)
        status, body, _ = await write(stack, workspace, *[item(field, n, subject_id=n) for n in range(1, 9)])
        assert status == 200, body
        async with delivering(fast):
            await receiver.wait_received(1)  # one page of eight, being delivered
            status, body, _ = await stack.request("PATCH", f"{WEBHOOKS}/{hook['id']}", workspace,
                                                  json={"rotate_secret": True})
            assert status == 200, body
            rotated_at = len(receiver.hits)
            new_secret = body["webhooks"][hook["id"]]["secret"]
            await receiver.wait_received(8)
    old_after = []
    for headers, body_ in receiver.received[rotated_at:]:
        try:
            verified(new_secret, headers, body_)
        except WebhookVerificationError:
            verified(hook["secret"], headers, body_)
            old_after.append(headers["webhook-id"])
    assert len(receiver.received) - rotated_at >= 4
    assert len(old_after) <= 1, old_after  # only the one in flight as the secret changed


async def test_a_retry_of_an_event_no_longer_kept_fails_saying_so(
        fast: Settings, workspace: Workspace, receiver: Receiver, db: asyncpg.Connection[Any]) -> None:
    async with running_stack(fast) as stack, delivering(fast):
        field = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
        hook = await create_webhook(stack, workspace, receiver.url)
        status, body, _ = await write(stack, workspace, item(field, 1))
        assert status == 200, body
        await receiver.wait_received(1)
        [attempt] = await deliveries(stack, workspace, hook["id"])
        assert attempt["position"] == hook["position"] + 1  # the value's event, after the field's
        await db.execute("DELETE FROM events WHERE workspace_id = $1 AND position = $2", workspace.id,
                         attempt["position"])  # pruned
        status, body, _ = await stack.request(
            "POST", f"{WEBHOOKS}/{hook['id']}/deliveries/{attempt['id']}/retry", workspace)
        assert status == 202, body

        async def settled() -> bool:
            return (await deliveries(stack, workspace, hook["id"]))[0]["status"] != "pending"
        await wait_for(settled, 10, "the retry to be settled")
        retried = (await deliveries(stack, workspace, hook["id"]))[0]
        assert retried["status"] == "failed" and "no longer kept" in retried["error"], retried
        assert len(receiver.hits) == 1


async def test_a_stopped_delivery_process_finishes_the_attempt_in_flight_and_records_it(
        fast: Settings, workspace: Workspace, receiver: Receiver, db: asyncpg.Connection[Any]) -> None:
    receiver.delay = 1.0
    async with running_stack(fast) as stack:
        field = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
        hook = await create_webhook(stack, workspace, receiver.url)
        status, body, _ = await write(stack, workspace, *[item(field, n, subject_id=n) for n in (1, 2, 3)])
        assert status == 200, body
        stop = asyncio.Event()
        process = asyncio.create_task(run_webhooks(fast, stop))
        try:
            async def in_flight() -> bool:
                return receiver.arrived == 1
            await wait_for(in_flight, 20, "the first attempt")
            stop.set()
            await asyncio.wait_for(process, fast.shutdown_timeout)
        finally:
            process.cancel()
        assert len(receiver.hits) == 1 and receiver.arrived == 1  # nothing after the stop
        rows = await db.fetch("SELECT position, status FROM webhook_deliveries WHERE webhook_id = $1",
                              int(hook["id"]))
        first = hook["position"] + 1  # the first value's event (the field's comes before the webhook)
        assert [tuple(r) for r in rows] == [(first, "succeeded")]  # answered, and recorded before it stopped
        assert (await get_webhook(stack, workspace, hook["id"]))["position"] == first


async def test_old_records_of_attempts_are_pruned(fast: Settings, workspace: Workspace, receiver: Receiver,
                                                  db: asyncpg.Connection[Any]) -> None:
    settings = fast.model_copy(update={"prune_every": 0.1, "webhook_delivery_retention": 3600.0})
    async with running_stack(settings, worker=False, relay=False) as stack:
        hook = await create_webhook(stack, workspace, receiver.url)
        insert = ("INSERT INTO webhook_deliveries (webhook_id, position, event_id, event_type, status, attempt, "
                  "attempted_at) VALUES ($1, $2, gen_random_uuid(), 'cfv.value.created.v1', 'succeeded', 1, "
                  "now() - make_interval(secs => $3)) RETURNING id")
        old = await db.fetchval(insert, int(hook["id"]), 1, 7200.0)
        recent = await db.fetchval(insert, int(hook["id"]), 2, 60.0)
        async with delivering(settings):
            async def pruned() -> bool:
                return not await db.fetchval("SELECT count(*) FROM webhook_deliveries WHERE id = $1", old)
            await wait_for(pruned, 10, "the old attempt to be pruned")
        assert [d["id"] for d in await deliveries(stack, workspace, hook["id"])] == [str(recent)]


# --- definition events --------------------------------------------------------------------------------------------


async def test_a_webhook_subscribed_to_definition_events_gets_them_with_the_values_in_position_order(
        fast: Settings, workspace: Workspace, receiver: Receiver, db: asyncpg.Connection[Any]) -> None:
    subscribed = ["cfv.field.created.v1", "cfv.set.created.v1", "cfv.value.created.v1"]
    async with running_stack(fast) as stack, delivering(fast):
        ann, as_ann = await user_key(stack, workspace, "account_admin")
        hook = await create_webhook(stack, as_ann, receiver.url, event_types=subscribed)
        assert hook["event_types"] == subscribed
        start = hook["position"]
        points = await stack.create_field(workspace, name="Points", subject_type="Story", value_type="number")
        status, body, _ = await write(stack, workspace, item(points, 1, subject_id=1))
        assert status == 200, body
        status, body, _ = await write(stack, workspace, item(points, 2, subject_id=1))  # replaced: not subscribed
        assert status == 200, body
        status, body, _ = await stack.request("PATCH", f"/api/v1/custom_fields/{points['id']}", workspace,
                                              json={"custom_field": {"name": "Story points"}})  # not subscribed
        assert status == 200, body
        estimates = {"name": "Estimates", "subject_type": "Story", "custom_field_ids": [int(points["id"])]}
        status, body, _ = await stack.request("POST", "/api/v1/custom_field_sets", workspace,
                                              json={"custom_field_set": estimates})
        assert status == 201, body  # a set's event names no field
        level = await stack.create_field(workspace, name="Level", subject_type="User", value_type="number",
                                         read_access="account_collaboration")
        status, body, _ = await write(stack, workspace, item(level, 3, subject_id=2))
        assert status == 200, body

        received = await receiver.wait_received(5)
        logged = await db.fetch("SELECT position, type, event::text AS event FROM events WHERE workspace_id = $1 "
                                "AND position > $2 ORDER BY position", workspace.id, start)
        assert {"cfv.value.replaced.v1", "cfv.field.updated.v1"} <= {r["type"] for r in logged}  # left out below
        expected = [r for r in logged if r["type"] in subscribed]
        await wait_for(lambda: _position_is(stack, workspace, hook["id"], logged[-1]["position"]), 10,
                       "the webhook's position to pass what it leaves out")
        assert [body for _, body in receiver.received] == [r["event"].encode() for r in expected]  # as logged
        assert [(e["type"], e["data"]["custom_field_id"]) for e in received] == [
            ("cfv.field.created.v1", int(points["id"])), ("cfv.value.created.v1", int(points["id"])),
            ("cfv.set.created.v1", None), ("cfv.field.created.v1", int(level["id"])),
            ("cfv.value.created.v1", int(level["id"]))]
        positions = [e["position"] for e in received]
        assert positions == sorted(positions) and positions[0] == start + 1
        assert received[0]["data"]["after"]["name"] == "Points"
        for headers, body in receiver.received:
            assert headers["webhook-id"] == verified(hook["secret"], headers, body)["id"]

        # The creator's read access, as the replay API applies it: demoted, Ann no longer reads the definition
        # events of a Story field (their readers depend on each story's project: administrators only), but still
        # those of a field she may read, and a set's.
        status, body, _ = await stack.request("PATCH", f"/api/v1/users/{ann}", workspace,
                                              json={"user": {"account_role": "account_collaboration"}})
        assert status == 200, body
        hidden = await stack.create_field(workspace, name="Risk", subject_type="Story", value_type="number")
        shown = await stack.create_field(workspace, name="Mood", subject_type="User", value_type="number",
                                         read_access="account_collaboration")
        status, body, _ = await stack.request("POST", "/api/v1/custom_field_sets", workspace, json={
            "custom_field_set": {"name": "People", "subject_type": "User", "custom_field_ids": [int(shown["id"])]}})
        assert status == 201, body
        newest = await db.fetchval("SELECT max(position) FROM events WHERE workspace_id = $1", workspace.id)
        await wait_for(lambda: _position_is(stack, workspace, hook["id"], newest), 10, "the webhook's position")
        later = receiver.events()[5:]
        assert [(e["type"], e["data"]["custom_field_id"]) for e in later] == [
            ("cfv.field.created.v1", int(shown["id"])), ("cfv.set.created.v1", None)], later
        assert int(hidden["id"]) not in {e["data"]["custom_field_id"] for e in receiver.events()}
