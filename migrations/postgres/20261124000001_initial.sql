-- Scaff's initial schema: workflow versions, runs, their step history and events.
-- Later capabilities (templates, timers, outbox, secrets, keys) add migrations of their own.

CREATE TABLE workflows (
    id           TEXT        NOT NULL,
    version      BIGINT      NOT NULL CHECK (version >= 1),
    name         TEXT        NOT NULL,
    description  TEXT,
    definition   JSONB       NOT NULL,            -- canonical definition
    source_yaml  TEXT        NOT NULL,            -- the text as posted
    start_step   TEXT        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_by   TEXT,
    PRIMARY KEY (id, version)
);
CREATE INDEX workflows_name_idx ON workflows (lower(name));

CREATE TABLE runs (
    id                  UUID        PRIMARY KEY,
    workflow_id         TEXT        NOT NULL,
    workflow_version    BIGINT      NOT NULL,
    status              TEXT        NOT NULL
        CHECK (status IN ('queued', 'running', 'waiting', 'completed', 'failed', 'canceled')),
    current_step        TEXT,
    context             JSONB       NOT NULL DEFAULT '{}'::jsonb,
    waiting             JSONB,                    -- what input the run waits for, when waiting
    error               JSONB,                    -- {code, message, step_id} when failed
    idempotency_key     TEXT,
    request_fingerprint TEXT,                     -- hash of the start request, for 409 on reuse
    version             BIGINT      NOT NULL DEFAULT 0,   -- checkpoint fence
    step_seq            INTEGER     NOT NULL DEFAULT 0,   -- run_steps written so far
    event_seq           INTEGER     NOT NULL DEFAULT 0,   -- events written so far
    lease_owner         TEXT,
    lease_expires_at    TIMESTAMPTZ,
    created_by          TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at         TIMESTAMPTZ,
    FOREIGN KEY (workflow_id, workflow_version) REFERENCES workflows (id, version)
);
CREATE UNIQUE INDEX runs_idempotency_key_idx ON runs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_created_idx ON runs (created_at DESC, id DESC);
CREATE INDEX runs_workflow_idx ON runs (workflow_id, created_at DESC, id DESC);
CREATE INDEX runs_active_idx ON runs (status) WHERE status IN ('queued', 'running');

CREATE TABLE run_steps (
    run_id       UUID        NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq          INTEGER     NOT NULL,            -- order of execution within the run
    step_id      TEXT        NOT NULL,
    step_type    TEXT        NOT NULL,
    attempt      INTEGER     NOT NULL DEFAULT 1,
    status       TEXT        NOT NULL,            -- completed | failed | canceled
    input        JSONB,
    output       JSONB,
    error        JSONB,
    started_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE events (
    id          BIGSERIAL   PRIMARY KEY,          -- global order, for cross-run streams
    run_id      UUID        REFERENCES runs (id) ON DELETE CASCADE,
    seq         INTEGER,                          -- order within the run
    kind        TEXT        NOT NULL,             -- run.created, step.completed, ai.response, …
    step_id     TEXT,
    actor       TEXT,                             -- who caused it (key name, token subject)
    data        JSONB       NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (run_id, seq)
);
CREATE INDEX events_kind_idx ON events (kind, id);

-- Small server-wide settings, e.g. the generated resume-token signing secret.
CREATE TABLE settings (
    key         TEXT        PRIMARY KEY,
    value       TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
