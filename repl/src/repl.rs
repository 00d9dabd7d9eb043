//! The interactive REPL: SQL ending in `;` (multi-line until then), `?question` for plain
//! English, `\d [TABLE]`, `\help`, `\q`. History is kept in the data directory.

use std::str::FromStr;

use anyhow::Result;
use finq_analytics::nl::NlEngine;
use finq_analytics::query::{self, OutputFormat, QueryEngine, Trust};
use finq_core::config::Settings;
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Editor, Helper};

const HELP: &str = "\
  SELECT ... ;        run DuckDB SQL on the mirror (end with ; — it may span lines)
  ? question          ask in plain English (Ollama writes the query, DuckDB answers)
  \\d                  list tables
  \\d TABLE            describe a table
  \\help               this help
  \\q                  quit (or Ctrl-D)

Tables: transactions (amount: money in positive, money out negative), accounts, categories,\nitems, balance_history, sync_log.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplCommand {
    Empty,
    Quit,
    Help,
    Describe(Option<String>),
    Question(String),
    Sql(String),
}

impl FromStr for ReplCommand {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        if s.is_empty() {
            return Ok(ReplCommand::Empty);
        }
        if let Some(q) = s.strip_prefix('?') {
            let q = q.trim();
            return if q.is_empty() {
                Err(
                    "type a question after `?`, e.g. `? what did I spend on dining last month`"
                        .into(),
                )
            } else {
                Ok(ReplCommand::Question(q.to_string()))
            };
        }
        if let Some(meta) = s.strip_prefix('\\') {
            let mut parts = meta.split_whitespace();
            return match (parts.next(), parts.next(), parts.next()) {
                (Some("q" | "quit"), None, _) => Ok(ReplCommand::Quit),
                (Some("help" | "h" | "?"), None, _) => Ok(ReplCommand::Help),
                (Some("d"), None, _) => Ok(ReplCommand::Describe(None)),
                (Some("d"), Some(t), None) => Ok(ReplCommand::Describe(Some(
                    t.trim_end_matches(';').to_string(),
                ))),
                _ => Err(format!(
                    "unknown command `\\{meta}`; \\help lists the commands"
                )),
            };
        }
        Ok(ReplCommand::Sql(s.trim_end_matches(';').trim().to_string()))
    }
}

/// Whether the buffer is a whole entry yet: meta commands and questions are one line;
/// SQL runs once it ends with `;`.
pub fn is_complete(input: &str) -> bool {
    let s = input.trim();
    s.is_empty() || s.starts_with('\\') || s.starts_with('?') || s.ends_with(';')
}

struct FinqHelper;

impl Validator for FinqHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(if is_complete(ctx.input()) {
            ValidationResult::Valid(None)
        } else {
            ValidationResult::Incomplete
        })
    }
}
impl Completer for FinqHelper {
    type Candidate = String;
}
impl Hinter for FinqHelper {
    type Hint = String;
}
impl Highlighter for FinqHelper {}
impl Helper for FinqHelper {}

pub async fn run() -> Result<()> {
    let settings = Settings::load()?;
    let mut rl: Editor<FinqHelper, DefaultHistory> = Editor::new()?;
    rl.set_helper(Some(FinqHelper));
    let history = settings.history_path();
    let mut engine: Option<QueryEngine> = None;
    let _ = std::fs::create_dir_all(&settings.data_dir);
    let _ = rl.load_history(&history);
    eprintln!(
        "finq REPL — mirror {}. \\help for help, \\q to quit.",
        settings.duckdb_path().display()
    );
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "finq> "
        } else {
            "  ..> "
        };
        match rl.readline(prompt) {
            Ok(line) => {
                if !buffer.is_empty() {
                    buffer.push('\n');
                }
                buffer.push_str(&line);
                if !is_complete(&buffer) {
                    continue;
                }
                let entry = std::mem::take(&mut buffer);
                if !entry.trim().is_empty() {
                    let _ = rl.add_history_entry(entry.trim());
                    let _ = rl.save_history(&history);
                }
                match entry.parse::<ReplCommand>() {
                    Ok(ReplCommand::Quit) => break,
                    Ok(cmd) => execute(&settings, &mut engine, cmd).await,
                    Err(e) => eprintln!("{e}"),
                }
            }
            Err(ReadlineError::Interrupted) => buffer.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The REPL's one connection to the mirror, opened when first needed (the mirror may not
/// exist yet when the REPL starts) and kept.
fn engine<'a>(
    engine: &'a mut Option<QueryEngine>,
    settings: &Settings,
) -> Result<&'a mut QueryEngine> {
    if engine.is_none() {
        *engine = Some(QueryEngine::open(&settings.duckdb_path(), Trust::User)?);
    }
    Ok(engine.as_mut().expect("just opened"))
}

async fn execute(settings: &Settings, conn: &mut Option<QueryEngine>, cmd: ReplCommand) {
    let mirror = settings.duckdb_path();
    let outcome: Result<()> = async {
        match cmd {
            ReplCommand::Empty | ReplCommand::Quit => {}
            ReplCommand::Help => println!("{HELP}"),
            ReplCommand::Sql(sql) => {
                let result = engine(conn, settings)?.run(&sql)?;
                println!("{}", query::render(&result, OutputFormat::Table));
            }
            ReplCommand::Describe(None) => {
                let engine = engine(conn, settings)?;
                for t in engine.describe()? {
                    let n = engine.run(&format!("SELECT count(*) FROM \"{}\"", t.name))?;
                    let rows = n.rows()[0][0].clone().unwrap_or_default();
                    println!(
                        "{:<14} {rows:>8} rows   {} columns",
                        t.name,
                        t.columns.len()
                    );
                }
            }
            ReplCommand::Describe(Some(table)) => {
                let tables = engine(conn, settings)?.describe()?;
                match tables.iter().find(|t| t.name.eq_ignore_ascii_case(&table)) {
                    Some(t) => {
                        if !t.comment.is_empty() {
                            println!("{}", t.comment);
                        }
                        for ((c, ty), comment) in t.columns.iter().zip(&t.column_comments) {
                            println!("  {c:<24} {ty:<14} {comment}");
                        }
                    }
                    None => println!("no table `{table}`; \\d lists them"),
                }
            }
            ReplCommand::Question(q) => {
                let engine = NlEngine::new(&settings.ollama_host, &settings.model)?;
                let answer = engine.ask(&mirror, &q).await?;
                println!(
                    "{}\n  {}\n",
                    answer.plan.explanation,
                    answer.plan.sql.replace('\n', "\n  ")
                );
                println!("{}", query::render(&answer.result, OutputFormat::Table));
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = outcome {
        eprintln!("error: {e:#}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        assert_eq!("\\q".parse(), Ok(ReplCommand::Quit));
        assert_eq!("\\help".parse(), Ok(ReplCommand::Help));
        assert_eq!("\\d".parse(), Ok(ReplCommand::Describe(None)));
        assert_eq!(
            "\\d accounts".parse(),
            Ok(ReplCommand::Describe(Some("accounts".into())))
        );
        assert_eq!(
            "? how much on food".parse(),
            Ok(ReplCommand::Question("how much on food".into()))
        );
        assert_eq!(
            "SELECT 1\n ;".parse(),
            Ok(ReplCommand::Sql("SELECT 1".into()))
        );
        assert!("\\x".parse::<ReplCommand>().is_err());
        assert!("?".parse::<ReplCommand>().is_err());
    }

    #[test]
    fn multi_line_sql_waits_for_semicolon() {
        assert!(!is_complete("SELECT *"));
        assert!(!is_complete("SELECT *\nFROM transactions"));
        assert!(is_complete("SELECT *\nFROM transactions;"));
        assert!(is_complete("\\d"));
        assert!(is_complete("? what did I spend"));
        assert!(is_complete("   "));
    }
}
