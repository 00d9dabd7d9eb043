//! Linking in a real browser: Debian's `chromium`, headless, driven through `chromedriver`
//! (WebDriver), opens the Link page of a running `finq serve`, links an institution of the
//! simulator through its Plaid Link stand-in (a wrong password first, then `user_good` /
//! `pass_good`), and the page shows the transactions that arrived; PostgreSQL then holds the
//! simulator's ground truth and DuckDB the same count. Leaving Link links nothing; update
//! mode repairs a login. The page's API refuses requests without the secret or from another
//! origin, and the secret never reaches the server's log.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use fantoccini::{Client, ClientBuilder, Locator};
use finq_connectors::plaid::items;
use finq_connectors::sim::{SimConfig, Simulator};
use finq_e2e::{serve_on_own_runtime, state_diff, state_of, stored_state};
use serde_json::json;
use sqlx::PgPool;

const KEY: [u8; 32] = [3; 32];

/// chromedriver and a WebDriver session of headless chromium; both end when dropped.
struct Browser {
    driver: Child,
    client: Option<Client>,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn installed(program: &str) -> String {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let path = format!("{dir}/{program}");
        if std::path::Path::new(&path).exists() {
            return path;
        }
    }
    panic!(
        "{program} is not installed: the browser tests use Debian's chromium and chromium-driver \
         (`apt-get install chromium chromium-driver`; scripts/test installs them)"
    );
}

async fn browser() -> Browser {
    let (chromium, chromedriver) = (installed("chromium"), installed("chromedriver"));
    let port = free_port();
    let driver = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--window-size=1000,800",
                     format!("--user-data-dir={}", profile.path().display())],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let mut last = None;
    for _ in 0..100 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => {
                return Browser {
                    driver,
                    client: Some(client),
                    _profile: profile,
                };
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no WebDriver session with chromium: {last:?}");
}

/// `finq serve` on the test's database, simulator and data directory: the process, its
/// base URL, the Link page's URL (what it printed) and its log so far.
struct Serve {
    child: Child,
    base: String,
    link: String,
    log: Arc<Mutex<String>>,
}

/// A failing test must not leave the server running (it holds the test's database).
impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn finq_command(db_url: &str, sim_url: &str, data: &std::path::Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_finq"));
    command
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("PLAID_ENV", "sim")
        .env("PLAID_BASE_URL", sim_url)
        .env("FINQ_DATA_DIR", data)
        .env(
            "FINQ_ENCRYPTION_KEY",
            base64::engine::general_purpose::STANDARD.encode(KEY),
        )
        .env("FINQ_POLL_AFTER_HOURS", "0");
    command
}

fn finq_serve(db_url: &str, sim_url: &str, data: &std::path::Path) -> Serve {
    let mut child = finq_command(db_url, sim_url, data, &["serve", "--addr", "127.0.0.1:0"])
        // Everything finq logs, to show that the secret is not in it.
        .env("FINQ_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("finq serve: listening on ") {
                let _ = tx.send(url.to_string());
            }
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("finq serve listens");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let link = loop {
        let line = stdout
            .next()
            .expect("finq serve prints its Link page")
            .unwrap();
        if let Some(url) = line.strip_prefix("Link a bank in your browser: ") {
            break url.to_string();
        }
    };
    std::thread::spawn(move || for _ in stdout {});
    Serve {
        child,
        base,
        link,
        log,
    }
}

/// The page's `data-state`, once it is one of `states` (or panics after `secs`).
async fn page_state(c: &Client, states: &[&str], secs: u64) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let state = c
            .execute("return document.body.dataset.state", vec![])
            .await
            .unwrap();
        let state = state.as_str().unwrap_or("").to_string();
        if states.contains(&state.as_str()) {
            return state;
        }
        if std::time::Instant::now() > deadline {
            let status = c.find(Locator::Css("#status")).await.unwrap();
            panic!(
                "the page stayed '{state}' (status: {:?})",
                status.text().await.unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Inside Link's iframe: log in with `password`.
async fn log_in(c: &Client, password: &str) {
    let user = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#username"))
        .await
        .unwrap();
    user.clear().await.unwrap();
    user.send_keys("user_good").await.unwrap();
    let pass = c.find(Locator::Css("#password")).await.unwrap();
    pass.clear().await.unwrap();
    pass.send_keys(password).await.unwrap();
    c.find(Locator::Css("#submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Open Link from the page (once it is ready) and enter its iframe.
async fn open_link(c: &Client) {
    page_state(c, &["ready"], 30).await;
    c.find(Locator::Css("#link"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("iframe[title='Plaid Link']"))
        .await
        .unwrap()
        .enter_frame()
        .await
        .unwrap();
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn a_bank_linked_in_a_browser_reaches_duckdb(pool: PgPool) {
    let sim = Simulator::new(SimConfig {
        seed: 17,
        transactions: 400,
        ..Default::default()
    });
    let sim_url = serve_on_own_runtime(&sim);
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the tests");
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let db_url = format!(
        "{prefix}/{}",
        pool.connect_options().get_database().unwrap()
    );
    let data = tempfile::tempdir().unwrap();
    let mut serve = finq_serve(&db_url, &sim_url, data.path());
    let secret = serve
        .link
        .split_once("token=")
        .expect("the URL carries the secret")
        .1
        .to_string();
    assert!(secret.len() >= 32, "{secret}");

    // The page's API is for the owner only.
    let http = reqwest::Client::new();
    let api = format!("{}/link/api/token", serve.base);
    let refused = [
        // No secret, a wrong one, the right one from another origin or with none, another
        // Host name (DNS rebinding).
        http.get(format!("{}/link", serve.base)),
        http.get(format!("{}/link?token=nope", serve.base)),
        http.post(&api)
            .header("Origin", &serve.base)
            .header("X-Finq-Token", "nope")
            .json(&json!({})),
        http.post(&api)
            .header("Origin", "http://evil.example")
            .header("X-Finq-Token", &secret)
            .json(&json!({})),
        http.post(&api)
            .header("X-Finq-Token", &secret)
            .json(&json!({})),
        http.post(&api)
            .header("Host", "evil.example")
            .header("Origin", "http://evil.example")
            .header("X-Finq-Token", &secret)
            .json(&json!({})),
    ];
    for request in refused {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403);
    }
    // Other paths are not the page's: a plain 404, no refusal.
    let favicon = http
        .get(format!("{}/favicon.ico", serve.base))
        .send()
        .await
        .unwrap();
    assert_eq!(favicon.status(), 404);

    let mut b = browser().await;
    let c = b.client.take().unwrap();

    // Link: choose an institution, a wrong password first, then Sandbox's credentials.
    c.goto(&serve.link).await.unwrap();
    open_link(&c).await;
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("button[data-institution='ins_109512']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    log_in(&c, "not-the-password").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while text(&c, "#error").await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "no error shown");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        text(&c, "#error").await.contains("incorrect"),
        "{}",
        text(&c, "#error").await
    );
    log_in(&c, "pass_good").await;
    c.enter_parent_frame().await.unwrap();
    page_state(&c, &["synced"], 90).await;
    assert_eq!(text(&c, "#institution").await, "Houndstooth Bank");
    let shown: i64 = text(&c, "#transactions")
        .await
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let accounts = text(&c, "#accounts").await;

    // PostgreSQL holds exactly the simulator's data, and DuckDB has every transaction.
    let linked = items::list(&pool).await.unwrap();
    assert_eq!(linked.len(), 1);
    let item = linked[0].item_id.clone();
    assert_eq!(linked[0].environment, "sim");
    let truth = state_of(sim.ground_truth(&item).unwrap());
    let got = stored_state(&mut pool.acquire().await.unwrap(), &item).await;
    assert!(got == truth, "{}", state_diff(&got, &truth));
    assert_eq!(shown as usize, truth.len());
    for account in items::account_labels(&pool, &item).await.unwrap() {
        assert!(accounts.contains(&account), "{account} not in {accounts}");
    }
    let out = finq_command(
        &db_url,
        &sim_url,
        data.path(),
        &[
            "sql",
            "SELECT count(*) AS n FROM transactions",
            "--format",
            "csv",
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().nth(1),
        Some(shown.to_string().as_str())
    );

    // Leaving Link links nothing.
    c.goto(&serve.link).await.unwrap();
    open_link(&c).await;
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#exit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.enter_parent_frame().await.unwrap();
    page_state(&c, &["exited"], 10).await;
    assert!(text(&c, "#status").await.contains("without linking"));
    assert_eq!(items::list(&pool).await.unwrap().len(), 1);

    // Update mode: the bank wants a new login; `finq items` points at the page, which
    // repairs it and syncs.
    assert!(sim.reset_login(&item));
    items::set_error(&pool, &item, "ITEM_LOGIN_REQUIRED", None)
        .await
        .unwrap();
    let out = finq_command(&db_url, &sim_url, data.path(), &["items"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    let repair = format!("{}&item={item}", serve.link);
    assert!(listing.contains(&repair), "{listing}");
    c.goto(&repair).await.unwrap();
    open_link(&c).await;
    log_in(&c, "pass_good").await;
    c.enter_parent_frame().await.unwrap();
    page_state(&c, &["synced"], 60).await;
    assert_eq!(finq_e2e::error_code(&pool, &item).await, None);
    let synced: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sync_log WHERE item_id = $1 AND outcome = 'ok'")
            .bind(&item)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(synced, 2, "the repaired item synced again");

    // A page without the secret says what it needs.
    c.goto(&format!("{}/link", serve.base)).await.unwrap();
    let body = c
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("secret"), "{body}");
    c.close().await.unwrap();
    drop(b);

    // Stopped gracefully, the server forgets its address; its log never held the secret.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(serve.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(serve.child.wait().unwrap().success());
    assert!(!data.path().join("serve.json").exists());
    let log = serve.log.lock().unwrap();
    assert!(log.contains("/link/api/exchange"), "the log shows requests");
    assert!(!log.contains("path=/favicon.ico}: link page request refused"));
    assert!(!log.contains(&secret), "the secret reached the log");
}
