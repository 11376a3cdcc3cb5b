-- depends: 0003.origins

-- Kantata's field options: unique values, and an external reference on fields. (required and default_value
-- are is_required and default_value, added for work-item properties.)
ALTER TABLE custom_fields ADD COLUMN unique_constraint boolean NOT NULL DEFAULT false;

-- A unique field's current values, one per (field, value): the worker checks under the workspace's lock, and
-- this constraint makes a duplicate impossible whatever happens. Deferred to commit, so one batch may move a
-- value from one subject to another. (Other fields leave unique_key null, and nulls never conflict.)
ALTER TABLE current_values ADD COLUMN unique_key jsonb,
    ADD CONSTRAINT current_values_unique UNIQUE (workspace_id, custom_field_id, unique_key)
        DEFERRABLE INITIALLY DEFERRED;
