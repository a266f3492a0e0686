-- Versioned prompt templates, and per-run state that steps keep between attempts.

CREATE TABLE templates (
    id           TEXT        NOT NULL,
    version      BIGINT      NOT NULL CHECK (version >= 1),
    system       TEXT,
    prompt       TEXT        NOT NULL,
    description  TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    created_by   TEXT,
    PRIMARY KEY (id, version)
);

-- The current step's progress (e.g. an ai_generate conversation so far), kept across crashes.
ALTER TABLE runs ADD COLUMN step_state JSONB;
-- Template versions pinned at start: {"template_id": version}.
ALTER TABLE runs ADD COLUMN pins JSONB NOT NULL DEFAULT '{}'::jsonb;

CREATE INDEX events_ai_idx ON events (kind, created_at) WHERE kind = 'ai.response';
