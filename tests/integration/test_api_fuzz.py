"""Property-based testing against the served OpenAPI document (issue 12): schemathesis generates requests for
every operation, bounded (a few examples each, a time budget), with a real key against a real stack; no answer
may be a 5xx, and every documented answer must match its schema."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from support import Stack, Workspace

EXAMPLES = int(os.environ.get("CFV_FUZZ_EXAMPLES", "5"))  # per operation
BUDGET = int(os.environ.get("CFV_FUZZ_SECONDS", "90"))


def _schemathesis(base: str, key: str, report: Path) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("schemathesis")), "run", f"{base}/api/v1/openapi.json",
               "--url", base, "-H", f"X-API-Key: {key}", "--max-examples", str(EXAMPLES),
               "--max-time", str(BUDGET), "--checks", "not_a_server_error,response_schema_conformance",
               "--request-timeout", "15", "--generation-deterministic", "--phases", "examples,fuzzing",
               "--no-color"]
    return subprocess.run(command, capture_output=True, text=True, timeout=BUDGET + 120,  # noqa: S603
                          cwd=report.parent, check=False)


async def test_generated_requests_get_no_5xx_and_answers_that_match_the_document(
        stack: Stack, workspace: Workspace, tmp_path: Path) -> None:
    status, body, _ = await stack.request("POST", "/api/v1/custom_fields", workspace, json={"custom_field": {
        "name": "Points", "subject_type": "Story", "value_type": "number"}})
    assert status == 201, body
    done = await asyncio.to_thread(_schemathesis, stack.base, workspace.key, tmp_path / "report")
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-5000:]
