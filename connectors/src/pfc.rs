//! Plaid's personal finance categories, read from Plaid's published taxonomy file
//! (`data/pfc-taxonomy-v2.csv`: `PFCv2 Primary,PFCv2 Detailed,,PFCv1 Primary,PFCv1 Detailed`,
//! with a free-text note on row 2).

use std::collections::BTreeSet;
use std::sync::OnceLock;

const TAXONOMY_CSV: &str = include_str!("../data/pfc-taxonomy-v2.csv");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PfcRow {
    pub v2_primary: String,
    pub v2_detailed: String,
    /// `None` for v2-only codes.
    pub v1: Option<(String, String)>,
}

pub fn taxonomy() -> &'static [PfcRow] {
    static ROWS: OnceLock<Vec<PfcRow>> = OnceLock::new();
    ROWS.get_or_init(|| parse(TAXONOMY_CSV))
}

fn parse(csv: &str) -> Vec<PfcRow> {
    csv.lines()
        .skip(1) // header
        .filter_map(|line| {
            let cols: Vec<&str> = line.trim_end_matches('\r').split(',').collect();
            if cols.len() < 5 || cols[0].is_empty() || cols[0].contains(' ') {
                return None; // the note row, blank lines
            }
            let v1 = (!cols[3].is_empty() && !cols[3].contains(' '))
                .then(|| (cols[3].to_string(), cols[4].to_string()));
            Some(PfcRow {
                v2_primary: cols[0].to_string(),
                v2_detailed: cols[1].to_string(),
                v1,
            })
        })
        .collect()
}

pub fn find_v2(detailed: &str) -> Option<&'static PfcRow> {
    taxonomy().iter().find(|r| r.v2_detailed == detailed)
}

pub fn v2_primaries() -> BTreeSet<&'static str> {
    taxonomy().iter().map(|r| r.v2_primary.as_str()).collect()
}

pub fn v1_primaries() -> BTreeSet<&'static str> {
    taxonomy()
        .iter()
        .filter_map(|r| r.v1.as_ref().map(|(p, _)| p.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taxonomy_matches_plaids_file() {
        assert_eq!(taxonomy().len(), 123);
        assert_eq!(v2_primaries().len(), 18);
        assert_eq!(v1_primaries().len(), 16);
        let salary = find_v2("INCOME_SALARY").unwrap();
        assert_eq!(
            salary.v1,
            Some(("INCOME".to_string(), "INCOME_WAGES".to_string()))
        );
        assert!(find_v2("LOAN_DISBURSEMENTS_BNPL").unwrap().v1.is_none());
    }
}
