-- Verified webhooks, kept as received, and a work queue in PostgreSQL: a webhook and the
-- job it makes are stored in one transaction before `finq serve` answers.

CREATE TABLE webhook_events (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    -- The exact body Plaid sent (its signature covers these bytes).
    body         text NOT NULL,
    webhook_type text,
    webhook_code text,
    item_id      text,
    -- What finq did with it: queued, coalesced, recorded, ignored, unknown_item.
    outcome      text NOT NULL
);
CREATE INDEX webhook_events_received ON webhook_events (received_at);

CREATE TABLE jobs (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,
    item_id     text NOT NULL,
    state       text NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts    integer NOT NULL DEFAULT 0,
    run_after   timestamptz NOT NULL DEFAULT now(),
    -- A running job whose lease has passed is taken again (its worker died).
    lease_until timestamptz,
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- At most one waiting job per kind and item: later requests coalesce into it.
CREATE UNIQUE INDEX jobs_one_waiting ON jobs (kind, item_id) WHERE state = 'queued';
CREATE INDEX jobs_ready ON jobs (run_after) WHERE state IN ('queued', 'running');
