-- Plaid transactions are logged per statement, not per row. The row trigger ran a PL/pgSQL
-- function, built two or three JSON documents and inserted one change_log row for every
-- transaction written: about 36 µs a row, three quarters of the time an incremental sync
-- spent merging its rows. A statement trigger sees the rows a statement wrote as transition
-- tables and logs them in one INSERT.
--
-- An UPDATE logs the keys whose row differs in anything. The row trigger ignored updates
-- that touched nothing but updated_at; the sync's merge now leaves unchanged rows alone
-- instead (a row logged without a change would only be derived again, never wrongly).
--
-- A statement on the partitioned table fires its statement triggers, not its partitions';
-- a statement naming a partition fires the partition's. So each partition gets the same
-- triggers when it is attached, and a write to a partition by name is logged too, as it was.

DROP TRIGGER plaid_transactions_log ON plaid_transactions;

CREATE FUNCTION finq_log_plaid_tx() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO change_log (entity, key)
        SELECT 'plaid_tx', plaid_transaction_id FROM new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO change_log (entity, key)
        SELECT 'plaid_tx', plaid_transaction_id FROM old_rows;
    ELSE
        -- Paired by the key; a changed key logs the old and the new one.
        INSERT INTO change_log (entity, key)
        SELECT 'plaid_tx', coalesce(n.plaid_transaction_id, o.plaid_transaction_id)
        FROM new_rows n FULL JOIN old_rows o
            ON o.plaid_transaction_id = n.plaid_transaction_id AND o.item_id = n.item_id
        WHERE n.plaid_transaction_id IS NULL OR o.plaid_transaction_id IS NULL
           OR n IS DISTINCT FROM o;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION finq_tx_log_triggers(t text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER plaid_transactions_log_insert AFTER INSERT ON %I
                    REFERENCING NEW TABLE AS new_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION finq_log_plaid_tx()', t);
    EXECUTE format('CREATE TRIGGER plaid_transactions_log_update AFTER UPDATE ON %I
                    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION finq_log_plaid_tx()', t);
    EXECUTE format('CREATE TRIGGER plaid_transactions_log_delete AFTER DELETE ON %I
                    REFERENCING OLD TABLE AS old_rows
                    FOR EACH STATEMENT EXECUTE FUNCTION finq_log_plaid_tx()', t);
END
$$;

SELECT finq_tx_log_triggers('plaid_transactions');
SELECT finq_tx_log_triggers(c.relname)
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'plaid_transactions'::regclass;

-- As before, and the partition's own triggers once it is attached (an item's first load,
-- written before, is logged as the whole item).
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
    PERFORM finq_tx_log_triggers(t);
    INSERT INTO change_log (entity, key) VALUES ('plaid_item', item);
END
$$;
