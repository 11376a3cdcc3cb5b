"""The long-running processes: gateway, worker, relay and webhook delivery, each started from settings alone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import asyncpg
import structlog
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aiohttp import web

from cfv import metrics
from cfv.broker import connection as broker
from cfv.broker import policies, topology
from cfv.broker.confirmed import ConfirmedPublisher
from cfv.broker.publisher import CommandPublisher
from cfv.deliverer import Deliverer
from cfv.faults import TRANSIENT_ERRORS, Backoff, Unmet, explain_postgres, explain_rabbitmq
from cfv.gateway import health
from cfv.gateway.app import create_app
from cfv.gateway.keys import DRAINING
from cfv.gateway.limits import RateLimiter, redis_client
from cfv.gateway.protocol import GatewayRunner
from cfv.gateway.replies import ReplyWaiter
from cfv.gateway.submit import Submitter
from cfv.monitor import Monitor
from cfv.relay import Relay, measure_outbox
from cfv.settings import Settings
from cfv.store.database import GENERIC_PLANS, connect, create_pool, ping
from cfv.store.listener import Listener
from cfv.store.migrate import require_schema
from cfv.worker.membership import Membership
from cfv.worker.service import Worker, worker_id

log = structlog.get_logger("cfv")
T = TypeVar("T")


async def until_reachable(what: str, connect: Callable[[], Awaitable[T]],
                          explain: Callable[[BaseException], Unmet | None]) -> T:
    """Connect, retrying with backoff while the dependency is down (it may be starting too); raise
    :class:`Unmet` when it answers no (``explain`` says which answers are)."""
    backoff = Backoff(first=0.5, ceiling=10.0)
    while True:
        try:
            return await connect()
        except Exception as error:
            if (unmet := explain(error)) is not None:
                raise unmet from None
            if not isinstance(error, TRANSIENT_ERRORS + (ConnectionError,)):
                raise
            log.warning(f"{what} unreachable, retrying", error=repr(error), retry_in=backoff.delay)
            await backoff.pause()


def _explain_postgres(settings: Settings) -> Callable[[BaseException], Unmet | None]:
    return lambda error: explain_postgres(error, settings.database_url)


async def declare_topology(amqp: AbstractRobustConnection, settings: Settings) -> None:
    """Declare cfv's exchanges and queues and make sure of its policy; raise :class:`Unmet` if the broker cannot
    have them (a plugin, the management API)."""
    try:
        channel = await amqp.channel()
        await topology.declare_exchanges(channel)  # first: a missing plugin is the one line to print
        await channel.close()
        # Before the queues: a queue made now follows the policy from its creation (RabbitMQ applies a policy to
        # queues that exist already a moment later, and a refusal meanwhile would not be dead-lettered).
        await policies.ensure(settings)
        channel = await amqp.channel()
        await topology.declare(channel, shards=settings.command_shards)
        await channel.close()
    except Exception as error:
        if (unmet := explain_rabbitmq(error)) is not None:
            raise unmet from None
        raise


async def check_dependencies(settings: Settings) -> None:
    """Wait for PostgreSQL and RabbitMQ to answer, and raise :class:`Unmet` if either lacks what cfv needs."""
    db = await until_reachable("PostgreSQL", lambda: connect(settings.database_url), _explain_postgres(settings))
    try:
        await require_schema(db, settings.database_url)
    finally:
        await db.close()
    amqp = await until_reachable("RabbitMQ", lambda: broker.connect(broker.amqp_urls(settings.amqp_url),
                                                                    name="cfv-check"), explain_rabbitmq)
    try:
        await declare_topology(amqp, settings)
    finally:
        with contextlib.suppress(Exception):
            await amqp.close()


async def _dependencies(settings: Settings, name: str, *, db_settings: dict[str, str] | None = None,
                        transactions_only: bool = False, declare: bool = True,
                        ) -> tuple[asyncpg.Pool[Any], AbstractRobustConnection]:
    pool = await until_reachable("PostgreSQL", lambda: create_pool(
        settings.database_url, size=settings.db_pool_size, settings=db_settings,
        transactions_only=transactions_only), _explain_postgres(settings))
    try:
        async with pool.acquire() as connection:
            await require_schema(connection, settings.database_url)
        amqp = await until_reachable("RabbitMQ", lambda: broker.connect(broker.amqp_urls(settings.amqp_url),
                                                                        name=name), explain_rabbitmq)
    except BaseException:
        await pool.close()
        raise
    try:
        if declare:
            await declare_topology(amqp, settings)
    except BaseException:
        await _close(pool, amqp)
        raise
    return pool, amqp


async def run_gateway(settings: Settings, ready: asyncio.Event | None = None,
                      stop: asyncio.Event | None = None) -> None:
    """Serve HTTP until cancelled, or until ``stop`` is set: then drain (see :func:`_drain_gateway`)."""
    pool, amqp = await _dependencies(settings, "cfv-gateway")
    listener = Listener(settings.database_url)
    waiter = ReplyWaiter(listener, pool)
    publisher = CommandPublisher(lambda: ConfirmedPublisher.connect_any(broker.amqp_urls(settings.amqp_url),
                                                                        name="cfv-gateway"),
                                 linger=settings.command_linger)
    submitter = Submitter(publisher, waiter, pool, settings.write_timeout)
    limiter = RateLimiter(redis_client(settings), settings)
    await limiter.check_redis()
    app = create_app(settings, pool, submitter, limiter, listener)
    # cfv.gateway.observe logs each request, with its id; on stopping, requests in flight get the drain's time
    runner = GatewayRunner(app, access_log=None, shutdown_timeout=settings.shutdown_timeout)
    monitor = Monitor(settings.metrics_host, settings.metrics_port, health.checks(app), draining=app[DRAINING])
    await listener.start()
    await runner.setup()
    try:
        await monitor.start()
        await web.TCPSite(runner, settings.http_host, settings.http_port).start()
        log.info("gateway listening", host=settings.http_host, port=settings.http_port)
        if ready is not None:
            ready.set()
        await (stop or asyncio.Event()).wait()
        # Draining: unready at once (a load balancer stops sending), no new connections, the requests in flight
        # answered (their commands confirmed by the broker) within the shutdown timeout.
        app[DRAINING].set()
        log.info("gateway stopping: finishing the requests in flight", within=settings.shutdown_timeout)
    finally:
        await runner.cleanup()
        await monitor.close()
        await listener.close()
        await publisher.close()
        with contextlib.suppress(Exception):
            await limiter.close()
        await _close(pool, amqp)


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Apply commands until cancelled, or until ``stop`` is set: then stop consuming between two batches (the one
    being applied is committed, answered and acked; what was delivered and not applied goes back to the queues,
    in order, for another worker), within the shutdown timeout."""
    name = worker_id()  # the same in its broker connection's name and its presence in the database
    # Declared here too (the worker declares again as it subscribes): a missing plugin is named before the policy.
    pool, amqp = await _dependencies(settings, f"cfv-worker/{name}", db_settings=GENERIC_PLANS,
                                     transactions_only=True)
    monitor = Monitor(settings.metrics_host, settings.metrics_port,
                      {"postgres": lambda: ping(pool), "rabbitmq": amqp.connected.wait})
    worker = Worker(settings, pool, amqp, Membership(settings.database_url, name))
    try:
        await monitor.start()
        await worker.start()  # here, not in the task below: an unmet precondition is the one line it prints
        await _until_stopped(worker.serve(), stop, worker.drain, settings.shutdown_timeout, "worker")
    finally:
        await _close(pool, amqp)  # first: a connection the broker closed would otherwise log its reconnections
        await monitor.close()


async def run_relay(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Publish change events until cancelled, or until ``stop`` is set: then finish the round being published
    (confirmed, its cursors moved), within the shutdown timeout."""
    await check_dependencies(settings)  # the relay holds connections of its own: a cursor lock, a publisher
    relay = Relay(settings)
    if not settings.metrics_port:  # no monitoring port: no connections for its probes and gauges
        await _until_stopped(relay.run(), stop, relay.drain, settings.shutdown_timeout, "relay")
        return
    # These answer the probes and read the gauges it reports: the outbox's lag, the dead letters' count.
    pool, amqp = await _dependencies(settings.model_copy(update={"db_pool_size": 2}), "cfv-relay-monitor",
                                     declare=False)
    channel: list[AbstractChannel] = []

    async def count_dead_letters() -> None:
        if not channel or channel[0].is_closed:
            channel[:] = [await amqp.channel()]
        metrics.DEAD_LETTER_DEPTH.set(await topology.dead_letter_depth(channel[0]))

    monitor = Monitor(settings.metrics_host, settings.metrics_port,
                      {"postgres": lambda: ping(pool), "rabbitmq": amqp.connected.wait},
                      refreshers=[lambda: measure_outbox(pool), count_dead_letters])
    try:
        await monitor.start()
        await _until_stopped(relay.run(), stop, relay.drain, settings.shutdown_timeout, "relay")
    finally:
        await _close(pool, amqp)  # first: a connection the broker closed would otherwise log its reconnections
        await monitor.close()


async def run_webhooks(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Deliver the event log to the webhooks until cancelled, or until ``stop`` is set: then finish the deliveries
    in flight (answered and recorded), within the shutdown timeout."""
    db = await until_reachable("PostgreSQL", lambda: connect(settings.database_url), _explain_postgres(settings))
    try:
        await require_schema(db, settings.database_url)
    finally:
        await db.close()
    deliverer = Deliverer(settings)
    if not settings.metrics_port:
        await _until_stopped(deliverer.run(), stop, deliverer.drain, settings.shutdown_timeout, "webhooks")
        return
    pool = await until_reachable("PostgreSQL", lambda: create_pool(settings.database_url, size=2),
                                 _explain_postgres(settings))
    monitor = Monitor(settings.metrics_host, settings.metrics_port, {"postgres": lambda: ping(pool)})
    try:
        await monitor.start()
        await _until_stopped(deliverer.run(), stop, deliverer.drain, settings.shutdown_timeout, "webhooks")
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pool.close(), 5)
        await monitor.close()


async def _until_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event | None,
                         drain: Callable[[], Awaitable[None]], within: float, name: str) -> None:
    """Run ``work`` until it ends or ``stop`` is set; then ``drain`` it, and stop it, within ``within`` seconds
    (past them it is cancelled where it is: the guarantees hold, as after a crash, only less gracefully)."""
    task = asyncio.create_task(work)
    stopping = asyncio.create_task((stop or asyncio.Event()).wait())
    try:
        await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            log.info(f"{name} stopping", within=within)
            try:
                async with asyncio.timeout(within):
                    await drain()
            except TimeoutError:
                log.warning(f"{name} did not drain in time: stopping where it is", within=within)
    finally:  # cancelled (not stopped): at once
        stopping.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _close(pool: asyncpg.Pool[Any], amqp: AbstractRobustConnection) -> None:
    with contextlib.suppress(Exception):
        await amqp.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(pool.close(), 5)
