//! Every number in an answer, checked against the numbers it may come from.
//!
//! The model writes the words; DuckDB computed the numbers. Before an answer is shown, each
//! number in its text is found ([`numbers`]) and matched ([`check`]) against the facts the
//! model was given: the result's cells, its row count, the context's figures and the
//! question's own numbers, at the precision the text shows ("$1,235" is 1234.56 rounded,
//! "1.2k" is 1,234 to the hundred, "12%" may be a cell of 12 or of 0.12). A number may also
//! be derived: the total or average of a result column, or the difference, sum, share or
//! change in per cent of two facts; it is then checked by computing it. Numbers that belong
//! to a date (a day, a year) are not amounts and are left alone; so are ordinals ("2nd").
//!
//! Signs are compared as magnitudes: spending is negative in the rows and positive in
//! "you spent $120".

use std::ops::Range;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

/// A number as written in an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// As it appears in the text, e.g. `$1,234.50`, `12%`, `1.2k`.
    pub text: String,
    /// Where, in bytes.
    pub span: Range<usize>,
    /// The digits' value, sign included (1.2 for `1.2k`).
    pub digits: Decimal,
    /// Decimal places shown.
    pub places: u32,
    /// 1, or 1,000 for `k`/`thousand`, 1,000,000 for `M`/`million`, …
    pub scale: Decimal,
    pub percent: bool,
}

impl Written {
    /// The value the text means (1200 for `1.2k`; 12 for `12%`).
    pub fn value(&self) -> Decimal {
        self.digits * self.scale
    }
}

/// A number the model was given, and where it came from (shown beside a verified number).
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    pub value: Decimal,
    pub source: String,
}

impl Fact {
    pub fn new(value: Decimal, source: impl Into<String>) -> Self {
        Fact {
            value,
            source: source.into(),
        }
    }
}

/// The outcome for one number of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub written: Written,
    /// The fact or computation it matched; `None`: unverified.
    pub source: Option<String>,
}

impl Checked {
    pub fn verified(&self) -> bool {
        self.source.is_some()
    }
}

/// How many facts take part in the two-fact derivations (their pairs are tried).
const PAIRED_FACTS: usize = 120;

/// Check every number of `answer` against the facts of the result (`rows`, from which
/// numbers may also be derived) and the `others` it was given (the context, the question:
/// quoted as they are). Derivations stay within the result: among the many figures of the
/// context, some pair would match almost any small number.
pub fn check(answer: &str, rows: &[Fact], others: &[Fact]) -> Vec<Checked> {
    let written = numbers(answer);
    if written.is_empty() {
        return Vec::new();
    }
    let derived = derivations(rows);
    written
        .into_iter()
        .map(|w| {
            let source = rows
                .iter()
                .chain(others)
                .find(|f| shows(f.value, &w))
                .map(|f| f.source.clone())
                .or_else(|| {
                    derived
                        .iter()
                        .find(|d| shows(d.value, &w) && (!d.percent_only || w.percent))
                        .map(|d| d.describe(rows))
                });
            Checked { written: w, source }
        })
        .collect()
}

/// A number computed from the facts.
struct Derived {
    value: Decimal,
    op: Op,
    a: usize,
    b: usize,
    /// Only a percentage may come from it (a share or a change in per cent).
    percent_only: bool,
}

#[derive(Clone, Copy)]
enum Op {
    Difference,
    Sum,
    Share,
    Change,
}

impl Derived {
    fn describe(&self, facts: &[Fact]) -> String {
        let (a, b) = (&facts[self.a].source, &facts[self.b].source);
        match self.op {
            Op::Difference => format!("the difference of {a} and {b}"),
            Op::Sum => format!("the sum of {a} and {b}"),
            Op::Share => format!("{a} as a share of {b}"),
            Op::Change => format!("the change from {b} to {a}, in per cent"),
        }
    }
}

fn derivations(facts: &[Fact]) -> Vec<Derived> {
    // Distinct values only: the same number in many cells adds nothing but pairs.
    let mut firsts: Vec<usize> = Vec::new();
    for (i, f) in facts.iter().enumerate() {
        if firsts.len() >= PAIRED_FACTS {
            break;
        }
        if !firsts.iter().any(|&j| facts[j].value == f.value) {
            firsts.push(i);
        }
    }
    let hundred = Decimal::ONE_HUNDRED;
    let mut out = Vec::new();
    for &i in &firsts {
        for &j in &firsts {
            if i == j {
                continue;
            }
            let (a, b) = (facts[i].value, facts[j].value);
            if i < j {
                out.push(Derived {
                    value: a - b,
                    op: Op::Difference,
                    a: i,
                    b: j,
                    percent_only: false,
                });
                out.push(Derived {
                    value: a + b,
                    op: Op::Sum,
                    a: i,
                    b: j,
                    percent_only: false,
                });
            }
            if !b.is_zero() {
                if let Some(share) = a.checked_mul(hundred).and_then(|x| x.checked_div(b)) {
                    out.push(Derived {
                        value: share,
                        op: Op::Share,
                        a: i,
                        b: j,
                        percent_only: true,
                    });
                }
                if let Some(change) = (a - b)
                    .checked_mul(hundred)
                    .and_then(|x| x.checked_div(b.abs()))
                {
                    out.push(Derived {
                        value: change,
                        op: Op::Change,
                        a: i,
                        b: j,
                        percent_only: true,
                    });
                }
            }
        }
    }
    out
}

/// `fact` shown at the precision and scale of `w` is `w` (magnitudes; a percentage may be
/// a cell in per cent or a fraction).
fn shows(fact: Decimal, w: &Written) -> bool {
    let target = w.digits.abs();
    let magnitude = fact.abs();
    let mut candidates = vec![magnitude];
    if w.percent
        && let Some(x) = magnitude.checked_mul(Decimal::ONE_HUNDRED)
    {
        candidates.push(x);
    }
    candidates.into_iter().any(|c| {
        let Some(scaled) = c.checked_div(w.scale) else {
            return false;
        };
        [
            RoundingStrategy::MidpointAwayFromZero,
            RoundingStrategy::MidpointNearestEven,
        ]
        .into_iter()
        .any(|s| scaled.round_dp_with_strategy(w.places, s) == target)
    })
}

const MONTHS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
];

fn is_month(word: &str) -> bool {
    let w = word.trim_end_matches('.').to_ascii_lowercase();
    MONTHS.contains(&w.as_str())
}

/// The word just before byte `at` (skipping spaces and one comma).
fn word_before(text: &str, at: usize) -> &str {
    let head = text[..at].trim_end_matches([' ', ',']);
    let start = head
        .rfind(|c: char| !(c.is_alphabetic() || c == '.'))
        .map(|i| i + head[i..].chars().next().map_or(1, char::len_utf8))
        .unwrap_or(0);
    &head[start..]
}

/// The word just after byte `at` (skipping spaces).
fn word_after(text: &str, at: usize) -> &str {
    let tail = text[at..].trim_start_matches(' ');
    let end = tail
        .find(|c: char| !c.is_alphabetic())
        .unwrap_or(tail.len());
    &tail[..end]
}

/// The numbers of `text` that are amounts, counts or percentages.
pub fn numbers(text: &str) -> Vec<Written> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if !c.is_ascii_digit() {
            i += 1;
            continue;
        }
        // Part of a word or code (Q3, FOOD_2, id-42x): skip the whole token.
        let prev = text[..i].chars().next_back();
        if prev.is_some_and(|p| p.is_alphabetic() || p == '_' || p == '#') {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            continue;
        }
        let start_digits = i;
        // Digits, with thousands separators where a comma is followed by exactly three
        // digits.
        let mut end = i;
        let mut grouped = false;
        while end < bytes.len() {
            if bytes[end].is_ascii_digit() {
                end += 1;
            } else if bytes[end] == b','
                && bytes
                    .get(end + 1..end + 4)
                    .is_some_and(|g| g.iter().all(u8::is_ascii_digit))
                && !bytes.get(end + 4).is_some_and(u8::is_ascii_digit)
            {
                grouped = true;
                end += 4;
            } else {
                break;
            }
        }
        let mut places = 0u32;
        if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
            end += 1;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
                places += 1;
            }
        }
        // Dates and times: 2026-11-01, 11/01/2026, 10:30, 1.5.2026.
        let next = bytes.get(end).copied();
        if matches!(next, Some(b'-' | b'/' | b':'))
            && bytes.get(end + 1).is_some_and(u8::is_ascii_digit)
            || next == Some(b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit)
        {
            while end < bytes.len()
                && (bytes[end].is_ascii_digit() || matches!(bytes[end], b'-' | b'/' | b':' | b'.'))
            {
                end += 1;
            }
            i = end;
            continue;
        }
        let prev_of_date = bytes[..start_digits].last().copied();
        if matches!(prev_of_date, Some(b'-' | b'/' | b':'))
            && start_digits >= 2
            && bytes[start_digits - 2].is_ascii_digit()
        {
            i = end;
            continue;
        }
        // Ordinals and units glued to the number (2nd, 10am) are not amounts; k, M, bn are
        // scales.
        let mut scale = Decimal::ONE;
        let mut stop = end;
        let glued = word_after(text, end);
        let glued_directly = text[end..].starts_with(|c: char| c.is_alphabetic());
        if glued_directly {
            match glued {
                "k" | "K" => {
                    scale = Decimal::from(1_000);
                    stop = end + 1;
                }
                "M" | "m" | "mn" => {
                    scale = Decimal::from(1_000_000);
                    stop = end + glued.len();
                }
                "bn" | "B" => {
                    scale = Decimal::from(1_000_000_000);
                    stop = end + glued.len();
                }
                _ => {
                    i = end + glued.len();
                    continue;
                }
            }
        } else {
            let word = glued.to_ascii_lowercase();
            let found = match word.as_str() {
                "thousand" => Some(1_000i64),
                "million" => Some(1_000_000),
                "billion" => Some(1_000_000_000),
                _ => None,
            };
            if let Some(s) = found {
                scale = Decimal::from(s);
                stop = end
                    + (text[end..].len() - text[end..].trim_start_matches(' ').len())
                    + word.len();
            }
        }
        let percent = text[stop..].starts_with('%')
            || text[stop..]
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("percent");
        if text[stop..].starts_with('%') {
            stop += 1;
        }
        // Currency before the digits, and a sign before that.
        let mut start = start_digits;
        let mut currency = false;
        for symbol in ["$", "€", "£"] {
            if text[..start].ends_with(symbol) {
                start -= symbol.len();
                currency = true;
                break;
            }
        }
        let mut negative = false;
        if let Some(minus) = ["-", "\u{2212}"]
            .into_iter()
            .find(|m| text[..start].ends_with(m))
        {
            let before = text[..start - minus.len()].chars().next_back();
            if before.is_none_or(|b| b.is_whitespace() || b == '(') {
                start -= minus.len();
                negative = true;
            }
        }
        let digits_text: String = text[start_digits..end]
            .chars()
            .filter(|&c| c != ',')
            .collect();
        let Ok(mut digits) = digits_text.parse::<Decimal>() else {
            i = end;
            continue;
        };
        // A day next to a month name, or a year, is part of a date.
        let is_plain = !currency && !grouped && places == 0 && !percent && scale == Decimal::ONE;
        if is_plain
            && (is_month(word_before(text, start_digits))
                || is_month(word_after(text, end))
                || digits
                    .to_i64()
                    .is_some_and(|year| (1900..=2100).contains(&year)))
        {
            i = stop;
            continue;
        }
        if negative {
            digits.set_sign_negative(true);
        }
        out.push(Written {
            text: text[start..stop].to_string(),
            span: start..stop,
            digits,
            places,
            scale,
            percent,
        });
        i = stop.max(end);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn texts(s: &str) -> Vec<String> {
        numbers(s).into_iter().map(|w| w.text).collect()
    }

    #[test]
    fn finds_amounts_counts_and_percentages() {
        let found = numbers("You spent $1,234.50 on 12 purchases, 15% more than -$20 and 1.2k.");
        let got: Vec<(&str, Decimal, u32, bool)> = found
            .iter()
            .map(|w| (w.text.as_str(), w.value(), w.places, w.percent))
            .collect();
        assert_eq!(
            got,
            vec![
                ("$1,234.50", d("1234.50"), 2, false),
                ("12", d("12"), 0, false),
                ("15%", d("15"), 0, true),
                ("-$20", d("-20"), 0, false),
                ("1.2k", d("1200"), 1, false),
            ]
        );
        assert_eq!(numbers("about 2 million dollars")[0].value(), d("2000000"));
        assert!(numbers("up 7.5 percent")[0].percent);
        assert_eq!(numbers("down \u{2212}$3")[0].value(), d("-3"));
        assert_eq!(texts("€12 and £3"), vec!["€12", "£3"]);
    }

    #[test]
    fn dates_ordinals_and_codes_are_not_numbers() {
        for text in [
            "on 2026-11-01",
            "on 11/01/2026",
            "at 10:30",
            "on March 5",
            "on Mar. 5, 2026",
            "on 5 March",
            "in 2025",
            "on the 2nd",
            "in Q3",
            "FOOD_2 category",
            "invoice #42",
            "at 10am",
        ] {
            assert_eq!(texts(text), Vec::<String>::new(), "{text}");
        }
        // A year-sized amount or count is still an amount.
        assert_eq!(texts("$2025 in 1,999 purchases"), vec!["$2025", "1,999"]);
        // A comma that is not a thousands separator ends the number.
        assert_eq!(texts("3,4 and 12,34567"), vec!["3", "4", "12", "34567"]);
    }

    #[test]
    fn verified_at_the_precision_shown() {
        let facts = vec![
            Fact::new(d("-1234.56"), "row 1, spent"),
            Fact::new(d("0.125"), "row 1, share"),
        ];
        for (text, ok) in [
            ("$1,234.56", true),
            ("$1,235", true),
            ("$1.2k", true),
            ("$1,234.6", true),
            ("$1,234.57", false),
            ("$1,240", false),
            ("12.5%", true),
            ("13%", true),
            ("12%", true), // 12.5 rounded half to even
            ("14%", false),
        ] {
            let checked = check(text, &facts, &[]);
            assert_eq!(checked.len(), 1, "{text}");
            assert_eq!(checked[0].verified(), ok, "{text}");
        }
    }

    #[test]
    fn derived_numbers_are_computed() {
        let facts = vec![
            Fact::new(d("-300.00"), "row 1, spent"),
            Fact::new(d("-250.00"), "row 2, spent"),
        ];
        let checked = check(
            "$50 more (20% up), $550 in all, and 54.5% of the total",
            &facts,
            &[],
        );
        let got: Vec<(&str, Option<&str>)> = checked
            .iter()
            .map(|c| (c.written.text.as_str(), c.source.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "$50",
                    Some("the difference of row 1, spent and row 2, spent")
                ),
                (
                    "20%",
                    Some("the change from row 2, spent to row 1, spent, in per cent")
                ),
                ("$550", Some("the sum of row 1, spent and row 2, spent")),
                // 300 / 550: a share of a total the facts do not hold.
                ("54.5%", None),
            ]
        );
        assert!(check("120% of it", &facts, &[])[0].verified());
        // A made-up amount is caught; a share is a percentage, not an amount.
        assert!(!check("$75 more", &facts, &[])[0].verified());
        assert!(!check("$120", &facts, &[])[0].verified());
    }
}
