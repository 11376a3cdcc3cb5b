-- name: migrations_table_exists
SELECT to_regclass('_yoyo_migration') IS NOT NULL;

-- name: applied_migrations
SELECT migration_id FROM _yoyo_migration;
