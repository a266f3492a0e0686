-- Versioned prompt templates, and per-run state that steps keep between attempts.

CREATE TABLE templates (
    id           TEXT    NOT NULL,
    version      INTEGER NOT NULL CHECK (version >= 1),
    system       TEXT,
    prompt       TEXT    NOT NULL,
    description  TEXT,
    created_at   TEXT    NOT NULL,
    created_by   TEXT,
    PRIMARY KEY (id, version)
);

ALTER TABLE runs ADD COLUMN step_state TEXT;
ALTER TABLE runs ADD COLUMN pins TEXT NOT NULL DEFAULT '{}';

CREATE INDEX events_ai_idx ON events (kind, created_at) WHERE kind = 'ai.response';
