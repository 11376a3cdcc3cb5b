"""Connecting to RabbitMQ: one node, or the nodes of a cluster, tried in turn.

Every process takes a list of AMQP URLs (``CFV_AMQP_URL``, comma-separated). aio-pika's robust connection
re-establishes itself, its channels and its consumers after a failure, but always to the one URL it was given:
:class:`FailoverConnection` moves to the next node at each attempt, so a process whose node died reconnects to
a live one.
"""

from __future__ import annotations

import logging
from typing import Any

from aio_pika.abc import AbstractRobustConnection
from aio_pika.robust_connection import RobustConnection
from yarl import URL


def amqp_urls(setting: str) -> list[str]:
    """The URLs of ``CFV_AMQP_URL``: one, or several separated by commas (a cluster's nodes)."""
    urls = [url.strip() for url in setting.split(",") if url.strip()]
    if not urls:
        raise ValueError("CFV_AMQP_URL names no broker")
    return urls


class FailoverConnection(RobustConnection):
    """A robust connection that tries the next node's URL at each (re)connection attempt.

    aio-pika reads ``self.url`` for each attempt and clears ``self.transport`` just before it (and when the
    connection is lost or closed): that moment moves the connection to the next URL. (aio-pika offers no hook
    for the URL of an attempt; these two attributes are the narrowest place to take it.)
    """

    _urls: list[URL]
    _next = 0

    def __init__(self, urls: list[str], **kwargs: Any) -> None:
        self._urls = [URL(url) for url in urls]
        super().__init__(self._urls[0], **kwargs)
        self.__dict__["_armed"] = False  # the first attempt goes to the first node

    @property
    def url(self) -> URL:
        return self._urls[self._next % len(self._urls)]

    @url.setter
    def url(self, value: URL) -> None:  # aio-pika's __init__, and update_secret (for every node alike)
        self._urls = [url.with_password(value.password) if value.password else url for url in self._urls]

    @property
    def transport(self) -> Any:
        return self.__dict__.get("_transport")

    @transport.setter
    def transport(self, value: Any) -> None:
        if value is None and self.__dict__.get("_armed") is not None:
            if self.__dict__.get("_transport") is not None or self.__dict__["_armed"]:
                self._next += 1  # the connection to this node was lost, or the attempt on it failed
            self.__dict__["_armed"] = True
        self.__dict__["_transport"] = value


async def connect(urls: list[str], *, name: str) -> AbstractRobustConnection:
    """A robust connection to the first node of ``urls`` that answers, which re-establishes itself, its
    channels and its consumers after a failure, on whichever node answers then."""
    # aio-pika waits 5 s before reconnecting; a second is plenty for a broker that closed one connection.
    connection = FailoverConnection(urls, client_properties={"connection_name": name}, reconnect_interval=1)
    robust_log = logging.getLogger("aio_pika.robust_connection")
    robust_log.addFilter(_first_attempt)  # a failed first attempt raises: its caller says what it means
    try:
        await connection.connect()
    except BaseException:
        await connection.close()
        raise
    finally:
        robust_log.removeFilter(_first_attempt)
    return connection


def _first_attempt(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Connection to ")  # "... closed. Reconnecting after 1 seconds."


def _not_about_the_missing_plugin(record: logging.LogRecord) -> bool:
    # Declaring cfv's topology on a broker without the consistent-hash plugin closes the connection, which aiormq
    # logs twice (with a traceback); the process turns that error into one line (cfv.faults.Unmet) and exits.
    error = record.exc_info[1] if record.exc_info else None
    return "x-consistent-hash" not in record.getMessage() and "x-consistent-hash" not in str(error or "")


logging.getLogger("aiormq.connection").addFilter(_not_about_the_missing_plugin)
