//! Every simulator response, success and error, validated against Plaid's OpenAPI spec
//! (`shared/reference/plaid/openapi-2020-09-14.yml` beside the repository, or the file
//! `FINQ_PLAID_OPENAPI` names): required keys, types, nullability, nested objects. Enum
//! values are not checked: Plaid's enums are extensible by design. And Plaid's official
//! Python client (`tests/plaid_client_check.py`) takes every answer it asks for.

use std::path::PathBuf;

use finq_connectors::sim::{SimConfig, Simulator};
use finq_e2e::plaid_post;
use serde_json::{Value, json};

fn spec() -> Value {
    let path = std::env::var_os("FINQ_PLAID_OPENAPI")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/reference/plaid/openapi-2020-09-14.yml")
        });
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "Plaid's OpenAPI spec is needed at {} (or set FINQ_PLAID_OPENAPI): {e}",
            path.display()
        )
    });
    serde_yaml_ng::from_str(&text).expect("the spec is valid YAML")
}

fn resolve<'a>(spec: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r
                .strip_prefix("#/components/schemas/")
                .expect("local schema refs");
            resolve(spec, &spec["components"]["schemas"][name])
        }
        None => schema,
    }
}

fn nullable(spec: &Value, schema: &Value) -> bool {
    let s = resolve(spec, schema);
    s.get("nullable").and_then(Value::as_bool) == Some(true)
        || schema.get("nullable").and_then(Value::as_bool) == Some(true)
        || ["allOf", "oneOf", "anyOf"].iter().any(|k| {
            s[*k]
                .as_array()
                .is_some_and(|subs| subs.iter().any(|sub| nullable(spec, sub)))
        })
}

fn validate(spec: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let s = resolve(spec, schema);
    if v.is_null() {
        let typed =
            s.get("type").is_some() || s.get("properties").is_some() || s.get("allOf").is_some();
        if typed && !nullable(spec, schema) {
            errors.push(format!("{at}: null, but the schema does not allow it"));
        }
        return;
    }
    if let Some(all) = s["allOf"].as_array() {
        for sub in all {
            validate(spec, sub, v, at, errors);
        }
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = s[key].as_array() {
            let fits = options.iter().any(|o| {
                let mut e = Vec::new();
                validate(spec, o, v, at, &mut e);
                e.is_empty()
            });
            if !fits {
                errors.push(format!("{at}: matches none of the {key} schemas"));
            }
        }
    }
    let ty = s["type"].as_str();
    let ok = match ty {
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("number") => v.is_number(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("boolean") => v.is_boolean(),
        _ => true,
    };
    if !ok {
        errors.push(format!("{at}: expected {}, got {v}", ty.unwrap_or("?")));
        return;
    }
    if let Some(obj) = v.as_object() {
        for req in s["required"].as_array().into_iter().flatten() {
            let k = req.as_str().unwrap();
            if !obj.contains_key(k) {
                errors.push(format!("{at}: required key `{k}` missing"));
            }
        }
        if let Some(props) = s["properties"].as_object() {
            for (k, sub) in props {
                if let Some(child) = obj.get(k) {
                    validate(spec, sub, child, &format!("{at}.{k}"), errors);
                }
            }
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, child) in arr.iter().enumerate().take(50) {
            validate(spec, items, child, &format!("{at}[{i}]"), errors);
        }
    }
}

struct Checker {
    spec: Value,
    base: String,
    checked: Vec<String>,
}

impl Checker {
    /// POST, then validate the body against the endpoint's 200 schema or, on an error
    /// status, against `PlaidError`.
    async fn call(&mut self, path: &str, body: Value) -> Value {
        let (status, value) = plaid_post(&format!("{}{path}", self.base), body).await;
        let schema = if status == 200 {
            self.spec["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]["schema"].clone()
        } else {
            json!({ "$ref": "#/components/schemas/PlaidError" })
        };
        assert!(!schema.is_null(), "no schema for {path}");
        let mut errors = Vec::new();
        validate(&self.spec, &schema, &value, path, &mut errors);
        assert!(
            errors.is_empty(),
            "{path} (HTTP {status}) does not match Plaid's spec:\n{}",
            errors.join("\n")
        );
        self.checked.push(format!("{path} {status}"));
        value
    }
}

#[tokio::test]
async fn simulator_responses_match_plaids_openapi_spec() {
    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", hook_listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            hook_listener,
            axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" })),
        )
        .await
        .unwrap()
    });
    let sim = Simulator::new(SimConfig {
        seed: 31,
        transactions: 300,
        ..Default::default()
    });
    let server = sim.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut c = Checker {
        spec: spec(),
        base: server.base_url.clone(),

        checked: Vec::new(),
    };

    c.call(
        "/link/token/create",
        json!({
            "client_name": "finq", "language": "en", "country_codes": ["US"],
            "user": { "client_user_id": "u" }, "products": ["transactions"]
        }),
    )
    .await;
    let p = c.call("/sandbox/public_token/create", json!({
        "institution_id": "ins_109508", "initial_products": ["transactions"], "options": { "webhook": hook }
    }))
    .await;
    let ex = c
        .call(
            "/item/public_token/exchange",
            json!({ "public_token": p["public_token"] }),
        )
        .await;
    let token = ex["access_token"].clone();
    c.call("/link/token/create", json!({
        "client_name": "finq", "language": "en", "country_codes": ["US"], "user": { "client_user_id": "u" }, "access_token": token
    }))
    .await;
    c.call("/item/get", json!({ "access_token": token })).await;
    c.call("/accounts/get", json!({ "access_token": token }))
        .await;
    c.call("/accounts/balance/get", json!({ "access_token": token }))
        .await;
    c.call(
        "/institutions/get_by_id",
        json!({ "institution_id": "ins_109508", "country_codes": ["US"] }),
    )
    .await;

    // NOT_READY, then every page, in v1 and v2, then an update with all three lists.
    c.call("/transactions/sync", json!({ "access_token": token }))
        .await;
    let mut cursor = Value::Null;
    loop {
        let page = c
            .call(
                "/transactions/sync",
                json!({ "access_token": token, "cursor": cursor, "count": 120 }),
            )
            .await;
        cursor = page["next_cursor"].clone();
        if page["has_more"] == false {
            break;
        }
    }
    c.call(
        "/transactions/sync",
        json!({ "access_token": token, "options": { "personal_finance_category_version": "v2" } }),
    )
    .await;
    sim.advance(4);
    let update = c
        .call(
            "/transactions/sync",
            json!({ "access_token": token, "cursor": cursor, "count": 500 }),
        )
        .await;
    assert!(
        !update["added"].as_array().unwrap().is_empty()
            && !update["removed"].as_array().unwrap().is_empty()
    );
    c.call("/transactions/refresh", json!({ "access_token": token }))
        .await;
    c.call(
        "/sandbox/item/fire_webhook",
        json!({ "access_token": token, "webhook_code": "DEFAULT_UPDATE" }),
    )
    .await;
    let jwk_kid = sim.webhook_key_id();
    c.call(
        "/webhook_verification_key/get",
        json!({ "key_id": jwk_kid }),
    )
    .await;
    c.call(
        "/sandbox/item/reset_login",
        json!({ "access_token": token }),
    )
    .await;
    c.call("/item/get", json!({ "access_token": token })).await; // with item.error set
    c.call("/transactions/sync", json!({ "access_token": token }))
        .await; // ITEM_LOGIN_REQUIRED
    c.call("/item/remove", json!({ "access_token": token }))
        .await;
    c.call("/accounts/get", json!({ "access_token": token }))
        .await; // ITEM_NOT_FOUND
    c.call("/webhook_verification_key/get", json!({ "key_id": "nope" }))
        .await;
    c.call(
        "/institutions/get_by_id",
        json!({ "institution_id": "ins_nope", "country_codes": ["US"] }),
    )
    .await;
    assert!(c.checked.len() >= 20, "{:?}", c.checked);
}

#[test]
fn the_validator_catches_what_plaid_would_not_send() {
    let spec = spec();
    let schema = json!({ "$ref": "#/components/schemas/TransactionsSyncResponse" });
    let good = json!({
        "transactions_update_status": "HISTORICAL_UPDATE_COMPLETE", "accounts": [], "added": [],
        "modified": [], "removed": [], "next_cursor": "c", "has_more": false, "request_id": "r"
    });
    let mut errors = Vec::new();
    validate(&spec, &schema, &good, "sync", &mut errors);
    assert!(errors.is_empty(), "{errors:?}");

    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("request_id");
    let mut errors = Vec::new();
    validate(&spec, &schema, &missing, "sync", &mut errors);
    assert!(
        errors.iter().any(|e| e.contains("request_id")),
        "{errors:?}"
    );

    let mut wrong = good.clone();
    wrong["has_more"] = json!("no");
    wrong["removed"] = json!([{ "transaction_id": "t" }]);
    wrong["next_cursor"] = Value::Null;
    let mut errors = Vec::new();
    validate(&spec, &schema, &wrong, "sync", &mut errors);
    assert!(errors.iter().any(|e| e.contains("has_more")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("account_id")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("next_cursor")),
        "{errors:?}"
    );
}

/// Plaid's official Python client (plaid-python, as `scripts/test` installs it) takes every
/// answer of the simulator: its models refuse a missing required field or a wrong type.
#[test]
fn plaids_official_client_accepts_the_simulator() {
    let python = std::env::var("FINQ_PLAID_PYTHON").unwrap_or_else(|_| "python3".into());
    let sim = Simulator::new(SimConfig {
        seed: 12,
        transactions: 700,
        ..Default::default()
    });
    let url = finq_e2e::serve_on_own_runtime(&sim);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/plaid_client_check.py"
    );
    let out = std::process::Command::new(&python)
        .arg(script)
        .arg(&url)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {python}: {e} (scripts/test sets FINQ_PLAID_PYTHON)")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'plaid'"),
        "plaid-python is not installed for {python}: run the tests through scripts/test"
    );
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("14 calls accepted"), "{stdout}");
}
