//! `finq doctor`: what finq needs, checked one by one, each with a line saying how it
//! stands and, when it fails, what to do. Nothing is changed (the private PostgreSQL is
//! started if it exists, as any command would); the exit status is non-zero when a check
//! fails.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use finq_analytics::query::{QueryEngine, Trust};
use finq_core::config::{PlaidEnv, Settings};
use finq_core::local_pg::{ClusterState, LocalPostgres};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Works, but something is worth knowing (not a failure).
    Warn,
    Fail,
    /// Does not apply to this set-up.
    Skip,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do (for warnings and failures).
    pub fix: Option<String>,
}

fn check(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
        fix: None,
    }
}

impl Check {
    fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }
}

/// One line per check (and one more with what to do).
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        out.push_str(&format!(
            "{}  {:<15} {}\n",
            c.status.label(),
            c.name,
            c.detail
        ));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("      {:<15} → {fix}\n", ""));
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warned = checks.iter().filter(|c| c.status == Status::Warn).count();
    out.push_str(&match (failed, warned) {
        (0, 0) => "\nEverything finq needs is in order.\n".to_string(),
        (0, w) => format!("\nNothing failed; {w} warning{}.\n", plural(w)),
        (f, _) => format!("\n{f} check{} failed.\n", plural(f)),
    });
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

pub async fn run(settings: &Settings) -> ExitCode {
    let checks = checks(settings).await;
    print!("{}", render(&checks));
    if checks.iter().any(|c| c.status == Status::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

pub async fn checks(settings: &Settings) -> Vec<Check> {
    let mut checks = vec![data_dir(settings), key_file(settings)];
    let (postgres, pool) = postgres(settings).await;
    checks.push(postgres);
    checks.push(match &pool {
        Some(pool) => migrations(pool).await,
        None => check("migrations", Status::Skip, "no database to look at"),
    });
    checks.push(mirror(settings, pool.as_ref()).await);
    checks.push(ollama(settings).await);
    checks.push(plaid(settings).await);
    checks.push(webhook(settings).await);
    checks
}

fn mode_of(path: &Path) -> Option<(u32, u32)> {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.permissions().mode() & 0o777, m.uid()))
}

fn data_dir(settings: &Settings) -> Check {
    let dir = &settings.data_dir;
    let me = nix::unistd::geteuid().as_raw();
    let Some((mode, owner)) = mode_of(dir) else {
        return check(
            "data directory",
            Status::Warn,
            format!("{} does not exist yet", dir.display()),
        )
        .fix("`finq demo` or `finq link` creates it");
    };
    if owner != me {
        return check(
            "data directory",
            Status::Fail,
            format!("{} belongs to user id {owner}, not to you", dir.display()),
        )
        .fix("run finq as the user who owns it, or set FINQ_DATA_DIR to a directory of yours");
    }
    // 0701: the private PostgreSQL runs as another user (finq under root) and must pass.
    if mode & 0o077 != 0 && mode != 0o701 {
        return check(
            "data directory",
            Status::Fail,
            format!(
                "{} is {mode:04o}: other users of this machine can read your data",
                dir.display()
            ),
        )
        .fix(format!(
            "`chmod 700 {}` (any other finq command does it for you)",
            dir.display()
        ));
    }
    let loose: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| mode_of(&e.path()).is_some_and(|(m, _)| m & 0o077 != 0))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if !loose.is_empty() {
        return check(
            "data directory",
            Status::Fail,
            format!("others may read {} in {}", loose.join(", "), dir.display()),
        )
        .fix("`chmod 600` them (any other finq command does it for you)");
    }
    check(
        "data directory",
        Status::Ok,
        format!("{} ({mode:04o}, files 0600)", dir.display()),
    )
}

fn key_file(settings: &Settings) -> Check {
    if settings.encryption_key.is_some() {
        return check(
            "key file",
            Status::Ok,
            "the key comes from FINQ_ENCRYPTION_KEY",
        );
    }
    let path = settings.data_dir.join(finq_core::vault::KEY_FILE_NAME);
    match mode_of(&path) {
        None => check(
            "key file",
            Status::Skip,
            format!(
                "no {} yet (made when a bank is first linked)",
                path.display()
            ),
        ),
        Some((mode, _)) if mode & 0o077 != 0 => check(
            "key file",
            Status::Fail,
            format!(
                "{} is {mode:04o}: whoever reads it can decrypt your bank access tokens",
                path.display()
            ),
        )
        .fix(format!("`chmod 600 {}`", path.display())),
        Some((mode, _)) => check(
            "key file",
            Status::Ok,
            format!("{} ({mode:04o})", path.display()),
        ),
    }
}

async fn connect(opts: PgConnectOptions) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(opts)
        .await
}

async fn server_version(pool: &PgPool) -> String {
    sqlx::query_scalar::<_, String>("SHOW server_version")
        .fetch_one(pool)
        .await
        .map(|v| format!("PostgreSQL {v}"))
        .unwrap_or_else(|_| "PostgreSQL".into())
}

async fn postgres(settings: &Settings) -> (Check, Option<PgPool>) {
    if let Some(url) = &settings.database_url {
        let opts = match PgConnectOptions::from_str(url.expose_secret()) {
            Ok(o) => o,
            Err(e) => {
                return (
                    check(
                        "PostgreSQL",
                        Status::Fail,
                        format!("DATABASE_URL is not a PostgreSQL URL: {e}"),
                    )
                    .fix("e.g. postgres://user@127.0.0.1:5432/finq, or unset it to use finq's own database"),
                    None,
                );
            }
        };
        let target = finq_core::db::describe(&opts);
        return match connect(opts).await {
            Ok(pool) => (
                check(
                    "PostgreSQL",
                    Status::Ok,
                    format!("DATABASE_URL ({target}), {}", server_version(&pool).await),
                ),
                Some(pool),
            ),
            Err(e) => (
                check(
                    "PostgreSQL",
                    Status::Fail,
                    format!("cannot connect to DATABASE_URL ({target}): {e}"),
                )
                .fix("start that server, or correct DATABASE_URL, or unset it to use finq's own database"),
                None,
            ),
        };
    }
    let local = match LocalPostgres::new(&settings.data_dir) {
        Ok(l) => l,
        Err(e) => {
            return (
                check("PostgreSQL", Status::Fail, e.to_string()).fix(
                    "install PostgreSQL (Debian: `apt-get install postgresql`) or set DATABASE_URL",
                ),
                None,
            );
        }
    };
    let binaries = local.bin_dir().display().to_string();
    match local.state() {
        Ok(ClusterState::Absent) => (
            check(
                "PostgreSQL",
                Status::Warn,
                format!("binaries in {binaries}; finq's private database is not created yet"),
            )
            .fix("`finq demo` or `finq link` creates it"),
            None,
        ),
        Err(e) => (
            check("PostgreSQL", Status::Fail, e.to_string())
                .fix(format!("see {}", local.log_file().display())),
            None,
        ),
        Ok(_) => match local.ensure_running().await {
            Ok(opts) => match connect(opts).await {
                Ok(pool) => (
                    check(
                        "PostgreSQL",
                        Status::Ok,
                        format!(
                            "finq's private database, running; {} (binaries in {binaries})",
                            server_version(&pool).await
                        ),
                    ),
                    Some(pool),
                ),
                Err(e) => (
                    check(
                        "PostgreSQL",
                        Status::Fail,
                        format!("the private server runs but refuses connections: {e}"),
                    )
                    .fix(format!("see {}", local.log_file().display())),
                    None,
                ),
            },
            Err(e) => (
                check(
                    "PostgreSQL",
                    Status::Fail,
                    format!("finq's private server does not start: {e}"),
                )
                .fix(format!("see {}", local.log_file().display())),
                None,
            ),
        },
    }
}

async fn migrations(pool: &PgPool) -> Check {
    let applied: Result<Vec<(i64, bool, Vec<u8>)>, sqlx::Error> =
        sqlx::query_as("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(pool)
            .await;
    let known: Vec<_> = finq_core::MIGRATOR.iter().collect();
    // No bookkeeping table: an empty database, nothing applied.
    let applied = applied.unwrap_or_default();
    if let Some((v, _, _)) = applied.iter().find(|(_, ok, _)| !ok) {
        return check(
            "migrations",
            Status::Fail,
            format!("migration {v} failed part-way"),
        )
        .fix("restore the database from a backup, or start afresh with an empty one");
    }
    if let Some((v, _, _)) = applied
        .iter()
        .find(|(v, _, _)| !known.iter().any(|m| m.version == *v))
    {
        return check(
            "migrations",
            Status::Fail,
            format!("the database has migration {v}, which this finq does not know: a newer finq wrote it"),
        )
        .fix("use that newer finq");
    }
    if let Some(m) = known.iter().find(|m| {
        applied
            .iter()
            .any(|(v, _, sum)| *v == m.version && sum.as_slice() != &*m.checksum)
    }) {
        return check(
            "migrations",
            Status::Fail,
            format!(
                "migration {} in the database differs from this finq's",
                m.version
            ),
        )
        .fix("use the finq that made this database");
    }
    let pending = known
        .iter()
        .filter(|m| !applied.iter().any(|(v, _, _)| *v == m.version))
        .count();
    if pending > 0 {
        return check(
            "migrations",
            Status::Warn,
            format!("{} of {} applied", known.len() - pending, known.len()),
        )
        .fix("the next finq command applies the rest");
    }
    check(
        "migrations",
        Status::Ok,
        format!("all {} applied", known.len()),
    )
}

async fn mirror(settings: &Settings, pool: Option<&PgPool>) -> Check {
    let path = match finq_analytics::mirror_path(settings) {
        Ok(path) => path,
        Err(e) => return check("mirror", Status::Fail, e.to_string()),
    };
    if !path.exists() {
        return check(
            "mirror",
            Status::Fail,
            format!("no DuckDB mirror at {}", path.display()),
        )
        .fix("`finq run` (or `finq demo`) builds it");
    }
    type Rows = Vec<Vec<Option<String>>>;
    fn read(path: &Path) -> Result<(Rows, Rows), finq_analytics::query::QueryError> {
        let mut engine = QueryEngine::open(path, Trust::User)?;
        let rows = engine.run("SELECT count(*) FROM transactions")?;
        let meta = engine.run(&format!(
            "SELECT key, value FROM {}",
            finq_analytics::mirror::META_TABLE
        ))?;
        Ok((rows.rows(), meta.rows()))
    }
    let (rows, meta) = match read(&path) {
        Ok(r) => r,
        Err(e) => {
            return check(
                "mirror",
                Status::Fail,
                format!("cannot read {}: {e}", path.display()),
            )
            .fix("`finq mirror --rebuild` makes it again from PostgreSQL");
        }
    };
    let get = |k: &str| {
        meta.iter()
            .find(|r| r[0].as_deref() == Some(k))
            .and_then(|r| r[1].clone())
    };
    let transactions = rows[0][0]
        .as_deref()
        .and_then(|n| n.parse::<usize>().ok())
        .map(finq_analytics::query::thousands)
        .unwrap_or_default();
    if get("schema_version").as_deref() != Some(finq_analytics::mirror::SCHEMA_VERSION) {
        return check(
            "mirror",
            Status::Warn,
            format!("{} is from another finq version", path.display()),
        )
        .fix("the next `finq run` rebuilds it");
    }
    let Some(pool) = pool else {
        return check(
            "mirror",
            Status::Ok,
            format!(
                "{} ({transactions} transactions); no database to compare with",
                path.display()
            ),
        );
    };
    let position: i64 = get("position").and_then(|p| p.parse().ok()).unwrap_or(0);
    match finq_analytics::mirror::latest_position(pool).await {
        Ok(latest) if latest > position => check(
            "mirror",
            Status::Fail,
            format!(
                "{} is behind PostgreSQL ({transactions} transactions; changes {}–{} not in it)",
                path.display(),
                position + 1,
                latest
            ),
        )
        .fix("`finq run` brings it up to date"),
        Ok(_) => check(
            "mirror",
            Status::Ok,
            format!(
                "{} ({transactions} transactions), up to date",
                path.display()
            ),
        ),
        Err(e) => check(
            "mirror",
            Status::Fail,
            format!("cannot compare with PostgreSQL: {e}"),
        ),
    }
}

async fn ollama(settings: &Settings) -> Check {
    let engine = match finq_analytics::nl::NlEngine::with_settings(
        &settings.ollama_host,
        &settings.model,
        settings.answers.clone(),
    ) {
        Ok(e) => e,
        Err(e) => return check("Ollama", Status::Fail, e.to_string()),
    };
    match tokio::time::timeout(Duration::from_secs(10), engine.check()).await {
        Ok(Ok(())) => check(
            "Ollama",
            Status::Ok,
            format!("{} has {}", settings.ollama_host, settings.model),
        ),
        Ok(Err(e)) => check("Ollama", Status::Fail, e.to_string())
            .fix("questions (`finq ask`, `?` in the REPL) need it; SQL and reports work without"),
        Err(_) => check(
            "Ollama",
            Status::Fail,
            format!("{} did not answer within 10 s", settings.ollama_host),
        )
        .fix("check OLLAMA_HOST and that `ollama serve` runs"),
    }
}

async fn plaid(settings: &Settings) -> Check {
    use finq_connectors::plaid::client::{PlaidApiError, PlaidClient};
    let env = settings.plaid.env;
    let url = match (&settings.plaid.base_url, env.default_base_url()) {
        (Some(url), _) => url.clone(),
        (None, Some(url)) => url.to_string(),
        (None, None) => {
            return check(
                "Plaid",
                Status::Skip,
                "the built-in simulator (PLAID_ENV=sim) needs no credentials",
            );
        }
    };
    let (Some(id), Some(secret)) = (&settings.plaid.client_id, &settings.plaid.secret) else {
        if env == PlaidEnv::Sim {
            return check(
                "Plaid",
                Status::Skip,
                format!("a simulator at {url} (PLAID_ENV=sim)"),
            );
        }
        return check(
            "Plaid",
            Status::Fail,
            format!("PLAID_ENV={} but no credentials", env.as_str()),
        )
        .fix(
            "set PLAID_CLIENT_ID and PLAID_SECRET (from dashboard.plaid.com → Developers → Keys)",
        );
    };
    let client = PlaidClient::new(&url, id, secret.clone());
    // Any answer but "invalid keys" means Plaid took the credentials.
    match client.institution_get_by_id("ins_109508").await {
        Ok(_) => check(
            "Plaid",
            Status::Ok,
            format!("{} ({url}) accepts the credentials", env.as_str()),
        ),
        Err(PlaidApiError::Plaid { error, .. }) if error.error_code != "INVALID_API_KEYS" => check(
            "Plaid",
            Status::Ok,
            format!("{} ({url}) accepts the credentials", env.as_str()),
        ),
        Err(e) => check("Plaid", Status::Fail, e.to_string())
            .fix("check PLAID_CLIENT_ID, PLAID_SECRET and PLAID_ENV (sandbox keys do not work in production)"),
    }
}

async fn webhook(settings: &Settings) -> Check {
    let Some(url) = &settings.webhook_url else {
        return if settings.plaid.env == PlaidEnv::Sim {
            check("webhook URL", Status::Skip, "not needed with the simulator")
        } else {
            check(
                "webhook URL",
                Status::Warn,
                format!(
                    "none set: banks' changes arrive only when `finq serve` polls (items with no sync for {:.0} h) or `finq run` runs",
                    settings.poll_after.as_secs_f64() / 3600.0
                ),
            )
            .fix("set FINQ_WEBHOOK_URL to where Plaid can reach `finq serve`'s /plaid/webhook, then `finq items webhook`")
        };
    };
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => return check("webhook URL", Status::Fail, e.to_string()),
    };
    // Any HTTP answer (a GET on the webhook is refused with 405) means it is reachable.
    match client.get(url).send().await {
        Ok(resp) => check(
            "webhook URL",
            Status::Ok,
            format!("{url} answers (HTTP {})", resp.status().as_u16()),
        ),
        Err(e) => check(
            "webhook URL",
            Status::Fail,
            format!("{url} cannot be reached from here: {}", error_chain(&e)),
        )
        .fix("start `finq serve` (and whatever forwards that URL to it)"),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_line_per_check_and_a_verdict() {
        let checks = vec![
            check("mirror", Status::Ok, "up to date"),
            check("Ollama", Status::Fail, "not reachable").fix("start it"),
            check("Plaid", Status::Skip, "simulator"),
        ];
        let text = render(&checks);
        assert!(
            text.contains("ok    mirror          up to date\n"),
            "{text}"
        );
        assert!(
            text.contains("FAIL  Ollama          not reachable\n"),
            "{text}"
        );
        assert!(text.contains("→ start it"), "{text}");
        assert!(text.ends_with("1 check failed.\n"), "{text}");
        assert!(render(&checks[..1]).ends_with("Everything finq needs is in order.\n"));
    }
}
