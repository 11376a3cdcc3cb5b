"""The policy ``cfv-commands`` (:func:`cfv.broker.topology.commands_policy`), set and checked through RabbitMQ's
management API: AMQP can declare queues but not policies.

Every process makes sure of it at start, before it publishes or consumes: with ``CFV_BROKER_POLICIES=apply``
(the default) it sets the policy to what its settings say, then checks it; with ``expect`` an operator owns the
policy (a definitions file, the Messaging Topology Operator, ``rabbitmqctl set_policy``) and the process only
checks that the command queues follow one that dead-letters into ``cfv.commands.dlx``. What cannot be met
(no management API, a user that may not set policies, a policy that would drop refused commands) is an
:class:`Unmet`: one line, and the process exits.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
import structlog
from yarl import URL

from cfv.broker import topology
from cfv.broker.connection import amqp_urls
from cfv.faults import Unmet
from cfv.settings import Settings

log = structlog.get_logger("cfv.broker")

#: A management API that does not answer while AMQP does is usually not enabled; a node still starting gets this
#: long before the process gives up.
_PATIENCE = 10.0


def management_urls(settings: Settings) -> list[URL]:
    """The management API's base URLs, each with the user and password to use, tried in turn (see
    ``CFV_RABBITMQ_MANAGEMENT_URL``): by default one per node of ``CFV_AMQP_URL``, on its AMQP port plus 10,000
    (RabbitMQ's own pairing: 5672 and 15672, 5671 and 15671 for TLS)."""
    if settings.rabbitmq_management_url:
        return [URL(url.strip()) for url in settings.rabbitmq_management_url.split(",") if url.strip()]
    urls = []
    for node in amqp_urls(settings.amqp_url):
        amqp = URL(node)
        secure = amqp.scheme == "amqps"
        port = (amqp.port or (5671 if secure else 5672)) + 10_000
        urls.append(URL.build(scheme="https" if secure else "http", host=amqp.host or "127.0.0.1", port=port,
                              user=amqp.user or "guest", password=amqp.password or "guest", path="/"))
    return urls


def virtual_host(settings: Settings) -> str:
    """The virtual host of ``CFV_AMQP_URL`` (``/`` when the URL names none)."""
    path = URL(amqp_urls(settings.amqp_url)[0]).raw_path
    return unquote(path[1:]) if len(path) > 1 else "/"


async def ensure(settings: Settings) -> None:
    """Set (``apply``) and check the policy ``cfv-commands`` on the virtual host of ``CFV_AMQP_URL``; raise
    :class:`Unmet` when it cannot be in effect."""
    api = _Api(management_urls(settings))
    vhost = quote(virtual_host(settings), safe="")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        if settings.broker_policies == "apply":
            policy = topology.commands_policy(settings.delivery_limit)
            await api.call(http, "PUT", f"api/policies/{vhost}/{topology.POLICY}", json=policy)
        policies = await api.call(http, "GET", f"api/policies/{vhost}")
    listed = policies if isinstance(policies, list) else []
    problem = topology.policy_problem(listed, settings.command_shards)
    if problem is not None:
        raise Unmet(f"RabbitMQ would drop the commands workers refuse: {problem}. Set the policy "
                    f"{topology.POLICY} (CFV_BROKER_POLICIES=apply does it; docs/operating.md shows the "
                    "rabbitmqctl command)")
    if (missing := topology.without_delivery_limit(listed, settings.command_shards)) is not None:
        log.warning("the command queues' policy sets no delivery limit: a message no worker can ever acknowledge "
                    "would be delivered forever (RabbitMQ 3) or dead-lettered after 20 deliveries (RabbitMQ 4)",
                    policy=missing)
    log.debug("broker policy in effect", policy=topology.POLICY, mode=settings.broker_policies)


class _Unavailable(Exception):
    """A management API answering 5xx."""


class _Api:
    """The management API of a broker's nodes: a call goes to the first that answers (one holding a node of a
    cluster answers for the whole cluster)."""

    def __init__(self, urls: list[URL]) -> None:
        self._urls = urls
        self._next = 0

    async def call(self, http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> Any:
        deadline = asyncio.get_running_loop().time() + _PATIENCE
        while True:
            base = self._urls[self._next % len(self._urls)]
            where = str(base.with_user(None)).rstrip("/")  # never the password
            authorization = {"Authorization": aiohttp.encode_basic_auth(base.user or "", base.password or "")}
            try:
                async with http.request(method, URL(f"{where}/{path}", encoded=True), headers=authorization,
                                        **kwargs) as answer:
                    if answer.status in (401, 403):
                        raise Unmet(_refused(answer.status, method, where))
                    if answer.status >= 400:
                        said = f"{answer.status} to {method} /{path}: {(await answer.text())[:200]}"
                        if answer.status < 500:
                            raise Unmet(f"RabbitMQ's management API at {where} answered {said}")
                        raise _Unavailable(said)  # a node starting or stopping: another, or later
                    if answer.status != 200:
                        return None
                    try:
                        return await answer.json()
                    except (aiohttp.ContentTypeError, ValueError):  # a proxy's page, say: not the API
                        raise Unmet(f"what answers at {where} is not RabbitMQ's management API (it answered "
                                    f"{answer.content_type} to {method} /{path}): point CFV_RABBITMQ_MANAGEMENT_URL "
                                    "at it") from None
            except (aiohttp.ClientConnectionError, TimeoutError, _Unavailable) as error:
                if asyncio.get_running_loop().time() > deadline:
                    raise Unmet(f"RabbitMQ's management API does not answer at {where} ({error!r}): enable it "
                                "(`rabbitmq-plugins enable rabbitmq_management`), or point "
                                "CFV_RABBITMQ_MANAGEMENT_URL at it") from None
                self._next += 1
                if self._next % len(self._urls) == 0:
                    await asyncio.sleep(0.5)


def _refused(status: int, method: str, where: str) -> str:
    if status == 401:
        return (f"RabbitMQ's management API at {where} refused the user: CFV_RABBITMQ_MANAGEMENT_URL (or, when it "
                "is empty, CFV_AMQP_URL) must name a user with a management tag")
    if method == "PUT":
        return (f"RabbitMQ's management API at {where} refused to set the policy {topology.POLICY}: tag the user "
                "policymaker (`rabbitmqctl set_user_tags USER policymaker`), or set the policy yourself and "
                "CFV_BROKER_POLICIES=expect")
    return (f"RabbitMQ's management API at {where} refused to list the policies: tag the user monitoring (or "
            "policymaker)")
