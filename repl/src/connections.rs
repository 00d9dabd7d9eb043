//! Which Plaid each item talks to.
//!
//! `PLAID_ENV=sim` (the default) with no `PLAID_BASE_URL` means finq's in-process simulator:
//! it is started on a loopback port for the run, and items linked through it earlier are
//! recreated from their stored spec (the simulator is deterministic), so `finq sync` and
//! `finq run` keep working after `finq demo` with no configuration at all.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use finq_connectors::plaid::PlaidClient;
use finq_connectors::plaid::link::{LinkedItem, link_sandbox_institution};
use finq_connectors::sim::{SimConfig, SimItemSpec, SimServer, Simulator};
use finq_core::config::{PlaidEnv, Settings};
use secrecy::SecretString;
use sqlx::Row;

use crate::app::App;

/// The credentials the simulator gets when none are configured (it accepts any pair).
const SIM_CLIENT_ID: &str = "finq-sim";
const SIM_SECRET: &str = "finq-sim-secret";

pub struct ItemInfo {
    pub item_id: String,
    pub institution: String,
    pub environment: String,
    pub sim_spec: Option<SimItemSpec>,
}

pub async fn list_items(app: &App) -> Result<Vec<ItemInfo>> {
    let rows = sqlx::query(
        "SELECT item_id, coalesce(institution_name, institution_id) AS institution, environment, sim_spec
         FROM plaid_items ORDER BY created_at, item_id",
    )
    .fetch_all(&app.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ItemInfo {
            item_id: r.get("item_id"),
            institution: r.get("institution"),
            environment: r.get("environment"),
            sim_spec: r
                .get::<Option<serde_json::Value>, _>("sim_spec")
                .and_then(|v| serde_json::from_value(v).ok()),
        })
        .collect())
}

/// Plaid clients for a run, and the in-process simulator if one is needed.
pub struct Connections {
    settings: Settings,
    sim: Option<(Simulator, SimServer)>,
}

impl Connections {
    pub fn new(settings: &Settings) -> Self {
        Connections {
            settings: settings.clone(),
            sim: None,
        }
    }

    fn credentials(&self, env: PlaidEnv) -> Result<(String, SecretString)> {
        match (&self.settings.plaid.client_id, &self.settings.plaid.secret) {
            (Some(id), Some(secret)) => Ok((id.clone(), secret.clone())),
            _ if env == PlaidEnv::Sim => Ok((SIM_CLIENT_ID.into(), SecretString::from(SIM_SECRET))),
            _ => bail!(
                "PLAID_CLIENT_ID and PLAID_SECRET must be set to talk to Plaid {} (or use PLAID_ENV=sim for the offline simulator)",
                env.as_str()
            ),
        }
    }

    /// Start (once) the in-process simulator.
    pub async fn in_process_sim(&mut self, config: SimConfig) -> Result<(Simulator, String)> {
        if self.sim.is_none() {
            let sim = Simulator::new(config);
            let addr: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
            let server = sim
                .serve(addr)
                .await
                .context("cannot start the in-process Plaid simulator")?;
            self.sim = Some((sim, server));
        }
        let (sim, server) = self.sim.as_ref().expect("just set");
        Ok((sim.clone(), server.base_url.clone()))
    }

    /// The client for an existing item.
    pub async fn client_for(&mut self, item: &ItemInfo) -> Result<PlaidClient> {
        let env: PlaidEnv = item.environment.parse().unwrap_or(PlaidEnv::Production);
        if let Some(url) = self.settings.plaid.base_url.clone() {
            let (id, secret) = self.credentials(env)?;
            return Ok(PlaidClient::new(&url, &id, secret));
        }
        let url = match (env, &item.sim_spec) {
            (PlaidEnv::Sim, Some(spec)) => {
                let (sim, url) = self.in_process_sim(SimConfig::default()).await?;
                if sim.spec_of(&item.item_id).is_none() {
                    let restored = sim.restore_item(spec.clone());
                    if restored != item.item_id {
                        bail!(
                            "the simulator recreated item {restored} instead of {}",
                            item.item_id
                        );
                    }
                }
                url
            }
            (PlaidEnv::Sim, None) => bail!(
                "item {} ({}) was linked through a standalone simulator: start it again (`finq sim serve`) and set PLAID_BASE_URL to its URL",
                item.item_id,
                item.institution
            ),
            (env, _) => env
                .default_base_url()
                .expect("real environments have a URL")
                .to_string(),
        };
        let (id, secret) = self.credentials(env)?;
        Ok(PlaidClient::new(&url, &id, secret))
    }

    pub async fn stop(self) {
        if let Some((_, server)) = self.sim {
            server.stop().await;
        }
    }
}

/// Link an institution in the configured environment. `sim` overrides the in-process
/// simulator's settings (the demo's seed and size) and tags the item.
pub async fn link(
    app: &App,
    institution: &str,
    sim: Option<(SimConfig, &str)>,
) -> Result<LinkedItem> {
    let settings = &app.settings;
    let env = settings.plaid.env;
    if env == PlaidEnv::Production {
        bail!(
            "linking a production institution needs Plaid Link in a browser, which finq does not host yet; use PLAID_ENV=sandbox or sim"
        );
    }
    let mut conns = Connections::new(settings);
    let (client, simulator, tag) = match (&settings.plaid.base_url, env) {
        (None, PlaidEnv::Sim) => {
            let (config, tag) = sim
                .map(|(c, t)| (c, Some(t)))
                .unwrap_or((SimConfig::default(), None));
            let (simulator, url) = conns.in_process_sim(config).await?;
            // Recreate the items linked before, so the new one gets a new ordinal (and id).
            for item in list_items(app).await? {
                if let Some(spec) = item.sim_spec {
                    simulator.restore_item(spec);
                }
            }
            let (id, secret) = conns.credentials(env)?;
            (PlaidClient::new(&url, &id, secret), Some(simulator), tag)
        }
        (base, env) => {
            let url = base
                .clone()
                .or(env.default_base_url().map(str::to_string))
                .expect("a URL");
            let (id, secret) = conns.credentials(env)?;
            (PlaidClient::new(&url, &id, secret), None, None)
        }
    };
    let result = link_sandbox_institution(
        &app.pool,
        &client,
        &app.vault,
        institution,
        env.as_str(),
        |item_id| {
            let spec = simulator.as_ref()?.spec_of(item_id)?;
            let mut value = serde_json::to_value(spec).ok()?;
            if let Some(tag) = tag {
                value["created_by"] = serde_json::Value::String(tag.to_string());
            }
            Some(value)
        },
    )
    .await;
    conns.stop().await;
    Ok(result?)
}
