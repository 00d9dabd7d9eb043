-- Plaid's transaction id is the key: the surrogate id only cost an index and a sequence on
-- the hottest write path. The posted -> pending link gets an index for the sync's edit
-- carry-over.
ALTER TABLE plaid_transactions DROP CONSTRAINT plaid_transactions_pkey;
ALTER TABLE plaid_transactions DROP COLUMN id;
ALTER TABLE plaid_transactions DROP CONSTRAINT plaid_transactions_plaid_transaction_id_key;
ALTER TABLE plaid_transactions ADD PRIMARY KEY (plaid_transaction_id);
CREATE INDEX plaid_transactions_pending_of_idx ON plaid_transactions (pending_transaction_id)
    WHERE pending_transaction_id IS NOT NULL;
-- Date queries run on the DuckDB mirror; in PostgreSQL the index only slowed the sync.
DROP INDEX plaid_transactions_date_idx;
