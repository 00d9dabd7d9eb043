//! A merchant's name as people say it, from the text a bank statement shows.
//!
//! Card processors, store numbers and the place of purchase make one merchant look like
//! many: `SQ *BLUE BOTTLE COFFEE`, `Starbucks #1234 SEATTLE WA` and `STARBUCKS 0162` are
//! two merchants, not three. [`normalize`] removes what varies (a processor's prefix, a
//! store or terminal number and what follows it, an order code after a star, a trailing
//! city and state) and writes an all-capitals name in capitals and lower case (short words
//! such as `CVS` or `KFC` stay as they are). It keeps the raw name's words otherwise: it does not guess brands.

/// Card processors' and marketplaces' prefixes: `SQ *`, `TST*`, `PAYPAL *`, …
const PROCESSORS: &[&str] = &[
    "SQ", "TST", "PAYPAL", "PP", "SP", "DD", "IN", "EB", "WPY", "CHK", "PY",
];

/// Two-letter codes of the US states and DC, as they end a statement line.
const STATES: &[&str] = &[
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
    "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
    "WI", "WY", "DC",
];

/// First words of two-word city names (`SAN FRANCISCO CA`).
const CITY_FIRST_WORDS: &[&str] = &[
    "SAN", "LOS", "LAS", "NEW", "SANTA", "ST", "SAINT", "FORT", "FT", "SALT", "EL", "PALO",
    "MOUNTAIN",
];

/// The merchant's name without processor prefixes, store numbers and place; empty input
/// (or nothing left) gives the input trimmed.
pub fn normalize(raw: &str) -> String {
    let mut text = raw.trim();
    // A processor's prefix, once: "SQ *Blue Bottle", "TST* Shake Shack", "PAYPAL *ACME".
    for p in PROCESSORS {
        if let Some(rest) = strip_prefix_ci(text, p) {
            let rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix('*') {
                text = after.trim_start();
                break;
            }
        }
    }
    let mut words: Vec<&str> = text.split_whitespace().collect();
    // A store or terminal number ends the name: "#1234", "No. 12", "0162", "063015 SF**POOL**".
    if let Some(cut) = words.iter().enumerate().skip(1).find_map(|(i, w)| {
        let w = w.trim_start_matches('#');
        let digits = w.chars().filter(char::is_ascii_digit).count();
        let is_number = digits > 0 && w.chars().all(|c| c.is_ascii_digit() || c == '-');
        let numbered = (words[i].starts_with('#') && digits > 0) || (is_number && digits >= 3);
        numbered.then_some(i)
    }) {
        words.truncate(cut);
    }
    // An order or reference code after a star ends the name: "AMAZON MKTPL*2K4LL1".
    if let Some((i, at)) = words.iter().enumerate().find_map(|(i, w)| {
        let at = w.find('*')?;
        w[at + 1..]
            .chars()
            .any(|c| c.is_ascii_digit())
            .then_some((i, at))
    }) {
        let word = words[i];
        words.truncate(i + 1);
        words[i] = &word[..at];
        if words[i].is_empty() {
            words.pop();
        }
    }
    if words.len() >= 2 && words[words.len() - 1].eq_ignore_ascii_case("no.") {
        words.pop();
    }
    // A city and state at the end, in capitals: "… SEATTLE WA", "… SAN FRANCISCO CA".
    if words.len() >= 3 {
        let last = words[words.len() - 1];
        if STATES.contains(&last) && is_capitals(words[words.len() - 2]) {
            words.truncate(words.len() - 2);
            if words.len() >= 2 && CITY_FIRST_WORDS.contains(&words[words.len() - 1]) {
                words.pop();
            }
        }
    }
    // Trailing punctuation of what was cut: "ACME*", "Shop -".
    while let Some(last) = words.last() {
        let trimmed = last.trim_end_matches(['*', '-', ',', '.']);
        if trimmed.is_empty() {
            words.pop();
        } else {
            let n = words.len();
            words[n - 1] = trimmed;
            break;
        }
    }
    if words.is_empty() {
        return raw.trim().to_string();
    }
    let all_capitals = words
        .iter()
        .all(|w| is_capitals(w) || !w.chars().any(char::is_alphabetic));
    let letters: usize = words
        .iter()
        .map(|w| w.chars().filter(|c| c.is_alphabetic()).count())
        .sum();
    if all_capitals && letters > 4 {
        words
            .iter()
            .map(|w| {
                if w.chars().filter(|c| c.is_alphabetic()).count() <= 3 {
                    w.to_string()
                } else {
                    title_case(w)
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        words.join(" ")
    }
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Has letters, and every letter a capital.
fn is_capitals(word: &str) -> bool {
    word.chars().any(char::is_alphabetic)
        && word
            .chars()
            .filter(|c| c.is_alphabetic())
            .all(char::is_uppercase)
}

/// `STARBUCKS` → `Starbucks`, `MCDONALD'S` → `Mcdonald's`.
fn title_case(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut first = true;
    for c in word.chars() {
        if c.is_alphabetic() {
            if first {
                out.extend(c.to_uppercase());
                first = false;
            } else {
                out.extend(c.to_lowercase());
            }
        } else {
            out.push(c);
            // A new word after a hyphen or slash: "COCA-COLA" → "Coca-Cola".
            if matches!(c, '-' | '/') {
                first = true;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn statement_names_become_merchants() {
        for (raw, merchant) in [
            ("SQ *BLUE BOTTLE COFFEE", "Blue Bottle Coffee"),
            ("SQ*BLUE BOTTLE COFFEE", "Blue Bottle Coffee"),
            ("TST* SHAKE SHACK 1234", "Shake Shack"),
            ("PAYPAL *NETFLIX", "Netflix"),
            ("Starbucks Coffee #1234 SEATTLE WA", "Starbucks Coffee"),
            ("STARBUCKS 0162", "Starbucks"),
            ("Uber 063015 SF**POOL**", "Uber"),
            ("McDonald's #3322", "McDonald's"),
            ("WHOLEFDS MKT SAN FRANCISCO CA", "Wholefds MKT"),
            ("CVS PHARMACY #0123", "CVS Pharmacy"),
            ("COCA-COLA BOTTLING", "Coca-Cola Bottling"),
            ("AMAZON MKTPL*2K4LL1", "Amazon Mktpl"),
            ("AMZN Mktp US*2K4LL1", "AMZN Mktp US"),
        ] {
            assert_eq!(normalize(raw), merchant, "{raw}");
        }
    }

    #[test]
    fn names_already_clean_are_kept() {
        for name in [
            "Touchstone Climbing",
            "KFC",
            "IKEA",
            "SparkFun",
            "United Airlines",
            "AT&T",
            "7-Eleven",
            "Chase Credit Card Payment",
            "",
        ] {
            assert_eq!(normalize(name), name, "{name}");
        }
    }

    #[test]
    fn one_merchant_whatever_the_store() {
        let names = [
            "STARBUCKS #1234 SEATTLE WA",
            "STARBUCKS #987 PORTLAND OR",
            "Starbucks 0162",
        ];
        let normalized: Vec<String> = names.iter().map(|n| normalize(n)).collect();
        assert!(
            normalized.iter().all(|n| n == "Starbucks"),
            "{normalized:?}"
        );
    }
}
