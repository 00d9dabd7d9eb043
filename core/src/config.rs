//! Settings: `finq.toml` (in the data directory unless `FINQ_CONFIG` names another file)
//! plus environment variables, the environment winning.
//!
//! Secrets are `SecretString`s: their `Debug` prints `[REDACTED]`, so a settings dump
//! in a log never leaks them.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use secrecy::SecretString;
use serde::Deserialize;

/// Which Plaid finq talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlaidEnv {
    /// finq's built-in offline simulator (no account, no network).
    #[default]
    Sim,
    Sandbox,
    Production,
}

impl PlaidEnv {
    pub fn as_str(self) -> &'static str {
        match self {
            PlaidEnv::Sim => "sim",
            PlaidEnv::Sandbox => "sandbox",
            PlaidEnv::Production => "production",
        }
    }

    /// Plaid's public base URL for this environment (`None` for the simulator).
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            PlaidEnv::Sim => None,
            PlaidEnv::Sandbox => Some("https://sandbox.plaid.com"),
            PlaidEnv::Production => Some("https://production.plaid.com"),
        }
    }
}

impl FromStr for PlaidEnv {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sim" | "simulator" => Ok(PlaidEnv::Sim),
            "sandbox" => Ok(PlaidEnv::Sandbox),
            "production" => Ok(PlaidEnv::Production),
            other => Err(ConfigError::Invalid {
                key: "PLAID_ENV",
                message: format!("`{other}` is not one of sim, sandbox, production"),
            }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid TOML for finq: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting {key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("no data directory: set FINQ_DATA_DIR (or HOME, so finq can use ~/.local/share/finq)")]
    NoDataDir,
}

#[derive(Debug, Clone)]
pub struct PlaidSettings {
    pub env: PlaidEnv,
    pub base_url: Option<String>,
    pub client_id: Option<String>,
    pub secret: Option<SecretString>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub config_file: PathBuf,
    pub database_url: Option<SecretString>,
    pub plaid: PlaidSettings,
    pub encryption_key: Option<SecretString>,
    pub ollama_host: String,
    pub model: String,
    /// How questions are answered (`[ollama]` in finq.toml).
    pub answers: AnswerSettings,
    /// `finq serve` syncs an item on its own when no successful sync happened for this
    /// long (a missed webhook); zero turns polling off. `[serve] poll_after_hours` or
    /// `FINQ_POLL_AFTER_HOURS`; 6 hours by default.
    pub poll_after: std::time::Duration,
    /// The URL Plaid sends an item's webhooks to (`finq serve`'s `/plaid/webhook` as the
    /// internet reaches it), given to Plaid when an institution is linked.
    /// `FINQ_WEBHOOK_URL` or `webhook_url`.
    pub webhook_url: Option<String>,
    /// The pipeline's plugins as `finq.toml` lists them (`[[sources]]`, `[[transforms]]`,
    /// `[[sinks]]`, each with a `type`); each crate reads its own. Empty: the defaults.
    pub plugins: PluginTables,
}

/// The raw `[[sources]]`, `[[transforms]]` and `[[sinks]]` tables of `finq.toml`.
#[derive(Debug, Clone, Default)]
pub struct PluginTables {
    pub sources: Vec<toml::Value>,
    pub transforms: Vec<toml::Value>,
    pub sinks: Vec<toml::Value>,
}

impl PluginTables {
    /// Parse one section's tables into a crate's config enum; `None` when the section is
    /// absent (the caller uses its defaults).
    pub fn parse<T: serde::de::DeserializeOwned>(
        tables: &[toml::Value],
        section: &'static str,
    ) -> Result<Option<Vec<T>>, ConfigError> {
        if tables.is_empty() {
            return Ok(None);
        }
        tables
            .iter()
            .map(|t| {
                t.clone()
                    .try_into()
                    .map_err(|e: toml::de::Error| ConfigError::Invalid {
                        key: section,
                        message: e.to_string(),
                    })
            })
            .collect::<Result<Vec<T>, _>>()
            .map(Some)
    }
}

pub const DEFAULT_OLLAMA_HOST: &str = "http://127.0.0.1:11434";
pub const DEFAULT_MODEL: &str = "llama3.2";

/// The file form of the settings; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    database_url: Option<SecretString>,
    webhook_url: Option<String>,
    encryption_key: Option<SecretString>,
    #[serde(default)]
    plaid: FilePlaid,
    #[serde(default)]
    ollama: FileOllama,
    #[serde(default)]
    serve: FileServe,
    #[serde(default)]
    sources: Vec<toml::Value>,
    #[serde(default)]
    transforms: Vec<toml::Value>,
    #[serde(default)]
    sinks: Vec<toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePlaid {
    env: Option<String>,
    base_url: Option<String>,
    client_id: Option<String>,
    secret: Option<SecretString>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServe {
    poll_after_hours: Option<f64>,
}

/// The default of [`Settings::poll_after`], in hours.
pub const DEFAULT_POLL_AFTER_HOURS: f64 = 6.0;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOllama {
    host: Option<String>,
    model: Option<String>,
    temperature: Option<f32>,
    seed: Option<i32>,
    timeout_secs: Option<u64>,
    num_ctx: Option<u32>,
    repairs: Option<u32>,
}

/// How the model is asked (`[ollama]` keys `temperature`, `seed`, `timeout_secs`,
/// `num_ctx`, `repairs`): deterministic by default, so the same question over the same data
/// gets the same answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerSettings {
    pub temperature: f32,
    pub seed: i32,
    /// The longest one model call may take.
    pub timeout: std::time::Duration,
    /// The largest context window asked for; the prompt is fitted within it.
    pub max_context: u32,
    /// How many more times a plan that fails goes back to the model with the error.
    pub repairs: u32,
}

impl Default for AnswerSettings {
    fn default() -> Self {
        AnswerSettings {
            temperature: 0.0,
            seed: 42,
            timeout: std::time::Duration::from_secs(180),
            max_context: 8192,
            repairs: 2,
        }
    }
}

impl Settings {
    /// Settings from the process environment and the config file.
    pub fn load() -> Result<Self, ConfigError> {
        Self::from_env_fn(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Settings from an environment lookup function (tests pass their own).
    pub fn from_env_fn(env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let data_dir = match env("FINQ_DATA_DIR") {
            Some(d) => PathBuf::from(d),
            None => default_data_dir(&env).ok_or(ConfigError::NoDataDir)?,
        };
        let config_file = env("FINQ_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("finq.toml"));
        let file = read_file(&config_file)?;

        let plaid_env = match env("PLAID_ENV").or(file.plaid.env) {
            Some(s) => s.parse()?,
            None => PlaidEnv::default(),
        };
        let secret = |k: &str| env(k).map(SecretString::from);
        let poll_hours = match env("FINQ_POLL_AFTER_HOURS") {
            Some(v) => v.trim().parse::<f64>().map_err(|_| ConfigError::Invalid {
                key: "FINQ_POLL_AFTER_HOURS",
                message: format!("{v:?} is not a number of hours"),
            })?,
            None => file
                .serve
                .poll_after_hours
                .unwrap_or(DEFAULT_POLL_AFTER_HOURS),
        };
        if !(poll_hours.is_finite() && poll_hours >= 0.0) {
            return Err(ConfigError::Invalid {
                key: "poll_after_hours",
                message: format!("{poll_hours} is not a number of hours (0 turns polling off)"),
            });
        }
        let webhook_url = env("FINQ_WEBHOOK_URL").or(file.webhook_url);
        if let Some(url) = &webhook_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ConfigError::Invalid {
                key: "webhook_url",
                message: format!("{url:?} is not an http:// or https:// URL"),
            });
        }
        let answers = answer_settings(&file.ollama)?;
        Ok(Settings {
            answers,
            webhook_url,
            poll_after: std::time::Duration::from_secs_f64(poll_hours * 3600.0),
            database_url: secret("DATABASE_URL").or(file.database_url),
            encryption_key: secret("FINQ_ENCRYPTION_KEY").or(file.encryption_key),
            plaid: PlaidSettings {
                env: plaid_env,
                base_url: env("PLAID_BASE_URL").or(file.plaid.base_url),
                client_id: env("PLAID_CLIENT_ID").or(file.plaid.client_id),
                secret: secret("PLAID_SECRET").or(file.plaid.secret),
            },
            ollama_host: env("OLLAMA_HOST")
                .or(file.ollama.host)
                .map(|h| normalize_ollama_host(&h))
                .unwrap_or_else(|| DEFAULT_OLLAMA_HOST.to_string()),
            model: env("FINQ_MODEL")
                .or(file.ollama.model)
                .unwrap_or_else(|| DEFAULT_MODEL.to_string()),
            plugins: PluginTables {
                sources: file.sources,
                transforms: file.transforms,
                sinks: file.sinks,
            },
            data_dir,
            config_file,
        })
    }

    /// The DuckDB mirror file.
    pub fn duckdb_path(&self) -> PathBuf {
        self.data_dir.join("finq.duckdb")
    }

    /// The REPL history file.
    pub fn history_path(&self) -> PathBuf {
        self.data_dir.join("history.txt")
    }
}

fn answer_settings(file: &FileOllama) -> Result<AnswerSettings, ConfigError> {
    let d = AnswerSettings::default();
    let temperature = file.temperature.unwrap_or(d.temperature);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ConfigError::Invalid {
            key: "temperature",
            message: format!("{temperature} is outside 0 to 2"),
        });
    }
    let timeout = file.timeout_secs.unwrap_or(d.timeout.as_secs());
    if timeout == 0 {
        return Err(ConfigError::Invalid {
            key: "timeout_secs",
            message: "0 seconds leaves the model no time to reply".into(),
        });
    }
    let max_context = file.num_ctx.unwrap_or(d.max_context);
    if max_context < 2048 {
        return Err(ConfigError::Invalid {
            key: "num_ctx",
            message: format!("{max_context} tokens is too small for finq's prompt (2048 at least)"),
        });
    }
    Ok(AnswerSettings {
        temperature,
        seed: file.seed.unwrap_or(d.seed),
        timeout: std::time::Duration::from_secs(timeout),
        max_context,
        repairs: file.repairs.unwrap_or(d.repairs).min(5),
    })
}

fn default_data_dir(env: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(x) = env("XDG_DATA_HOME") {
        return Some(Path::new(&x).join("finq"));
    }
    env("HOME").map(|h| Path::new(&h).join(".local/share/finq"))
}

/// `OLLAMA_HOST` is often given the way the Ollama CLI takes it (`127.0.0.1:11434`,
/// `0.0.0.0`); turn it into a URL.
pub fn normalize_ollama_host(raw: &str) -> String {
    let raw = raw.trim().trim_end_matches('/');
    let with_scheme = if raw.starts_with("http://") || raw.starts_with("https://") {
        raw.to_string()
    } else {
        format!("http://{raw}")
    };
    let after_scheme = with_scheme.split_once("://").map(|x| x.1).unwrap_or("");
    let has_port = after_scheme
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()));
    let with_port = if has_port {
        with_scheme
    } else {
        format!("{with_scheme}:11434")
    };
    with_port.replace("://0.0.0.0", "://127.0.0.1")
}

fn read_file(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileSettings::default()),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn webhook_url_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        let s = Settings::from_env_fn(env_of(&[("FINQ_DATA_DIR", &d)])).unwrap();
        assert_eq!(s.webhook_url, None);
        std::fs::write(
            dir.path().join("finq.toml"),
            "webhook_url = \"https://finq.example/plaid/webhook\"\n",
        )
        .unwrap();
        let s = Settings::from_env_fn(env_of(&[("FINQ_DATA_DIR", &d)])).unwrap();
        assert_eq!(
            s.webhook_url.as_deref(),
            Some("https://finq.example/plaid/webhook")
        );
        let e = Settings::from_env_fn(env_of(&[
            ("FINQ_DATA_DIR", &d),
            ("FINQ_WEBHOOK_URL", "finq.example"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("not an http"), "{e}");
    }

    #[test]
    fn polling_age_from_file_or_environment() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        let s = Settings::from_env_fn(env_of(&[("FINQ_DATA_DIR", &d)])).unwrap();
        assert_eq!(s.poll_after, std::time::Duration::from_secs(6 * 3600));
        std::fs::write(
            dir.path().join("finq.toml"),
            "[serve]\npoll_after_hours = 0.5\n",
        )
        .unwrap();
        let s = Settings::from_env_fn(env_of(&[("FINQ_DATA_DIR", &d)])).unwrap();
        assert_eq!(s.poll_after, std::time::Duration::from_secs(1800));
        let s = Settings::from_env_fn(env_of(&[
            ("FINQ_DATA_DIR", &d),
            ("FINQ_POLL_AFTER_HOURS", "0"),
        ]))
        .unwrap();
        assert_eq!(s.poll_after, std::time::Duration::ZERO);
        for bad in ["-1", "soon", "inf"] {
            let e = Settings::from_env_fn(env_of(&[
                ("FINQ_DATA_DIR", &d),
                ("FINQ_POLL_AFTER_HOURS", bad),
            ]))
            .unwrap_err();
            assert!(e.to_string().contains("hours"), "{bad}: {e}");
        }
    }

    #[test]
    fn environment_wins_over_file_and_secrets_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("finq.toml"),
            "[plaid]\nenv = \"sandbox\"\nsecret = \"file-secret-123\"\nclient_id = \"file-id\"\n[ollama]\nmodel = \"qwen\"\n",
        )
        .unwrap();
        let d = dir.path().to_str().unwrap().to_string();
        let s = Settings::from_env_fn(env_of(&[
            ("FINQ_DATA_DIR", &d),
            ("PLAID_CLIENT_ID", "env-id"),
            ("OLLAMA_HOST", "127.0.0.1:9999"),
        ]))
        .unwrap();
        assert_eq!(s.plaid.env, PlaidEnv::Sandbox);
        assert_eq!(s.plaid.client_id.as_deref(), Some("env-id"));
        assert_eq!(
            s.plaid.secret.as_ref().unwrap().expose_secret(),
            "file-secret-123"
        );
        assert_eq!(s.model, "qwen");
        assert_eq!(s.ollama_host, "http://127.0.0.1:9999");
        let debug = format!("{s:?}");
        assert!(!debug.contains("file-secret-123"), "{debug}");
    }

    #[test]
    fn defaults_and_bad_values() {
        let s = Settings::from_env_fn(env_of(&[("HOME", "/home/u")])).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/home/u/.local/share/finq"));
        assert_eq!(s.plaid.env, PlaidEnv::Sim);
        assert_eq!(s.model, DEFAULT_MODEL);
        let err = Settings::from_env_fn(env_of(&[("HOME", "/h"), ("PLAID_ENV", "prod")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("PLAID_ENV"), "{err}");
    }

    #[test]
    fn ollama_host_forms() {
        assert_eq!(normalize_ollama_host("0.0.0.0"), "http://127.0.0.1:11434");
        assert_eq!(
            normalize_ollama_host("http://localhost:11434/"),
            "http://localhost:11434"
        );
    }
}
