//! The command line: one clap subcommand per job.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use finq_analytics::query::{self, OutputFormat, QueryEngine, Trust};
use finq_core::config::PlaidEnv;
use finq_core::pipeline::Stages;

use crate::app::App;

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
    ///
    /// Examples: finq link; finq link --institution ins_109512; finq link --update ITEM
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
    Items {
        #[command(subcommand)]
        command: Option<ItemsCommand>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks (print one JSON object as their last line).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Pull new transactions for every linked institution.
    Sync {
        /// Print a JSON summary instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The batch pipeline for cron: sync every item, transforms, mirror. Exit code 1 if
    /// any connection failed.
    Run {
        /// Print a JSON summary instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run DuckDB SQL on the mirror.
    Sql {
        /// The query, e.g. "SELECT category, sum(amount) FROM transactions GROUP BY 1".
        query: String,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Ask a question in plain English (needs Ollama): the model writes the query, DuckDB
    /// computes the numbers, and every number of the answer is checked against the rows.
    ///
    /// Examples:
    ///   finq ask "how much did I spend on eating out last month?"
    ///   finq ask "and the month before?" --conversation 3
    ///   finq ask "my biggest merchants this year" --json
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
    ///
    /// Example: finq demo && finq eval --model qwen2.5:7b
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
    Chats {
        #[command(subcommand)]
        command: Option<ChatsCommand>,
    },
    /// Derive what changed and bring the DuckDB mirror up to date (what `finq run` does
    /// after syncing), or rebuild the mirror from scratch.
    Mirror {
        /// Rebuild it from scratch instead of applying what changed.
        #[arg(long)]
        rebuild: bool,
        /// Print a JSON summary instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The interactive REPL: SQL ending in `;`, `?question`, `\d`, `\help`, `\q`.
    Repl,
    /// HTTP server for Plaid webhooks.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
    },
    /// The offline Plaid simulator.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// finq's private PostgreSQL cluster (used when DATABASE_URL is unset).
    Db {
        #[command(subcommand)]
        command: DbCommand,
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
    ///
    /// Example: finq items webhook https://finq.example.org/plaid/webhook
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
    /// with concurrent senders on loopback; then freshness, from the simulator firing
    /// SYNC_UPDATES_AVAILABLE for N changes on an item of T transactions to the job that
    /// brings them into DuckDB being done.
    Webhooks {
        #[arg(long, default_value_t = 1_000_000)]
        transactions: usize,
        /// Changes at the bank for each freshness measurement.
        #[arg(long, default_value_t = 500)]
        changes: usize,
        /// Webhooks sent in the load test.
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// Senders at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Freshness measurements (the median and the worst are reported).
        #[arg(long, default_value_t = 5)]
        repeat: usize,
    },
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

pub async fn run(cli: Cli) -> Result<ExitCode> {
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
                None => finq_core::config::Settings::load()?.duckdb_path(),
            };
            crate::bench::queries(&mirror, repeat)
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
            command:
                BenchCommand::Webhooks {
                    transactions,
                    changes,
                    requests,
                    concurrency,
                    repeat,
                },
        } => {
            crate::bench::webhooks::run(transactions, changes, requests, concurrency, repeat).await
        }
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
        Command::Sql { query: sql, format } => {
            let settings = finq_core::config::Settings::load()?;
            let mut engine = QueryEngine::open(&settings.duckdb_path(), Trust::User)?;
            let result = engine.run(&sql).context("the query failed")?;
            println!("{}", query::render(&result, format).trim_end());
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
            let mirror = finq_analytics::mirror::DuckMirror::new(app.settings.duckdb_path());
            let rebuilt = mirror.rebuild(&app.pool).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rebuilt)?);
            } else {
                println!(
                    "{}: rebuilt, {} transactions (at change {})",
                    mirror.path().display(),
                    rebuilt.rows,
                    rebuilt.position
                );
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
        Command::Db { command } => crate::app::db_command(command).await,
    }
}
