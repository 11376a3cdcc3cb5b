"""The lean publisher's hand-encoded frames equal pamqp's, and AMQP URLs parse as RabbitMQ reads them."""

from __future__ import annotations

import pytest
from cfv.broker.confirmed import Address, Outgoing, content_header
from pamqp import commands as spec
from pamqp import frame as codec
from pamqp import header


@pytest.mark.parametrize("body_size", [0, 1, 700, 2**40])
@pytest.mark.parametrize(("message_id", "kind"), [("8c7a3f7e-8d6e-4c1e-9b1e-1234567890ab", "cfv.value.replaced.v1"),
                                                 ("x" * 255, "t"), ("é" * 50, "cfv.field.created.v1")])
def test_content_header_is_pamqps(body_size: int, message_id: str, kind: str) -> None:
    message = Outgoing("cfv.events", "acme.Story.1.created", b"", message_id, kind, "application/cloudevents+json")
    properties = spec.Basic.Properties(content_type=message.content_type, delivery_mode=2, message_id=message_id,
                                       message_type=kind)
    assert content_header(body_size, message) == codec.marshal(header.ContentHeader(0, body_size, properties), 1)


@pytest.mark.parametrize(("url", "expected"), [
    ("amqp://guest:guest@127.0.0.1:5672/", Address("127.0.0.1", 5672, "guest", "guest", "/", False)),
    ("amqp://guest:guest@127.0.0.1:5672", Address("127.0.0.1", 5672, "guest", "guest", "/", False)),
    ("amqp://u:p%40ss@rabbit/cfv_test", Address("rabbit", 5672, "u", "p@ss", "cfv_test", False)),
    ("amqp://u:p@rabbit/%2F", Address("rabbit", 5672, "u", "p", "/", False)),
    ("amqps://u:p@rabbit.example/prod", Address("rabbit.example", 5671, "u", "p", "prod", True)),
])
def test_addresses(url: str, expected: Address) -> None:
    assert Address.parse(url) == expected


def test_only_amqp_urls() -> None:
    with pytest.raises(ValueError, match="not an AMQP URL"):
        Address.parse("http://rabbit/")
