//! finq's private PostgreSQL cluster, used when `DATABASE_URL` is unset.
//!
//! It lives in `<data dir>/postgres/` (cluster in `data/`, Unix socket in `run/`, log in
//! `server.log`), listens on no TCP port at all, and is started from the PostgreSQL server
//! binaries installed on the machine. Later finq commands find it running and reuse it.
//!
//! PostgreSQL refuses to run as root, so when finq runs as root the cluster belongs to, and
//! the server runs as, an unprivileged user (`postgres` if it exists, else `nobody`).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use nix::unistd::{Gid, Uid, User};
use sqlx::postgres::PgConnectOptions;

pub const DATABASE_NAME: &str = "finq";
pub const SUPERUSER: &str = "finq";
const PORT: u16 = 5432;

#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    #[error(
        "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin. \
         Install them (Debian/Ubuntu: `sudo apt-get install postgresql`), or set DATABASE_URL to a server you run"
    )]
    NoBinaries,
    #[error(
        "finq runs as root, and PostgreSQL will not; no unprivileged user (`postgres` or `nobody`) exists to run it. \
         Run finq as a normal user, or set DATABASE_URL"
    )]
    NoUnprivilegedUser,
    #[error("{what} failed: {detail}\n(server log: {log})")]
    Command {
        what: String,
        detail: String,
        log: PathBuf,
    },
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the private PostgreSQL server did not accept connections within {0:?}; see {1} for why"
    )]
    NotReady(Duration, PathBuf),
}

/// What `finq db status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterState {
    /// No cluster has been created yet.
    Absent,
    Stopped,
    Running {
        pid: Option<u32>,
    },
}

#[derive(Debug, Clone)]
pub struct LocalPostgres {
    root: PathBuf,
    bin_dir: PathBuf,
    /// Set when finq runs as root: the user the server runs as.
    run_as: Option<(Uid, Gid, String)>,
}

impl LocalPostgres {
    /// Locate the binaries and decide who runs the server. Creates nothing yet.
    pub fn new(data_dir: &Path) -> Result<Self, LocalPgError> {
        let bin_dir = find_bin_dir().ok_or(LocalPgError::NoBinaries)?;
        let run_as = if Uid::effective().is_root() {
            let user = ["postgres", "nobody"]
                .iter()
                .find_map(|n| User::from_name(n).ok().flatten())
                .ok_or(LocalPgError::NoUnprivilegedUser)?;
            Some((user.uid, user.gid, user.name))
        } else {
            None
        };
        Ok(LocalPostgres {
            root: data_dir.join("postgres"),
            bin_dir,
            run_as,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn cluster_dir(&self) -> PathBuf {
        self.root.join("data")
    }
    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn log_file(&self) -> PathBuf {
        self.root.join("server.log")
    }
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }
    pub fn server_user(&self) -> Option<&str> {
        self.run_as.as_ref().map(|(_, _, n)| n.as_str())
    }

    pub fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(self.socket_dir())
            .port(PORT)
            .username(SUPERUSER)
            .database(DATABASE_NAME)
    }

    pub fn state(&self) -> Result<ClusterState, LocalPgError> {
        if !self.cluster_dir().join("PG_VERSION").exists() {
            return Ok(ClusterState::Absent);
        }
        let out = self.pg_ctl(&["status"])?;
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            let pid = text
                .split("PID: ")
                .nth(1)
                .and_then(|s| s.split(')').next())
                .and_then(|s| s.trim().parse().ok());
            Ok(ClusterState::Running { pid })
        } else {
            Ok(ClusterState::Stopped)
        }
    }

    /// Create the cluster if needed, start it if stopped, make sure the database exists,
    /// and return how to connect. Safe to call from several processes at once.
    pub async fn ensure_running(&self) -> Result<PgConnectOptions, LocalPgError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.ensure_running_blocking())
            .await
            .expect("local PostgreSQL start-up task panicked")?;
        self.wait_ready().await?;
        self.ensure_database().await?;
        Ok(self.connect_options())
    }

    fn ensure_running_blocking(&self) -> Result<(), LocalPgError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LocalPgError::Io { path, source }
        };
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        // One finq at a time creates or starts the cluster.
        let lock_path = self.root.join("start.lock");
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| LocalPgError::Io {
                path: lock_path.clone(),
                source: e.into(),
            })?;

        if let Some((uid, gid, _)) = &self.run_as {
            self.prepare_for_server_user(*uid, *gid)?;
        }
        if !self.cluster_dir().join("PG_VERSION").exists() {
            self.init_cluster()?;
        }
        if matches!(self.state()?, ClusterState::Running { .. }) {
            if self.socket_dir().join(format!(".s.PGSQL.{PORT}")).exists() {
                return Ok(());
            }
            // Running, but its socket was deleted (e.g. by a cleaner of the directory): a
            // restart recreates it.
            tracing::warn!("the private PostgreSQL server has lost its socket; restarting it");
            let out = self.pg_ctl(&["-m", "fast", "-w", "stop"])?;
            if !out.status.success() {
                return Err(self.command_error("restarting the private PostgreSQL server", &out));
            }
        }
        // A crash can leave a stale postmaster.pid; pg_ctl handles that itself.
        let log = self.log_file().display().to_string();
        let out = self.pg_ctl(&["-l", &log, "-w", "-t", "60", "start"])?;
        if !out.status.success() && !matches!(self.state()?, ClusterState::Running { .. }) {
            return Err(self.command_error("starting the private PostgreSQL server", &out));
        }
        tracing::info!(dir = %self.cluster_dir().display(), "private PostgreSQL server started");
        Ok(())
    }

    fn init_cluster(&self) -> Result<(), LocalPgError> {
        let data = self.cluster_dir();
        let _ = std::fs::remove_dir_all(&data); // a half-made cluster from an interrupted init
        let mut cmd = self.command("initdb");
        cmd.arg("-D").arg(&data).args([
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
        ]);
        let out = self.run(cmd, "initdb")?;
        if !out.status.success() {
            return Err(
                self.command_error("initdb (creating the private PostgreSQL cluster)", &out)
            );
        }
        // No TCP at all: only the Unix socket in our own directory, so trust auth is
        // limited to whoever can enter that directory.
        let conf = format!(
            "\n# finq: private cluster\nlisten_addresses = ''\nunix_socket_directories = '{}'\nport = {PORT}\n\
             # Bulk syncs write a lot at once: keep the working set in memory, checkpoint less.\n\
             shared_buffers = '256MB'\nmax_wal_size = '4GB'\n",
            self.socket_dir().display()
        );
        let conf_path = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).map_err(|source| LocalPgError::Io {
            path: conf_path.clone(),
            source,
        })?;
        text.push_str(&conf);
        std::fs::write(&conf_path, text).map_err(|source| LocalPgError::Io {
            path: conf_path.clone(),
            source,
        })?;
        tracing::info!(dir = %data.display(), "created the private PostgreSQL cluster");
        Ok(())
    }

    /// Running as root: the server user must own the cluster's directory and be able to
    /// reach it (search permission on every parent directory).
    fn prepare_for_server_user(&self, uid: Uid, gid: Gid) -> Result<(), LocalPgError> {
        for dir in [self.root.clone(), self.socket_dir()] {
            std::fs::create_dir_all(&dir).map_err(|source| LocalPgError::Io {
                path: dir.clone(),
                source,
            })?;
            nix::unistd::chown(&dir, Some(uid), Some(gid)).map_err(|e| LocalPgError::Io {
                path: dir.clone(),
                source: e.into(),
            })?;
        }
        let _ = std::fs::set_permissions(self.socket_dir(), std::fs::Permissions::from_mode(0o700));
        for entry in [self.root.join("start.lock"), self.log_file()] {
            if entry.exists() {
                let _ = nix::unistd::chown(&entry, Some(uid), Some(gid));
            }
        }
        let mut parent = self.root.parent();
        while let Some(dir) = parent {
            if let Ok(meta) = std::fs::metadata(dir) {
                let mode = meta.permissions().mode();
                if mode & 0o001 == 0 {
                    tracing::warn!(dir = %dir.display(), "adding search permission (o+x) so the PostgreSQL server user can reach its cluster");
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o001))
                        .map_err(|source| LocalPgError::Io {
                            path: dir.to_path_buf(),
                            source,
                        })?;
                }
            }
            parent = dir.parent();
        }
        Ok(())
    }

    async fn wait_ready(&self) -> Result<(), LocalPgError> {
        let limit = Duration::from_secs(60);
        let start = std::time::Instant::now();
        let opts = self.connect_options().database("postgres");
        loop {
            match sqlx::ConnectOptions::connect(&opts).await {
                Ok(conn) => {
                    let _ = sqlx::Connection::close(conn).await;
                    return Ok(());
                }
                Err(e) if start.elapsed() > limit => {
                    tracing::debug!(error = %e, "private PostgreSQL not ready");
                    return Err(LocalPgError::NotReady(limit, self.log_file()));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn ensure_database(&self) -> Result<(), LocalPgError> {
        let opts = self.connect_options().database("postgres");
        let err = |e: sqlx::Error| LocalPgError::Command {
            what: format!("creating the `{DATABASE_NAME}` database"),
            detail: e.to_string(),
            log: self.log_file(),
        };
        let mut conn = sqlx::ConnectOptions::connect(&opts).await.map_err(err)?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(DATABASE_NAME)
                .fetch_optional(&mut conn)
                .await
                .map_err(err)?;
        if exists.is_none() {
            // Literal on purpose: DATABASE_NAME is "finq".
            match sqlx::query("CREATE DATABASE finq").execute(&mut conn).await {
                Ok(_) => {}
                // Another finq created it in the meantime.
                Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("42P04") => {}
                Err(e) => return Err(err(e)),
            }
        }
        let _ = sqlx::Connection::close(conn).await;
        Ok(())
    }

    /// Stop the server. Returns whether it was running.
    pub fn stop(&self) -> Result<bool, LocalPgError> {
        if !matches!(self.state()?, ClusterState::Running { .. }) {
            return Ok(false);
        }
        let out = self.pg_ctl(&["-m", "fast", "-w", "stop"])?;
        if !out.status.success() {
            return Err(self.command_error("stopping the private PostgreSQL server", &out));
        }
        Ok(true)
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<Output, LocalPgError> {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D").arg(self.cluster_dir()).args(args);
        self.run(cmd, "pg_ctl")
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        // The server must not inherit a working directory its user cannot enter.
        cmd.current_dir(&self.root);
        cmd.env_remove("PGDATA").env("LC_ALL", "C");
        if let Some((uid, gid, _)) = &self.run_as {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        cmd
    }

    fn run(&self, mut cmd: Command, what: &str) -> Result<Output, LocalPgError> {
        cmd.stdin(std::process::Stdio::null());
        cmd.output().map_err(|e| LocalPgError::Command {
            what: format!("running {what} from {}", self.bin_dir.display()),
            detail: e.to_string(),
            log: self.log_file(),
        })
    }

    fn command_error(&self, what: &str, out: &Output) -> LocalPgError {
        let mut detail = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if detail.is_empty() {
            detail = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        LocalPgError::Command {
            what: what.to_string(),
            detail,
            log: self.log_file(),
        }
    }
}

/// `initdb` and `pg_ctl` from PATH, else the newest `/usr/lib/postgresql/<version>/bin`.
pub fn find_bin_dir() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|d| has_both(d))
    {
        return Some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_both(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}
