-- finq schema. PostgreSQL is the system of record; DuckDB is derived from it.
--
-- Amounts: plaid_transactions.amount keeps Plaid's sign (positive = money out of the
-- account). Manual transactions and unified_transactions use the bank-statement sign
-- (positive = money in, negative = money out).

CREATE TABLE users (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- finq is single-user and local: one row, id 1.
INSERT INTO users (id, name) VALUES (1, 'local');
SELECT setval('users_id_seq', 1);

CREATE TABLE categories (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        text NOT NULL,
    parent_id   bigint REFERENCES categories (id) ON DELETE SET NULL,
    is_income   boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, name)
);

-- Manual transactions (cash, accounts Plaid does not cover). Statement sign.
CREATE TABLE transactions (
    id            bigserial PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    account_name  text NOT NULL DEFAULT 'Cash',
    date          date NOT NULL,
    description   text NOT NULL,
    amount        numeric(12,2) NOT NULL,
    currency      text NOT NULL DEFAULT 'USD',
    category_id   bigint REFERENCES categories (id) ON DELETE SET NULL,
    notes         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE plaid_items (
    item_id           text PRIMARY KEY,
    user_id           bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    institution_id    text NOT NULL,
    institution_name  text,
    -- AES-256-GCM: [key version (1 byte)][nonce (12 bytes)][ciphertext + tag], item_id as AAD.
    access_token_enc  bytea NOT NULL,
    -- 'sim' | 'sandbox' | 'production': which Plaid this item belongs to.
    environment       text NOT NULL,
    -- For simulator items: what the simulator needs to recreate the item deterministically.
    sim_spec          jsonb,
    webhook           text,
    error_code        text,
    error_message     text,
    last_synced_at    timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE plaid_accounts (
    account_id                text PRIMARY KEY,
    item_id                   text NOT NULL REFERENCES plaid_items (item_id) ON DELETE CASCADE,
    name                      text NOT NULL,
    official_name             text,
    mask                      text,
    type                      text NOT NULL,
    subtype                   text,
    current_balance           numeric(14,2),
    available_balance         numeric(14,2),
    credit_limit              numeric(14,2),
    iso_currency_code         text,
    unofficial_currency_code  text,
    updated_at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX plaid_accounts_item_idx ON plaid_accounts (item_id);

CREATE TABLE plaid_transactions (
    id                        bigserial PRIMARY KEY,
    plaid_transaction_id      text NOT NULL UNIQUE,
    item_id                   text NOT NULL REFERENCES plaid_items (item_id) ON DELETE CASCADE,
    account_id                text NOT NULL,
    -- Plaid's sign: positive = money out of the account, negative = money in.
    amount                    numeric(12,2) NOT NULL,
    iso_currency_code         text,
    unofficial_currency_code  text,
    date                      date NOT NULL,
    authorized_date           date,
    datetime                  timestamptz,
    name                      text NOT NULL,
    merchant_name             text,
    payment_channel           text,
    pending                   boolean NOT NULL,
    pending_transaction_id    text,
    -- personal_finance_category.primary / .detailed / .confidence_level, as Plaid sent them.
    plaid_category            text,
    plaid_detailed_category   text,
    plaid_category_confidence text,
    -- Set by the category-mapping transform; category_override_id (the user's choice) wins.
    category_id               bigint REFERENCES categories (id) ON DELETE SET NULL,
    category_override_id      bigint REFERENCES categories (id) ON DELETE SET NULL,
    notes                     text,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX plaid_transactions_item_idx ON plaid_transactions (item_id);
CREATE INDEX plaid_transactions_date_idx ON plaid_transactions (date);

CREATE TABLE sync_cursors (
    item_id     text PRIMARY KEY REFERENCES plaid_items (item_id) ON DELETE CASCADE,
    cursor      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Append-only: one row per sync attempt of one item.
CREATE TABLE sync_log (
    id             bigserial PRIMARY KEY,
    item_id        text NOT NULL,
    started_at     timestamptz NOT NULL,
    finished_at    timestamptz NOT NULL DEFAULT now(),
    cursor_before  text,
    cursor_after   text,
    added          integer NOT NULL DEFAULT 0,
    modified       integer NOT NULL DEFAULT 0,
    removed        integer NOT NULL DEFAULT 0,
    pages          integer NOT NULL DEFAULT 0,
    outcome        text NOT NULL,
    error          text
);
CREATE INDEX sync_log_item_idx ON sync_log (item_id, id);

CREATE TABLE chat_conversations (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title       text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE chat_messages (
    id               bigserial PRIMARY KEY,
    conversation_id  bigint NOT NULL REFERENCES chat_conversations (id) ON DELETE CASCADE,
    role             text NOT NULL,
    content          text NOT NULL,
    sql              text,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- Plaid PFC code -> user category. detailed = '' is the rule for the whole primary;
-- a detailed rule wins over its primary's.
CREATE TABLE category_mappings (
    id            bigserial PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    pfc_primary   text NOT NULL,
    pfc_detailed  text NOT NULL DEFAULT '',
    category_id   bigint NOT NULL REFERENCES categories (id) ON DELETE CASCADE,
    UNIQUE (user_id, pfc_primary, pfc_detailed)
);

-- Derived by the union transform: manual + Plaid transactions, statement sign.
CREATE TABLE unified_transactions (
    id                       text PRIMARY KEY,
    source                   text NOT NULL,
    user_id                  bigint NOT NULL,
    item_id                  text,
    account_id               text,
    account_name             text,
    date                     date NOT NULL,
    amount                   numeric(12,2) NOT NULL,
    currency                 text,
    description              text NOT NULL,
    merchant                 text,
    category_id              bigint,
    category                 text,
    pending                  boolean NOT NULL,
    plaid_category           text,
    plaid_detailed_category  text
);
