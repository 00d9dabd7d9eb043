//! Which Plaid each item talks to, and the in-process simulator's lifecycle.
//!
//! `PLAID_ENV=sim` (the default) with no `PLAID_BASE_URL` means finq's in-process simulator:
//! it is started on a loopback port when first needed and stopped by [`Connections::stop`];
//! items linked through it earlier are recreated from their stored spec (the simulator is
//! deterministic), so `finq sync` and `finq run` keep working after `finq demo` with no
//! configuration at all. Otherwise the configured URL, or Plaid's own for the item's
//! environment.

use finq_core::config::{PlaidEnv, Settings};
use finq_core::vault::TokenVault;
use secrecy::SecretString;
use sqlx::PgPool;

use super::PlaidClient;
#[cfg(feature = "simulator")]
use super::items;
use super::items::{ItemError, ItemInfo, SimItemSpec};
use super::link::{LinkError, LinkedItem, link_sandbox_institution};
#[cfg(feature = "simulator")]
use crate::sim::{SimConfig, SimServer, Simulator};

/// The credentials the simulator gets when none are configured (it accepts any pair).
const SIM_CLIENT_ID: &str = "finq-sim";
const SIM_SECRET: &str = "finq-sim-secret";

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "PLAID_CLIENT_ID and PLAID_SECRET must be set to talk to Plaid {0} (or use PLAID_ENV=sim for the offline simulator)"
    )]
    NoCredentials(&'static str),
    #[error("cannot start the in-process Plaid simulator: {0}")]
    Simulator(std::io::Error),
    #[error(
        "this finq was built without the Plaid simulator (cargo feature `simulator`): set PLAID_ENV to sandbox or production"
    )]
    NoSimulator,
    #[error(
        "item {item} ({institution}) was linked through a standalone simulator: start it again (`finq sim serve`) and set PLAID_BASE_URL to its URL"
    )]
    StandaloneSimulator { item: String, institution: String },
    #[error("the simulator recreated item {restored} instead of {item}")]
    SimulatorMismatch { restored: String, item: String },
    #[error(
        "linking a production institution needs Plaid Link in a browser: start `finq serve` and open the Link page it prints (`finq link` prints it too)"
    )]
    ProductionLink,
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Item(#[from] ItemError),
}

/// Plaid clients for a run, and the in-process simulator if one is needed.
pub struct Connections {
    settings: Settings,
    #[cfg(feature = "simulator")]
    sim: Option<(Simulator, SimServer)>,
}

/// The in-process simulator's data for a new item (the demo's seed and size) and the tag
/// the item gets (`created_by`).
#[derive(Debug, Clone)]
pub struct SimLink<'a> {
    pub seed: u64,
    pub transactions: usize,
    pub tag: &'a str,
}

impl Connections {
    pub fn new(settings: &Settings) -> Self {
        Connections {
            settings: settings.clone(),
            #[cfg(feature = "simulator")]
            sim: None,
        }
    }

    fn credentials(&self, env: PlaidEnv) -> Result<(String, SecretString), ConnectError> {
        match (&self.settings.plaid.client_id, &self.settings.plaid.secret) {
            (Some(id), Some(secret)) => Ok((id.clone(), secret.clone())),
            _ if env == PlaidEnv::Sim => Ok((SIM_CLIENT_ID.into(), SecretString::from(SIM_SECRET))),
            _ => Err(ConnectError::NoCredentials(env.as_str())),
        }
    }

    /// Start (once) the in-process simulator.
    #[cfg(feature = "simulator")]
    pub async fn in_process_sim(
        &mut self,
        config: SimConfig,
    ) -> Result<(Simulator, String), ConnectError> {
        if self.sim.is_none() {
            let sim = Simulator::new(config);
            let addr: std::net::SocketAddr = "127.0.0.1:0".parse().expect("valid address");
            let server = sim.serve(addr).await.map_err(ConnectError::Simulator)?;
            self.sim = Some((sim, server));
        }
        let (sim, server) = self.sim.as_ref().expect("just set");
        Ok((sim.clone(), server.base_url.clone()))
    }

    /// The client for an existing item.
    pub async fn client_for(&mut self, item: &ItemInfo) -> Result<PlaidClient, ConnectError> {
        let env: PlaidEnv = item.environment.parse().unwrap_or(PlaidEnv::Production);
        if let Some(url) = self.settings.plaid.base_url.clone() {
            let (id, secret) = self.credentials(env)?;
            return Ok(PlaidClient::new(&url, &id, secret));
        }
        let url = match (env, &item.sim_spec) {
            #[cfg(feature = "simulator")]
            (PlaidEnv::Sim, Some(spec)) => {
                let (sim, url) = self.in_process_sim(SimConfig::default()).await?;
                if sim.spec_of(&item.item_id).is_none() {
                    let restored = sim.restore_item(spec.clone());
                    if restored != item.item_id {
                        return Err(ConnectError::SimulatorMismatch {
                            restored,
                            item: item.item_id.clone(),
                        });
                    }
                }
                url
            }
            #[cfg(not(feature = "simulator"))]
            (PlaidEnv::Sim, Some(_)) => return Err(ConnectError::NoSimulator),
            (PlaidEnv::Sim, None) => {
                return Err(ConnectError::StandaloneSimulator {
                    item: item.item_id.clone(),
                    institution: item.institution.clone(),
                });
            }
            (env, _) => env
                .default_base_url()
                .expect("real environments have a URL")
                .to_string(),
        };
        let (id, secret) = self.credentials(env)?;
        Ok(PlaidClient::new(&url, &id, secret))
    }

    pub async fn stop(self) {
        #[cfg(feature = "simulator")]
        if let Some((sim, server)) = self.sim {
            server.stop().await;
            // A large simulated history takes seconds to free (a million transactions: about
            // three): a thread of its own frees it, and a command that is done does not wait
            // for that.
            std::thread::spawn(move || drop(sim));
        }
    }
}

/// What recreates a new item of the in-process simulator, by item id.
type SpecOf = Box<dyn Fn(&str) -> Option<SimItemSpec> + Send + Sync>;

/// Where new items are linked: the configured environment's client, and for the in-process
/// simulator what recreates each new item.
pub struct NewItems {
    pub client: PlaidClient,
    pub environment: PlaidEnv,
    spec_of: Option<SpecOf>,
}

/// Plaid's own Link script (sandbox and production).
pub const PLAID_LINK_SCRIPT: &str = "https://cdn.plaid.com/link/v2/stable/link-initialize.js";

impl NewItems {
    /// What the item's row keeps to recreate it (in-process simulator items only), tagged
    /// with `tag` (`created_by`) when given.
    pub fn sim_spec(&self, item_id: &str, tag: Option<&str>) -> Option<serde_json::Value> {
        let spec = self.spec_of.as_ref()?(item_id)?;
        let mut value = serde_json::to_value(spec).ok()?;
        if let Some(tag) = tag {
            value["created_by"] = serde_json::Value::String(tag.to_string());
        }
        Some(value)
    }
}

/// The Plaid Link script a browser loads to link through `client`: Plaid's own, or the
/// stand-in a simulator serves at the same path.
pub fn link_script(client: &PlaidClient) -> String {
    let base = client.base_url().trim_end_matches('/');
    if base.ends_with(".plaid.com") {
        PLAID_LINK_SCRIPT.to_string()
    } else {
        format!("{base}/link/v2/stable/link-initialize.js")
    }
}

impl Connections {
    /// The client that links new items in the configured environment; for the in-process
    /// simulator (started with `sim`'s data), the items linked before are recreated first
    /// so a new one gets a new id.
    pub async fn new_items(
        &mut self,
        pool: &PgPool,
        sim: Option<&SimLink<'_>>,
    ) -> Result<NewItems, ConnectError> {
        let env = self.settings.plaid.env;
        match (&self.settings.plaid.base_url, env) {
            #[cfg(not(feature = "simulator"))]
            (None, PlaidEnv::Sim) => {
                let _ = (pool, sim);
                Err(ConnectError::NoSimulator)
            }
            #[cfg(feature = "simulator")]
            (None, PlaidEnv::Sim) => {
                let config = match sim {
                    Some(s) => SimConfig {
                        seed: s.seed,
                        transactions: s.transactions,
                        ..SimConfig::default()
                    },
                    None => SimConfig::default(),
                };
                let (simulator, url) = self.in_process_sim(config).await?;
                for item in items::list(pool).await? {
                    if let Some(spec) = item.sim_spec
                        && simulator.spec_of(&item.item_id).is_none()
                    {
                        simulator.restore_item(spec);
                    }
                }
                let (id, secret) = self.credentials(env)?;
                Ok(NewItems {
                    client: PlaidClient::new(&url, &id, secret),
                    environment: env,
                    spec_of: Some(Box::new(move |item_id: &str| simulator.spec_of(item_id))),
                })
            }
            (base, env) => {
                let _ = sim;
                let url = base
                    .clone()
                    .or(env.default_base_url().map(str::to_string))
                    .expect("a URL");
                let (id, secret) = self.credentials(env)?;
                Ok(NewItems {
                    client: PlaidClient::new(&url, &id, secret),
                    environment: env,
                    spec_of: None,
                })
            }
        }
    }
}

/// Link an institution in the configured environment without a browser, through the
/// sandbox's `/sandbox/public_token/create` (the simulator or Plaid Sandbox). `sim` sets the
/// in-process simulator's data (the demo's seed and size) and tags the item (`created_by`).
/// Production needs Plaid Link: the page `finq serve` hosts.
pub async fn link(
    pool: &PgPool,
    vault: &TokenVault,
    settings: &Settings,
    institution: &str,
    sim: Option<SimLink<'_>>,
) -> Result<LinkedItem, ConnectError> {
    if settings.plaid.env == PlaidEnv::Production {
        return Err(ConnectError::ProductionLink);
    }
    let mut conns = Connections::new(settings);
    let result = async {
        let new = conns.new_items(pool, sim.as_ref()).await?;
        let tag = sim.as_ref().map(|s| s.tag);
        Ok::<_, ConnectError>(
            link_sandbox_institution(
                pool,
                &new.client,
                vault,
                institution,
                new.environment.as_str(),
                settings.webhook_url.clone(),
                |item_id| new.sim_spec(item_id, tag),
            )
            .await?,
        )
    }
    .await;
    conns.stop().await;
    result
}
