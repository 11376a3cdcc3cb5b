-- depends: 0008.value_lookup_indexes

-- Every write adds a version and an operation and replaces its key's current value. Three costs of that, gone:
--
-- * current_values indexed value_id, which changes with every write, so no update could be a HOT update (one
--   that writes no index entry): each rewrote all four indexes of the row. A value is found by its id through
--   value_versions instead, whose primary key is that id (values_by_ids). With room left on each page, an
--   update of a key's value touches no index at all.
-- * value_versions and operations checked foreign keys on every row (three key lookups per write, a fifth of the
--   batch's insert time). The worker writes them only for fields and workspaces it has just read under the
--   workspace's lock; fields are only ever soft-deleted and workspaces never, so the keys guarded nothing.
-- * A bulk write's outcome (tens of kB of JSON) was compressed with pglz; lz4 does it several times faster.
ALTER TABLE current_values DROP CONSTRAINT current_values_value_id_key;
ALTER TABLE current_values SET (fillfactor = 80);
ALTER TABLE value_versions DROP CONSTRAINT value_versions_workspace_id_fkey,
    DROP CONSTRAINT value_versions_custom_field_id_fkey;
ALTER TABLE operations DROP CONSTRAINT operations_workspace_id_fkey;
ALTER TABLE operations ALTER COLUMN outcome SET COMPRESSION lz4;
