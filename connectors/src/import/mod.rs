//! Importing bank and card exports into a manual account.
//!
//! - [`read`] (re-exported here): the file readers: CSV in the common US layouts (or
//!   `--columns`), OFX/QFX; amounts, dates and text as banks write them; all or nothing.
//! - [`source`]: a file as a pipeline [`Source`](finq_core::pipeline::Source): read whole,
//!   then stored in one PostgreSQL transaction, recognising rows already imported.

pub mod read;
pub mod source;

pub use read::*;
pub use source::{FileFormat, ImportError, ImportSource};
