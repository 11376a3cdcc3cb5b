"""Rate limits, shared by every gateway through Redis. (Limits on request bodies are :mod:`cfv.gateway.bodies`.)

**Budgets.** Each API key has three budgets per window (``CFV_RATE_LIMIT_WINDOW`` seconds), one per endpoint
class: ``writes`` (value writes, both faces), ``reads`` (any GET) and ``definitions`` (everything else: fields,
choices, sets, projects, properties, options, administration). A route's class is declared with its face's route
table (:class:`cfv.gateway.faces.Table`'s ``writes``), not worked out from its path. Each source address
has a budget of failed authentications (401 answers); once it is spent, the address is answered 429 before its
key is even looked at. Every answer under ``/api/`` carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (whole seconds until the window ends) of the budget it was counted against; a 429 adds
``Retry-After``.

**Algorithm: a fixed window per counter**, started by the counter's first hit and ended by the key's expiry in
Redis. One ``INCR`` (and, on the first hit, a ``PEXPIRE``) in a Lua script: one round trip, atomic, and the
counter expires by itself. It was chosen over a sliding window or GCRA because its answer *is* the headers:
the count left and when it is whole again are exact, where GCRA's "remaining" is an estimate, and because
a window that starts at the first hit needs no agreement between the gateways' clocks (Redis keeps the time).
Its known cost: a client may spend one window's budget at the end of a window and the next one's right
after, twice the budget in a short span. These budgets guard fairness and stop runaway clients; they are not
traffic shaping, so that burst is acceptable.

**Leases: one Redis round trip per chunk of requests, not per request.** When a budget is large (the default
ones are), a gateway takes its tokens from the shared counter in chunks (``CFV_RATE_LIMIT_LEASE``, at most one
hundredth of the budget): one ``INCRBY`` hands it a range of token numbers, which it serves locally, each
request taking the next number, so ``X-RateLimit-Remaining`` stays exact for the requests one gateway serves.
Several gateways share the budget exactly to within a chunk each: a chunk a gateway leased and did not use by
the end of the window is lost to the others. Once the counter passes the budget, each gateway refuses locally
until the window ends. A request served from a lease does not look at its address's failed-authentication
counter in Redis (the lease did, and an address this gateway saw fail is still refused locally). Budgets under
200 (where a chunk would be one request) are counted request by request.

**Redis unavailable: fail open.** A check that Redis does not answer within ``CFV_REDIS_TIMEOUT`` serves the
request unlimited and without rate-limit headers, and further checks skip Redis for a couple of seconds (so
an unreachable Redis does not add its timeout to every request); a warning is logged at most once a minute.
Rate limits protect the service's fairness; they hold no data and guard no invariant (keys carry 256 random
bits, so the failed-authentication budget is not what stops key guessing), so an outage of Redis should not
become an outage of the API.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from cfv import metrics
from cfv.batching import Coalescer
from cfv.gateway import keys
from cfv.gateway.errors import ApiError, Handler
from cfv.gateway.faces import DEFINITIONS, READS, WRITES, declared
from cfv.gateway.faces import endpoint_class as endpoint_class  # re-exported: the budget of a path
from cfv.settings import Settings

log = structlog.get_logger("cfv.gateway")

_SKIP_REDIS_SECONDS = 2.0  # after a failed check, serve unlimited this long before asking Redis again
_WARN_EVERY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Budget:
    """Where a counter stands after a check."""

    limit: int
    remaining: int
    reset: int  # whole seconds until the window ends (at least 1)
    allowed: bool
    failures: bool = False  # the failed-authentication budget of the caller's address, not a key's

    def headers(self) -> dict[str, str]:
        """The ``X-RateLimit-*`` headers of this budget."""
        return {"X-RateLimit-Limit": str(self.limit), "X-RateLimit-Remaining": str(self.remaining),
                "X-RateLimit-Reset": str(self.reset)}


# Counts ARGV[3] hits (1 if absent) on the counter KEYS[1]; a new counter starts its window of ARGV[1] ms. Leaves
# count and ttl.
_COUNT = """
local count = redis.call('INCRBY', KEYS[1], tonumber(ARGV[3] or '1'))
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
    ttl = tonumber(ARGV[1])
end
"""
_HIT = _COUNT + "return {count, ttl}"

# KEYS[2] the caller's address's failed-authentication counter, ARGV[2] the failure limit. One round trip per
# authenticated request: an address over its failure limit is refused (and the key not counted), else the
# key's hit is counted as by _HIT.
_CHECK = """
local failures = tonumber(redis.call('GET', KEYS[2]) or '0')
if failures >= tonumber(ARGV[2]) then
    return {-1, redis.call('PTTL', KEYS[2]), failures}
end
""" + _COUNT + "return {count, ttl, failures}"


def redis_client(settings: Settings) -> Redis:
    """A client of the rate-limit Redis that gives up quickly: short timeouts and no retries, since a check
    that cannot be made serves the request unlimited (see the module's documentation)."""
    return Redis.from_url(settings.redis_url, socket_timeout=settings.redis_timeout,
                          socket_connect_timeout=settings.redis_timeout, retry=Retry(NoBackoff(), 0),
                          client_name="cfv-gateway")


def namespace(settings: Settings) -> str:
    """The prefix of this deployment's counters: ``CFV_RATE_LIMIT_PREFIX``, or ``cfv:<database name>``, since key
    ids are only unique within a database (two deployments sharing a Redis must not share budgets)."""
    if settings.rate_limit_prefix:
        return settings.rate_limit_prefix
    return "cfv:" + (urlsplit(settings.database_url).path.strip("/") or "default")


_Check = tuple["AsyncScript", tuple[str, ...], tuple[int, ...]]  # a script, its counters, its arguments


@dataclass(slots=True)
class _Lease:
    """Token numbers this gateway took from a shared counter: ``next`` to ``last``, valid until ``ends``."""

    next: int
    last: int
    ends: float  # time.monotonic() when the counter's window ends


class RateLimiter:
    """Counts requests against their budgets in Redis, one round trip per check; fails open."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._window_ms = max(1, round(settings.rate_limit_window * 1000))
        self._window = settings.rate_limit_window
        self._limits = {WRITES: settings.rate_limit_writes, READS: settings.rate_limit_reads,
                        DEFINITIONS: settings.rate_limit_definitions}
        self._auth_limit = settings.auth_failure_limit
        self._prefix = namespace(settings)
        self._deadline = settings.redis_timeout * 2 + 0.1  # a bound beyond the socket timeouts, whatever happens
        self._hit = redis.register_script(_HIT)
        self._check = redis.register_script(_CHECK)
        self._chunks = {endpoint: max(1, min(settings.rate_limit_lease, limit // 100))
                        for endpoint, limit in self._limits.items()}
        self._leases: dict[tuple[int, str], _Lease] = {}
        self._leasing: dict[tuple[int, str], asyncio.Future[None]] = {}  # one lease request per counter at a time
        self._blocked: dict[str, tuple[float, Budget]] = {}  # addresses known to be over their failure budget
        # Checks made while a round trip is in flight wait and then go together in one pipeline (exact counts,
        # a fraction of redis-py's per-call CPU under load).
        self._checks: Coalescer[_Check, tuple[int, ...] | None] = Coalescer(self._round_trip)
        self._skip_until = 0.0
        self._warned_at = -math.inf

    @property
    def window(self) -> float:
        """Seconds per window."""
        return self._window

    async def hit(self, key_id: int, endpoint: str, address: str) -> Budget | None:
        """Count a request of a key against the budget of its endpoint class, unless its address spent its
        failed-authentication budget (then that budget, not allowed); None if Redis cannot say."""
        limit, chunk = self._limits[endpoint], self._chunks[endpoint]
        if chunk == 1:
            return await self._count(key_id, endpoint, address, 1)
        lease_key = (key_id, endpoint)
        while True:
            lease = self._leases.get(lease_key)
            now = time.monotonic()
            if lease is not None and lease.ends > now:
                if lease.next <= lease.last:
                    count, lease.next = lease.next, lease.next + 1
                    return Budget(limit, max(0, limit - count), max(1, math.ceil(lease.ends - now)), count <= limit)
                if lease.last >= limit:  # the budget is spent until the window ends, whoever spent it
                    return Budget(limit, 0, max(1, math.ceil(lease.ends - now)), False)
            pending = self._leasing.get(lease_key)
            if pending is not None:  # another request is leasing: take from what it brings
                await asyncio.shield(pending)
                continue
            done = self._leasing[lease_key] = asyncio.get_running_loop().create_future()
            try:
                return await self._count(key_id, endpoint, address, chunk)
            finally:
                del self._leasing[lease_key]
                done.set_result(None)

    async def _count(self, key_id: int, endpoint: str, address: str, hits: int) -> Budget | None:
        """Take ``hits`` tokens from the key's counter in Redis; the first is this request's, the others are
        leased to the next ones."""
        limit = self._limits[endpoint]
        counted = await self._run(self._check, (f"{self._prefix}:rate:{endpoint}:{key_id}", self._auth_key(address)),
                                  (hits,))
        if counted is None:
            metrics.RATE_LIMIT_FAIL_OPEN.inc()
            return None
        count, ttl, failures = counted
        if count < 0:
            return self._block(address, failures, ttl)
        first = count - hits + 1
        if hits > 1:
            if len(self._leases) > 100_000:
                self._leases.clear()
            self._leases[(key_id, endpoint)] = _Lease(first + 1, count, time.monotonic() + max(ttl, 0) / 1000)
        return Budget(limit, max(0, limit - first), self._seconds(ttl), first <= limit)

    def auth_failures(self, address: str) -> Budget | None:
        """The failed-authentication budget of an address this gateway knows to be spent, else None.

        Known here, without a round trip: learnt from the failures this gateway counted, or from an
        authenticated request refused for them. (An address blocked by failures at other gateways costs this
        one a key lookup before its first refusal.)
        """
        known = self._blocked.get(address)
        if known is None:
            return None
        if known[0] <= time.monotonic():
            del self._blocked[address]
            return None
        return known[1]

    async def auth_failed(self, address: str) -> Budget | None:
        """Count a failed authentication of a source address."""
        counted = await self._run(self._hit, (self._auth_key(address),))
        if counted is None:
            return None
        count, ttl = counted[0], counted[1]
        if count >= self._auth_limit:
            self._block(address, count, ttl)
        limit = self._auth_limit
        return Budget(limit, max(0, limit - count), self._seconds(ttl), count <= limit)

    def _block(self, address: str, failures: int, ttl_ms: int) -> Budget:
        budget = Budget(self._auth_limit, max(0, self._auth_limit - failures), self._seconds(ttl_ms), False, True)
        if len(self._blocked) > 100_000:
            self._blocked.clear()
        self._blocked[address] = (time.monotonic() + budget.reset, budget)
        return budget

    async def ping(self) -> None:
        """Raise unless Redis answers (readiness)."""
        async with asyncio.timeout(self._deadline):
            await self._redis.ping()

    async def check_redis(self) -> bool:
        """Whether Redis answers; if not, say once, at start, that requests are served unlimited until it does."""
        try:
            await self.ping()
            return True
        except (RedisError, OSError, TimeoutError) as error:
            self._warned_at = time.monotonic()  # this is the warning of the minute
            log.warning("Redis does not answer: rate limits are not enforced until it does (set CFV_REDIS_URL, or "
                        "start Redis)", error=type(error).__name__)
            return False

    async def close(self) -> None:
        """Close the Redis client (the limiter's owner decides when)."""
        await self._redis.aclose()

    def _auth_key(self, address: str) -> str:
        return f"{self._prefix}:auth:{address}"

    def _seconds(self, ttl_ms: int) -> int:
        if ttl_ms < 0:  # no counter (yet): a window would start now
            ttl_ms = self._window_ms
        return max(1, math.ceil(ttl_ms / 1000))

    async def _run(self, script: AsyncScript, counters: tuple[str, ...], args: tuple[int, ...] = ()
                   ) -> tuple[int, ...] | None:
        """Run ``script`` on the ``counters`` (in the pipeline of the next round trip)."""
        if time.monotonic() < self._skip_until:
            return None
        return await self._checks((script, counters, args))

    async def _round_trip(self, batch: list[_Check]) -> list[tuple[int, ...] | None]:
        now = time.monotonic()
        try:
            async with asyncio.timeout(self._deadline):
                results = await self._pipeline(batch)
                if any(isinstance(r, NoScriptError) for r in results):  # Redis restarted or flushed its scripts
                    for script in {id(s): s for s, _, _ in batch}.values():
                        await self._redis.script_load(script.script)
                    results = await self._pipeline(batch)
            for result in results:
                if isinstance(result, Exception):
                    raise result
        except (RedisError, OSError, TimeoutError) as error:
            self._skip_until = now + _SKIP_REDIS_SECONDS
            if now - self._warned_at >= _WARN_EVERY_SECONDS:
                self._warned_at = now
                log.warning("rate limits not enforced: Redis did not answer; serving requests unlimited",
                            error=type(error).__name__, retry_in=_SKIP_REDIS_SECONDS)
            return [None] * len(batch)
        return [tuple(int(n) for n in result) for result in results]

    async def _pipeline(self, batch: list[_Check]) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        for script, counters, args in batch:
            pipe.evalsha(script.sha, len(counters), *counters, self._window_ms, self._auth_limit, *args)
        return list(await pipe.execute(raise_on_error=False))


LIMITER: web.AppKey[RateLimiter] = web.AppKey("limiter", RateLimiter)


def request_class(request: web.Request) -> str:
    """The budget of a request: the one its route declares with its face (:mod:`cfv.gateway.faces`), looked up
    by the matched route, no path matching; for a route of no face, or no route, :func:`endpoint_class`."""
    return declared(request).budget


OPENAPI_PATH = "/api/v1/openapi.json"  # the API's description: public, like the docs page


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """In front of every ``/api/`` request: refuse (429) an address that spent its failed-authentication budget,
    authenticate the key (the principal is ``request[keys.PRINCIPAL]``; every 401 answered counts against the
    address), and count the request against its key's budget of its endpoint class (429 once spent). The
    budget counted against is ``request[keys.BUDGET]``, whose headers the error middleware puts on the answer.
    One middleware, not three: each layer of aiohttp's middleware chain costs a few microseconds a request."""
    if not request.path.startswith("/api/") or request.path == OPENAPI_PATH:
        return await handler(request)
    limiter = request.app[LIMITER]
    address = request.remote or "unknown"
    seen = limiter.auth_failures(address)
    if seen is not None:
        request[keys.BUDGET] = seen
        raise _too_many_failures(seen, limiter.window)
    try:
        principal = request[keys.PRINCIPAL] = await request.app[keys.AUTHENTICATOR].principal(request)
        endpoint = request_class(request)
        budget = await limiter.hit(principal.key_id, endpoint, address)
        if budget is not None:
            request[keys.BUDGET] = budget
            if budget.failures:
                raise _too_many_failures(budget, limiter.window)
            if not budget.allowed:
                raise ApiError.one(
                    429, "rate_limited",
                    f"this key's budget of {budget.limit} {endpoint} requests per {limiter.window:g} s is spent; "
                    f"retry in {budget.reset} s", headers={"Retry-After": str(budget.reset)})
        return await handler(request)
    except ApiError as error:
        if error.status == 401:
            counted = await limiter.auth_failed(address)
            if counted is not None:
                request[keys.BUDGET] = counted
        raise


def _too_many_failures(budget: Budget, window: float) -> ApiError:
    return ApiError.one(
        429, "rate_limited",
        f"too many failed authentications from this address (at most {budget.limit} per {window:g} s); retry in "
        f"{budget.reset} s", headers={"Retry-After": str(budget.reset)})


def install(app: web.Application, settings: Settings, limiter: RateLimiter | None) -> None:
    """Give ``app`` its limiter (a new one over ``settings.redis_url``, closed with the app, if none is given)."""
    if limiter is None:
        limiter = RateLimiter(redis_client(settings), settings)
        owned = limiter

        async def close(_: web.Application) -> None:
            await owned.close()

        app.on_cleanup.append(close)
    app[LIMITER] = limiter
