//! `finq items`: each linked institution, its health in words, and what to do about it;
//! `finq items remove`; `finq link --update` (repairing a login).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use finq_connectors::plaid::client::advice;
use secrecy::SecretString;

use crate::app::App;
use finq_connectors::plaid::connect::Connections;
use finq_connectors::plaid::items::{self, ItemInfo};
use finq_core::pipeline::Stages;

fn ago(t: DateTime<Utc>) -> String {
    let secs = (Utc::now() - t).num_seconds().max(0);
    let when = t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M");
    match secs {
        0..=59 => format!("{when} (just now)"),
        60..=3599 => format!("{when} ({} min ago)", secs / 60),
        3600..=86399 => format!("{when} ({} h ago)", secs / 3600),
        _ => format!("{when} ({} days ago)", secs / 86400),
    }
}

/// A status a person understands.
pub fn status_words(code: Option<&str>, message: Option<&str>) -> String {
    match code {
        None => "ok".to_string(),
        Some(code) => match advice(code) {
            Some(a) => format!("needs attention ({code}): {a}"),
            None => format!("error ({code}): {}", message.unwrap_or("see `finq sync`")),
        },
    }
}

pub async fn list(app: &App, json: bool) -> Result<ExitCode> {
    let rows = items::statuses(&app.pool, None).await?;
    if json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "item_id": r.item_id,
                    "institution": r.institution,
                    "environment": r.environment,
                    "status": if r.error_code.is_none() { "ok" } else { "error" },
                    "needs_login": items::needs_link(r.error_code.as_deref(), r.notice_code.as_deref()),
                    "error_code": r.error_code,
                    "error_since": r.error_since,
                    "notice_code": r.notice_code,
                    "notice_since": r.notice_since,
                    "last_synced_at": r.last_synced_at,
                    "accounts": r.accounts,
                    "transactions": r.transactions,
                    "last_error": r.last_error,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(ExitCode::SUCCESS);
    }
    // Items whose user must log in again are repaired on the Link page of `finq serve`.
    let needs_link = |r: &items::ItemStatus| {
        items::needs_link(r.error_code.as_deref(), r.notice_code.as_deref())
    };
    let page = if rows.iter().any(needs_link) {
        crate::server::running_link_page(&app.settings).await
    } else {
        None
    };
    if rows.is_empty() {
        println!("No institution is linked yet: `finq link` links one (or try `finq demo`).");
        return Ok(ExitCode::SUCCESS);
    }
    for r in &rows {
        let status = status_words(r.error_code.as_deref(), r.error_message.as_deref())
            .replace("<item>", &r.item_id);
        println!("{}  (item {}, {})", r.institution, r.item_id, r.environment);
        println!("  status:       {status}");
        if let Some(since) = r.error_since {
            println!("  since:        {}", ago(since));
        }
        if let Some(code) = &r.notice_code {
            let words = advice(code).unwrap_or("Plaid asks for you on the Link page");
            println!(
                "  notice:       {code}: {}",
                words.replace("<item>", &r.item_id)
            );
            if let Some(since) = r.notice_since {
                println!("  notice since: {}", ago(since));
            }
        }
        println!(
            "  accounts:     {} — {}",
            r.accounts,
            r.account_names.as_deref().unwrap_or_default()
        );
        println!("  transactions: {}", r.transactions);
        match r.last_synced_at {
            Some(t) => println!("  last sync:    {}", ago(t)),
            None => println!("  last sync:    never (run `finq sync`)"),
        }
        if let Some(e) = &r.last_error {
            println!("  last error:   {e}");
        }
        if needs_link(r) {
            match &page {
                Some(url) => println!("  log in again: {url}&item={}", r.item_id),
                None => println!(
                    "  log in again: start `finq serve`, then `finq link --update {}` prints the page",
                    r.item_id
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn find(app: &App, item_id: &str) -> Result<ItemInfo> {
    Ok(items::get(&app.pool, item_id).await?)
}

async fn token(app: &App, item_id: &str) -> Result<SecretString> {
    Ok(items::open_token(&app.pool, &app.vault, item_id).await?)
}

pub async fn remove(app: &App, item_id: &str, yes: bool) -> Result<ExitCode> {
    let item = find(app, item_id).await?;
    let n = items::transaction_count(&app.pool, item_id).await?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!(
                "refusing to remove {} without confirmation: pass --yes",
                item.institution
            );
        }
        print!(
            "Remove {} (item {item_id}) at Plaid and delete its accounts and {n} transactions here? [y/N] ",
            item.institution
        );
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("Nothing removed.");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let mut conns = Connections::new(&app.settings);
    let outcome = async {
        let client = conns.client_for(&item).await?;
        match client.item_remove(&token(app, item_id).await?).await {
            Ok(_) => Ok(()),
            // Already gone at Plaid: nothing left to revoke.
            Err(e) if matches!(e.code(), Some("ITEM_NOT_FOUND" | "INVALID_ACCESS_TOKEN")) => Ok(()),
            Err(e) => Err(anyhow::Error::new(e).context(
                "Plaid did not confirm the removal, so nothing was deleted here; try again later",
            )),
        }
    }
    .await;
    conns.stop().await;
    outcome?;
    let mut tx = app.pool.begin().await?;
    items::delete(&mut tx, item_id).await?;
    tx.commit().await?;
    let report = crate::pipeline::run(app, Stages::Derive, None, false).await?;
    println!(
        "Removed {} (item {item_id}) and its {n} transactions.",
        item.institution
    );
    if !report.ok() {
        eprintln!("warning: the mirror could not be refreshed; `finq run` retries");
    }
    Ok(ExitCode::SUCCESS)
}

/// Point every item's webhooks at `url` (or the configured webhook URL).
pub async fn set_webhook(app: &App, url: Option<String>) -> Result<ExitCode> {
    let Some(url) = url.or_else(|| app.settings.webhook_url.clone()) else {
        bail!("no webhook URL: pass one, or set FINQ_WEBHOOK_URL (or webhook_url in finq.toml)");
    };
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        bail!("{url:?} is not an http:// or https:// URL");
    }
    let all = items::list(&app.pool).await?;
    if all.is_empty() {
        println!("No items are linked.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut conns = Connections::new(&app.settings);
    let mut failed = 0;
    for item in &all {
        let outcome = async {
            let client = conns.client_for(item).await?;
            client
                .item_webhook_update(&token(app, &item.item_id).await?, Some(&url))
                .await?;
            Ok::<_, anyhow::Error>(())
        }
        .await;
        match outcome {
            Ok(()) => println!(
                "{} (item {}): webhooks go to {url}",
                item.institution, item.item_id
            ),
            Err(e) => {
                failed += 1;
                eprintln!("{} (item {}): {e:#}", item.institution, item.item_id);
            }
        }
    }
    conns.stop().await;
    if failed > 0 {
        bail!(
            "{failed} of {} items were not updated; run the command again",
            all.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Where to link (or, with `item`, repair a login) in a browser: the Link page of the
/// `finq serve` running on this data directory, or how to start one.
pub async fn print_link_page(app: &App, item: Option<&str>) {
    let what = match item {
        Some(item) => format!("log in to item {item} again"),
        None => "link an account".to_string(),
    };
    let suffix = item.map(|i| format!("&item={i}")).unwrap_or_default();
    match crate::server::running_link_page(&app.settings).await {
        Some(url) => println!("Open this page in your browser to {what}:\n{url}{suffix}"),
        None => println!(
            "Plaid Link runs in your browser, on the page `finq serve` hosts. Start `finq serve` (it prints the page's address), then run this command again, or open that address{} to {what}.",
            if item.is_some() {
                format!(" with {suffix} added")
            } else {
                String::new()
            }
        ),
    }
}

/// Update mode: the Link page's address for the item; with the simulator (unless `browser`),
/// the login is repaired at once and the item synced.
pub async fn update(app: &App, item_id: &str, browser: bool) -> Result<ExitCode> {
    let item = find(app, item_id).await?;
    if browser || item.environment != "sim" {
        print_link_page(app, Some(item_id)).await;
        return Ok(ExitCode::SUCCESS);
    }
    let mut conns = Connections::new(&app.settings);
    let client = conns.client_for(&item).await?;
    let link = client
        .link_token_update(&token(app, item_id).await?)
        .await?;
    let url = format!("{}/sim/items/{item_id}/repair", client.base_url());
    reqwest_post(&url)
        .await
        .context("the simulator did not repair the login")?;
    conns.stop().await;
    // Through Link's update mode, as on the Link page: its login error and notices go.
    items::relinked(&app.pool, item_id).await?;
    println!(
        "Update-mode link token {} created; the simulator completed Link, so the login is repaired.",
        link.link_token
    );
    let report = crate::pipeline::run(app, Stages::All, Some(item_id), true).await?;
    crate::pipeline::print_report(&report, false)
}

async fn reqwest_post(url: &str) -> Result<()> {
    let resp = reqwest::Client::new().post(url).send().await?;
    if !resp.status().is_success() {
        bail!("{} answered {}", url, resp.status());
    }
    Ok(())
}
