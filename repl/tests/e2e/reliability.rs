//! Proof of reliability, with real processes: `finq sync` runs against the simulator with
//! random faults on and is killed with SIGKILL at random moments; after every kill the
//! database holds exactly what the simulator held at the committed cursor, and repeated runs
//! converge to the simulator's ground truth. Two `finq sync` processes at once end like one.
//! `finq run` killed at random moments (in the sync, the transforms or the mirror) loses
//! nothing: the next run leaves the mirror equal to a rebuild. A sync job of `finq serve`
//! killed with its server runs again when the server restarts.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use finq_connectors::plaid::PlaidClient;
use finq_connectors::sim::{Faults, SimConfig, Simulator};
use finq_core::vault::TokenVault;
use finq_e2e::{TxState, serve_on_own_runtime, state_diff, state_of, stored_state};
use rand::{Rng, SeedableRng};
use secrecy::SecretString;
use sqlx::PgPool;

const KEY: [u8; 32] = [9; 32];

struct Setup {
    sim: Simulator,
    base_url: String,
    item: String,
    db_url: String,
    data: tempfile::TempDir,
}

async fn setup(pool: &PgPool, seed: u64, transactions: usize) -> Setup {
    let sim = Simulator::new(SimConfig {
        seed,
        transactions,
        ..Default::default()
    });
    let base_url = serve_on_own_runtime(&sim);
    let item = link(pool, &base_url, "ins_109508").await;
    // The child processes use the test's fresh database.
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the tests");
    let db = pool.connect_options().get_database().unwrap().to_string();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    Setup {
        sim,
        base_url,
        item,
        db_url: format!("{prefix}/{db}"),
        data: tempfile::tempdir().unwrap(),
    }
}

/// Link an institution of the simulator at `base_url`; the item's id.
async fn link(pool: &PgPool, base_url: &str, institution: &str) -> String {
    let client = PlaidClient::new(base_url, "id", SecretString::from("secret"));
    finq_e2e::link_institution(pool, &client, &TokenVault::from_key(&KEY), institution).await
}

fn finq_sync(s: &Setup) -> Child {
    finq(s, &["sync", "--json"])
}

/// The finq binary with the test's database, simulator, data directory and key.
fn finq_command(s: &Setup, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_finq"));
    command
        .args(args)
        .env("DATABASE_URL", &s.db_url)
        .env("PLAID_ENV", "sim")
        .env("PLAID_BASE_URL", &s.base_url)
        .env("FINQ_DATA_DIR", s.data.path())
        .env(
            "FINQ_ENCRYPTION_KEY",
            base64::engine::general_purpose::STANDARD.encode(KEY),
        )
        .env("FINQ_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn finq(s: &Setup, args: &[&str]) -> Child {
    finq_command(s, args).spawn().unwrap()
}

/// Until no other session is working in this database.
async fn wait_for_other_backends(pool: &PgPool) {
    for _ in 0..500 {
        let busy: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if busy == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("another session kept working in the test database");
}

async fn stored(pool: &PgPool, item: &str) -> TxState {
    stored_state(&mut pool.acquire().await.unwrap(), item).await
}

fn output(child: Child) -> (bool, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn killed_and_faulted_syncs_converge_to_the_simulator(pool: PgPool) {
    let s = setup(&pool, 77, 2000).await;
    s.sim.set_faults(
        "rate_limit=0.1,server_error=0.05,mutation=0.1,latency_ms=3,drop=0.02"
            .parse::<Faults>()
            .unwrap(),
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2026);
    let (mut killed, mut finished) = (0, 0);
    let mut cursors = std::collections::BTreeSet::new();
    let mut typical = Duration::from_millis(1000);
    for round in 0..60 {
        if round % 2 == 1 {
            s.sim.advance(1); // new pending, postings, corrections, removals
        }
        let mut child = finq_sync(&s);
        // Kill at a random moment of a typical run (learned from runs that finished).
        let window = typical.as_millis() as u64 * 13 / 10;
        let wait = Duration::from_millis(rng.gen_range(0..window.max(1)));
        let started = std::time::Instant::now();
        let deadline = std::time::Instant::now() + wait;
        let mut exited = false;
        while std::time::Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if exited {
            finished += 1;
            typical = started.elapsed();
            let _ = output(child);
        } else {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            child.wait().unwrap();
            killed += 1;
        }
        // Whatever happened, the database holds exactly one consistent update: the
        // simulator's state at the cursor that was committed with it.
        // A killed client's backend may still be finishing (even committing) its
        // transaction: wait for it, then read cursor and rows in one snapshot.
        wait_for_other_backends(&pool).await;
        let mut snap = pool.begin().await.unwrap();
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *snap)
            .await
            .unwrap();
        let c: String =
            sqlx::query_scalar::<_, String>("SELECT cursor FROM sync_cursors WHERE item_id = $1")
                .bind(&s.item)
                .fetch_optional(&mut *snap)
                .await
                .unwrap()
                .unwrap_or_default();
        cursors.insert(c.clone());
        let expected = state_of(
            s.sim
                .truth_at_cursor(&s.item, &c)
                .expect("a cursor the simulator issued"),
        );
        let got = stored_state(&mut snap, &s.item).await;
        snap.commit().await.unwrap();
        assert!(
            got == expected,
            "round {round}: state differs from the simulator at the committed cursor: {}",
            state_diff(&got, &expected)
        );
    }
    eprintln!("{killed} runs killed, {finished} finished on their own");
    assert!(killed >= 15, "only {killed} of 60 runs were killed mid-way");
    assert!(
        cursors.len() >= 3,
        "updates must commit between the kills: cursors seen {cursors:?}"
    );

    // Faults stay on: runs still converge.
    let mut converged = false;
    for _ in 0..10 {
        let (ok, _) = output(finq_sync(&s));
        if ok && stored(&pool, &s.item).await == state_of(s.sim.ground_truth(&s.item).unwrap()) {
            converged = true;
            break;
        }
    }
    assert!(
        converged,
        "repeated syncs under faults did not converge to the ground truth"
    );
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM plaid_transactions WHERE pending")
        .fetch_one(&pool)
        .await
        .unwrap();
    let truth_pending = s
        .sim
        .ground_truth(&s.item)
        .unwrap()
        .iter()
        .filter(|t| t.pending)
        .count() as i64;
    assert_eq!(pending, truth_pending);
    // The log recorded the failures and restarts as well as the successes.
    let outcomes: Vec<String> = sqlx::query_scalar("SELECT DISTINCT outcome FROM sync_log")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(outcomes.contains(&"ok".to_string()));
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn two_sync_processes_at_once_end_like_one(pool: PgPool) {
    let s = setup(&pool, 78, 3000).await;
    s.sim.set_faults(Faults {
        latency_ms: 2,
        ..Default::default()
    });
    let (a, b) = (finq_sync(&s), finq_sync(&s));
    let ((ok_a, out_a), (ok_b, out_b)) = (output(a), output(b));
    assert!(ok_a && ok_b, "{out_a}\n{out_b}");
    let truth = state_of(s.sim.ground_truth(&s.item).unwrap());
    assert_eq!(stored(&pool, &s.item).await, truth);
    let added: Vec<i32> =
        sqlx::query_scalar("SELECT added FROM sync_log WHERE outcome = 'ok' ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        added.iter().sum::<i32>(),
        3000,
        "one pulled everything, the other found nothing new: {added:?}"
    );

    // And after changes, two at once again.
    s.sim.advance(2);
    let (a, b) = (finq_sync(&s), finq_sync(&s));
    assert!(output(a).0 && output(b).0);
    assert_eq!(
        stored(&pool, &s.item).await,
        state_of(s.sim.ground_truth(&s.item).unwrap())
    );
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn items_show_health_in_words_and_repair_clears_it(pool: PgPool) {
    let s = setup(&pool, 79, 200).await;
    let items = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_finq"))
            .args(args)
            .env("DATABASE_URL", &s.db_url)
            .env("PLAID_BASE_URL", &s.base_url)
            .env("FINQ_DATA_DIR", s.data.path())
            .env(
                "FINQ_ENCRYPTION_KEY",
                base64::engine::general_purpose::STANDARD.encode(KEY),
            )
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let items_json = || {
        let (_, list, _) = items(&["items", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&list).unwrap();
        (list, v)
    };
    assert!(output(finq_sync(&s)).0);
    // A second bank: its sync goes on while the first one's fails.
    let other = link(&pool, &s.base_url, "ins_109512").await;
    s.sim.reset_login(&s.item);
    let (ok, stdout, stderr) = items(&["sync"]);
    assert!(!ok, "a failed connection makes the exit code non-zero");
    let (other_ok, other_rows): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM sync_log WHERE item_id = $1 AND outcome = 'ok'),
                (SELECT count(*) FROM plaid_transactions WHERE item_id = $1)",
    )
    .bind(&other)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        other_ok >= 1 && other_rows > 0,
        "the other bank synced: {other_ok} syncs, {other_rows} transactions"
    );
    assert!(
        stderr.contains("First Platypus Bank"),
        "the failure names the institution: {stderr}"
    );
    assert!(stdout.contains("ITEM_LOGIN_REQUIRED"), "{stdout}");
    let (_, list, _) = items(&["items"]);
    assert!(
        list.contains("needs attention (ITEM_LOGIN_REQUIRED)"),
        "{list}"
    );
    assert!(
        list.contains(&format!("finq link --update {}", s.item)),
        "{list}"
    );

    let (ok, out, err) = items(&["link", "--update", &s.item]);
    assert!(ok, "{out}{err}");
    let (list, v) = items_json();
    assert_eq!(v[0]["status"], "ok", "{list}");
    assert_eq!(v[0]["accounts"], 4);

    // A notice (consent ends soon): the item still works, and `finq items` says what to do.
    sqlx::query("UPDATE plaid_items SET notice_code = 'PENDING_EXPIRATION', notice_since = now() WHERE item_id = $1")
        .bind(&s.item)
        .execute(&pool)
        .await
        .unwrap();
    let (_, list, _) = items(&["items"]);
    assert!(
        list.contains("notice:       PENDING_EXPIRATION: Access to this bank ends soon"),
        "{list}"
    );
    assert!(
        list.contains(&format!("finq link --update {}", s.item)),
        "{list}"
    );
    let (list, v) = items_json();
    assert_eq!(
        (&v[0]["status"], &v[0]["notice_code"], &v[0]["needs_login"]),
        (
            &serde_json::json!("ok"),
            &serde_json::json!("PENDING_EXPIRATION"),
            &serde_json::json!(true)
        ),
        "{list}"
    );
    let (ok, out, err) = items(&["link", "--update", &s.item]);
    assert!(ok, "{out}{err}");
    let (list, v) = items_json();
    assert_eq!(v[0]["notice_code"], serde_json::Value::Null, "{list}");

    // Webhooks pointed elsewhere: Plaid (here the simulator) is told, and acknowledges at
    // the new address.
    let (ok, _, err) = items(&["items", "webhook"]);
    assert!(!ok && err.contains("FINQ_WEBHOOK_URL"), "{err}");
    let (ok, _, err) = items(&["items", "webhook", "ftp://example.org/hook"]);
    assert!(!ok && err.contains("not an http"), "{err}");
    let hook = "http://127.0.0.1:9/plaid/webhook";
    let (ok, out, err) = items(&["items", "webhook", hook]);
    assert!(ok, "{out}{err}");
    assert!(out.contains(&format!("webhooks go to {hook}")), "{out}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !s.sim.deliveries().iter().any(|d| {
        d.url == hook && d.item_id == s.item && d.webhook_code == "WEBHOOK_UPDATE_ACKNOWLEDGED"
    }) {
        assert!(
            std::time::Instant::now() < deadline,
            "no WEBHOOK_UPDATE_ACKNOWLEDGED sent to {hook}: {:?}",
            s.sim.deliveries()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Removal needs confirmation; with --yes it removes at Plaid and here.
    let (ok, _, err) = items(&["items", "remove", &s.item]);
    assert!(!ok && err.contains("--yes"), "{err}");
    let (ok, out, err) = items(&["items", "remove", &s.item, "--yes"]);
    assert!(ok, "{out}{err}");
    assert!(
        s.sim.ground_truth(&s.item).is_none(),
        "removed at the simulator too"
    );
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM plaid_transactions WHERE item_id = $1")
            .bind(&s.item)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(left, 0);
}

/// Every mirrored table's rows, sorted, as text.
fn mirror_rows(path: &std::path::Path) -> Vec<Vec<Vec<Option<String>>>> {
    use finq_analytics::query::{QueryEngine, Trust};
    let mut engine = QueryEngine::open(path, Trust::User).unwrap();
    finq_analytics::mirror::table_names()
        .into_iter()
        .map(|t| {
            engine
                .run(&format!("SELECT * FROM {t} ORDER BY ALL"))
                .unwrap()
                .rows()
        })
        .collect()
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn killed_runs_lose_nothing_and_the_mirror_equals_a_rebuild(pool: PgPool) {
    let s = setup(&pool, 80, 20_000).await;
    let mirror = s.data.path().join("finq.duckdb");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut typical = Duration::from_millis(1500);
    let mut killed = 0;
    for round in 0..16 {
        if round % 2 == 1 {
            s.sim.advance(3);
        } else {
            s.sim.churn(&s.item, 50);
        }
        if round % 5 == 4 {
            // A person's edit with plain SQL, between runs.
            sqlx::query(
                "UPDATE plaid_transactions SET category_override_id = (SELECT id FROM categories WHERE name = 'Travel')
                 WHERE plaid_transaction_id = (SELECT min(plaid_transaction_id) FROM plaid_transactions)",
            )
            .execute(&pool)
            .await
            .unwrap();
        }
        let mut child = finq(&s, &["run", "--json"]);
        let window = typical.as_millis() as u64 * 12 / 10;
        let wait = Duration::from_millis(rng.gen_range(0..window.max(1)));
        let started = std::time::Instant::now();
        std::thread::sleep(wait);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        } else {
            typical = started.elapsed().max(Duration::from_millis(50));
        }
        let _ = child.wait();
        wait_for_other_backends(&pool).await;
        if mirror.exists() {
            // Whatever moment the kill hit, the mirror opens and holds whole rows.
            let rows = mirror_rows(&mirror);
            assert!(!rows.is_empty());
        }
    }
    assert!(killed >= 4, "only {killed} runs were killed");
    let (ok, out) = output(finq(&s, &["run", "--json"]));
    assert!(ok, "{out}");

    let got = mirror_rows(&mirror);
    let reference = s.data.path().join("reference.duckdb");
    finq_analytics::mirror::DuckMirror::new(&reference)
        .rebuild(&pool)
        .await
        .unwrap();
    assert_eq!(
        got,
        mirror_rows(&reference),
        "the mirror differs from a rebuild"
    );
    // And what was derived equals deriving everything again.
    let unified = |pool: PgPool| async move {
        sqlx::query_scalar::<_, String>(
            "SELECT (to_jsonb(u) - 'seq')::text FROM unified_transactions u ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let before = unified(pool.clone()).await;
    assert_eq!(before.len() as i64, {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM plaid_transactions")
            .fetch_one(&pool)
            .await
            .unwrap();
        n
    });
    sqlx::query("INSERT INTO change_log (entity, key) VALUES ('all', '')")
        .execute(&pool)
        .await
        .unwrap();
    let (ok, out) = output(finq(&s, &["run", "--json"]));
    assert!(ok, "{out}");
    assert_eq!(before, unified(pool.clone()).await);
    assert_eq!(got[0], mirror_rows(&mirror)[0], "transactions");
}

/// `finq serve` with the test's database and simulator; its address once it listens.
fn finq_serve(s: &Setup) -> (Child, String) {
    use std::io::BufRead;
    let mut child = finq_command(s, &["serve", "--addr", "127.0.0.1:0"])
        .env("FINQ_POLL_AFTER_HOURS", "0")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("finq serve ended before listening")
            .unwrap();
        if let Some(url) = line.strip_prefix("finq serve: listening on ") {
            break url.to_string();
        }
    };
    // Keep reading its log so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

async fn job_state(pool: &PgPool) -> Option<String> {
    sqlx::query_scalar("SELECT state FROM jobs ORDER BY id DESC LIMIT 1")
        .fetch_optional(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn a_sync_job_killed_with_its_server_runs_again_after_restart(pool: PgPool) {
    let s = setup(&pool, 31, 3000).await;
    // Slow answers from "Plaid", so the kill lands in the middle of the sync.
    s.sim.set_faults(Faults {
        latency_ms: 150,
        ..Default::default()
    });
    let (mut server, url) = finq_serve(&s);
    let payload = finq_connectors::sim::webhook_payload("SYNC_UPDATES_AVAILABLE", &s.item, 0);
    let (body, token) = s.sim.sign_webhook(&payload);
    let resp = reqwest::Client::new()
        .post(format!("{url}/plaid/webhook"))
        .header("Plaid-Verification", token)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(answer["status"], "queued");
    for _ in 0..200 {
        if job_state(&pool).await.as_deref() == Some("running") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(
        job_state(&pool).await.as_deref(),
        Some("running"),
        "the job should have been cut off mid-way"
    );

    // A new server takes the job over at once (not after the lease) and finishes it.
    s.sim.set_faults(Faults::default());
    let (mut server, _) = finq_serve(&s);
    let mut state = None;
    for _ in 0..600 {
        state = job_state(&pool).await;
        if state.as_deref() == Some("done") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(state.as_deref(), Some("done"));
    let truth = state_of(s.sim.ground_truth(&s.item).unwrap());
    let got = stored(&pool, &s.item).await;
    assert!(got == truth, "{}", state_diff(&got, &truth));
}
