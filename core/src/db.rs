//! Connecting to PostgreSQL: `DATABASE_URL` when set, else finq's private cluster.
//! Migrations run on every connect (they are idempotent and fast when nothing is new).

use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::Settings;
use crate::local_pg::{LocalPgError, LocalPostgres};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    BadUrl(String),
    #[error(
        "cannot connect to PostgreSQL at {target}: {source}. Check that the server is running and DATABASE_URL is right, or unset DATABASE_URL to use finq's private database"
    )]
    Connect { target: String, source: sqlx::Error },
    #[error("cannot bring the database schema up to date: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Local(#[from] LocalPgError),
}

/// Where the database is, described without secrets.
pub fn describe(opts: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{} as {}",
        opts.get_host(),
        opts.get_port(),
        opts.get_database().unwrap_or("(default)"),
        opts.get_username()
    )
}

/// Connect (starting the private cluster if that is the database) and migrate.
pub async fn connect(settings: &Settings) -> Result<PgPool, DbError> {
    let opts = match &settings.database_url {
        Some(url) => PgConnectOptions::from_str(url.expose_secret())
            .map_err(|e| DbError::BadUrl(e.to_string()))?,
        None => {
            LocalPostgres::new(&settings.data_dir)?
                .ensure_running()
                .await?
        }
    };
    connect_with(opts).await
}

pub async fn connect_with(opts: PgConnectOptions) -> Result<PgPool, DbError> {
    let target = describe(&opts);
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(30))
        // No ping before each use: it doubles the round trips of every short query (a
        // webhook's). A connection that died is found by the query that uses it, and
        // connections idle for a while are closed anyway.
        .test_before_acquire(false)
        .idle_timeout(Duration::from_secs(60))
        .connect_with(opts)
        .await
        .map_err(|source| DbError::Connect { target, source })?;
    crate::MIGRATOR.run(&pool).await?;
    Ok(pool)
}
