-- When each job last started, so that jobs of one kind and item can be spaced out: Plaid
-- allows an item 50 /transactions/sync calls a minute, and a storm of webhooks must not
-- turn into a sync every few milliseconds.
ALTER TABLE jobs ADD COLUMN started_at timestamptz;
CREATE INDEX jobs_last_start ON jobs (kind, item_id, started_at DESC);
