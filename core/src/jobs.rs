//! A work queue in PostgreSQL (`jobs`): enqueued in the caller's transaction, claimed with
//! `FOR UPDATE SKIP LOCKED` under a lease, retried with exponential backoff.
//!
//! - One waiting job per kind and item: enqueueing while one waits coalesces into it (a job
//!   already running does not absorb it: what arrived meanwhile needs a run of its own).
//! - A claimed job holds a lease; if its worker dies (even by SIGKILL), the job is taken
//!   again once the lease has passed.
//! - A failed job waits 10 s, 20 s, 40 s … (at most an hour) and is given up after
//!   [`MAX_ATTEMPTS`].
//!
//! Webhooks come in through [`intake`]: verified webhooks are stored (`webhook_events`)
//! and their jobs queued in one statement, so one round trip and one commit for as many
//! as arrived together.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};

/// Attempts before a job is given up (`failed`).
pub const MAX_ATTEMPTS: i32 = 8;
/// How long a claimed job is reserved for its worker.
pub const LEASE_SECS: i64 = 600;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub item_id: String,
    /// Including the current one.
    pub attempts: i32,
}

/// Queue a job unless one of the same kind for the item is already waiting. `true` when
/// a new job was queued, `false` when the request coalesced into the waiting one.
pub async fn enqueue(
    conn: &mut PgConnection,
    kind: &str,
    item_id: &str,
) -> Result<bool, sqlx::Error> {
    enqueue_spaced(conn, kind, item_id, Duration::ZERO).await
}

/// [`enqueue`], the new job not due before `spacing` has passed since the last job of the
/// same kind and item started.
pub async fn enqueue_spaced(
    conn: &mut PgConnection,
    kind: &str,
    item_id: &str,
    spacing: Duration,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO jobs (kind, item_id, run_after)
         VALUES ($1, $2, greatest(now(), (SELECT max(started_at) FROM jobs WHERE kind = $1 AND item_id = $2)
                                         + make_interval(secs => $3)))
         ON CONFLICT (kind, item_id) WHERE state = 'queued' DO NOTHING",
    )
    .bind(kind)
    .bind(item_id)
    .bind(spacing.as_secs_f64())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// How long until the next queued job is due (zero if one is due now); `None` when none is
/// queued.
pub async fn next_due(pool: &PgPool) -> Result<Option<Duration>, sqlx::Error> {
    let secs: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM min(run_after) - now())::float8 FROM jobs WHERE state = 'queued'",
    )
    .fetch_one(pool)
    .await?;
    Ok(secs.map(|s| Duration::from_secs_f64(s.max(0.0))))
}

/// A verified webhook as [`intake`] stores it.
#[derive(Debug, Clone, Copy)]
pub struct Webhook<'a> {
    /// The exact body.
    pub body: &'a [u8],
    pub webhook_type: &'a str,
    pub webhook_code: &'a str,
    /// Empty when the webhook names no item.
    pub item_id: &'a str,
    /// Whether finq has the item.
    pub known: bool,
    /// The job it calls for (`None`: nothing to run).
    pub job: Option<&'a str>,
    /// It reported the item's health (recorded on the item by the caller).
    pub health: bool,
}

/// Store verified webhooks and queue the jobs they call for, atomically, in one statement
/// and one commit however many there are (a server under load hands over what arrived
/// while the last batch was being stored). What was done with each, in order: `queued`,
/// `coalesced` (into a waiting job, or into the job an earlier webhook of the same batch
/// queued), `recorded` (health only), `unknown_item` or `ignored`. A new job is not due
/// before `spacing` has passed since the last of its kind and item started (see
/// [`enqueue_spaced`]).
pub async fn intake(
    pool: &PgPool,
    webhooks: &[Webhook<'_>],
    spacing: Duration,
) -> Result<Vec<String>, sqlx::Error> {
    if webhooks.is_empty() {
        return Ok(Vec::new());
    }
    fn column<'a, T>(webhooks: &[Webhook<'a>], f: impl Fn(&Webhook<'a>) -> T) -> Vec<T> {
        webhooks.iter().map(f).collect()
    }
    sqlx::query_scalar(
        "WITH w AS MATERIALIZED (
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bool[],
                                  $6::text[], $7::bool[]) WITH ORDINALITY
                 AS w(body, webhook_type, webhook_code, item_id, known, job, health, n)
         ), wanted AS MATERIALIZED (
             -- One job per kind and item, asked for by the batch's first webhook for it.
             SELECT DISTINCT ON (job, item_id) job, item_id, n FROM w
             WHERE known AND job IS NOT NULL
             ORDER BY job, item_id, n
         ), queued AS (
             INSERT INTO jobs (kind, item_id, run_after)
             SELECT x.job, x.item_id,
                    greatest(now(), (SELECT max(started_at) FROM jobs j
                                     WHERE j.kind = x.job AND j.item_id = x.item_id)
                                    + make_interval(secs => $8))
             FROM wanted x
             -- Coalescing is the common case under load: checked first, so it costs no
             -- speculative insertion (ON CONFLICT still settles a race).
             WHERE NOT EXISTS (SELECT 1 FROM jobs j
                               WHERE j.kind = x.job AND j.item_id = x.item_id AND j.state = 'queued')
             -- Concurrent batches take the jobs' unique index entries in one order: no
             -- deadlock between two batches naming the same items.
             ORDER BY x.job, x.item_id
             ON CONFLICT (kind, item_id) WHERE state = 'queued' DO NOTHING
             RETURNING kind, item_id
         ), decided AS MATERIALIZED (
             SELECT w.*,
                    CASE WHEN NOT w.known AND w.item_id <> '' THEN 'unknown_item'
                         WHEN w.known AND w.job IS NOT NULL THEN
                             CASE WHEN w.n IN (SELECT x.n FROM wanted x JOIN queued q
                                               ON q.kind = x.job AND q.item_id = x.item_id)
                                  THEN 'queued' ELSE 'coalesced' END
                         WHEN w.known AND w.health THEN 'recorded'
                         ELSE 'ignored' END AS outcome
             FROM w
         ), stored AS (
             INSERT INTO webhook_events (body, webhook_type, webhook_code, item_id, outcome)
             SELECT body, nullif(webhook_type, ''), nullif(webhook_code, ''),
                    nullif(item_id, ''), outcome
             FROM decided ORDER BY n
         )
         SELECT outcome FROM decided ORDER BY n",
    )
    .bind(column(webhooks, |w| String::from_utf8_lossy(w.body)))
    .bind(column(webhooks, |w| w.webhook_type))
    .bind(column(webhooks, |w| w.webhook_code))
    .bind(column(webhooks, |w| w.item_id))
    .bind(column(webhooks, |w| w.known))
    .bind(column(webhooks, |w| w.job))
    .bind(column(webhooks, |w| w.health))
    .bind(spacing.as_secs_f64())
    .fetch_all(pool)
    .await
}

/// Whether a job of `kind` for the item is queued or running.
pub async fn pending(pool: &PgPool, kind: &str, item_id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM jobs
                        WHERE kind = $1 AND item_id = $2 AND state IN ('queued', 'running'))",
    )
    .bind(kind)
    .bind(item_id)
    .fetch_one(pool)
    .await
}

/// Whether any job is queued or running.
pub async fn busy(pool: &PgPool) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM jobs WHERE state IN ('queued', 'running'))")
        .fetch_one(pool)
        .await
}

/// Take the oldest job that is due (or whose worker's lease has passed).
pub async fn claim(pool: &PgPool) -> Result<Option<Job>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = now(),
                         lease_until = now() + make_interval(secs => $1), updated_at = now()
         WHERE id = (SELECT id FROM jobs
                     WHERE (state = 'queued' AND run_after <= now())
                        OR (state = 'running' AND lease_until < now())
                     ORDER BY id
                     FOR UPDATE SKIP LOCKED
                     LIMIT 1)
         RETURNING id, kind, item_id, attempts",
    )
    .bind(LEASE_SECS as f64)
    .fetch_optional(pool)
    .await
}

/// A worker starting up takes over the jobs left running by one that died (a server killed
/// mid-sync): their leases end now, so [`claim`] takes them at once. A database has one
/// worker (`finq serve`); a second would see the first one's job taken over.
pub async fn release_running(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE jobs SET lease_until = now() - interval '1 millisecond', updated_at = now()
         WHERE state = 'running'",
    )
    .execute(pool)
    .await?
    .rows_affected())
}

/// The job is done. Done jobs older than a week are cleared away here.
pub async fn complete(pool: &PgPool, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH done AS (
             UPDATE jobs SET state = 'done', lease_until = NULL, last_error = NULL,
                             updated_at = now()
             WHERE id = $1
         )
         DELETE FROM jobs WHERE state = 'done' AND updated_at < now() - interval '7 days'",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// The job failed in a way retrying cannot mend (the item needs its user): it is not
/// retried. A later request (a webhook, a poll, the user back from Link) makes a new job.
pub async fn abandon(pool: &PgPool, id: i64, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE jobs SET state = 'failed', lease_until = NULL, last_error = $2, updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// How long webhooks are kept in `webhook_events` (for `finq`'s own look back, and to see
/// what Plaid sent).
pub const WEBHOOKS_KEPT_DAYS: i32 = 30;

/// Forget webhooks received more than [`WEBHOOKS_KEPT_DAYS`] ago; how many.
pub async fn prune_webhooks(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM webhook_events WHERE received_at < now() - make_interval(days => $1)",
    )
    .bind(WEBHOOKS_KEPT_DAYS)
    .execute(pool)
    .await?
    .rows_affected())
}

/// The job failed: wait and retry, or give up after [`MAX_ATTEMPTS`]. When another job of
/// the same kind for the item is already waiting, that one will do the work.
pub async fn fail(pool: &PgPool, id: i64, error: &str) -> Result<(), sqlx::Error> {
    // A job of the item queued after this statement's snapshot makes its return to the
    // queue break the one-waiting-job rule: the statement runs again and sees that job.
    let mut tries = 0;
    loop {
        tries += 1;
        match fail_once(pool, id, error).await {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() && tries < 3 => continue,
            other => return other,
        }
    }
}

async fn fail_once(pool: &PgPool, id: i64, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE jobs j SET
             state = CASE
                 WHEN j.attempts >= $3 THEN 'failed'
                 WHEN EXISTS (SELECT 1 FROM jobs o WHERE o.kind = j.kind AND o.item_id = j.item_id
                                                     AND o.state = 'queued' AND o.id <> j.id)
                     THEN 'done'
                 ELSE 'queued' END,
             run_after = now() + make_interval(secs => least(3600, 10 * 2 ^ (j.attempts - 1))),
             lease_until = NULL, last_error = $2, updated_at = now()
         WHERE j.id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(MAX_ATTEMPTS)
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn state(pool: &PgPool, id: i64) -> (String, i32, bool) {
        sqlx::query_as(
            "SELECT state, attempts, run_after > now() + interval '5 seconds' FROM jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn requests_coalesce_while_a_job_waits(pool: PgPool) {
        let mut conn = pool.acquire().await.unwrap();
        assert!(enqueue(&mut conn, "sync", "item-a").await.unwrap());
        assert!(!enqueue(&mut conn, "sync", "item-a").await.unwrap());
        assert!(enqueue(&mut conn, "sync", "item-b").await.unwrap());
        let a = claim(&pool).await.unwrap().unwrap();
        assert_eq!((a.item_id.as_str(), a.attempts), ("item-a", 1));
        // While it runs, a new request is a job of its own ...
        assert!(enqueue(&mut conn, "sync", "item-a").await.unwrap());
        // ... and later ones coalesce into that.
        assert!(!enqueue(&mut conn, "sync", "item-a").await.unwrap());
        let b = claim(&pool).await.unwrap().unwrap();
        let a2 = claim(&pool).await.unwrap().unwrap();
        assert_eq!(
            (b.item_id.as_str(), a2.item_id.as_str()),
            ("item-b", "item-a")
        );
        assert_eq!(claim(&pool).await.unwrap(), None);
        complete(&pool, a.id).await.unwrap();
        assert_eq!(state(&pool, a.id).await.0, "done");
    }

    /// A failed job goes back to the queue unless a newer request for the item waits: also
    /// when that request commits while the failure is being recorded.
    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_failure_racing_a_new_request_leaves_the_work_to_it(pool: PgPool) {
        let mut conn = pool.acquire().await.unwrap();
        assert!(enqueue(&mut conn, "sync", "item-a").await.unwrap());
        let a = claim(&pool).await.unwrap().unwrap();
        let mut tx = pool.begin().await.unwrap();
        assert!(enqueue(&mut tx, "sync", "item-a").await.unwrap());
        let failing = tokio::spawn({
            let pool = pool.clone();
            async move { fail(&pool, a.id, "the bank is down").await }
        });
        // The failure's statement waits on the request's uncommitted row.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'
               AND query LIKE 'UPDATE jobs j SET%'",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap()
            == 0
        {
            assert!(std::time::Instant::now() < deadline, "fail() never waited");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tx.commit().await.unwrap();
        failing.await.unwrap().unwrap();
        assert_eq!(state(&pool, a.id).await.0, "done");
        let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'queued'")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(waiting, 1);
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn webhooks_are_kept_thirty_days(pool: PgPool) {
        sqlx::query(
            "INSERT INTO webhook_events (received_at, body, outcome)
             VALUES (now() - interval '31 days', '{}', 'ignored'),
                    (now() - interval '29 days', '{}', 'ignored'), (now(), '{}', 'queued')",
        )
        .execute(&pool)
        .await
        .unwrap();
        assert_eq!(prune_webhooks(&pool).await.unwrap(), 1);
        assert_eq!(prune_webhooks(&pool).await.unwrap(), 0);
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(left, 2);
    }

    fn webhook<'a>(body: &'a str, item_id: &'a str, known: bool, job: bool) -> Webhook<'a> {
        Webhook {
            body: body.as_bytes(),
            webhook_type: "TRANSACTIONS",
            webhook_code: "SYNC_UPDATES_AVAILABLE",
            item_id,
            known,
            job: job.then_some("sync"),
            health: false,
        }
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_batch_of_webhooks_is_stored_in_order_with_one_job_per_item(pool: PgPool) {
        let batch = [
            webhook("{\"n\":1}", "item-a", true, true),
            webhook("{\"n\":2}", "item-b", true, true),
            webhook("{\"n\":3}", "item-a", true, true),
            webhook("{\"n\":4}", "item-x", false, true),
            Webhook {
                health: true,
                job: None,
                webhook_type: "ITEM",
                webhook_code: "ERROR",
                ..webhook("{\"n\":5}", "item-b", true, false)
            },
            webhook("{\"n\":6}", "", false, false),
            webhook("{\"n\":7}", "item-a", true, false),
        ];
        let outcomes = intake(&pool, &batch, Duration::ZERO).await.unwrap();
        assert_eq!(
            outcomes,
            [
                "queued",
                "queued",
                "coalesced",
                "unknown_item",
                "recorded",
                "ignored",
                "ignored"
            ]
        );
        let stored: Vec<(String, Option<String>, Option<String>, String)> = sqlx::query_as(
            "SELECT body, webhook_code, item_id, outcome FROM webhook_events ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let expected: Vec<(String, Option<String>, Option<String>, String)> = batch
            .iter()
            .zip(&outcomes)
            .map(|(w, o)| {
                (
                    String::from_utf8(w.body.to_vec()).unwrap(),
                    Some(w.webhook_code.to_string()),
                    (!w.item_id.is_empty()).then(|| w.item_id.to_string()),
                    o.clone(),
                )
            })
            .collect();
        assert_eq!(stored, expected);
        let queued: Vec<String> =
            sqlx::query_scalar("SELECT item_id FROM jobs WHERE state = 'queued' ORDER BY item_id")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert_eq!(queued, ["item-a", "item-b"]);
        // The next batch finds the jobs waiting.
        let again = intake(&pool, &batch[..2], Duration::ZERO).await.unwrap();
        assert_eq!(again, ["coalesced", "coalesced"]);
        assert_eq!(intake(&pool, &[], Duration::ZERO).await.unwrap().len(), 0);
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn jobs_of_one_item_start_spaced_out(pool: PgPool) {
        let spacing = Duration::from_secs(30);
        let mut conn = pool.acquire().await.unwrap();
        assert_eq!(next_due(&pool).await.unwrap(), None);
        // The first is due at once; the next, queued while it runs, once the spacing has
        // passed since the first started; another item is not held up.
        assert!(
            enqueue_spaced(&mut conn, "sync", "item-a", spacing)
                .await
                .unwrap()
        );
        assert_eq!(next_due(&pool).await.unwrap(), Some(Duration::ZERO));
        let first = claim(&pool).await.unwrap().unwrap();
        assert!(
            enqueue_spaced(&mut conn, "sync", "item-a", spacing)
                .await
                .unwrap()
        );
        assert!(
            enqueue_spaced(&mut conn, "sync", "item-b", spacing)
                .await
                .unwrap()
        );
        assert_eq!(claim(&pool).await.unwrap().unwrap().item_id, "item-b");
        assert_eq!(
            claim(&pool).await.unwrap(),
            None,
            "item-a's next sync is not due"
        );
        let due = next_due(&pool).await.unwrap().unwrap();
        assert!(due > Duration::from_secs(25) && due <= spacing, "{due:?}");
        // Once it is, it runs.
        sqlx::query("UPDATE jobs SET started_at = started_at - interval '31 seconds', run_after = run_after - interval '31 seconds'")
            .execute(&pool)
            .await
            .unwrap();
        complete(&pool, first.id).await.unwrap();
        assert_eq!(claim(&pool).await.unwrap().unwrap().item_id, "item-a");
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn concurrent_workers_never_take_the_same_job(pool: PgPool) {
        let mut conn = pool.acquire().await.unwrap();
        for i in 0..20 {
            enqueue(&mut conn, "sync", &format!("item-{i}"))
                .await
                .unwrap();
        }
        let workers = (0..4).map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(job) = claim(&pool).await.unwrap() {
                    got.push(job.id);
                }
                got
            })
        });
        let mut all: Vec<i64> = Vec::new();
        for w in workers {
            all.extend(w.await.unwrap());
        }
        all.sort();
        let n = all.len();
        all.dedup();
        assert_eq!((n, all.len()), (20, 20));
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn failures_back_off_then_give_up(pool: PgPool) {
        let mut conn = pool.acquire().await.unwrap();
        enqueue(&mut conn, "sync", "item-a").await.unwrap();
        let job = claim(&pool).await.unwrap().unwrap();
        fail(&pool, job.id, "bank unreachable").await.unwrap();
        // Queued again, but not due for 10 s.
        let (s, attempts, later) = state(&pool, job.id).await;
        assert_eq!((s.as_str(), attempts, later), ("queued", 1, true));
        assert_eq!(claim(&pool).await.unwrap(), None);
        // Make it due, and fail it until it is given up.
        for _ in 1..MAX_ATTEMPTS {
            sqlx::query("UPDATE jobs SET run_after = now() WHERE id = $1")
                .bind(job.id)
                .execute(&pool)
                .await
                .unwrap();
            let again = claim(&pool).await.unwrap().unwrap();
            assert_eq!(again.id, job.id);
            fail(&pool, job.id, "bank unreachable").await.unwrap();
        }
        assert_eq!(state(&pool, job.id).await.0, "failed");
        let error: String = sqlx::query_scalar("SELECT last_error FROM jobs WHERE id = $1")
            .bind(job.id)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(error, "bank unreachable");
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_job_whose_worker_died_is_taken_again(pool: PgPool) {
        let mut conn = pool.acquire().await.unwrap();
        enqueue(&mut conn, "sync", "item-a").await.unwrap();
        let job = claim(&pool).await.unwrap().unwrap();
        // The worker is gone; until the lease passes nobody else takes the job.
        assert_eq!(claim(&pool).await.unwrap(), None);
        sqlx::query("UPDATE jobs SET lease_until = now() - interval '1 second' WHERE id = $1")
            .bind(job.id)
            .execute(&pool)
            .await
            .unwrap();
        let again = claim(&pool).await.unwrap().unwrap();
        assert_eq!((again.id, again.attempts), (job.id, 2));
        // A restarted worker does not wait for the lease.
        assert_eq!(claim(&pool).await.unwrap(), None);
        assert_eq!(release_running(&pool).await.unwrap(), 1);
        let third = claim(&pool).await.unwrap().unwrap();
        assert_eq!((third.id, third.attempts), (job.id, 3));
    }

    #[sqlx::test(migrator = "crate::MIGRATOR")]
    async fn a_failure_with_a_newer_request_waiting_leaves_the_work_to_it(pool: PgPool) {
        let mut conn = pool.acquire().await.unwrap();
        enqueue(&mut conn, "sync", "item-a").await.unwrap();
        let job = claim(&pool).await.unwrap().unwrap();
        enqueue(&mut conn, "sync", "item-a").await.unwrap();
        fail(&pool, job.id, "boom").await.unwrap();
        assert_eq!(state(&pool, job.id).await.0, "done");
        assert!(claim(&pool).await.unwrap().is_some());
    }
}
