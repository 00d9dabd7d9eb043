-- TRUNCATE fires no row triggers: a table emptied with plain SQL would leave the derived
-- tables and the mirror holding its old rows. A statement-level trigger on each table the
-- pipeline reads asks for everything to be derived again (which also rebuilds the mirror).
CREATE FUNCTION finq_log_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO change_log (entity, key) VALUES ('all', '');
    RETURN NULL;
END
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['plaid_transactions', 'transactions', 'categories',
                             'category_mappings', 'plaid_accounts', 'plaid_items', 'sync_log',
                             'balance_snapshots', 'manual_accounts', 'manual_balances',
                             'rule_hits', 'category_rules', 'transfer_rejections'] LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %I
                        FOR EACH STATEMENT EXECUTE FUNCTION finq_log_truncate()',
                       t || '_truncate_log', t);
    END LOOP;
END
$$;
