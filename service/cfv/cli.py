"""The operator's command line: ``cfv migrate | run | gateway | worker | relay | webhooks | workspace | key | user |
import | export | topology | events | dlq | secrets``."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any, BinaryIO, NoReturn, TypeVar
from urllib.parse import unquote, urlsplit

import click
import uvloop

from cfv import dead_letters, event_log, logs, processes, transfer
from cfv.broker.confirmed import Unroutable
from cfv.broker.connection import amqp_urls
from cfv.broker.permissions import integration_permissions
from cfv.broker.topology import definitions
from cfv.domain.access import ACCOUNT_ROLES, PROJECT_PERMISSIONS
from cfv.domain.fields import SubjectType
from cfv.domain.webhooks import SecretBox, SecretUnavailable, new_secret_key
from cfv.faults import EX_CONFIG, Unmet
from cfv.settings import Settings
from cfv.store import accounts
from cfv.store import transfer as stored
from cfv.store import webhooks as stored_webhooks
from cfv.store.accounts import AccountError
from cfv.store.database import Connection, connect
from cfv.store.migrate import apply_migrations, ensure_database
from cfv.supervisor import Supervisor

T = TypeVar("T")


@click.group()
@click.version_option(package_name="cfv", prog_name="cfv", message="%(prog)s %(version)s")
@click.pass_context
def main(context: click.Context) -> None:
    """cfv: custom field values, through RabbitMQ into PostgreSQL, with change events."""
    settings = Settings()
    logs.configure(settings.log_level, json=settings.log_json)
    context.obj = settings


def _run(process: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    """Run a long-running process on uvloop (its transports and callbacks cost a fraction of asyncio's own) until
    SIGTERM or SIGINT, which set the event it was given: it drains and returns, within CFV_SHUTDOWN_TIMEOUT. A
    second signal stops it at once."""
    # The cyclic collector, left as it is, walks every object of the process (tens of thousands: modules,
    # schemas, routes) at each full collection, and with requests allocating so much it runs often: pauses that
    # were a third of the open-loop benchmark's p99. What exists now lives for good (frozen: never walked
    # again), and young objects are collected less often (they are nearly all freed by reference counting).
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    try:
        with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
            uvloop.run(_until_signalled(process))
    except Unmet as unmet:
        _unmet(unmet)


async def _until_signalled(process: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    stop = asyncio.Event()
    main_task = asyncio.current_task()
    assert main_task is not None

    def signalled() -> None:
        if stop.is_set():
            main_task.cancel()  # a second signal: no more waiting
        stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, signalled)
    await process(stop)


def _unmet(unmet: Unmet) -> NoReturn:
    """Exit with the one line an unmet precondition is (``cfv run`` stops rather than restart on its status)."""
    click.echo(f"cfv: {unmet}", err=True)
    sys.exit(EX_CONFIG)


@main.command()
@click.pass_obj
def migrate(settings: Settings) -> None:
    """Create the database if needed and apply pending migrations."""
    created = asyncio.run(ensure_database(settings.database_url))
    applied = apply_migrations(settings.database_url, lambda migration: click.echo(f"applied {migration}"))
    click.echo(f"database {'created' if created else 'present'}; {applied} migration(s) applied")


@main.command()
@click.pass_obj
def gateway(settings: Settings) -> None:
    """Run the HTTP gateway."""
    _run(lambda stop: processes.run_gateway(settings, stop=stop))


@main.command()
@click.pass_obj
def worker(settings: Settings) -> None:
    """Run a worker (run several to scale out; each shard queue has one active worker)."""
    _run(lambda stop: processes.run_worker(settings, stop=stop))


@main.command()
@click.pass_obj
def relay(settings: Settings) -> None:
    """Run the event relay (several may run; one is active)."""
    _run(lambda stop: processes.run_relay(settings, stop=stop))


@main.command()
@click.pass_obj
def webhooks(settings: Settings) -> None:
    """Deliver change events to the webhooks (several may run; each webhook is delivered by one at a time)."""
    _run(lambda stop: processes.run_webhooks(settings, stop=stop))


@main.command()
@click.option("--workers", default=1, show_default=True, help="worker processes to start")
@click.pass_obj
def run(settings: Settings, workers: int) -> None:
    """Run gateway, relay, workers and webhook delivery together, each in its own process, restarting any that
    exits."""
    try:  # once here, rather than once per process
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(processes.check_dependencies(settings))
    except Unmet as unmet:
        _unmet(unmet)
    names = ["gateway", "relay"] + [f"worker-{n}" for n in range(1, workers + 1)] + ["webhooks"]
    # Each process its own monitoring port: the gateway the configured one, the relay the next, and so on (webhook
    # delivery the last).
    ports = {name: str(settings.metrics_port + n if settings.metrics_port else 0) for n, name in enumerate(names)}
    supervisor = Supervisor([(name, [sys.executable, "-m", "cfv", name.split("-")[0]]) for name in names],
                            fatal_exit_codes={EX_CONFIG},
                            environments={name: {"CFV_METRICS_PORT": port} for name, port in ports.items()})
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    sys.exit(supervisor.run())


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
            return await accounts.create_workspace(db, slug=slug, name=name or slug) is not None
        finally:
            await db.close()

    click.echo(f"workspace {slug} {'created' if asyncio.run(create()) else 'already exists'}")


_ROLE = click.Choice(ACCOUNT_ROLES)
_PERMISSION = click.Choice(PROJECT_PERMISSIONS)
_WORKSPACE = click.option("--workspace", "slug", required=True, metavar="SLUG", help="the workspace (its slug)")


async def _in_workspace(settings: Settings, slug: str, work: Callable[[Connection, int], Awaitable[T]]) -> T:
    """Run ``work`` on a connection with the id of workspace ``slug``; account errors become click errors."""
    db = await connect(settings.database_url)
    try:
        workspace_id = await accounts.workspace_id(db, slug=slug)
        if workspace_id is None:
            raise click.ClickException(f"no workspace {slug}")
        try:
            return await work(db, workspace_id)
        except AccountError as error:
            raise click.ClickException(error.message) from None
    finally:
        await db.close()


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


async def _user(db: Connection, workspace_id: int, ref: str) -> accounts.User:
    user = await accounts.find_user(db, workspace_id, ref)
    if user is None:
        raise click.ClickException(f"no user {ref} in this workspace (name one by id, email or service name)")
    return user


@main.group()
def key() -> None:
    """Manage API keys.

    A key belongs to a user of a workspace (a person or a service account) and acts with that user's account
    role and project memberships. The secret is printed once, when the key is made; cfv keeps only its hash.
    """


@key.command("create")
@_WORKSPACE
@click.option("--user", "user_ref", metavar="ID_OR_EMAIL",
              help="the user the key belongs to, by id or email; with --role, an email nobody has yet makes "
                   "that person")
@click.option("--service", metavar="NAME",
              help="the service account the key belongs to; with --role, one that does not exist yet is made")
@click.option("--role", type=_ROLE, metavar="ROLE", help="the account role of a user made by --user or "
              "--service (lowest first: " + ", ".join(ACCOUNT_ROLES) + ")")
@click.option("--user-name", metavar="NAME", help="the name of a person made by --user --role (default: the "
              "email address)")
@click.option("--expires", metavar="WHEN", help="when the key expires: a duration from now (30d, 12h, 90m, "
              "2w) or an ISO date or date and time (UTC unless it has an offset); default: never")
@click.option("--name", help="a note to tell keys apart")
@click.pass_obj
def key_create(settings: Settings, slug: str, user_ref: str | None, service: str | None, role: str | None,
               user_name: str | None, expires: str | None, name: str | None) -> None:
    """Create an API key and print it (only the key, on standard output; details go to standard error).

    It is stored only as a hash and cannot be shown again. Without --user or --service, the key belongs to the
    workspace's 'owner' service account, an account administrator.
    """
    if user_ref is not None and service is not None:
        raise click.UsageError("give --user or --service, not both")
    if role is not None and user_ref is None and service is None:
        raise click.UsageError("--role makes a user: give --user EMAIL or --service NAME too")
    if user_name is not None and (user_ref is None or role is None):
        raise click.UsageError("--user-name names a person made by --user EMAIL --role ROLE")
    try:
        expires_at = None if expires is None else accounts.parse_expiry(expires, field="--expires")
    except AccountError as error:
        raise click.BadParameter(error.message, param_hint="--expires") from None

    async def create(db: Connection, workspace_id: int) -> tuple[accounts.IssuedKey, str]:
        async with accounts.locked(db, workspace_id):
            user_id, made = None, ""
            if user_ref is not None or service is not None:
                ref = user_ref if user_ref is not None else service
                assert ref is not None
                user = await (accounts.find_user(db, workspace_id, ref) if user_ref is not None else
                              accounts.find_service(db, workspace_id, ref))
                if user is None:
                    if role is None:
                        raise click.ClickException(f"no user {ref} in workspace {slug}; give --role to make "
                                                   f"{'it' if service else 'that person'}")
                    if user_ref is not None and "@" not in user_ref:
                        raise click.ClickException(f"no user {user_ref}; to make a person, name them by email")
                    user = await accounts.create_user(
                        db, workspace_id, account_role=role, kind="service" if service else "person",
                        name=service or user_name or ref, email=user_ref)
                    made = f"made {user.kind} {user.id} ({user.account_role}); "
                elif role is not None and role != user.account_role:
                    raise click.ClickException(
                        f"user {user.id} exists with role {user.account_role}; --role only applies to a user it "
                        "makes (change roles with the admin API)")
                user_id = user.id
            issued = await accounts.issue_key(db, workspace_id, user_id=user_id, name=name, expires_at=expires_at)
            return issued, made

    issued, made = asyncio.run(_in_workspace(settings, slug, create))
    click.echo(issued.secret)
    click.echo(f"{made}key {issued.id} (prefix {issued.prefix}) of user {issued.user_id}, expires "
               f"{_when(issued.expires_at) if issued.expires_at else 'never'}; it cannot be shown again", err=True)


@key.command("list")
@_WORKSPACE
@click.option("--user", "user_ref", metavar="ID_OR_EMAIL", help="only this user's keys")
@click.pass_obj
def key_list(settings: Settings, slug: str, user_ref: str | None) -> None:
    """List the workspace's keys (revoked and expired ones too); secrets are never shown, nor stored."""

    async def fetch(db: Connection, workspace_id: int) -> tuple[list[accounts.KeyInfo], dict[int, accounts.User]]:
        user_id = None if user_ref is None else (await _user(db, workspace_id, user_ref)).id
        users = {u.id: u for u in await accounts.list_users(db, workspace_id)}
        return await accounts.list_keys(db, workspace_id, user_id=user_id), users

    found, users = asyncio.run(_in_workspace(settings, slug, fetch))
    now = datetime.now(UTC)
    rows = []
    for k in found:
        user = users.get(k.user_id)
        status = k.status(now)
        if status == "active" and user is not None and not user.active:
            status = "user deactivated"
        rows.append((str(k.id), k.prefix, f"{k.user_id} {user.name if user else ''}".strip(), k.name or "",
                     _when(k.created_at), _when(k.expires_at), status))
    _table(("ID", "PREFIX", "USER", "NAME", "CREATED", "EXPIRES", "STATUS"), rows)


@key.command("revoke")
@_WORKSPACE
@click.argument("key_id", type=click.IntRange(min=1))
@click.pass_obj
def key_revoke(settings: Settings, slug: str, key_id: int) -> None:
    """Revoke key KEY_ID (see `cfv key list`) for good.

    Runs under the workspace's lock: it waits for the writes being applied, and every write applied after it
    refuses the key. Gateways may still accept the key for reads for up to five seconds.
    """

    async def revoke(db: Connection, workspace_id: int) -> accounts.KeyInfo | None:  # the key before
        async with accounts.locked(db, workspace_id):
            before = await accounts.get_key(db, workspace_id, key_id)
            if before is not None and before.revoked_at is None:
                await accounts.revoke_key(db, workspace_id, key_id)
            return before

    before = asyncio.run(_in_workspace(settings, slug, revoke))
    if before is None:
        raise click.ClickException(f"no key {key_id} in workspace {slug}")
    if before.revoked_at is not None:
        click.echo(f"key {key_id} was already revoked at {_when(before.revoked_at)}")
    else:
        click.echo(f"key {key_id} revoked")


@main.group(help="Manage users: people and service accounts, their account roles and project memberships.\n\n"
            "Account roles, lowest first: " + ", ".join(ACCOUNT_ROLES) + ". Project permissions, lowest first: "
            + ", ".join(PROJECT_PERMISSIONS) + ".")
def user() -> None:
    pass


@user.command("create")
@_WORKSPACE
@click.option("--name", required=True, help="the person's name, or the service account's (unique)")
@click.option("--email", help="the person's email address (required for a person)")
@click.option("--service", is_flag=True, help="make a service account rather than a person")
@click.option("--role", required=True, type=_ROLE, metavar="ROLE", help="the account role (lowest first: "
              + ", ".join(ACCOUNT_ROLES) + ")")
@click.pass_obj
def user_create(settings: Settings, slug: str, name: str, email: str | None, service: bool, role: str) -> None:
    """Create a user (a person, or with --service a service account) and print its id."""

    async def create(db: Connection, workspace_id: int) -> accounts.User:
        async with accounts.locked(db, workspace_id):
            return await accounts.create_user(db, workspace_id, name=name, email=email, account_role=role,
                                              kind="service" if service else "person")

    made = asyncio.run(_in_workspace(settings, slug, create))
    click.echo(f"{made.kind} {made.id} ({made.name}, {made.account_role}) created")


@user.command("list")
@_WORKSPACE
@click.pass_obj
def user_list(settings: Settings, slug: str) -> None:
    """List the workspace's users, with their roles and how many keys they have."""

    async def fetch(db: Connection, workspace_id: int) -> tuple[list[accounts.User], list[accounts.KeyInfo]]:
        return await accounts.list_users(db, workspace_id), await accounts.list_keys(db, workspace_id)

    users, all_keys = asyncio.run(_in_workspace(settings, slug, fetch))
    now = datetime.now(UTC)
    live: dict[int, int] = {}
    for k in all_keys:
        if k.status(now) == "active":
            live[k.user_id] = live.get(k.user_id, 0) + 1
    _table(("ID", "KIND", "NAME", "EMAIL", "ROLE", "STATUS", "KEYS"),
           [(str(u.id), u.kind, u.name, u.email or "", u.account_role, "active" if u.active else
             f"deactivated {_when(u.deactivated_at)}", str(live.get(u.id, 0))) for u in users])


@user.command("grant")
@_WORKSPACE
@click.argument("user_ref", metavar="USER")
@click.argument("project")
@click.argument("permission", type=_PERMISSION, metavar="PERMISSION")
@click.pass_obj
def user_grant(settings: Settings, slug: str, user_ref: str, project: str, permission: str) -> None:
    """Give USER (an id, an email address or a service account's name) PERMISSION on PROJECT (a Kantata
    Workspace id or a Plane project UUID), or change the permission they have there.

    PERMISSION, lowest first: project_collaboration, time_logging, financial, project_admin.
    """

    async def grant(db: Connection, workspace_id: int) -> tuple[accounts.Membership, bool, int]:
        async with accounts.locked(db, workspace_id):
            found = await _user(db, workspace_id, user_ref)
            membership, created = await accounts.set_membership(db, workspace_id, found.id, project, permission)
            return membership, created, found.id

    membership, created, user_id = asyncio.run(_in_workspace(settings, slug, grant))
    click.echo(f"user {user_id} {'now has' if created else 'changed to'} {membership.permission} on project "
               f"{membership.project}")


@main.group("import")
def import_group() -> None:
    """Bring data into a workspace."""


@import_group.command("values")
@click.argument("file", type=click.File("rb"))
@_WORKSPACE
@click.option("--skip-invalid", is_flag=True, help="send the valid rows even if some are invalid (each is reported)")
@click.option("--dry-run", is_flag=True, help="check the file against the workspace; send nothing")
@click.option("--url", metavar="URL", help="the gateway (default: http://CFV_HTTP_HOST:CFV_HTTP_PORT)")
@click.option("--api-key", envvar="CFV_API_KEY", show_envvar=True, metavar="KEY",
              help="an API key of the workspace, whose writes the values become (prefer the environment variable: "
                   "a command line is visible to other users of the machine)")
@click.option("--no-progress", is_flag=True, help="no progress bar (there is none when standard error is not a "
              "terminal)")
@click.pass_obj
def import_values(settings: Settings, file: BinaryIO, slug: str, skip_invalid: bool, dry_run: bool, url: str | None,
                  api_key: str | None, no_progress: bool) -> None:
    """Write the values of FILE (CSV; - for standard input) to workspace SLUG.

    Columns (a header row first): subject_type,subject_id,custom_field_id,value, or custom_field (the field's
    name) instead of custom_field_id. A value is JSON when it parses as JSON (12, [998,"USD"], true, "007"),
    else its text (hello, 2024-01-31). Every row is checked first, as the worker would; if one is invalid,
    nothing is sent. Rows go to the gateway 100 at a time, each batch under an idempotency key derived from
    its content, so running the same file again resumes an interrupted import and applies nothing twice.
    """
    started = time.monotonic()
    if api_key is None and not dry_run:
        raise click.UsageError("give the workspace's API key: set CFV_API_KEY (or --api-key)")
    try:
        table = transfer.read_csv(file.read().decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        raise click.ClickException(f"{file.name} is not UTF-8 text (byte {error.start})") from None
    except transfer.FileError as error:
        raise click.ClickException(f"{file.name}: {error}") from None

    async def check(db: Connection, workspace_id: int) -> transfer.Checked:
        if api_key is not None and not dry_run:
            owner = await stored.key_workspace(db, api_key)
            if owner != slug:
                raise click.ClickException(f"the API key is not a key of workspace {slug}"
                                           + (f" (it is one of {owner})" if owner else ""))
        return await transfer.check_file(db, workspace_id, table)

    checked = asyncio.run(_in_workspace(settings, slug, check))
    for problem in checked.problems:
        click.echo(str(problem), err=True)
    skipped = len(checked.problems)
    if skipped and not skip_invalid:
        raise click.ClickException(
            f"{skipped} of {checked.rows} rows are invalid; nothing was sent (correct them, or give --skip-invalid "
            f"to send the {len(checked.items)} valid ones)")
    if dry_run:
        click.echo(f"{len(checked.items)} rows valid, {skipped} invalid; nothing sent (--dry-run)")
        return
    assert api_key is not None
    sender = transfer.Sender(url or f"http://{settings.http_host}:{settings.http_port}", api_key,
                             field_column=checked.field_column, on_retry=lambda note: click.echo(note, err=True))
    batches = transfer.plan_batches(checked.items, max_bytes=settings.max_body_bytes)
    done = 0
    with transfer.progress(len(checked.items), enabled=transfer.progress_wanted(no_progress, sys.stderr),
                           stream=sys.stderr) as advance:

        def sent_rows(rows: int) -> None:
            nonlocal done
            done += rows
            advance(rows)

        try:
            sent = asyncio.run(sender.send(batches, sent_rows))
        except transfer.Refused as refused:
            raise click.ClickException(str(refused)) from None
        except KeyboardInterrupt:
            click.echo(f"interrupted after {done} rows; run the same import again to resume", err=True)
            sys.exit(130)
    for note in sent.pending:
        click.echo(note, err=True)
    click.echo(transfer.summary(sent, skipped, time.monotonic() - started))


@main.group("export")
def export_group() -> None:
    """Take data out of a workspace."""


@export_group.command("values")
@_WORKSPACE
@click.option("--subject-type", type=click.Choice([t.value for t in SubjectType]), help="only values of subjects "
              "of this type")
@click.option("--field-names", is_flag=True, help="name fields by name (column custom_field) rather than id, to "
              "import the file into another workspace with fields of the same names")
@click.pass_obj
def export_values(settings: Settings, slug: str, subject_type: str | None, field_names: bool) -> None:
    """Write the workspace's current values to standard output as CSV, in the columns `cfv import values` reads.

    Values are read straight from PostgreSQL, in one snapshot, through a cursor: memory stays the same however
    many there are. Deleted values and the values of deleted fields are left out.
    """

    async def export(db: Connection, workspace_id: int) -> int:
        return await transfer.export_csv(db, workspace_id, sys.stdout, subject_type=subject_type,
                                         by_name=field_names)

    try:
        count = asyncio.run(_in_workspace(settings, slug, export))
        sys.stdout.flush()
    except BrokenPipeError:  # the reader left (`| head`): stop quietly, and let the exit's flush find nothing
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    click.echo(f"exported {count} values", err=True)


@main.command("integration-permissions")
@click.option("--workspace", "slug", required=True, help="the workspace whose events the integration may read")
@click.option("--user", required=True, help="the integration's RabbitMQ user (its queues are named USER.*)")
@click.pass_obj
def integration_permissions_command(settings: Settings, slug: str, user: str) -> None:
    """Print the rabbitmqctl commands that give an integration's RabbitMQ user its permissions: publish
    commands, declare and consume its own queues (USER.*), and bind them to its workspace's events only."""
    vhost = unquote(urlsplit(amqp_urls(settings.amqp_url)[0]).path.lstrip("/")) or "/"
    for command in integration_permissions(user, slug).rabbitmqctl(user, vhost):
        click.echo(shlex.join(command))


@main.command()
@click.pass_obj
def topology(settings: Settings) -> None:
    """Print the RabbitMQ topology as a definitions file (see deploy/rabbitmq-definitions.json)."""
    click.echo(json.dumps(definitions(shards=settings.command_shards, delivery_limit=settings.delivery_limit),
                          indent=2))


@main.group("secrets")
def secrets_group() -> None:
    """Keys that seal webhooks' signing secrets in the database (CFV_SECRET_KEYS).

    To rotate: put a new key first in CFV_SECRET_KEYS, keeping the old one after it, and restart the gateways
    and the delivery processes; run `cfv secrets reseal`; then drop the old key and restart them again."""


@secrets_group.command("new-key")
def secrets_new_key() -> None:
    """Print a new key for CFV_SECRET_KEYS."""
    click.echo(new_secret_key())


@secrets_group.command("reseal")
@click.pass_obj
def secrets_reseal(settings: Settings) -> None:
    """Seal every webhook's signing secret anew with the first key of CFV_SECRET_KEYS (and seal any stored before
    sealing began), in one transaction: nothing changes unless every secret can be opened."""
    box = SecretBox.from_setting(settings.secret_keys.get_secret_value())
    if not box.can_seal:
        raise click.ClickException("CFV_SECRET_KEYS is empty: make a key with `cfv secrets new-key`")

    async def reseal() -> int:
        db = await connect(settings.database_url)
        try:
            return await stored_webhooks.reseal_secrets(db, box.reseal)
        finally:
            await db.close()

    try:
        count = asyncio.run(reseal())
    except SecretUnavailable as error:
        raise click.ClickException(f"nothing was resealed: {error}") from None
    click.echo(f"{count} webhook secret(s) sealed with the first key of CFV_SECRET_KEYS")


@main.group("events")
def events_group() -> None:
    """Read a workspace's event log (every event, as stored), or replay it into a queue."""


def _types(raw: str | None) -> list[str] | None:
    return [part.strip() for part in raw.split(",") if part.strip()] if raw else None


@events_group.command("tail")
@click.option("--workspace", "slug", required=True)
@click.option("--after", type=click.IntRange(min=0), help="start after this position (default: the newest, so only "
              "events to come)")
@click.option("--type", "types", help="comma-separated event types")
@click.option("--follow/--no-follow", default=True, show_default=True, help="keep following the log")
@click.pass_obj
def events_tail(settings: Settings, slug: str, after: int | None, types: str | None, follow: bool) -> None:
    """Print events as JSON lines, in position order, and keep following."""

    async def print_events(db: Connection, workspace_id: int) -> None:
        await event_log.tail(db, workspace_id, after=after, types=_types(types), follow=follow,
                             emit=click.echo, started=lambda position: click.echo(
                                 f"events of {slug} after position {position}" + (", following" if follow else ""),
                                 err=True))

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_in_workspace(settings, slug, print_events))


@events_group.command("replay")
@click.option("--workspace", "slug", required=True)
@click.option("--after", type=click.IntRange(min=0), required=True, help="replay the events after this position")
@click.option("--queue", required=True, help="the queue to publish them into (it must exist)")
@click.option("--type", "types", help="comma-separated event types")
@click.pass_obj
def events_replay(settings: Settings, slug: str, after: int, queue: str, types: str | None) -> None:
    """Republish the events after a position, in order and unchanged (same ids), into a consumer's queue."""

    async def republish(db: Connection, workspace_id: int) -> tuple[int, int | None]:
        try:
            return await event_log.replay(settings, db, workspace_id, after=after, queue=queue, types=_types(types))
        except Unroutable:
            raise click.ClickException(f"no queue {queue!r} on the broker: declare it (and bind nothing: the "
                                       "replay publishes into it directly), then replay") from None

    count, last = asyncio.run(_in_workspace(settings, slug, republish))
    click.echo(f"replayed {count} event(s) into {queue}" + (f", up to position {last}" if last else ""))


@main.group("dlq")
def dlq_group() -> None:
    """See what waits in the commands' dead-letter queue and why; replay or purge it."""


def _chosen(letters: Sequence[dead_letters.DeadLetter], wanted: Sequence[str]) -> list[dead_letters.DeadLetter]:
    """The letters named by their number in the queue or their message id."""
    chosen = [letter for letter in letters if str(letter.number) in wanted or letter.message_id in wanted]
    unknown = set(wanted) - {str(letter.number) for letter in chosen} - {letter.message_id for letter in chosen}
    if unknown:
        raise click.ClickException(f"not in the dead-letter queue: {', '.join(sorted(unknown))}")
    return chosen


@dlq_group.command("list")
@click.option("--limit", default=1000, show_default=True, help="most messages to read")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per message")
@click.pass_obj
def dlq_list(settings: Settings, limit: int, as_json: bool) -> None:
    """List the dead letters: number, message id, workspace (routing key), why, when."""

    async def read() -> list[dict[str, Any]]:
        async with dead_letters.taken(settings, limit) as (letters, _):
            return [letter.summary() for letter in letters]

    found = asyncio.run(read())
    if as_json:
        for letter in found:
            click.echo(json.dumps(letter))
        return
    _table(("#", "MESSAGE ID", "ROUTING KEY", "REASON", "DEATHS", "DEAD AT", "OPERATIONS", "WHY"),
           [(str(d["number"]), d["message_id"] or "-", d["routing_key"], d["reason"], str(d["deaths"]),
             d["dead_at"] or "-", str(len(d["operations"])), "; ".join(d["why"]) or "-") for d in found])
    click.echo(f"{len(found)} message(s)")


@dlq_group.command("show")
@click.argument("which")
@click.pass_obj
def dlq_show(settings: Settings, which: str) -> None:
    """Show one dead letter (by its number or message id): why, its headers and its body."""

    async def read() -> dict[str, Any]:
        async with dead_letters.taken(settings, 100_000) as (letters, _):
            [letter] = _chosen(letters, [which])
            assert letter.message is not None
            body: Any
            try:
                body = json.loads(letter.message.body)
            except ValueError:
                body = letter.message.body.decode(errors="replace")
            return {**letter.summary(), "headers": {k: v if isinstance(v, str | int | float | bool | None)
                                                    else str(v) for k, v in (letter.message.headers or {}).items()},
                    "body": body}

    click.echo(json.dumps(asyncio.run(read()), indent=2, default=str))


@dlq_group.command("replay")
@click.argument("which", nargs=-1)
@click.option("--all", "every", is_flag=True, help="replay every dead letter")
@click.pass_obj
def dlq_replay(settings: Settings, which: tuple[str, ...], every: bool) -> None:
    """Republish dead letters (by number or message id, or --all) to the command queues, so that they are applied:
    their failed operations become pending again."""
    if bool(which) == every:
        raise click.UsageError("name the messages to replay, or give --all")

    async def republish() -> int:
        async with dead_letters.taken(settings, 100_000) as (letters, _):
            return await dead_letters.replay(settings, letters if every else _chosen(letters, which))

    click.echo(f"replayed {asyncio.run(republish())} message(s)")


@dlq_group.command("purge")
@click.option("--yes", is_flag=True, help="confirm: the messages are lost for good")
@click.pass_obj
def dlq_purge(settings: Settings, yes: bool) -> None:
    """Delete every dead letter."""
    if not yes:
        raise click.UsageError("purging loses the messages for good: add --yes")

    async def purge() -> int:
        async with dead_letters.taken(settings, 0) as (_, queue):
            purged = await queue.purge()
            return int(purged.message_count or 0)

    click.echo(f"purged {asyncio.run(purge())} message(s)")
