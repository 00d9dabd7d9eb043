//! What most commands share: settings, the PostgreSQL pool (migrated) and the token vault.

use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result};
use finq_core::config::Settings;
use finq_core::local_pg::{ClusterState, LocalPostgres};
use finq_core::vault::TokenVault;
use secrecy::ExposeSecret;
use sqlx::PgPool;

use crate::cli::DbCommand;

#[derive(Clone)]
pub struct App {
    pub settings: Settings,
    pub pool: PgPool,
    pub vault: Arc<TokenVault>,
}

impl App {
    pub async fn open() -> Result<Self> {
        let settings = Settings::load()?;
        Self::open_with(settings).await
    }

    pub async fn open_with(settings: Settings) -> Result<Self> {
        std::fs::create_dir_all(&settings.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                settings.data_dir.display()
            )
        })?;
        let pool = finq_core::db::connect(&settings).await?;
        let vault =
            TokenVault::open_or_create(settings.encryption_key.as_ref(), &settings.data_dir)?;
        Ok(App {
            settings,
            pool,
            vault: Arc::new(vault),
        })
    }
}

/// Make the data directory its owner's alone (0700; 0701 when finq's PostgreSQL runs as
/// another user, which must be able to pass through to its cluster) and the files directly
/// in it (the mirror, its write-ahead log, the history, the key file) 0600. The cluster
/// below it keeps PostgreSQL's own modes (owner-only). Best effort: a file that cannot be
/// changed is left with a warning.
pub fn tighten(data_dir: &std::path::Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let set = |path: &std::path::Path, mode: u32| {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return;
        };
        if meta.permissions().mode() & 0o777 & !mode != 0
            && let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot make it owner-only");
        }
    };
    if !data_dir.is_dir() {
        return;
    }
    let server_is_another_user = std::fs::metadata(data_dir.join("postgres"))
        .is_ok_and(|m| m.uid() != nix::unistd::geteuid().as_raw());
    set(data_dir, if server_is_another_user { 0o701 } else { 0o700 });
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            set(&entry.path(), 0o600);
        }
    }
}

pub async fn db_command(command: DbCommand) -> Result<ExitCode> {
    let settings = Settings::load()?;
    if let Some(url) = &settings.database_url {
        let opts = sqlx::postgres::PgConnectOptions::from_str(url.expose_secret())
            .context("DATABASE_URL is not a valid PostgreSQL URL")?;
        let target = finq_core::db::describe(&opts);
        match command {
            DbCommand::Status => {
                let reachable = finq_core::db::connect_with(opts).await;
                println!("database: DATABASE_URL ({target})");
                match reachable {
                    Ok(_) => println!("status:   reachable, schema up to date"),
                    Err(e) => println!("status:   not reachable: {e}"),
                }
            }
            DbCommand::Stop => {
                println!(
                    "finq uses DATABASE_URL ({target}); it did not start that server, so it will not stop it."
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let local = LocalPostgres::new(&settings.data_dir)?;
    match command {
        DbCommand::Status => {
            println!("database: finq's private PostgreSQL cluster");
            println!("cluster:  {}", local.cluster_dir().display());
            println!("socket:   {}", local.socket_dir().display());
            println!("binaries: {}", local.bin_dir().display());
            if let Some(user) = local.server_user() {
                println!("runs as:  {user}");
            }
            match local.state()? {
                ClusterState::Absent => println!(
                    "status:   not created yet (the first finq command that needs it creates it)"
                ),
                ClusterState::Stopped => {
                    println!("status:   stopped (the next finq command that needs it starts it)")
                }
                ClusterState::Running { pid } => match pid {
                    Some(pid) => println!("status:   running (pid {pid})"),
                    None => println!("status:   running"),
                },
            }
        }
        DbCommand::Stop => {
            if local.stop()? {
                println!("Stopped the private PostgreSQL server.");
            } else {
                println!("The private PostgreSQL server was not running.");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
