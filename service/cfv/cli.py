"""The operator's command line: ``cfv migrate | run | gateway | worker | relay | workspace | key | topology``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Coroutine
from typing import Any

import click

from cfv import logs, processes
from cfv.broker.topology import definitions
from cfv.settings import Settings
from cfv.store.accounts import issue_key
from cfv.store.database import connect
from cfv.store.migrate import apply_migrations, ensure_database
from cfv.store.queries import query


@click.group()
@click.pass_context
def main(context: click.Context) -> None:
    """cfv: custom field values, through RabbitMQ into PostgreSQL, with change events."""
    settings = Settings()
    logs.configure(settings.log_level, json=settings.log_json)
    context.obj = settings


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(coroutine)


@main.command()
@click.pass_obj
def migrate(settings: Settings) -> None:
    """Create the database if needed and apply pending migrations."""
    created = asyncio.run(ensure_database(settings.database_url))
    applied = apply_migrations(settings.database_url)
    click.echo(f"database {'created' if created else 'present'}; {applied} migration(s) applied")


@main.command()
@click.pass_obj
def gateway(settings: Settings) -> None:
    """Run the HTTP gateway."""
    _run(processes.run_gateway(settings))


@main.command()
@click.pass_obj
def worker(settings: Settings) -> None:
    """Run a worker (run several to scale out; each shard queue has one active worker)."""
    _run(processes.run_worker(settings))


@main.command()
@click.pass_obj
def relay(settings: Settings) -> None:
    """Run the event relay (several may run; one is active)."""
    _run(processes.run_relay(settings))


@main.command()
@click.option("--workers", default=1, show_default=True, help="worker processes to start")
def run(workers: int) -> None:
    """Run gateway, workers and relay together, each in its own process; stop all if one stops."""
    roles = ["gateway", "relay"] + ["worker"] * workers
    children = [subprocess.Popen([sys.executable, "-m", "cfv", role]) for role in roles]  # noqa: S603

    def stop(*_: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        _, status = os.wait()
    except ChildProcessError:
        return
    stop()
    for child in children:
        child.wait()
    code = os.waitstatus_to_exitcode(status)
    sys.exit(code if code > 0 else 0)


@main.group()
def workspace() -> None:
    """Manage workspaces."""


@workspace.command("create")
@click.argument("slug")
@click.option("--name", help="a display name (default: the slug)")
@click.pass_obj
def workspace_create(settings: Settings, slug: str, name: str | None) -> None:
    """Create workspace SLUG (nothing happens if it exists)."""

    async def create() -> bool:
        db = await connect(settings.database_url)
        try:
            return await db.fetchval(query("create_workspace"), slug, name or slug) is not None
        finally:
            await db.close()

    click.echo(f"workspace {slug} {'created' if asyncio.run(create()) else 'already exists'}")


@main.group()
def key() -> None:
    """Manage API keys."""


@key.command("create")
@click.option("--workspace", "slug", required=True, help="the workspace the key belongs to")
@click.option("--name", help="a note to tell keys apart")
@click.pass_obj
def key_create(settings: Settings, slug: str, name: str | None) -> None:
    """Create an API key and print it; it is stored only as a hash and cannot be shown again."""

    async def create() -> str:
        db = await connect(settings.database_url)
        try:
            workspace_id = await db.fetchval(query("workspace_id"), slug)
            if workspace_id is None:
                raise click.ClickException(f"no workspace {slug}")
            return (await issue_key(db, workspace_id, name=name)).secret
        finally:
            await db.close()

    click.echo(asyncio.run(create()))


@main.command()
@click.pass_obj
def topology(settings: Settings) -> None:
    """Print the RabbitMQ topology as a definitions file (see deploy/rabbitmq-definitions.json)."""
    click.echo(json.dumps(definitions(shards=settings.command_shards, delivery_limit=settings.delivery_limit),
                          indent=2))
