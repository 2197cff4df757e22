//! The local buckets over HTTP, as the part of the S3 API that functions use:
//! GetObject, HeadObject and PutObject, path-style (`/bucket/key`). Functions get its
//! address as `AWS_ENDPOINT_URL`, so their S3 calls reach the `--buckets` folders
//! without a separate S3 server. Requests are not authenticated: it listens on
//! 127.0.0.1 only.

use crate::http1::Conn;
use shoal_buckets::{Error, LocalBuckets};
use std::net::SocketAddr;
use tokio::net::TcpListener;

const XML: (&str, &[u8]) = ("Content-Type", b"application/xml");

async fn xml_error(
    conn: &mut Conn,
    status: &str,
    code: &str,
    message: &str,
) -> std::io::Result<()> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    conn.respond(status, &[XML], body.as_bytes()).await
}

async fn failure(conn: &mut Conn, e: Error) -> std::io::Result<()> {
    let (status, code) = match e {
        Error::NoSuchKey { .. } => ("404 Not Found", "NoSuchKey"),
        Error::NoSuchBucket(_) => ("404 Not Found", "NoSuchBucket"),
        Error::InvalidKey { .. } | Error::InvalidBucket(_) => {
            ("400 Bad Request", "InvalidArgument")
        }
        _ => ("500 Internal Server Error", "InternalError"),
    };
    xml_error(conn, status, code, &e.to_string()).await
}

/// A weak but stable ETag: the body's length and a 64-bit FNV-style hash taken eight
/// bytes at a time (byte by byte it was 2.5 % of the seed demo's CPU). Not S3's MD5:
/// that is 12x the time (0.2 ms per 100 KiB photo, `etag_bench`, BENCHMARKS.md), about
/// a fifth more CPU on the seed demo, and the functions only compare ETags.
fn etag(body: &[u8]) -> String {
    let step = |h: u64, w: u64| (h ^ w).wrapping_mul(0x0100_0000_01b3);
    let mut chunks = body.chunks_exact(8);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = step(h, u64::from_le_bytes(w));
    }
    for b in chunks.remainder() {
        h = step(h, u64::from(*b));
    }
    format!("\"{:x}-{h:016x}\"", body.len())
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Get,
    Head,
    Put,
    Other,
}

const NOT_IMPLEMENTED: &str = "shoal serves GetObject, HeadObject and PutObject only";

async fn serve_conn(mut conn: Conn, buckets: LocalBuckets) -> std::io::Result<()> {
    // Checked before each request, so that every answer, refusals too, honours
    // `Connection: close`.
    while !conn.closing() {
        let Some(((op, path), body)) = conn
            .read_request(|r| {
                let op = match r.method.unwrap_or("") {
                    "GET" => Op::Get,
                    "HEAD" => Op::Head,
                    "PUT" => Op::Put,
                    _ => Op::Other,
                };
                (op, object_path(r.path.unwrap_or("")))
            })
            .await?
        else {
            break;
        };
        let Some(path) = path else {
            xml_error(
                &mut conn,
                "400 Bad Request",
                "InvalidURI",
                "Couldn't parse the specified URI.",
            )
            .await?;
            continue;
        };
        let Some((bucket, key)) = path.split_once('/') else {
            xml_error(
                &mut conn,
                "501 Not Implemented",
                "NotImplemented",
                NOT_IMPLEMENTED,
            )
            .await?;
            continue;
        };
        match op {
            Op::Get | Op::Head => {
                let (file, meta) = match buckets.open(bucket, key) {
                    Ok(o) => o,
                    Err(e) => {
                        failure(&mut conn, e).await?;
                        continue;
                    }
                };
                // HEAD reads the object too: its ETag is a hash of the bytes.
                match read_small_inline(file, meta.len()).await {
                    Ok(data) => {
                        let tag = etag(&data);
                        let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                        let modified = httpdate::fmt_http_date(modified);
                        let headers: [(&str, &[u8]); 3] = [
                            ("ETag", tag.as_bytes()),
                            ("Content-Type", b"application/octet-stream"),
                            ("Last-Modified", modified.as_bytes()),
                        ];
                        if op == Op::Head {
                            conn.respond_head("200 OK", &headers, data.len()).await?;
                        } else {
                            conn.respond("200 OK", &headers, &data).await?;
                        }
                    }
                    Err(e) => {
                        let path = format!("{bucket}/{key}");
                        failure(&mut conn, Error::Io { path, source: e }).await?
                    }
                }
            }
            Op::Put => {
                let tag = etag(&body);
                let r = if body.len() <= INLINE_IO {
                    buckets.put(bucket, key, &body)
                } else {
                    let (buckets, bucket, key) =
                        (buckets.clone(), bucket.to_string(), key.to_string());
                    tokio::task::spawn_blocking(move || buckets.put(&bucket, &key, &body))
                        .await
                        .unwrap_or_else(|e| Err(Error::Task(e.to_string())))
                };
                match r {
                    Ok(()) => {
                        conn.respond("200 OK", &[("ETag", tag.as_bytes())], b"")
                            .await?
                    }
                    Err(e) => failure(&mut conn, e).await?,
                }
            }
            Op::Other => {
                xml_error(
                    &mut conn,
                    "501 Not Implemented",
                    "NotImplemented",
                    NOT_IMPLEMENTED,
                )
                .await?
            }
        }
    }
    Ok(())
}

/// Objects up to this size are read and written on the serving thread. Handing each to
/// a blocking thread cost more than the I/O: the seed demo's function made 15 futex
/// calls in shoal per photo (two requests), and shoal's CPU was mostly the kernel's.
const INLINE_IO: usize = 1 << 20;

/// The file's bytes; a large file is read on a blocking thread.
async fn read_small_inline(mut file: std::fs::File, len: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut body = Vec::with_capacity(len as usize);
    if len as usize <= INLINE_IO {
        file.read_to_end(&mut body)?;
        return Ok(body);
    }
    tokio::task::spawn_blocking(move || file.read_to_end(&mut body).map(|_| body))
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
}

/// `bucket/key` from a request target, percent-escapes decoded (a `%` without two hex
/// digits stays as it is). The SDKs add queries such as `?x-id=GetObject`: the key is
/// the path. `None` for raw non-ASCII bytes or escapes that are not UTF-8, which S3
/// refuses as InvalidURI.
fn object_path(target: &str) -> Option<String> {
    let path = target
        .split('?')
        .next()
        .unwrap_or("")
        .trim_start_matches('/');
    if !path.is_ascii() {
        return None;
    }
    percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()
        .map(|p| p.into_owned())
}

/// Starts serving `buckets` on 127.0.0.1 and a free port; runs until the runtime stops.
pub async fn serve(buckets: LocalBuckets) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(serve_on(listener, buckets, crate::http1::Limits::default()));
    Ok(addr)
}

/// Serves `buckets` on `listener` with the given time limits until dropped.
pub async fn serve_on(listener: TcpListener, buckets: LocalBuckets, limits: crate::Limits) {
    crate::http1::accept(listener, limits, buckets, serve_conn).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes() {
        let path = |t: &str| object_path(t);
        assert_eq!(
            path("/b/a%20b%2Fc.jpg?x-id=GetObject").unwrap(),
            "b/a b/c.jpg"
        );
        assert_eq!(path("/b/100%").unwrap(), "b/100%");
        assert_eq!(path("/b/%zz%4").unwrap(), "b/%zz%4");
        assert_eq!(path("/b/%C3%A9.txt").unwrap(), "b/é.txt");
        for bad in ["/b/%a\u{e9}", "/b/\u{e9}", "/b/%FF", "/b/%C3"] {
            assert_eq!(path(bad), None, "{bad}");
        }
    }

    /// The ETag's cost against S3's own (MD5 of the body) on the seed demo's traffic:
    /// `cargo test --release -p shoal-lambda --lib etag_bench -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn etag_bench() {
        use md5::Digest;
        let bodies: Vec<Vec<u8>> = (0..2000u32)
            .map(|i| {
                (0..100 * 1024u32)
                    .map(|j| (j.wrapping_mul(2_654_435_761) ^ i) as u8)
                    .collect()
            })
            .collect();
        let time = |f: &dyn Fn(&[u8]) -> String| {
            let t = std::time::Instant::now();
            let n: usize = bodies.iter().map(|b| f(b).len()).sum();
            assert!(n > 0);
            t.elapsed().as_secs_f64() * 1000.0
        };
        let md5 = |b: &[u8]| format!("\"{:x}\"", md5::Md5::digest(b));
        let (mut fnv, mut m) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            fnv.push(time(&etag));
            m.push(time(&md5));
        }
        println!("2,000 x 100 KiB: FNV-style {fnv:.1?} ms, MD5 {m:.1?} ms");
    }

    /// Sends `raw` on one connection and returns all the server wrote until it closed.
    async fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(raw).await.unwrap();
        let mut out = Vec::new();
        // Every exchange ends with `Connection: close`: the server must close at once.
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(10), c.read_to_end(&mut out));
        assert!(read.await.is_ok(), "still open after {out:?}");
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn multibyte_and_broken_escapes_get_invalid_uri() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("b/é.txt"), b"accent").unwrap();
        let addr = serve(LocalBuckets::new(dir.path())).await.unwrap();
        for target in [
            "/b/%a\u{e9}",
            "/b/\u{e9}.txt",
            "/b/%\u{e9}\u{e9}",
            "/b/%FF.txt",
            "/b/%C3",
        ] {
            let raw = format!("GET {target} HTTP/1.1\r\nConnection: close\r\n\r\n");
            let out = raw_exchange(addr, raw.as_bytes()).await;
            assert!(out.starts_with("HTTP/1.1 400 "), "{target}: {out}");
            assert!(out.contains("<Code>InvalidURI</Code>"), "{target}: {out}");
        }
        let out = raw_exchange(addr, b"GET /b/none HTTP/1.1\r\nConnection: close\r\n\r\n").await;
        assert!(out.contains("<Code>NoSuchKey</Code>"), "{out}");
        // A well-formed escape of the same key still reads it, on the same connection
        // as a refused one.
        let out = raw_exchange(
            addr,
            b"GET /b/%aa\xc3\xa9 HTTP/1.1\r\n\r\nGET /b/%C3%A9.txt HTTP/1.1\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
        assert!(out.ends_with("\r\n\r\naccent"), "{out}");
    }

    #[tokio::test]
    async fn object_store_reads_and_writes_through_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("b/in.txt"), b"hello").unwrap();
        let addr = serve(LocalBuckets::new(dir.path())).await.unwrap();
        std::env::set_var("AWS_ACCESS_KEY_ID", "x");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "y");
        let s3 = shoal_buckets::Buckets::s3(shoal_buckets::S3Options {
            endpoint: Some(format!("http://{addr}")),
            region: None,
        });
        assert_eq!(s3.get("b", "in.txt").await.unwrap(), b"hello");
        s3.put("b", "out/x y.txt", b"thumb".to_vec()).await.unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("b/out/x y.txt")).unwrap(),
            b"thumb"
        );
        assert!(matches!(
            s3.get("b", "missing").await,
            Err(Error::NoSuchKey { .. })
        ));
        // HEAD says the length and sends no body: the next response on the same
        // connection starts right after its head.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"HEAD /b/in.txt HTTP/1.1\r\n\r\nGET /b/in.txt?x-id=GetObject HTTP/1.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        let parts: Vec<&str> = out.split("\r\n\r\n").collect();
        assert_eq!(parts.len(), 3, "{out}");
        assert!(parts[0].contains("Content-Length: 5"), "{out}");
        assert!(parts[1].starts_with("HTTP/1.1 200 OK"), "{out}");
        assert_eq!(parts[2], "hello", "{out}");
    }
}
