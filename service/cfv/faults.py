"""Failures that pass, which a process waits out and retries rather than reports as a bad request; and failures
that do not, which stop it with one line saying what to do.

A dependency that does not answer yet is waited for: it may be starting too. One that answers *no* will not
change by waiting: the database does not exist or lacks cfv's migrations, PostgreSQL or RabbitMQ refuses the
credentials, the virtual host is missing, RabbitMQ lacks the consistent-hash exchange plugin. That is
:class:`Unmet`: the process exits once, with status 78 (``EX_CONFIG``) and one line naming what is missing and
the command that provides it, and ``cfv run`` stops rather than restart it again and again. Redis is not a
precondition: without it the gateway serves unlimited (rate limits fail open) and says so.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
from aio_pika.exceptions import AMQPError, ProbableAuthenticationError

#: Lost or refused connections, deadlocks, serialisation failures: the same work may well succeed later.
#: asyncpg's InternalClientError is what a connection lost at the wrong moment raises ("cannot switch to state
#: ...; another operation is in progress", from a pool's reset of it): the database is away, not broken.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncio.TimeoutError,
)


class Backoff:
    """Growing pauses between retries: ``first`` seconds, doubling up to ``ceiling``, each pause jittered.

    A pause lasts between half the current delay and the whole of it, at random ("equal jitter"): processes
    that lost the same dependency at the same moment would otherwise all retry in lockstep, and meet it again
    all at once when it comes back.
    """

    def __init__(self, first: float = 0.1, ceiling: float = 5.0) -> None:
        self.delay = first
        self._ceiling = ceiling

    def jittered(self) -> float:
        """How long the next pause lasts."""
        return self.delay / 2 + random.uniform(0, self.delay / 2)  # spreads retries; no secret

    def next(self) -> float:
        """The next pause (about the current delay); the one after it will be longer."""
        pause = self.jittered()
        self.delay = min(self.delay * 2, self._ceiling)
        return pause

    async def pause(self) -> None:
        """Sleep (about) the current delay, then lengthen the next one."""
        await asyncio.sleep(self.next())


async def keep_serving(serve: Callable[[], Awaitable[None]], *, stopping: Callable[[], bool], what: str,
                       log: Any, expected: tuple[type[BaseException], ...]) -> None:
    """Run ``serve`` until ``stopping()``, again after each failure, with back-off: the relay's and the delivery
    processes' loop. ``expected`` failures (a lost connection) are logged as a warning, others with their
    traceback; a ``serve`` that had run a minute before it failed starts a new incident (the back-off anew)."""
    backoff = Backoff(first=0.5, ceiling=10.0)
    while not stopping():
        began = time.monotonic()
        try:
            await serve()
        except expected as error:
            log.warning(f"{what} interrupted, restarting", error=repr(error), retry_in=backoff.delay)
        except Exception:  # whatever else a lost connection raises: the process must outlive it
            log.exception(f"{what} failed, restarting", retry_in=backoff.delay)
        if stopping():
            break
        if time.monotonic() - began > 60:
            backoff = Backoff(first=0.5, ceiling=10.0)
        await backoff.pause()


#: The exit status of a process whose precondition is unmet (sysexits.h's EX_CONFIG).
EX_CONFIG = 78

PLUGIN_LINE = ("RabbitMQ lacks the plugin rabbitmq_consistent_hash_exchange, which routes cfv's commands: enable "
               "it with `rabbitmq-plugins enable rabbitmq_consistent_hash_exchange` (on every node), then start cfv "
               "again")


class Unmet(Exception):
    """A precondition that waiting will not meet; its message is the line to print."""


def database_name(dsn: str) -> str:
    """The database a PostgreSQL URL names."""
    return unquote(urlsplit(dsn).path.lstrip("/")) or "(none)"


def explain_postgres(error: BaseException, dsn: str) -> Unmet | None:
    """The unmet precondition ``error`` shows, if it shows one (None: it may pass, or it is a bug)."""
    name = database_name(dsn)
    if isinstance(error, asyncpg.InvalidCatalogNameError):
        return Unmet(f"PostgreSQL has no database {name!r}: create it, with cfv's schema, by `cfv migrate` (or "
                     "point CFV_DATABASE_URL at the right one)")
    if isinstance(error, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        return Unmet(f"PostgreSQL refused the user of CFV_DATABASE_URL ({error}): fix the URL's user or password")
    return None


def explain_rabbitmq(error: BaseException) -> Unmet | None:
    """The unmet precondition ``error`` shows, if it shows one (None: it may pass, or it is a bug)."""
    text = str(error)
    if "x-consistent-hash" in text:
        return Unmet(PLUGIN_LINE)
    if isinstance(error, ProbableAuthenticationError) or (isinstance(error, AMQPError) and "ACCESS_REFUSED" in text):
        return Unmet("RabbitMQ refused the user of CFV_AMQP_URL: fix the URL's user or password (or create the "
                     "user: `rabbitmqctl add_user USER PASSWORD`)")
    # Opening a virtual host that does not exist, or that the user may not use, is answered Connection.Close
    # where Connection.OpenOk was expected (aiormq's InvalidFrameError, its reason left out).
    if isinstance(error, AMQPError) and ("vhost" in text.lower() or ("Connection.OpenOk" in text
                                                                       and "Connection.Close" in text)):
        return Unmet("RabbitMQ refused the virtual host of CFV_AMQP_URL (it does not exist, or the user may not use "
                     "it): create it and let the user in, with `rabbitmqctl add_vhost VHOST` and `rabbitmqctl "
                     "set_permissions -p VHOST USER '.*' '.*' '.*'`")
    return None
