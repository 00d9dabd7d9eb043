//! The line editor's helper: completion, SQL highlighting, hints from history and
//! multi-line input. The logic is in plain functions ([`complete`], [`highlight`]) that
//! the tests call directly; the rustyline traits only delegate to them.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use finq_analytics::query::QueryEngine;
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::{Hinter, HistoryHinter};
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

use super::command::{COMMANDS, is_complete};

/// The words completion offers, read from the mirror when it is opened (and again when a
/// rebuild replaces it).
#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    /// Tables and views with their columns.
    pub tables: Vec<(String, Vec<String>)>,
    /// SQL keywords (upper case).
    pub keywords: Vec<String>,
    /// Function and macro names.
    pub functions: Vec<String>,
    /// Category and account names, offered inside quotes.
    pub names: Vec<String>,
}

impl Vocabulary {
    /// Without a mirror: the keywords finq highlights.
    pub fn basic() -> Vocabulary {
        Vocabulary {
            keywords: KEYWORDS.iter().map(|k| k.to_string()).collect(),
            ..Vocabulary::default()
        }
    }

    /// Everything the mirror's connection knows.
    pub fn load(engine: &mut QueryEngine) -> Result<Vocabulary, finq_analytics::query::QueryError> {
        let tables = engine
            .describe()?
            .into_iter()
            .map(|t| (t.name, t.columns.into_iter().map(|c| c.0).collect()))
            .collect();
        let mut column = |sql: &str| -> Vec<String> {
            engine
                .run(sql)
                .map(|r| r.rows().into_iter().filter_map(|r| r[0].clone()).collect())
                .unwrap_or_default()
        };
        let keywords = column(
            "SELECT upper(keyword_name) FROM duckdb_keywords()
             WHERE keyword_category IN ('reserved', 'unreserved', 'type_function') ORDER BY 1",
        );
        let functions = column(
            "SELECT DISTINCT function_name FROM duckdb_functions()
             WHERE regexp_matches(function_name, '^[a-z][a-z0-9_]*$') ORDER BY 1",
        );
        let mut names = column("SELECT name FROM categories ORDER BY name");
        names.extend(column("SELECT name FROM accounts ORDER BY name"));
        names.dedup();
        let mut vocabulary = Vocabulary {
            tables,
            keywords,
            functions,
            names,
        };
        if vocabulary.keywords.is_empty() {
            vocabulary.keywords = Vocabulary::basic().keywords;
        }
        Ok(vocabulary)
    }

    fn columns_of(&self, table: &str) -> Option<&[String]> {
        self.tables
            .iter()
            .find(|(t, _)| t.eq_ignore_ascii_case(table))
            .map(|(_, c)| c.as_slice())
    }
}

/// Keywords finq highlights (and completes without a mirror).
pub const KEYWORDS: &[&str] = &[
    "ALL",
    "AND",
    "AS",
    "ASC",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "COALESCE",
    "CROSS",
    "CURRENT_DATE",
    "DATE",
    "DESC",
    "DESCRIBE",
    "DISTINCT",
    "ELSE",
    "END",
    "EXCEPT",
    "EXISTS",
    "FALSE",
    "FILTER",
    "FROM",
    "FULL",
    "GROUP",
    "HAVING",
    "ILIKE",
    "IN",
    "INNER",
    "INTERSECT",
    "INTERVAL",
    "IS",
    "JOIN",
    "LATERAL",
    "LEFT",
    "LIKE",
    "LIMIT",
    "NOT",
    "NULL",
    "NULLS",
    "OFFSET",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "OVER",
    "PARTITION",
    "PIVOT",
    "QUALIFY",
    "RIGHT",
    "SELECT",
    "SHOW",
    "SUMMARIZE",
    "TABLE",
    "THEN",
    "TRUE",
    "UNION",
    "UNPIVOT",
    "USING",
    "VALUES",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
];

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Where an unclosed `'…'` before `pos` starts (the byte after the quote).
fn open_quote(before: &str) -> Option<usize> {
    let mut open = None;
    for (i, c) in before.char_indices() {
        if c == '\'' {
            open = match open {
                Some(_) => None,
                None => Some(i + 1),
            };
        }
    }
    open
}

fn starts_with_ci(word: &str, prefix: &str) -> bool {
    word.len() >= prefix.len()
        && word.is_char_boundary(prefix.len())
        && word[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// What Tab offers at `pos`: the byte where the replaced text starts, and the candidates.
pub fn complete(vocab: &Vocabulary, line: &str, pos: usize) -> (usize, Vec<String>) {
    let before = &line[..pos];
    // Inside quotes: the person's categories and accounts, quote closed.
    if let Some(start) = open_quote(before) {
        let typed = &before[start..];
        let found = vocab
            .names
            .iter()
            .filter(|n| starts_with_ci(n, typed))
            .map(|n| format!("{}'", n.replace('\'', "''")))
            .collect();
        return (start, found);
    }
    let trimmed = before.trim_start();
    let indent = before.len() - trimmed.len();
    if trimmed.starts_with('\\') {
        let Some(space) = trimmed.find(char::is_whitespace) else {
            let found = COMMANDS
                .iter()
                .filter(|c| c.starts_with(trimmed))
                .map(|c| c.to_string())
                .collect();
            return (indent, found);
        };
        let arg_start =
            indent + space + trimmed[space..].len() - trimmed[space..].trim_start().len();
        let arg = &before[arg_start..];
        let choices: Vec<String> = match &trimmed[..space] {
            "\\d" => vocab.tables.iter().map(|t| t.0.clone()).collect(),
            "\\format" | "\\mode" => ["csv", "json", "line", "markdown", "table"]
                .map(String::from)
                .to_vec(),
            "\\x" => ["auto", "off", "on"].map(String::from).to_vec(),
            "\\timing" => ["off", "on"].map(String::from).to_vec(),
            "\\chart" => return complete_sql(vocab, line, pos),
            _ => Vec::new(),
        };
        let found = choices
            .into_iter()
            .filter(|c| starts_with_ci(c, arg))
            .collect();
        return (arg_start, found);
    }
    if trimmed.starts_with('?') {
        return (pos, Vec::new());
    }
    complete_sql(vocab, line, pos)
}

/// SQL words: `table.` → its columns; after FROM or JOIN → tables; otherwise columns of
/// the tables the statement names, then tables, keywords and functions.
fn complete_sql(vocab: &Vocabulary, line: &str, pos: usize) -> (usize, Vec<String>) {
    let before = &line[..pos];
    let start = before
        .char_indices()
        .rev()
        .find(|(_, c)| !is_word_char(*c) && *c != '.')
        .map_or(0, |(i, c)| i + c.len_utf8());
    let word = &before[start..];
    if let Some((qualifier, partial)) = word.rsplit_once('.') {
        let table = resolve_alias(vocab, line, qualifier);
        let found = table
            .and_then(|t| vocab.columns_of(&t))
            .unwrap_or(&[])
            .iter()
            .filter(|c| starts_with_ci(c, partial))
            .map(|c| format!("{qualifier}.{c}"))
            .collect();
        return (start, found);
    }
    if word.is_empty() {
        return (start, Vec::new());
    }
    let previous = before[..start]
        .split(|c: char| !is_word_char(c))
        .rfind(|w| !w.is_empty())
        .unwrap_or("")
        .to_ascii_uppercase();
    let tables = vocab.tables.iter().map(|t| t.0.clone());
    let mut found: Vec<String> = Vec::new();
    let mut offer = |candidate: String| {
        if starts_with_ci(&candidate, word) && !found.contains(&candidate) {
            found.push(candidate);
        }
    };
    if matches!(
        previous.as_str(),
        "FROM" | "JOIN" | "DESCRIBE" | "SUMMARIZE" | "TABLE"
    ) {
        tables.for_each(&mut offer);
        return (start, found);
    }
    let words: Vec<String> = line
        .split(|c: char| !is_word_char(c))
        .map(str::to_ascii_lowercase)
        .collect();
    for (table, columns) in &vocab.tables {
        if words.contains(&table.to_ascii_lowercase()) {
            columns.iter().cloned().for_each(&mut offer);
        }
    }
    tables.for_each(&mut offer);
    for (_, columns) in &vocab.tables {
        columns.iter().cloned().for_each(&mut offer);
    }
    // Keywords in the case being typed.
    let lower = word.chars().next().is_some_and(char::is_lowercase);
    for k in &vocab.keywords {
        offer(if lower {
            k.to_ascii_lowercase()
        } else {
            k.clone()
        });
    }
    vocab.functions.iter().cloned().for_each(&mut offer);
    (start, found)
}

/// The table an alias (or a table's own name) stands for in the statement:
/// `FROM transactions t` or `JOIN accounts AS a`.
fn resolve_alias(vocab: &Vocabulary, line: &str, qualifier: &str) -> Option<String> {
    if vocab.columns_of(qualifier).is_some() {
        return Some(qualifier.to_string());
    }
    let words: Vec<&str> = line
        .split(|c: char| !is_word_char(c))
        .filter(|w| !w.is_empty())
        .collect();
    words.iter().enumerate().find_map(|(i, w)| {
        if !w.eq_ignore_ascii_case(qualifier) || i == 0 {
            return None;
        }
        let mut j = i - 1;
        if words[j].eq_ignore_ascii_case("as") && j > 0 {
            j -= 1;
        }
        vocab.columns_of(words[j]).map(|_| words[j].to_string())
    })
}

const KEYWORD: &str = "\x1b[1;34m";
const STRING: &str = "\x1b[32m";
const NUMBER: &str = "\x1b[33m";
const COMMENT: &str = "\x1b[2m";
const COMMAND: &str = "\x1b[1;35m";
const RESET: &str = "\x1b[0m";

/// The line with SQL keywords, strings, numbers and comments coloured (ANSI); backslash
/// commands in their own colour, questions as typed. Only colour codes are added: removing
/// them gives the line back.
pub fn highlight(line: &str) -> String {
    let trimmed = line.trim_start();
    if trimmed.starts_with('?') {
        return line.to_string();
    }
    if trimmed.starts_with('\\') {
        let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
        let at = line.len() - trimmed.len();
        let (command, rest) = line.split_at(at + end);
        let rest = if command.trim_start() == "\\chart" {
            highlight_sql(rest)
        } else {
            rest.to_string()
        };
        return format!("{}{COMMAND}{}{RESET}{rest}", &command[..at], &command[at..]);
    }
    highlight_sql(line)
}

fn highlight_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() * 2);
    let chars: Vec<(usize, char)> = sql.char_indices().collect();
    let mut i = 0;
    let end_of = |k: usize| chars.get(k).map_or(sql.len(), |c| c.0);
    while i < chars.len() {
        let (at, c) = chars[i];
        if c == '\'' {
            let mut j = i + 1;
            while j < chars.len() && chars[j].1 != '\'' {
                j += 1;
            }
            let j = (j + 1).min(chars.len());
            out.push_str(&format!("{STRING}{}{RESET}", &sql[at..end_of(j)]));
            i = j;
        } else if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j].1 != '"' {
                j += 1;
            }
            let j = (j + 1).min(chars.len());
            out.push_str(&sql[at..end_of(j)]);
            i = j;
        } else if c == '-' && chars.get(i + 1).is_some_and(|n| n.1 == '-') {
            let mut j = i;
            while j < chars.len() && chars[j].1 != '\n' {
                j += 1;
            }
            out.push_str(&format!("{COMMENT}{}{RESET}", &sql[at..end_of(j)]));
            i = j;
        } else if is_word_char(c) {
            let mut j = i;
            while j < chars.len() && is_word_char(chars[j].1) {
                j += 1;
            }
            let word = &sql[at..end_of(j)];
            let upper = word.to_ascii_uppercase();
            if word.chars().all(|c| c.is_ascii_digit()) {
                out.push_str(&format!("{NUMBER}{word}{RESET}"));
            } else if KEYWORDS.binary_search(&upper.as_str()).is_ok() {
                out.push_str(&format!("{KEYWORD}{word}{RESET}"));
            } else {
                out.push_str(word);
            }
            i = j;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The helper rustyline calls.
pub struct FinqHelper {
    vocabulary: Arc<RwLock<Vocabulary>>,
    files: FilenameCompleter,
    hints: HistoryHinter,
    colour: bool,
}

impl FinqHelper {
    pub fn new(vocabulary: Arc<RwLock<Vocabulary>>, colour: bool) -> FinqHelper {
        FinqHelper {
            vocabulary,
            files: FilenameCompleter::new(),
            hints: HistoryHinter::new(),
            colour,
        }
    }
}

impl Completer for FinqHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        // `\o FILE`: paths.
        if line.trim_start().starts_with("\\o ") {
            return self.files.complete_path(line, pos);
        }
        let vocabulary = self.vocabulary.read().expect("vocabulary lock");
        let (start, words) = complete(&vocabulary, line, pos);
        Ok((
            start,
            words
                .into_iter()
                .map(|w| Pair {
                    display: w.clone(),
                    replacement: w,
                })
                .collect(),
        ))
    }
}

impl Hinter for FinqHelper {
    type Hint = String;

    fn hint(&self, line: &str, pos: usize, ctx: &Context<'_>) -> Option<String> {
        self.hints.hint(line, pos, ctx)
    }
}

impl Highlighter for FinqHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if self.colour {
            Cow::Owned(highlight(line))
        } else {
            Cow::Borrowed(line)
        }
    }

    fn highlight_hint<'h>(&self, hint: &'h str) -> Cow<'h, str> {
        if self.colour {
            Cow::Owned(format!("{COMMENT}{hint}{RESET}"))
        } else {
            Cow::Borrowed(hint)
        }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        self.colour
    }
}

impl Validator for FinqHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(if is_complete(ctx.input()) {
            ValidationResult::Valid(None)
        } else {
            ValidationResult::Incomplete
        })
    }
}

impl Helper for FinqHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> Vocabulary {
        Vocabulary {
            tables: vec![
                (
                    "accounts".into(),
                    vec!["account_id".into(), "name".into(), "type".into()],
                ),
                (
                    "transactions".into(),
                    vec![
                        "date".into(),
                        "amount".into(),
                        "account_id".into(),
                        "category".into(),
                        "merchant".into(),
                    ],
                ),
                ("transfers".into(), vec!["amount".into()]),
            ],
            keywords: vec!["SELECT".into(), "SET".into(), "TABLE".into()],
            functions: vec!["sum".into(), "strftime".into(), "date_trunc".into()],
            names: vec![
                "Food and Drink".into(),
                "Food Delivery".into(),
                "Chase Checking".into(),
                "Mom's Card".into(),
            ],
        }
    }

    fn offers(line: &str) -> (usize, Vec<String>) {
        complete(&vocab(), line, line.len())
    }

    #[test]
    fn completes_backslash_commands_and_their_arguments() {
        assert_eq!(offers("\\f"), (0, vec!["\\format".to_string()]));
        assert_eq!(
            offers("\\"),
            (0, COMMANDS.iter().map(|c| c.to_string()).collect())
        );
        assert_eq!(offers("\\format m"), (8, vec!["markdown".to_string()]));
        assert_eq!(
            offers("\\d tr"),
            (3, vec!["transactions".to_string(), "transfers".to_string()])
        );
        assert_eq!(offers("\\x a"), (3, vec!["auto".to_string()]));
        assert_eq!(offers("\\chart SELECT mer").1, vec!["merchant".to_string()]);
    }

    #[test]
    fn completes_tables_columns_keywords_and_functions() {
        // After FROM: tables only.
        assert_eq!(
            offers("SELECT * FROM tra"),
            (
                14,
                vec!["transactions".to_string(), "transfers".to_string()]
            )
        );
        // Columns of the tables in the statement come first, keywords in the typed case.
        let (start, found) = offers("SELECT am");
        assert_eq!((start, found), (7, vec!["amount".to_string()]));
        assert_eq!(
            complete(&vocab(), "SELECT a FROM accounts", 8).1[0],
            "account_id"
        );
        assert_eq!(
            offers("se").1,
            vec!["select".to_string(), "set".to_string()]
        );
        assert_eq!(
            offers("SE").1,
            vec!["SELECT".to_string(), "SET".to_string()]
        );
        assert_eq!(offers("SELECT str").1, vec!["strftime".to_string()]);
        // table. and alias.
        assert_eq!(
            offers("SELECT transactions.me"),
            (7, vec!["transactions.merchant".to_string()])
        );
        let line = "SELECT t.ca FROM transactions t";
        assert_eq!(
            complete(&vocab(), line, "SELECT t.ca".len()),
            (7, vec!["t.category".to_string()])
        );
        let line = "SELECT a.n FROM accounts AS a";
        assert_eq!(
            complete(&vocab(), line, "SELECT a.n".len()),
            (7, vec!["a.name".to_string()])
        );
        // Nothing typed, nothing offered (not a thousand words).
        assert_eq!(offers("SELECT ").1, Vec::<String>::new());
        // Questions are not SQL.
        assert_eq!(offers("? how much se").1, Vec::<String>::new());
    }

    #[test]
    fn completes_category_and_account_names_inside_quotes() {
        let line = "SELECT * FROM transactions WHERE category = 'foo";
        assert_eq!(
            offers(line),
            (
                line.len() - 3,
                vec!["Food and Drink'".to_string(), "Food Delivery'".to_string()]
            )
        );
        assert_eq!(
            offers("WHERE account = 'Mo").1,
            vec!["Mom''s Card'".to_string()]
        );
        // A closed quote is not completed into.
        assert_eq!(
            offers("WHERE category = 'Food' AND am").1,
            vec!["amount".to_string()]
        );
    }

    #[test]
    fn highlights_sql_without_changing_it() {
        let line = "select sum(amount) FROM t WHERE name = 'a -- b' -- total\n  AND n > 10";
        let lit = highlight(line);
        assert!(lit.contains(&format!("{KEYWORD}select{RESET}")));
        assert!(lit.contains(&format!("{KEYWORD}FROM{RESET}")));
        assert!(lit.contains(&format!("{STRING}'a -- b'{RESET}")));
        assert!(lit.contains(&format!("{COMMENT}-- total{RESET}")));
        assert!(lit.contains(&format!("{NUMBER}10{RESET}")));
        assert!(
            !lit.contains(&format!("{KEYWORD}sum")),
            "a function is not a keyword"
        );
        let plain = |s: &str| {
            let mut out = String::new();
            let mut rest = s;
            while let Some(i) = rest.find('\x1b') {
                out.push_str(&rest[..i]);
                rest = &rest[i + rest[i..].find('m').unwrap() + 1..];
            }
            out + rest
        };
        for l in [
            line,
            "\\chart SELECT 'x', 1",
            "? what is SELECT",
            "SELECT 'unclosed",
            "héllo 'ü",
        ] {
            assert_eq!(plain(&highlight(l)), l);
        }
        assert!(highlight("\\d transactions").starts_with(&format!("{COMMAND}\\d{RESET}")));
        assert_eq!(highlight("? select"), "? select");
    }

    #[test]
    fn keywords_are_sorted_for_the_search() {
        assert!(KEYWORDS.windows(2).all(|w| w[0] < w[1]));
    }
}
