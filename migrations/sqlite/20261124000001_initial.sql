-- Scaff's initial schema (SQLite twin of migrations/postgres): workflow versions, runs,
-- their step history and events. JSON is stored as TEXT, timestamps as RFC 3339 TEXT,
-- UUIDs as their hyphenated TEXT form.

CREATE TABLE workflows (
    id           TEXT    NOT NULL,
    version      INTEGER NOT NULL CHECK (version >= 1),
    name         TEXT    NOT NULL,
    description  TEXT,
    definition   TEXT    NOT NULL,
    source_yaml  TEXT    NOT NULL,
    start_step   TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    created_by   TEXT,
    PRIMARY KEY (id, version)
);
CREATE INDEX workflows_name_idx ON workflows (lower(name));

CREATE TABLE runs (
    id                  TEXT    PRIMARY KEY,
    workflow_id         TEXT    NOT NULL,
    workflow_version    INTEGER NOT NULL,
    status              TEXT    NOT NULL
        CHECK (status IN ('queued', 'running', 'waiting', 'completed', 'failed', 'canceled')),
    current_step        TEXT,
    context             TEXT    NOT NULL DEFAULT '{}',
    waiting             TEXT,
    error               TEXT,
    idempotency_key     TEXT,
    request_fingerprint TEXT,
    version             INTEGER NOT NULL DEFAULT 0,
    step_seq            INTEGER NOT NULL DEFAULT 0,
    event_seq           INTEGER NOT NULL DEFAULT 0,
    lease_owner         TEXT,
    lease_expires_at    TEXT,
    created_by          TEXT,
    created_at          TEXT    NOT NULL,
    updated_at          TEXT    NOT NULL,
    finished_at         TEXT,
    FOREIGN KEY (workflow_id, workflow_version) REFERENCES workflows (id, version)
);
CREATE UNIQUE INDEX runs_idempotency_key_idx ON runs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_created_idx ON runs (created_at DESC, id DESC);
CREATE INDEX runs_workflow_idx ON runs (workflow_id, created_at DESC, id DESC);
CREATE INDEX runs_active_idx ON runs (status) WHERE status IN ('queued', 'running');

CREATE TABLE run_steps (
    run_id       TEXT    NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    step_id      TEXT    NOT NULL,
    step_type    TEXT    NOT NULL,
    attempt      INTEGER NOT NULL DEFAULT 1,
    status       TEXT    NOT NULL,
    input        TEXT,
    output       TEXT,
    error        TEXT,
    started_at   TEXT    NOT NULL,
    finished_at  TEXT,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT    REFERENCES runs (id) ON DELETE CASCADE,
    seq         INTEGER,
    kind        TEXT    NOT NULL,
    step_id     TEXT,
    actor       TEXT,
    data        TEXT    NOT NULL DEFAULT '{}',
    created_at  TEXT    NOT NULL,
    UNIQUE (run_id, seq)
);
CREATE INDEX events_kind_idx ON events (kind, id);

CREATE TABLE settings (
    key         TEXT    PRIMARY KEY,
    value       TEXT    NOT NULL,
    created_at  TEXT    NOT NULL
);
