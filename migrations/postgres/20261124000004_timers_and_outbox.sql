-- Durable timers (wait deadlines, reminders, long back-offs) and the notification outbox.
-- Both are written in the checkpoint that makes them necessary.

ALTER TABLE runs ADD COLUMN wake_at TIMESTAMPTZ;   -- a running run parked on a retry timer

CREATE TABLE timers (
    id       UUID        PRIMARY KEY,
    run_id   UUID        NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    kind     TEXT        NOT NULL CHECK (kind IN ('timeout', 'reminder', 'retry')),
    step_id  TEXT        NOT NULL,
    version  BIGINT      NOT NULL,     -- the wait's (or run's) version it fences on
    nth      INTEGER     NOT NULL,
    fire_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX timers_fire_at_idx ON timers (fire_at, id);
CREATE INDEX timers_run_idx ON timers (run_id);

CREATE TABLE outbox (
    id               UUID        PRIMARY KEY,  -- UUIDv7: sorts by creation
    run_id           UUID        NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_id          TEXT        NOT NULL,
    kind             TEXT        NOT NULL,
    recipient        TEXT        NOT NULL,
    wait_version     BIGINT      NOT NULL,
    data             JSONB       NOT NULL,
    status           TEXT        NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         INTEGER     NOT NULL DEFAULT 0,
    last_error       TEXT,
    subject          TEXT,
    body             TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    sent_at          TIMESTAMPTZ
);
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX outbox_run_idx ON outbox (run_id, id);
