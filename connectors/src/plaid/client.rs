//! The Plaid HTTP client. Credentials go in the `PLAID-CLIENT-ID` / `PLAID-SECRET` headers
//! (never in a logged body); non-2xx answers are decoded as Plaid's `PlaidError`.
//! Transient failures (429, 5xx, timeouts, dropped connections) are retried with
//! exponential backoff and jitter.

use std::time::Duration;

use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use bytes::Bytes;

use super::types::*;

#[derive(Debug, thiserror::Error)]
pub enum PlaidApiError {
    #[error("cannot reach Plaid at {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Plaid {path} failed: {} ({}): {}{}", .error.error_code, .error.error_type, .error.error_message, hint(&.error.error_code))]
    Plaid {
        path: String,
        status: u16,
        // Boxed: keeps every `Result` carrying this error small.
        error: Box<PlaidError>,
    },
    #[error("Plaid {path} answered HTTP {status} with a body finq cannot read: {message}")]
    Decode {
        path: String,
        status: u16,
        message: String,
    },
}

fn hint(code: &str) -> String {
    match advice(code) {
        Some(a) => format!(". {a}"),
        None => String::new(),
    }
}

/// What a Plaid error code means for a person, and what to do about it.
pub fn advice(code: &str) -> Option<&'static str> {
    Some(match code {
        "ITEM_LOGIN_REQUIRED" => {
            "The bank needs you to log in again: run `finq link --update <item>`"
        }
        "PENDING_EXPIRATION" | "PENDING_DISCONNECT" => {
            "Access to this bank ends soon: re-authenticate with `finq link --update <item>`"
        }
        "NEW_ACCOUNTS_AVAILABLE" => {
            "The bank has accounts you have not shared yet: choose them with `finq link --update <item>`"
        }
        "USER_PERMISSION_REVOKED" | "USER_ACCOUNT_REVOKED" => {
            "Access was revoked at the bank: remove it (`finq items remove <item>`) and link again"
        }
        "INVALID_API_KEYS" => "Check PLAID_CLIENT_ID and PLAID_SECRET (and PLAID_ENV)",
        "INVALID_ACCESS_TOKEN" | "ITEM_NOT_FOUND" => {
            "Plaid no longer knows this connection: remove it (`finq items remove <item>`) and link the institution again"
        }
        "RATE_LIMIT_EXCEEDED" | "TRANSACTIONS_SYNC_LIMIT" | "RATE_LIMIT" => {
            "Plaid is rate-limiting this connection; the next sync will retry"
        }
        "INSTITUTION_DOWN" | "INSTITUTION_NOT_RESPONDING" | "INSTITUTION_NOT_AVAILABLE" => {
            "The bank is not answering Plaid right now; the next sync will retry"
        }
        "INTERNAL_SERVER_ERROR" | "PLANNED_MAINTENANCE" => {
            "Plaid had a problem on its side; the next sync will retry"
        }
        "ITEM_LOCKED" => {
            "The bank locked the account: unlock it on the bank's website, then `finq link --update <item>`"
        }
        "NO_ACCOUNTS" => "The bank reports no usable accounts for this login",
        _ => return None,
    })
}

impl PlaidApiError {
    pub fn code(&self) -> Option<&str> {
        match self {
            PlaidApiError::Plaid { error, .. } => Some(&error.error_code),
            _ => None,
        }
    }

    /// Worth retrying the same request.
    pub fn is_transient(&self) -> bool {
        match self {
            PlaidApiError::Transport { .. } => true,
            PlaidApiError::Plaid { status, error, .. } => {
                *status == 429
                    || *status >= 500
                    || matches!(
                        error.error_code.as_str(),
                        "INSTITUTION_DOWN" | "INSTITUTION_NOT_RESPONDING"
                    )
            }
            PlaidApiError::Decode { status, .. } => *status >= 500,
        }
    }
}

#[derive(Clone)]
pub struct PlaidClient {
    http: reqwest::Client,
    base_url: String,
    client_id: String,
    secret: SecretString,
    max_attempts: u32,
    base_delay: Duration,
}

impl std::fmt::Debug for PlaidClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlaidClient")
            .field("base_url", &self.base_url)
            .field("client_id", &self.client_id)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

impl PlaidClient {
    pub fn new(base_url: &str, client_id: &str, secret: SecretString) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("finq/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("building the HTTP client cannot fail with these settings");
        PlaidClient {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            client_id: client_id.to_string(),
            secret,
            max_attempts: 6,
            base_delay: Duration::from_millis(200),
        }
    }

    /// Retry policy: at most `attempts` tries, backoff starting at `base_delay`.
    pub fn with_retries(mut self, attempts: u32, base_delay: Duration) -> Self {
        self.max_attempts = attempts.max(1);
        self.base_delay = base_delay;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// POST `path` with `body`, retrying transient failures.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
    ) -> Result<Resp, PlaidApiError> {
        let (status, bytes) = self.call_raw(path, body).await?;
        decode(path, status, &bytes)
    }

    /// A call with retries whose successful body is returned undecoded (with its status),
    /// for callers that decode it themselves (borrowing from it).
    pub async fn call_raw<Req: Serialize>(
        &self,
        path: &str,
        body: &Req,
    ) -> Result<(u16, Bytes), PlaidApiError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.call_once(path, body).await {
                Err(e) if e.is_transient() && attempt < self.max_attempts => {
                    let exp = self.base_delay * 2u32.pow(attempt - 1);
                    let jitter = rand::thread_rng().gen_range(0.5..1.5);
                    let delay = exp.mul_f64(jitter).min(Duration::from_secs(30));
                    tracing::warn!(path, attempt, error = %e, ?delay, "transient Plaid failure, retrying");
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }

    async fn call_once<Req: Serialize>(
        &self,
        path: &str,
        body: &Req,
    ) -> Result<(u16, Bytes), PlaidApiError> {
        let url = format!("{}{}", self.base_url, path);
        let resp = self
            .http
            .post(&url)
            .header("PLAID-CLIENT-ID", &self.client_id)
            .header("PLAID-SECRET", self.secret.expose_secret())
            .header("Plaid-Version", "2020-09-14")
            .json(body)
            .send()
            .await
            .map_err(|source| PlaidApiError::Transport {
                url: url.clone(),
                source,
            })?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|source| PlaidApiError::Transport {
                url: url.clone(),
                source,
            })?;
        if (200..300).contains(&status) {
            return Ok((status, bytes));
        }
        match serde_json::from_slice::<PlaidError>(&bytes) {
            Ok(error) => Err(PlaidApiError::Plaid {
                path: path.to_string(),
                status,
                error: Box::new(error),
            }),
            Err(_) => Err(PlaidApiError::Decode {
                path: path.to_string(),
                status,
                message: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
            }),
        }
    }

    pub async fn sandbox_public_token_create(
        &self,
        institution_id: &str,
        webhook: Option<String>,
    ) -> Result<PublicTokenResponse, PlaidApiError> {
        let req = SandboxPublicTokenCreateRequest {
            institution_id: institution_id.to_string(),
            initial_products: vec!["transactions".to_string()],
            options: Some(SandboxPublicTokenOptions {
                webhook,
                ..Default::default()
            }),
        };
        self.call("/sandbox/public_token/create", &req).await
    }

    pub async fn exchange_public_token(
        &self,
        public_token: &str,
    ) -> Result<PublicTokenExchangeResponse, PlaidApiError> {
        let req = PublicTokenExchangeRequest {
            public_token: public_token.to_string(),
        };
        self.call("/item/public_token/exchange", &req).await
    }

    pub async fn accounts_get(
        &self,
        access_token: &SecretString,
    ) -> Result<AccountsGetResponse, PlaidApiError> {
        self.call("/accounts/get", &token_request(access_token))
            .await
    }

    pub async fn institution_get_by_id(
        &self,
        institution_id: &str,
    ) -> Result<InstitutionsGetByIdResponse, PlaidApiError> {
        let req = InstitutionsGetByIdRequest {
            institution_id: institution_id.to_string(),
            country_codes: vec!["US".to_string()],
        };
        self.call("/institutions/get_by_id", &req).await
    }

    /// Point an item's webhooks at `webhook` (`None` removes it); Plaid then sends
    /// `WEBHOOK_UPDATE_ACKNOWLEDGED` to the new URL.
    pub async fn item_webhook_update(
        &self,
        access_token: &SecretString,
        webhook: Option<&str>,
    ) -> Result<serde_json::Value, PlaidApiError> {
        self.call(
            "/item/webhook/update",
            &serde_json::json!({ "access_token": access_token.expose_secret(), "webhook": webhook }),
        )
        .await
    }

    pub async fn item_remove(
        &self,
        access_token: &SecretString,
    ) -> Result<serde_json::Value, PlaidApiError> {
        self.call("/item/remove", &token_request(access_token))
            .await
    }

    /// An update-mode link token for an existing item: to repair its login, renew its
    /// consent, or share accounts the bank has added (account selection).
    pub async fn link_token_update(
        &self,
        access_token: &SecretString,
    ) -> Result<LinkTokenCreateResponse, PlaidApiError> {
        let mut req = link_token_request();
        req.access_token = Some(access_token.expose_secret().to_string());
        req.update = Some(LinkTokenUpdate {
            account_selection_enabled: true,
        });
        self.call("/link/token/create", &req).await
    }

    pub async fn link_token_create(
        &self,
        webhook: Option<String>,
    ) -> Result<LinkTokenCreateResponse, PlaidApiError> {
        let mut req = link_token_request();
        req.products = Some(vec!["transactions".to_string()]);
        req.webhook = webhook;
        self.call("/link/token/create", &req).await
    }

    /// `/transactions/sync`, its body undecoded: the sync decodes it with [`decode`] into a
    /// [`SyncPage`](super::types::SyncPage) that borrows from it.
    pub async fn transactions_sync_body(
        &self,
        access_token: &SecretString,
        cursor: Option<&str>,
        count: i64,
    ) -> Result<(u16, Bytes), PlaidApiError> {
        let req = TransactionsSyncRequest {
            access_token: access_token.expose_secret().to_string(),
            cursor: cursor.filter(|c| !c.is_empty()).map(str::to_string),
            count: Some(count),
            options: Some(SyncOptions {
                personal_finance_category_version: Some("v2".to_string()),
                ..Default::default()
            }),
        };
        self.call_raw("/transactions/sync", &req).await
    }
}

/// Decode a successful answer of `path`.
pub fn decode<'a, T: Deserialize<'a>>(
    path: &str,
    status: u16,
    bytes: &'a [u8],
) -> Result<T, PlaidApiError> {
    serde_json::from_slice(bytes).map_err(|e| PlaidApiError::Decode {
        path: path.to_string(),
        status,
        message: e.to_string(),
    })
}

fn token_request(access_token: &SecretString) -> AccessTokenRequest {
    AccessTokenRequest {
        access_token: access_token.expose_secret().to_string(),
    }
}

/// finq's `/link/token/create` request, before mode-specific fields.
fn link_token_request() -> LinkTokenCreateRequest {
    LinkTokenCreateRequest {
        client_name: "finq".to_string(),
        language: "en".to_string(),
        country_codes: vec!["US".to_string()],
        user: Some(LinkTokenUser {
            client_user_id: "finq-local-user".to_string(),
        }),
        user_id: None,
        products: None,
        webhook: None,
        access_token: None,
        update: None,
    }
}
