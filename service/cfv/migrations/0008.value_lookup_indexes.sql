-- depends: 0007.event_log

-- The worker looks a batch's keys up one index probe at a time, with a generic plan made once per connection.
-- Made before the planner has statistics (a new table, or one autovacuum has not analysed yet), that plan may
-- take any index whose leading columns the lookup names, and two of them led with columns it names and stopped
-- short of the key: current_values_field (custom_field_id) and the unique-values constraint (workspace_id,
-- custom_field_id, unique_key). Taking either walked every value of the field (0.5-0.8 ms per key at 5,000
-- values). Now the field index holds the whole key, so whichever index the plan takes is an exact probe, and the
-- unique-values constraint leads with unique_key, which a lookup by key never names.
DROP INDEX current_values_field;
CREATE INDEX current_values_field ON current_values (custom_field_id, workspace_id, subject_type, subject_id);
ALTER TABLE current_values DROP CONSTRAINT current_values_unique,
    ADD CONSTRAINT current_values_unique UNIQUE (unique_key, custom_field_id, workspace_id)
        DEFERRABLE INITIALLY DEFERRED;
