"""In JSON mode every log line is one JSON object, the standard library's (libraries') lines included, with
their logger and traceback (issue 12); in either mode logs go to standard error, leaving standard output to
what a command prints. Run in a child process: the test runner owns this one's logging."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import logging, structlog
from cfv import logs
logs.configure("INFO", json={json})
structlog.get_logger("cfv").info("ours", a=1)
logging.getLogger("aiormq.connection").warning("theirs %s", "x")
logging.getLogger("asyncpg").debug("below the level")
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("aiohttp.server").exception("failed")
print("printed")
"""


def _run(json_mode: bool) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT.format(json=json_mode)], capture_output=True, text=True,  # noqa: S603
                          timeout=60, check=True)


def test_json_mode_renders_every_line_as_json_on_standard_error() -> None:
    done = _run(True)
    assert done.stdout == "printed\n"
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(line["event"], line["level"], line.get("logger")) for line in lines] == [
        ("ours", "info", None), ("theirs x", "warning", "aiormq.connection"), ("failed", "error", "aiohttp.server")]
    assert all("timestamp" in line for line in lines)
    assert lines[0]["a"] == 1
    assert "ZeroDivisionError: division by zero" in lines[2]["exception"]


def test_console_mode_renders_library_lines_like_ours() -> None:
    done = _run(False)
    assert done.stdout == "printed\n"
    lines = done.stderr.splitlines()
    assert "[info     ] ours" in lines[0] and "a=1" in lines[0]
    assert "[warning  ] theirs x" in lines[1] and "[aiormq.connection]" in lines[1]
    assert "below the level" not in done.stderr
    assert "ZeroDivisionError" in done.stderr
