//! object_store's HTTP for plain `http://` endpoints, such as shoal's local S3 or a
//! SeaweedFS: HTTP/1.1 on kept-alive connections, written and read on the calling task.
//! reqwest and hyper cost this function more per photo than the S3 logic above them (a
//! connection task per client, per-request URL parsing, timers); `https://` still goes
//! through reqwest. Whole bodies are read into memory: this function's objects are photos.

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpResponseBody, HttpService, ReqwestConnector,
};
use object_store::ClientOptions;
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Replies larger than this are refused rather than held in memory.
const MAX_BODY: usize = 1 << 30;

#[derive(Debug, Default)]
pub struct PlainHttpConnector;

impl HttpConnector for PlainHttpConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(PlainHttp {
            tls: ReqwestConnector::default().connect(options)?,
            idle: Mutex::new(Vec::new()),
        }))
    }
}

#[derive(Debug)]
struct PlainHttp {
    tls: HttpClient,
    /// Kept-alive connections, by `host:port`.
    idle: Mutex<Vec<(String, TcpStream)>>,
}

fn error(kind: HttpErrorKind, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> HttpError {
    HttpError::new_boxed(kind, e.into())
}

#[async_trait::async_trait]
impl HttpService for PlainHttp {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        if req.uri().scheme_str() != Some("http") {
            return self.tls.execute(req).await;
        }
        let (parts, body) = req.into_parts();
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or_else(|| error(HttpErrorKind::Request, "a URL with no host"))?;
        let body = match body.as_bytes() {
            Some(b) => b.clone(),
            None => body
                .collect()
                .await
                .map_err(|e| error(HttpErrorKind::Request, e))?
                .to_bytes(),
        };
        let mut head = Vec::with_capacity(512);
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        for s in [
            parts.method.as_str(),
            " ",
            target,
            " HTTP/1.1\r\nhost: ",
            &authority,
            "\r\n",
        ] {
            head.extend_from_slice(s.as_bytes());
        }
        for (k, v) in &parts.headers {
            head.extend_from_slice(k.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(v.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        if !parts.headers.contains_key(http::header::CONTENT_LENGTH)
            && (!body.is_empty() || matches!(parts.method, http::Method::PUT | http::Method::POST))
        {
            head.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        let no_body = parts.method == http::Method::HEAD;

        // A kept-alive connection the server has since closed fails before any reply:
        // then the request goes again on a fresh one.
        loop {
            let pooled = {
                let mut idle = self
                    .idle
                    .lock()
                    .map_err(|e| error(HttpErrorKind::Unknown, e.to_string()))?;
                idle.iter()
                    .rposition(|(a, _)| *a == authority)
                    .map(|i| idle.swap_remove(i).1)
            };
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(c) => c,
                None => {
                    let c = TcpStream::connect(&authority)
                        .await
                        .map_err(|e| error(HttpErrorKind::Connect, e))?;
                    let _ = c.set_nodelay(true);
                    c
                }
            };
            match exchange(&mut conn, &head, &body, no_body).await {
                Ok((response, keep)) => {
                    if keep {
                        if let Ok(mut idle) = self.idle.lock() {
                            idle.push((authority, conn));
                        }
                    }
                    return Ok(response);
                }
                Err(Failure::BeforeReply(_)) if reused => continue,
                Err(Failure::BeforeReply(e)) => return Err(error(HttpErrorKind::Request, e)),
                Err(Failure::Reply(e)) => return Err(error(HttpErrorKind::Decode, e)),
            }
        }
    }
}

enum Failure {
    /// Nothing of the reply came: the request may go again.
    BeforeReply(std::io::Error),
    Reply(std::io::Error),
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

async fn read_more(conn: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    match conn.read_buf(buf).await? {
        0 => Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "reply cut short",
        )),
        n => Ok(n),
    }
}

/// Sends one request and reads its reply; says whether the connection can be reused.
async fn exchange(
    conn: &mut TcpStream,
    head: &[u8],
    body: &Bytes,
    no_body: bool,
) -> Result<(HttpResponse, bool), Failure> {
    let sent = async {
        conn.write_all(head).await?;
        conn.write_all(body).await
    };
    sent.await.map_err(Failure::BeforeReply)?;
    let mut buf = BytesMut::with_capacity(8192);
    let (mut builder, head_len, length, chunked, close) = loop {
        if conn
            .read_buf(&mut buf)
            .await
            .map_err(Failure::BeforeReply)?
            == 0
        {
            let e = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before a reply");
            return Err(if buf.is_empty() {
                Failure::BeforeReply(e)
            } else {
                Failure::Reply(e)
            });
        }
        let mut headers = [httparse::EMPTY_HEADER; 100];
        let mut r = httparse::Response::new(&mut headers);
        match r.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let status = r.code.unwrap_or(500);
                let mut builder = http::Response::builder().status(status);
                let (mut length, mut chunked, mut close) = (None, false, false);
                for h in r.headers.iter() {
                    // The body's framing is this module's business; a HEAD reply keeps
                    // its length, which is the object's.
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<usize>().ok());
                        if !no_body {
                            continue;
                        }
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = h.value.eq_ignore_ascii_case(b"chunked");
                        continue;
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        close = h.value.eq_ignore_ascii_case(b"close");
                    }
                    builder = builder.header(h.name, h.value);
                }
                let empty =
                    no_body || status == 204 || status == 304 || (100..200).contains(&status);
                if empty {
                    length = Some(0);
                    chunked = false;
                }
                break (builder, n, length, chunked, close);
            }
            Ok(httparse::Status::Partial) if buf.len() < 64 * 1024 => continue,
            Ok(httparse::Status::Partial) => {
                return Err(Failure::Reply(bad("a reply head over 64 KiB")))
            }
            Err(e) => return Err(Failure::Reply(bad(&format!("a malformed reply: {e}")))),
        }
    };
    buf.advance(head_len);
    let (body, keep) = if chunked {
        let mut out = BytesMut::new();
        loop {
            let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
                read_more(conn, &mut buf).await.map_err(Failure::Reply)?;
                continue;
            };
            let size = std::str::from_utf8(&buf[..eol])
                .ok()
                .and_then(|l| {
                    usize::from_str_radix(l.split(';').next().unwrap_or("").trim(), 16).ok()
                })
                .ok_or_else(|| Failure::Reply(bad("a malformed chunk size")))?;
            if size > MAX_BODY - out.len() {
                return Err(Failure::Reply(bad("a reply over 1 GiB")));
            }
            if size == 0 {
                // Trailers, up to the empty line.
                buf.advance(eol + 2);
                loop {
                    match buf.windows(2).position(|w| w == b"\r\n") {
                        Some(0) => {
                            buf.advance(2);
                            break;
                        }
                        Some(n) => buf.advance(n + 2),
                        None => {
                            read_more(conn, &mut buf).await.map_err(Failure::Reply)?;
                        }
                    }
                }
                break;
            }
            while buf.len() < eol + 2 + size + 2 {
                read_more(conn, &mut buf).await.map_err(Failure::Reply)?;
            }
            out.extend_from_slice(&buf[eol + 2..eol + 2 + size]);
            buf.advance(eol + 2 + size + 2);
        }
        (out.freeze(), !close && buf.is_empty())
    } else if let Some(n) = length {
        if n > MAX_BODY {
            return Err(Failure::Reply(bad("a reply over 1 GiB")));
        }
        buf.reserve(n.saturating_sub(buf.len()));
        while buf.len() < n {
            read_more(conn, &mut buf).await.map_err(Failure::Reply)?;
        }
        let body = buf.split_to(n).freeze();
        (body, !close && buf.is_empty())
    } else {
        // No length: the body runs to the end of the connection.
        loop {
            match conn.read_buf(&mut buf).await.map_err(Failure::Reply)? {
                0 => break,
                _ if buf.len() > MAX_BODY => return Err(Failure::Reply(bad("a reply over 1 GiB"))),
                _ => {}
            }
        }
        (buf.freeze(), false)
    };
    if !no_body {
        builder = builder.header("content-length", body.len());
    }
    let response = builder
        .body(HttpResponseBody::from(body))
        .map_err(|e| Failure::Reply(bad(&e.to_string())))?;
    Ok((response, keep))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};

    /// A server that answers each connection's requests with the next scripted replies,
    /// and records every request head and body it got.
    fn server(script: Vec<Vec<&'static [u8]>>) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for replies in script {
                let (conn, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                for reply in replies {
                    let mut head = String::new();
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        reader.read_line(&mut line).unwrap();
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap();
                        }
                        head.push_str(&line);
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    seen.push(format!("{head}{}", String::from_utf8_lossy(&body)));
                    conn.write_all(reply).unwrap();
                }
            }
            seen
        });
        (addr, handle)
    }

    fn client() -> PlainHttp {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let options = ClientOptions::new().with_no_system_certificates(true);
        PlainHttp {
            tls: ReqwestConnector::default().connect(&options).unwrap(),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn request(method: &str, url: String, body: &'static [u8]) -> HttpRequest {
        http::Request::builder()
            .method(method)
            .uri(url)
            .header("x-amz-meta-a", "1")
            .body(Bytes::from_static(body).into())
            .unwrap()
    }

    async fn body(r: HttpResponse) -> Bytes {
        r.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn replies_by_length_chunks_and_head_on_one_connection() {
        let (addr, server) = server(vec![vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nx-trailer: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 7\r\n\r\nmissing",
        ]]);
        let c = client();
        let r = c
            .call(request("GET", format!("http://{addr}/b/k"), b""))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["etag"], "\"x\"");
        assert_eq!(body(r).await, "hello");
        let r = c
            .call(request(
                "PUT",
                format!("http://{addr}/b/k?x-id=PutObject"),
                b"thumb",
            ))
            .await
            .unwrap();
        assert_eq!(r.headers()["content-length"], "5");
        assert!(r.headers().get("transfer-encoding").is_none());
        assert_eq!(body(r).await, "abcde");
        let r = c
            .call(request("HEAD", format!("http://{addr}/b/k"), b""))
            .await
            .unwrap();
        assert_eq!(r.headers()["content-length"], "12345");
        assert_eq!(body(r).await, "");
        let r = c
            .call(request("GET", format!("http://{addr}/b/gone"), b""))
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(body(r).await, "missing");
        let seen = server.join().unwrap();
        assert_eq!(
            seen.len(),
            4,
            "all on the one connection the server accepted"
        );
        assert!(
            seen[0].starts_with(&format!("GET /b/k HTTP/1.1\r\nhost: {addr}\r\n")),
            "{}",
            seen[0]
        );
        assert!(seen[0].contains("x-amz-meta-a: 1\r\n"), "{}", seen[0]);
        assert!(
            seen[1].starts_with("PUT /b/k?x-id=PutObject HTTP/1.1\r\n"),
            "{}",
            seen[1]
        );
        assert!(
            seen[1].ends_with("content-length: 5\r\n\r\nthumb"),
            "{}",
            seen[1]
        );
    }

    #[tokio::test]
    async fn a_closed_connection_is_replaced_and_a_reply_without_length_runs_to_the_end() {
        let (addr, server) = server(vec![
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"],
            vec![b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end"],
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"],
        ]);
        let c = client();
        assert_eq!(
            body(
                c.call(request("GET", format!("http://{addr}/a"), b""))
                    .await
                    .unwrap()
            )
            .await,
            "a"
        );
        // The server closed the first connection: the request goes again on a new one.
        let r = c
            .call(request("GET", format!("http://{addr}/b"), b""))
            .await
            .unwrap();
        assert_eq!(body(r).await, "to the end");
        // That reply ended the connection: the next request opens a third.
        let r = c
            .call(request("PUT", format!("http://{addr}/c"), b""))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(server.join().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_malformed_reply_is_an_error_not_a_retry() {
        let (addr, server) = server(vec![vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ]]);
        let e = client()
            .call(request("GET", format!("http://{addr}/a"), b""))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("chunk size"), "{e}");
        server.join().unwrap();
    }

    /// A chunk size near usize::MAX once wrapped the arithmetic and sliced out of
    /// bounds (a panic in release too).
    #[tokio::test]
    async fn a_huge_chunk_size_is_an_error() {
        let (addr, server) = server(vec![vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\nffffffffffffffff\r\nab\r\n0\r\n\r\n",
        ]]);
        let e = client()
            .call(request("GET", format!("http://{addr}/a"), b""))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("over 1 GiB"), "{e}");
        server.join().unwrap();
    }

    use proptest::prelude::*;

    /// Replies: random bytes, or a plausible head (by length, chunked or to the end)
    /// with a damaged or random body.
    fn reply() -> impl Strategy<Value = Vec<u8>> {
        let framed = (
            prop_oneof![
                Just("Content-Length: 5\r\n".to_string()),
                Just("Transfer-Encoding: chunked\r\n".to_string()),
                Just(String::new()),
                "[0-9a-f]{1,20}".prop_map(|n| format!("Content-Length: {n}\r\n")),
            ],
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..64),
                "([0-9a-fA-F;x=]{0,18}\r\n[a-z]{0,6}\r\n){0,4}".prop_map(String::into_bytes),
            ],
        )
            .prop_map(|(framing, body)| {
                let mut r = format!("HTTP/1.1 200 OK\r\n{framing}\r\n").into_bytes();
                r.extend(body);
                r
            });
        prop_oneof![proptest::collection::vec(any::<u8>(), 0..200), framed]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x9a11),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Any reply, cut into any pieces, then the connection closed: a response or an
        /// error, never a panic, and never a wait past the close.
        #[test]
        fn any_reply_in_any_pieces_gives_a_response_or_an_error(
            bytes in reply(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            at.push(bytes.len());
            at.sort_unstable();
            let sent = bytes.clone();
            let server = std::thread::spawn(move || {
                let (mut conn, _) = listener.accept().unwrap();
                let mut from = 0;
                for to in at {
                    if conn.write_all(&sent[from..to]).is_err() {
                        return;
                    }
                    let _ = conn.flush();
                    std::thread::sleep(std::time::Duration::from_micros(200));
                    from = to;
                }
                let _ = conn.shutdown(std::net::Shutdown::Write);
                let _ = std::io::copy(&mut conn, &mut std::io::sink());
            });
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let done = rt.block_on(async {
                let c = client();
                let call = c.call(request("GET", format!("http://{addr}/a"), b""));
                let r = tokio::time::timeout(std::time::Duration::from_secs(10), call).await;
                drop(c);
                r
            });
            prop_assert!(done.is_ok(), "no answer 10 s after the close: {:?}", String::from_utf8_lossy(&bytes));
            server.join().unwrap();
        }
    }

    /// This connector against object_store's own (reqwest) through shoal's S3 endpoint:
    /// 2,000 PUT + GET of 100 KiB, interleaved, 3 rounds:
    /// `cargo test --release -p shoal-resize --bin shoal-resize plain_http_bench -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn plain_http_bench() {
        use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
        use object_store::{path::Path, ClientConfigKey, ObjectStoreExt};
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        let server = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let addr = server
            .block_on(shoal_lambda::s3serve::serve(
                shoal_buckets::LocalBuckets::new(dir.path()),
            ))
            .unwrap();
        let store = |plain: bool| {
            let b = AmazonS3Builder::new()
                .with_bucket_name("b")
                .with_region("us-east-1")
                .with_allow_http(true)
                .with_endpoint(format!("http://{addr}"))
                .with_virtual_hosted_style_request(false)
                .with_config(AmazonS3ConfigKey::SkipSignature, "true")
                .with_config(
                    AmazonS3ConfigKey::Client(ClientConfigKey::NoSystemCertificates),
                    "true",
                );
            if plain {
                b.with_http_connector(PlainHttpConnector)
            } else {
                b
            }
            .build()
            .unwrap()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let body: Vec<u8> = (0..100 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect();
        let run = |plain: bool| {
            let s = store(plain);
            rt.block_on(async {
                let t = std::time::Instant::now();
                for i in 0..2000 {
                    let p = Path::from(format!("k{}", i % 50));
                    s.put(&p, body.clone().into()).await.unwrap();
                    let got = s.get(&p).await.unwrap().bytes().await.unwrap();
                    assert_eq!(got.len(), body.len());
                }
                t.elapsed().as_secs_f64()
            })
        };
        let (mut plain, mut reqwest) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            plain.push(run(true));
            reqwest.push(run(false));
        }
        println!("2,000 PUT+GET of 100 KiB: plain_http {plain:.3?} s, reqwest {reqwest:.3?} s");
    }
}
