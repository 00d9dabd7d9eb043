//! PostgreSQL `COPY … TO STDOUT` text rows → Arrow record batches.
//!
//! The mirror's queries hand every non-text value over as an integer (days since 1970 for
//! dates, cents for money, microseconds for timestamps), so decoding is integer parsing and
//! text unescaping, with no per-value allocation beyond the Arrow buffers.

use std::sync::Arc;

use duckdb::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use duckdb::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use duckdb::arrow::record_batch::RecordBatch;

/// A mirrored column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// DATE; PostgreSQL sends days since 1970-01-01.
    Date,
    /// DECIMAL(14,2); PostgreSQL sends cents.
    Money,
    Bool,
    Int,
    /// TIMESTAMP in UTC; PostgreSQL sends microseconds since the epoch.
    Timestamp,
}

impl Kind {
    pub fn arrow(self) -> DataType {
        match self {
            Kind::Text => DataType::Utf8,
            Kind::Date => DataType::Date32,
            Kind::Money => DataType::Decimal128(14, 2),
            Kind::Bool => DataType::Boolean,
            Kind::Int => DataType::Int64,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        }
    }

    pub fn duck(self) -> &'static str {
        match self {
            Kind::Text => "VARCHAR",
            Kind::Date => "DATE",
            Kind::Money => "DECIMAL(14,2)",
            Kind::Bool => "BOOLEAN",
            Kind::Int => "BIGINT",
            Kind::Timestamp => "TIMESTAMP",
        }
    }

    /// The PostgreSQL expression that sends `expr` in this kind's wire form.
    pub fn pg(self, expr: &str) -> String {
        match self {
            Kind::Text | Kind::Bool | Kind::Int => expr.to_string(),
            Kind::Date => format!("(({expr}) - DATE '1970-01-01')"),
            Kind::Money => format!("(({expr}) * 100)::bigint"),
            Kind::Timestamp => format!("(extract(epoch FROM ({expr})) * 1000000)::bigint"),
        }
    }
}

enum Builder {
    Text(StringBuilder),
    Date(Date32Builder),
    Money(Decimal128Builder),
    Bool(BooleanBuilder),
    Int(Int64Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl Builder {
    fn new(kind: Kind) -> Self {
        match kind {
            Kind::Text => Builder::Text(StringBuilder::new()),
            Kind::Date => Builder::Date(Date32Builder::new()),
            Kind::Money => Builder::Money(Decimal128Builder::new()),
            Kind::Bool => Builder::Bool(BooleanBuilder::new()),
            Kind::Int => Builder::Int(Int64Builder::new()),
            Kind::Timestamp => Builder::Timestamp(TimestampMicrosecondBuilder::new()),
        }
    }

    fn push(&mut self, field: &[u8], scratch: &mut String) -> Result<(), String> {
        if field == b"\\N" {
            match self {
                Builder::Text(b) => b.append_null(),
                Builder::Date(b) => b.append_null(),
                Builder::Money(b) => b.append_null(),
                Builder::Bool(b) => b.append_null(),
                Builder::Int(b) => b.append_null(),
                Builder::Timestamp(b) => b.append_null(),
            }
            return Ok(());
        }
        match self {
            Builder::Text(b) => {
                if field.contains(&b'\\') {
                    unescape(field, scratch)?;
                    b.append_value(&*scratch);
                } else {
                    b.append_value(std::str::from_utf8(field).map_err(|e| e.to_string())?);
                }
            }
            Builder::Date(b) => b.append_value(
                i32::try_from(int(field)?).map_err(|_| "date out of range".to_string())?,
            ),
            Builder::Money(b) => b.append_value(int(field)? as i128),
            Builder::Bool(b) => b.append_value(match field {
                b"t" => true,
                b"f" => false,
                other => return Err(format!("not a boolean: {}", String::from_utf8_lossy(other))),
            }),
            Builder::Int(b) => b.append_value(int(field)?),
            Builder::Timestamp(b) => b.append_value(int(field)?),
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<ArrayRef, String> {
        Ok(match self {
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Money(b) => Arc::new(
                b.finish()
                    .with_precision_and_scale(14, 2)
                    .map_err(|e| e.to_string())?,
            ),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
        })
    }
}

fn int(field: &[u8]) -> Result<i64, String> {
    let (neg, digits) = match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, field),
    };
    if digits.is_empty() || digits.len() > 18 {
        return Err(format!(
            "not an integer: {}",
            String::from_utf8_lossy(field)
        ));
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(format!(
                "not an integer: {}",
                String::from_utf8_lossy(field)
            ));
        }
        v = v * 10 + (d - b'0') as i64;
    }
    Ok(if neg { -v } else { v })
}

/// Undo COPY text escaping (`\\`, `\t`, `\n`, `\r`, `\b`, `\f`, `\v`; COPY TO emits no
/// octal or hex escapes).
fn unescape(field: &[u8], out: &mut String) -> Result<(), String> {
    let mut bytes = Vec::with_capacity(field.len());
    let mut it = field.iter();
    while let Some(&c) = it.next() {
        if c != b'\\' {
            bytes.push(c);
            continue;
        }
        match it.next() {
            Some(b't') => bytes.push(b'\t'),
            Some(b'n') => bytes.push(b'\n'),
            Some(b'r') => bytes.push(b'\r'),
            Some(b'b') => bytes.push(8),
            Some(b'f') => bytes.push(12),
            Some(b'v') => bytes.push(11),
            Some(&other) => bytes.push(other),
            None => return Err("a field ends in a lone backslash".into()),
        }
    }
    out.clear();
    out.push_str(std::str::from_utf8(&bytes).map_err(|e| e.to_string())?);
    Ok(())
}

/// Decodes one COPY stream, chunk by chunk, into batches of at most `batch_rows` rows.
pub struct CopyDecoder {
    schema: SchemaRef,
    kinds: Vec<Kind>,
    builders: Vec<Builder>,
    rows: usize,
    batch_rows: usize,
    /// The start of a row whose end has not arrived yet.
    carry: Vec<u8>,
    scratch: String,
}

impl CopyDecoder {
    pub fn new(columns: &[(&'static str, Kind)], batch_rows: usize) -> Self {
        CopyDecoder {
            schema: schema_of(columns),
            kinds: columns.iter().map(|c| c.1).collect(),
            builders: columns.iter().map(|c| Builder::new(c.1)).collect(),
            rows: 0,
            batch_rows,
            carry: Vec::new(),
            scratch: String::new(),
        }
    }

    /// Feed a chunk of the stream; full batches are handed to `emit`.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        emit: &mut dyn FnMut(RecordBatch) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut rest = chunk;
        if !self.carry.is_empty() {
            match rest.iter().position(|&b| b == b'\n') {
                None => {
                    self.carry.extend_from_slice(rest);
                    return Ok(());
                }
                Some(end) => {
                    let mut line = std::mem::take(&mut self.carry);
                    line.extend_from_slice(&rest[..end]);
                    self.row(&line)?;
                    rest = &rest[end + 1..];
                    self.maybe_emit(emit)?;
                }
            }
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.row(&rest[..end])?;
            rest = &rest[end + 1..];
            self.maybe_emit(emit)?;
        }
        self.carry.extend_from_slice(rest);
        Ok(())
    }

    /// The stream has ended: the last, partial batch.
    pub fn finish(
        mut self,
        emit: &mut dyn FnMut(RecordBatch) -> Result<(), String>,
    ) -> Result<(), String> {
        if !self.carry.is_empty() {
            return Err("the COPY stream ended in the middle of a row".into());
        }
        if self.rows > 0 {
            let batch = self.batch()?;
            emit(batch)?;
        }
        Ok(())
    }

    fn maybe_emit(
        &mut self,
        emit: &mut dyn FnMut(RecordBatch) -> Result<(), String>,
    ) -> Result<(), String> {
        if self.rows >= self.batch_rows {
            let batch = self.batch()?;
            emit(batch)?;
        }
        Ok(())
    }

    fn row(&mut self, line: &[u8]) -> Result<(), String> {
        let mut fields = line.split(|&b| b == b'\t');
        for (i, b) in self.builders.iter_mut().enumerate() {
            let field = fields
                .next()
                .ok_or_else(|| format!("a row has {i} fields, {} expected", self.kinds.len()))?;
            b.push(field, &mut self.scratch)
                .map_err(|e| format!("column {}: {e}", self.schema.field(i).name()))?;
        }
        if fields.next().is_some() {
            return Err(format!("a row has more than {} fields", self.kinds.len()));
        }
        self.rows += 1;
        Ok(())
    }

    fn batch(&mut self) -> Result<RecordBatch, String> {
        let arrays = self
            .builders
            .iter_mut()
            .map(Builder::finish)
            .collect::<Result<Vec<_>, _>>()?;
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| e.to_string())
    }
}

pub fn schema_of(columns: &[(&'static str, Kind)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, k)| Field::new(*n, k.arrow(), true))
            .collect::<Vec<_>>(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use duckdb::arrow::array::{Array, AsArray};
    use duckdb::arrow::datatypes::{Date32Type, Decimal128Type, Int64Type};

    fn decode(chunks: &[&[u8]], batch_rows: usize) -> Vec<RecordBatch> {
        let cols = [
            ("t", Kind::Text),
            ("d", Kind::Date),
            ("m", Kind::Money),
            ("b", Kind::Bool),
            ("i", Kind::Int),
        ];
        let mut d = CopyDecoder::new(&cols, batch_rows);
        let mut out = Vec::new();
        for c in chunks {
            d.feed(c, &mut |b| {
                out.push(b);
                Ok(())
            })
            .unwrap();
        }
        d.finish(&mut |b| {
            out.push(b);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn rows_split_across_chunks_and_escapes() {
        let batches = decode(
            &[
                b"caf\xc3\xa9 \\\\ \\t\\n\t20000\t-1234\tt\t7\n\\N\t\\N\t\\N\t\\N\t\\N\nsec",
                b"ond\t-1\t5\tf\t-9\n",
            ],
            2,
        );
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
        assert_eq!(batches[0].num_rows(), 2);
        let t = batches[0].column(0).as_string::<i32>();
        assert_eq!(t.value(0), "café \\ \t\n");
        assert!(t.is_null(1));
        let m = batches[0].column(2).as_primitive::<Decimal128Type>();
        assert_eq!(m.value(0), -1234);
        assert_eq!(m.value_as_string(0), "-12.34");
        let d = batches[1].column(1).as_primitive::<Date32Type>();
        assert_eq!(d.value(0), -1);
        assert_eq!(batches[1].column(0).as_string::<i32>().value(0), "second");
        assert!(!batches[1].column(3).as_boolean().value(0));
        assert_eq!(
            batches[1].column(4).as_primitive::<Int64Type>().value(0),
            -9
        );
    }

    #[test]
    fn malformed_rows_are_errors_not_garbage() {
        let cols = [("i", Kind::Int), ("b", Kind::Bool)];
        for bad in [&b"1\tx\n"[..], b"1\n", b"1\tt\t3\n", b"12a\tt\n"] {
            let mut d = CopyDecoder::new(&cols, 10);
            assert!(d.feed(bad, &mut |_| Ok(())).is_err(), "{bad:?}");
        }
        let mut d = CopyDecoder::new(&cols, 10);
        d.feed(b"1\tt", &mut |_| Ok(())).unwrap();
        assert!(d.finish(&mut |_| Ok(())).is_err());
    }
}
