"""The monitoring port every process serves (``CFV_METRICS_PORT``; 0: none): ``/metrics`` (Prometheus text),
``/livez`` (the process runs) and ``/readyz`` (its dependencies answer, each within a second; 503 naming the
failing part otherwise). Kept off the API's port: nothing here is authenticated, so it belongs on a network only
the operator's scrapers and probes reach."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Callable, Mapping, Sequence

import orjson
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = structlog.get_logger("cfv.monitor")

Check = Callable[[], Awaitable[object]]
CHECK_SECONDS = 1.0


async def readiness(checks: Mapping[str, Check], draining: asyncio.Event | None = None) -> web.Response:
    """The answer of a readiness probe over ``checks`` (name: a coroutine that raises unless that part answers):
    each part's state, 200 when all answer, else 503; 503 ``draining`` once the process is stopping."""
    if draining is not None and draining.is_set():
        return _json({"status": "draining", "checks": {}}, 503)
    results = await asyncio.gather(*(_check(check) for check in checks.values()))
    states = dict(zip(checks, results, strict=True))
    ready = all(state == "ok" for state in states.values())
    return _json({"status": "ready" if ready else "unready", "checks": states}, 200 if ready else 503)


def liveness() -> web.Response:
    """The answer of a liveness probe: the process serves."""
    return _json({"status": "ok"}, 200)


class Monitor:
    """Serves the monitoring port of one process: its ``checks`` for ``/readyz`` (unready once ``draining`` is
    set), and ``refreshers`` run before each scrape, for gauges read from elsewhere (the outbox's lag, the
    dead-letter queue's depth)."""

    def __init__(self, host: str, port: int, checks: Mapping[str, Check],
                 refreshers: Sequence[Callable[[], Awaitable[None]]] = (),
                 draining: asyncio.Event | None = None) -> None:
        self._draining = draining
        self._host = host
        self._port = port
        self._checks = checks
        self._refreshers = refreshers
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen (nothing when the port is 0). A port another process holds (a second ``cfv worker`` started by
        hand on one host) is logged, and the process runs on without a monitoring port: its work matters more."""
        if not self._port:
            return
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/livez", _livez)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self._host, self._port).start()
        except OSError as error:
            await self.close()
            if error.errno != errno.EADDRINUSE:
                raise
            log.warning("the monitoring port is taken by another process: running without one (give each process "
                        "its own with CFV_METRICS_PORT; 0: none)", host=self._host, port=self._port)
            return
        log.debug("monitoring port listening", host=self._host, port=self._port)

    async def close(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _readyz(self, _: web.Request) -> web.Response:
        return await readiness(self._checks, self._draining)

    async def _metrics(self, _: web.Request) -> web.Response:
        for refresh in self._refreshers:
            try:
                async with asyncio.timeout(CHECK_SECONDS):
                    await refresh()
            except Exception as error:  # a scrape still answers with what it has; the gauge keeps its last value
                log.warning("cannot refresh a metric", error=repr(error))
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _livez(_: web.Request) -> web.Response:
    return liveness()


async def _check(check: Check) -> str:
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            await check()
        return "ok"
    except Exception as error:  # whatever keeps it from answering is the answer
        return f"unreachable: {type(error).__name__}"


def _json(body: object, status: int) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")
