//! Deterministic generated bank data for the simulator.
//!
//! Everything about an item is a pure function of its [`SimItemSpec`] (seed, institution,
//! ordinal, size, anchor date), so an in-process simulator can recreate an item that was
//! linked in an earlier run and keep syncing it.

use chrono::{Datelike, Duration, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;

use crate::pfc;
use crate::plaid::types::{Location, PaymentMeta, PersonalFinanceCategory, Transaction};

pub use crate::plaid::items::SimItemSpec;

pub struct Institution {
    pub id: &'static str,
    pub name: &'static str,
    pub routing: &'static str,
}

pub const INSTITUTIONS: &[Institution] = &[
    Institution {
        id: "ins_109508",
        name: "First Platypus Bank",
        routing: "011401533",
    },
    Institution {
        id: "ins_109512",
        name: "Houndstooth Bank",
        routing: "021200339",
    },
    Institution {
        id: "ins_117650",
        name: "Royal Bank of Plaid",
        routing: "021000021",
    },
    Institution {
        id: "ins_3",
        name: "Chase",
        routing: "021000021",
    },
];

pub fn institution(id: &str) -> Option<&'static Institution> {
    INSTITUTIONS.iter().find(|i| i.id == id)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    Checking,
    Savings,
    CreditCard,
    Loan,
}

#[derive(Debug, Clone)]
pub struct SimAccount {
    pub account_id: String,
    pub kind: AccountKind,
    pub name: &'static str,
    pub official_name: &'static str,
    pub mask: String,
    /// Balance before the first generated transaction (depository, loan), or the credit
    /// limit (card).
    pub opening: Decimal,
}

impl SimAccount {
    pub fn type_and_subtype(&self) -> (&'static str, &'static str) {
        match self.kind {
            AccountKind::Checking => ("depository", "checking"),
            AccountKind::Savings => ("depository", "savings"),
            AccountKind::CreditCard => ("credit", "credit card"),
            AccountKind::Loan => ("loan", "student"),
        }
    }
}

/// (description as the bank shows it, merchant, PFC v2 detailed, min and max in cents,
/// channel, city, relative frequency)
type Merchant = (
    &'static str,
    &'static str,
    &'static str,
    u32,
    u32,
    &'static str,
    &'static str,
    u32,
);

const MERCHANTS: &[Merchant] = &[
    (
        "WHOLEFDS MKT #10234",
        "Whole Foods Market",
        "FOOD_AND_DRINK_GROCERIES",
        2500,
        14000,
        "in store",
        "Austin",
        40,
    ),
    (
        "TRADER JOE'S #552",
        "Trader Joe's",
        "FOOD_AND_DRINK_GROCERIES",
        1800,
        9000,
        "in store",
        "Austin",
        40,
    ),
    (
        "HEB #044 GROCERY",
        "H-E-B",
        "FOOD_AND_DRINK_GROCERIES",
        2000,
        12000,
        "in store",
        "Austin",
        50,
    ),
    (
        "STARBUCKS STORE 08812",
        "Starbucks",
        "FOOD_AND_DRINK_COFFEE",
        350,
        1200,
        "in store",
        "Austin",
        90,
    ),
    (
        "CHIPOTLE 1192",
        "Chipotle Mexican Grill",
        "FOOD_AND_DRINK_FAST_FOOD",
        900,
        2600,
        "in store",
        "Austin",
        40,
    ),
    (
        "SQ *VERACRUZ ALL NATURA",
        "Veracruz All Natural",
        "FOOD_AND_DRINK_RESTAURANT",
        1200,
        4500,
        "in store",
        "Austin",
        25,
    ),
    (
        "UCHI AUSTIN",
        "Uchi",
        "FOOD_AND_DRINK_RESTAURANT",
        6000,
        24000,
        "in store",
        "Austin",
        4,
    ),
    (
        "DOORDASH*THAI KITCHEN",
        "DoorDash",
        "FOOD_AND_DRINK_RESTAURANT",
        1800,
        5500,
        "online",
        "",
        15,
    ),
    (
        "AMAZON.COM*2K4TY1",
        "Amazon",
        "GENERAL_MERCHANDISE_ONLINE_MARKETPLACES",
        900,
        9000,
        "online",
        "",
        30,
    ),
    (
        "TARGET 00012345",
        "Target",
        "GENERAL_MERCHANDISE_SUPERSTORES",
        1500,
        9000,
        "in store",
        "Austin",
        15,
    ),
    (
        "WM SUPERCENTER #1700",
        "Walmart",
        "GENERAL_MERCHANDISE_SUPERSTORES",
        1200,
        8000,
        "in store",
        "Austin",
        10,
    ),
    (
        "BEST BUY 00004",
        "Best Buy",
        "GENERAL_MERCHANDISE_ELECTRONICS",
        2500,
        45000,
        "in store",
        "Austin",
        2,
    ),
    (
        "REI #56 AUSTIN",
        "REI",
        "GENERAL_MERCHANDISE_SPORTING_GOODS",
        3000,
        20000,
        "in store",
        "Austin",
        2,
    ),
    (
        "SHELL OIL 57442",
        "Shell",
        "TRANSPORTATION_GAS",
        2500,
        6500,
        "in store",
        "Austin",
        20,
    ),
    (
        "UBER *TRIP",
        "Uber",
        "TRANSPORTATION_TAXIS_AND_RIDE_SHARES",
        900,
        4800,
        "online",
        "",
        12,
    ),
    (
        "CAPMETRO FARE",
        "CapMetro",
        "TRANSPORTATION_PUBLIC_TRANSIT",
        125,
        500,
        "in store",
        "Austin",
        20,
    ),
    (
        "ALAMO DRAFTHOUSE",
        "Alamo Drafthouse",
        "ENTERTAINMENT_TV_AND_MOVIES",
        1800,
        6000,
        "in store",
        "Austin",
        4,
    ),
    (
        "CVS/PHARMACY #07110",
        "CVS",
        "MEDICAL_PHARMACIES_AND_SUPPLEMENTS",
        800,
        6500,
        "in store",
        "Austin",
        8,
    ),
    (
        "AUSTIN REGIONAL CLINIC",
        "Austin Regional Clinic",
        "MEDICAL_PRIMARY_CARE",
        3000,
        15000,
        "in store",
        "Austin",
        1,
    ),
    (
        "GREAT CLIPS #8812",
        "Great Clips",
        "PERSONAL_CARE_HAIR_AND_BEAUTY",
        1800,
        3500,
        "in store",
        "Austin",
        2,
    ),
    (
        "HOME DEPOT #6512",
        "The Home Depot",
        "HOME_IMPROVEMENT_HARDWARE",
        1500,
        18000,
        "in store",
        "Austin",
        4,
    ),
    (
        "DELTA AIR 0062345",
        "Delta Air Lines",
        "TRAVEL_FLIGHTS",
        18000,
        65000,
        "online",
        "",
        1,
    ),
    (
        "MARRIOTT DENVER",
        "Marriott",
        "TRAVEL_LODGING",
        15000,
        52000,
        "in store",
        "Denver",
        1,
    ),
    (
        "RED CROSS DONATION",
        "American Red Cross",
        "GOVERNMENT_AND_NON_PROFIT_DONATIONS",
        2500,
        10000,
        "online",
        "",
        1,
    ),
];

/// Recurring lines: (description, merchant, detailed, account, day of month, amount in cents;
/// Plaid's sign: positive = money out).
type Recurring = (
    &'static str,
    &'static str,
    &'static str,
    AccountKind,
    u32,
    i64,
);

const MONTHLY: &[Recurring] = &[
    (
        "AUSTIN PROPERTY MGMT RENT",
        "Austin Property Management",
        "RENT_AND_UTILITIES_RENT",
        AccountKind::Checking,
        1,
        185000,
    ),
    (
        "TRANSFER TO SAVINGS",
        "",
        "TRANSFER_OUT_SAVINGS",
        AccountKind::Checking,
        3,
        60000,
    ),
    (
        "TRANSFER FROM CHECKING",
        "",
        "TRANSFER_IN_SAVINGS",
        AccountKind::Savings,
        3,
        -60000,
    ),
    (
        "AUSTIN ENERGY UTIL",
        "Austin Energy",
        "RENT_AND_UTILITIES_GAS_AND_ELECTRICITY",
        AccountKind::Checking,
        12,
        9800,
    ),
    (
        "GOOGLE FIBER",
        "Google Fiber",
        "RENT_AND_UTILITIES_INTERNET_AND_CABLE",
        AccountKind::Checking,
        15,
        7000,
    ),
    (
        "NETFLIX.COM",
        "Netflix",
        "ENTERTAINMENT_TV_AND_MOVIES",
        AccountKind::CreditCard,
        7,
        1549,
    ),
    (
        "SPOTIFY USA",
        "Spotify",
        "ENTERTAINMENT_MUSIC_AND_AUDIO",
        AccountKind::CreditCard,
        9,
        1199,
    ),
    (
        "PLANET FITNESS",
        "Planet Fitness",
        "PERSONAL_CARE_GYMS_AND_FITNESS_CENTERS",
        AccountKind::CreditCard,
        17,
        2499,
    ),
    (
        "GEICO *AUTO",
        "GEICO",
        "GENERAL_SERVICES_INSURANCE",
        AccountKind::Checking,
        22,
        11800,
    ),
    (
        "GREAT LAKES STUDENT LOAN",
        "",
        "LOAN_PAYMENTS_STUDENT_LOAN_PAYMENT",
        AccountKind::Checking,
        25,
        32000,
    ),
    (
        "PAYMENT RECEIVED",
        "",
        "LOAN_PAYMENTS_STUDENT_LOAN_PAYMENT",
        AccountKind::Loan,
        25,
        -32000,
    ),
    (
        "INTEREST PAYMENT",
        "",
        "INCOME_INTEREST_EARNED",
        AccountKind::Savings,
        28,
        -1850,
    ),
];

/// The day of month the card is paid in full from checking.
const CARD_PAYMENT_DAY: u32 = 20;

pub struct Generated {
    pub accounts: Vec<SimAccount>,
    pub transactions: Vec<Transaction>,
    pub item_id: String,
    pub access_token: String,
    pub rng: ChaCha8Rng,
}

/// The person's bank history depends on the seed and the institution only, so linking the
/// same institution again yields the same transactions; identifiers depend on the ordinal
/// too, so the new item has new ids, as with Plaid.
fn spec_rng(spec: &SimItemSpec, with_ordinal: bool) -> ChaCha8Rng {
    // FNV-1a over the institution id, mixed with seed and ordinal.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in spec.institution_id.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    let ordinal = if with_ordinal {
        (spec.ordinal as u64 + 1) << 40
    } else {
        0
    };
    ChaCha8Rng::seed_from_u64(spec.seed ^ h.rotate_left(17) ^ ordinal)
}

const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A Plaid-looking opaque id (37 base62 characters).
pub fn plaid_id(rng: &mut ChaCha8Rng) -> String {
    (0..37).map(|_| B62[rng.gen_range(0..62)] as char).collect()
}

/// A fresh random [`uuid_like`] id (tokens, sessions: not part of the deterministic data).
pub fn random_uuid() -> String {
    use rand::SeedableRng;
    uuid_like(&mut ChaCha8Rng::from_rng(rand::thread_rng()).expect("thread_rng seeds"))
}

pub fn uuid_like(rng: &mut ChaCha8Rng) -> String {
    let hex: String = (0..32)
        .map(|_| format!("{:x}", rng.gen_range(0..16u8)))
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn cents(c: i64) -> Decimal {
    Decimal::new(c, 2)
}

/// Days of history for `n` transactions: about four a day, between 90 days and two years.
pub fn history_days(n: usize) -> i64 {
    ((n / 4) as i64).clamp(90, 730)
}

/// A transaction as Plaid shapes it; `detailed` is a PFC v2 code.
#[allow(clippy::too_many_arguments)]
pub fn make_transaction(
    rng: &mut ChaCha8Rng,
    account: &SimAccount,
    date: NaiveDate,
    name: &str,
    merchant: &str,
    detailed: &str,
    amount: Decimal,
    channel: &str,
    city: &str,
    pending: bool,
) -> Transaction {
    let row = pfc::find_v2(detailed).expect("simulator categories come from the taxonomy");
    let (location, store) = if city.is_empty() {
        (Location::default(), None)
    } else {
        (
            Location {
                city: Some(city.to_string()),
                region: Some(if city == "Denver" { "CO" } else { "TX" }.to_string()),
                country: Some("US".to_string()),
                ..Default::default()
            },
            Some(format!("{}", rng.gen_range(100..9999))),
        )
    };
    let mut location = location;
    location.store_number = store;
    let authorized = date - Duration::days(if pending { 0 } else { rng.gen_range(0..3) });
    Transaction {
        transaction_id: plaid_id(rng),
        account_id: account.account_id.clone(),
        amount,
        iso_currency_code: Some("USD".to_string()),
        unofficial_currency_code: None,
        date,
        authorized_date: Some(authorized),
        authorized_datetime: None,
        datetime: None,
        name: Some(name.to_string()),
        merchant_name: (!merchant.is_empty()).then(|| merchant.to_string()),
        merchant_entity_id: None,
        logo_url: None,
        website: None,
        payment_channel: channel.to_string(),
        pending,
        pending_transaction_id: None,
        account_owner: None,
        transaction_code: None,
        location,
        payment_meta: PaymentMeta::default(),
        personal_finance_category: Some(PersonalFinanceCategory {
            primary: row.v2_primary.clone(),
            detailed: row.v2_detailed.clone(),
            confidence_level: Some(
                if rng.gen_bool(0.8) {
                    "VERY_HIGH"
                } else {
                    "HIGH"
                }
                .to_string(),
            ),
            version: None,
        }),
        personal_finance_category_icon_url: Some(format!(
            "https://plaid-category-icons.plaid.com/PFC_{}.png",
            row.v2_primary
        )),
        extra: Default::default(),
    }
}

/// A random everyday purchase on `date`.
pub fn random_purchase(
    rng: &mut ChaCha8Rng,
    accounts: &[SimAccount],
    date: NaiveDate,
    pending: bool,
) -> Transaction {
    let total: u32 = MERCHANTS.iter().map(|m| m.7).sum();
    let mut pick = rng.gen_range(0..total);
    let m = *MERCHANTS
        .iter()
        .find(|m| {
            if pick < m.7 {
                true
            } else {
                pick -= m.7;
                false
            }
        })
        .expect("pick is below the total weight");
    let account = if rng.gen_bool(0.7) {
        accounts.iter().find(|a| a.kind == AccountKind::CreditCard)
    } else {
        accounts.iter().find(|a| a.kind == AccountKind::Checking)
    }
    .expect("simulated items have checking and credit accounts");
    let amount = cents(rng.gen_range(m.3..=m.4) as i64);
    make_transaction(rng, account, date, m.0, m.1, m.2, amount, m.5, m.6, pending)
}

/// Generate an item's accounts and history from its spec.
pub fn generate(spec: &SimItemSpec) -> Generated {
    let mut rng = spec_rng(spec, false);
    let mut mask = || format!("{:04}", rng.gen_range(0..10000));
    let (m1, m2, m3, m4) = (mask(), mask(), mask(), mask());
    let accounts = vec![
        SimAccount {
            account_id: plaid_id(&mut rng),
            kind: AccountKind::Checking,
            name: "Plaid Checking",
            official_name: "Plaid Gold Standard 0% Interest Checking",
            mask: m1,
            opening: cents(rng.gen_range(150_000..450_000)),
        },
        SimAccount {
            account_id: plaid_id(&mut rng),
            kind: AccountKind::Savings,
            name: "Plaid Saving",
            official_name: "Plaid Silver Standard 0.1% Interest Saving",
            mask: m2,
            opening: cents(rng.gen_range(500_000..2_000_000)),
        },
        SimAccount {
            account_id: plaid_id(&mut rng),
            kind: AccountKind::CreditCard,
            name: "Plaid Credit Card",
            official_name: "Plaid Diamond 12.5% APR Interest Credit Card",
            mask: m3,
            opening: cents(1_000_000),
        },
        SimAccount {
            account_id: plaid_id(&mut rng),
            kind: AccountKind::Loan,
            name: "Plaid Student Loan",
            official_name: "Plaid Student Loan 4.5% APR",
            mask: m4,
            opening: cents(rng.gen_range(1_200_000..2_800_000)),
        },
    ];
    let days = history_days(spec.transactions);
    let first = spec.anchor - Duration::days(days);
    let by_kind = |k: AccountKind| accounts.iter().find(|a| a.kind == k).unwrap();
    let is_payday = |day: NaiveDate| {
        day.weekday() == chrono::Weekday::Fri && (day - first).num_days() / 7 % 2 == 0
    };
    let recurring_on = |day: NaiveDate| {
        MONTHLY.iter().filter(|r| r.4 == day.day()).count()
            + usize::from(is_payday(day))
            + if day.day() == CARD_PAYMENT_DAY { 2 } else { 0 }
    };
    let recurring: usize = (0..=days)
        .map(|d| recurring_on(first + Duration::days(d)))
        .sum();

    // Everyday purchases first, spread over the history…
    let mut purchases: Vec<Transaction> = (0..spec.transactions.saturating_sub(recurring))
        .map(|_| {
            let date = first + Duration::days(rng.gen_range(0..=days));
            let pending = (spec.anchor - date).num_days() < 2;
            random_purchase(&mut rng, &accounts, date, pending)
        })
        .collect();
    // Sorted by key (stable, like `sort_by_key`): a transaction is a large struct, and a
    // merge sort moving whole ones a million times over was most of an item's generation.
    purchases.sort_by_cached_key(|t| t.date);

    // …then the calendar: pay every other Friday, monthly bills, and the card paid in full.
    let card = by_kind(AccountKind::CreditCard).account_id.clone();
    let mut txns: Vec<Transaction> = Vec::with_capacity(spec.transactions.max(recurring));
    let mut next_purchase = 0;
    let mut card_balance = Decimal::ZERO;
    for d in 0..=days {
        let day = first + Duration::days(d);
        while next_purchase < purchases.len() && purchases[next_purchase].date < day {
            let t = purchases[next_purchase].clone();
            if t.account_id == card && !t.pending {
                card_balance += t.amount;
            }
            txns.push(t);
            next_purchase += 1;
        }
        let pending = (spec.anchor - day).num_days() < 2;
        let add = |t: Transaction, txns: &mut Vec<Transaction>, card_balance: &mut Decimal| {
            if t.account_id == card && !t.pending {
                *card_balance += t.amount;
            }
            txns.push(t);
        };
        if is_payday(day) {
            let pay = cents(-(rng.gen_range(315_000..332_000)));
            add(
                make_transaction(
                    &mut rng,
                    by_kind(AccountKind::Checking),
                    day,
                    "ACME CORP PAYROLL PPD",
                    "Acme Corp",
                    "INCOME_SALARY",
                    pay,
                    "other",
                    "",
                    pending,
                ),
                &mut txns,
                &mut card_balance,
            );
        }
        for r in MONTHLY.iter().filter(|r| r.4 == day.day()) {
            let t = make_transaction(
                &mut rng,
                by_kind(r.3),
                day,
                r.0,
                r.1,
                r.2,
                cents(r.5),
                "other",
                "",
                pending,
            );
            add(t, &mut txns, &mut card_balance);
        }
        if day.day() == CARD_PAYMENT_DAY && card_balance > Decimal::ZERO {
            let pay = card_balance;
            add(
                make_transaction(
                    &mut rng,
                    by_kind(AccountKind::Checking),
                    day,
                    "PLAID CREDIT CARD PAYMENT",
                    "",
                    "LOAN_PAYMENTS_CREDIT_CARD_PAYMENT",
                    pay,
                    "other",
                    "",
                    pending,
                ),
                &mut txns,
                &mut card_balance,
            );
            add(
                make_transaction(
                    &mut rng,
                    by_kind(AccountKind::CreditCard),
                    day,
                    "PAYMENT - THANK YOU",
                    "",
                    "LOAN_PAYMENTS_CREDIT_CARD_PAYMENT",
                    -pay,
                    "other",
                    "",
                    pending,
                ),
                &mut txns,
                &mut card_balance,
            );
        }
    }
    txns.extend(purchases.drain(next_purchase..));
    // A tiny history may hold more calendar lines than asked for: keep the newest.
    txns.sort_by_cached_key(|t| (t.date, t.transaction_id.clone()));
    if txns.len() > spec.transactions {
        txns.drain(..txns.len() - spec.transactions);
    }
    // New identifiers for this item (see `spec_rng`).
    let mut ids = spec_rng(spec, true);
    let item_id = plaid_id(&mut ids);
    let access_token = format!("access-sandbox-{}", uuid_like(&mut ids));
    let mut accounts = accounts;
    let mut renamed = std::collections::HashMap::new();
    for a in &mut accounts {
        let new = plaid_id(&mut ids);
        renamed.insert(std::mem::replace(&mut a.account_id, new.clone()), new);
    }
    for t in &mut txns {
        t.transaction_id = plaid_id(&mut ids);
        t.account_id = renamed[&t.account_id].clone();
    }
    Generated {
        accounts,
        transactions: txns,
        item_id,
        access_token,
        rng: ids,
    }
}
