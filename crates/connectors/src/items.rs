//! The Distributed Map's ItemReader: listings, CSV, JSON and JSONL objects.

use crate::{Error, LocalBuckets};
use serde_json::{Map, Value};
use shoal_expr::{errors, Failure};

fn reader_failed(cause: impl Into<String>) -> Failure {
    Failure::new(errors::ITEM_READER_FAILED, cause)
}

fn field<'v>(params: &'v Value, name: &str) -> Result<&'v str, Failure> {
    params
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| reader_failed(format!("the ItemReader Parameters need a string {name}")))
}

fn s3_failure(e: Error) -> Failure {
    match e {
        Error::NoSuchKey { .. }
        | Error::NoSuchBucket(_)
        | Error::InvalidKey { .. }
        | Error::InvalidBucket(_) => reader_failed(e.to_string()),
        other => Failure::runtime(other.to_string()),
    }
}

/// Reads every item. `config` is the ReaderConfig with MaxItems already resolved.
pub fn read(
    buckets: Option<&LocalBuckets>,
    resource: &str,
    params: &Value,
    config: &Value,
) -> Result<Vec<Value>, Failure> {
    let buckets = buckets.ok_or_else(|| reader_failed(Error::NoBuckets.to_string()))?;
    let max_items = match config.get("MaxItems") {
        None => None,
        Some(v) => match v.as_f64() {
            Some(n) if n < 0.0 => return Err(reader_failed("field MaxItems must be positive")),
            Some(0.0) => None,
            Some(n) => Some(n.min(100_000_000.0) as usize),
            None => return Err(reader_failed("field MaxItems must be a number")),
        },
    };
    let bucket = field(params, "Bucket")?;
    let mut items = match resource {
        "arn:aws:states:::s3:listObjectsV2" => {
            let prefix = params.get("Prefix").and_then(Value::as_str).unwrap_or("");
            buckets
                .list(bucket, prefix)
                .map_err(s3_failure)?
                .into_iter()
                .map(|m| serde_json::json!({"Etag": m.etag, "Key": m.key, "LastModified": m.last_modified, "Size": m.size, "StorageClass": "STANDARD"}))
                .collect()
        }
        "arn:aws:states:::s3:getObject" => {
            let key = field(params, "Key")?;
            let body = buckets.get(bucket, key).map_err(s3_failure)?;
            let text = String::from_utf8(body)
                .map_err(|_| reader_failed(format!("s3://{bucket}/{key} is not UTF-8 text")))?;
            let place = format!("s3://{bucket}/{key}");
            match config.get("InputType").and_then(Value::as_str) {
                Some("CSV") => csv(&text, config, &place)?,
                Some("JSONL") => jsonl(&text, &place)?,
                Some("JSON") | None => json_items(&text, config, &place)?,
                Some(other) => {
                    return Err(reader_failed(format!(
                        "InputType {other} is not supported yet"
                    )))
                }
            }
        }
        other => {
            return Err(reader_failed(format!(
                "unsupported ItemReader resource {other}"
            )))
        }
    };
    if let Some(n) = max_items {
        items.truncate(n);
    }
    Ok(items)
}

fn json_items(text: &str, config: &Value, place: &str) -> Result<Vec<Value>, Failure> {
    let doc: Value = serde_json::from_str(text).map_err(|e| {
        reader_failed(format!(
            "{place} is not valid JSON at line {} column {}: {e}",
            e.line(),
            e.column()
        ))
    })?;
    let doc = match config.get("ItemsPointer").and_then(Value::as_str) {
        Some(p) => doc
            .pointer(p)
            .cloned()
            .ok_or_else(|| reader_failed(format!("ItemsPointer {p} does not exist in {place}")))?,
        None => doc,
    };
    match doc {
        Value::Array(a) => Ok(a),
        Value::Object(o) if config.get("ItemsPointer").is_some() => Ok(o
            .into_iter()
            .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
            .collect()),
        _ => Err(reader_failed("Attempting to map over non-iterable node.")),
    }
}

fn jsonl(text: &str, place: &str) -> Result<Vec<Value>, Failure> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(line)
                .map_err(|e| reader_failed(format!("{place} line {}: invalid JSON: {e}", i + 1)))?,
        );
    }
    Ok(out)
}

/// Splits CSV text into records: RFC 4180 quoting, any one-character delimiter.
pub fn csv_records(text: &str, delim: char, place: &str) -> Result<Vec<Vec<String>>, Failure> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut row_start_line = 1;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    cell.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    cell.push(c)
                }
                c => cell.push(c),
            }
            continue;
        }
        match c {
            '"' if cell.is_empty() => quoted = true,
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
                line += 1;
                row_start_line = line;
            }
            c if c == delim => row.push(std::mem::take(&mut cell)),
            c => cell.push(c),
        }
    }
    if quoted {
        return Err(reader_failed(format!(
            "{place} row starting at line {row_start_line}: unterminated quoted field"
        )));
    }
    if !cell.is_empty() || !row.is_empty() {
        row.push(cell);
        rows.push(row);
    }
    Ok(rows)
}

fn csv(text: &str, config: &Value, place: &str) -> Result<Vec<Value>, Failure> {
    let delim = match config.get("CSVDelimiter").and_then(Value::as_str) {
        Some("PIPE") => '|',
        Some("SEMICOLON") => ';',
        Some("SPACE") => ' ',
        Some("TAB") => '\t',
        _ => ',',
    };
    let mut rows = csv_records(text, delim, place)?.into_iter();
    let headers: Vec<String> = match config.get("CSVHeaderLocation").and_then(Value::as_str) {
        Some("GIVEN") => config
            .get("CSVHeaders")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|h| h.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default(),
        _ => rows.next().unwrap_or_default(),
    };
    if headers.iter().map(String::len).sum::<usize>() > 10_240 {
        return Err(reader_failed("CSV headers exceed the 10 KB limit."));
    }
    let mut seen = std::collections::HashSet::new();
    if !headers.iter().all(|h| seen.insert(h)) {
        return Err(reader_failed("CSV headers cannot contain duplicates."));
    }
    Ok(rows
        .map(|row| {
            let mut m = Map::new();
            for (i, h) in headers.iter().enumerate() {
                m.insert(
                    h.clone(),
                    Value::String(row.get(i).cloned().unwrap_or_default()),
                );
            }
            Value::Object(m)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_rows() {
        let rows = csv_records("a,\"b,c\",\"d\"\"e\"\n1,2\n", ',', "x").unwrap();
        assert_eq!(rows, vec![vec!["a", "b,c", "d\"e"], vec!["1", "2"]]);
        assert_eq!(
            csv_records("\"open\n", ',', "s3://b/k")
                .unwrap_err()
                .cause
                .unwrap(),
            "s3://b/k row starting at line 1: unterminated quoted field"
        );
        let items = csv("h1|h2\nx|y|z\n", &json!({"CSVDelimiter": "PIPE"}), "x").unwrap();
        assert_eq!(items, vec![json!({"h1": "x", "h2": "y"})]);
        assert_eq!(
            csv("a,a\n", &json!({}), "x").unwrap_err().cause.unwrap(),
            "CSV headers cannot contain duplicates."
        );
    }

    #[test]
    fn json_and_jsonl() {
        assert_eq!(
            json_items("{\"a\":[1,2]}", &json!({"ItemsPointer": "/a"}), "x").unwrap(),
            vec![json!(1), json!(2)]
        );
        assert_eq!(
            json_items("{}", &json!({}), "x")
                .unwrap_err()
                .cause
                .unwrap(),
            "Attempting to map over non-iterable node."
        );
        assert!(jsonl("{}\nnope\n", "s3://b/k")
            .unwrap_err()
            .cause
            .unwrap()
            .starts_with("s3://b/k line 2"));
    }
}
