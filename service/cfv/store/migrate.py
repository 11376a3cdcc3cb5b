"""Schema migrations, applied with yoyo from ``cfv/migrations``; creating the database if missing."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg
from yoyo import get_backend, read_migrations

from cfv.faults import Unmet, database_name
from cfv.store.database import Connection
from cfv.store.queries import query

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def apply_migrations(dsn: str, on_applied: Callable[[str], None] | None = None) -> int:
    """Apply every pending migration, calling ``on_applied(id)`` after each; return how many were applied.

    yoyo's own log lines (one per step of each migration) are left out: a migration is the unit an operator
    cares about.
    """
    yoyo_log = logging.getLogger("yoyo")
    level = yoyo_log.level
    yoyo_log.setLevel(logging.WARNING)
    backend = get_backend(_yoyo_url(dsn))
    try:
        migrations = read_migrations(str(MIGRATIONS))
        with backend.lock():
            pending = backend.to_apply(migrations)
            for migration in pending:
                backend.apply_one(migration)
                if on_applied is not None:
                    on_applied(migration.id)
            backend.run_post_apply(pending)
        return len(pending)
    finally:
        backend.connection.close()
        yoyo_log.setLevel(level)


def known_migrations() -> list[str]:
    """The ids of the migrations this cfv has, in order (yoyo's ids: the file names without ``.sql``)."""
    return sorted(path.stem for path in MIGRATIONS.glob("*.sql") if not path.stem.endswith(".rollback"))


async def applied_migrations(connection: Connection) -> set[str]:
    """The ids of the migrations applied to the database (none if yoyo never ran there)."""
    if not await connection.fetchval(query("migrations_table_exists")):
        return set()
    return {row["migration_id"] for row in await connection.fetch(query("applied_migrations"))}


async def require_schema(connection: Connection, dsn: str) -> None:
    """Raise :class:`~cfv.faults.Unmet` unless every migration this cfv has was applied to the database (one
    that has more, from a newer cfv, will do: migrations only add)."""
    known = known_migrations()
    missing = [migration for migration in known if migration not in await applied_migrations(connection)]
    if len(missing) == len(known):
        raise Unmet(f"the database {database_name(dsn)!r} has no cfv schema: create it with `cfv migrate`")
    if missing:
        raise Unmet(f"the database {database_name(dsn)!r} lacks migration(s) {', '.join(missing)}: apply them "
                    "with `cfv migrate`")


async def ensure_database(dsn: str) -> bool:
    """Create the database named in ``dsn`` if it does not exist; return whether it was created."""
    name = unquote(urlsplit(dsn).path.lstrip("/"))
    if not name:
        raise ValueError("the database URL names no database")
    admin = await asyncpg.connect(dsn, database="postgres")
    try:
        if await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        await admin.execute(f'CREATE DATABASE "{_identifier(name)}"')
        return True
    finally:
        await admin.close()


def _identifier(name: str) -> str:
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"refusing to create a database named {name!r}")
    return name


def _yoyo_url(dsn: str) -> str:
    scheme, _, rest = dsn.partition("://")
    if scheme not in ("postgres", "postgresql"):
        raise ValueError(f"not a PostgreSQL URL: {scheme}://…")
    return f"postgresql+psycopg://{rest}"
