"""Metrics and probes on every process's monitoring port (issue 12): ``cfv run`` gives the gateway, the relay,
each worker and webhook delivery a port of their own, each answering ``/metrics`` with what that process
measures, ``/livez`` and ``/readyz``; the relay reports the outbox's lag and the dead-letter queue's depth, read at
each scrape; webhook delivery counts its deliveries by outcome."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
from aiohttp import web
from cfv.broker import topology
from cfv.processes import run_relay
from cfv.settings import Settings
from prometheus_client.parser import text_string_to_metric_families
from support import Workspace, free_port, running_stack, wait_for
from support.pipeline import broker_channel, number_field, publish_raw

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _free_ports(count: int) -> int:
    """The first of ``count`` consecutive ports nobody listens on."""
    for _ in range(200):
        first = random.randrange(20_000, 60_000)
        try:
            with contextlib.ExitStack() as held:
                for port in range(first, first + count):
                    probe = held.enter_context(socket.socket())
                    probe.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise RuntimeError("no free ports")


def _cfv_run(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "cfv", "run", "--workers", "1"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


async def _scrape(http: aiohttp.ClientSession, port: int) -> Samples:
    async with http.get(f"http://127.0.0.1:{port}/metrics") as answer:
        assert answer.status == 200
        assert answer.content_type == "text/plain"
        text = await answer.text()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def _probe(http: aiohttp.ClientSession, port: int, path: str) -> tuple[int, Any]:
    async with http.get(f"http://127.0.0.1:{port}{path}") as answer:
        return answer.status, orjson.loads(await answer.read())


async def test_cfv_run_serves_each_process_s_metrics_and_probes_on_its_own_port(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any], tmp_path: Path) -> None:
    base = _free_ports(4)
    gateway_port, relay_port, worker_port, webhooks_port = base, base + 1, base + 2, base + 3
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFV_")}
    env.update(CFV_DATABASE_URL=settings.database_url, CFV_AMQP_URL=settings.amqp_url,
               CFV_HTTP_PORT=str(settings.http_port), CFV_COMMAND_SHARDS=str(settings.command_shards),
               CFV_DB_POOL_SIZE="2", CFV_METRICS_PORT=str(base), CFV_WEBHOOK_ALLOW_PRIVATE="true",
               CFV_WEBHOOK_POLL_INTERVAL="0.2", CFV_SECRET_KEYS=settings.secret_keys.get_secret_value())
    log = tmp_path / "run.log"
    delivered: list[bytes] = []

    async def receive(request: web.Request) -> web.Response:
        delivered.append(await request.read())
        return web.Response(status=204)
    receiver = web.Application()
    receiver.router.add_post("/hook", receive)
    receiving = web.AppRunner(receiver, access_log=None)
    await receiving.setup()
    receiver_port = free_port()
    await web.TCPSite(receiving, "127.0.0.1", receiver_port).start()
    run = _cfv_run(env, log)
    api = f"http://{settings.http_host}:{settings.http_port}"
    try:
        async with aiohttp.ClientSession(headers=workspace.headers) as http:
            async def all_ready() -> bool:
                assert run.poll() is None, log.read_text()
                try:
                    return all([(await _probe(http, port, "/readyz"))[0] == 200
                                for port in (gateway_port, relay_port, worker_port, webhooks_port)])
                except aiohttp.ClientConnectionError:
                    return False
            await wait_for(all_ready, 30, "every process to be ready")
            assert await _probe(http, gateway_port, "/readyz") == (200, {"status": "ready", "checks": {
                "postgres": "ok", "rabbitmq": "ok", "redis": "ok"}})
            for port in (relay_port, worker_port):
                assert await _probe(http, port, "/readyz") == (200, {"status": "ready", "checks": {
                    "postgres": "ok", "rabbitmq": "ok"}})
                assert await _probe(http, port, "/livez") == (200, {"status": "ok"})
            assert await _probe(http, webhooks_port, "/readyz") == (200, {"status": "ready", "checks": {
                "postgres": "ok"}})

            async with http.post(api + "/api/v1/custom_fields", json={"custom_field": {
                    "name": "Points", "subject_type": "Story", "value_type": "number"}}) as answer:
                assert answer.status == 201
                field_id = int(next(iter((await answer.json())["custom_fields"])))
            async with http.post(api + "/api/v1/webhooks", json={"webhook": {
                    "url": f"http://127.0.0.1:{receiver_port}/hook", "event_types": ["cfv.value.created.v1"]}}
                                 ) as answer:
                assert answer.status == 201, await answer.text()
            for subject_id in (1, 2, 3):
                async with http.post(api + "/api/v1/custom_field_values", json={"custom_field_value": {
                        "subject_type": "Story", "subject_id": subject_id, "custom_field_id": field_id,
                        "value": subject_id}}) as answer:
                    assert answer.status == 200, await answer.text()

            gateway = await _scrape(http, gateway_port)
            route = {"route": "/api/v1/custom_field_values", "method": "POST"}
            assert _value(gateway, "cfv_http_requests_total", **route, status="200") == 3
            assert _value(gateway, "cfv_http_request_duration_seconds_count", **route) == 3
            assert _value(gateway, "cfv_http_requests_total", route="/api/v1/custom_fields", method="POST",
                          status="201") == 1
            assert ("process_resident_memory_bytes", frozenset()) in gateway
            assert _value(gateway, "cfv_commands_applied_total", status="succeeded") is None  # the worker's

            worker = await _scrape(http, worker_port)
            assert _value(worker, "cfv_commands_applied_total", status="succeeded") == 3
            assert _value(worker, "cfv_apply_batch_commands_sum") == 3
            assert (_value(worker, "cfv_apply_duration_seconds_count") or 0) >= 1
            assert not [key for key in worker if key[0] == "cfv_http_requests_total"]

            async def relayed() -> bool:
                relay = await _scrape(http, relay_port)
                return _value(relay, "cfv_events_published_total") == 4  # the field's definition event too
            await wait_for(relayed, 10, "the relay to count four events")
            relay = await _scrape(http, relay_port)
            assert _value(relay, "cfv_outbox_unpublished_events") == 0
            assert _value(relay, "cfv_outbox_oldest_unpublished_age_seconds") == 0
            assert _value(relay, "cfv_dead_letter_queue_messages") == 0

            async def delivered_three() -> bool:
                return _value(await _scrape(http, webhooks_port), "cfv_webhook_deliveries_total",
                              outcome="succeeded") == 3
            await wait_for(delivered_three, 15, "webhook delivery to count three deliveries")
            assert len(delivered) == 3
            assert _value(await _scrape(http, webhooks_port), "cfv_webhook_deliveries_total", outcome="failed") in (
                None, 0)
        run.send_signal(signal.SIGTERM)
        assert run.wait(40) == 0
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        await receiving.cleanup()


@contextlib.asynccontextmanager
async def _relay(settings: Settings) -> AsyncIterator[None]:
    task = asyncio.create_task(run_relay(settings))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, 10)


async def test_the_relay_reports_the_outbox_lag_and_the_dead_letters(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    port = free_port()
    monitored = settings.model_copy(update={"metrics_port": port})
    async with running_stack(settings, relay=False) as stack, aiohttp.ClientSession() as http:
        field_id = await number_field(stack, workspace)
        assert await db.fetchval("SELECT pg_try_advisory_lock(-7301, 1)")  # the relay's: it stands by
        try:
            async with _relay(monitored):
                for subject_id in (1, 2):
                    status, body, _ = await stack.request("POST", "/api/v1/custom_field_values", workspace, json={
                        "custom_field_value": {"subject_type": "Story", "subject_id": subject_id,
                                               "custom_field_id": field_id, "value": subject_id}})
                    assert status == 200, body

                async def scraped() -> bool:
                    try:
                        # the two values' events, and the field's definition event
                        return _value(await _scrape(http, port), "cfv_outbox_unpublished_events") == 3
                    except aiohttp.ClientConnectionError:
                        return False
                await wait_for(scraped, 20, "the relay's monitoring port to report three unpublished events")
                await asyncio.sleep(0.2)
                samples = await _scrape(http, port)
                assert (_value(samples, "cfv_outbox_oldest_unpublished_age_seconds") or 0) >= 0.2

                async with broker_channel(settings) as channel:
                    await publish_raw(channel, None, b"not json", str(workspace.id))

                    async def dead_lettered() -> bool:
                        return _value(await _scrape(http, port), "cfv_dead_letter_queue_messages") == 1
                    await wait_for(dead_lettered, 20, "the dead letter to be counted")
                    await (await channel.get_queue(topology.DEAD_LETTER_QUEUE)).purge()
                await db.fetchval("SELECT pg_advisory_unlock(-7301, 1)")  # the relay leads, and publishes

                async def published() -> bool:
                    samples = await _scrape(http, port)
                    return (_value(samples, "cfv_outbox_unpublished_events"),
                            _value(samples, "cfv_outbox_oldest_unpublished_age_seconds")) == (0, 0)
                await wait_for(published, 20, "the outbox to be empty")
        finally:
            await db.fetchval("SELECT pg_advisory_unlock_all()")
