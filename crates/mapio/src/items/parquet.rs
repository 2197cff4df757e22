//! `InputType: PARQUET`: each row is an item, read a row group at a time through
//! the `parquet` crate's record API (no arrow), so memory holds one row group's pages.
//!
//! Shapes: structs are objects, lists arrays, maps objects (keys as strings),
//! numbers numbers (NaN and infinities null), decimals numbers, strings strings,
//! binary base64, dates `YYYY-MM-DD`, times `HH:MM:SS.ffffff`, timestamps integer
//! epoch milliseconds, nulls null. Unconfirmed: AWS documents no value shapes for
//! PARQUET and no recording covers them (CONFORMANCE.md, "Distributed Map readers").

use super::{reader_failed, Emitter, ReadProgress, Stop};
use base64::Engine;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::{Field, Row};
use serde_json::{Map, Number, Value};
use std::fs::File;
use std::io::Read;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Reads every row of the Parquet object `body` (`size` bytes) into `em`. A stream (an
/// S3 body) is spooled to a temporary file first: Parquet's footer is at the end.
/// Progress goes a row group at a time (its compressed size), the rest at the end.
pub(super) fn read(
    body: shoal_buckets::Body,
    size: u64,
    place: &str,
    em: &mut Emitter,
    progress: &ReadProgress,
) -> Result<(), Stop> {
    let file = match body {
        shoal_buckets::Body::File(f) => f,
        shoal_buckets::Body::Stream(mut s) => spool(&mut s, place)?,
    };
    let reader = catch_unwind(|| SerializedFileReader::new(file))
        .map_err(|_| reader_failed(format!("{place} is not a readable Parquet file")))?
        .map_err(|e| reader_failed(format!("{place} is not a readable Parquet file: {e}")))?;
    let mut counted = 0u64;
    for group in 0..reader.num_row_groups() {
        let bad = |e: String| -> Stop {
            reader_failed(format!("{place} row group {group} is damaged: {e}")).into()
        };
        // The record API asserts on some damaged pages; a panic is damage too.
        let r = catch_unwind(AssertUnwindSafe(|| -> Result<(), Stop> {
            let rg = reader
                .get_row_group(group)
                .map_err(|e| bad(e.to_string()))?;
            let rows = rg.get_row_iter(None).map_err(|e| bad(e.to_string()))?;
            for row in rows {
                let row = row.map_err(|e| bad(e.to_string()))?;
                em.push(row_json(&row))?;
            }
            Ok(())
        }));
        let bytes = u64::try_from(reader.metadata().row_group(group).compressed_size())
            .unwrap_or(0)
            .min(size.saturating_sub(counted));
        counted += bytes;
        progress.add_read(bytes);
        match r {
            Ok(r) => r?,
            Err(p) => {
                let why = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "the reader gave up".into());
                return Err(bad(why));
            }
        }
    }
    // The footer and the page headers outside the row groups' sizes.
    progress.add_read(size.saturating_sub(counted));
    Ok(())
}

fn spool(s: &mut impl Read, place: &str) -> Result<File, Stop> {
    let mut f = tempfile::tempfile()
        .map_err(|e| reader_failed(format!("reading {place}: a temporary file: {e}")))?;
    std::io::copy(s, &mut f).map_err(|e| reader_failed(format!("reading {place}: {e}")))?;
    Ok(f)
}

fn row_json(row: &Row) -> Value {
    Value::Object(
        row.get_column_iter()
            .map(|(name, f)| (name.clone(), field_json(f)))
            .collect(),
    )
}

fn float(v: f64) -> Value {
    Number::from_f64(v).map_or(Value::Null, Value::Number)
}

fn field_json(f: &Field) -> Value {
    match f {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(n) => (*n).into(),
        Field::Short(n) => (*n).into(),
        Field::Int(n) => (*n).into(),
        Field::Long(n) => (*n).into(),
        Field::UByte(n) => (*n).into(),
        Field::UShort(n) => (*n).into(),
        Field::UInt(n) => (*n).into(),
        Field::ULong(n) => (*n).into(),
        Field::Float16(n) => float(f64::from(*n)),
        Field::Float(n) => float(f64::from(*n)),
        Field::Double(n) => float(*n),
        // Display writes the exact digits; JSON takes them as a number.
        Field::Decimal(_) => serde_json::from_str(&f.to_string()).unwrap_or(Value::Null),
        Field::Str(s) => Value::String(s.clone()),
        Field::Bytes(b) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b.data()))
        }
        Field::Date(days) => Value::String(date(i64::from(*days))),
        Field::TimeMillis(ms) => Value::String(time(i64::from(*ms) * 1000)),
        Field::TimeMicros(us) => Value::String(time(*us)),
        Field::TimestampMillis(ms) => (*ms).into(),
        Field::TimestampMicros(us) => us.div_euclid(1000).into(),
        Field::Group(row) => row_json(row),
        Field::ListInternal(list) => Value::Array(list.elements().iter().map(field_json).collect()),
        Field::MapInternal(map) => {
            let mut out = Map::new();
            for (k, v) in map.entries() {
                let k = match k {
                    Field::Str(s) => s.clone(),
                    other => match field_json(other) {
                        Value::String(s) => s,
                        v => v.to_string(),
                    },
                };
                out.insert(k, field_json(v));
            }
            Value::Object(out)
        }
    }
}

/// Days since 1970-01-01 as a proleptic Gregorian `YYYY-MM-DD` (Hinnant's algorithm).
fn date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Microseconds since midnight as `HH:MM:SS` with the fraction when there is one.
fn time(us: i64) -> String {
    let (s, frac) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
    let hms = format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    if frac == 0 {
        hms
    } else {
        format!("{hms}.{frac:06}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_and_times() {
        assert_eq!(super::date(0), "1970-01-01");
        assert_eq!(super::date(19_782), "2024-02-29");
        assert_eq!(super::date(-1), "1969-12-31");
        assert_eq!(super::time(0), "00:00:00");
        assert_eq!(super::time(45_296_000_123), "12:34:56.000123");
    }
}
