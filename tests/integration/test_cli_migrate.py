"""``cfv migrate`` prints one line per migration applied and a summary, not yoyo's line per step (issue 13,
bug 4)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from cfv.settings import Settings
from cfv.store.migrate import known_migrations


def _migrate(dsn: str, cwd: Path) -> list[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CFV_")}
    environment.update(CFV_DATABASE_URL=dsn, CFV_LOG_LEVEL="INFO")
    done = subprocess.run([sys.executable, "-m", "cfv", "migrate"], env=environment, cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=True)
    return (done.stdout + done.stderr).splitlines()


async def test_migrate_prints_a_line_per_migration_and_a_summary(settings: Settings, db: asyncpg.Connection,
                                                                 tmp_path: Path) -> None:
    name = f"cfv_migrate_{uuid.uuid4().hex[:8]}"
    dsn = urlunsplit(urlsplit(settings.database_url)._replace(path=f"/{name}"))
    try:
        migrations = known_migrations()
        assert _migrate(dsn, tmp_path) == [f"applied {m}" for m in migrations] + [
            f"database created; {len(migrations)} migration(s) applied"]
        assert _migrate(dsn, tmp_path) == ["database present; 0 migration(s) applied"]
    finally:
        await db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
