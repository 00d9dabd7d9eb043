//! Fault injection: what makes the simulator as unreliable as the real network and Plaid.
//!
//! `--faults rate_limit=0.1,server_error=0.05,mutation=0.1,latency_ms=20,drop=0.02,per_item_limit=50`
//! or `POST /sim/faults` with the same keys as JSON.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Chance of HTTP 429 `TRANSACTIONS_SYNC_LIMIT` on `/transactions/sync`.
    pub rate_limit: f64,
    /// Chance of HTTP 500 `INTERNAL_SERVER_ERROR` on any Plaid endpoint.
    pub server_error: f64,
    /// Chance of `TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION` on a page after the first.
    pub mutation: f64,
    /// Added to every Plaid response.
    pub latency_ms: u64,
    /// Chance the connection is dropped before the response body is sent.
    pub drop: f64,
    /// Plaid's per-item limit on `/transactions/sync` calls a minute (0: not enforced).
    pub per_item_limit: u32,
}

impl Faults {
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("rate_limit", self.rate_limit),
            ("server_error", self.server_error),
            ("mutation", self.mutation),
            ("drop", self.drop),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!(
                    "{name} must be a probability between 0 and 1, not {p}"
                ));
            }
        }
        if self.latency_ms > 60_000 {
            return Err("latency_ms must be at most 60000".into());
        }
        Ok(())
    }
}

impl FromStr for Faults {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut f = Faults::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not key=value"))?;
            let prob = || {
                value
                    .parse::<f64>()
                    .map_err(|_| format!("{key}: `{value}` is not a number"))
            };
            let int = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{key}: `{value}` is not a whole number"))
            };
            match key {
                "rate_limit" => f.rate_limit = prob()?,
                "server_error" => f.server_error = prob()?,
                "mutation" => f.mutation = prob()?,
                "drop" => f.drop = prob()?,
                "latency_ms" => f.latency_ms = int()?,
                "per_item_limit" => f.per_item_limit = int()? as u32,
                other => {
                    return Err(format!(
                        "unknown fault `{other}`: use rate_limit, server_error, mutation, latency_ms, drop, per_item_limit"
                    ));
                }
            }
        }
        f.validate()?;
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_cli_form() {
        let f: Faults = "rate_limit=0.1,server_error=0.05,mutation=0.1,latency_ms=20,drop=0.02"
            .parse()
            .unwrap();
        assert_eq!(f.latency_ms, 20);
        assert_eq!(f.drop, 0.02);
        assert!("rate_limit=2".parse::<Faults>().is_err());
        assert!("nonsense=1".parse::<Faults>().is_err());
        assert_eq!("".parse::<Faults>().unwrap(), Faults::default());
    }
}
