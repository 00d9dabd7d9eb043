-- Accounts Plaid does not cover (cash, a card imported from its CSV export, a house, a loan),
-- their balances, and the files imported into them.
--
-- A manual transaction now belongs to a manual account (by id, so renaming the account
-- renames it everywhere). An imported transaction carries the key that recognises it in a
-- later import of the same or an overlapping file: 'fitid:<FITID>' for OFX/QFX (the bank's
-- own id), 'row:<date>|<amount>|<description>|<n>' for CSV, where n counts identical rows of
-- the file (two coffees on one day are two transactions). Hand-entered ones have no key.

CREATE TABLE manual_accounts (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (name <> ''),
    -- As Plaid's account types, plus cash and property. For credit and loan accounts a
    -- balance is the amount owed (positive), as Plaid reports it.
    type        text NOT NULL CHECK (type IN ('cash', 'depository', 'credit', 'loan', 'investment', 'property', 'other')),
    currency    text NOT NULL DEFAULT 'USD',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, name)
);

-- One balance per account and day (the value of a house, what is left of a loan, cash in
-- the wallet), as the person states it.
CREATE TABLE manual_balances (
    account_id  bigint NOT NULL REFERENCES manual_accounts (id) ON DELETE CASCADE,
    as_of       date NOT NULL,
    balance     numeric(14,2) NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, as_of)
);

-- One row per file imported.
CREATE TABLE imports (
    id           bigserial PRIMARY KEY,
    account_id   bigint NOT NULL REFERENCES manual_accounts (id) ON DELETE CASCADE,
    file_name    text NOT NULL,
    sha256       text NOT NULL,
    format       text NOT NULL,
    rows_read    integer NOT NULL,
    rows_added   integer NOT NULL,
    imported_at  timestamptz NOT NULL DEFAULT now()
);

-- Existing manual transactions keep their account names, as accounts of type cash.
INSERT INTO manual_accounts (user_id, name, type)
SELECT DISTINCT user_id, account_name, 'cash' FROM transactions;

ALTER TABLE transactions ADD COLUMN account_id bigint REFERENCES manual_accounts (id) ON DELETE CASCADE;
UPDATE transactions t SET account_id = a.id
FROM manual_accounts a WHERE a.user_id = t.user_id AND a.name = t.account_name;
ALTER TABLE transactions ALTER COLUMN account_id SET NOT NULL;
ALTER TABLE transactions DROP COLUMN account_name;
ALTER TABLE transactions ADD COLUMN import_key text;
ALTER TABLE transactions ADD COLUMN import_id bigint REFERENCES imports (id) ON DELETE SET NULL;
-- Hand-entered rows (no key) are never in conflict: NULLs are distinct.
ALTER TABLE transactions ADD CONSTRAINT transactions_import_key UNIQUE (account_id, import_key);

CREATE TRIGGER manual_accounts_log AFTER INSERT OR UPDATE OR DELETE ON manual_accounts
    FOR EACH ROW EXECUTE FUNCTION finq_log_change('account', 'id');

-- A renamed manual account renames its transactions: derive them again.
CREATE FUNCTION finq_log_manual_account_rename() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.name IS DISTINCT FROM NEW.name OR OLD.currency IS DISTINCT FROM NEW.currency THEN
        INSERT INTO change_log (entity, key) VALUES ('manual_account_rows', NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER manual_accounts_renames AFTER UPDATE ON manual_accounts
    FOR EACH ROW EXECUTE FUNCTION finq_log_manual_account_rename();

-- Balances are keyed as the mirror's balance_history is: '<account id> <date>', where a
-- manual account's id is 'manual:<n>'.
CREATE FUNCTION finq_log_manual_balance_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    INSERT INTO change_log (entity, key) VALUES ('balance', 'manual:' || r.account_id || ' ' || r.as_of);
    INSERT INTO change_log (entity, key) VALUES ('account', 'manual:' || r.account_id);
    RETURN NULL;
END
$$;
CREATE TRIGGER manual_balances_log AFTER INSERT OR UPDATE OR DELETE ON manual_balances
    FOR EACH ROW EXECUTE FUNCTION finq_log_manual_balance_change();

-- A statement's description -> the merchant's name without processor prefixes, store
-- numbers and place, one row per distinct description: the union transform names each
-- description once and joins this table (Plaid's own merchant name, when sent, is used
-- as is).
CREATE TABLE merchant_names (
    raw   text PRIMARY KEY,
    name  text NOT NULL
);

-- Manual transactions are now shown with their account's id, merchants with their
-- normalised names: derive everything once.
INSERT INTO change_log (entity, key) VALUES ('all', '');
