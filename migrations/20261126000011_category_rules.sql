-- Rules that categorise transactions, between the person's own edits and Plaid's mapping:
-- the effective category is the person's edit, else the rule that matched, else the
-- category_mappings rule, else "Uncategorized".
--
-- A rule matches on the merchant's name and/or the description (a case-insensitive text
-- to find, or a regular expression), the amount's size (statement amount without its
-- sign), and the account. The highest priority wins, then the newest rule.

CREATE TABLE category_rules (
    id           bigserial PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    category_id  bigint NOT NULL REFERENCES categories (id) ON DELETE CASCADE,
    priority     integer NOT NULL DEFAULT 0,
    merchant     text,
    description  text,
    -- merchant/description are regular expressions (PostgreSQL's, case-insensitive)
    -- rather than text to find.
    regex        boolean NOT NULL DEFAULT false,
    min_amount   numeric(12,2),
    max_amount   numeric(12,2),
    -- As the mirror's accounts.account_id: Plaid's id, or 'manual:<n>'.
    account_id   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (merchant IS NOT NULL OR description IS NOT NULL OR min_amount IS NOT NULL
           OR max_amount IS NOT NULL OR account_id IS NOT NULL)
);

-- Which rule categorised which transaction (key: the unified id, 'plaid:…' or
-- 'manual:…'). Rules are applied to transactions as they arrive or change, and to the
-- whole history when the person asks (`finq rules apply`): a hit is a fact kept, like an
-- edit, not re-derived, so a new rule never silently rewrites last year.
CREATE TABLE rule_hits (
    tx_id    text PRIMARY KEY,
    rule_id  bigint NOT NULL REFERENCES category_rules (id) ON DELETE CASCADE
);
CREATE INDEX rule_hits_rule_idx ON rule_hits (rule_id);

-- A hit that comes or goes re-derives its transaction.
CREATE FUNCTION finq_log_rule_hit() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
    IF TG_OP = 'UPDATE' AND OLD.rule_id = NEW.rule_id THEN
        RETURN NULL;
    END IF;
    IF current_setting('finq.deriving', true) = 'on' THEN
        -- The derive step itself wrote it, for rows it is deriving now.
        RETURN NULL;
    END IF;
    INSERT INTO change_log (entity, key) VALUES ('rule_hit', r.tx_id);
    RETURN NULL;
END
$$;
CREATE TRIGGER rule_hits_log AFTER INSERT OR UPDATE OR DELETE ON rule_hits
    FOR EACH ROW EXECUTE FUNCTION finq_log_rule_hit();

-- A rule's category changed (or its priority, which may change which rule a hit would
-- name): the rows it categorised are derived again.
CREATE FUNCTION finq_log_rule_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO change_log (entity, key)
    SELECT 'rule_hit', tx_id FROM rule_hits WHERE rule_id = NEW.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER category_rules_log AFTER UPDATE ON category_rules
    FOR EACH ROW EXECUTE FUNCTION finq_log_rule_change();
