"""A newcomer's missing piece stops cfv with one line that names it and the command that provides it, never a
traceback repeated by every process (issue 13, bug 3): a RabbitMQ without the consistent-hash plugin (a real
node with no plugin at all, ``bin/rabbitmq-cluster bare``), a missing database, a database without cfv's
schema or with a migration missing, RabbitMQ credentials refused, a virtual host that does not exist. Each
process exits with status 78 and ``cfv run`` stops instead of restarting it. Redis is not a precondition: the
gateway serves without it, and says so once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from cfv.settings import Settings
from support import free_port

ROOT = Path(__file__).resolve().parents[2]
ROLES = ["gateway", "worker", "relay"]


@pytest.fixture(scope="session")
def bare_rabbitmq() -> str:
    """The AMQP URL of a lone RabbitMQ node without any plugin (started if it is not running)."""
    started = subprocess.run([ROOT / "bin" / "rabbitmq-cluster", "bare"], check=True, timeout=180,  # noqa: S603
                             capture_output=True, text=True)
    return started.stdout.strip().splitlines()[-1]


def run_cfv(args: list[str], tmp_path: Path, timeout: float = 60, **env: str) -> tuple[int, str]:
    """Run ``python -m cfv ARGS`` with the given ``CFV_*`` settings; its exit status and its output (both
    streams)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CFV_")}
    environment.update(CFV_HTTP_PORT=str(free_port()), CFV_LOG_LEVEL="INFO", **env)
    done = subprocess.run([sys.executable, "-m", "cfv", *args], env=environment, cwd=tmp_path,  # noqa: S603
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def assert_one_line(output: str, *needles: str) -> None:
    """The output is one line (whatever the logging before it: none expected) holding every needle."""
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    for needle in needles:
        assert needle in lines[0], output


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.mark.parametrize("role", ROLES)
def test_a_broker_without_the_consistent_hash_plugin_is_one_line_naming_it(
        role: str, settings: Settings, bare_rabbitmq: str, tmp_path: Path) -> None:
    code, output = run_cfv([role], tmp_path, CFV_DATABASE_URL=settings.database_url, CFV_AMQP_URL=bare_rabbitmq)
    assert code == 78
    assert_one_line(output, "rabbitmq_consistent_hash_exchange",
                    "rabbitmq-plugins enable rabbitmq_consistent_hash_exchange")


def test_cfv_run_says_it_once_and_stops(settings: Settings, bare_rabbitmq: str, tmp_path: Path) -> None:
    began = time.monotonic()
    code, output = run_cfv(["run", "--workers", "2"], tmp_path, CFV_DATABASE_URL=settings.database_url,
                           CFV_AMQP_URL=bare_rabbitmq)
    assert code == 78
    assert time.monotonic() - began < 30
    assert_one_line(output, "rabbitmq-plugins enable rabbitmq_consistent_hash_exchange")


@pytest.mark.parametrize("role", [*ROLES, "webhooks", "run"])
def test_a_missing_database_is_one_line_saying_cfv_migrate(role: str, settings: Settings, tmp_path: Path) -> None:
    missing = _with_database(settings.database_url, f"cfv_missing_{uuid.uuid4().hex[:8]}")
    code, output = run_cfv([role], tmp_path, CFV_DATABASE_URL=missing, CFV_AMQP_URL=settings.amqp_url)
    assert code == 78
    assert_one_line(output, "has no database", "`cfv migrate`")


async def test_a_database_without_the_schema_or_a_migration_is_one_line(settings: Settings, tmp_path: Path,
                                                                      db: asyncpg.Connection) -> None:
    name = f"cfv_empty_{uuid.uuid4().hex[:8]}"
    await db.execute(f"CREATE DATABASE {name}")
    try:
        code, output = run_cfv(["worker"], tmp_path, CFV_DATABASE_URL=_with_database(settings.database_url, name),
                               CFV_AMQP_URL=settings.amqp_url)
        assert code == 78
        assert_one_line(output, f"the database '{name}' has no cfv schema", "`cfv migrate`")
    finally:
        await db.execute(f"DROP DATABASE {name} WITH (FORCE)")

    latest = await db.fetchval("SELECT max(migration_id) FROM _yoyo_migration")
    await db.execute("UPDATE _yoyo_migration SET migration_id = 'hidden' WHERE migration_id = $1", latest)
    try:
        code, output = run_cfv(["gateway"], tmp_path, CFV_DATABASE_URL=settings.database_url,
                               CFV_AMQP_URL=settings.amqp_url)
        assert code == 78
        assert_one_line(output, f"lacks migration(s) {latest}", "`cfv migrate`")
    finally:
        await db.execute("UPDATE _yoyo_migration SET migration_id = $1 WHERE migration_id = 'hidden'", latest)


@pytest.mark.parametrize("role", ROLES)
def test_refused_broker_credentials_are_one_line(role: str, settings: Settings, tmp_path: Path) -> None:
    wrong = settings.amqp_url.replace("guest:guest@", "guest:not-the-password@")
    code, output = run_cfv([role], tmp_path, CFV_DATABASE_URL=settings.database_url, CFV_AMQP_URL=wrong)
    assert code == 78
    assert_one_line(output, "RabbitMQ refused the user of CFV_AMQP_URL")
    assert "not-the-password" not in output


def test_a_missing_virtual_host_is_one_line(settings: Settings, tmp_path: Path) -> None:
    missing = settings.amqp_url.rsplit("/", 1)[0] + f"/cfv_no_vhost_{uuid.uuid4().hex[:8]}"
    code, output = run_cfv(["worker"], tmp_path, CFV_DATABASE_URL=settings.database_url, CFV_AMQP_URL=missing)
    assert code == 78
    assert_one_line(output, "RabbitMQ refused the virtual host of CFV_AMQP_URL", "rabbitmqctl add_vhost")


def test_without_redis_the_gateway_serves_and_says_so_once(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CFV_")}
    environment.update(CFV_DATABASE_URL=settings.database_url, CFV_AMQP_URL=settings.amqp_url,
                       CFV_HTTP_PORT=str(port), CFV_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        gateway = subprocess.Popen([sys.executable, "-m", "cfv", "gateway"], env=environment,
                                   cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while "gateway listening" not in log.read_text():
                assert gateway.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        finally:
            gateway.terminate()
            gateway.wait(20)
    output = log.read_text()
    assert output.count("Redis does not answer: rate limits are not enforced until it does") == 1, output
    assert "Traceback" not in output
