-- plaid_transactions becomes a table partitioned by item: one partition per linked item.
--
-- Why: an item's first sync brings its whole history (up to millions of rows). Inserting
-- them one by one into an indexed table costs a random B-tree insertion per row and index;
-- loading them instead into a fresh, unindexed table (COPY FREEZE), building its indexes in
-- one sort each and attaching it as the item's partition is several times faster, and it is
-- still one transaction with the cursor.
--
-- The item's rows live and die with its partition: deleting the item drops it (a trigger
-- below, in place of the foreign key's ON DELETE CASCADE, which would have to re-check a
-- million rows whenever a partition is attached). Rows only enter through an item's
-- partition, and the sync holds the item's row while it writes.
--
-- The partition of an item is named by finq_tx_partition_name(item_id); the functions below
-- are the only code that creates, attaches or drops one.

ALTER TABLE plaid_transactions RENAME TO plaid_transactions_unpartitioned;
ALTER INDEX plaid_transactions_pkey RENAME TO plaid_transactions_unpartitioned_pkey;
ALTER INDEX plaid_transactions_item_idx RENAME TO plaid_transactions_unpartitioned_item_idx;
ALTER INDEX plaid_transactions_pending_of_idx RENAME TO plaid_transactions_unpartitioned_pending_of_idx;

CREATE TABLE plaid_transactions (
    plaid_transaction_id      text NOT NULL,
    item_id                   text NOT NULL,
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
    category_id               bigint,
    category_override_id      bigint,
    notes                     text,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    -- Plaid's id is unique on its own; the item is part of the key because a partitioned
    -- table's keys must include the partition column. The id comes first so comparisons
    -- end at it.
    PRIMARY KEY (plaid_transaction_id, item_id),
    CONSTRAINT plaid_transactions_category_id_fkey FOREIGN KEY (category_id)
        REFERENCES categories (id) ON DELETE SET NULL,
    CONSTRAINT plaid_transactions_category_override_id_fkey FOREIGN KEY (category_override_id)
        REFERENCES categories (id) ON DELETE SET NULL
) PARTITION BY LIST (item_id);
-- The posted -> pending link, for the sync's edit carry-over.
CREATE INDEX plaid_transactions_pending_of_idx ON plaid_transactions (pending_transaction_id)
    WHERE pending_transaction_id IS NOT NULL;

CREATE FUNCTION finq_tx_partition_name(item text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 'plaid_transactions_' || left(md5(item), 16) $$;

-- Whether the item has its partition.
CREATE FUNCTION finq_tx_partition_exists(item text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'plaid_transactions'::regclass
          AND c.relname = finq_tx_partition_name(item)
    )
$$;

-- Start loading an item's first rows: a fresh, unindexed table shaped like
-- plaid_transactions, not yet attached. Returns its name.
CREATE FUNCTION finq_tx_partition_begin(item text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    t text := finq_tx_partition_name(item);
BEGIN
    EXECUTE format('CREATE TABLE %I (LIKE plaid_transactions INCLUDING DEFAULTS)', t);
    RETURN t;
END
$$;

-- Index the loaded table (one sort per index, in memory) and attach it as the item's
-- partition. A transaction that came twice fails here on the key (23505). The sync runs
-- VACUUM (ANALYZE) on the partition once the load has committed.
CREATE FUNCTION finq_tx_partition_attach(item text) RETURNS void
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
END
$$;

-- Drop the item's partition and every row in it (when the item is removed), or the table
-- of a load that turned out empty.
CREATE FUNCTION finq_tx_partition_drop(item text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TABLE IF EXISTS %I', finq_tx_partition_name(item));
END
$$;

CREATE FUNCTION finq_plaid_items_drop_transactions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM finq_tx_partition_drop(OLD.item_id);
    RETURN OLD;
END
$$;
CREATE TRIGGER plaid_items_drop_transactions BEFORE DELETE ON plaid_items
    FOR EACH ROW EXECUTE FUNCTION finq_plaid_items_drop_transactions();

-- Move existing rows into their items' partitions.
DO $$
DECLARE
    item text;
BEGIN
    FOR item IN SELECT DISTINCT item_id FROM plaid_transactions_unpartitioned LOOP
        EXECUTE format('INSERT INTO %I SELECT plaid_transaction_id, item_id, account_id, amount,
                iso_currency_code, unofficial_currency_code, date, authorized_date, datetime, name,
                merchant_name, payment_channel, pending, pending_transaction_id, plaid_category,
                plaid_detailed_category, plaid_category_confidence, category_id, category_override_id,
                notes, created_at, updated_at
            FROM plaid_transactions_unpartitioned WHERE item_id = %L', finq_tx_partition_begin(item), item);
        PERFORM finq_tx_partition_attach(item);
    END LOOP;
END
$$;

DROP TABLE plaid_transactions_unpartitioned;
