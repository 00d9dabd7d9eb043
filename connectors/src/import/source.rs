//! A bank or card export as a pipeline source (`finq import FILE --account NAME`, or an
//! `[[sources]] type = "import"` table that imports the same file on every run).
//!
//! The file is read whole before anything is stored: one unreadable row refuses the file,
//! naming the line and column. Its rows then go into the manual account in one
//! transaction, each with a key that recognises it later: the bank's `FITID` for OFX/QFX;
//! date, amount, description and the row's occurrence among identical rows of the file for
//! CSV. So importing a file again adds nothing, an overlapping later export adds only its
//! new rows, and two identical purchases on one day stay two transactions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use finq_core::pipeline::{BoxError, Context, Counts, PipelineReport, Source, StepKind};
use sha2::{Digest, Sha256};

use super::read::{ReadError, read_csv, read_ofx};
use crate::manual::{self, ImportFile, ImportRow, ManualError};

/// The kinds of file an import reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    Csv,
    /// OFX 1 (SGML), OFX 2 (XML) and Quicken's QFX.
    Ofx,
}

impl FromStr for FileFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(FileFormat::Csv),
            "ofx" | "qfx" => Ok(FileFormat::Ofx),
            other => Err(format!("unknown file format {other:?}; csv, ofx or qfx")),
        }
    }
}

impl FileFormat {
    /// By the file's extension, else by its first bytes.
    pub fn detect(path: &Path, bytes: &[u8]) -> FileFormat {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("ofx" | "qfx") => FileFormat::Ofx,
            Some("csv") => FileFormat::Csv,
            _ => {
                let head = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]).to_uppercase();
                if head.contains("OFXHEADER") || head.contains("<OFX>") {
                    FileFormat::Ofx
                } else {
                    FileFormat::Csv
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {error}; nothing of it was imported", .path.display())]
    Unreadable { path: PathBuf, error: ReadError },
    #[error("{}: no transactions in it; nothing was imported", .path.display())]
    Empty { path: PathBuf },
    #[error(transparent)]
    Store(#[from] ManualError),
    #[error("database error importing: {0}")]
    Db(#[from] sqlx::Error),
}

/// One file into one manual account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportSource {
    pub path: PathBuf,
    /// The manual account's name (`finq accounts add` creates one).
    pub account: String,
    /// By the extension or the content when not given.
    #[serde(default)]
    pub format: Option<FileFormat>,
    /// CSV only: where the date, amount and description are (see `finq import --help`).
    #[serde(default)]
    pub columns: Option<String>,
    /// CSV only: the dates' form, in strftime syntax (e.g. `%d/%m/%Y`).
    #[serde(default)]
    pub date_format: Option<String>,
}

/// What one import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub format: String,
    pub read: u64,
    pub added: u64,
}

impl ImportSource {
    fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }

    /// Read the file whole, then store what is new.
    pub async fn import(&self, pool: &sqlx::PgPool) -> Result<Imported, ImportError> {
        let bytes = std::fs::read(&self.path).map_err(|source| ImportError::Io {
            path: self.path.clone(),
            source,
        })?;
        let (format, rows) = self.read(&bytes)?;
        if rows.is_empty() {
            return Err(ImportError::Empty {
                path: self.path.clone(),
            });
        }
        let file = ImportFile {
            name: self.file_name(),
            sha256: format!("{:x}", Sha256::digest(&bytes)),
            format: format.clone(),
        };
        let mut tx = pool.begin().await?;
        let account = manual::find(&mut tx, &self.account).await?;
        let added = manual::store_import(&mut tx, &account, &file, &rows).await?;
        tx.commit().await?;
        Ok(Imported {
            format,
            read: rows.len() as u64,
            added,
        })
    }

    /// The file's rows with their keys, and its format's name (`csv (Chase)`, `ofx`).
    fn read(&self, bytes: &[u8]) -> Result<(String, Vec<ImportRow>), ImportError> {
        let unreadable = |error| ImportError::Unreadable {
            path: self.path.clone(),
            error,
        };
        let format = self
            .format
            .unwrap_or_else(|| FileFormat::detect(&self.path, bytes));
        match format {
            FileFormat::Csv => {
                let (layout, rows) =
                    read_csv(bytes, self.columns.as_deref(), self.date_format.as_deref())
                        .map_err(unreadable)?;
                let rows = rows
                    .into_iter()
                    .map(|r| ImportRow {
                        key: format!(
                            "row:{}|{:.2}|{}|{}",
                            r.date, r.amount, r.description, r.occurrence
                        ),
                        date: r.date,
                        amount: r.amount,
                        description: r.description,
                    })
                    .collect();
                Ok((format!("csv ({})", layout.name), rows))
            }
            FileFormat::Ofx => {
                // A FITID is the bank's id for one transaction; should a bank repeat one in a
                // file, the repeats are counted, as identical CSV rows are.
                let mut seen: HashMap<String, u32> = HashMap::new();
                let rows = read_ofx(bytes)
                    .map_err(unreadable)?
                    .into_iter()
                    .map(|r| {
                        let n = seen.entry(r.fitid.clone()).or_insert(0);
                        *n += 1;
                        let key = match *n {
                            1 => format!("fitid:{}", r.fitid),
                            n => format!("fitid:{}#{n}", r.fitid),
                        };
                        ImportRow {
                            key,
                            date: r.date,
                            amount: r.amount,
                            description: r.description,
                        }
                    })
                    .collect();
                Ok(("ofx".to_string(), rows))
            }
        }
    }
}

impl Source for ImportSource {
    fn name(&self) -> String {
        format!("import {}", self.file_name())
    }

    async fn pull(&self, ctx: &Context, report: &mut PipelineReport) -> Result<(), BoxError> {
        // A run for one Plaid item (a webhook's) is not this file's business.
        if ctx.only.is_some() {
            return Ok(());
        }
        let name = self.name();
        ctx.progress
            .update(&name, &format!("importing {}", self.file_name()));
        let step = async {
            let done = self.import(&ctx.pool).await?;
            Ok::<Counts, BoxError>(vec![
                ("read", done.read),
                ("added", done.added),
                ("already_there", done.read - done.added),
            ])
        };
        report.record(StepKind::Source, name.clone(), step).await;
        ctx.progress.finish(&name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &str) -> ImportSource {
        ImportSource {
            path: path.into(),
            account: "Visa".into(),
            format: None,
            columns: None,
            date_format: None,
        }
    }

    #[test]
    fn formats_by_extension_then_content() {
        assert_eq!(FileFormat::detect(Path::new("a.QFX"), b""), FileFormat::Ofx);
        assert_eq!(
            FileFormat::detect(Path::new("a.csv"), b"<OFX>"),
            FileFormat::Csv
        );
        assert_eq!(
            FileFormat::detect(Path::new("download"), b"OFXHEADER:100\n"),
            FileFormat::Ofx
        );
        assert_eq!(
            FileFormat::detect(Path::new("download"), b"Date,Amount"),
            FileFormat::Csv
        );
        assert_eq!("QFX".parse(), Ok(FileFormat::Ofx));
        assert!("xls".parse::<FileFormat>().is_err());
    }

    #[test]
    fn csv_keys_count_identical_rows_and_ignore_amount_spelling() {
        let file = "Date,Description,Amount\n01/05/2026,COFFEE,-3.5\n01/05/2026,COFFEE,-3.50\n01/06/2026,COFFEE,-3.50\n";
        let (format, rows) = source("x.csv").read(file.as_bytes()).unwrap();
        assert_eq!(format, "csv (generic)");
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "row:2026-01-05|-3.50|COFFEE|1",
                "row:2026-01-05|-3.50|COFFEE|2",
                "row:2026-01-06|-3.50|COFFEE|1"
            ]
        );
    }

    #[test]
    fn ofx_keys_are_fitids_repeats_counted() {
        let tx = |fitid: &str| {
            format!("<STMTTRN><DTPOSTED>20260105<TRNAMT>-3.50<FITID>{fitid}<NAME>COFFEE</STMTTRN>")
        };
        let file = format!("<OFX>{}{}{}</OFX>", tx("A1"), tx("B2"), tx("A1"));
        let (_, rows) = source("x.ofx").read(file.as_bytes()).unwrap();
        let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["fitid:A1", "fitid:B2", "fitid:A1#2"]);
    }

    #[test]
    fn a_bad_row_names_the_file_line_and_column() {
        let file = "Date,Description,Amount\n01/05/2026,COFFEE,-3.50\n01/06/2026,TEA,abc\n";
        let err = source("/tmp/visa.csv").read(file.as_bytes()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("/tmp/visa.csv: line 3, column Amount: expected"),
            "{text}"
        );
        assert!(text.ends_with("nothing of it was imported"), "{text}");
    }
}
