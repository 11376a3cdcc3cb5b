"""The Postgres store: connections, migrations and named queries (kept in ``sql/*.sql``)."""
