"""A connection to a cluster moves to the next node's URL at each attempt after a failure or a loss, and the
first attempt goes to the first node (the attempts are aio-pika's; this checks the URL each one would use)."""

from __future__ import annotations

from typing import cast

import pytest
from cfv.broker.confirmed import ConfirmedPublisher
from cfv.broker.connection import FailoverConnection, amqp_urls

URLS = ["amqp://guest:guest@127.0.0.1:5681/v", "amqp://guest:guest@127.0.0.1:5682/v",
        "amqp://guest:guest@127.0.0.1:5683/v"]


def test_the_setting_lists_the_nodes() -> None:
    assert amqp_urls(" , ".join(URLS) + ",") == URLS


async def test_each_attempt_after_a_failure_or_a_loss_goes_to_the_next_node() -> None:
    connection = FailoverConnection(URLS)
    ports = []

    def attempt(succeeds: bool) -> None:
        connection.transport = None  # what aio-pika does before each attempt
        ports.append(connection.url.port)
        if succeeds:
            connection.transport = object()

    attempt(succeeds=True)  # the first node
    attempt(succeeds=False)  # lost: the next node, which is down
    attempt(succeeds=False)  # failed: the one after
    attempt(succeeds=True)  # failed again: round to the first
    assert ports == [5681, 5682, 5683, 5681]


async def test_a_new_secret_applies_to_every_node() -> None:
    connection = FailoverConnection(URLS)
    connection.url = connection.url.with_password("rotated")
    connection.transport = None
    connection.transport = None
    assert connection.url.port == 5682 and connection.url.password == "rotated"


async def test_the_publisher_tries_every_node_once_from_the_one_after_the_last_failure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[str] = []
    live = URLS[2]

    async def connect(url: str, *, name: str) -> ConfirmedPublisher:
        tried.append(url)
        if url != live:
            raise ConnectionRefusedError(url)
        return cast(ConfirmedPublisher, object())

    monkeypatch.setattr(ConfirmedPublisher, "connect", connect)
    monkeypatch.setattr(ConfirmedPublisher, "_turn", 0)
    await ConfirmedPublisher.connect_any(URLS, name="test")
    assert tried == URLS  # the first two refuse, the third answers
    tried.clear()
    await ConfirmedPublisher.connect_any(URLS, name="test")
    assert tried == [URLS[2]]  # straight to the node after the last one that failed
    live = "nobody"
    tried.clear()
    with pytest.raises(ConnectionRefusedError):
        await ConfirmedPublisher.connect_any(URLS, name="test")
    assert sorted(tried) == sorted(URLS)  # each node once
