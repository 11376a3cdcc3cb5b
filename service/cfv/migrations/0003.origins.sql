-- depends: 0002.work_items

-- Who made a change (an integration's name), kept with the version and the current value, and echoed in
-- the change event, so a two-way sync can skip its own changes.
ALTER TABLE value_versions ADD COLUMN origin text;
ALTER TABLE current_values ADD COLUMN origin text;
