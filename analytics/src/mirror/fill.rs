//! Columns the mirror fills in itself instead of reading them from PostgreSQL.
//!
//! A transaction row carries its account's name, its bank's name and its source. In
//! `unified_transactions` they are derived from the account, the item and the id (see
//! `finq_transforms::union`), and re-derived whenever those change; shipping them for every
//! row made a full build of a million rows send a sixth more bytes through `COPY` and
//! decode three more text columns. The mirror reads the few accounts and items in the same
//! snapshot instead, and fills the columns in from the row's `account_id`, `item_id` and
//! `id`, by the same rules the derive step uses.

use std::collections::HashMap;
use std::sync::Arc;

use duckdb::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use duckdb::arrow::datatypes::SchemaRef;
use duckdb::arrow::record_batch::RecordBatch;
use sqlx::PgConnection;

use super::decode::schema_of;
use super::tables::Table;

/// How a filled column gets its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// The part of the row's `id` before its first `:` (`plaid:…` → `plaid`).
    SourceOfId,
    /// The name of the account the row's `account_id` names (a Plaid account's, or
    /// `manual:<n>` for a manual one); NULL when there is no such account.
    AccountName,
    /// The bank's name (`institution_name`, else `institution_id`) of the item the row's
    /// `item_id` names; NULL without an item.
    Institution,
}

impl Fill {
    /// The column of the same row the value is computed from.
    fn input(self) -> &'static str {
        match self {
            Fill::SourceOfId => "id",
            Fill::AccountName => "account_id",
            Fill::Institution => "item_id",
        }
    }
}

/// Where each column of a table's batches comes from.
enum Slot {
    /// Column `i` of the decoded batch.
    Sent(usize),
    /// Computed from column `i` of the decoded batch.
    Filled(Fill, usize),
}

/// Turns the batches decoded from PostgreSQL (the columns it sends) into the table's rows.
pub struct Filler {
    schema: SchemaRef,
    slots: Vec<Slot>,
    accounts: HashMap<String, String>,
    institutions: HashMap<String, String>,
}

impl Filler {
    /// For `table`, reading what its filled columns need on `pg` (in the write's snapshot).
    pub async fn load(table: &Table, pg: &mut PgConnection) -> Result<Filler, sqlx::Error> {
        let needs = |f: Fill| table.columns.iter().any(|c| c.fill == Some(f));
        let mut accounts = HashMap::new();
        if needs(Fill::AccountName) {
            // As the derive step names them (plaid_accounts by id; manual accounts as
            // `manual:<id>`).
            accounts = sqlx::query_as::<_, (String, String)>(
                "SELECT account_id, name FROM plaid_accounts
                 UNION ALL SELECT 'manual:' || id, name FROM manual_accounts",
            )
            .fetch_all(&mut *pg)
            .await?
            .into_iter()
            .collect();
        }
        let mut institutions = HashMap::new();
        if needs(Fill::Institution) {
            institutions = sqlx::query_as::<_, (String, String)>(
                "SELECT item_id, coalesce(institution_name, institution_id) FROM plaid_items",
            )
            .fetch_all(&mut *pg)
            .await?
            .into_iter()
            .collect();
        }
        Ok(Filler::new(table, accounts, institutions))
    }

    fn new(
        table: &Table,
        accounts: HashMap<String, String>,
        institutions: HashMap<String, String>,
    ) -> Filler {
        let sent: Vec<&str> = table.sent().map(|c| c.name).collect();
        let position = |name: &str| {
            sent.iter()
                .position(|n| *n == name)
                .unwrap_or_else(|| panic!("{}: a filled column needs {name}", table.name))
        };
        let slots = table
            .columns
            .iter()
            .map(|c| match c.fill {
                None => Slot::Sent(position(c.name)),
                Some(fill) => Slot::Filled(fill, position(fill.input())),
            })
            .collect();
        Filler {
            schema: schema_of(&table.kinds()),
            slots,
            accounts,
            institutions,
        }
    }

    /// The table's schema (every column, in order).
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The table's rows from a batch of the columns PostgreSQL sent.
    pub fn fill(&self, sent: RecordBatch) -> Result<RecordBatch, String> {
        let columns: Vec<ArrayRef> = self
            .slots
            .iter()
            .map(|slot| match *slot {
                Slot::Sent(i) => sent.column(i).clone(),
                Slot::Filled(fill, i) => {
                    let input = sent.column(i).as_string::<i32>();
                    let values: StringArray = match fill {
                        Fill::SourceOfId => input
                            .iter()
                            .map(|id| id.map(|id| id.split_once(':').map_or(id, |(s, _)| s)))
                            .collect(),
                        Fill::AccountName => lookup(input, &self.accounts),
                        Fill::Institution => lookup(input, &self.institutions),
                    };
                    Arc::new(values) as ArrayRef
                }
            })
            .collect();
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| e.to_string())
    }
}

fn lookup(keys: &StringArray, names: &HashMap<String, String>) -> StringArray {
    let mut out = duckdb::arrow::array::StringBuilder::with_capacity(keys.len(), keys.len() * 16);
    for key in keys.iter() {
        out.append_option(key.and_then(|k| names.get(k)));
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::decode::Kind;
    use crate::mirror::tables::{Follow, col, filled};

    const TABLE: Table = Table {
        name: "t",
        comment: "",
        columns: &[
            col("id", Kind::Text, "id", ""),
            filled("source", Fill::SourceOfId, ""),
            col("account_id", Kind::Text, "account_id", ""),
            filled("account_name", Fill::AccountName, ""),
            filled("institution", Fill::Institution, ""),
            col("item_id", Kind::Text, "item_id", ""),
            col("n", Kind::Int, "n", ""),
        ],
        from: "",
        follow: Follow::Transactions,
    };

    #[test]
    fn filled_columns_follow_the_derive_steps_rules() {
        let filler = Filler::new(
            &TABLE,
            [("acc1", "Checking"), ("manual:3", "Wallet")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
            [("item1", "First Platypus Bank")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
        );
        let sent_schema = schema_of(&TABLE.sent().map(|c| (c.name, c.kind)).collect::<Vec<_>>());
        let text = |v: &[Option<&str>]| Arc::new(StringArray::from(v.to_vec())) as ArrayRef;
        let sent = RecordBatch::try_new(
            sent_schema,
            vec![
                text(&[Some("plaid:abc:d"), Some("manual:7"), Some("odd")]),
                text(&[Some("acc1"), Some("manual:3"), Some("gone")]),
                text(&[Some("item1"), None, Some("item2")]),
                Arc::new(duckdb::arrow::array::Int64Array::from(vec![1, 2, 3])),
            ],
        )
        .unwrap();
        let rows = filler.fill(sent).unwrap();
        assert_eq!(rows.schema(), filler.schema());
        let col = |name: &str| {
            let c = rows.column_by_name(name).unwrap().as_string::<i32>();
            c.iter().map(|v| v.map(str::to_string)).collect::<Vec<_>>()
        };
        let s = |v: &[Option<&str>]| v.iter().map(|v| v.map(str::to_string)).collect::<Vec<_>>();
        assert_eq!(
            col("source"),
            s(&[Some("plaid"), Some("manual"), Some("odd")])
        );
        assert_eq!(
            col("account_name"),
            s(&[Some("Checking"), Some("Wallet"), None])
        );
        assert_eq!(
            col("institution"),
            s(&[Some("First Platypus Bank"), None, None])
        );
        assert_eq!(col("item_id"), s(&[Some("item1"), None, Some("item2")]));
    }
}
