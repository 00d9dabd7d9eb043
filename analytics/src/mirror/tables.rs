//! What the mirror holds: each DuckDB table, its columns with their comments (read by the
//! language model and by any DuckDB client), and the PostgreSQL query that feeds it.

use super::decode::Kind;

pub struct Col {
    pub name: &'static str,
    pub kind: Kind,
    /// The PostgreSQL expression (before [`Kind::pg`]).
    pub pg: &'static str,
    pub comment: &'static str,
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

const fn col(name: &'static str, kind: Kind, pg: &'static str, comment: &'static str) -> Col {
    Col {
        name,
        kind,
        pg,
        comment,
    }
}

use Kind::*;

pub const TRANSACTIONS: Table = Table {
    name: "transactions",
    comment: "Every transaction: from linked banks (source = 'plaid') and entered by hand (source = 'manual'). Pending ones are included (pending = true).",
    columns: &[
        col(
            "id",
            Text,
            "u.id",
            "Unique id: 'plaid:<Plaid transaction id>' or 'manual:<n>'",
        ),
        col(
            "source",
            Text,
            "u.source",
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
            "The merchant's name, when known",
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
            "The account (accounts.account_id); NULL for manual transactions",
        ),
        col("account_name", Text, "u.account_name", "The account's name"),
        col(
            "institution",
            Text,
            "u.institution",
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
    comment: "Bank accounts of the linked banks, with their latest balances",
    columns: &[
        col("account_id", Text, "a.account_id", "Unique account id"),
        col(
            "item_id",
            Text,
            "a.item_id",
            "The bank connection (items.item_id)",
        ),
        col(
            "institution",
            Text,
            "coalesce(i.institution_name, i.institution_id)",
            "The bank's name",
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
            "depository, credit, loan or investment",
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
            "The balance as the bank reports it; for credit and loan accounts, the amount owed",
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
        col(
            "currency",
            Text,
            "coalesce(a.iso_currency_code, a.unofficial_currency_code)",
            "ISO currency code",
        ),
        col(
            "updated_at",
            Timestamp,
            "a.updated_at",
            "When the balances were last refreshed (UTC)",
        ),
    ],
    from: "FROM plaid_accounts a JOIN plaid_items i USING (item_id)",
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

pub const BALANCE_HISTORY: Table = Table {
    name: "balance_history",
    comment: "Each account's balances by day, as recorded at each sync (one row per account and day)",
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
    from: "FROM balance_snapshots b",
    follow: Follow::Keyed {
        kind: "balance",
        key_pg: "b.account_id || ' ' || b.as_of",
        key_duck: "account_id || ' ' || strftime(date, '%Y-%m-%d')",
    },
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
    &BALANCE_HISTORY,
    &SYNC_LOG,
];

/// The `change_log` entities the mirror needs forwarded (see `Sink::feeds`).
pub const FEEDS: &[&str] = &["account", "item", "category", "balance", "sync_log"];

impl Table {
    pub fn kinds(&self) -> Vec<(&'static str, Kind)> {
        self.columns.iter().map(|c| (c.name, c.kind)).collect()
    }

    /// `COPY (SELECT … FROM … WHERE filter) TO STDOUT`.
    pub fn copy_sql(&self, filter: &str) -> String {
        let exprs: Vec<String> = self.columns.iter().map(|c| c.kind.pg(c.pg)).collect();
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
            .map(|c| format!("\"{}\" {}", c.name, c.kind.duck()))
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
