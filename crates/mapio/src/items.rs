//! The Distributed Map's ItemReader: listings and CSV, JSON and JSONL objects.
//!
//! Items stream: they are parsed on a blocking thread as the bytes arrive and handed
//! over in chunks through a bounded channel, so a 10-million-line object never sits
//! in memory whole.

use serde_json::{json, Map, Value};
use shoal_asl::{
    CsvHeaders, InputType, ManifestType, ReaderConfig, ReaderResource, ReaderTransformation,
};
use shoal_buckets::{Body, Buckets, Error};
use shoal_engine::maprun::PAYLOAD_LIMIT;
use shoal_expr::{errors, Failure};
use std::io::{BufRead, BufReader, Read};

mod json;
#[cfg(feature = "parquet")]
mod parquet;
mod progress;
use progress::Counted;
pub use progress::{Bytes, ReadProgress, ReadSnapshot};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Items in reading order, or why reading stopped.
pub type Chunk = Result<Vec<Value>, Failure>;

const CHUNK: usize = 1024;

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
        | Error::InvalidBucket(_)
        | Error::NoBuckets
        | Error::S3 { .. } => reader_failed(e.to_string()),
        other => Failure::runtime(other.to_string()),
    }
}

/// Why the parser stopped early without an error of its own.
enum Stop {
    /// MaxItems reached, or nobody reads any more.
    Done,
    Failed(Failure),
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Stop {
        Stop::Failed(f)
    }
}

/// Collects items into chunks and sends them; enforces MaxItems.
struct Emitter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<Value>,
    left: usize,
}

impl Emitter {
    fn push(&mut self, v: Value) -> Result<(), Stop> {
        if self.left == 0 {
            return Err(Stop::Done);
        }
        self.left -= 1;
        self.buf.push(v);
        if self.buf.len() >= CHUNK || self.left == 0 {
            self.flush()?;
        }
        if self.left == 0 {
            return Err(Stop::Done);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Stop> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| Stop::Done)
    }
}

/// What each object holds: ReaderConfig's InputType and its options.
#[derive(Debug, Clone)]
enum Format {
    Json {
        pointer: Option<String>,
    },
    Jsonl,
    Parquet,
    Csv {
        delim: char,
        headers: Option<Vec<String>>,
    },
}

fn format(config: &ReaderConfig) -> Result<Format, Failure> {
    Ok(match config.input_type {
        Some(InputType::Csv) => Format::Csv {
            delim: config.csv_delimiter.char(),
            headers: match &config.csv_headers {
                CsvHeaders::Given(h) => Some(h.clone()),
                CsvHeaders::FirstRow => None,
            },
        },
        Some(InputType::Jsonl) => Format::Jsonl,
        Some(InputType::Json) | None => Format::Json {
            pointer: config.items_pointer.clone(),
        },
        Some(InputType::Parquet) if cfg!(feature = "parquet") => Format::Parquet,
        Some(InputType::Parquet) => {
            return Err(reader_failed(
                "InputType PARQUET needs shoal built with --features parquet",
            ))
        }
        Some(InputType::Manifest) => {
            return Err(reader_failed(
                "InputType MANIFEST reads an S3 inventory manifest with s3:getObject",
            ))
        }
    })
}

/// MaxItems as the Map state evaluated it; 0 or none means every item.
fn max_items(v: Option<&Value>) -> Result<usize, Failure> {
    match v {
        None => Ok(usize::MAX),
        Some(v) => match v.as_f64() {
            Some(n) if n < 0.0 => Err(reader_failed("field MaxItems must be positive")),
            Some(0.0) => Ok(usize::MAX),
            Some(n) => Ok(n.min(100_000_000.0) as usize),
            None => Err(reader_failed("field MaxItems must be a number")),
        },
    }
}

/// Starts reading the items of an ItemReader. Items arrive in order; an `Err` chunk
/// ends the stream.
pub fn read(
    store: Option<Arc<Buckets>>,
    resource: ReaderResource,
    params: Value,
    config: Arc<ReaderConfig>,
    max_items: Option<Value>,
) -> mpsc::Receiver<Chunk> {
    let progress = Arc::new(ReadProgress::default());
    read_tracked(store, resource, params, config, max_items, progress)
}

/// [`read`], telling `progress` how far it has got as it goes.
pub fn read_tracked(
    store: Option<Arc<Buckets>>,
    resource: ReaderResource,
    params: Value,
    config: Arc<ReaderConfig>,
    max_items: Option<Value>,
    progress: Arc<ReadProgress>,
) -> mpsc::Receiver<Chunk> {
    let (tx, rx) = mpsc::channel(4);
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut em = Emitter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
            left: usize::MAX,
        };
        let r = match (store.as_deref(), self::max_items(max_items.as_ref())) {
            (None, _) => Err(s3_failure(Error::NoBuckets).into()),
            (_, Err(f)) => Err(f.into()),
            (Some(store), Ok(left)) => {
                em.left = left;
                read_all(
                    &handle, store, resource, &params, &config, &mut em, &progress,
                )
            }
        };
        progress.finish();
        // Items read before a failure go out first, as they would have in time.
        let r = match r {
            Ok(()) | Err(Stop::Done) => em.flush(),
            Err(f) => em.flush().and(Err(f)),
        };
        if let Err(Stop::Failed(f)) = r {
            let _ = tx.blocking_send(Err(f));
        }
    });
    rx
}

fn read_all(
    rt: &tokio::runtime::Handle,
    store: &Buckets,
    resource: ReaderResource,
    params: &Value,
    config: &ReaderConfig,
    em: &mut Emitter,
    progress: &Arc<ReadProgress>,
) -> Result<(), Stop> {
    let bucket = field(params, "Bucket")?;
    match resource {
        ReaderResource::ListObjectsV2 => {
            let prefix = params.get("Prefix").and_then(Value::as_str).unwrap_or("");
            let load = config.transformation == ReaderTransformation::LoadAndFlatten;
            let fmt = if load { Some(format(config)?) } else { None };
            // Keys come in order as the listing is read: a folder at a time, a page
            // at a time.
            progress.start_listing();
            for m in store.listing(rt, bucket, prefix).map_err(s3_failure)? {
                let m = m.map_err(s3_failure)?;
                progress.listed();
                match &fmt {
                    None => em.push(json!({"Etag": m.etag, "Key": m.key, "LastModified": m.last_modified, "Size": m.size, "StorageClass": "STANDARD"}))?,
                    Some(f) => read_object(rt, store, (bucket, &m.key), f, em, progress, Sizing::OneOf)?,
                }
            }
            Ok(())
        }
        ReaderResource::GetObject => {
            let key = field(params, "Key")?;
            match (config.manifest_type, config.input_type) {
                (Some(ManifestType::S3Inventory), _) | (None, Some(InputType::Manifest)) => {
                    inventory(rt, store, bucket, key, em, progress)
                }
                (Some(ManifestType::AthenaData), _) => {
                    let fmt = format(config)?;
                    athena(rt, store, bucket, key, &fmt, em, progress)
                }
                (None, _) => {
                    let fmt = format(config)?;
                    read_object(rt, store, (bucket, key), &fmt, em, progress, Sizing::Only)
                }
            }
        }
    }
}

/// What an object's size adds to the reader's byte total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sizing {
    /// The only object: its size is the whole total.
    Only,
    /// One of objects still being found (a listing, an Athena manifest).
    OneOf,
    /// Already counted (an S3 Inventory manifest gives every size).
    Counted,
}

fn read_object(
    rt: &tokio::runtime::Handle,
    store: &Buckets,
    (bucket, key): (&str, &str),
    fmt: &Format,
    em: &mut Emitter,
    progress: &Arc<ReadProgress>,
    sizing: Sizing,
) -> Result<(), Stop> {
    let (body, size) = rt.block_on(store.open(bucket, key)).map_err(s3_failure)?;
    match sizing {
        Sizing::Only => progress.add_total(size, true),
        Sizing::OneOf => progress.add_total(size, false),
        Sizing::Counted => {}
    }
    let place = format!("s3://{bucket}/{key}");
    if let Format::Parquet = fmt {
        #[cfg(feature = "parquet")]
        return parquet::read(body, size, &place, em, progress);
    }
    let r: Box<dyn Read> = match body {
        Body::File(f) => Box::new(f),
        Body::Stream(s) => s,
    };
    // Counted as the bytes come, before any gzip: the object's size is what was stored.
    let r = Counted {
        inner: r,
        progress: progress.clone(),
    };
    // S3 Inventory and exports write gzip files; their keys say so.
    let r: Box<dyn Read> = if key.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(r)))
    } else {
        Box::new(r)
    };
    let r = BufReader::with_capacity(256 * 1024, r);
    parse(r, fmt, &place, em)
}

fn whole_json(
    rt: &tokio::runtime::Handle,
    store: &Buckets,
    bucket: &str,
    key: &str,
) -> Result<Value, Failure> {
    let body = rt.block_on(store.get(bucket, key)).map_err(s3_failure)?;
    serde_json::from_slice(&body)
        .map_err(|e| reader_failed(format!("s3://{bucket}/{key} is not valid JSON: {e}")))
}

/// An S3 Inventory `manifest.json`: every row of every CSV data file it lists, as an
/// object keyed by its `fileSchema`.
fn inventory(
    rt: &tokio::runtime::Handle,
    store: &Buckets,
    bucket: &str,
    key: &str,
    em: &mut Emitter,
    progress: &Arc<ReadProgress>,
) -> Result<(), Stop> {
    let m = whole_json(rt, store, bucket, key)?;
    let place = format!("s3://{bucket}/{key}");
    let bad =
        |what: &str| reader_failed(format!("{place} is not an S3 Inventory manifest: {what}"));
    match m.get("fileFormat").and_then(Value::as_str) {
        Some("CSV") => {}
        Some(other) => {
            return Err(reader_failed(format!(
                "{place}: S3 Inventory fileFormat {other} is not supported by shoal (CSV is)"
            ))
            .into())
        }
        None => return Err(bad("no fileFormat").into()),
    }
    let headers: Vec<String> = m
        .get("fileSchema")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no fileSchema"))?
        .split(',')
        .map(|h| h.trim().to_string())
        .collect();
    let dest = m
        .get("destinationBucket")
        .and_then(Value::as_str)
        .map(|b| b.trim_start_matches("arn:aws:s3:::").to_string())
        .unwrap_or_else(|| bucket.to_string());
    let files = m
        .get("files")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no files"))?;
    let fmt = Format::Csv {
        delim: ',',
        headers: Some(headers),
    };
    // The manifest gives each file's size: the whole total is known before reading.
    let sizes: Option<Vec<u64>> = files
        .iter()
        .map(|f| f.get("size").and_then(Value::as_u64))
        .collect();
    let sizing = match sizes {
        Some(s) => {
            progress.add_total(s.iter().sum(), true);
            Sizing::Counted
        }
        None => Sizing::OneOf,
    };
    for f in files {
        let k = f
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a file without a key"))?;
        read_object(rt, store, (&dest, k), &fmt, em, progress, sizing)?;
    }
    Ok(())
}

/// An Athena manifest: one `s3://bucket/key` per line, each read with the InputType.
fn athena(
    rt: &tokio::runtime::Handle,
    store: &Buckets,
    bucket: &str,
    key: &str,
    fmt: &Format,
    em: &mut Emitter,
    progress: &Arc<ReadProgress>,
) -> Result<(), Stop> {
    let body = rt.block_on(store.get(bucket, key)).map_err(s3_failure)?;
    let text = String::from_utf8_lossy(&body);
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let uri = line.trim();
        let Some((b, k)) = uri
            .strip_prefix("s3://")
            .or_else(|| uri.strip_prefix("S3://"))
            .and_then(|r| r.split_once('/'))
        else {
            return Err(reader_failed(format!(
                "s3://{bucket}/{key} line {}: {uri:?} is not an s3://bucket/key URI",
                i + 1
            ))
            .into());
        };
        read_object(rt, store, (b, k), fmt, em, progress, Sizing::OneOf)?;
    }
    Ok(())
}

fn parse(r: impl BufRead, fmt: &Format, place: &str, em: &mut Emitter) -> Result<(), Stop> {
    match fmt {
        Format::Jsonl => jsonl(r, place, em),
        Format::Csv { delim, headers } => csv(r, *delim, headers.as_deref(), place, em),
        Format::Json { pointer } => json::stream(r, pointer.as_deref(), place, em),
        // Parquet needs random access: `read_object` opens it as a file.
        Format::Parquet => Err(reader_failed(format!("{place}: Parquet is not a stream")).into()),
    }
}

/// Reads one line into `buf`; false at the end of the object.
fn next_line(
    r: &mut impl BufRead,
    buf: &mut String,
    place: &str,
    line: usize,
) -> Result<bool, Failure> {
    buf.clear();
    match r.read_line(buf) {
        Ok(0) => Ok(false),
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(reader_failed(format!(
            "{place} line {line}: not UTF-8 text"
        ))),
        Err(e) => Err(reader_failed(format!(
            "reading {place} at line {line}: {e}"
        ))),
    }
}

fn too_big(place: &str, what: &str, line: usize, size: usize) -> Failure {
    Failure::new(
        errors::DATA_LIMIT_EXCEEDED,
        format!(
            "{place} {what} {line}: the item is {size} bytes, over the 262144-byte (256 KiB) limit"
        ),
    )
}

fn jsonl(mut r: impl BufRead, place: &str, em: &mut Emitter) -> Result<(), Stop> {
    let mut buf = String::new();
    let mut line = 0;
    while next_line(&mut r, &mut buf, place, line + 1)? {
        line += 1;
        let text = buf.trim();
        if text.is_empty() {
            continue;
        }
        if text.len() > PAYLOAD_LIMIT {
            return Err(too_big(place, "line", line, text.len()).into());
        }
        let v = serde_json::from_str(text)
            .map_err(|e| reader_failed(format!("{place} line {line}: invalid JSON: {e}")))?;
        em.push(v)?;
    }
    Ok(())
}

/// The object as the `csv` reader reads it, keeping what it needs to judge: the bytes
/// from the current record's start (to tell an unterminated quoted field at the end
/// from a closed one, which the crate reads alike), and a cap on how far a record
/// may run (an open quote must not pull a whole object into memory).
struct Tap<R> {
    inner: R,
    /// Bytes handed to the reader so far, and where `tail` starts.
    read: u64,
    tail_at: u64,
    tail: Vec<u8>,
    /// Where the record being read starts, and where the last one read started (the
    /// tail keeps it); shared with `csv`.
    record: std::rc::Rc<std::cell::Cell<u64>>,
    keep: std::rc::Rc<std::cell::Cell<u64>>,
}

/// Past this many bytes from its start a record is refused, whatever the reader
/// buffers ahead.
const RECORD_CAP: u64 = PAYLOAD_LIMIT as u64 + 2 * CSV_BUF as u64;
const CSV_BUF: usize = 64 * 1024;

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let start = self.record.get();
        if self.read.saturating_sub(start) > RECORD_CAP {
            return Err(std::io::Error::other(TooLong));
        }
        let n = self.inner.read(buf)?;
        let keep = self.keep.get();
        if keep > self.tail_at {
            let drop = usize::try_from(keep - self.tail_at)
                .unwrap_or(usize::MAX)
                .min(self.tail.len());
            self.tail.drain(..drop);
            self.tail_at += drop as u64;
        }
        self.tail.extend_from_slice(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[derive(Debug)]
struct TooLong;

impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("record too long")
    }
}

impl std::error::Error for TooLong {}

/// CSV through the `csv` crate: RFC 4180 quoting (quoted fields may span lines), the
/// ReaderConfig's delimiter, blank lines skipped. A row with fewer cells than headers
/// gets `""` for the rest; cells past the headers are dropped.
fn csv(
    r: impl BufRead,
    delim: char,
    given: Option<&[String]>,
    place: &str,
    em: &mut Emitter,
) -> Result<(), Stop> {
    let delim = u8::try_from(delim)
        .ok()
        .filter(u8::is_ascii)
        .ok_or_else(|| reader_failed(format!("CSV delimiter {delim:?} is not one ASCII byte")))?;
    let record = std::rc::Rc::new(std::cell::Cell::new(0));
    let keep = std::rc::Rc::new(std::cell::Cell::new(0));
    let tap = Tap {
        inner: r,
        read: 0,
        tail_at: 0,
        tail: Vec::new(),
        record: record.clone(),
        keep: keep.clone(),
    };
    let mut rdr = ::csv::ReaderBuilder::new()
        .delimiter(delim)
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(CSV_BUF)
        .from_reader(tap);
    let mut row = ::csv::StringRecord::new();
    // Reads the next record into `row`; its first line, or None at the end.
    let next = |rdr: &mut ::csv::Reader<Tap<_>>, row: &mut ::csv::StringRecord| {
        let at = rdr.position().clone();
        record.set(at.byte());
        match rdr.read_record(row) {
            Ok(true) => {
                let start = row.position().map_or(at.line(), ::csv::Position::line);
                let from = row.position().map_or(at.byte(), ::csv::Position::byte);
                keep.set(from);
                let bytes = rdr.position().byte() - from;
                if bytes > PAYLOAD_LIMIT as u64 {
                    return Err(too_big(
                        place,
                        "row starting at line",
                        start as usize,
                        bytes as usize,
                    ));
                }
                Ok(Some(start))
            }
            Ok(false) => Ok(None),
            Err(e) => Err(csv_error(e, place, &at)),
        }
    };
    let headers: Vec<String> = match given {
        Some(h) => h.to_vec(),
        None => match next(&mut rdr, &mut row)? {
            Some(_) => row.iter().map(String::from).collect(),
            None => {
                return Err(reader_failed(format!(
                    "{place} is empty: expected a CSV header row (CSVHeaderLocation FIRST_ROW)"
                ))
                .into())
            }
        },
    };
    if headers.iter().map(String::len).sum::<usize>() > 10_240 {
        return Err(reader_failed("CSV headers exceed the 10 KB limit.").into());
    }
    let mut seen = std::collections::HashSet::new();
    if !headers.iter().all(|h| seen.insert(h)) {
        return Err(reader_failed("CSV headers cannot contain duplicates.").into());
    }
    let mut last = None;
    if given.is_none() {
        last = row.position().cloned();
    }
    while next(&mut rdr, &mut row)?.is_some() {
        last = row.position().cloned();
        let mut m = Map::with_capacity(headers.len());
        let mut cells = row.iter();
        for h in &headers {
            m.insert(
                h.clone(),
                Value::String(cells.next().unwrap_or_default().to_string()),
            );
        }
        em.push(Value::Object(m))?;
    }
    if let Some(at) = last {
        let tap = rdr.get_ref();
        if let Some(raw) = usize::try_from(at.byte().saturating_sub(tap.tail_at))
            .ok()
            .and_then(|i| tap.tail.get(i..))
        {
            if unterminated(raw, delim) {
                return Err(reader_failed(format!(
                    "{place} row starting at line {}: unterminated quoted field",
                    at.line()
                ))
                .into());
            }
        }
    }
    Ok(())
}

/// Whether the last record (its bytes to the end of the object) ends inside a quoted
/// field. The crate reads both alike; followed by a line break and one more cell, a
/// closed record becomes two records and an open one stays one.
fn unterminated(raw: &[u8], delim: u8) -> bool {
    let probe: Vec<u8> = raw.iter().copied().chain(*b"\nx").collect();
    let mut rdr = ::csv::ReaderBuilder::new()
        .delimiter(delim)
        .has_headers(false)
        .flexible(true)
        .from_reader(&probe[..]);
    let mut n = 0;
    let mut rec = ::csv::ByteRecord::new();
    while let Ok(true) = rdr.read_byte_record(&mut rec) {
        n += 1;
    }
    n == 1
}

fn csv_error(e: ::csv::Error, place: &str, at: &::csv::Position) -> Failure {
    let line = e.position().map_or(at.line(), ::csv::Position::line);
    let byte = e.position().map_or(at.byte(), ::csv::Position::byte);
    match e.kind() {
        ::csv::ErrorKind::Utf8 { err, .. } => reader_failed(format!(
            "{place} row starting at line {line} (byte {byte}): field {} is not UTF-8 text",
            err.field() + 1
        )),
        ::csv::ErrorKind::Io(io) if io.get_ref().is_some_and(|e| e.is::<TooLong>()) => too_big(
            place,
            "row starting at line",
            line as usize,
            RECORD_CAP as usize,
        ),
        _ => reader_failed(format!("reading {place} at line {line} (byte {byte}): {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(text: impl AsRef<[u8]>, fmt: Format) -> Result<Vec<Value>, Failure> {
        let (tx, mut rx) = mpsc::channel(1000);
        let mut em = Emitter {
            tx,
            buf: Vec::new(),
            left: usize::MAX,
        };
        let r = parse(text.as_ref(), &fmt, "s3://b/k", &mut em).and_then(|_| em.flush());
        if let Err(Stop::Failed(f)) = r {
            return Err(f);
        }
        drop(em);
        let mut out = Vec::new();
        while let Ok(c) = rx.try_recv() {
            out.extend(c?);
        }
        Ok(out)
    }

    fn csv_fmt(delim: char, headers: Option<Vec<&str>>) -> Format {
        Format::Csv {
            delim,
            headers: headers.map(|h| h.into_iter().map(String::from).collect()),
        }
    }

    #[test]
    fn csv_rows() {
        let items = collect(
            "a,b,c\n\"x,1\",\"multi\nline\",\"q\"\"q\"\r\n2\n",
            csv_fmt(',', None),
        )
        .unwrap();
        assert_eq!(
            items,
            vec![
                json!({"a": "x,1", "b": "multi\nline", "c": "q\"q"}),
                json!({"a": "2", "b": "", "c": ""}),
            ]
        );
        let items = collect("x|y|z\n", csv_fmt('|', Some(vec!["h1", "h2"]))).unwrap();
        assert_eq!(items, vec![json!({"h1": "x", "h2": "y"})]);
        let cause = |r: Result<Vec<Value>, Failure>| r.unwrap_err().cause.unwrap();
        assert_eq!(
            cause(collect("a\n\"open\n", csv_fmt(',', None))),
            "s3://b/k row starting at line 2: unterminated quoted field"
        );
        assert_eq!(
            cause(collect("a,a\n", csv_fmt(',', None))),
            "CSV headers cannot contain duplicates."
        );
        assert!(cause(collect("", csv_fmt(',', None))).contains("is empty"));
        // Cells past the headers are dropped, blank lines skipped; a quote closed at
        // the very end is a field, one left open is not.
        let items = collect("a,b\n1,2,3\n\n\"x\"\"\"", csv_fmt(',', None)).unwrap();
        assert_eq!(
            items,
            vec![json!({"a": "1", "b": "2"}), json!({"a": "x\"", "b": ""})]
        );
        assert_eq!(
            cause(collect("a\n1\n\"x\"\"", csv_fmt(',', None))),
            "s3://b/k row starting at line 3: unterminated quoted field"
        );
        let items = collect("a b\tc\n1 2\t3\n", csv_fmt('\t', None)).unwrap();
        assert_eq!(items, vec![json!({"a b": "1 2", "c": "3"})]);
        assert_eq!(
            cause(collect(b"a,b\n1,2\nx,\xff\n", csv_fmt(',', None))),
            "s3://b/k row starting at line 3 (byte 8): field 2 is not UTF-8 text"
        );
        // A row over 256 KiB, closed or with its quote left open, is refused by line.
        let big = "x".repeat(PAYLOAD_LIMIT);
        for text in [format!("a\n1\n{big}\n2\n"), format!("a\n1\n\"{big}{big}")] {
            let err = collect(text, csv_fmt(',', None)).unwrap_err();
            assert_eq!(err.error, errors::DATA_LIMIT_EXCEEDED);
            assert!(err
                .cause
                .unwrap()
                .starts_with("s3://b/k row starting at line 3:"));
        }
    }

    #[test]
    fn json_and_jsonl() {
        let json = |t: &str, p: Option<&str>| {
            collect(
                t,
                Format::Json {
                    pointer: p.map(String::from),
                },
            )
        };
        assert_eq!(
            json("{\"a\":[1,2]}", Some("/a")).unwrap(),
            vec![json!(1), json!(2)]
        );
        assert_eq!(
            json("{}", None).unwrap_err().cause.unwrap(),
            "Attempting to map over non-iterable node."
        );
        assert!(json("", None)
            .unwrap_err()
            .cause
            .unwrap()
            .contains("is empty"));
        assert_eq!(
            json(
                "{\"a\":{\"x\":[0,{\"b~/\":{\"k\":[1]}}]}}",
                Some("/a/x/1/b~0~1")
            )
            .unwrap(),
            vec![json!({"key": "k", "value": [1]})]
        );
        assert_eq!(
            json("[1,[2,3]] ", Some("/1")).unwrap(),
            vec![json!(2), json!(3)]
        );
        assert_eq!(
            json("[1,2]", Some("/01")).unwrap_err().cause.unwrap(),
            "ItemsPointer /01 does not exist in s3://b/k"
        );
        assert_eq!(
            json("{\"a\":3}", Some("/a")).unwrap_err().cause.unwrap(),
            "Attempting to map over non-iterable node."
        );
        assert_eq!(
            json("{\"a\":[]}", Some("/b")).unwrap_err().cause.unwrap(),
            "ItemsPointer /b does not exist in s3://b/k"
        );
        // A truncated array names the byte where it ends and the item it was in.
        assert_eq!(
            json("[{\"a\":1},\n{\"a\":", None)
                .unwrap_err()
                .cause
                .unwrap(),
            "s3://b/k is truncated at byte 15, in item index 1: \
             EOF while parsing a value at line 2 column 5"
        );
        assert_eq!(
            json("  [1,2,x]", None).unwrap_err().cause.unwrap(),
            "s3://b/k is not valid JSON at byte 7, in item index 2: \
             expected value at line 1 column 8"
        );
        assert!(json("[1] 2", None)
            .unwrap_err()
            .cause
            .unwrap()
            .contains("trailing characters"));
        let err = collect("{}\n\nnope\n", Format::Jsonl).unwrap_err();
        assert!(err.cause.unwrap().starts_with("s3://b/k line 3"));
        let big = format!("\"{}\"\n", "x".repeat(PAYLOAD_LIMIT));
        let err = collect(format!("1\n{big}"), Format::Jsonl).unwrap_err();
        assert_eq!(err.error, errors::DATA_LIMIT_EXCEEDED);
        assert!(err.cause.unwrap().starts_with("s3://b/k line 2:"));
    }

    /// A reader fed by the test, so it can hold back the rest of an object.
    struct Pipe(std::sync::mpsc::Receiver<Vec<u8>>, Vec<u8>);

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.1.is_empty() {
                match self.0.recv() {
                    Ok(b) => self.1 = b,
                    Err(_) => return Ok(0),
                }
            }
            let n = buf.len().min(self.1.len());
            buf[..n].copy_from_slice(&self.1[..n]);
            self.1.drain(..n);
            Ok(n)
        }
    }

    #[test]
    fn json_items_arrive_before_the_object_ends() {
        let (feed, pipe) = std::sync::mpsc::channel();
        let (tx, mut rx) = mpsc::channel(4);
        let parser = std::thread::spawn(move || {
            let mut em = Emitter {
                tx,
                buf: Vec::new(),
                left: usize::MAX,
            };
            let r = BufReader::new(Pipe(pipe, Vec::new()));
            let fmt = Format::Json {
                pointer: Some("/items".into()),
            };
            parse(r, &fmt, "s3://b/k", &mut em).and_then(|_| em.flush())
        });
        let first: String = (0..CHUNK).map(|i| format!("{{\"n\":{i}}},")).collect();
        feed.send(format!("{{\"items\":[{first}").into_bytes())
            .unwrap();
        // A whole chunk arrives while the array is still open.
        let chunk = rx.blocking_recv().unwrap().unwrap();
        assert_eq!(chunk.len(), CHUNK);
        assert_eq!(chunk[CHUNK - 1], json!({"n": CHUNK - 1}));
        feed.send(b"{\"n\":-1}]}".to_vec()).unwrap();
        drop(feed);
        assert_eq!(rx.blocking_recv().unwrap().unwrap(), vec![json!({"n": -1})]);
        assert!(parser.join().unwrap().is_ok());
    }

    #[test]
    fn json_stops_reading_at_max_items() {
        let (tx, mut rx) = mpsc::channel(4);
        let mut em = Emitter {
            tx,
            buf: Vec::new(),
            left: 2,
        };
        // What follows the second item is never parsed.
        let r = parse(
            &b"[1,2,3,garbage"[..],
            &Format::Json { pointer: None },
            "s3://b/k",
            &mut em,
        );
        assert!(matches!(r, Err(Stop::Done)));
        assert_eq!(rx.try_recv().unwrap().unwrap(), vec![json!(1), json!(2)]);
    }

    /// AWS's own sentences, which name no place: each is about the whole object.
    const FIXED_CAUSES: &[&str] = &[
        "Attempting to map over non-iterable node.",
        "CSV headers cannot contain duplicates.",
        "CSV headers exceed the 10 KB limit.",
    ];

    fn collect_bytes(bytes: &[u8], fmt: &Format) -> Result<usize, Failure> {
        let (tx, mut rx) = mpsc::channel(1000);
        let mut em = Emitter {
            tx,
            buf: Vec::new(),
            left: usize::MAX,
        };
        let r = parse(bytes, fmt, "s3://b/k", &mut em).and_then(|_| em.flush());
        if let Err(Stop::Failed(f)) = r {
            return Err(f);
        }
        drop(em);
        let mut n = 0;
        while let Ok(c) = rx.try_recv() {
            n += c?.len();
        }
        Ok(n)
    }

    use proptest::prelude::*;

    fn format_strategy() -> impl Strategy<Value = Format> {
        prop_oneof![
            Just(Format::Jsonl),
            proptest::option::of(Just("/items".to_string()))
                .prop_map(|pointer| Format::Json { pointer }),
            (
                proptest::sample::select(vec![',', '|', ';', '\t']),
                proptest::option::of(proptest::collection::vec("[a-c]{0,3}", 1..4)),
            )
                .prop_map(|(delim, headers)| Format::Csv { delim, headers }),
        ]
    }

    /// A document in `fmt` of `rows` (cells with quotes, delimiters, line breaks and
    /// non-ASCII text).
    fn document(fmt: &Format, rows: &[Vec<String>]) -> Vec<u8> {
        let object = |r: &Vec<String>| {
            Value::Object(
                r.iter()
                    .enumerate()
                    .map(|(i, c)| (format!("k{i}"), Value::String(c.clone())))
                    .collect(),
            )
        };
        match fmt {
            Format::Jsonl => rows
                .iter()
                .map(|r| format!("{}\n", object(r)))
                .collect::<String>()
                .into_bytes(),
            Format::Json { pointer } => {
                let items = Value::Array(rows.iter().map(object).collect());
                match pointer {
                    Some(_) => json!({"items": items}),
                    None => items,
                }
                .to_string()
                .into_bytes()
            }
            Format::Csv { delim, .. } => rows
                .iter()
                .map(|r| {
                    let cells: Vec<String> = r
                        .iter()
                        .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
                        .collect();
                    cells.join(&delim.to_string()) + "\r\n"
                })
                .collect::<String>()
                .into_bytes(),
            Format::Parquet => unreachable!("not a text format"),
        }
    }

    fn input_strategy() -> impl Strategy<Value = (Format, Vec<u8>)> {
        let rows = proptest::collection::vec(
            proptest::collection::vec("[a-c,|;\"\n\r\t é{}\\[\\]]{0,6}", 1..4),
            0..8,
        );
        prop_oneof![
            (
                format_strategy(),
                proptest::collection::vec(any::<u8>(), 0..256)
            ),
            (
                format_strategy(),
                rows.clone(),
                any::<prop::sample::Index>(),
                any::<bool>()
            )
                .prop_map(|(fmt, rows, cut, truncate)| {
                    let mut doc = document(&fmt, &rows);
                    if truncate && !doc.is_empty() {
                        doc.truncate(cut.index(doc.len()));
                    }
                    (fmt, doc)
                }),
            (
                format_strategy(),
                rows,
                any::<prop::sample::Index>(),
                any::<u8>()
            )
                .prop_map(|(fmt, rows, at, byte)| {
                    let mut doc = document(&fmt, &rows);
                    if !doc.is_empty() {
                        let i = at.index(doc.len());
                        doc[i] = byte;
                    }
                    (fmt, doc)
                }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 512,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x17e5),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Random bytes, truncated and damaged documents: items, or a reader failure
        /// that says where; never a panic.
        #[test]
        fn any_bytes_give_items_or_a_failure_that_says_where((fmt, bytes) in input_strategy()) {
            if let Err(f) = collect_bytes(&bytes, &fmt) {
                prop_assert!(
                    f.error == errors::ITEM_READER_FAILED || f.error == errors::DATA_LIMIT_EXCEEDED,
                    "{f:?}"
                );
                let cause = f.cause.unwrap_or_default();
                // Failures of the whole object name it; the others the line too.
                let whole = FIXED_CAUSES.contains(&cause.as_str())
                    || cause.ends_with("does not exist in s3://b/k")
                    || cause.starts_with("s3://b/k is empty");
                prop_assert!(
                    whole || (cause.starts_with("s3://b/k") && cause.contains(" line ")),
                    "{fmt:?}: {cause}"
                );
                // JSON names the byte offset too.
                prop_assert!(
                    whole || !matches!(fmt, Format::Json { .. }) || cause.contains(" at byte "),
                    "{fmt:?}: {cause}"
                );
            }
        }
    }
}
