-- depends: 0011.credentials_changed

-- A redelivered command message is a suspect: the worker applies it alone, and once its transaction holds the
-- workspace's lock it records here, in a transaction of its own, that it is applying it. The apply deletes the
-- row in its own transaction, so a row outlives the attempt only if the worker died while applying that message
-- alone: each such death counts against the message (never a death while waiting for a lock or a dependency,
-- nor one while the message was in a batch), and after CFV_CRASH_LIMIT of them the message is dead-lettered.
CREATE TABLE message_attempts (
    digest      bytea PRIMARY KEY,              -- SHA-256 of the message body
    unfinished  integer NOT NULL CHECK (unfinished >= 0),  -- attempts begun that never ended
    updated_at  timestamptz NOT NULL DEFAULT now()
);
