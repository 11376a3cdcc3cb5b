"""What an operator changes on the command queues (the dead-letter exchange, the delivery limit) comes from the
policy cfv-commands, not from queue arguments: changing it never breaks redeclaring a queue, and a queue follows
a new limit at once. A process that cannot have the policy in effect stops with one line (issue 12)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aio_pika
import aiohttp
import pytest
from cfv.broker import policies, topology
from cfv.faults import Unmet
from cfv.processes import check_dependencies
from cfv.settings import Settings
from support import RABBIT_API, free_port, wait_for
from yarl import URL


async def _management(method: str, path: str, **kwargs: Any) -> Any:
    async with aiohttp.ClientSession() as http, http.request(method, f"{RABBIT_API}/{path}", **kwargs) as answer:
        assert answer.status < 300, (answer.status, await answer.text())
        return await answer.json() if answer.status == 200 else None


def _vhost(settings: Settings) -> str:
    return quote(policies.virtual_host(settings), safe="")


async def _dead_letter_reasons(settings: Settings, shard: str, limit: int) -> list[str]:
    """Publish a message to ``shard`` and give it back until RabbitMQ dead-letters it; the reasons of its deaths."""
    connection = await aio_pika.connect(settings.amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.default_exchange.publish(aio_pika.Message(b"{}", message_id="m"), routing_key=shard)
        returned: list[int] = []

        async def give_back(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            returned.append(1)
            await message.nack(requeue=True)

        await (await channel.declare_queue(shard, passive=True)).consume(give_back)
        dead = await channel.declare_queue(topology.DEAD_LETTER_QUEUE, passive=True)

        underlay = await channel.get_underlay_channel()  # aio-pika's channel answers a passive declare from a cache

        async def dead_lettered() -> bool:
            declared = await underlay.queue_declare(topology.DEAD_LETTER_QUEUE, passive=True)
            return declared.message_count == 1
        await wait_for(dead_lettered, 20, "the message to be dead-lettered")
        assert len(returned) == limit + 1, returned  # the delivery limit counts returns: one more delivery than it
        message = await dead.get(no_ack=True)
        return [topology.header_text(death["reason"]) for death in message.headers["x-death"]]  # type: ignore
    finally:
        await connection.close()


async def test_the_policy_sets_dead_lettering_and_a_changed_limit_needs_no_new_queue(settings: Settings) -> None:
    await check_dependencies(settings.model_copy(update={"delivery_limit": 5}))  # what every process does
    [policy] = await _management("GET", f"policies/{_vhost(settings)}")
    assert (policy["name"], policy["pattern"], policy["apply-to"]) == ("cfv-commands", topology.POLICY_PATTERN,
                                                                      "queues")
    assert policy["definition"] == {"dead-letter-exchange": "cfv.commands.dlx", "delivery-limit": 5}
    shard = topology.shard_queue(0)
    queue = await _management("GET", f"queues/{_vhost(settings)}/{quote(shard, safe='')}")
    assert queue["arguments"] == {"x-queue-type": "quorum", "x-single-active-consumer": True}

    await check_dependencies(settings.model_copy(update={"delivery_limit": 2}))  # redeclared: no error
    [policy] = await _management("GET", f"policies/{_vhost(settings)}")
    assert policy["definition"]["delivery-limit"] == 2
    assert await _dead_letter_reasons(settings, shard, 2) == ["delivery_limit"]  # the same queue, the new limit


async def test_with_expect_an_operators_policy_is_checked_not_replaced(settings: Settings) -> None:
    expecting = settings.model_copy(update={"broker_policies": "expect"})
    with pytest.raises(Unmet, match=r"no policy applies to cfv\.commands\.0"):
        await policies.ensure(expecting)
    theirs = {"pattern": "^cfv\\.commands\\.", "apply-to": "queues", "priority": 1,
              "definition": {"dead-letter-exchange": "cfv.commands.dlx", "delivery-limit": 3}}
    await _management("PUT", f"policies/{_vhost(settings)}/ops", json=theirs)
    await check_dependencies(expecting)
    assert [p["name"] for p in await _management("GET", f"policies/{_vhost(settings)}")] == ["ops"]
    assert await _dead_letter_reasons(settings, topology.shard_queue(1), 3) == ["delivery_limit"]

    shadowing = {"pattern": ".*", "apply-to": "all", "priority": 99, "definition": {"max-length": 1000000}}
    await _management("PUT", f"policies/{_vhost(settings)}/catch-all", json=shadowing)
    with pytest.raises(Unmet, match=r"cfv\.commands\.0 follows the policy 'catch-all'"):
        await policies.ensure(expecting)


async def test_a_management_api_that_refuses_or_is_absent_is_one_clear_reason(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    api = URL(RABBIT_API.removesuffix("/api"))
    wrong = settings.model_copy(update={"rabbitmq_management_url": str(api.with_password("wrong"))})
    with pytest.raises(Unmet, match="refused the user") as refused:
        await policies.ensure(wrong)
    assert "wrong" not in str(refused.value)
    monkeypatch.setattr(policies, "_PATIENCE", 0.5)
    absent = settings.model_copy(update={"rabbitmq_management_url": f"http://127.0.0.1:{free_port()}/"})
    with pytest.raises(Unmet, match="rabbitmq-plugins enable rabbitmq_management"):
        await policies.ensure(absent)


def test_a_worker_that_cannot_have_the_policy_exits_with_one_line(settings: Settings, tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CFV_")}
    environment.update(CFV_DATABASE_URL=settings.database_url, CFV_AMQP_URL=settings.amqp_url,
                       CFV_BROKER_POLICIES="expect", CFV_METRICS_PORT="0")
    done = subprocess.run([sys.executable, "-m", "cfv", "worker"], env=environment, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == 78, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in output, output
    assert "no policy applies to cfv.commands.0" in lines[0] and "CFV_BROKER_POLICIES=apply" in lines[0], output
