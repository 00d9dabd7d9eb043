-- Dated balance history: one row per account and day, the latest values of that day.
CREATE TABLE balance_snapshots (
    account_id         text NOT NULL REFERENCES plaid_accounts (account_id) ON DELETE CASCADE,
    as_of              date NOT NULL,
    current_balance    numeric(14,2),
    available_balance  numeric(14,2),
    credit_limit       numeric(14,2),
    iso_currency_code  text,
    recorded_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, as_of)
);

-- When an institution is linked again (a new item for the same accounts), the user's edits
-- on the old item's transactions wait here until the new item's transactions arrive.
CREATE TABLE relink_carryover (
    id                    bigserial PRIMARY KEY,
    item_id               text NOT NULL REFERENCES plaid_items (item_id) ON DELETE CASCADE,
    account_id            text NOT NULL,
    date                  date NOT NULL,
    amount                numeric(12,2) NOT NULL,
    name                  text NOT NULL,
    category_override_id  bigint REFERENCES categories (id) ON DELETE SET NULL,
    notes                 text
);
CREATE INDEX relink_carryover_item_idx ON relink_carryover (item_id);

-- When the item's error was first seen, for "needs attention since …".
ALTER TABLE plaid_items ADD COLUMN error_since timestamptz;
ALTER TABLE sync_log ADD COLUMN duration_ms integer;
