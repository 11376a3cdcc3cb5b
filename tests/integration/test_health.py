"""Probes (issue 12): ``/livez`` answers while the gateway serves; ``/readyz`` answers 200 when PostgreSQL,
RabbitMQ and Redis answer and 503 naming each one that does not, and is ready again once they are back. Both
without a key, and outside the rate limits."""

from __future__ import annotations

from typing import Any

from cfv.settings import Settings
from support import free_port, running_stack, wait_for
from support.proxy import proxy_to


async def test_a_serving_gateway_is_live_and_ready(settings: Settings) -> None:
    async with running_stack(settings, worker=False, relay=False) as stack:
        for path in ("/livez", "/healthz"):
            status, body, _ = await stack.request("GET", path, None)
            assert (status, body) == (200, {"status": "ok"})
        status, body, _ = await stack.request("GET", "/readyz", None)
        assert (status, body) == (200, {"status": "ready", "checks": {"postgres": "ok", "rabbitmq": "ok",
                                                                      "redis": "ok"}})


async def test_without_redis_the_gateway_is_live_but_not_ready(settings: Settings) -> None:
    no_redis = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    async with running_stack(no_redis, worker=False, relay=False) as stack:
        status, _, _ = await stack.request("GET", "/livez", None)
        assert status == 200
        status, body, _ = await stack.request("GET", "/readyz", None)
        assert status == 503, body
        assert body["status"] == "unready"
        assert body["checks"]["postgres"] == body["checks"]["rabbitmq"] == "ok"
        assert body["checks"]["redis"].startswith("unreachable"), body


async def test_losing_the_database_and_the_broker_makes_the_gateway_unready_until_they_are_back(
        settings: Settings) -> None:
    async with proxy_to(settings.database_url) as database, proxy_to(settings.amqp_url) as broker:
        gateway = settings.model_copy(update={"database_url": database.url(settings.database_url),
                                              "amqp_url": broker.url(settings.amqp_url)})
        async with running_stack(gateway, worker=False, relay=False) as stack:
            async def readiness() -> tuple[int, Any]:
                status, body, _ = await stack.request("GET", "/readyz", None)
                return status, body

            assert (await readiness())[0] == 200
            await database.cut()
            await broker.cut()
            status, body = await readiness()
            assert status == 503, body
            assert body["checks"]["postgres"].startswith("unreachable"), body
            assert body["checks"]["rabbitmq"].startswith("unreachable"), body
            assert body["checks"]["redis"] == "ok"
            assert (await stack.request("GET", "/livez", None))[0] == 200
            await database.restore()
            await broker.restore()

            async def ready() -> bool:
                return (await readiness())[0] == 200
            await wait_for(ready, 20, "the gateway to be ready again")
