//! Query results as text: a table for people (folded to the terminal's width, or one
//! record at a time when too wide), Markdown, DuckDB's `line` mode, CSV and JSON.

use duckdb::arrow::datatypes::DataType;

use crate::query::QueryResult;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OutputFormat {
    /// A table for people.
    #[default]
    Table,
    /// CSV with a header line.
    Csv,
    /// A JSON array of objects.
    Json,
    /// A Markdown table (for notes and issues).
    Markdown,
    /// One `column = value` line per cell, a blank line between rows.
    Line,
}

impl OutputFormat {
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Table => "table",
            OutputFormat::Csv => "csv",
            OutputFormat::Json => "json",
            OutputFormat::Markdown => "markdown",
            OutputFormat::Line => "line",
        }
    }

    /// Formats for people, which a long result may be cut short in; data formats (CSV,
    /// JSON) are always whole.
    pub fn for_people(self) -> bool {
        matches!(
            self,
            OutputFormat::Table | OutputFormat::Markdown | OutputFormat::Line
        )
    }
}

impl std::str::FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        <OutputFormat as clap::ValueEnum>::from_str(s, true)
            .map_err(|_| format!("no format `{s}`: table, csv, json, markdown or line"))
    }
}

/// Whether a table shows one record at a time (psql's `\x`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Expanded {
    /// Always a table (folded to the width when one is given).
    Off,
    /// Always one record at a time.
    On,
    /// One record at a time when the table would be wider than the width.
    #[default]
    Auto,
}

/// Where the text goes: how wide it may be and how many rows a person wants to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layout {
    /// The terminal's width; `None` for a file or a pipe (never folded).
    pub width: Option<usize>,
    /// Show at most this many rows of a format for people, then `… N more rows`.
    pub max_rows: Option<usize>,
    pub expanded: Expanded,
}

/// Render a whole result, as `finq sql` prints it to a pipe.
pub fn render(result: &QueryResult, format: OutputFormat) -> String {
    render_with(result, format, &Layout::default())
}

/// Render a result for where it goes.
pub fn render_with(result: &QueryResult, format: OutputFormat, layout: &Layout) -> String {
    let total = result.row_count();
    let shown = match layout.max_rows {
        Some(max) if format.for_people() && total > max => max,
        _ => total,
    };
    let rows = result.rows_upto(shown);
    let more = total - shown;
    let mut out = match format {
        OutputFormat::Table => table(result, &rows, total, more, layout),
        OutputFormat::Markdown => markdown(result, &rows),
        OutputFormat::Line => lines(result, &rows),
        OutputFormat::Csv => csv(result, &rows),
        OutputFormat::Json => json(result, &rows),
    };
    if more > 0 && format != OutputFormat::Table {
        out.push_str(&more_rows(more, total));
        out.push('\n');
    }
    out
}

fn more_rows(more: usize, total: usize) -> String {
    format!(
        "… {} more row{} ({} in all)",
        thousands(more),
        if more == 1 { "" } else { "s" },
        thousands(total)
    )
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn cell(c: &Option<String>) -> &str {
    c.as_deref().unwrap_or("NULL")
}

fn table(
    result: &QueryResult,
    rows: &[Vec<Option<String>>],
    total: usize,
    more: usize,
    layout: &Layout,
) -> String {
    use comfy_table::{CellAlignment, ColumnConstraint, ContentArrangement, Table, presets};
    let build = |arrangement: ContentArrangement| {
        let mut table = Table::new();
        table.load_preset(presets::UTF8_FULL_CONDENSED);
        table.set_content_arrangement(arrangement);
        if let Some(w) = layout.width {
            table.set_width(u16::try_from(w).unwrap_or(u16::MAX));
        }
        table.set_header(&result.columns);
        for row in rows {
            table.add_row(row.iter().map(cell));
        }
        for (i, t) in result.types.iter().enumerate() {
            let widest = rows
                .iter()
                .map(|r| cell(&r[i]).chars().count())
                .chain([result.columns[i].chars().count()])
                .max()
                .unwrap_or(0);
            if let Some(col) = table.column_mut(i) {
                if t.is_numeric() {
                    col.set_cell_alignment(CellAlignment::Right);
                }
                // Folding wraps text, never a number, a date or a flag; and text keeps a
                // readable width.
                let atomic = t.is_numeric()
                    || matches!(
                        t,
                        DataType::Boolean
                            | DataType::Date32
                            | DataType::Date64
                            | DataType::Timestamp(_, _)
                            | DataType::Time32(_)
                            | DataType::Time64(_)
                    );
                col.set_constraint(if atomic {
                    ColumnConstraint::ContentWidth
                } else {
                    ColumnConstraint::LowerBoundary(
                        comfy_table::Width::Fixed(widest.min(12) as u16),
                    )
                });
            }
        }
        table.to_string()
    };
    let natural = build(ContentArrangement::Disabled);
    let too_wide = layout.width.is_some_and(|w| {
        natural
            .lines()
            .next()
            .is_some_and(|l| l.chars().count() > w)
    });
    let mut out = match (layout.expanded, too_wide) {
        (Expanded::On, _) | (Expanded::Auto, true) => vertical(result, rows),
        (Expanded::Off, true) => build(ContentArrangement::Dynamic),
        (_, false) => natural,
    };
    if !out.ends_with('\n') {
        out.push('\n');
    }
    if more > 0 {
        out.push_str(&more_rows(more, total));
    } else {
        out.push_str(&format!(
            "({} row{})",
            thousands(total),
            if total == 1 { "" } else { "s" }
        ));
    }
    out
}

/// The widest column name, for one-record-at-a-time layouts.
fn name_width(result: &QueryResult) -> usize {
    result
        .columns
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(0)
}

/// psql's expanded display: a header line per record, then `column | value`.
fn vertical(result: &QueryResult, rows: &[Vec<Option<String>>]) -> String {
    let name_width = name_width(result);
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        out.push_str(&format!(
            "-[ RECORD {} ]{}\n",
            i + 1,
            "-".repeat(name_width)
        ));
        for (name, value) in result.columns.iter().zip(row) {
            let value = cell(value).replace('\n', &format!("\n{:name_width$} | ", ""));
            out.push_str(&format!("{name:<name_width$} | {value}\n"));
        }
    }
    out
}

/// DuckDB's `.mode line`: names right-aligned, ` = `, the value; rows apart by a blank line.
fn lines(result: &QueryResult, rows: &[Vec<Option<String>>]) -> String {
    let name_width = name_width(result);
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        for (name, value) in result.columns.iter().zip(row) {
            out.push_str(&format!("{name:>name_width$} = {}\n", cell(value)));
        }
    }
    out
}

fn markdown(result: &QueryResult, rows: &[Vec<Option<String>>]) -> String {
    let escape = |s: &str| s.replace('|', "\\|").replace('\n', "<br>");
    let mut out = String::new();
    let header: Vec<String> = result.columns.iter().map(|c| escape(c)).collect();
    out.push_str(&format!("| {} |\n", header.join(" | ")));
    let rule: Vec<&str> = result
        .types
        .iter()
        .map(|t| if t.is_numeric() { "---:" } else { "---" })
        .collect();
    out.push_str(&format!("|{}|\n", rule.join("|")));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| escape(cell(c))).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

fn csv(result: &QueryResult, rows: &[Vec<Option<String>>]) -> String {
    let mut out = String::new();
    let line = |cells: Vec<String>| cells.join(",") + "\n";
    out.push_str(&line(result.columns.iter().map(|c| csv_field(c)).collect()));
    for row in rows {
        out.push_str(&line(
            row.iter()
                .map(|c| c.as_deref().map(csv_field).unwrap_or_default())
                .collect(),
        ));
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn json(result: &QueryResult, rows: &[Vec<Option<String>>]) -> String {
    let objects: Vec<String> = rows
        .iter()
        .map(|row| {
            let fields: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, cell)| {
                    let key = serde_json::to_string(&result.columns[i]).expect("json");
                    let value = match cell {
                        None => "null".to_string(),
                        Some(v)
                            if result.types[i].is_numeric()
                                && serde_json::from_str::<serde_json::Number>(v).is_ok() =>
                        {
                            v.clone()
                        }
                        Some(v) if result.types[i] == DataType::Boolean => v.clone(),
                        Some(v) => serde_json::to_string(v).expect("json"),
                    };
                    format!("{key}:{value}")
                })
                .collect();
            format!("{{{}}}", fields.join(","))
        })
        .collect();
    format!("[{}]\n", objects.join(",\n "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query;

    fn result(sql: &str) -> QueryResult {
        let conn = duckdb::Connection::open_in_memory().unwrap();
        query::run(&conn, sql).unwrap()
    }

    fn sample() -> QueryResult {
        result(
            "SELECT * FROM (VALUES
                (DATE '2026-11-02', 'Blue Bottle Coffee', 'Food and Drink', -4.50::DECIMAL(14,2), false),
                (DATE '2026-11-03', 'Payroll | ACME', 'Income', 2500.00::DECIMAL(14,2), false),
                (DATE '2026-11-04', 'Card payment', NULL, -310.25::DECIMAL(14,2), true)
             ) t(date, merchant, category, amount, is_transfer)",
        )
    }

    #[test]
    fn formats_for_people() {
        let r = sample();
        insta::assert_snapshot!("table", render(&r, OutputFormat::Table));
        insta::assert_snapshot!("markdown", render(&r, OutputFormat::Markdown));
        insta::assert_snapshot!("line", render(&r, OutputFormat::Line));
    }

    #[test]
    fn formats_for_programs() {
        let r = sample();
        insta::assert_snapshot!("csv", render(&r, OutputFormat::Csv));
        insta::assert_snapshot!("json", render(&r, OutputFormat::Json));
        let json: serde_json::Value =
            serde_json::from_str(&render(&r, OutputFormat::Json)).unwrap();
        assert_eq!(json[1]["amount"], serde_json::json!(2500.0));
        assert_eq!(json[2]["category"], serde_json::Value::Null);
        assert_eq!(json[2]["is_transfer"], serde_json::json!(true));
    }

    #[test]
    fn long_results_are_cut_for_people_only() {
        let r = result("SELECT i, i * 2 AS twice FROM range(1234) t(i)");
        let cut = Layout {
            max_rows: Some(3),
            ..Layout::default()
        };
        insta::assert_snapshot!("table_cut", render_with(&r, OutputFormat::Table, &cut));
        assert!(
            render_with(&r, OutputFormat::Line, &cut)
                .ends_with("… 1,231 more rows (1,234 in all)\n")
        );
        // CSV and JSON are data: always whole.
        assert_eq!(
            render_with(&r, OutputFormat::Csv, &cut).lines().count(),
            1235
        );
        assert!(render(&r, OutputFormat::Table).ends_with("(1,234 rows)"));
        // Exactly the limit: nothing cut.
        let r = result("SELECT 1 AS a UNION ALL SELECT 2");
        let two = Layout {
            max_rows: Some(2),
            ..Layout::default()
        };
        assert!(render_with(&r, OutputFormat::Table, &two).ends_with("(2 rows)"));
    }

    #[test]
    fn wide_tables_fold_or_turn_vertical() {
        let r = sample();
        let narrow = |expanded| Layout {
            width: Some(72),
            max_rows: None,
            expanded,
        };
        let folded = render_with(&r, OutputFormat::Table, &narrow(Expanded::Off));
        assert!(folded.lines().all(|l| l.chars().count() <= 72), "{folded}");
        insta::assert_snapshot!("table_folded", folded);
        let vertical = render_with(&r, OutputFormat::Table, &narrow(Expanded::Auto));
        insta::assert_snapshot!("table_vertical", vertical);
        assert_eq!(
            render_with(&r, OutputFormat::Table, &narrow(Expanded::On)),
            vertical
        );
        // Wide enough: the table itself.
        let wide = Layout {
            width: Some(200),
            ..Layout::default()
        };
        assert_eq!(
            render_with(&r, OutputFormat::Table, &wide),
            render(&r, OutputFormat::Table)
        );
    }

    #[test]
    fn big_numbers_get_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
