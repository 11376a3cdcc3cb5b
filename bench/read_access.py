"""Read benchmark: what the read_access filter costs the value reads, for an administrator and a non-admin reader.

A scratch database holds one workspace with a Story field and N Story values (default 50,000) registered to
four projects (every fifth one left unregistered); the non-admin reader is a member of one project. Each read
is the named query the gateway runs, with the arguments it passes, on one connection (prepared, as asyncpg
does), timed over many runs after a warm-up.

Run: ``.venv/bin/python bench/read_access.py [--values N] [--runs R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

import asyncpg
from cfv.store.migrate import apply_migrations
from cfv.store.queries import query
from e2e import machine  # this folder is on the path when a benchmark runs as a script

ADMIN_DSN = os.environ.get("CFV_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_NAME = "cfv_bench_reads"
DSN = ADMIN_DSN.rsplit("/", 1)[0] + "/" + DB_NAME
PROJECTS = ("1001", "1002", "1003", "1004")
READER_PROJECT, READER_PERMISSION, READER_ROLE = "1001", "financial", "project_lead"
# list_values without any read filter: the floor the filtered listings are measured against.
UNFILTERED = """
SELECT c.value_id AS id, c.subject_type, c.subject_id, c.custom_field_id, f.name AS custom_field_name,
       f.value_type, c.value, c.seq AS sequence, c.setter, c.operation_id, c.external_id, c.external_source,
       c.origin, c.updated_at AS created_at, count(*) OVER () AS total
FROM current_values c
JOIN custom_fields f ON f.id = c.custom_field_id AND f.deleted_at IS NULL
WHERE c.workspace_id = $1 AND c.subject_type = $2 AND c.value_id IS NOT NULL
  AND ($3::text[] IS NULL OR c.subject_id = ANY($3::text[]))
  AND ($4::bigint[] IS NULL OR c.custom_field_id = ANY($4::bigint[]))
  AND ($5::timestamptz IS NULL OR c.updated_at > $5) AND ($6::timestamptz IS NULL OR c.updated_at < $6)
ORDER BY CASE WHEN $7 = 'updated_at' AND NOT $8 THEN c.updated_at END,
         CASE WHEN $7 = 'updated_at' AND $8 THEN c.updated_at END DESC,
         CASE WHEN $8 THEN c.value_id END DESC,
         c.value_id
LIMIT $9 OFFSET $10"""


async def prepare(db: asyncpg.Connection[Any], values: int) -> dict[str, Any]:
    """The workspace, its Story field, ``values`` Story values (each with one version), their placements and the
    two readers; returns their ids."""
    workspace_id = await db.fetchval(query("create_workspace"), "bench-reads", "bench reads")
    field_id = await db.fetchval(
        "INSERT INTO custom_fields (workspace_id, name, subject_type, value_type, write_access, read_access) "
        "VALUES ($1, 'Points', 'Story', 'number', 'project_admin', 'project_collaboration') RETURNING id",
        workspace_id)
    # Stories 1..N, one value each, updated a second apart; the history holds the same version.
    await db.execute(
        "INSERT INTO current_values (workspace_id, subject_type, subject_id, custom_field_id, seq, value_id, value, "
        "setter, operation_id, created_at, updated_at) "
        "SELECT $1, 'Story', g::text, $2, 1, nextval('value_ids'), to_jsonb(g), 'key:1', gen_random_uuid(), "
        "t, t FROM generate_series(1, $3::integer) AS g, "
        "LATERAL (SELECT timestamptz '2020-01-01' + g * interval '1 second' AS t) AS at",
        workspace_id, field_id, values)
    await db.execute(
        "INSERT INTO value_versions (id, workspace_id, subject_type, subject_id, custom_field_id, seq, value, setter, "
        "operation_id, created_at) "
        "SELECT value_id, workspace_id, subject_type, subject_id, custom_field_id, seq, value, setter, operation_id, "
        "updated_at FROM current_values WHERE workspace_id = $1", workspace_id)
    # Story g is in PROJECTS[g % 5] (g % 5 = 0 .. 3), unregistered when g % 5 = 4.
    await db.execute(
        "INSERT INTO subject_projects (workspace_id, subject_type, subject_id, project) "
        "SELECT $1, 'Story', g::text, ($2::text[])[g % 5 + 1] FROM generate_series(1, $3::integer) AS g "
        "WHERE g % 5 < 4", workspace_id, list(PROJECTS), values)
    admin = await db.fetchval(query("create_user"), workspace_id, "person", "admin", "admin@example.com",
                              "account_admin")
    reader = await db.fetchval(query("create_user"), workspace_id, "person", "reader", "reader@example.com",
                               READER_ROLE)
    await db.fetchrow(query("set_membership"), workspace_id, reader, READER_PROJECT, READER_PERMISSION)
    await db.fetchrow(query("set_membership"), workspace_id, reader, "9999", "project_admin")  # no stories there
    await db.execute("ANALYZE")
    readable = await db.fetchval("SELECT count(*) FROM subject_projects WHERE workspace_id = $1 AND project = $2",
                                 workspace_id, READER_PROJECT)
    # A story of the reader's project, its value and 19 more of the workspace (the reader may see a quarter).
    story = "5"  # 5 % 5 = 0: PROJECTS[0], the reader's
    ids = [r["value_id"] for r in await db.fetch(
        "SELECT value_id FROM current_values WHERE workspace_id = $1 AND subject_id = ANY($2::text[]) "
        "ORDER BY value_id", workspace_id, [str(n) for n in range(1, 21)])]
    return {"workspace": workspace_id, "field": field_id, "admin": (admin, "account_admin"),
            "reader": (reader, READER_ROLE), "readable": readable, "story": story, "ids": ids}


async def timed(db: asyncpg.Connection[Any], runs: int, name: str, *arguments: Any) -> tuple[list[float], Any]:
    """Milliseconds of each of ``runs`` executions of the named query (or of ``UNFILTERED``), and the rows of the
    last. After 6 unmeasured ones: by then the server's plan cache has settled on the plan it keeps using for
    the prepared statement (custom plans for the first 5 executions, then maybe the generic plan), as it has
    for the gateway's long-lived connections."""
    sql = UNFILTERED if name == "unfiltered" else query(name)
    rows: Any = None
    for _ in range(6):
        rows = await db.fetch(sql, *arguments)
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        rows = await db.fetch(sql, *arguments)
        times.append((time.perf_counter() - began) * 1000)
    return times, rows


def line(label: str, times: list[float], note: str) -> None:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    print(f"{label:<52} median {statistics.median(ordered):9.2f} ms   p95 {p95:9.2f} ms   min {ordered[0]:9.2f} ms"
          f"   {note}")


async def run(db: asyncpg.Connection[Any], setup: dict[str, Any], runs: int) -> None:
    ws, field, story = setup["workspace"], setup["field"], setup["story"]
    read_at = await db.fetchval("SELECT now()")
    listing = (ws, "Story", None, None, None, None, "updated_at", False, 20, 0)
    times, rows = await timed(db, runs, "unfiltered", *listing)
    line("list_values without a read filter (the floor)", times, f"total {rows[0]['total']}, {len(rows)} rows")
    for who in ("admin", "reader"):
        user, role = setup[who]
        print(f"-- {who} ({role})")
        # As GET /api/v1/custom_field_values?subject_type=Story passes them (order updated_at:asc, page 1 of 20).
        times, rows = await timed(db, runs, "list_values", *listing, user, role)
        line("list_values, page 1 of 20, updated_at:asc", times,
             f"total {rows[0]['total'] if rows else 0}, {len(rows)} rows")
        times, rows = await timed(db, runs, "list_values", ws, "Story", None, None, None, None, "id", True, 20,
                                  200, user, role)
        line("list_values, page 11 of 20, id:desc", times,
             f"total {rows[0]['total'] if rows else 0}, {len(rows)} rows")
        times, rows = await timed(db, runs, "list_values_as_of", *listing, read_at, user, role)
        line("list_values_as_of, page 1 of 20", times, f"total {rows[0]['total'] if rows else 0}, {len(rows)} rows")
        times, rows = await timed(db, runs * 5, "values_by_ids", ws, setup["ids"], user, role)
        line("values_by_ids, 20 ids", times, f"{len(rows)} rows")
        times, rows = await timed(db, runs * 5, "value_history", ws, "Story", story, field, user, role)
        line(f"value_history of Story {story}", times, f"{len(rows)} rows")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--values", type=int, default=50_000, help="Story values")
    parser.add_argument("--runs", type=int, default=20, help="timed executions of each listing")
    parser.add_argument("--keep", action="store_true", help=f"leave the database {DB_NAME} behind")
    args = parser.parse_args()
    print(machine())
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        print(f"PostgreSQL {await admin.fetchval('SHOW server_version')}")
        await admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {DB_NAME}")
        try:
            await asyncio.to_thread(apply_migrations, DSN)
            db = await asyncpg.connect(DSN)
            try:
                setup = await prepare(db, args.values)
                print(f"{args.values:,} Story values; the reader ({READER_ROLE}, {READER_PERMISSION} on project "
                      f"{READER_PROJECT}) may read {setup['readable']:,} of them")
                await run(db, setup, args.runs)
            finally:
                await db.close()
        finally:
            if not args.keep:
                await admin.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    finally:
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
