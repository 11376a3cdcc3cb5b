"""``cfv run`` keeps serving when one of its processes dies: the dead one is restarted with a log line, the
others keep their pids, and writes go on being applied (issue 14, item 7)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from cfv.settings import Settings
from support import Workspace, wait_for

_STARTED = re.compile(r"process started\s+pid=(\d+) process=(\S+) restarts=(\d+)")


def _started(log: Path) -> list[tuple[int, str, int]]:
    return [(int(pid), name, int(n)) for pid, name, n in _STARTED.findall(log.read_text(errors="replace"))]


def _cfv_run(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "cfv", "run", "--workers", "1"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)


async def test_a_killed_worker_is_restarted_and_the_rest_keep_serving(
        settings: Settings, workspace: Workspace, db: asyncpg.Connection[Any], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFV_")}
    env.update(CFV_DATABASE_URL=settings.database_url, CFV_AMQP_URL=settings.amqp_url,
               CFV_HTTP_PORT=str(settings.http_port), CFV_COMMAND_SHARDS=str(settings.command_shards),
               CFV_DB_POOL_SIZE="2", CFV_LOG_LEVEL="INFO")
    log = tmp_path / "run.log"
    run = _cfv_run(env, log)
    base = f"http://{settings.http_host}:{settings.http_port}"
    headers = workspace.headers
    try:
        async with aiohttp.ClientSession(headers=headers) as http:
            async def serving() -> bool:
                assert run.poll() is None, log.read_text()
                try:
                    async with http.get(base + "/healthz") as answer:
                        return answer.status == 200
                except aiohttp.ClientConnectionError:
                    return False
            await wait_for(serving, 30, "cfv run to serve")
            async with http.post(base + "/api/v1/custom_fields", json={"custom_field": {
                    "name": "Points", "subject_type": "Story", "value_type": "number"}}) as answer:
                assert answer.status == 201
                field_id = next(iter((await answer.json())["custom_fields"]))

            async def write(subject_id: int) -> None:
                item = {"custom_field_value": {"subject_type": "Story", "subject_id": subject_id,
                                               "custom_field_id": int(field_id), "value": subject_id}}
                async with http.post(base + "/api/v1/custom_field_values", json=item) as answer:
                    assert answer.status == 200, await answer.text()

            await write(1)
            first = {name: pid for pid, name, _ in _started(log)}
            assert set(first) == {"gateway", "relay", "worker-1", "webhooks"}
            os.kill(first["worker-1"], signal.SIGKILL)

            async def restarted() -> bool:
                return any(name == "worker-1" and n == 1 for _, name, n in _started(log))
            await wait_for(restarted, 30, "the worker to be restarted")
            text = log.read_text()
            exited = rf"process exited; restarting it\s+exit_code=-9 pid={first['worker-1']} process=worker-1"
            assert re.search(exited, text), text
            await asyncio.wait_for(write(2), 30)  # applied by the new worker, through the same gateway
            now = {name: pid for pid, name, _ in _started(log)}  # the latest pid of each
            assert now["gateway"] == first["gateway"] and now["relay"] == first["relay"]
            assert now["webhooks"] == first["webhooks"]
            assert now["worker-1"] != first["worker-1"]
            values = await db.fetch("SELECT subject_id, value FROM current_values WHERE custom_field_id = $1 "
                                    "ORDER BY subject_id", int(field_id))
            assert [(r["subject_id"], r["value"]) for r in values] == [("1", 1), ("2", 2)]
        run.send_signal(signal.SIGTERM)
        assert run.wait(40) == 0
        for pid in now.values():
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
