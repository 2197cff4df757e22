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
/// bytes at a time (byte by byte it was 2.5 % of the seed demo's CPU).
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
    while let Some(((op, path), body)) = conn
        .read_request(|r| {
            let op = match r.method.unwrap_or("") {
                "GET" => Op::Get,
                "HEAD" => Op::Head,
                "PUT" => Op::Put,
                _ => Op::Other,
            };
            // The SDKs add queries such as `?x-id=GetObject`: the key is the path.
            let path = r.path.unwrap_or("").split('?').next().unwrap_or("");
            (op, percent_decode(path.trim_start_matches('/')))
        })
        .await?
    {
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
        if conn.closing() {
            break;
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

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Starts serving `buckets` on 127.0.0.1 and a free port; runs until the runtime stops.
pub async fn serve(buckets: LocalBuckets) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(crate::http1::accept(listener, buckets, serve_conn));
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("b/a%20b%2Fc.jpg"), "b/a b/c.jpg");
        assert_eq!(percent_decode("b/100%"), "b/100%");
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
