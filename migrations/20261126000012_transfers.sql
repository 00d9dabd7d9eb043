-- Transfers: money moved between the person's own accounts (a credit-card payment, a move
-- to savings) shows twice, once out and once in. finq pairs the two sides, marks both
-- (unified_transactions.is_transfer) and leaves them out of spending and income.
--
-- A pair is two posted transactions of opposite amounts in two different accounts, the
-- same currency, at most 4 days apart, each the other's closest candidate (ties broken by
-- id), and not a pair the person has said is no transfer. "Each the other's closest" makes
-- the pairs a function of the transactions alone: the transform recomputes only the
-- amounts that changed, and ends where recomputing everything would.

ALTER TABLE unified_transactions ADD COLUMN is_transfer boolean NOT NULL DEFAULT false;

-- The transactions that may be one side of a transfer, as the transform last saw them (so
-- that a changed amount's old value is known).
CREATE TABLE transfer_rows (
    id          text PRIMARY KEY,
    item_id     text,
    account_id  text NOT NULL,
    date        date NOT NULL,
    amount      numeric(12,2) NOT NULL,
    currency    text,
    size        numeric(12,2) GENERATED ALWAYS AS (abs(amount)) STORED
);
CREATE INDEX transfer_rows_size_idx ON transfer_rows (size);
-- Money in is rare beside money out: pairs are looked for from the inflows.
CREATE INDEX transfer_rows_in_idx ON transfer_rows (size) WHERE amount > 0;

-- With what the mirror shows of a pair, so that showing the pairs never reads the
-- transactions.
CREATE TABLE transfer_pairs (
    out_id       text PRIMARY KEY,
    in_id        text NOT NULL UNIQUE,
    size         numeric(12,2) NOT NULL,
    out_date     date NOT NULL,
    in_date      date NOT NULL,
    out_account  text NOT NULL,
    in_account   text NOT NULL
);
CREATE INDEX transfer_pairs_size_idx ON transfer_pairs (size);

-- Pairs the person unmarked: never paired again.
CREATE TABLE transfer_rejections (
    out_id      text NOT NULL,
    in_id       text NOT NULL,
    size        numeric(12,2) NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (out_id, in_id)
);

CREATE FUNCTION finq_log_transfer_rejection() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    INSERT INTO change_log (entity, key) VALUES ('transfer_size', r.size::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER transfer_rejections_log AFTER INSERT OR UPDATE OR DELETE ON transfer_rejections
    FOR EACH ROW EXECUTE FUNCTION finq_log_transfer_rejection();

-- Find the transfers in what is there.
INSERT INTO change_log (entity, key) VALUES ('all', '');
