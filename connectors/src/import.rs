//! Reading the values of bank and card exports (CSV, OFX): amounts as banks write them,
//! dates in the usual US forms or a format given, and text in UTF-8 (with or without a byte
//! order mark) or Latin-1. Each reader says what it expected when a value does not fit, for
//! the error that names the file, line and column. (The import source that uses them is not
//! built yet.)

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;

/// An amount as a bank writes it: `$1,234.56`, `-$12.00`, `(12.00)` (negative), `12.00-`,
/// `+12`, `−12` (a Unicode minus), `USD 12.00`, `12.00 USD`, `12.00 CR` / `12.00 DR`.
pub fn parse_amount(text: &str) -> Result<Decimal, String> {
    let expected = || format!("an amount such as 1234.56, -$1,234.56 or (12.00); found {text:?}");
    let mut s = text.trim().to_string();
    if s.is_empty() {
        return Err(expected());
    }
    let mut negative = false;
    let upper = s.to_ascii_uppercase();
    for (suffix, neg) in [(" CR", false), (" DR", true), ("CR", false), ("DR", true)] {
        if upper.ends_with(suffix) && s.len() > suffix.len() {
            s.truncate(s.len() - suffix.len());
            negative ^= neg;
            break;
        }
    }
    let mut s = s.trim().to_string();
    for code in ["USD", "US$"] {
        if s.to_ascii_uppercase().starts_with(code) {
            s = s[code.len()..].trim_start().to_string();
        }
        if s.to_ascii_uppercase().ends_with(code) {
            s = s[..s.len() - code.len()].trim_end().to_string();
        }
    }
    let mut s = s.replace('\u{2212}', "-");
    if s.starts_with('(') && s.ends_with(')') && s.len() > 2 {
        s = s[1..s.len() - 1].trim().to_string();
        negative ^= true;
    }
    if let Some(rest) = s.strip_suffix('-') {
        s = rest.trim_end().to_string();
        negative ^= true;
    }
    if let Some(rest) = s.strip_prefix('-') {
        s = rest.trim_start().to_string();
        negative ^= true;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest.trim_start().to_string();
    }
    if let Some(rest) = s.strip_prefix('$') {
        s = rest.trim_start().to_string();
    }
    // After a currency sign, a sign may still come: "$-12.00".
    if let Some(rest) = s.strip_prefix('-') {
        s = rest.to_string();
        negative ^= true;
    }
    // Thousands separators: groups of exactly three digits after the first.
    let (whole, fraction) = match s.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (s.as_str(), None),
    };
    let groups: Vec<&str> = whole.split(',').collect();
    let grouped_ok = groups.len() == 1
        || (!groups[0].is_empty()
            && groups[0].len() <= 3
            && groups[1..].iter().all(|g| g.len() == 3));
    let digits_ok = |t: &str| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit());
    if !grouped_ok
        || !groups.iter().all(|g| digits_ok(g))
        || fraction.is_some_and(|f| !digits_ok(f))
    {
        return Err(expected());
    }
    let plain = match fraction {
        Some(f) => format!("{}.{f}", groups.concat()),
        None => groups.concat(),
    };
    let mut value: Decimal = plain.parse().map_err(|_| expected())?;
    if negative {
        value = -value;
    }
    Ok(value)
}

/// The date forms tried when none is given, in this order (US month-first before
/// day-first is never guessed: `--date-format` says otherwise).
pub const DATE_FORMATS: &[&str] = &[
    "%Y-%m-%d",
    "%m/%d/%Y",
    "%m/%d/%y",
    "%Y/%m/%d",
    "%m-%d-%Y",
    "%Y%m%d",
    "%d %b %Y",
    "%b %d, %Y",
];

/// A date in `format` (chrono's `strftime` syntax), or in one of [`DATE_FORMATS`].
pub fn parse_date(text: &str, format: Option<&str>) -> Result<NaiveDate, String> {
    let t = text.trim();
    match format {
        Some(f) => NaiveDate::parse_from_str(t, f)
            .map_err(|_| format!("a date in the form {f}; found {text:?}")),
        // A four-digit-year form must not read "1/31/26" as the year 26.
        None => DATE_FORMATS
            .iter()
            .find_map(|f| {
                NaiveDate::parse_from_str(t, f)
                    .ok()
                    .filter(|d| !f.contains("%Y") || d.year() >= 1900)
            })
            .ok_or_else(|| {
                format!(
                    "a date such as 2026-01-31 or 01/31/2026 (or give --date-format); found {text:?}"
                )
            }),
    }
}

/// A file's text: UTF-8 (a byte order mark dropped), or else Latin-1 (every byte a
/// character), as older bank exports are.
pub fn decode_text(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn amounts_as_banks_write_them() {
        for (text, value) in [
            ("12.34", "12.34"),
            ("$1,234.56", "1234.56"),
            ("-$1,234.56", "-1234.56"),
            ("$-12.00", "-12.00"),
            ("(12.00)", "-12.00"),
            ("($1,000)", "-1000"),
            ("12.00-", "-12.00"),
            ("+12", "12"),
            ("\u{2212}12.50", "-12.50"),
            ("USD 12.00", "12.00"),
            ("12.00 USD", "12.00"),
            ("12.00 CR", "12.00"),
            ("12.00 DR", "-12.00"),
            ("  7 ", "7"),
            ("1,234,567.8", "1234567.8"),
        ] {
            assert_eq!(parse_amount(text), Ok(d(value)), "{text}");
        }
    }

    #[test]
    fn what_is_not_an_amount_says_so() {
        for text in [
            "",
            "abc",
            "12,34",
            "1,2345.00",
            ",123",
            "12.3.4",
            "$",
            "()",
            "1 234",
        ] {
            let err = parse_amount(text).unwrap_err();
            assert!(err.contains("an amount such as"), "{text}: {err}");
            assert!(err.contains(&format!("{text:?}")), "{text}: {err}");
        }
    }

    #[test]
    fn dates_in_us_forms_or_a_format_given() {
        let jan31 = NaiveDate::from_ymd_opt(2026, 1, 31).unwrap();
        for text in [
            "2026-01-31",
            "01/31/2026",
            "1/31/26",
            "2026/01/31",
            "20260131",
            "31 Jan 2026",
            "Jan 31, 2026",
        ] {
            assert_eq!(parse_date(text, None), Ok(jan31), "{text}");
        }
        assert_eq!(parse_date("31.01.2026", Some("%d.%m.%Y")), Ok(jan31));
        let err = parse_date("31.01.2026", None).unwrap_err();
        assert!(err.contains("--date-format"), "{err}");
        let err = parse_date("2026-01-31", Some("%d.%m.%Y")).unwrap_err();
        assert!(err.contains("%d.%m.%Y"), "{err}");
    }

    #[test]
    fn text_in_utf8_with_or_without_bom_or_latin1() {
        assert_eq!(decode_text(b"\xEF\xBB\xBFDate,Amount"), "Date,Amount");
        assert_eq!(decode_text("Café".as_bytes()), "Café");
        assert_eq!(decode_text(b"Caf\xE9"), "Café");
    }
}
