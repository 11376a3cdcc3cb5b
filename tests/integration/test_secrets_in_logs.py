"""No key, token or secret ever appears in a log line or an answer (issue 5)."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cfv.settings import Settings
from cfv.store.accounts import issue_key
from cfv_schemas.signing import signing_key
from support import Workspace, running_stack, wait_for
from support.pipeline import VALUES, WorkerProcess, broker_channel, command, envelope, number_field, publish_raw


def _forms(secret: str) -> list[str]:
    """Every form of a key that would betray it: the key, its random part, its hash, its signing seed."""
    random_part = secret.split("_", 2)[2]  # after "cfv_<prefix>_" (the random part may hold "_" itself)
    assert len(random_part) >= 40
    seed = signing_key(secret).private_bytes_raw()
    return [secret, random_part, hashlib.sha256(secret.encode()).hexdigest(), seed.hex()]


async def test_no_secret_in_logs_or_answers(settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any],
                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    revoked = await issue_key(db, workspace.id, name="revoked")
    await db.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", revoked.id)
    unknown = "cfv_deadbeef_" + "x" * 43
    worker = WorkerProcess(settings, tmp_path / "worker.log", log_level="DEBUG")
    answers: list[str] = []
    try:
        await worker.started()
        async with running_stack(settings, worker=False) as stack, broker_channel(settings) as channel:
            field_id = await number_field(stack, workspace)
            item = {"custom_field_value": {"subject_type": "Story", "subject_id": 1, "custom_field_id": field_id,
                                           "value": 1}}
            for headers in ({"X-API-Key": workspace.key}, {"Authorization": f"Bearer {workspace.key}"},
                            {"X-API-Key": revoked.secret}, {"X-API-Key": unknown},
                            {"Authorization": f"Bearer {unknown}"}):
                async with stack.http.post(stack.base + VALUES, json=item, headers=headers) as response:
                    answers.append(await response.text())
                    answers.append(str(response.headers))
            routing_key = str(workspace.id)
            await publish_raw(channel, None, envelope(command(workspace.id, field_id, 2, 1)), routing_key)
            await publish_raw(channel, unknown, envelope(command(workspace.id, field_id, 3, 1)), routing_key)
            await publish_raw(channel, revoked.secret, envelope(command(workspace.id, field_id, 4, 1)), routing_key)
            done = uuid.uuid4()
            await publish_raw(channel, workspace.key, envelope(command(workspace.id, field_id, 5, 1, command_id=done)),
                              routing_key)

            async def applied() -> bool:
                return await db.fetchval("SELECT count(*) FROM operations WHERE id = $1", done) == 1
            await wait_for(applied, what="the signed command to be applied")
    finally:
        worker.kill()
    captured = capsys.readouterr()
    logs = captured.out + captured.err + worker.output()
    assert "refusing command message" in logs  # the refusals were logged, and are in what we search
    for secret in (workspace.key, revoked.secret, unknown):
        for form in _forms(secret):
            assert form not in logs, "a key appears in the logs"
            assert all(form not in answer for answer in answers), "a key appears in an answer"
