//! The CSV, JSON and JSONL item readers on random and damaged objects, read from a local
//! bucket and over S3 from a server that sends each body in random pieces (so every
//! read the parser makes returns a few bytes). Never a panic; the same answer however
//! the bytes arrive; valid objects give their items; a failure names the object and a
//! position in it (line, row, byte or item index).

use proptest::prelude::*;
use serde_json::{json, Value};
use shoal_asl::{InputType, ReaderConfig, ReaderResource};
use shoal_buckets::{Buckets, S3Options};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Panics anywhere in this process: the readers run on blocking threads, where a panic
/// would only show as a stream that ends early.
static PANICS: AtomicUsize = AtomicUsize::new(0);

type Objects = Arc<Mutex<HashMap<String, (Vec<u8>, Vec<usize>)>>>;

/// A local bucket, and an S3 endpoint on 127.0.0.1 that serves `objects` (by
/// `/bucket/key`), each body in its pieces with a pause between them.
struct World {
    rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    local: Arc<Buckets>,
    s3: Arc<Buckets>,
    objects: Objects,
    next: AtomicUsize,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            hook(info)
        }));
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        let objects = Objects::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let served = objects.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let objects = served.clone();
                std::thread::spawn(move || serve(conn, &objects));
            }
        });
        std::env::set_var("AWS_ACCESS_KEY_ID", "fuzz");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "fuzz");
        let s3 = Buckets::s3(S3Options {
            endpoint: Some(format!("http://{addr}")),
            region: Some("us-east-1".into()),
        });
        World {
            rt: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
            local: Arc::new(Buckets::local(dir.path())),
            dir,
            s3: Arc::new(s3),
            objects,
            next: AtomicUsize::new(0),
        }
    })
}

/// One kept-alive connection of the S3 endpoint: GET and HEAD of the objects.
fn serve(mut conn: std::net::TcpStream, objects: &Objects) {
    let _ = conn.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut more = [0u8; 4096];
            match conn.read(&mut more) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&more[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let mut words = head.split_whitespace();
        let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let path = target
            .split('?')
            .next()
            .unwrap_or("")
            .trim_start_matches('/');
        let found = objects.lock().unwrap().get(path).cloned();
        let Some((body, pieces)) = found else {
            let xml = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>NoSuchKey</Code><Message>none</Message></Error>";
            let head = format!(
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n",
                xml.len()
            );
            if conn.write_all(head.as_bytes()).is_err() || conn.write_all(xml).is_err() {
                return;
            }
            continue;
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"e\"\r\nLast-Modified: Sun, 29 Nov 2026 00:00:00 GMT\r\nContent-Type: application/octet-stream\r\n\r\n",
            body.len()
        );
        if conn.write_all(head.as_bytes()).is_err() {
            return;
        }
        if method == "HEAD" {
            continue;
        }
        let mut rest = &body[..];
        for step in pieces.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at((*step).min(rest.len()));
            rest = tail;
            if conn.write_all(piece).is_err() {
                return;
            }
            // Let the reader take this piece before the next one lands beside it.
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Format {
    Csv,
    Json,
    Jsonl,
}

impl Format {
    fn config(self) -> ReaderConfig {
        ReaderConfig {
            input_type: Some(match self {
                Format::Csv => InputType::Csv,
                Format::Json => InputType::Json,
                Format::Jsonl => InputType::Jsonl,
            }),
            ..ReaderConfig::default()
        }
    }
}

/// Every item of `key`, or the failure's error and cause.
fn read(store: &Arc<Buckets>, key: &str, format: Format) -> Result<Vec<Value>, String> {
    let w = world();
    w.rt.block_on(async {
        let mut rx = shoal_mapio::items::read(
            Some(store.clone()),
            ReaderResource::GetObject,
            json!({"Bucket": "b", "Key": key}),
            Arc::new(format.config()),
            None,
        );
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(chunk) = rx.recv().await {
                match chunk {
                    Ok(items) => out.extend(items),
                    Err(f) => return Err(format!("{}: {}", f.error, f.cause.unwrap_or_default())),
                }
            }
            Ok(())
        });
        match read.await {
            Ok(Ok(())) => Ok(out),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("HANG: {key} read for 30 s")),
        }
    })
}

/// Rows of short strings with the characters that CSV quoting and JSON escaping meet.
fn rows() -> impl Strategy<Value = Vec<Vec<String>>> {
    (1usize..4).prop_flat_map(|cols| {
        let cell = proptest::string::string_regex("[a-z0-9 ,\"\n\té\\\\{}\\[\\]:]{0,8}").unwrap();
        proptest::collection::vec(proptest::collection::vec(cell, cols), 0..12)
    })
}

/// An object in `format` holding `rows` (under headers h0, h1, ...), and its items.
fn valid(format: Format, rows: &[Vec<String>]) -> (Vec<u8>, Vec<Value>) {
    let cols = rows.first().map_or(1, Vec::len);
    let headers: Vec<String> = (0..cols).map(|i| format!("h{i}")).collect();
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            Value::Object(
                headers
                    .iter()
                    .cloned()
                    .zip(r.iter().map(|c| Value::String(c.clone())))
                    .collect(),
            )
        })
        .collect();
    let bytes = match format {
        Format::Json => serde_json::to_vec(&items).unwrap(),
        Format::Jsonl => items
            .iter()
            .map(|i| format!("{i}\n"))
            .collect::<String>()
            .into_bytes(),
        Format::Csv => {
            let line = |cells: &[String]| {
                let quoted: Vec<String> = cells
                    .iter()
                    .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
                    .collect();
                format!("{}\r\n", quoted.join(","))
            };
            let mut text = line(&headers);
            for r in rows {
                text.push_str(&line(r));
            }
            text.into_bytes()
        }
    };
    (bytes, items)
}

#[derive(Debug, Clone)]
enum Damage {
    None,
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Random(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        2 => Just(Damage::None),
        2 => any::<usize>().prop_map(Damage::Truncate),
        3 => (any::<usize>(), 1u8..=255).prop_map(|(at, x)| Damage::Flip(at, x)),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..6))
            .prop_map(|(at, b)| Damage::Insert(at, b)),
        2 => proptest::collection::vec(any::<u8>(), 0..256).prop_map(Damage::Random),
    ]
}

fn apply(bytes: &mut Vec<u8>, d: &Damage) {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
    match d {
        Damage::None => {}
        Damage::Truncate(i) => bytes.truncate(at(*i, bytes.len())),
        Damage::Flip(i, x) => {
            if !bytes.is_empty() {
                let i = at(*i, bytes.len());
                bytes[i] ^= x;
            }
        }
        Damage::Insert(i, b) => {
            let i = at(*i, bytes.len() + 1);
            bytes.splice(i..i, b.iter().copied());
        }
        Damage::Random(b) => *bytes = b.clone(),
    }
}

/// A failure's cause names where it is, unless it is about the object as a whole (these
/// are AWS's own messages).
fn names_a_place(e: &str, key: &str) -> bool {
    let whole = [
        "is empty",
        "Attempting to map over non-iterable node.",
        "CSV headers cannot contain duplicates.",
        "CSV headers exceed the 10 KB limit.",
    ];
    if whole.iter().any(|w| e.contains(w)) {
        return true;
    }
    let place = e.contains(&format!("s3://b/{key}"));
    let position = ["line ", "row ", "byte ", "item index ", "record "]
        .iter()
        .any(|p| e.contains(p));
    place && position
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x18_f022),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_object_in_any_pieces_gives_its_items_or_a_placed_error(
        format in prop_oneof![Just(Format::Csv), Just(Format::Json), Just(Format::Jsonl)],
        rows in rows(),
        damage in damage(),
        pieces in proptest::collection::vec(1usize..48, 1..8),
    ) {
        let w = world();
        let (mut bytes, items) = valid(format, &rows);
        apply(&mut bytes, &damage);
        let key = format!("o{}", w.next.fetch_add(1, Ordering::SeqCst));
        std::fs::write(w.dir.path().join("b").join(&key), &bytes).unwrap();
        w.objects.lock().unwrap().insert(format!("b/{key}"), (bytes.clone(), pieces));
        let local = read(&w.local, &key, format);
        let s3 = read(&w.s3, &key, format);
        prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a reader panicked on {:?}", bytes);
        prop_assert_eq!(&local, &s3, "the pieces changed the answer for {:?}", String::from_utf8_lossy(&bytes));
        if let Damage::None = damage {
            prop_assert_eq!(local.as_ref(), Ok(&items), "{:?}", String::from_utf8_lossy(&bytes));
        }
        if let Err(e) = &local {
            prop_assert!(!e.starts_with("HANG"), "{}", e);
            prop_assert!(names_a_place(e, &key), "{} ({:?})", e, String::from_utf8_lossy(&bytes));
        }
    }
}
