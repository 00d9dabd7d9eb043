//! Transfers between the person's own accounts: the pairs finq finds equal a brute-force
//! search over the mirror's transactions, both sides are marked, an unmarked pair stays
//! unmarked, and manual accounts take part.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::NaiveDate;
use finq_connectors::manual::{self, AccountType, NewTransaction};
use finq_e2e::{SimBank, derive_and_mirror, mirror_rows};
use rust_decimal::Decimal;
use sqlx::PgPool;

/// The pairs, by brute force: for every posted outflow, the closest inflow of the same
/// size in another account within 4 days (then the lowest id), kept when each is the
/// other's choice and the person has not unmarked it.
fn brute_force(mirror: &Path, rejected: &BTreeSet<(String, String)>) -> BTreeSet<(String, String)> {
    let rows: Vec<(String, String, NaiveDate, Decimal, Option<String>)> = mirror_rows(
        mirror,
        "SELECT id, account_id, date, amount, currency FROM transactions
         WHERE account_id IS NOT NULL AND NOT pending AND amount <> 0",
    )
    .into_iter()
    .map(|r| {
        (
            r[0].clone().unwrap(),
            r[1].clone().unwrap(),
            r[2].as_deref().unwrap().parse().unwrap(),
            r[3].as_deref().unwrap().parse().unwrap(),
            r[4].clone(),
        )
    })
    .collect();
    let fits = |o: &(String, String, NaiveDate, Decimal, Option<String>),
                i: &(String, String, NaiveDate, Decimal, Option<String>)| {
        o.3 < Decimal::ZERO
            && i.3 == -o.3
            && i.1 != o.1
            && i.4 == o.4
            && (i.2 - o.2).num_days().abs() <= 4
            && !rejected.contains(&(o.0.clone(), i.0.clone()))
    };
    let best = |me: &(String, String, NaiveDate, Decimal, Option<String>), outgoing: bool| {
        rows.iter()
            .filter(|x| if outgoing { fits(me, x) } else { fits(x, me) })
            .min_by_key(|x| ((x.2 - me.2).num_days().abs(), x.0.clone()))
            .map(|x| x.0.clone())
    };
    let mut pairs = BTreeSet::new();
    for o in rows.iter().filter(|r| r.3 < Decimal::ZERO) {
        if let Some(i) = best(o, true) {
            let inflow = rows.iter().find(|r| r.0 == i).unwrap();
            if best(inflow, false).as_deref() == Some(o.0.as_str()) {
                pairs.insert((o.0.clone(), i));
            }
        }
    }
    pairs
}

fn found(mirror: &Path) -> BTreeSet<(String, String)> {
    mirror_rows(mirror, "SELECT out_id, in_id FROM transfers")
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect()
}

fn marked(mirror: &Path) -> BTreeSet<String> {
    mirror_rows(mirror, "SELECT id FROM transactions WHERE is_transfer")
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect()
}

#[sqlx::test(migrator = "finq_core::MIGRATOR")]
async fn transfers_are_found_marked_and_unmarked(pool: PgPool) {
    let bank = SimBank::start(9, 600).await;
    let item = bank.link(&pool).await;
    bank.sync(&pool, &item).await;
    let dir = tempfile::tempdir().unwrap();
    let mirror = dir.path().join("finq.duckdb");
    derive_and_mirror(&pool, &mirror).await;

    // Nothing changed: nothing recomputed (the transform follows the change numbers).
    let again = derive_and_mirror(&pool, &mirror).await;
    let transfers = &again.steps[1];
    assert_eq!(transfers.name, "transfers");
    assert_eq!(
        (transfers.counts["everything"], transfers.counts["amounts"]),
        (0, 0),
        "{again:?}"
    );

    let mut rejected = BTreeSet::new();
    let pairs = found(&mirror);
    assert_eq!(pairs, brute_force(&mirror, &rejected));
    let savings = mirror_rows(
        &mirror,
        "SELECT count(*) FILTER (WHERE is_transfer), count(*) FROM transactions
         WHERE description IN ('TRANSFER TO SAVINGS', 'TRANSFER FROM CHECKING') AND NOT pending",
    );
    assert_eq!(
        savings[0][0], savings[0][1],
        "every move to savings is a transfer"
    );
    assert!(savings[0][1].as_deref().unwrap().parse::<u32>().unwrap() >= 2);
    let sides: BTreeSet<String> = pairs
        .iter()
        .flat_map(|(o, i)| [o.clone(), i.clone()])
        .collect();
    assert_eq!(
        marked(&mirror),
        sides,
        "exactly the pairs' sides are marked"
    );

    // Unmarked: both sides count again, and stay unpaired even when everything is derived
    // again.
    let (out_id, in_id) = pairs.iter().next().unwrap().clone();
    let unmarked = finq_transforms::transfers::unmark(&pool, &in_id)
        .await
        .unwrap();
    assert_eq!(unmarked, Some((out_id.clone(), in_id.clone())));
    rejected.insert((out_id.clone(), in_id.clone()));
    derive_and_mirror(&pool, &mirror).await;
    assert_eq!(found(&mirror), brute_force(&mirror, &rejected));
    assert!(!found(&mirror).contains(&(out_id.clone(), in_id.clone())));
    sqlx::query("INSERT INTO change_log (entity, key) VALUES ('all', '')")
        .execute(&pool)
        .await
        .unwrap();
    derive_and_mirror(&pool, &mirror).await;
    assert!(!found(&mirror).contains(&(out_id.clone(), in_id.clone())));
    assert_eq!(found(&mirror), brute_force(&mirror, &rejected));
    assert_eq!(
        finq_transforms::transfers::unmark(&pool, &in_id)
            .await
            .unwrap(),
        None,
        "no longer in a pair"
    );

    // A card paid from checking, both kept by hand: paired two days apart.
    let checking = manual::create(&pool, "Credit Union", AccountType::Depository, "USD")
        .await
        .unwrap();
    let card = manual::create(&pool, "Store Card", AccountType::Credit, "USD")
        .await
        .unwrap();
    let day = |d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
    let add = |account, date, cents, what: &str| {
        let tx = NewTransaction {
            date,
            amount: Decimal::new(cents, 2),
            description: what.into(),
            category_id: None,
            notes: None,
        };
        let pool = pool.clone();
        async move { manual::add_transaction(&pool, account, &tx).await.unwrap() }
    };
    let paid = add(&checking, day(10), -43210, "STORE CARD PAYMENT").await;
    let received = add(&card, day(12), 43210, "PAYMENT THANK YOU").await;
    // Too late to be the same money.
    add(&card, day(20), 43210, "PAYMENT THANK YOU").await;
    let report = derive_and_mirror(&pool, &mirror).await;
    assert_eq!(
        (
            report.steps[1].counts["everything"],
            report.steps[1].counts["amounts"]
        ),
        (0, 1),
        "only the amount that changed is recomputed"
    );
    assert!(found(&mirror).contains(&(format!("manual:{paid}"), format!("manual:{received}"))));
    assert_eq!(found(&mirror), brute_force(&mirror, &rejected));
    assert_eq!(
        mirror_rows(
            &mirror,
            "SELECT from_account, to_account, amount FROM transfers WHERE out_id LIKE 'manual:%'"
        ),
        vec![vec![
            Some("Credit Union".into()),
            Some("Store Card".into()),
            Some("432.10".into())
        ]]
    );
    // Changing one side's amount breaks the pair; changing it back restores it.
    sqlx::query("UPDATE transactions SET amount = -432.00 WHERE id = $1")
        .bind(paid)
        .execute(&pool)
        .await
        .unwrap();
    derive_and_mirror(&pool, &mirror).await;
    assert!(!marked(&mirror).contains(&format!("manual:{received}")));
    assert_eq!(found(&mirror), brute_force(&mirror, &rejected));
    sqlx::query("UPDATE transactions SET amount = -432.10 WHERE id = $1")
        .bind(paid)
        .execute(&pool)
        .await
        .unwrap();
    derive_and_mirror(&pool, &mirror).await;
    assert!(marked(&mirror).contains(&format!("manual:{received}")));
    assert_eq!(found(&mirror), brute_force(&mirror, &rejected));
}
