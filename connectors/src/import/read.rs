//! Reading bank and card exports (CSV, OFX/QFX): amounts as banks write them,
//! dates in the usual US forms or a format given, and text in UTF-8 (with or without a byte
//! order mark) or Latin-1. Each reader says what it expected when a value does not fit, for
//! the error that names the file, line and column.

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

/// Where a CSV export keeps what an import needs, and which way its amounts point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Whose export it is, when recognised (shown to the person).
    pub name: &'static str,
    pub date: usize,
    pub description: usize,
    pub amount: Amounts,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amounts {
    /// One column, money out negative (as on a bank statement).
    Signed(usize),
    /// One column, charges positive (card issuers' exports): negated on import.
    ChargesPositive(usize),
    /// Money out in one column, money in in another (one of them empty on each row).
    DebitCredit { debit: usize, credit: usize },
}

/// Known exports, by the header columns that identify them: (name, required headers,
/// whether charges are positive).
const KNOWN: &[(&str, &[&str], bool)] = &[
    (
        "American Express",
        &["date", "description", "card member", "amount"],
        true,
    ),
    (
        "Discover",
        &[
            "trans. date",
            "post date",
            "description",
            "amount",
            "category",
        ],
        true,
    ),
    (
        "Chase card",
        &[
            "transaction date",
            "post date",
            "description",
            "category",
            "type",
            "amount",
        ],
        false,
    ),
    (
        "Chase bank account",
        &[
            "details",
            "posting date",
            "description",
            "amount",
            "type",
            "balance",
        ],
        false,
    ),
    (
        "Bank of America bank account",
        &["date", "description", "amount", "running bal."],
        false,
    ),
    (
        "Bank of America card",
        &[
            "posted date",
            "reference number",
            "payee",
            "address",
            "amount",
        ],
        false,
    ),
    (
        "Capital One",
        &[
            "transaction date",
            "posted date",
            "card no.",
            "description",
            "debit",
            "credit",
        ],
        false,
    ),
    (
        "Citi",
        &["status", "date", "description", "debit", "credit"],
        false,
    ),
];

const DATE_HEADERS: &[&str] = &[
    "transaction date",
    "trans. date",
    "date",
    "posted date",
    "posting date",
    "post date",
];
const DESCRIPTION_HEADERS: &[&str] = &["description", "payee", "name", "merchant", "memo"];

/// Find the layout of a CSV export from its header row (case and spaces ignored).
pub fn detect_layout(header: &[&str]) -> Result<Layout, String> {
    let names: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let find = |wanted: &[&str]| {
        wanted
            .iter()
            .find_map(|w| names.iter().position(|n| n == w))
    };
    let (date, description) = match (find(DATE_HEADERS), find(DESCRIPTION_HEADERS)) {
        (Some(d), Some(e)) => (d, e),
        _ => {
            return Err(format!(
                "a header naming the date and description columns (e.g. Date,Description,Amount); found {:?}. Name the columns with --columns date=…,amount=…,description=…",
                header.join(",")
            ));
        }
    };
    let known = KNOWN
        .iter()
        .find(|(_, required, _)| required.iter().all(|r| names.iter().any(|n| n == r)));
    let amount = match (find(&["amount"]), find(&["debit"]), find(&["credit"])) {
        (Some(a), _, _) if known.is_some_and(|k| k.2) => Amounts::ChargesPositive(a),
        (Some(a), _, _) => Amounts::Signed(a),
        (None, Some(debit), Some(credit)) => Amounts::DebitCredit { debit, credit },
        _ => {
            return Err(format!(
                "an Amount column, or Debit and Credit columns; found {:?}. Name the columns with --columns",
                header.join(",")
            ));
        }
    };
    Ok(Layout {
        name: known.map_or("generic", |k| k.0),
        date,
        description,
        amount,
    })
}

/// The layout `--columns` names: `date=…,amount=…,description=…` (or `debit=…,credit=…`
/// in place of `amount`), each a header name (case ignored) or a column number from 1. A
/// leading `-` on the amount column negates it (`amount=-Charge`: charges positive).
pub fn layout_from_columns(spec: &str, header: &[&str]) -> Result<Layout, String> {
    let names: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let mut date = None;
    let mut description = None;
    let mut amount = None;
    let mut debit = None;
    let mut credit = None;
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return Err(format!("--columns: {part:?} is not key=column"));
        };
        let (negate, value) = match value.trim().strip_prefix('-') {
            Some(v) => (true, v.trim()),
            None => (false, value.trim()),
        };
        let index = match value.parse::<usize>() {
            Ok(n) if (1..=header.len()).contains(&n) => n - 1,
            Ok(n) => {
                return Err(format!(
                    "--columns: column {n} does not exist (the file has {})",
                    header.len()
                ));
            }
            Err(_) => names
                .iter()
                .position(|n| *n == value.to_ascii_lowercase())
                .ok_or_else(|| {
                    format!(
                        "--columns: no column {value:?} in the header {:?}",
                        header.join(",")
                    )
                })?,
        };
        match (key.trim(), negate) {
            ("date", false) => date = Some(index),
            ("description", false) => description = Some(index),
            ("amount", n) => amount = Some((index, n)),
            ("debit", false) => debit = Some(index),
            ("credit", false) => credit = Some(index),
            (k, true) => return Err(format!("--columns: only amount may be negated, not {k}")),
            (k, _) => {
                return Err(format!(
                    "--columns: unknown key {k:?} (date, amount, description, debit, credit)"
                ));
            }
        }
    }
    let amounts = match (amount, debit, credit) {
        (Some((i, false)), None, None) => Amounts::Signed(i),
        (Some((i, true)), None, None) => Amounts::ChargesPositive(i),
        (None, Some(debit), Some(credit)) => Amounts::DebitCredit { debit, credit },
        _ => {
            return Err("--columns: name amount=…, or both debit=… and credit=…".to_string());
        }
    };
    match (date, description) {
        (Some(date), Some(description)) => Ok(Layout {
            name: "--columns",
            date,
            description,
            amount: amounts,
        }),
        _ => Err("--columns: name date=… and description=…".to_string()),
    }
}

/// A row's amount in the statement sign (money out negative), read by `layout`.
pub fn row_amount(layout: &Layout, row: &[&str]) -> Result<Decimal, (usize, String)> {
    let cell = |i: usize| row.get(i).copied().unwrap_or("");
    match layout.amount {
        Amounts::Signed(i) => parse_amount(cell(i)).map_err(|e| (i, e)),
        Amounts::ChargesPositive(i) => parse_amount(cell(i)).map(|v| -v).map_err(|e| (i, e)),
        Amounts::DebitCredit { debit, credit } => {
            let (d, c) = (cell(debit).trim(), cell(credit).trim());
            match (d.is_empty(), c.is_empty()) {
                (false, true) => parse_amount(d).map(|v| -v.abs()).map_err(|e| (debit, e)),
                (true, false) => parse_amount(c).map(|v| v.abs()).map_err(|e| (credit, e)),
                (true, true) => Err((
                    debit,
                    "an amount in Debit or in Credit; both are empty".into(),
                )),
                (false, false) => Err((
                    debit,
                    format!("an amount in Debit or in Credit, not both; found {d:?} and {c:?}"),
                )),
            }
        }
    }
}

/// One transaction read from an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedRow {
    /// Its line in the file (1 = the header).
    pub line: u64,
    pub date: NaiveDate,
    pub description: String,
    /// Statement sign: money out negative.
    pub amount: Decimal,
    /// 1 for the first row of the file with this date, description and amount, 2 for the
    /// second, …: two identical purchases on one day are two transactions, and the same
    /// row in a later, overlapping export is recognised as the same one.
    pub occurrence: u32,
}

/// Why a file was refused: where, and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}{}: expected {expected}", column.as_ref().map(|c| format!(", column {c}")).unwrap_or_default())]
pub struct ReadError {
    pub line: u64,
    /// The column's header name.
    pub column: Option<String>,
    pub expected: String,
}

/// Read a whole CSV export, all or nothing: every row, or the first row that cannot be
/// read. The layout is detected from the header unless `columns` names it (as for
/// [`layout_from_columns`]); `date_format` as for [`parse_date`].
pub fn read_csv(
    bytes: &[u8],
    columns: Option<&str>,
    date_format: Option<&str>,
) -> Result<(Layout, Vec<ImportedRow>), ReadError> {
    let text = decode_text(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| ReadError {
            line: 1,
            column: None,
            expected: format!("a CSV header row ({e})"),
        })?
        .iter()
        .map(str::to_string)
        .collect();
    let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
    let layout = match columns {
        Some(spec) => layout_from_columns(spec, &header_refs),
        None => detect_layout(&header_refs),
    }
    .map_err(|expected| ReadError {
        line: 1,
        column: None,
        expected,
    })?;
    let column_name = |i: usize| {
        header
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("#{}", i + 1))
    };
    // Lines are counted from the bytes: the reader's own count skips blank lines.
    let newlines: Vec<usize> = text
        .bytes()
        .enumerate()
        .filter(|(_, b)| *b == b'\n')
        .map(|(i, _)| i)
        .collect();
    // A record's position may be that of blank lines skipped before it.
    let line_at = |byte: u64| {
        let mut at = byte as usize;
        while matches!(text.as_bytes().get(at), Some(b'\n' | b'\r')) {
            at += 1;
        }
        newlines.partition_point(|&n| n < at) as u64 + 1
    };
    let mut rows = Vec::new();
    let mut seen: std::collections::HashMap<(NaiveDate, String, Decimal), u32> =
        std::collections::HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| ReadError {
            line: e.position().map_or(0, |p| line_at(p.byte())),
            column: None,
            expected: format!("a CSV row ({e})"),
        })?;
        let line = record.position().map_or(0, |p| line_at(p.byte()));
        let cells: Vec<&str> = record.iter().collect();
        if cells.iter().all(|c| c.is_empty()) {
            continue;
        }
        let date = parse_date(cells.get(layout.date).copied().unwrap_or(""), date_format).map_err(
            |expected| ReadError {
                line,
                column: Some(column_name(layout.date)),
                expected,
            },
        )?;
        let description = cells
            .get(layout.description)
            .copied()
            .unwrap_or("")
            .to_string();
        if description.is_empty() {
            return Err(ReadError {
                line,
                column: Some(column_name(layout.description)),
                expected: "a description; found an empty cell".into(),
            });
        }
        let amount = row_amount(&layout, &cells).map_err(|(i, expected)| ReadError {
            line,
            column: Some(column_name(i)),
            expected,
        })?;
        let n = seen.entry((date, description.clone(), amount)).or_insert(0);
        *n += 1;
        rows.push(ImportedRow {
            line,
            date,
            description,
            amount,
            occurrence: *n,
        });
    }
    Ok((layout, rows))
}

/// One transaction of an OFX/QFX statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfxRow {
    /// The bank's own id for it (`FITID`): the same in every download.
    pub fitid: String,
    pub date: NaiveDate,
    /// `NAME`, or `MEMO` when there is no name.
    pub description: String,
    /// Statement sign, as OFX's `TRNAMT` is.
    pub amount: Decimal,
}

/// Read every `STMTTRN` of an OFX or QFX file (OFX 1 SGML, whose leaf elements are not
/// closed, or OFX 2 XML), all or nothing. The line of a refusal is that of the element.
pub fn read_ofx(bytes: &[u8]) -> Result<Vec<OfxRow>, ReadError> {
    let text = decode_text(bytes);
    let line_of = |at: usize| text[..at].matches('\n').count() as u64 + 1;
    let upper = text.to_ascii_uppercase();
    if !upper.contains("<OFX>") {
        return Err(ReadError {
            line: 1,
            column: None,
            expected: "an OFX or QFX file (an <OFX> element)".into(),
        });
    }
    let mut rows = Vec::new();
    let mut from = 0;
    while let Some(start) = upper[from..].find("<STMTTRN>").map(|i| from + i) {
        let end = upper[start..]
            .find("</STMTTRN>")
            .map(|i| start + i)
            .ok_or_else(|| ReadError {
                line: line_of(start),
                column: None,
                expected: "</STMTTRN> closing the transaction".into(),
            })?;
        let block = &text[start..end];
        let block_upper = &upper[start..end];
        // A leaf's value runs to the next tag (closed or not).
        let field = |tag: &str| -> Option<(usize, String)> {
            let open = format!("<{tag}>");
            let at = block_upper.find(&open)? + open.len();
            let rest = &block[at..];
            let value = rest[..rest.find('<').unwrap_or(rest.len())].trim();
            Some((start + at, value.to_string()))
        };
        let need = |tag: &'static str| {
            field(tag)
                .filter(|(_, v)| !v.is_empty())
                .ok_or_else(|| ReadError {
                    line: line_of(start),
                    column: Some(tag.to_string()),
                    expected: format!("a <{tag}> in the transaction"),
                })
        };
        let (_, fitid) = need("FITID")?;
        let (at, posted) = need("DTPOSTED")?;
        // 20260131, 20260131120000, 20260131120000.000[-5:EST]
        let date = posted
            .get(..8)
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
            .ok_or_else(|| ReadError {
                line: line_of(at),
                column: Some("DTPOSTED".into()),
                expected: format!("a date such as 20260131; found {posted:?}"),
            })?;
        let (at, raw_amount) = need("TRNAMT")?;
        let amount = parse_amount(&raw_amount).map_err(|expected| ReadError {
            line: line_of(at),
            column: Some("TRNAMT".into()),
            expected,
        })?;
        let description = field("NAME")
            .or_else(|| field("MEMO"))
            .map(|(_, v)| v)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ReadError {
                line: line_of(start),
                column: Some("NAME".into()),
                expected: "a <NAME> or <MEMO> in the transaction".into(),
            })?;
        rows.push(OfxRow {
            fitid,
            date,
            description: decode_entities(&description),
            amount,
        });
        from = end + "</STMTTRN>".len();
    }
    Ok(rows)
}

/// `&amp;` and the other four XML entities, as OFX writes `AT&T`.
fn decode_entities(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
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
    fn common_exports_are_recognised_with_their_sign() {
        let layout = |h: &str| detect_layout(&h.split(',').collect::<Vec<_>>()).unwrap();
        let chase = layout("Transaction Date,Post Date,Description,Category,Type,Amount,Memo");
        assert_eq!(
            (chase.name, chase.date, chase.description, chase.amount),
            ("Chase card", 0, 2, Amounts::Signed(5))
        );
        let amex = layout("Date,Description,Card Member,Account #,Amount");
        assert_eq!(
            (amex.name, amex.amount),
            ("American Express", Amounts::ChargesPositive(4))
        );
        assert_eq!(
            row_amount(&amex, &["01/31/2026", "CAFE", "A B", "-1001", "12.50"]),
            Ok(d("-12.50"))
        );
        let discover = layout("Trans. Date,Post Date,Description,Amount,Category");
        assert_eq!(discover.amount, Amounts::ChargesPositive(3));
        let capital_one =
            layout("Transaction Date,Posted Date,Card No.,Description,Category,Debit,Credit");
        assert_eq!(
            capital_one.amount,
            Amounts::DebitCredit {
                debit: 5,
                credit: 6
            }
        );
        let row = [
            "2026-01-31",
            "2026-02-01",
            "1234",
            "SHOP",
            "Shopping",
            "25.00",
            "",
        ];
        assert_eq!(row_amount(&capital_one, &row), Ok(d("-25.00")));
        let row = [
            "2026-01-31",
            "2026-02-01",
            "1234",
            "REFUND",
            "Shopping",
            "",
            "5.00",
        ];
        assert_eq!(row_amount(&capital_one, &row), Ok(d("5.00")));
        let both = ["2026-01-31", "", "", "X", "", "1.00", "2.00"];
        assert!(
            row_amount(&capital_one, &both)
                .unwrap_err()
                .1
                .contains("not both")
        );
        let boa = layout("Date,Description,Amount,Running Bal.");
        assert_eq!(
            (boa.name, boa.amount),
            ("Bank of America bank account", Amounts::Signed(2))
        );
        // Anything with a date, a description and an amount: the statement sign.
        let generic = layout("date, memo ,AMOUNT");
        assert_eq!(
            (generic.name, generic.amount),
            ("generic", Amounts::Signed(2))
        );
        // Unknown columns: the error says how to name them.
        let err = detect_layout(&["When", "What", "How much"]).unwrap_err();
        assert!(err.contains("--columns"), "{err}");
        let err = detect_layout(&["Date", "Description", "Value"]).unwrap_err();
        assert!(err.contains("Amount column"), "{err}");
        // A cell that is not an amount names its column.
        let (column, err) = row_amount(&boa, &["01/31/2026", "X", "abc", "1"]).unwrap_err();
        assert_eq!(column, 2);
        assert!(err.contains("\"abc\""), "{err}");
    }

    #[test]
    fn a_file_is_read_whole_or_refused_at_its_first_bad_row() {
        let file = "\u{feff}Date,Description,Amount\n01/30/2026,COFFEE,-4.50\n01/30/2026,COFFEE,-4.50\n\n01/31/2026,\"PAYCHECK, ACME\",\"1,200.00\"\n";
        let (layout, rows) = read_csv(file.as_bytes(), None, None).unwrap();
        assert_eq!(layout.amount, Amounts::Signed(2));
        let got: Vec<(u64, &str, Decimal, u32)> = rows
            .iter()
            .map(|r| (r.line, r.description.as_str(), r.amount, r.occurrence))
            .collect();
        assert_eq!(
            got,
            vec![
                (2, "COFFEE", d("-4.50"), 1),
                (3, "COFFEE", d("-4.50"), 2),
                (5, "PAYCHECK, ACME", d("1200.00"), 1),
            ]
        );
        let bad = "Date,Description,Amount\n01/30/2026,COFFEE,-4.50\n01/31/2026,TEA,four\n";
        let err = read_csv(bad.as_bytes(), None, None).unwrap_err();
        assert_eq!((err.line, err.column.as_deref()), (3, Some("Amount")));
        assert!(
            err.to_string()
                .starts_with("line 3, column Amount: expected an amount"),
            "{err}"
        );
        let bad_date = "Date,Description,Amount\n2026-13-45,COFFEE,-4.50\n";
        let err = read_csv(bad_date.as_bytes(), None, None).unwrap_err();
        assert_eq!((err.line, err.column.as_deref()), (2, Some("Date")));
        let latin1 = b"Date,Description,Amount\n01/30/2026,Caf\xE9,-4.50\n";
        assert_eq!(
            read_csv(latin1, None, None).unwrap().1[0].description,
            "Caf\u{e9}"
        );
    }

    #[test]
    fn columns_named_by_the_person() {
        let header = ["Posted", "Memo", "Charge", "Refund", "Ref"];
        let l =
            layout_from_columns("date=posted, description=Memo, amount=-Charge", &header).unwrap();
        assert_eq!(
            (l.date, l.description, l.amount),
            (0, 1, Amounts::ChargesPositive(2))
        );
        let l = layout_from_columns("date=1,description=2,debit=3,credit=4", &header).unwrap();
        assert_eq!(
            l.amount,
            Amounts::DebitCredit {
                debit: 2,
                credit: 3
            }
        );
        for (spec, says) in [
            ("date=Posted,description=Memo", "amount=…"),
            ("date=Posted,amount=Charge", "description=…"),
            (
                "date=When,description=Memo,amount=Charge",
                "no column \"When\"",
            ),
            (
                "date=9,description=Memo,amount=Charge",
                "column 9 does not exist",
            ),
            (
                "date=Posted,description=Memo,amount=Charge,colour=Ref",
                "unknown key",
            ),
            ("date=Posted,description=Memo,amount", "not key=column"),
            (
                "date=-Posted,description=Memo,amount=Charge",
                "only amount may be negated",
            ),
        ] {
            let err = layout_from_columns(spec, &header).unwrap_err();
            assert!(err.contains(says), "{spec}: {err}");
        }
        // Read with it; a bad spec is refused at the header.
        let file = "Posted,Memo,Charge\n2026-01-30,COFFEE,4.50\n";
        let spec = "date=Posted,description=Memo,amount=-Charge";
        let (_, rows) = read_csv(file.as_bytes(), Some(spec), None).unwrap();
        assert_eq!(rows[0].amount, d("-4.50"));
        let err = read_csv(
            file.as_bytes(),
            Some("date=When,description=Memo,amount=Charge"),
            None,
        )
        .unwrap_err();
        assert_eq!(err.line, 1);
    }

    #[test]
    fn ofx_statements_sgml_and_xml() {
        let sgml = "OFXHEADER:100\nDATA:OFXSGML\n\n<OFX>\n<BANKMSGSRSV1><STMTTRNRS><STMTRS>\n<BANKTRANLIST>\n<STMTTRN>\n<TRNTYPE>DEBIT\n<DTPOSTED>20260130120000.000[-5:EST]\n<TRNAMT>-4.50\n<FITID>2026013001\n<NAME>AT&amp;T WIRELESS\n</STMTTRN>\n<STMTTRN>\n<TRNTYPE>CREDIT\n<DTPOSTED>20260131\n<TRNAMT>1200.00\n<FITID>2026013102\n<MEMO>PAYROLL ACME\n</STMTTRN>\n</BANKTRANLIST></STMTRS></STMTTRNRS></BANKMSGSRSV1></OFX>\n";
        let rows = read_ofx(sgml.as_bytes()).unwrap();
        let jan = |day| NaiveDate::from_ymd_opt(2026, 1, day).unwrap();
        assert_eq!(
            rows,
            vec![
                OfxRow {
                    fitid: "2026013001".into(),
                    date: jan(30),
                    description: "AT&T WIRELESS".into(),
                    amount: d("-4.50"),
                },
                OfxRow {
                    fitid: "2026013102".into(),
                    date: jan(31),
                    description: "PAYROLL ACME".into(),
                    amount: d("1200.00"),
                },
            ]
        );
        let xml = "<?xml version=\"1.0\"?><?OFX OFXHEADER=\"200\"?><OFX><STMTTRN><TRNTYPE>DEBIT</TRNTYPE><DTPOSTED>20260130</DTPOSTED><TRNAMT>-4.50</TRNAMT><FITID>A1</FITID><NAME>COFFEE</NAME></STMTTRN></OFX>";
        let rows = read_ofx(xml.as_bytes()).unwrap();
        assert_eq!((rows[0].fitid.as_str(), rows[0].amount), ("A1", d("-4.50")));
        // Refusals name the element and its line.
        let bad = sgml.replace("<TRNAMT>1200.00", "<TRNAMT>lots");
        let err = read_ofx(bad.as_bytes()).unwrap_err();
        assert_eq!((err.line, err.column.as_deref()), (17, Some("TRNAMT")));
        let no_id = sgml.replace("<FITID>2026013102\n", "");
        assert!(
            read_ofx(no_id.as_bytes())
                .unwrap_err()
                .expected
                .contains("<FITID>")
        );
        assert!(
            read_ofx(b"Date,Amount\n")
                .unwrap_err()
                .expected
                .contains("OFX")
        );
    }

    #[test]
    fn text_in_utf8_with_or_without_bom_or_latin1() {
        assert_eq!(decode_text(b"\xEF\xBB\xBFDate,Amount"), "Date,Amount");
        assert_eq!(decode_text("Café".as_bytes()), "Café");
        assert_eq!(decode_text(b"Caf\xE9"), "Café");
    }
}
