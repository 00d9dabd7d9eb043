//! What a person types at the prompt, parsed: SQL, a question, or a backslash command.

use std::path::PathBuf;
use std::str::FromStr;

use finq_analytics::query::{Expanded, OutputFormat};

pub const HELP: &str = "\
  SELECT ... ;          run DuckDB SQL on the mirror (end with ; — it may span lines)
  ? question            ask in plain English (Ollama writes the query, DuckDB computes the
                        numbers, finq checks every number of the answer); follow-ups
                        continue the conversation
  \\chart QUERY          draw a result: (label, number) as bars, (date, number) as a line
  \\d [TABLE]            list tables, or describe one
  \\format [FORMAT]      table, csv, json, markdown or line
  \\x [on|off|auto]      one record at a time: always, never (fold to the terminal), or
                        when the table is wider than the terminal (the default)
  \\maxrows [N]          show at most N rows of a table (default 40; 0 shows all)
  \\timing [on|off]      print how long each query took
  \\o [FILE]             send results to FILE (whole, never cut); \\o alone: back here
  \\new                  start a new conversation
  \\history              this conversation's questions and answers
  \\sql                  the SQL of the last answer
  \\help                 this help
  \\q                    quit (or Ctrl-D)

Tab completes commands, tables, columns, SQL words and functions, and category and
account names inside quotes. Ctrl-C stops a running query or question; at the prompt it
clears the line.

Tables: transactions (amount: money in positive, money out negative), accounts, categories,
items, balance_snapshots, transfers, sync_log; views recurring, balance_history, net_worth.";

/// The backslash commands, for completion.
pub const COMMANDS: &[&str] = &[
    "\\chart",
    "\\d",
    "\\format",
    "\\help",
    "\\history",
    "\\maxrows",
    "\\new",
    "\\o",
    "\\q",
    "\\sql",
    "\\timing",
    "\\x",
];

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
    Chart(String),
    /// `None`: show the current one.
    Format(Option<OutputFormat>),
    /// `None`: toggle.
    Timing(Option<bool>),
    /// `None`: back to the terminal.
    Output(Option<PathBuf>),
    /// `None`: toggle between on and off.
    Expanded(Option<Expanded>),
    /// `None`: show the current limit.
    MaxRows(Option<usize>),
}

fn on_off(word: &str) -> Result<bool, String> {
    match word.to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(format!("`{word}`: say on or off")),
    }
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
        let Some(meta) = s.strip_prefix('\\') else {
            return Ok(ReplCommand::Sql(s.trim_end_matches(';').trim().to_string()));
        };
        let (name, rest) = match meta.split_once(char::is_whitespace) {
            Some((name, rest)) => (name, rest.trim()),
            None => (meta, ""),
        };
        let arg = rest.trim_end_matches(';').trim();
        let no_arg = |cmd: ReplCommand| {
            if arg.is_empty() {
                Ok(cmd)
            } else {
                Err(format!("`\\{name}` takes nothing after it"))
            }
        };
        match name {
            "q" | "quit" => no_arg(ReplCommand::Quit),
            "help" | "h" | "?" => no_arg(ReplCommand::Help),
            "new" => no_arg(ReplCommand::NewConversation),
            "history" => no_arg(ReplCommand::History),
            "sql" => no_arg(ReplCommand::ShowSql),
            "d" if arg.is_empty() => Ok(ReplCommand::Describe(None)),
            "d" if !arg.contains(char::is_whitespace) => {
                Ok(ReplCommand::Describe(Some(arg.to_string())))
            }
            "d" => Err("`\\d` takes one table name: `\\d transactions`".into()),
            "chart" if arg.is_empty() => Err(
                "`\\chart` needs a query, e.g. `\\chart SELECT category, -sum(amount) FROM transactions WHERE amount < 0 GROUP BY 1 ORDER BY 2 DESC LIMIT 10`"
                    .into(),
            ),
            "chart" => Ok(ReplCommand::Chart(arg.to_string())),
            "format" | "mode" if arg.is_empty() => Ok(ReplCommand::Format(None)),
            "format" | "mode" => arg.parse().map(|f| ReplCommand::Format(Some(f))),
            "timing" if arg.is_empty() => Ok(ReplCommand::Timing(None)),
            "timing" => on_off(arg).map(|b| ReplCommand::Timing(Some(b))),
            "o" | "output" if arg.is_empty() => Ok(ReplCommand::Output(None)),
            "o" | "output" => Ok(ReplCommand::Output(Some(PathBuf::from(arg)))),
            "x" if arg.is_empty() => Ok(ReplCommand::Expanded(None)),
            "x" if arg.eq_ignore_ascii_case("auto") => {
                Ok(ReplCommand::Expanded(Some(Expanded::Auto)))
            }
            "x" => on_off(arg).map(|b| {
                ReplCommand::Expanded(Some(if b { Expanded::On } else { Expanded::Off }))
            }),
            "maxrows" if arg.is_empty() => Ok(ReplCommand::MaxRows(None)),
            "maxrows" => arg
                .parse()
                .map(|n| ReplCommand::MaxRows(Some(n)))
                .map_err(|_| format!("`{arg}`: \\maxrows takes a number (0 shows every row)")),
            _ => Err(format!(
                "unknown command `\\{name}`; \\help lists the commands"
            )),
        }
    }
}

/// Whether the buffer is a whole entry yet: backslash commands and questions are one
/// line; SQL runs once it ends with `;` (outside quotes and comments).
pub fn is_complete(input: &str) -> bool {
    let s = input.trim();
    s.is_empty() || s.starts_with('\\') || s.starts_with('?') || ends_statement(s)
}

fn ends_statement(s: &str) -> bool {
    let mut quote: Option<char> = None;
    let mut last_semicolon = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                last_semicolon = false;
            }
            None if c == '-' && chars.peek() == Some(&'-') => {
                // A comment to the end of the line.
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            None if c == ';' => last_semicolon = true,
            None if c.is_whitespace() => {}
            None => last_semicolon = false,
        }
    }
    quote.is_none() && last_semicolon
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
            "\\d accounts;".parse(),
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
        assert_eq!(
            "\\chart SELECT a, b FROM t;".parse(),
            Ok(ReplCommand::Chart("SELECT a, b FROM t".into()))
        );
        assert_eq!(
            "\\format markdown".parse(),
            Ok(ReplCommand::Format(Some(OutputFormat::Markdown)))
        );
        assert_eq!("\\format".parse(), Ok(ReplCommand::Format(None)));
        assert_eq!("\\timing on".parse(), Ok(ReplCommand::Timing(Some(true))));
        assert_eq!("\\timing".parse(), Ok(ReplCommand::Timing(None)));
        assert_eq!(
            "\\o out.csv".parse(),
            Ok(ReplCommand::Output(Some("out.csv".into())))
        );
        assert_eq!("\\o".parse(), Ok(ReplCommand::Output(None)));
        assert_eq!(
            "\\x auto".parse(),
            Ok(ReplCommand::Expanded(Some(Expanded::Auto)))
        );
        assert_eq!(
            "\\x off".parse(),
            Ok(ReplCommand::Expanded(Some(Expanded::Off)))
        );
        assert_eq!("\\maxrows 0".parse(), Ok(ReplCommand::MaxRows(Some(0))));
        for bad in [
            "\\nope",
            "?",
            "\\format xml",
            "\\timing maybe",
            "\\maxrows lots",
            "\\chart",
            "\\q now",
            "\\d a b",
        ] {
            assert!(bad.parse::<ReplCommand>().is_err(), "{bad}");
        }
        // The errors say what to do.
        assert!(
            "\\format xml"
                .parse::<ReplCommand>()
                .unwrap_err()
                .contains("table, csv, json, markdown or line")
        );
    }

    #[test]
    fn multi_line_sql_waits_for_semicolon() {
        assert!(!is_complete("SELECT *"));
        assert!(!is_complete("SELECT *\nFROM transactions"));
        assert!(is_complete("SELECT *\nFROM transactions;"));
        assert!(is_complete("SELECT 1;  "));
        assert!(!is_complete("SELECT ';"));
        assert!(!is_complete("SELECT 1 -- done;"));
        assert!(is_complete("SELECT 1; -- done"));
        assert!(is_complete("\\d"));
        assert!(is_complete("? what did I spend"));
        assert!(is_complete("   "));
    }
}
