//! The interactive REPL: SQL ending in `;` (multi-line until then), `?question` for plain
//! English (one conversation, `\new` for another), `\chart`, output settings (`\format`,
//! `\x`, `\maxrows`, `\timing`, `\o`), `\d`. Tab completes, SQL is highlighted, history
//! (kept in the data directory) gives hints. Ctrl-C stops the running query (DuckDB's
//! interrupt) or question (the model request is dropped, its query interrupted) and never
//! ends the REPL.
//!
//! - [`command`]: what was typed, parsed ([`command::ReplCommand`]).
//! - [`helper`]: completion, highlighting, hints and multi-line input, as plain functions.

pub mod command;
pub mod helper;

use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use finq_analytics::nl::{NlError, chats};
use finq_analytics::query::{
    self, Expanded, Layout, OutputFormat, QueryEngine, QueryResult, Trust,
};
use finq_core::config::Settings;
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{CompletionType, Config, Editor};

use crate::app::App;
use crate::ask::{self, Asker};
use command::{HELP, ReplCommand};
use helper::{FinqHelper, Vocabulary};

/// The terminal's width when standard output is one.
pub fn terminal_width() -> Option<usize> {
    let out = std::io::stdout();
    if !out.is_terminal() {
        return None;
    }
    console::Term::stdout()
        .size_checked()
        .map(|(_, columns)| usize::from(columns))
}

/// Whether to colour the line being typed: a terminal that can, and no `NO_COLOR`.
fn colour() -> bool {
    std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

/// Make SIGINT the REPL's: from here on Ctrl-C cancels what runs ([`Session::query`],
/// questions); at the prompt the line editor reads Ctrl-C as a key (the terminal is raw)
/// and clears the line.
///
/// The line editor installs a SIGINT handler of its own for as long as it exists (it
/// writes to a pipe only it reads), which would swallow the signal: it is reset to the
/// default first, so tokio's handler is the only one (and chains to nothing).
fn take_sigint() -> Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: installs the default disposition; no handler code of ours runs in a signal.
    unsafe { sigaction(Signal::SIGINT, &default) }.context("cannot take Ctrl-C")?;
    // Registered once, tokio's handler stays for the life of the process (each query
    // listens with `ctrl_c()`).
    let _ = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot take Ctrl-C")?;
    Ok(())
}

/// How long a query runs before the REPL says how to stop it.
const HINT_AFTER: Duration = Duration::from_secs(1);

/// After Ctrl-C, how often DuckDB is interrupted again until the query has stopped.
const REINTERRUPT: Duration = Duration::from_millis(50);

/// Interrupt DuckDB's running query again and again: DuckDB forgets an interrupt that
/// comes before the query's transaction has begun. Never ends: dropped (or its task
/// aborted) once the query has.
async fn keep_interrupting(interrupt: impl Fn()) -> std::convert::Infallible {
    loop {
        interrupt();
        tokio::time::sleep(REINTERRUPT).await;
    }
}

/// Ctrl-C stopped what was running.
#[derive(Debug, thiserror::Error)]
#[error("cancelled")]
struct Cancelled;

pub async fn run() -> Result<()> {
    let settings = Settings::load()?;
    let vocabulary = Arc::new(RwLock::new(Vocabulary::basic()));
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .build();
    let mut rl: Editor<FinqHelper, DefaultHistory> = Editor::with_config(config)?;
    take_sigint()?;
    rl.set_helper(Some(FinqHelper::new(vocabulary.clone(), colour())));
    let history = settings.history_path();
    let _ = std::fs::create_dir_all(&settings.data_dir);
    let _ = rl.load_history(&history);
    let mut session = Session {
        engine: None,
        generation: None,
        vocabulary,
        asker: None,
        last_sql: None,
        output: Output::default(),
        mirror: finq_analytics::mirror_path(&settings)?,
        settings,
    };
    // Open the mirror now (when there is one) so Tab knows its tables from the start.
    if session.mirror.exists()
        && let Err(e) = session.engine()
    {
        eprintln!("note: {e:#}");
    }
    eprintln!(
        "finq REPL — mirror {}. \\help for help, \\q to quit.",
        session.mirror.display()
    );
    // Lines read so far of an entry not complete yet: with a terminal the line editor
    // keeps a multi-line entry together itself; piped input comes a line at a time.
    let mut pending = String::new();
    loop {
        let prompt = if pending.is_empty() {
            "finq> "
        } else {
            "  ..> "
        };
        match rl.readline(prompt) {
            Ok(line) => {
                if !pending.is_empty() {
                    pending.push('\n');
                }
                pending.push_str(&line);
                if !command::is_complete(&pending) {
                    continue;
                }
                let entry = std::mem::take(&mut pending);
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
            // Ctrl-C at the prompt: the entry is dropped, a fresh prompt follows.
            Err(ReadlineError::Interrupted) => pending.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Where results go and how they look.
struct Output {
    format: OutputFormat,
    expanded: Expanded,
    /// Rows of a table shown before `… N more rows`; 0 shows all.
    max_rows: usize,
    timing: bool,
    /// `\o FILE`: results go there, whole.
    file: Option<(PathBuf, std::fs::File)>,
}

impl Default for Output {
    fn default() -> Self {
        Output {
            format: OutputFormat::Table,
            expanded: Expanded::Auto,
            max_rows: 40,
            timing: false,
            file: None,
        }
    }
}

impl Output {
    fn layout(&self) -> Layout {
        if self.file.is_some() {
            return Layout {
                expanded: self.expanded,
                ..Layout::default()
            };
        }
        let terminal = std::io::stdout().is_terminal();
        Layout {
            width: terminal_width(),
            max_rows: (terminal && self.max_rows > 0).then_some(self.max_rows),
            expanded: self.expanded,
        }
    }

    /// Write `text` where results go: the `\o` file, or the terminal.
    fn emit(&mut self, text: &str) -> Result<()> {
        match &mut self.file {
            Some((path, file)) => file
                .write_all(text.as_bytes())
                .and_then(|()| {
                    if text.ends_with('\n') {
                        Ok(())
                    } else {
                        file.write_all(b"\n")
                    }
                })
                .with_context(|| format!("cannot write to {}", path.display())),
            None => {
                println!("{}", text.trim_end());
                Ok(())
            }
        }
    }

    /// Print a result where results go (saying how many rows went to a file).
    fn show(&mut self, result: &QueryResult) -> Result<()> {
        self.emit(&query::render_with(result, self.format, &self.layout()))?;
        if let Some((path, _)) = &self.file {
            let n = result.row_count();
            eprintln!(
                "({} row{} written to {})",
                query::thousands(n),
                if n == 1 { "" } else { "s" },
                path.display()
            );
        }
        Ok(())
    }

    /// `maxrows: N`.
    fn max_rows_line(&self) -> String {
        match self.max_rows {
            0 => "maxrows: 0 (every row is shown)".into(),
            n => format!("maxrows: {n}"),
        }
    }
}

/// What the REPL keeps between entries.
struct Session {
    settings: Settings,
    mirror: PathBuf,
    /// The REPL's one connection to the mirror, opened when first needed (the mirror may
    /// not exist yet when the REPL starts) and kept. `None` while a query has it.
    engine: Option<QueryEngine>,
    /// The engine generation the vocabulary was read from.
    generation: Option<u64>,
    vocabulary: Arc<RwLock<Vocabulary>>,
    /// Questions, opened (with PostgreSQL, for the conversation) at the first one.
    asker: Option<Asker>,
    /// The SQL of the last answer, for `\sql`.
    last_sql: Option<String>,
    output: Output,
}

impl Session {
    fn engine(&mut self) -> Result<&mut QueryEngine> {
        if self.engine.is_none() {
            self.engine = Some(QueryEngine::open(&self.mirror, Trust::User)?);
        }
        let engine = self.engine.as_mut().expect("just opened");
        // A new file (a rebuild) may have new names: read them again.
        if self.generation != Some(engine.generation()) {
            match Vocabulary::load(engine) {
                Ok(v) => *self.vocabulary.write().expect("vocabulary lock") = v,
                Err(e) => tracing::debug!(error = %e, "cannot read names for completion"),
            }
            self.generation = Some(engine.generation());
        }
        Ok(engine)
    }

    async fn asker(&mut self) -> Result<&mut Asker> {
        if self.asker.is_none() {
            let app = App::open_with(self.settings.clone()).await?;
            self.asker = Some(Asker::new(&app.settings, app.pool.clone())?);
        }
        Ok(self.asker.as_mut().expect("just opened"))
    }

    async fn execute(&mut self, cmd: ReplCommand) {
        let outcome = match cmd {
            ReplCommand::Question(q) => {
                // Dropping the question's future drops the model request; a DuckDB query
                // the question runs (on this task) is stopped from another one.
                let watcher = self.asker().await.ok().map(|asker| {
                    let stop = asker.interrupter();
                    tokio::spawn(async move {
                        if tokio::signal::ctrl_c().await.is_ok() {
                            // Until the question ends and this task is aborted.
                            keep_interrupting(|| stop.interrupt()).await;
                        }
                    })
                });
                let outcome = tokio::select! {
                    r = self.question(&q) => r,
                    _ = tokio::signal::ctrl_c() => Err(Cancelled.into()),
                };
                if let Some(watcher) = watcher {
                    watcher.abort();
                }
                outcome.map_err(|e| match e.downcast_ref::<NlError>() {
                    Some(NlError::Interrupted) => Cancelled.into(),
                    _ => e,
                })
            }
            cmd => self.execute_inner(cmd).await,
        };
        match outcome {
            Ok(()) => {}
            Err(e) if e.is::<Cancelled>() => eprintln!("cancelled (Ctrl-C)"),
            Err(e) => eprintln!("error: {e:#}"),
        }
    }

    /// Run SQL on a thread of its own while this one waits for it or for Ctrl-C, which
    /// interrupts DuckDB; the connection stays open for the next query.
    async fn query(&mut self, sql: String) -> Result<(QueryResult, Duration)> {
        self.engine()?;
        let mut engine = self.engine.take().expect("opened above");
        let interrupt = match engine.interrupt_handle() {
            Ok(handle) => handle,
            Err(e) => {
                self.engine = Some(engine);
                return Err(e.into());
            }
        };
        let started = Instant::now();
        let mut job = tokio::task::spawn_blocking(move || {
            let result = engine.run(&sql);
            (engine, result)
        });
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let hint = tokio::time::sleep(HINT_AFTER);
        tokio::pin!(hint);
        let mut hinted = false;
        let (engine, result, cancelled) = loop {
            tokio::select! {
                done = &mut job => {
                    let (engine, result) = done.context("the query's thread failed")?;
                    break (engine, result, false);
                }
                _ = &mut ctrl_c => {
                    let (engine, result) = tokio::select! {
                        done = &mut job => done.context("the query's thread failed")?,
                        never = keep_interrupting(|| interrupt.interrupt()) => match never {},
                    };
                    break (engine, result, true);
                }
                // A query that takes a while: say how to stop it.
                _ = &mut hint, if !hinted => {
                    hinted = true;
                    if std::io::stderr().is_terminal() {
                        eprintln!("… still running (Ctrl-C stops it)");
                    }
                }
            }
        };
        self.engine = Some(engine);
        if cancelled {
            return Err(Cancelled.into());
        }
        let result = result?;
        // A rebuild between queries: completion reads the new file's names.
        self.engine()?;
        Ok((result, started.elapsed()))
    }

    async fn question(&mut self, q: &str) -> Result<()> {
        let show = std::io::stderr().is_terminal();
        let answer = self.asker().await?.ask(q, show).await?;
        self.output
            .emit(&ask::render(&answer, self.output.format, false))?;
        self.last_sql = Some(answer.plan.sql);
        Ok(())
    }

    /// Run SQL and show its result, as a table (in the current format) or as a chart.
    async fn run_and_show(&mut self, sql: String, chart: bool) -> Result<()> {
        let (result, took) = self.query(sql).await?;
        if chart {
            let drawn = crate::chart::chart(&result, terminal_width().unwrap_or(80))?;
            self.output.emit(&drawn)?;
        } else {
            self.output.show(&result)?;
        }
        if self.output.timing {
            eprintln!("time: {:.1} ms", took.as_secs_f64() * 1000.0);
        }
        Ok(())
    }

    async fn execute_inner(&mut self, cmd: ReplCommand) -> Result<()> {
        match cmd {
            ReplCommand::Empty | ReplCommand::Quit | ReplCommand::Question(_) => {}
            ReplCommand::Help => println!("{HELP}"),
            ReplCommand::Sql(sql) => self.run_and_show(sql, false).await?,
            ReplCommand::Chart(sql) => self.run_and_show(sql, true).await?,
            ReplCommand::Format(None) => println!("format: {}", self.output.format.name()),
            ReplCommand::Format(Some(f)) => {
                self.output.format = f;
                println!("format: {}", f.name());
            }
            ReplCommand::Timing(on) => {
                self.output.timing = on.unwrap_or(!self.output.timing);
                println!("timing: {}", if self.output.timing { "on" } else { "off" });
            }
            ReplCommand::Expanded(x) => {
                self.output.expanded = x.unwrap_or(match self.output.expanded {
                    Expanded::On => Expanded::Off,
                    Expanded::Off | Expanded::Auto => Expanded::On,
                });
                println!(
                    "expanded display: {}",
                    match self.output.expanded {
                        Expanded::On => "on",
                        Expanded::Off => "off (tables fold to the terminal)",
                        Expanded::Auto => "auto (when a table is wider than the terminal)",
                    }
                );
            }
            ReplCommand::MaxRows(n) => {
                if let Some(n) = n {
                    self.output.max_rows = n;
                }
                println!("{}", self.output.max_rows_line());
            }
            ReplCommand::Output(None) => {
                if let Some((path, _)) = self.output.file.take() {
                    println!("results come here again ({} is closed)", path.display());
                } else {
                    println!("results come here");
                }
            }
            ReplCommand::Output(Some(path)) => {
                let file = std::fs::File::create(&path)
                    .with_context(|| format!("cannot write to {}", path.display()))?;
                println!(
                    "results go to {} (whole, in {}); \\o alone brings them back",
                    path.display(),
                    self.output.format.name()
                );
                self.output.file = Some((path, file));
            }
            ReplCommand::Describe(None) => {
                let engine = self.engine()?;
                for t in engine.describe()? {
                    let n = engine.run(&format!("SELECT count(*) FROM \"{}\"", t.name))?;
                    let rows = n.rows()[0][0].clone().unwrap_or_default();
                    println!(
                        "{:<18} {rows:>9} rows   {} columns",
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
