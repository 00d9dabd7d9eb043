-- The incremental pipeline: every step after the sync costs what changed.
--
-- Two change feeds, each written in the same transaction as the data it describes:
--
-- 1. change_log: what changed in the tables the pipeline reads (Plaid and manual
--    transactions, accounts, items, categories, mappings, balances, the sync log). Written by
--    triggers, so a change made with plain SQL counts like one made by finq. The derive step
--    (transforms) consumes it: under the advisory lock 'finq.derive' it deletes the entries it
--    applies, in the transaction that applies them. An entry whose transaction commits late (a
--    long sync) is simply there for the next run; nothing is skipped.
--
-- 2. What the mirror must apply, numbered by the sequence mirror_seq: each row of
--    unified_transactions carries the number of its last change (seq), and mirror_changes
--    holds deletions and the other mirrored tables' changes. Only the derive step writes them,
--    under its lock, so numbers become visible in order, and a sink remembers one position:
--    the last number it applied.

CREATE TABLE change_log (
    seq     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- plaid_tx (key: Plaid transaction id), plaid_item (every transaction of an item: key item
    -- id), manual_tx (key: transactions.id), category, mapping (key: PFC primary), account,
    -- account_rows (an account's name changed), item, balance ('account_id date'), sync_log,
    -- all (derive everything again).
    entity  text NOT NULL,
    key     text NOT NULL
);

-- Log a row change: entity from the trigger's first argument, key from the column its second
-- argument names. An UPDATE that changes nothing but bookkeeping columns is not a change.
CREATE FUNCTION finq_log_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r jsonb;
BEGIN
    IF TG_OP = 'UPDATE' AND (to_jsonb(OLD) - 'updated_at' - 'recorded_at')
                            = (to_jsonb(NEW) - 'updated_at' - 'recorded_at') THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN r := to_jsonb(OLD); ELSE r := to_jsonb(NEW); END IF;
    INSERT INTO change_log (entity, key) VALUES (TG_ARGV[0], r ->> TG_ARGV[1]);
    -- An updated key: the old one changed too.
    IF TG_OP = 'UPDATE' AND (to_jsonb(OLD) ->> TG_ARGV[1]) IS DISTINCT FROM (r ->> TG_ARGV[1]) THEN
        INSERT INTO change_log (entity, key) VALUES (TG_ARGV[0], to_jsonb(OLD) ->> TG_ARGV[1]);
    END IF;
    RETURN NULL;
END
$$;

-- Row triggers on the partitioned table are cloned onto each item's partition when it is
-- attached. An item's first load is not logged row by row (it is written before its
-- partition is attached): finq_tx_partition_attach logs the whole item instead.
CREATE TRIGGER plaid_transactions_log AFTER INSERT OR UPDATE OR DELETE ON plaid_transactions
    FOR EACH ROW EXECUTE FUNCTION finq_log_change('plaid_tx', 'plaid_transaction_id');
CREATE TRIGGER transactions_log AFTER INSERT OR UPDATE OR DELETE ON transactions
    FOR EACH ROW EXECUTE FUNCTION finq_log_change('manual_tx', 'id');
CREATE TRIGGER categories_log AFTER INSERT OR UPDATE OR DELETE ON categories
    FOR EACH ROW EXECUTE FUNCTION finq_log_change('category', 'id');
CREATE TRIGGER category_mappings_log AFTER INSERT OR UPDATE OR DELETE ON category_mappings
    FOR EACH ROW EXECUTE FUNCTION finq_log_change('mapping', 'pfc_primary');
CREATE TRIGGER plaid_accounts_log AFTER INSERT OR UPDATE OR DELETE ON plaid_accounts
    FOR EACH ROW EXECUTE FUNCTION finq_log_change('account', 'account_id');
CREATE TRIGGER plaid_items_log AFTER INSERT OR UPDATE OR DELETE ON plaid_items
    FOR EACH ROW EXECUTE FUNCTION finq_log_change('item', 'item_id');
CREATE TRIGGER sync_log_log AFTER INSERT OR UPDATE OR DELETE ON sync_log
    FOR EACH ROW EXECUTE FUNCTION finq_log_change('sync_log', 'id');

CREATE FUNCTION finq_log_balance_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    INSERT INTO change_log (entity, key) VALUES ('balance', r.account_id || ' ' || r.as_of);
    RETURN NULL;
END
$$;
CREATE TRIGGER balance_snapshots_log AFTER INSERT OR UPDATE OR DELETE ON balance_snapshots
    FOR EACH ROW EXECUTE FUNCTION finq_log_balance_change();

-- What shows in the transactions of an item or account beyond the transaction row itself:
-- the institution's and the account's names. When those change, every row of that item or
-- account is derived again.
CREATE FUNCTION finq_log_renames() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'plaid_items' THEN
        IF OLD.institution_name IS DISTINCT FROM NEW.institution_name
           OR OLD.institution_id IS DISTINCT FROM NEW.institution_id THEN
            INSERT INTO change_log (entity, key) VALUES ('plaid_item', NEW.item_id);
        END IF;
    ELSIF OLD.name IS DISTINCT FROM NEW.name THEN
        INSERT INTO change_log (entity, key) VALUES ('account_rows', NEW.account_id);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER plaid_items_renames AFTER UPDATE ON plaid_items
    FOR EACH ROW EXECUTE FUNCTION finq_log_renames();
CREATE TRIGGER plaid_accounts_renames AFTER UPDATE ON plaid_accounts
    FOR EACH ROW EXECUTE FUNCTION finq_log_renames();

-- An item's first load (written before its partition is attached, so no row trigger saw
-- it) and an item's removal (its partition is dropped whole) are logged as the whole item.
CREATE OR REPLACE FUNCTION finq_tx_partition_attach(item text) RETURNS void
LANGUAGE plpgsql
SET maintenance_work_mem = '256MB'
AS $$
DECLARE
    t text := finq_tx_partition_name(item);
BEGIN
    EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY (plaid_transaction_id, item_id)', t);
    EXECUTE format('CREATE INDEX ON %I (pending_transaction_id) WHERE pending_transaction_id IS NOT NULL', t);
    -- With this constraint in place ATTACH need not scan the rows to prove they belong.
    EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I CHECK (item_id IS NOT NULL AND item_id = %L)',
                   t, t || '_item', item);
    EXECUTE format('ALTER TABLE plaid_transactions ATTACH PARTITION %I FOR VALUES IN (%L)', t, item);
    EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', t, t || '_item');
    INSERT INTO change_log (entity, key) VALUES ('plaid_item', item);
END
$$;

CREATE OR REPLACE FUNCTION finq_tx_partition_drop(item text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TABLE IF EXISTS %I', finq_tx_partition_name(item));
    INSERT INTO change_log (entity, key) VALUES ('plaid_item', item);
END
$$;

-- The category is derived in one place, the union (from the override, then category_mappings,
-- then "Uncategorized"), so the stored copy goes.
ALTER TABLE plaid_transactions DROP COLUMN category_id;

CREATE SEQUENCE mirror_seq;

-- unified_transactions is derived incrementally now: the institution travels with each row,
-- and seq says when the row last changed.
TRUNCATE unified_transactions;
ALTER TABLE unified_transactions ADD COLUMN institution text;
ALTER TABLE unified_transactions ADD COLUMN seq bigint NOT NULL;
-- Only the change number is indexed: re-deriving by item, account or category (a first load,
-- a rename) is rare and scans; an index would tax every row written.
CREATE INDEX unified_transactions_seq_idx ON unified_transactions (seq);

-- Changes a sink applies besides upserted transaction rows: tx_delete (key: unified id),
-- tx_delete_item (key: item id), table (key: a small table mirrored whole: accounts,
-- categories, items), balance ('account_id date'), sync_log (key: id).
CREATE TABLE mirror_changes (
    seq   bigint PRIMARY KEY DEFAULT nextval('mirror_seq'),
    kind  text NOT NULL,
    key   text NOT NULL
);

-- Where each consumer of mirror_seq has got to (the DuckDB sink also keeps its position in
-- its own file, in the transaction that applies the changes). mirror_changes rows at or
-- below every consumer's position are pruned; 'pruned' records the highest pruned number,
-- so a mirror that is further behind than that is rebuilt.
CREATE TABLE pipeline_positions (
    consumer    text PRIMARY KEY,
    position    bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Existing data: derive everything once.
INSERT INTO change_log (entity, key) VALUES ('all', '');
