"""The integration kit's examples run against the real stack (issue 11): a publisher that signs a command and
reads its outcome from the reply, and a consumer that notices a gap in a key's sequence and fills it from the
replay API, handling every change once and in order."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
from support import EventCollector, Stack, Workspace
from support.kantata import item, write
from support.pipeline import number_field

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CFV_")}


async def test_the_publisher_example_writes_a_value_and_reads_its_outcome(
        stack: Stack, workspace: Workspace, db: asyncpg.Connection[Any]) -> None:
    field_id = await number_field(stack, workspace)
    done = await asyncio.to_thread(subprocess.run, [
        sys.executable, str(EXAMPLES / "publisher.py"), "--amqp", stack.settings.amqp_url, "--api-key", workspace.key,
        "--workspace-id", str(workspace.id), "--field", str(field_id), "--subject", "7", "--value", "42"],
        capture_output=True, text=True, timeout=60, env=_env(), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["status"] == "succeeded" and outcome["values"][0]["value"] == 42
    assert await db.fetchval("SELECT value FROM current_values WHERE subject_id = '7'") == 42


async def test_the_consumer_example_fills_a_gap_from_the_replay_api(
        stack: Stack, workspace: Workspace, events: EventCollector) -> None:
    field_id = await number_field(stack, workspace)
    for value in range(1, 4):  # before the consumer runs: it will see sequence 4 first
        status, body, _ = await write(stack, workspace, item({"id": field_id, "subject_type": "Story"}, value,
                                                             subject_id=1))
        assert status == 200, body
    await events.wait_for_count(3)
    consumer = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLES / "consumer.py"), "--amqp", stack.settings.amqp_url, "--api", stack.base,
        "--api-key", workspace.key, "--workspace", workspace.slug, "--count", "6",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=_env())
    try:
        assert consumer.stdout is not None
        ready = await asyncio.wait_for(consumer.stdout.readline(), 30)
        assert json.loads(ready) == {"ready": True}
        for value in range(4, 7):
            status, body, _ = await write(stack, workspace, item({"id": field_id, "subject_type": "Story"}, value,
                                                                 subject_id=1))
            assert status == 200, body
        out, err = await asyncio.wait_for(consumer.communicate(), 30)
        assert consumer.returncode == 0, err.decode()
    finally:
        if consumer.returncode is None:
            consumer.kill()
            await consumer.wait()
    handled = [json.loads(line) for line in out.decode().splitlines()]
    assert [(h["sequence"], h["value"]) for h in handled] == [(n, n) for n in range(1, 7)]
    assert [h["position"] for h in handled] == sorted(h["position"] for h in handled)
