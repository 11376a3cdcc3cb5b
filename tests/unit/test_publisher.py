"""Whatever publishing raises, a submitted command's request gets an answer: an unexpected failure is a
``PublishFailed`` (uncertain: the command may have left), never a request left waiting for ever (seen with a
cluster's node going away mid-publish)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from cfv.broker.confirmed import ConfirmedPublisher
from cfv.broker.publisher import CommandPublisher, PublishFailed
from cfv_schemas.commands import WriteValues
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


class _Breaking:
    """A publisher whose publish raises what no handler expects."""

    is_open = True
    closed = False

    async def publish(self, *_: Any, **__: Any) -> None:
        raise EOFError("the node went away mid-frame")

    async def close(self) -> None:
        self.closed = True


async def test_an_unexpected_publishing_failure_answers_the_request() -> None:
    broken = _Breaking()

    async def connect() -> ConfirmedPublisher:
        return cast(ConfirmedPublisher, broken)

    publisher = CommandPublisher(connect)
    command = WriteValues.model_validate({
        "type": "write_values", "id": str(uuid.uuid4()), "workspace_id": 1, "actor": "key:1",
        "accepted_at": datetime.now(UTC).isoformat(),
        "items": [{"subject_type": "Story", "subject_id": 1, "custom_field_id": 1, "value": 1}]})
    signer = Ed25519PrivateKey.generate()
    public = signer.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    with pytest.raises(PublishFailed) as failed:
        await asyncio.wait_for(publisher.submit(command, signer, public), 5)
    assert failed.value.uncertain
    assert broken.closed  # the connection is not used again
