//! The local buckets over HTTP, as the part of the S3 API that functions use:
//! GetObject, HeadObject and PutObject, path-style (`/bucket/key`). Functions get its
//! address as `AWS_ENDPOINT_URL`, so their S3 calls reach the `--buckets` folders
//! without a separate S3 server. Requests are not authenticated: it listens on
//! 127.0.0.1 only.

use crate::{Error, LocalBuckets};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use tokio::net::TcpListener;

fn xml_error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("Content-Type", "application/xml".parse().expect("a header"));
    r
}

fn failure(e: Error) -> Response<Full<Bytes>> {
    match e {
        Error::NoSuchKey { .. } => xml_error(StatusCode::NOT_FOUND, "NoSuchKey", &e.to_string()),
        Error::NoSuchBucket(_) => xml_error(StatusCode::NOT_FOUND, "NoSuchBucket", &e.to_string()),
        Error::InvalidKey { .. } | Error::InvalidBucket(_) => {
            xml_error(StatusCode::BAD_REQUEST, "InvalidArgument", &e.to_string())
        }
        other => xml_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &other.to_string(),
        ),
    }
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

async fn handle(buckets: LocalBuckets, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().trim_start_matches('/').to_string();
    let decoded = percent_decode(&path);
    let Some((bucket, key)) = decoded.split_once('/') else {
        return xml_error(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "shoal serves GetObject, HeadObject and PutObject only",
        );
    };
    let (bucket, key) = (bucket.to_string(), key.to_string());
    let method = req.method().clone();
    match method {
        Method::GET | Method::HEAD => {
            let opened = match buckets.open(&bucket, &key) {
                Ok(o) => o,
                Err(e) => return failure(e),
            };
            let (file, meta) = opened;
            // HEAD reads the object too: its ETag is a hash of the bytes.
            match read_small_inline(file, meta.len()).await {
                Ok(body) => {
                    let tag = etag(&body);
                    let body = if method == Method::HEAD {
                        Bytes::new()
                    } else {
                        Bytes::from(body)
                    };
                    let mut resp = Response::new(Full::new(body));
                    let h = resp.headers_mut();
                    let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                    for (k, v) in [
                        ("ETag", tag),
                        ("Content-Length", meta.len().to_string()),
                        ("Content-Type", "application/octet-stream".into()),
                        ("Last-Modified", httpdate::fmt_http_date(modified)),
                    ] {
                        if let Ok(v) = v.parse() {
                            h.insert(k, v);
                        }
                    }
                    resp
                }
                Err(e) => failure(Error::Io {
                    path: format!("{bucket}/{key}"),
                    source: e,
                }),
            }
        }
        Method::PUT => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return xml_error(StatusCode::BAD_REQUEST, "IncompleteBody", &e.to_string())
                }
            };
            let tag = etag(&body);
            let r = if body.len() <= INLINE_IO {
                buckets.put(&bucket, &key, &body)
            } else {
                tokio::task::spawn_blocking(move || buckets.put(&bucket, &key, &body))
                    .await
                    .unwrap_or_else(|e| Err(Error::Task(e.to_string())))
            };
            match r {
                Ok(()) => {
                    let mut resp = Response::new(Full::new(Bytes::new()));
                    if let Ok(v) = tag.parse() {
                        resp.headers_mut().insert("ETag", v);
                    }
                    resp
                }
                Err(e) => failure(e),
            }
        }
        _ => xml_error(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "shoal serves GetObject, HeadObject and PutObject only",
        ),
    }
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
    tokio::spawn(crate::serve_http(listener, buckets, handle));
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
        let s3 = crate::Store::s3(crate::S3Options {
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
    }
}
