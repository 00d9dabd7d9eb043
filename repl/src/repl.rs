//! The interactive REPL: SQL ending in `;` (multi-line until then), `?question` for plain
//! English (one conversation, `\new` for another, `\history`, `\sql`), `\d [TABLE]`,
//! `\help`, `\q`. History is kept in the data directory.

use std::io::IsTerminal;
use std::str::FromStr;

use anyhow::Result;

use finq_analytics::nl::chats;
use finq_analytics::query::{self, OutputFormat, QueryEngine, Trust};
use finq_core::config::Settings;
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Editor, Helper};

use crate::app::App;
use crate::ask::{self, Asker};

const HELP: &str = "\
  SELECT ... ;        run DuckDB SQL on the mirror (end with ; — it may span lines)
  ? question          ask in plain English (Ollama writes the query, DuckDB computes the
                      numbers, finq checks every number of the answer); follow-ups continue
                      the conversation
  \\new                start a new conversation
  \\history            this conversation's questions and answers
  \\sql                the SQL of the last answer
  \\d                  list tables
  \\d TABLE            describe a table
  \\help               this help
  \\q                  quit (or Ctrl-D)

Tables: transactions (amount: money in positive, money out negative), accounts, categories,\nitems, balance_snapshots, transfers, sync_log; views recurring, balance_history, net_worth.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplCommand {
    Empty,
    Quit,
    Help,
    Describe(Option<String>),
    Question(String),
    NewConversation,
    History,
    ShowSql,
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
                (Some("new"), None, _) => Ok(ReplCommand::NewConversation),
                (Some("history"), None, _) => Ok(ReplCommand::History),
                (Some("sql"), None, _) => Ok(ReplCommand::ShowSql),
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
    let _ = std::fs::create_dir_all(&settings.data_dir);
    let _ = rl.load_history(&history);
    eprintln!(
        "finq REPL — mirror {}. \\help for help, \\q to quit.",
        settings.duckdb_path().display()
    );
    let mut session = Session {
        settings,
        engine: None,
        asker: None,
        last_sql: None,
    };
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
                    Ok(cmd) => session.execute(cmd).await,
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

/// What the REPL keeps between entries.
struct Session {
    settings: Settings,
    /// The REPL's one connection to the mirror, opened when first needed (the mirror may
    /// not exist yet when the REPL starts) and kept.
    engine: Option<QueryEngine>,
    /// Questions, opened (with PostgreSQL, for the conversation) at the first one.
    asker: Option<Asker>,
    /// The SQL of the last answer, for `\sql`.
    last_sql: Option<String>,
}

impl Session {
    fn engine(&mut self) -> Result<&mut QueryEngine> {
        if self.engine.is_none() {
            self.engine = Some(QueryEngine::open(
                &self.settings.duckdb_path(),
                Trust::User,
            )?);
        }
        Ok(self.engine.as_mut().expect("just opened"))
    }

    async fn asker(&mut self) -> Result<&mut Asker> {
        if self.asker.is_none() {
            let app = App::open_with(self.settings.clone()).await?;
            self.asker = Some(Asker::new(&app.settings, app.pool.clone())?);
        }
        Ok(self.asker.as_mut().expect("just opened"))
    }

    async fn execute(&mut self, cmd: ReplCommand) {
        if let Err(e) = self.execute_inner(cmd).await {
            eprintln!("error: {e:#}");
        }
    }

    async fn execute_inner(&mut self, cmd: ReplCommand) -> Result<()> {
        match cmd {
            ReplCommand::Empty | ReplCommand::Quit => {}
            ReplCommand::Help => println!("{HELP}"),
            ReplCommand::Sql(sql) => {
                let result = self.engine()?.run(&sql)?;
                println!("{}", query::render(&result, OutputFormat::Table));
            }
            ReplCommand::Describe(None) => {
                let engine = self.engine()?;
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
                let tables = self.engine()?.describe()?;
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
                let show = std::io::stderr().is_terminal();
                let answer = self.asker().await?.ask(&q, show).await?;
                print!("{}", ask::render(&answer, OutputFormat::Table, false));
                self.last_sql = Some(answer.plan.sql);
            }
            ReplCommand::NewConversation => {
                if let Some(asker) = self.asker.as_mut() {
                    asker.new_conversation();
                }
                self.last_sql = None;
                println!("a new conversation starts with the next question");
            }
            ReplCommand::History => {
                let conversation = self.asker.as_ref().and_then(|a| a.conversation);
                match (conversation, self.asker.as_ref()) {
                    (Some(id), Some(asker)) => {
                        let turns = chats::turns(asker.pool(), id).await?;
                        print!("{}", ask::render_turns(&turns));
                    }
                    _ => println!("no questions yet in this conversation"),
                }
            }
            ReplCommand::ShowSql => match &self.last_sql {
                Some(sql) => println!("{}", sql.trim()),
                None => println!("no answer yet: ask with `? question`"),
            },
        }
        Ok(())
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
        assert_eq!("\\new".parse(), Ok(ReplCommand::NewConversation));
        assert_eq!("\\history".parse(), Ok(ReplCommand::History));
        assert_eq!("\\sql".parse(), Ok(ReplCommand::ShowSql));
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
