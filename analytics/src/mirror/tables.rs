//! What the mirror holds: each DuckDB table, its columns with their comments (read by the
//! language model and by any DuckDB client), and the PostgreSQL query that feeds it.

use super::decode::Kind;
use super::fill::Fill;

pub struct Col {
    pub name: &'static str,
    pub kind: Kind,
    /// The PostgreSQL expression (before [`Kind::pg`]).
    pub pg: &'static str,
    pub comment: &'static str,
    /// A different value in nearly every row (an id): stored uncompressed. DuckDB's default
    /// for text (a dictionary, else FSST) finds nothing to share in such a column and
    /// spends a third of a full build trying (0.85 s of 2.2 s for a million rows, against
    /// 0.13 s uncompressed, which makes the file a fifth larger in that column only).
    pub unique: bool,
    /// Not sent by PostgreSQL: filled in by the mirror (see [`super::fill`]).
    pub fill: Option<Fill>,
}

/// How a table follows changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// By `unified_transactions.seq` and tombstones.
    Transactions,
    /// Reloaded whole when one of these `mirror_changes` kinds appears (small tables).
    Whole(&'static [&'static str]),
    /// Rows keyed by `key_pg` (PostgreSQL) / `key_duck` (DuckDB) are replaced when a
    /// `mirror_changes` entry of `kind` names them.
    Keyed {
        kind: &'static str,
        key_pg: &'static str,
        key_duck: &'static str,
    },
}

pub struct Table {
    pub name: &'static str,
    pub comment: &'static str,
    pub columns: &'static [Col],
    /// `FROM …` in PostgreSQL (with any joins).
    pub from: &'static str,
    pub follow: Follow,
}

pub(crate) const fn col(
    name: &'static str,
    kind: Kind,
    pg: &'static str,
    comment: &'static str,
) -> Col {
    Col {
        name,
        kind,
        pg,
        comment,
        unique: false,
        fill: None,
    }
}

/// A text column the mirror fills in from others of the row (see [`super::fill`]).
pub(crate) const fn filled(name: &'static str, fill: Fill, comment: &'static str) -> Col {
    Col {
        fill: Some(fill),
        ..col(name, Text, "", comment)
    }
}

/// A column of ids, one per row (see [`Col::unique`]).
const fn id_col(name: &'static str, pg: &'static str, comment: &'static str) -> Col {
    Col {
        unique: true,
        ..col(name, Text, pg, comment)
    }
}

use Kind::*;

pub const TRANSACTIONS: Table = Table {
    name: "transactions",
    comment: "Every transaction: from linked banks (source = 'plaid') and entered by hand (source = 'manual'). Pending ones are included (pending = true).",
    columns: &[
        id_col(
            "id",
            "u.id",
            "Unique id: 'plaid:<Plaid transaction id>' or 'manual:<n>'",
        ),
        filled(
            "source",
            Fill::SourceOfId,
            "'plaid' (a linked bank) or 'manual'",
        ),
        col(
            "date",
            Date,
            "u.date",
            "The date the transaction posted (or was made, when pending)",
        ),
        col(
            "amount",
            Money,
            "u.amount",
            "Bank-statement sign: money in is positive, money out is negative. Spending is -sum(amount) over amount < 0",
        ),
        col(
            "currency",
            Text,
            "u.currency",
            "ISO currency code, e.g. USD",
        ),
        col(
            "description",
            Text,
            "u.description",
            "The description as the bank shows it",
        ),
        col(
            "merchant",
            Text,
            "u.merchant",
            "The merchant's name: the bank's merchant name when it sent one, else the description cleaned up (processor prefixes such as SQ * or PAYPAL *, store numbers, order codes, city and state removed); group by this, not by description",
        ),
        col(
            "category",
            Text,
            "u.category",
            "The person's category (see the categories table)",
        ),
        col(
            "account_id",
            Text,
            "u.account_id",
            "The account (accounts.account_id): Plaid's id, or 'manual:<n>'",
        ),
        filled("account_name", Fill::AccountName, "The account's name"),
        filled(
            "institution",
            Fill::Institution,
            "The bank's name; NULL for manual transactions",
        ),
        col(
            "item_id",
            Text,
            "u.item_id",
            "The linked bank connection (items.item_id); NULL for manual transactions",
        ),
        col(
            "pending",
            Bool,
            "u.pending",
            "true while the bank has not posted it yet",
        ),
        col(
            "is_transfer",
            Bool,
            "u.is_transfer",
            "true for one side of a transfer between the person's own accounts (a credit-card payment, a move to savings; see the transfers table): neither spending nor income, leave it out of both",
        ),
        col(
            "plaid_category",
            Text,
            "u.plaid_category",
            "Plaid's personal finance category, primary code (e.g. FOOD_AND_DRINK)",
        ),
        col(
            "plaid_detailed_category",
            Text,
            "u.plaid_detailed_category",
            "Plaid's detailed category code (e.g. FOOD_AND_DRINK_GROCERIES)",
        ),
    ],
    from: "FROM unified_transactions u",
    follow: Follow::Transactions,
};

pub const ACCOUNTS: Table = Table {
    name: "accounts",
    comment: "Accounts: those of the linked banks (source = 'plaid') and those kept by hand (source = 'manual': cash, imported cards, a house, a loan), with their latest balances",
    columns: &[
        col(
            "account_id",
            Text,
            "a.account_id",
            "Unique account id: Plaid's, or 'manual:<n>'",
        ),
        col(
            "source",
            Text,
            "a.source",
            "'plaid' (a linked bank) or 'manual'",
        ),
        col(
            "item_id",
            Text,
            "a.item_id",
            "The bank connection (items.item_id); NULL for manual accounts",
        ),
        col(
            "institution",
            Text,
            "a.institution",
            "The bank's name; NULL for manual accounts",
        ),
        col("name", Text, "a.name", "The account's name"),
        col(
            "official_name",
            Text,
            "a.official_name",
            "The account's official name at the bank",
        ),
        col(
            "mask",
            Text,
            "a.mask",
            "The last digits of the account number",
        ),
        col(
            "type",
            Text,
            "a.type",
            "depository, credit, loan, investment, other; manual accounts also cash or property",
        ),
        col(
            "subtype",
            Text,
            "a.subtype",
            "e.g. checking, savings, credit card, student",
        ),
        col(
            "current_balance",
            Money,
            "a.current_balance",
            "The latest balance; for credit and loan accounts, the amount owed",
        ),
        col(
            "available_balance",
            Money,
            "a.available_balance",
            "The amount available to spend or withdraw",
        ),
        col(
            "credit_limit",
            Money,
            "a.credit_limit",
            "The credit limit (credit accounts)",
        ),
        col("currency", Text, "a.currency", "ISO currency code"),
        col(
            "updated_at",
            Timestamp,
            "a.updated_at",
            "When the balances were last refreshed (UTC)",
        ),
    ],
    from: "FROM (
        SELECT a.account_id, 'plaid' AS source, a.item_id,
               coalesce(i.institution_name, i.institution_id) AS institution, a.name,
               a.official_name, a.mask, a.type, a.subtype, a.current_balance,
               a.available_balance, a.credit_limit,
               coalesce(a.iso_currency_code, a.unofficial_currency_code) AS currency, a.updated_at
        FROM plaid_accounts a JOIN plaid_items i USING (item_id)
        UNION ALL
        SELECT 'manual:' || m.id, 'manual', NULL, NULL, m.name, NULL, NULL, m.type, NULL,
               b.balance, NULL, NULL, m.currency, coalesce(b.recorded_at, m.updated_at)
        FROM manual_accounts m
        LEFT JOIN LATERAL (SELECT balance, recorded_at FROM manual_balances
                           WHERE account_id = m.id ORDER BY as_of DESC LIMIT 1) b ON true
    ) a",
    follow: Follow::Whole(&["account", "item"]),
};

pub const CATEGORIES: Table = Table {
    name: "categories",
    comment: "The person's categories",
    columns: &[
        col("id", Int, "c.id", "Category id"),
        col(
            "name",
            Text,
            "c.name",
            "The category's name, as used in transactions.category",
        ),
        col(
            "parent",
            Text,
            "p.name",
            "The parent category's name, if any",
        ),
        col(
            "is_income",
            Bool,
            "c.is_income",
            "true for income categories",
        ),
    ],
    from: "FROM categories c LEFT JOIN categories p ON p.id = c.parent_id",
    follow: Follow::Whole(&["category"]),
};

pub const ITEMS: Table = Table {
    name: "items",
    comment: "Linked bank connections (Plaid items) and their health",
    columns: &[
        col("item_id", Text, "i.item_id", "Unique connection id"),
        col(
            "institution_id",
            Text,
            "i.institution_id",
            "Plaid's institution id",
        ),
        col(
            "institution",
            Text,
            "coalesce(i.institution_name, i.institution_id)",
            "The bank's name",
        ),
        col(
            "environment",
            Text,
            "i.environment",
            "sim, sandbox or production",
        ),
        col(
            "status",
            Text,
            "CASE WHEN i.error_code IS NULL THEN 'ok' ELSE 'error' END",
            "'ok', or 'error' when the connection needs attention",
        ),
        col(
            "error_code",
            Text,
            "i.error_code",
            "Plaid's error code, e.g. ITEM_LOGIN_REQUIRED",
        ),
        col(
            "error_message",
            Text,
            "i.error_message",
            "The error in words",
        ),
        col(
            "error_since",
            Timestamp,
            "i.error_since",
            "Since when the error has been seen (UTC)",
        ),
        col(
            "notice",
            Text,
            "i.notice_code",
            "What the person should do on the Link page while the connection still works: PENDING_EXPIRATION (access ends soon), PENDING_DISCONNECT, NEW_ACCOUNTS_AVAILABLE (accounts not shared yet); NULL when nothing",
        ),
        col(
            "last_synced_at",
            Timestamp,
            "i.last_synced_at",
            "The last successful sync (UTC)",
        ),
        col(
            "linked_at",
            Timestamp,
            "i.created_at",
            "When the connection was linked (UTC)",
        ),
    ],
    from: "FROM plaid_items i",
    follow: Follow::Whole(&["item"]),
};

pub const BALANCE_SNAPSHOTS: Table = Table {
    name: "balance_snapshots",
    comment: "Each account's balances as reported (one row per account and day): recorded at each sync for linked banks, stated by the person for manual accounts. balance_history fills in the days between",
    columns: &[
        col(
            "account_id",
            Text,
            "b.account_id",
            "The account (accounts.account_id)",
        ),
        col("date", Date, "b.as_of", "The day"),
        col(
            "current_balance",
            Money,
            "b.current_balance",
            "The balance that day; for credit and loan accounts, the amount owed",
        ),
        col(
            "available_balance",
            Money,
            "b.available_balance",
            "The available balance that day",
        ),
        col(
            "credit_limit",
            Money,
            "b.credit_limit",
            "The credit limit that day",
        ),
        col("currency", Text, "b.iso_currency_code", "ISO currency code"),
    ],
    from: "FROM (
        SELECT account_id, as_of, current_balance, available_balance, credit_limit,
               iso_currency_code
        FROM balance_snapshots
        UNION ALL
        SELECT 'manual:' || b.account_id, b.as_of, b.balance, NULL, NULL, m.currency
        FROM manual_balances b JOIN manual_accounts m ON m.id = b.account_id
    ) b",
    follow: Follow::Keyed {
        kind: "balance",
        key_pg: "b.account_id || ' ' || b.as_of",
        key_duck: "account_id || ' ' || strftime(date, '%Y-%m-%d')",
    },
};

pub const TRANSFERS: Table = Table {
    name: "transfers",
    comment: "Money moved between the person's own accounts: each row pairs the transaction that left one account with the one that arrived in another (both have is_transfer = true in transactions)",
    columns: &[
        id_col(
            "out_id",
            "p.out_id",
            "The outgoing side (transactions.id, amount negative)",
        ),
        id_col(
            "in_id",
            "p.in_id",
            "The incoming side (transactions.id, amount positive)",
        ),
        col("amount", Money, "p.size", "The amount moved (positive)"),
        col("out_date", Date, "p.out_date", "When it left"),
        col("in_date", Date, "p.in_date", "When it arrived"),
        col("from_account", Text, "fa.name", "The account it left"),
        col("to_account", Text, "ta.name", "The account it arrived in"),
    ],
    from: "FROM transfer_pairs p
        LEFT JOIN (SELECT account_id, name FROM plaid_accounts
                   UNION ALL SELECT 'manual:' || id, name FROM manual_accounts) fa
            ON fa.account_id = p.out_account
        LEFT JOIN (SELECT account_id, name FROM plaid_accounts
                   UNION ALL SELECT 'manual:' || id, name FROM manual_accounts) ta
            ON ta.account_id = p.in_account",
    follow: Follow::Whole(&["transfer", "account"]),
};

pub const SYNC_LOG: Table = Table {
    name: "sync_log",
    comment: "Every sync attempt of every bank connection",
    columns: &[
        col("id", Int, "l.id", "Attempt number"),
        col(
            "item_id",
            Text,
            "l.item_id",
            "The bank connection (items.item_id)",
        ),
        col("started_at", Timestamp, "l.started_at", "Start (UTC)"),
        col("finished_at", Timestamp, "l.finished_at", "End (UTC)"),
        col(
            "duration_ms",
            Int,
            "l.duration_ms",
            "How long it took, in milliseconds",
        ),
        col("added", Int, "l.added", "Transactions added"),
        col("modified", Int, "l.modified", "Transactions modified"),
        col("removed", Int, "l.removed", "Transactions removed"),
        col("pages", Int, "l.pages", "Pages fetched from Plaid"),
        col("outcome", Text, "l.outcome", "'ok' or 'error'"),
        col("error", Text, "l.error", "What went wrong"),
    ],
    from: "FROM sync_log l",
    follow: Follow::Keyed {
        kind: "sync_log",
        key_pg: "l.id::text",
        key_duck: "CAST(id AS VARCHAR)",
    },
};

pub const TABLES: &[&Table] = &[
    &TRANSACTIONS,
    &ACCOUNTS,
    &CATEGORIES,
    &ITEMS,
    &BALANCE_SNAPSHOTS,
    &TRANSFERS,
    &SYNC_LOG,
];

/// The `change_log` entities the mirror needs forwarded (see `Sink::feeds`).
pub const FEEDS: &[&str] = &["account", "item", "category", "balance", "sync_log"];

impl Table {
    pub fn kinds(&self) -> Vec<(&'static str, Kind)> {
        self.columns.iter().map(|c| (c.name, c.kind)).collect()
    }

    /// The columns PostgreSQL sends (all but the filled ones), in order.
    pub fn sent(&self) -> impl Iterator<Item = &Col> {
        self.columns.iter().filter(|c| c.fill.is_none())
    }

    /// `COPY (SELECT … FROM … WHERE filter) TO STDOUT` of the columns sent.
    pub fn copy_sql(&self, filter: &str) -> String {
        let exprs: Vec<String> = self.sent().map(|c| c.kind.pg(c.pg)).collect();
        format!(
            "COPY (SELECT {} {} WHERE {filter}) TO STDOUT (FORMAT binary)",
            exprs.join(", "),
            self.from
        )
    }

    pub fn create_sql(&self) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| {
                let store = if c.unique {
                    " USING COMPRESSION uncompressed"
                } else {
                    ""
                };
                format!("\"{}\" {}{store}", c.name, c.kind.duck())
            })
            .collect();
        let mut sql = format!("CREATE TABLE {} ({});\n", self.name, cols.join(", "));
        sql.push_str(&format!(
            "COMMENT ON TABLE {} IS {};\n",
            self.name,
            quote(self.comment)
        ));
        for c in self.columns {
            sql.push_str(&format!(
                "COMMENT ON COLUMN {}.\"{}\" IS {};\n",
                self.name,
                c.name,
                quote(c.comment)
            ));
        }
        sql
    }
}

/// A DuckDB string literal.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A view of the mirror: derived at query time from the tables, so it is always as fresh
/// as they are and costs nothing to keep.
pub struct View {
    pub name: &'static str,
    pub comment: &'static str,
    pub sql: &'static str,
}

/// Subscriptions and bills: per merchant, outflows at a regular cadence (most gaps between
/// payments in one band) of similar amounts (most within a quarter of the median).
pub const RECURRING: View = View {
    name: "recurring",
    comment: "Subscriptions and bills found from a regular cadence and similar amounts per merchant. Columns: merchant, account_name, cadence (weekly, biweekly, monthly, quarterly, yearly), payments (how many seen), typical_amount (median, positive), last_date, last_amount, previous_amount, next_expected (date), monthly_cost (typical_amount as a monthly figure), price_changed (last amount differs from the one before by more than 1%), missed (next_expected is more than a week past, or a quarter of the period for longer cadences)",
    sql: "WITH tx AS (
    SELECT merchant, account_name, date, -amount AS paid
    FROM transactions
    WHERE amount < 0 AND NOT pending AND NOT is_transfer AND merchant IS NOT NULL
),
gaps AS (
    SELECT merchant, date - lag(date) OVER (PARTITION BY merchant ORDER BY date) AS gap
    FROM tx
),
bands AS (
    SELECT merchant,
           CASE WHEN gap BETWEEN 6 AND 8 THEN 'weekly'
                WHEN gap BETWEEN 13 AND 16 THEN 'biweekly'
                WHEN gap BETWEEN 26 AND 35 THEN 'monthly'
                WHEN gap BETWEEN 85 AND 97 THEN 'quarterly'
                WHEN gap BETWEEN 350 AND 380 THEN 'yearly' END AS cadence,
           count(*) OVER (PARTITION BY merchant) AS gaps
    FROM gaps WHERE gap IS NOT NULL
),
cadences AS (
    SELECT merchant, cadence
    FROM bands
    WHERE cadence IS NOT NULL AND gaps >= 2
    GROUP BY merchant, cadence, gaps
    HAVING count(*) >= 0.75 * gaps
),
stats AS (
    SELECT merchant, count(*) AS payments, median(paid) AS typical,
           arg_max(account_name, date) AS account_name,
           max(date) AS last_date, arg_max(paid, date) AS last_amount,
           list(paid ORDER BY date DESC)[2] AS previous_amount
    FROM tx GROUP BY merchant
),
steady AS (
    SELECT t.merchant
    FROM tx t JOIN stats s USING (merchant)
    GROUP BY t.merchant, s.payments
    HAVING count(*) FILTER (WHERE abs(t.paid - s.typical) <= 0.25 * s.typical) >= 0.75 * s.payments
),
found AS (
    SELECT s.*, c.cadence,
           CASE c.cadence WHEN 'weekly' THEN s.last_date + INTERVAL 7 DAY
                          WHEN 'biweekly' THEN s.last_date + INTERVAL 14 DAY
                          WHEN 'monthly' THEN s.last_date + INTERVAL 1 MONTH
                          WHEN 'quarterly' THEN s.last_date + INTERVAL 3 MONTH
                          ELSE s.last_date + INTERVAL 1 YEAR END AS next_due,
           CASE c.cadence WHEN 'weekly' THEN 52.0 / 12 WHEN 'biweekly' THEN 26.0 / 12
                          WHEN 'monthly' THEN 1.0 WHEN 'quarterly' THEN 1.0 / 3
                          ELSE 1.0 / 12 END AS per_month,
           CASE c.cadence WHEN 'quarterly' THEN 23 WHEN 'yearly' THEN 90 ELSE 7 END AS grace
    FROM stats s JOIN cadences c USING (merchant) JOIN steady USING (merchant)
)
SELECT merchant, account_name, cadence, payments,
       CAST(round(typical, 2) AS DECIMAL(18, 2)) AS typical_amount,
       last_date, last_amount, previous_amount,
       CAST(next_due AS DATE) AS next_expected,
       CAST(round(typical * per_month, 2) AS DECIMAL(18, 2)) AS monthly_cost,
       coalesce(abs(last_amount - previous_amount) > 0.01 * previous_amount, false) AS price_changed,
       current_date > CAST(next_due AS DATE) + grace AS missed
FROM found",
};

/// Every account's balance on every day: the reported one where there is a snapshot, and
/// otherwise derived from the nearest snapshot (the next one, else the one before) and the
/// posted transactions in between. In the offset form: balance(d) = offset + sign × cum(d),
/// where cum is the running sum of the account's amounts and each snapshot fixes an offset.
pub const BALANCE_HISTORY: View = View {
    name: "balance_history",
    comment: "Every account's balance for every day, from its first transaction or snapshot to today. Columns: account_id, account_name, type, date, balance (credit and loan accounts: the amount owed, positive), from_snapshot (true where a reported balance exists that day, false where derived from the nearest snapshot and the transactions between), agrees (false on days between two snapshots whose difference the transactions do not explain: a missing or wrong transaction). Accounts that never reported a balance are left out",
    sql: "WITH acct AS (
    SELECT account_id, name, type, CASE WHEN type IN ('credit', 'loan') THEN -1 ELSE 1 END AS sign
    FROM accounts
),
flows AS (
    SELECT account_id, date, sum(amount) AS flow
    FROM transactions WHERE account_id IS NOT NULL AND NOT pending
    GROUP BY account_id, date
),
snaps AS (
    SELECT account_id, date, current_balance AS balance
    FROM balance_snapshots WHERE current_balance IS NOT NULL
),
span AS (
    SELECT s.account_id, least(s.first, coalesce(f.first, s.first)) AS first,
           greatest(current_date, s.last, coalesce(f.last, s.last)) AS last
    FROM (SELECT account_id, min(date) AS first, max(date) AS last FROM snaps GROUP BY 1) s
    LEFT JOIN (SELECT account_id, min(date) AS first, max(date) AS last FROM flows GROUP BY 1) f
        USING (account_id)
),
days AS (
    SELECT account_id, CAST(unnest(generate_series(first, last, INTERVAL 1 DAY)) AS DATE) AS date
    FROM span
),
running AS (
    SELECT d.account_id, d.date, a.name, a.type, a.sign, s.balance AS snapshot,
           sum(coalesce(f.flow, 0)) OVER (PARTITION BY d.account_id ORDER BY d.date) AS cum
    FROM days d
    JOIN acct a USING (account_id)
    LEFT JOIN flows f USING (account_id, date)
    LEFT JOIN snaps s USING (account_id, date)
),
offsets AS (
    SELECT *, snapshot - sign * cum AS offset_here FROM running
),
anchored AS (
    SELECT *,
           first_value(offset_here IGNORE NULLS) OVER (PARTITION BY account_id ORDER BY date
               ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS next_offset,
           last_value(offset_here IGNORE NULLS) OVER (PARTITION BY account_id ORDER BY date
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS prev_offset
    FROM offsets
)
SELECT account_id, name AS account_name, type, date,
       CAST(coalesce(snapshot, coalesce(next_offset, prev_offset) + sign * cum) AS DECIMAL(18, 2)) AS balance,
       snapshot IS NOT NULL AS from_snapshot,
       next_offset IS NULL OR prev_offset IS NULL OR abs(next_offset - prev_offset) < 0.005 AS agrees
FROM anchored",
};

/// Assets less what is owed, by day.
pub const NET_WORTH: View = View {
    name: "net_worth",
    comment: "Net worth by day: assets (every account's balance except credit and loan accounts) less liabilities (what credit and loan accounts owe), over the accounts that have a balance that day (see balance_history). Columns: date, assets, liabilities, net_worth, accounts, agrees (false when an account's balance that day lies between snapshots the transactions do not explain)",
    sql: "SELECT date,
       CAST(coalesce(sum(balance) FILTER (WHERE type NOT IN ('credit', 'loan')), 0) AS DECIMAL(18, 2)) AS assets,
       CAST(coalesce(sum(balance) FILTER (WHERE type IN ('credit', 'loan')), 0) AS DECIMAL(18, 2)) AS liabilities,
       CAST(coalesce(sum(balance) FILTER (WHERE type NOT IN ('credit', 'loan')), 0)
            - coalesce(sum(balance) FILTER (WHERE type IN ('credit', 'loan')), 0) AS DECIMAL(18, 2)) AS net_worth,
       count(*) AS accounts,
       bool_and(agrees) AS agrees
FROM balance_history
GROUP BY date",
};

pub const VIEWS: &[&View] = &[&RECURRING, &BALANCE_HISTORY, &NET_WORTH];

impl View {
    pub fn create_sql(&self) -> String {
        format!(
            "CREATE VIEW {} AS {};\nCOMMENT ON VIEW {} IS {};\n",
            self.name,
            self.sql,
            self.name,
            quote(self.comment)
        )
    }
}
