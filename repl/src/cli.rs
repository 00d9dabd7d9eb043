//! The command line: one clap subcommand per job.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use finq_analytics::query::{self, OutputFormat, QueryEngine, Trust};
use finq_core::config::PlaidEnv;
use finq_core::pipeline::Stages;

use crate::app::App;
use crate::manual::{parse_day, parse_money};
use finq_connectors::import::FileFormat;
use finq_connectors::manual::AccountType;

#[derive(Parser, Debug)]
#[command(
    name = "finq",
    version,
    about = "Local-first personal finance: Plaid → PostgreSQL → DuckDB, with SQL and plain-English questions"
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug). FINQ_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Zero-configuration tour: database, simulated bank, sync, transforms, mirror, report.
    #[command(after_help = "Examples:\n  finq demo\n  finq demo --transactions 100000 --seed 7")]
    Demo {
        /// Transactions to generate for the simulated bank.
        #[arg(long, default_value_t = 1000)]
        transactions: usize,
        /// Seed for the simulated data (same seed, same data).
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Link an institution. Production and sandbox: prints the address of the Link page of
    /// `finq serve`, where Plaid Link runs in your browser. The simulator (and sandbox with
    /// --institution) links at once, with no browser.
    #[command(
        after_help = "Examples:\n  finq link\n  finq link --institution ins_109512\n  finq link --update ITEM"
    )]
    Link {
        /// Link this institution without a browser (simulator, or Plaid Sandbox's
        /// /sandbox/public_token/create), e.g. ins_109508 (First Platypus Bank).
        #[arg(long)]
        institution: Option<String>,
        /// Repair an existing item's login instead (Link's update mode), e.g. after
        /// ITEM_LOGIN_REQUIRED.
        #[arg(long, value_name = "ITEM", conflicts_with = "institution")]
        update: Option<String>,
        /// Use the Link page of `finq serve` even with the simulator.
        #[arg(long, conflicts_with = "institution")]
        browser: bool,
    },
    /// Linked institutions: status, accounts, last sync, last error.
    #[command(
        after_help = "Examples:\n  finq items\n  finq items --json\n  finq items remove ITEM"
    )]
    Items {
        #[command(subcommand)]
        command: Option<ItemsCommand>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks (print one JSON object as their last line).
    #[command(
        after_help = "Examples:\n  finq bench pipeline --transactions 100000\n  finq bench webhooks --requests 5000"
    )]
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Pull new transactions for every linked institution.
    #[command(after_help = "Examples:\n  finq sync && finq mirror")]
    Sync {
        /// Print a JSON summary instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The batch pipeline for cron: sync every item, transforms, mirror. Exit code 1 if
    /// any connection failed.
    #[command(
        after_help = "Examples:\n  finq run\n  in a crontab: */30 * * * * finq run --json >> ~/finq-run.log"
    )]
    Run {
        /// Print a JSON summary instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Import a bank or card export (CSV, OFX, QFX) into a manual account, then bring it
    /// into the mirror. The file is read whole first: one unreadable row refuses it (line and
    /// column named) and nothing is stored. Rows imported before are recognised, so
    /// importing a file again, or a later export that overlaps it, adds only what is new.
    ///
    /// CSV layouts of Chase, Bank of America, American Express, Discover, Capital One and
    /// Citi are recognised from the header, as is any file with Date, Description and
    /// Amount (or Debit and Credit) columns; --columns names them otherwise.
    #[command(
        after_help = "Examples:\n  finq accounts add \"Visa\" --type credit && finq import ~/Downloads/visa.csv --account Visa\n  finq import statement.qfx --account Checking\n  finq import export.csv --account Visa --columns \"date=Posted,description=Memo,amount=-Charge\" --date-format %d/%m/%Y"
    )]
    Import {
        file: std::path::PathBuf,
        /// The manual account it belongs to (`finq accounts` lists them).
        #[arg(long)]
        account: String,
        /// csv, ofx or qfx (default: by the extension, else by the content).
        #[arg(long, value_parser = clap::value_parser!(FileFormat))]
        format: Option<FileFormat>,
        /// Where the values are: `date=…,description=…,amount=…` (or `debit=…,credit=…`
        /// in place of amount), each a header name or a column number from 1; `amount=-X`
        /// when charges are positive in column X.
        #[arg(long)]
        columns: Option<String>,
        /// The dates' form in strftime syntax, e.g. %d/%m/%Y (default: ISO, then US forms).
        #[arg(long)]
        date_format: Option<String>,
        /// Print a JSON summary instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Add one transaction by hand (cash, a cheque, anything no bank reports).
    #[command(
        after_help = "Examples:\n  finq add --amount -23.50 --description \"Farmers market\" --category Groceries\n  finq add --amount 120 --description \"Sold a bike\" --date 2026-11-03"
    )]
    Add {
        /// Statement sign: money out negative, money in positive (e.g. -12.50, 1200).
        #[arg(long, allow_hyphen_values = true, value_parser = parse_money)]
        amount: rust_decimal::Decimal,
        #[arg(long)]
        description: String,
        /// 2026-11-20, 11/20/2026, today, yesterday (default: today).
        #[arg(long, value_parser = parse_day)]
        date: Option<chrono::NaiveDate>,
        /// The manual account (default: Cash, made on first use).
        #[arg(long, default_value = "Cash")]
        account: String,
        /// The category's name (default: Uncategorized).
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        notes: Option<String>,
    },
    /// Manual accounts (cash, a card you import, a house, a loan) and their balances.
    #[command(
        after_help = "Examples:\n  finq accounts\n  finq accounts add House --type property --balance 450000\n  finq accounts balance House 465000"
    )]
    Accounts {
        #[command(subcommand)]
        command: Option<AccountsCommand>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Your categories: list them (with how many transactions each holds), add, rename,
    /// merge, delete.
    #[command(
        after_help = "Examples:\n  finq categories\n  finq categories add Coffee --parent Dining\n  finq categories merge \"Coffee Shops\" Coffee"
    )]
    Categories {
        #[command(subcommand)]
        command: Option<CategoriesCommand>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Put transactions in a category yourself: your edit beats rules and Plaid's mapping,
    /// and stays through re-syncs, a pending transaction posting, and re-linking.
    #[command(
        after_help = "Examples:\n  finq categorize plaid:8bQx3p Groceries\n  finq categorize manual:12 manual:13 Gifts\n  finq categorize --query \"SELECT id FROM transactions WHERE merchant = 'Blue Bottle Coffee'\" Coffee\n  finq categorize --undo plaid:8bQx3p"
    )]
    Categorize {
        /// Transaction ids (the id column of transactions), then the category (none with
        /// --undo).
        #[arg(value_name = "ID... CATEGORY", required_unless_present = "query")]
        args: Vec<String>,
        /// Categorize the transactions this DuckDB query returns (ids in its first column).
        #[arg(long)]
        query: Option<String>,
        /// Take your edit back: rules and Plaid's mapping decide the category again (a
        /// manual transaction is left without one of its own).
        #[arg(long)]
        undo: bool,
    },
    /// Rules that categorise transactions by merchant, description, amount or account.
    /// Rules apply to transactions as they arrive; `finq rules apply` applies them to all.
    /// Your own edits (`finq categorize`) beat rules; rules beat Plaid's mapping.
    #[command(
        after_help = "Examples:\n  finq rules\n  finq rules add Coffee --merchant \"blue bottle\" --apply\n  finq rules delete 3"
    )]
    Rules {
        #[command(subcommand)]
        command: Option<RulesCommand>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Money moved between your own accounts (credit-card payments, savings moves): both
    /// sides are marked `is_transfer` and left out of spending and income.
    #[command(
        after_help = "Examples:\n  finq transfers\n  finq transfers --json\n  finq transfers unmark plaid:8bQx3p"
    )]
    Transfers {
        #[command(subcommand)]
        command: Option<TransfersCommand>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Reports from the mirror, with a chart where a picture reads faster:
    /// spending and income by category and month, cash flow and net worth by month,
    /// recurring payments.
    #[command(
        after_help = "Examples:\n  finq report spending\n  finq report networth --months 24\n  finq report cashflow --format csv"
    )]
    Report {
        #[arg(value_enum)]
        kind: crate::report::ReportKind,
        /// How many months back, this one included.
        #[arg(long, default_value_t = 6)]
        months: u32,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Subscriptions and bills found from a regular cadence and similar amounts: cadence,
    /// typical amount, next expected date, monthly cost; price changes and missed payments
    /// flagged. (Also the `recurring` view in DuckDB.)
    #[command(
        after_help = "Examples:\n  finq recurring\n  finq recurring --format csv > bills.csv"
    )]
    Recurring {
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Export the transactions: CSV, Parquet, or a double-entry journal for hledger or
    /// beancount (the bank side with its statement-signed amount under assets: or
    /// liabilities:, the other side to the category; pending transactions flagged `!`).
    #[command(
        after_help = "Examples:\n  finq export --format hledger --output finq.journal && hledger -f finq.journal bal\n  finq export --format beancount --since 2026-01-01 --output finq.beancount\n  finq export --format parquet --output transactions.parquet"
    )]
    Export {
        #[arg(long, value_enum)]
        format: finq_analytics::export::ExportFormat,
        /// The file to write (only you can read it); standard output otherwise (not for
        /// Parquet).
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
        /// Only transactions from this date on.
        #[arg(long, value_parser = parse_day)]
        since: Option<chrono::NaiveDate>,
        /// Start each account with its balance before its first exported transaction
        /// (hledger, beancount), so the journal's balances match the bank's.
        #[arg(long)]
        opening_balances: bool,
    },
    /// Run DuckDB SQL on the mirror.
    #[command(
        after_help = "Examples:\n  finq sql \"SELECT merchant, -sum(amount) AS spent FROM transactions WHERE amount < 0 AND NOT is_transfer GROUP BY 1 ORDER BY 2 DESC LIMIT 10\"\n  finq sql \"SELECT * FROM net_worth ORDER BY date DESC LIMIT 7\" --format csv\n  finq sql \"SELECT date, net_worth FROM net_worth ORDER BY date\" --chart"
    )]
    Sql {
        /// The query, e.g. "SELECT category, sum(amount) FROM transactions GROUP BY 1".
        query: String,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// Draw the result instead: two columns, (label, number) as bars or (date,
        /// number) as a line.
        #[arg(long, conflicts_with = "format")]
        chart: bool,
    },
    /// Ask a question in plain English (needs Ollama): the model writes the query, DuckDB
    /// computes the numbers, and every number of the answer is checked against the rows.
    #[command(
        after_help = "Examples:\n  finq ask \"how much did I spend on eating out last month?\"\n  finq ask \"and the month before?\" --conversation 3\n  finq ask \"my biggest merchants this year\" --json"
    )]
    Ask {
        question: String,
        /// Continue this conversation (`finq chats` lists them); a new one otherwise.
        #[arg(long, value_name = "ID")]
        conversation: Option<i64>,
        /// Print one JSON object (question, sql, columns, rows, answer, numbers, …).
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// How the rows are printed.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// Also print the SQL the answer was computed with.
        #[arg(long)]
        sql: bool,
    },
    /// Measure how well the model answers: questions whose true result is known (bundled,
    /// or your own), asked through Ollama; prints each question's outcome, the shares of
    /// answers whose rows match the truth and whose numbers all verified, and a JSON line.
    #[command(after_help = "Examples:\n  finq demo && finq eval --model qwen2.5:7b")]
    Eval {
        /// A TOML file of `[[question]]` tables (`id`, `text`, `sql`, optional
        /// `follow_up = true`); the bundled set otherwise.
        #[arg(long, value_name = "FILE")]
        questions: Option<std::path::PathBuf>,
        /// The Ollama model (default: FINQ_MODEL / `ollama.model`).
        #[arg(long)]
        model: Option<String>,
    },
    /// Conversations with finq: list them, show one, delete one.
    #[command(after_help = "Examples:\n  finq chats\n  finq chats show 3\n  finq chats delete 3")]
    Chats {
        #[command(subcommand)]
        command: Option<ChatsCommand>,
    },
    /// Derive what changed and bring the DuckDB mirror up to date (what `finq run` does
    /// after syncing), or rebuild the mirror from scratch.
    #[command(after_help = "Examples:\n  finq mirror\n  finq mirror --rebuild --json")]
    Mirror {
        /// Rebuild it from scratch instead of applying what changed.
        #[arg(long)]
        rebuild: bool,
        /// Print a JSON summary instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The interactive REPL: SQL ending in `;` (Tab completes tables, columns, SQL words,
    /// and category and account names in quotes), `?question`, `\chart QUERY`,
    /// `\format table|csv|json|markdown|line`, `\x`, `\maxrows`, `\timing`, `\o FILE`,
    /// `\d [TABLE]`, `\help`, `\q`. Ctrl-C stops a running query or question.
    #[command(
        after_help = "Examples:\n  finq repl, then `SELECT count(*) FROM transactions;` or `?what did I spend on coffee last month`\n  finq repl < monthly.sql > monthly.txt"
    )]
    Repl,
    /// HTTP server for Plaid webhooks.
    #[command(
        after_help = "Examples:\n  finq serve\n  FINQ_WEBHOOK_URL=https://finq.example.org/plaid/webhook finq serve --addr 127.0.0.1:8080 (behind a TLS reverse proxy)"
    )]
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
    },
    /// The offline Plaid simulator.
    #[command(
        after_help = "Examples:\n  finq sim serve --seed 7 --transactions 5000 --faults rate_limit=0.1,server_error=0.05"
    )]
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// Check what finq needs, one line each with what to do when something is wrong:
    /// PostgreSQL, the data directory's and key file's permissions, migrations, the
    /// mirror's freshness, Ollama and the model, Plaid's credentials, the webhook URL.
    /// Exits non-zero when a check fails.
    #[command(
        after_help = "Examples:\n  finq doctor\n  OLLAMA_HOST=http://gpu-box:11434 finq doctor"
    )]
    Doctor,
    /// Tab completion of finq's commands and options for your shell, printed to standard
    /// output.
    #[command(
        after_help = "Examples:\n  finq completions bash > ~/.local/share/bash-completion/completions/finq\n  finq completions zsh > ~/.zfunc/_finq     (with fpath+=~/.zfunc in ~/.zshrc)\n  finq completions fish > ~/.config/fish/completions/finq.fish"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// finq's private PostgreSQL cluster (used when DATABASE_URL is unset).
    #[command(after_help = "Examples:\n  finq db status\n  finq db stop")]
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum CategoriesCommand {
    /// Every category (the default).
    List,
    /// A new category.
    #[command(after_help = "Examples:\n  finq categories add Coffee --parent Dining")]
    Add {
        name: String,
        /// Its parent category.
        #[arg(long)]
        parent: Option<String>,
        /// An income category.
        #[arg(long)]
        income: bool,
    },
    /// Rename a category; its transactions follow.
    Rename { old: String, new: String },
    /// Move everything in FROM (transactions, edits, mappings, rules) into INTO and delete
    /// FROM.
    Merge { from: String, into: String },
    /// Delete a category, moving what it holds into another (as merge).
    Delete {
        name: String,
        /// Where its transactions, edits, mappings and rules go.
        #[arg(long, value_name = "CATEGORY")]
        into: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Every rule, the one that wins first (the default).
    List,
    /// A new rule. Texts are found anywhere in the merchant's name or the description,
    /// case ignored (or are regular expressions with --regex); --min/--max bound the
    /// amount's size, whatever its sign.
    #[command(
        after_help = "Examples:\n  finq rules add Coffee --merchant \"blue bottle\"\n  finq rules add Rent --description \"ACME PROPERTY\" --min 1500 --apply\n  finq rules add Subscriptions --merchant \"netflix|spotify\" --regex --priority 10"
    )]
    Add {
        /// The category it puts transactions in.
        category: String,
        #[arg(long)]
        merchant: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// --merchant and --description are regular expressions (case ignored).
        #[arg(long)]
        regex: bool,
        /// The smallest amount (its size, e.g. 10 for -10.00 or 10.00).
        #[arg(long, value_parser = parse_money)]
        min: Option<rust_decimal::Decimal>,
        /// The largest amount (its size).
        #[arg(long, value_parser = parse_money)]
        max: Option<rust_decimal::Decimal>,
        /// Only this account (its name or id).
        #[arg(long)]
        account: Option<String>,
        /// Of several matching rules, the highest priority wins (then the newest).
        #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
        priority: i32,
        /// Apply the rules to every transaction you already have, too.
        #[arg(long)]
        apply: bool,
    },
    /// Apply the rules to every transaction (your own edits still win).
    Apply,
    /// Delete a rule; what it categorised goes back to Plaid's mapping.
    Delete { id: i64 },
}

#[derive(Subcommand, Debug)]
pub enum TransfersCommand {
    /// Every pair found, the latest first (the default).
    List,
    /// This pair is no transfer (ID: either side's transaction id); finq remembers it.
    Unmark { id: String },
}

#[derive(Subcommand, Debug)]
pub enum AccountsCommand {
    /// Every manual account with its latest balance (the default).
    List,
    /// A new manual account.
    #[command(
        after_help = "Examples:\n  finq accounts add Visa --type credit\n  finq accounts add House --type property --balance 450000\n  finq accounts add Mortgage --type loan --balance 310000 --as-of 2026-11-01"
    )]
    Add {
        name: String,
        /// cash, depository (checking, savings), credit, loan, investment, property, other.
        #[arg(long = "type", value_parser = clap::value_parser!(AccountType))]
        kind: AccountType,
        /// ISO currency code.
        #[arg(long, default_value = "USD")]
        currency: String,
        /// Its balance now; for credit and loan accounts the amount owed.
        #[arg(long, allow_hyphen_values = true, value_parser = parse_money)]
        balance: Option<rust_decimal::Decimal>,
        /// The day of --balance (default: today).
        #[arg(long, value_parser = parse_day, requires = "balance")]
        as_of: Option<chrono::NaiveDate>,
    },
    /// State a manual account's balance on a day (today by default).
    #[command(after_help = "Examples:\n  finq accounts balance House 465000 --as-of 2026-11-01")]
    Balance {
        name: String,
        /// For credit and loan accounts, the amount owed.
        #[arg(allow_hyphen_values = true, value_parser = parse_money)]
        amount: rust_decimal::Decimal,
        #[arg(long, value_parser = parse_day)]
        as_of: Option<chrono::NaiveDate>,
    },
    /// Give a manual account another name (its transactions follow).
    #[command(after_help = "Examples:\n  finq accounts rename Visa \"Visa (closed)\"")]
    Rename { name: String, new_name: String },
    /// Delete a manual account with its balances and transactions.
    #[command(
        after_help = "Examples:\n  finq accounts delete \"Old wallet\"\n  finq accounts delete Visa --yes    # also deletes the transactions imported into it"
    )]
    Delete {
        name: String,
        /// Delete it even though it has transactions: they go with it.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ChatsCommand {
    /// Every conversation, the latest first (the default).
    List,
    /// A conversation's questions and answers.
    Show { id: i64 },
    /// Delete a conversation.
    Delete { id: i64 },
}

#[derive(Subcommand, Debug)]
pub enum ItemsCommand {
    /// Point every item's webhooks at URL (default: FINQ_WEBHOOK_URL / `webhook_url`), through
    /// Plaid's `/item/webhook/update`.
    #[command(
        after_help = "Examples:\n  finq items webhook https://finq.example.org/plaid/webhook"
    )]
    Webhook { url: Option<String> },
    /// Remove an item at Plaid and delete its local data.
    Remove {
        item: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// The pipeline benchmark's dashboard queries on an existing mirror (default: yours),
    /// in process, warm, median of several.
    Queries {
        /// The DuckDB mirror file.
        #[arg(long)]
        mirror: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        /// Print the queries as JSON instead of running them (for other DuckDB clients).
        #[arg(long)]
        print_sql: bool,
    },
    /// `finq repl` as a whole process on a mirror (default: yours), from start to the
    /// prompt and out, median of several; beside it the same without a mirror.
    #[command(
        after_help = "Examples:\n  FINQ_DATA_DIR=/tmp/big finq demo --transactions 1000000 && FINQ_DATA_DIR=/tmp/big finq bench startup"
    )]
    Startup {
        /// The DuckDB mirror file.
        #[arg(long)]
        mirror: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 10)]
        repeat: usize,
    },
    /// The whole pipeline on N transactions: full mirror build, a run with nothing new, an
    /// incremental run after changes at the bank, and dashboard queries on DuckDB against
    /// PostgreSQL.
    Pipeline {
        #[arg(long, default_value_t = 1_000_000)]
        transactions: usize,
        /// Changes at the bank before each incremental run.
        #[arg(long, default_value_t = 1000)]
        changes: usize,
        /// Repetitions of each timed part (medians are reported).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
    /// `finq serve` under load: verified webhooks per second and the time to each answer
    /// with concurrent senders on loopback, and the time to each answer at a steady rate;
    /// then freshness, from the simulator firing
    /// SYNC_UPDATES_AVAILABLE for N changes on an item of T transactions to the job that
    /// brings them into DuckDB being done.
    Webhooks(crate::bench::webhooks::Options),
    /// Initial sync of N transactions from the simulator over loopback HTTP into PostgreSQL,
    /// against one-INSERT-per-row and plain COPY on a sample, plus an incremental update.
    Sync {
        #[arg(long, default_value_t = 1_000_000)]
        transactions: usize,
        /// Rows in the INSERT / COPY comparison sample.
        #[arg(long, default_value_t = 20_000)]
        sample: usize,
        /// Changes in the incremental update.
        #[arg(long, default_value_t = 500)]
        incremental: usize,
    },
}

#[derive(Subcommand, Debug)]
pub enum SimCommand {
    /// Serve the simulator; prints its base URL on the first line.
    Serve {
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Transactions generated per linked item.
        #[arg(long, default_value_t = 1000)]
        transactions: usize,
        /// Accept only this client id (default: any non-empty one).
        #[arg(long)]
        client_id: Option<String>,
        /// Accept only this secret (default: any non-empty one).
        #[arg(long)]
        secret: Option<String>,
        /// Injected faults, e.g. rate_limit=0.1,server_error=0.05,mutation=0.1,latency_ms=20,drop=0.02,per_item_limit=50
        #[arg(long, default_value = "")]
        faults: finq_connectors::sim::Faults,
    },
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Where the database is and whether it runs.
    Status,
    /// Stop the private PostgreSQL server.
    Stop,
}

impl Command {
    /// Whether the command is a long-running server or the REPL: those keep writing to a
    /// closed pipe an error, not the end of the process.
    pub fn serves(&self) -> bool {
        matches!(
            self,
            Command::Serve { .. } | Command::Sim { .. } | Command::Repl
        )
    }
}

pub async fn run(cli: Cli) -> Result<ExitCode> {
    // An install from before finq made its files owner-only is tightened now. A command
    // whose settings do not load says so itself.
    // (`finq doctor` reports the permissions as it finds them.)
    if !matches!(cli.command, Command::Doctor)
        && let Ok(settings) = finq_core::config::Settings::load()
    {
        crate::app::tighten(&settings.data_dir);
    }
    match cli.command {
        Command::Demo { transactions, seed } => crate::demo::run(transactions, seed).await,
        Command::Link {
            update: Some(item),
            browser,
            ..
        } => {
            let app = App::open().await?;
            crate::items::update(&app, &item, browser).await
        }
        Command::Link {
            institution,
            update: None,
            browser,
        } => {
            let app = App::open().await?;
            let env = app.settings.plaid.env;
            let institution = match institution {
                Some(i) if env == PlaidEnv::Production => anyhow::bail!(
                    "--institution {i} links without a browser, which Plaid allows in its sandbox only: run `finq link` for the Link page"
                ),
                Some(i) => i,
                None if browser || env != PlaidEnv::Sim => {
                    crate::items::print_link_page(&app, None).await;
                    return Ok(ExitCode::SUCCESS);
                }
                None => "ins_109508".to_string(),
            };
            let linked = finq_connectors::plaid::connect::link(
                &app.pool,
                &app.vault,
                &app.settings,
                &institution,
                None,
            )
            .await?;
            println!(
                "Linked {} ({}): item {} with {} accounts. Run `finq sync` to pull transactions.",
                linked.institution_name, linked.institution_id, linked.item_id, linked.accounts
            );
            for old in &linked.replaced {
                println!(
                    "This login was linked before as item {old}: that item was removed and your edits will carry over."
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Items {
            command: None,
            json,
        } => {
            let app = App::open().await?;
            crate::items::list(&app, json).await
        }
        Command::Items {
            command: Some(ItemsCommand::Webhook { url }),
            ..
        } => {
            let app = App::open().await?;
            crate::items::set_webhook(&app, url).await
        }
        Command::Items {
            command: Some(ItemsCommand::Remove { item, yes }),
            ..
        } => {
            let app = App::open().await?;
            crate::items::remove(&app, &item, yes).await
        }
        Command::Bench {
            command: BenchCommand::Queries {
                print_sql: true, ..
            },
        } => crate::bench::print_queries(),
        Command::Bench {
            command: BenchCommand::Queries { mirror, repeat, .. },
        } => {
            let mirror = match mirror {
                Some(m) => m,
                None => finq_analytics::mirror_path(&finq_core::config::Settings::load()?)?,
            };
            crate::bench::queries(&mirror, repeat)
        }
        Command::Bench {
            command: BenchCommand::Startup { mirror, repeat },
        } => {
            let mirror = match mirror {
                Some(m) => m,
                None => finq_analytics::mirror_path(&finq_core::config::Settings::load()?)?,
            };
            crate::bench::startup(&mirror, repeat)
        }
        Command::Bench {
            command:
                BenchCommand::Pipeline {
                    transactions,
                    changes,
                    repeat,
                },
        } => crate::bench::pipeline(transactions, changes, repeat).await,
        Command::Bench {
            command:
                BenchCommand::Sync {
                    transactions,
                    sample,
                    incremental,
                },
        } => crate::bench::sync(transactions, sample, incremental).await,
        Command::Bench {
            command: BenchCommand::Webhooks(options),
        } => crate::bench::webhooks::run(options).await,
        Command::Sync { json } => {
            let app = App::open().await?;
            let report = crate::pipeline::run(&app, Stages::Sources, None, !json).await?;
            crate::pipeline::note_no_items(&report, json);
            let code = crate::pipeline::print_report(&report, json)?;
            if !json && report.ok() && !report.steps.is_empty() {
                eprintln!("(the DuckDB mirror is refreshed by `finq run`)");
            }
            Ok(code)
        }
        Command::Run { json } => {
            let app = App::open().await?;
            let report = crate::pipeline::run(&app, Stages::All, None, !json).await?;
            crate::pipeline::note_no_items(&report, json);
            crate::pipeline::print_report(&report, json)
        }
        Command::Import {
            file,
            account,
            format,
            columns,
            date_format,
            json,
        } => {
            let app = App::open().await?;
            let args = crate::manual::ImportArgs {
                file,
                account,
                format,
                columns,
                date_format,
                json,
            };
            crate::manual::import(&app, args).await
        }
        Command::Add {
            amount,
            description,
            date,
            account,
            category,
            notes,
        } => {
            let app = App::open().await?;
            let args = crate::manual::AddArgs {
                amount,
                description,
                date,
                account,
                category,
                notes,
            };
            crate::manual::add(&app, args).await
        }
        Command::Accounts { command, json } => {
            let app = App::open().await?;
            let today = || chrono::Local::now().date_naive();
            match command.unwrap_or(AccountsCommand::List) {
                AccountsCommand::List => crate::manual::list(&app, json).await,
                AccountsCommand::Add {
                    name,
                    kind,
                    currency,
                    balance,
                    as_of,
                } => {
                    let balance = balance.map(|b| (b, as_of.unwrap_or_else(today)));
                    crate::manual::create(&app, &name, kind, &currency, balance).await
                }
                AccountsCommand::Balance {
                    name,
                    amount,
                    as_of,
                } => {
                    crate::manual::set_balance(&app, &name, amount, as_of.unwrap_or_else(today))
                        .await
                }
                AccountsCommand::Rename { name, new_name } => {
                    crate::manual::rename(&app, &name, &new_name).await
                }
                AccountsCommand::Delete { name, yes } => {
                    crate::manual::delete(&app, &name, yes).await
                }
            }
        }
        Command::Categories { command, json } => {
            let app = App::open().await?;
            use crate::categories as c;
            match command.unwrap_or(CategoriesCommand::List) {
                CategoriesCommand::List => c::list(&app, json).await,
                CategoriesCommand::Add {
                    name,
                    parent,
                    income,
                } => c::add(&app, &name, parent.as_deref(), income).await,
                CategoriesCommand::Rename { old, new } => c::rename(&app, &old, &new).await,
                CategoriesCommand::Merge { from, into }
                | CategoriesCommand::Delete { name: from, into } => {
                    c::merge(&app, &from, &into).await
                }
            }
        }
        Command::Categorize { args, query, undo } => {
            let app = App::open().await?;
            crate::categories::categorize(&app, args, query, undo).await
        }
        Command::Rules { command, json } => {
            let app = App::open().await?;
            use crate::categories as c;
            match command.unwrap_or(RulesCommand::List) {
                RulesCommand::List => c::list_rules(&app, json).await,
                RulesCommand::Add {
                    category,
                    merchant,
                    description,
                    regex,
                    min,
                    max,
                    account,
                    priority,
                    apply,
                } => {
                    let args = c::RuleArgs {
                        category,
                        merchant,
                        description,
                        regex,
                        min,
                        max,
                        account,
                        priority,
                        apply,
                    };
                    c::add_rule(&app, args).await
                }
                RulesCommand::Apply => c::apply(&app).await,
                RulesCommand::Delete { id } => c::delete_rule(&app, id).await,
            }
        }
        Command::Transfers { command, json } => {
            let app = App::open().await?;
            match command.unwrap_or(TransfersCommand::List) {
                TransfersCommand::List => crate::transfers::list(&app, json).await,
                TransfersCommand::Unmark { id } => crate::transfers::unmark(&app, &id).await,
            }
        }
        Command::Report {
            kind,
            months,
            format,
        } => {
            let settings = finq_core::config::Settings::load()?;
            crate::report::report(
                &finq_analytics::mirror_path(&settings)?,
                kind,
                months,
                format,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Recurring { format } => {
            let settings = finq_core::config::Settings::load()?;
            crate::report::recurring(&finq_analytics::mirror_path(&settings)?, format)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Export {
            format,
            output,
            since,
            opening_balances,
        } => {
            let settings = finq_core::config::Settings::load()?;
            crate::report::export(
                &finq_analytics::mirror_path(&settings)?,
                format,
                output.as_deref(),
                since,
                opening_balances,
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sql {
            query: sql,
            format,
            chart,
        } => {
            let settings = finq_core::config::Settings::load()?;
            let mut engine =
                QueryEngine::open(&finq_analytics::mirror_path(&settings)?, Trust::User)?;
            let result = engine.run(&sql).context("the query failed")?;
            let width = crate::repl::terminal_width();
            let text = if chart {
                crate::chart::chart(&result, width.unwrap_or(80))?
            } else {
                // To a terminal: folded to its width, or a record at a time; every row.
                let layout = query::Layout {
                    width,
                    ..query::Layout::default()
                };
                query::render_with(&result, format, &layout)
            };
            println!("{}", text.trim_end());
            Ok(ExitCode::SUCCESS)
        }
        Command::Ask {
            question,
            conversation,
            json,
            format,
            sql,
        } => {
            let app = App::open().await?;
            let mut asker = crate::ask::Asker::new(&app.settings, app.pool.clone())?;
            if let Some(id) = conversation {
                asker.resume(id).await?;
            }
            let answer = asker
                .ask(&question, !json && std::io::stderr().is_terminal())
                .await?;
            if json {
                let value = crate::ask::to_json(&answer, asker.conversation);
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print!("{}", crate::ask::render(&answer, format, sql));
                if let Some(id) = asker.conversation {
                    eprintln!(
                        "(conversation {id}: `finq ask \"…\" --conversation {id}` follows up)"
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval { questions, model } => {
            let settings = finq_core::config::Settings::load()?;
            let text = match &questions {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                None => finq_analytics::nl::eval::BUNDLED.to_string(),
            };
            let list = finq_analytics::nl::eval::parse(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{}: {e}",
                    questions
                        .as_ref()
                        .map_or("the bundled questions".into(), |p| p.display().to_string())
                )
            })?;
            let model = model.unwrap_or_else(|| settings.model.clone());
            crate::ask::eval(&settings, &model, &list).await
        }
        Command::Chats { command } => {
            let app = App::open().await?;
            use finq_analytics::nl::chats;
            match command.unwrap_or(ChatsCommand::List) {
                ChatsCommand::List => {
                    print!(
                        "{}",
                        crate::ask::render_conversations(&chats::list(&app.pool).await?)
                    );
                }
                ChatsCommand::Show { id } => {
                    if !chats::exists(&app.pool, id).await? {
                        return Err(crate::ask::no_conversation(id));
                    }
                    print!(
                        "{}",
                        crate::ask::render_turns(&chats::turns(&app.pool, id).await?)
                    );
                }
                ChatsCommand::Delete { id } => {
                    if !chats::delete(&app.pool, id).await? {
                        return Err(crate::ask::no_conversation(id));
                    }
                    println!("conversation {id} deleted");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Mirror { rebuild, json } => {
            let app = App::open().await?;
            // What the transforms have not derived yet first, then the mirror.
            let report = crate::pipeline::run(&app, Stages::Derive, None, !json).await?;
            if !rebuild || !report.ok() {
                return crate::pipeline::print_report(&report, json);
            }
            // Every DuckDB sink `finq.toml` lists (the default mirror when it lists none).
            let mut rebuilt_all = Vec::new();
            for sink in finq_analytics::SinkConfig::from_settings(&app.settings)? {
                let finq_analytics::SinkPlugin::Duckdb(mirror) = sink.build(&app.settings);
                let rebuilt = mirror.rebuild(&app.pool).await?;
                if !json {
                    println!(
                        "{}: rebuilt, {} transactions (at change {})",
                        mirror.path().display(),
                        rebuilt.rows,
                        rebuilt.position
                    );
                }
                rebuilt_all.push(rebuilt);
            }
            if json {
                match rebuilt_all.as_slice() {
                    [one] => println!("{}", serde_json::to_string_pretty(one)?),
                    all => println!("{}", serde_json::to_string_pretty(all)?),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Repl => crate::repl::run().await.map(|()| ExitCode::SUCCESS),
        Command::Serve { addr } => {
            let app = App::open().await?;
            crate::server::serve(app, addr).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sim {
            command:
                SimCommand::Serve {
                    addr,
                    seed,
                    transactions,
                    client_id,
                    secret,
                    faults,
                },
        } => {
            let sim = finq_connectors::sim::Simulator::new(finq_connectors::sim::SimConfig {
                seed,
                transactions,
                client_id,
                secret,
                faults,
                ..Default::default()
            });
            let server = sim
                .serve(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            println!("{}", server.base_url);
            eprintln!(
                "Plaid simulator listening (seed {seed}, {transactions} transactions per item). Ctrl-C stops it."
            );
            tokio::signal::ctrl_c().await?;
            server.stop().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor => {
            let settings = finq_core::config::Settings::load()?;
            Ok(crate::doctor::run(&settings).await)
        }
        Command::Completions { shell } => {
            use std::io::Write;
            // Generated whole first: written straight to a closed pipe, the generator panics.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "finq", &mut script);
            match std::io::stdout().write_all(&script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(e).context("cannot write the completions")
                }
                _ => Ok(ExitCode::SUCCESS),
            }
        }
        Command::Db { command } => crate::app::db_command(command).await,
    }
}
