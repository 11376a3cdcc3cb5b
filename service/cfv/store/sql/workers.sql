-- name: live_workers
-- The workers holding a presence connection to this database (named $1 || their id): a worker that dies, or
-- loses the database, leaves the list as its connection closes.
SELECT DISTINCT substr(application_name, length($1) + 1) AS worker_id
FROM pg_stat_activity
WHERE datname = current_database() AND starts_with(application_name, $1::text)
ORDER BY 1;
