//! Plaid wire types, shared by the client and the simulator.
//!
//! Plaid's enums are extensible ("the API may add new enum values at will"), so every
//! enum-like field is a `String`, kept as it comes. Unknown fields of a transaction are kept
//! in `extra`. Amounts are exact decimals on our side and JSON numbers on the wire.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// JSON number <-> `Decimal`, via the shortest decimal text of the double (so `72.1` stays
/// `72.1`, never `72.09999…`).
pub mod amount {
    use rust_decimal::Decimal;
    use rust_decimal::prelude::ToPrimitive;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::str::FromStr;

    pub fn serialize<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.to_f64().unwrap_or(0.0))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let f = f64::deserialize(d)?;
        from_f64(f).ok_or_else(|| serde::de::Error::custom(format!("amount {f} out of range")))
    }
    pub fn from_f64(f: f64) -> Option<Decimal> {
        if !f.is_finite() {
            return None;
        }
        Decimal::from_str(&f.to_string())
            .or_else(|_| Decimal::from_scientific(&format!("{f:e}")))
            .ok()
    }

    pub mod option {
        use super::*;
        pub fn serialize<S: Serializer>(d: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
            Option::<f64>::deserialize(d)?
                .map(|f| {
                    from_f64(f)
                        .ok_or_else(|| serde::de::Error::custom(format!("amount {f} out of range")))
                })
                .transpose()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlaidError {
    pub error_type: String,
    pub error_code: String,
    pub error_message: String,
    pub display_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Location {
    pub address: Option<String>,
    pub city: Option<String>,
    pub region: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    pub store_number: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PaymentMeta {
    pub reference_number: Option<String>,
    pub ppd_id: Option<String>,
    pub payee: Option<String>,
    pub by_order_of: Option<String>,
    pub payer: Option<String>,
    pub payment_method: Option<String>,
    pub payment_processor: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonalFinanceCategory {
    pub primary: String,
    pub detailed: String,
    #[serde(default)]
    pub confidence_level: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    pub transaction_id: String,
    pub account_id: String,
    /// Plaid's sign: positive = money out of the account.
    #[serde(with = "amount")]
    pub amount: Decimal,
    pub iso_currency_code: Option<String>,
    pub unofficial_currency_code: Option<String>,
    pub date: NaiveDate,
    pub authorized_date: Option<NaiveDate>,
    pub authorized_datetime: Option<DateTime<Utc>>,
    pub datetime: Option<DateTime<Utc>>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub merchant_name: Option<String>,
    #[serde(default)]
    pub merchant_entity_id: Option<String>,
    #[serde(default)]
    pub logo_url: Option<String>,
    #[serde(default)]
    pub website: Option<String>,
    pub payment_channel: String,
    pub pending: bool,
    pub pending_transaction_id: Option<String>,
    pub account_owner: Option<String>,
    pub transaction_code: Option<String>,
    #[serde(default)]
    pub location: Location,
    #[serde(default)]
    pub payment_meta: PaymentMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_finance_category: Option<PersonalFinanceCategory>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_finance_category_icon_url: Option<String>,
    /// Every other field Plaid sent, kept as it came.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemovedTransaction {
    pub transaction_id: String,
    pub account_id: String,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Balances {
    #[serde(with = "amount::option")]
    pub available: Option<Decimal>,
    #[serde(with = "amount::option")]
    pub current: Option<Decimal>,
    #[serde(with = "amount::option")]
    pub limit: Option<Decimal>,
    pub iso_currency_code: Option<String>,
    pub unofficial_currency_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountBase {
    pub account_id: String,
    pub balances: Balances,
    pub mask: Option<String>,
    pub name: String,
    pub official_name: Option<String>,
    #[serde(rename = "type")]
    pub account_type: String,
    pub subtype: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub item_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub institution_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub institution_name: Option<String>,
    pub webhook: Option<String>,
    pub error: Option<PlaidError>,
    pub available_products: Vec<String>,
    pub billed_products: Vec<String>,
    pub consent_expiration_time: Option<String>,
    pub update_type: String,
}

// ---- requests and responses ----

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkTokenUser {
    pub client_user_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkTokenCreateRequest {
    pub client_name: String,
    pub language: String,
    pub country_codes: Vec<String>,
    /// Required unless `user_id` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<LinkTokenUser>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Nullable; at least one product is required except in update mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub products: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// Update mode's options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<LinkTokenUpdate>,
}

/// `LinkTokenCreateRequestUpdate`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkTokenUpdate {
    /// Let the user choose accounts to share (those a `NEW_ACCOUNTS_AVAILABLE` announced).
    #[serde(default)]
    pub account_selection_enabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkTokenCreateResponse {
    pub link_token: String,
    pub expiration: String,
    pub request_id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SandboxPublicTokenOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_password: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxPublicTokenCreateRequest {
    pub institution_id: String,
    pub initial_products: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<SandboxPublicTokenOptions>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublicTokenResponse {
    pub public_token: String,
    pub request_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublicTokenExchangeRequest {
    pub public_token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublicTokenExchangeResponse {
    pub access_token: String,
    pub item_id: String,
    pub request_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessTokenRequest {
    pub access_token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountsGetResponse {
    pub accounts: Vec<AccountBase>,
    pub item: Item,
    pub request_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstitutionsGetByIdRequest {
    pub institution_id: String,
    pub country_codes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Institution {
    pub institution_id: String,
    pub name: String,
    pub products: Vec<String>,
    pub country_codes: Vec<String>,
    pub routing_numbers: Vec<String>,
    pub oauth: bool,
    /// `SUPPORTED` or `NOT_SUPPORTED` (newer than the 2020 spec; Plaid's current client
    /// libraries require it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_availability: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstitutionsGetByIdResponse {
    pub institution: Institution,
    pub request_id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_original_description: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_finance_category_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_requested: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TransactionsSyncRequest {
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<SyncOptions>,
}

/// One `/transactions/sync` page as the sync reads it: only the fields finq stores, with
/// strings borrowed from the response body where JSON allows (no escapes), so a page of 500
/// transactions costs a handful of allocations rather than thousands. Fields finq does not
/// store (location, counterparties, …) are skipped without being built.
#[derive(Debug, Deserialize)]
pub struct SyncPage<'a> {
    pub transactions_update_status: String,
    pub accounts: Vec<AccountBase>,
    #[serde(borrow)]
    pub added: Vec<SyncTransaction<'a>>,
    #[serde(borrow)]
    pub modified: Vec<SyncTransaction<'a>>,
    pub removed: Vec<RemovedTransaction>,
    /// The spec says "" when nothing is available yet; the migration guide says null.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

/// The stored fields of a [`Transaction`], borrowed (see [`SyncPage`]).
#[derive(Debug, Deserialize)]
pub struct SyncTransaction<'a> {
    #[serde(borrow)]
    pub transaction_id: Cow<'a, str>,
    #[serde(borrow)]
    pub account_id: Cow<'a, str>,
    /// Plaid's sign: positive = money out of the account.
    pub amount: f64,
    #[serde(borrow, default)]
    pub iso_currency_code: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub unofficial_currency_code: Option<Cow<'a, str>>,
    pub date: NaiveDate,
    #[serde(default)]
    pub authorized_date: Option<NaiveDate>,
    #[serde(default)]
    pub datetime: Option<DateTime<Utc>>,
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub merchant_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub payment_channel: Cow<'a, str>,
    pub pending: bool,
    #[serde(borrow, default)]
    pub pending_transaction_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub personal_finance_category: Option<SyncCategory<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct SyncCategory<'a> {
    #[serde(borrow)]
    pub primary: Cow<'a, str>,
    #[serde(borrow)]
    pub detailed: Cow<'a, str>,
    #[serde(borrow, default)]
    pub confidence_level: Option<Cow<'a, str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_spec_example_and_keeps_unknown_fields() {
        let json = r#"{"account_id":"BxBXxLj1m4HMXBm9WZZmCWVbPjX16EHwv99vp","account_owner":null,"amount":72.1,
        "iso_currency_code":"USD","unofficial_currency_code":null,"check_number":null,
        "counterparties":[{"name":"Walmart","type":"merchant"}],
        "date":"2023-09-24","datetime":"2023-09-24T11:01:01Z","authorized_date":"2023-09-22","authorized_datetime":"2023-09-22T10:34:50Z",
        "location":{"address":"13425 Community Rd","city":"Poway","region":"CA","postal_code":"92064","country":"US","lat":32.959068,"lon":-117.037666,"store_number":"1700"},
        "name":"PURCHASE WM SUPERCENTER #1700","merchant_name":"Walmart",
        "payment_meta":{"by_order_of":null,"payee":null,"payer":null,"payment_method":null,"payment_processor":null,"ppd_id":null,"reason":null,"reference_number":null},
        "payment_channel":"in store","pending":false,"pending_transaction_id":"no86Eox18VHMvaOVL7gPUM9ap3aR1LsAVZ5nc",
        "personal_finance_category":{"primary":"GENERAL_MERCHANDISE","detailed":"GENERAL_MERCHANDISE_SUPERSTORES","confidence_level":"VERY_HIGH"},
        "transaction_id":"lPNjeW1nR6CDn5okmGQ6hEpMo4lLNoSrzqDje","transaction_code":null,"transaction_type":"place",
        "brand_new_field":"kept"}"#;
        let t: Transaction = serde_json::from_str(json).unwrap();
        assert_eq!(t.amount.to_string(), "72.1");
        assert_eq!(t.payment_channel, "in store");
        assert_eq!(t.extra["brand_new_field"], "kept");
        let back = serde_json::to_value(&t).unwrap();
        assert_eq!(back["amount"], serde_json::json!(72.1));
        assert!(back["location"]["store_number"].is_string());
        assert!(back.get("authorized_date").is_some());
    }
}
