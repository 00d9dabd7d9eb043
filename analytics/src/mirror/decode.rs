//! PostgreSQL `COPY … TO STDOUT (FORMAT binary)` rows → Arrow record batches.
//!
//! Binary COPY costs PostgreSQL the least to produce (no number or date is turned into
//! text) and us the least to read: integers in network byte order, dates as days and
//! timestamps as microseconds since 2000-01-01, text as UTF-8 bytes. The mirror's queries
//! cast every column to one of the wire types of [`Kind`] so the decoder knows each one.

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
    /// DECIMAL(14,2); PostgreSQL sends its binary `numeric` (decoded here: asking
    /// PostgreSQL to convert to cents costs it more than the rest of the row).
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
            Kind::Text => format!("({expr})::text"),
            Kind::Bool => format!("({expr})::boolean"),
            Kind::Int => format!("({expr})::bigint"),
            Kind::Date => format!("({expr})::date"),
            Kind::Money => format!("({expr})::numeric"),
            Kind::Timestamp => format!("({expr})::timestamptz"),
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

    /// Append one field: `None` is SQL NULL, else the value's binary form.
    fn push(&mut self, field: Option<&[u8]>) -> Result<(), String> {
        let Some(field) = field else {
            match self {
                Builder::Text(b) => b.append_null(),
                Builder::Date(b) => b.append_null(),
                Builder::Money(b) => b.append_null(),
                Builder::Bool(b) => b.append_null(),
                Builder::Int(b) => b.append_null(),
                Builder::Timestamp(b) => b.append_null(),
            }
            return Ok(());
        };
        match self {
            Builder::Text(b) => {
                b.append_value(std::str::from_utf8(field).map_err(|e| e.to_string())?)
            }
            Builder::Date(b) => b.append_value(
                i32::from_be_bytes(fixed(field)?)
                    .checked_add(PG_EPOCH_DAYS)
                    .ok_or("date out of range")?,
            ),
            Builder::Money(b) => b.append_value(numeric_cents(field)?),
            Builder::Bool(b) => b.append_value(fixed::<1>(field)?[0] != 0),
            Builder::Int(b) => b.append_value(i64::from_be_bytes(fixed(field)?)),
            Builder::Timestamp(b) => b.append_value(
                i64::from_be_bytes(fixed(field)?)
                    .checked_add(PG_EPOCH_MICROS)
                    .ok_or("timestamp out of range")?,
            ),
        }
        Ok(())
    }

    /// The array so far; the builder starts again with room for `rows` more rows (and as
    /// many bytes of text as this batch had), so that a batch is not built by regrowing
    /// its buffers from nothing.
    fn finish(&mut self, rows: usize) -> Result<ArrayRef, String> {
        use std::mem::replace;
        Ok(match self {
            Builder::Text(b) => {
                let bytes = b.values_slice().len();
                Arc::new(replace(b, StringBuilder::with_capacity(rows, bytes)).finish())
            }
            Builder::Date(b) => Arc::new(replace(b, Date32Builder::with_capacity(rows)).finish()),
            Builder::Money(b) => Arc::new(
                replace(b, Decimal128Builder::with_capacity(rows))
                    .finish()
                    .with_precision_and_scale(14, 2)
                    .map_err(|e| e.to_string())?,
            ),
            Builder::Bool(b) => Arc::new(replace(b, BooleanBuilder::with_capacity(rows)).finish()),
            Builder::Int(b) => Arc::new(replace(b, Int64Builder::with_capacity(rows)).finish()),
            Builder::Timestamp(b) => {
                Arc::new(replace(b, TimestampMicrosecondBuilder::with_capacity(rows)).finish())
            }
        })
    }
}

/// PostgreSQL's epoch (2000-01-01) in days and microseconds after Unix's.
const PG_EPOCH_DAYS: i32 = 10_957;
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A binary PostgreSQL `numeric` in cents: a header of four 16-bit words (digit count,
/// weight of the first digit as a power of 10,000, sign, display scale) and base-10,000
/// digits. Values with a fraction of a cent are refused rather than rounded.
fn numeric_cents(field: &[u8]) -> Result<i128, String> {
    let word = |i: usize| -> Result<u16, String> {
        field
            .get(2 * i..2 * i + 2)
            .map(|w| u16::from_be_bytes([w[0], w[1]]))
            .ok_or_else(|| "a truncated numeric".to_string())
    };
    let ndigits = word(0)? as usize;
    let weight = word(1)? as i16 as i32;
    let sign = word(2)?;
    if field.len() != 8 + 2 * ndigits {
        return Err(format!(
            "a numeric of {} bytes for {ndigits} digits",
            field.len()
        ));
    }
    let negative = match sign {
        0x0000 => false,
        0x4000 => true,
        _ => return Err("a numeric that is NaN or infinite".into()),
    };
    // The digits as an integer, then scaled: the last digit counts 10,000^(weight-ndigits+1),
    // and a cent is 10,000^-1 * 100.
    let mut acc: i128 = 0;
    for i in 0..ndigits {
        let d = word(4 + i)?;
        if d >= 10_000 {
            return Err(format!("a numeric digit {d} out of range"));
        }
        acc = acc
            .checked_mul(10_000)
            .and_then(|a| a.checked_add(d as i128))
            .ok_or("a numeric too large")?;
    }
    let exp = weight - ndigits as i32 + 1; // power of 10,000 of the last digit
    let cents = if exp >= 0 {
        (0..exp)
            .try_fold(acc, |a, _| a.checked_mul(10_000))
            .and_then(|a| a.checked_mul(100))
    } else if exp == -1 {
        (acc % 100 == 0).then_some(acc / 100)
    } else {
        (acc == 0).then_some(0)
    }
    .ok_or("an amount with a fraction of a cent or out of range")?;
    Ok(if negative { -cents } else { cents })
}

fn fixed<const N: usize>(field: &[u8]) -> Result<[u8; N], String> {
    field
        .try_into()
        .map_err(|_| format!("a {}-byte value where {N} bytes were expected", field.len()))
}

const MAX_COLUMNS: usize = 32;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Decodes one binary COPY stream, chunk by chunk, into batches of at most `batch_rows`
/// rows.
pub struct CopyDecoder {
    schema: SchemaRef,
    builders: Vec<Builder>,
    rows: usize,
    batch_rows: usize,
    /// Bytes received and not yet decoded (a row whose end has not arrived yet).
    buf: Vec<u8>,
    header_seen: bool,
    ended: bool,
}

impl CopyDecoder {
    pub fn new(columns: &[(&'static str, Kind)], batch_rows: usize) -> Self {
        assert!(
            columns.len() <= MAX_COLUMNS,
            "too many columns for the decoder"
        );
        CopyDecoder {
            schema: schema_of(columns),
            builders: columns.iter().map(|c| Builder::new(c.1)).collect(),
            rows: 0,
            batch_rows,
            buf: Vec::new(),
            header_seen: false,
            ended: false,
        }
    }

    /// Feed a chunk of the stream; full batches are handed to `emit`.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        emit: &mut dyn FnMut(RecordBatch) -> Result<(), String>,
    ) -> Result<(), String> {
        if self.buf.is_empty() && self.header_seen {
            // The usual case (PostgreSQL sends a row per message): decode in place and
            // keep only what is left of a row cut by the chunk's end.
            let used = self.decode(chunk, emit)?;
            self.buf.extend_from_slice(&chunk[used..]);
            return Ok(());
        }
        self.buf.extend_from_slice(chunk);
        let buf = std::mem::take(&mut self.buf);
        let used = self.decode(&buf, emit);
        self.buf = buf;
        self.buf.drain(..used?);
        Ok(())
    }

    /// Decode the whole rows at the start of `bytes`: how many bytes they took.
    fn decode(
        &mut self,
        bytes: &[u8],
        emit: &mut dyn FnMut(RecordBatch) -> Result<(), String>,
    ) -> Result<usize, String> {
        let mut pos = 0;
        if !self.header_seen {
            if bytes.len() < SIGNATURE.len() + 8 {
                return Ok(0);
            }
            if &bytes[..SIGNATURE.len()] != SIGNATURE {
                return Err("not a binary COPY stream".into());
            }
            let ext = u32::from_be_bytes(fixed(&bytes[15..19])?) as usize;
            if bytes.len() < 19 + ext {
                return Ok(0);
            }
            pos = 19 + ext;
            self.header_seen = true;
        }
        while let Some(next) = self.row(&bytes[pos..])? {
            pos += next;
            if self.ended {
                break;
            }
            if self.rows >= self.batch_rows {
                let batch = self.batch()?;
                emit(batch)?;
            }
        }
        Ok(pos)
    }

    /// The stream has ended: the last, partial batch.
    pub fn finish(
        mut self,
        emit: &mut dyn FnMut(RecordBatch) -> Result<(), String>,
    ) -> Result<(), String> {
        if !self.ended || !self.buf.is_empty() {
            return Err("the COPY stream ended in the middle of a row".into());
        }
        if self.rows > 0 {
            let batch = self.batch()?;
            emit(batch)?;
        }
        Ok(())
    }

    /// Decode the row at the start of `buf` if all of it is there: its length.
    fn row(&mut self, buf: &[u8]) -> Result<Option<usize>, String> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let fields = i16::from_be_bytes([buf[0], buf[1]]);
        if fields == -1 {
            self.ended = true;
            return Ok(Some(2));
        }
        if self.ended {
            return Err("data after the end of the COPY stream".into());
        }
        if fields as usize != self.builders.len() {
            return Err(format!(
                "a row has {fields} fields, {} expected",
                self.builders.len()
            ));
        }
        // First check that the whole row has arrived, then decode it.
        let mut at = 2;
        let mut spans = [(0usize, -1i32); MAX_COLUMNS];
        let spans = &mut spans[..self.builders.len()];
        for span in spans.iter_mut() {
            if buf.len() < at + 4 {
                return Ok(None);
            }
            let len = i32::from_be_bytes(fixed(&buf[at..at + 4])?);
            at += 4;
            *span = (at, len);
            if len > 0 {
                at += len as usize;
            }
        }
        if buf.len() < at {
            return Ok(None);
        }
        for (i, (b, &(start, len))) in self.builders.iter_mut().zip(spans.iter()).enumerate() {
            let field = (len >= 0).then(|| &buf[start..start + len as usize]);
            b.push(field)
                .map_err(|e| format!("column {}: {e}", self.schema.field(i).name()))?;
        }
        self.rows += 1;
        Ok(Some(at))
    }

    fn batch(&mut self) -> Result<RecordBatch, String> {
        let rows = self.batch_rows;
        let arrays = self
            .builders
            .iter_mut()
            .map(|b| b.finish(rows))
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
    use duckdb::arrow::datatypes::{
        Date32Type, Decimal128Type, Int64Type, TimestampMicrosecondType,
    };

    /// A binary COPY stream of `rows` (each field `None` for NULL).
    fn stream(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        for row in rows {
            out.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for f in row {
                match f {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(v) => {
                        out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                        out.extend_from_slice(v);
                    }
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    const COLS: [(&str, Kind); 6] = [
        ("t", Kind::Text),
        ("d", Kind::Date),
        ("m", Kind::Money),
        ("b", Kind::Bool),
        ("i", Kind::Int),
        ("ts", Kind::Timestamp),
    ];

    fn row(
        t: &str,
        days_since_2000: i32,
        cents: i64,
        b: bool,
        i: i64,
        us: i64,
    ) -> Vec<Option<Vec<u8>>> {
        vec![
            Some(t.as_bytes().to_vec()),
            Some(days_since_2000.to_be_bytes().to_vec()),
            Some(pg_numeric(cents)),
            Some(vec![b as u8]),
            Some(i.to_be_bytes().to_vec()),
            Some(us.to_be_bytes().to_vec()),
        ]
    }

    /// PostgreSQL's binary `numeric` for an amount in cents, trailing zero digits stripped
    /// as PostgreSQL does.
    fn pg_numeric(cents: i64) -> Vec<u8> {
        let v = cents.unsigned_abs();
        let (mut int, frac) = (v / 100, v % 100);
        let mut groups = Vec::new();
        while int > 0 {
            groups.insert(0, (int % 10_000) as u16);
            int /= 10_000;
        }
        let weight = groups.len() as i16 - 1;
        groups.push((frac * 100) as u16);
        while groups.last() == Some(&0) {
            groups.pop();
        }
        let weight = if groups.is_empty() { 0 } else { weight };
        let mut out = Vec::new();
        out.extend_from_slice(&(groups.len() as u16).to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&(if cents < 0 { 0x4000u16 } else { 0 }).to_be_bytes());
        out.extend_from_slice(&2u16.to_be_bytes());
        for g in groups {
            out.extend_from_slice(&g.to_be_bytes());
        }
        out
    }

    #[test]
    fn numerics_in_cents() {
        for cents in [
            0,
            1,
            -5,
            99,
            100,
            -1234,
            1_000_000,
            12_345_678_901,
            -9_999_999_999_999,
        ] {
            assert_eq!(
                numeric_cents(&pg_numeric(cents)),
                Ok(cents as i128),
                "{cents}"
            );
        }
        let words = |w: &[u16]| w.iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
        // Trailing zero digits kept (PostgreSQL strips them; the decoder must not care):
        // 12.00 as the digits [12, 0000], weight 0.
        assert_eq!(numeric_cents(&words(&[2, 0, 0, 2, 12, 0])), Ok(1200));
        // Fractions of a cent, NaN, and truncated values are refused.
        assert!(numeric_cents(&words(&[1, 0xffff, 0, 4, 1234])).is_err()); // 0.1234
        assert!(numeric_cents(&words(&[0, 0, 0xc000, 0])).is_err()); // NaN
        assert!(numeric_cents(&words(&[2, 0, 0, 2, 12])).is_err()); // a digit missing
        assert!(numeric_cents(&words(&[1, 0, 0, 2, 10_000])).is_err()); // not base 10,000
    }

    fn decode_in_chunks(bytes: &[u8], chunk: usize, batch_rows: usize) -> Vec<RecordBatch> {
        let mut d = CopyDecoder::new(&COLS, batch_rows);
        let mut out = Vec::new();
        for c in bytes.chunks(chunk) {
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
    fn rows_split_across_chunks_of_every_size() {
        let bytes = stream(&[
            row("café \\ \t\n", 0, -1234, true, 7, 0),
            vec![None; 6],
            row("second", -1, 5, false, -9, 1),
        ]);
        for chunk in [1, 2, 3, 7, 19, 1000] {
            let batches = decode_in_chunks(&bytes, chunk, 2);
            assert_eq!(batches.len(), 2, "chunk {chunk}");
            assert_eq!(batches[0].num_rows(), 2);
            let t = batches[0].column(0).as_string::<i32>();
            assert_eq!(t.value(0), "café \\ \t\n");
            assert!(t.is_null(1));
            // 2000-01-01 is day 10957 of Unix's epoch.
            assert_eq!(
                batches[0].column(1).as_primitive::<Date32Type>().value(0),
                10_957
            );
            let m = batches[0].column(2).as_primitive::<Decimal128Type>();
            assert_eq!(m.value_as_string(0), "-12.34");
            assert!(batches[0].column(3).as_boolean().value(0));
            assert_eq!(
                batches[0]
                    .column(5)
                    .as_primitive::<TimestampMicrosecondType>()
                    .value(0),
                946_684_800_000_000
            );
            assert_eq!(batches[1].column(0).as_string::<i32>().value(0), "second");
            assert_eq!(
                batches[1].column(1).as_primitive::<Date32Type>().value(0),
                10_956
            );
            assert!(!batches[1].column(3).as_boolean().value(0));
            assert_eq!(
                batches[1].column(4).as_primitive::<Int64Type>().value(0),
                -9
            );
        }
    }

    #[test]
    fn malformed_streams_are_errors_not_garbage() {
        let good = stream(&[row("a", 0, 1, true, 1, 1)]);
        let mut wrong_count = good.clone();
        wrong_count[19] = 0;
        wrong_count[20] = 5;
        let mut bad_utf8 = good.clone();
        bad_utf8[25] = 0xff;
        let mut bad_width = stream(&[row("a", 0, 1, true, 1, 1)]);
        // Make the date field 3 bytes long.
        let date_len_at = 19 + 2 + 4 + 1;
        bad_width[date_len_at..date_len_at + 4].copy_from_slice(&3i32.to_be_bytes());
        for (what, bytes) in [
            (
                "signature",
                b"PGCOPY\n\xff\r\n\x01\0\0\0\0\0\0\0\0".to_vec(),
            ),
            ("field count", wrong_count),
            ("utf-8", bad_utf8),
            ("width", bad_width),
        ] {
            let mut d = CopyDecoder::new(&COLS, 10);
            let fed = d.feed(&bytes, &mut |_| Ok(()));
            assert!(fed.is_err() || d.finish(&mut |_| Ok(())).is_err(), "{what}");
        }
        // A stream cut short.
        let mut d = CopyDecoder::new(&COLS, 10);
        d.feed(&good[..good.len() - 5], &mut |_| Ok(())).unwrap();
        assert!(d.finish(&mut |_| Ok(())).is_err());
    }
}
