//! A small HTTP/1.1 server connection, for the Lambda Runtime API's hot path.
//!
//! Each invocation is two requests on a kept-alive connection. hyper's general
//! machinery (a header map and a body channel per request, a response object, a
//! task per service call) cost a tenth of all CPU at 10,000 invocations/s; this
//! reads a request into one reused buffer and writes each response with one call.
//! It speaks what Runtime API clients send: Content-Length or chunked bodies,
//! `Expect: 100-continue`, keep-alive and `Connection: close`, pipelined requests.
//! A client that falls silent or trickles is cut off (see [`Limits`]).

use bytes::{Buf, Bytes, BytesMut};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Larger heads get 431; larger bodies 413 (S3's limit for one PutObject).
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 5 << 30;
/// Bodies up to this size are copied behind the head; larger ones go out by writev.
const COPY_BODY: usize = 4 * 1024;
/// A body, in or out, gets a second per this many bytes on top of [`Limits::request`]:
/// slow enough for any honest client, and a 5 GiB PutObject still ends. Coming in, the
/// time is earned by the bytes that arrive, not by the size the head claims.
const BODY_RATE: usize = 1 << 20;

/// How long a client may keep the connection waiting on it.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Between requests: silent this long, the connection is closed. `None`: no limit.
    pub idle: Option<Duration>,
    /// From a request's first byte to the end of its head and body (408 after that),
    /// and for writing a response; bodies get a second per MiB more.
    pub request: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            idle: Some(Duration::from_secs(60)),
            request: Duration::from_secs(60),
        }
    }
}

/// Time for `n` body bytes on top of [`Limits::request`].
fn body_time(n: usize) -> Duration {
    Duration::from_secs((n / BODY_RATE) as u64)
}

/// Serves each connection of `listener` with `serve`, until the task is dropped (which
/// drops the connections too).
pub async fn accept<S, F, Fut>(
    listener: tokio::net::TcpListener,
    limits: Limits,
    state: S,
    serve: F,
) where
    S: Clone,
    F: Fn(Conn, S) -> Fut,
    Fut: std::future::Future<Output = io::Result<()>> + Send + 'static,
{
    let mut conns = tokio::task::JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                while conns.try_join_next().is_some() {}
                conns.spawn(serve(Conn::new(stream, limits), state.clone()));
            }
            Err(e) => accept_failed(&e).await,
        }
    }
}

/// After a failed accept. The listener is still good: the connection was reset before
/// it was taken, or no descriptor is free (EMFILE) until connections close, so wait a
/// little and go on. Ending the loop would leave the port open and nobody answering.
async fn accept_failed(e: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    if !matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    out: Vec<u8>,
    close: bool,
    limits: Limits,
    /// When the read under way gives up; `None`: never.
    deadline: Option<Instant>,
}

/// What the request head said about its body and the connection.
struct Framing {
    length: Option<usize>,
    chunked: bool,
    expect_continue: bool,
    close: bool,
}

impl Conn {
    pub fn new(stream: TcpStream, limits: Limits) -> Conn {
        // Request/response over loopback: never hold a small write back for an ACK.
        let _ = stream.set_nodelay(true);
        Conn {
            stream,
            buf: BytesMut::with_capacity(8 * 1024),
            out: Vec::with_capacity(1024),
            close: false,
            limits,
            deadline: None,
        }
    }

    /// Reads what the client sent into `buf`; `TimedOut` past the deadline.
    async fn read_more(&mut self) -> io::Result<usize> {
        let read = self.stream.read_buf(&mut self.buf);
        match self.deadline {
            None => read.await,
            Some(at) => tokio::time::timeout_at(at, read)
                .await
                .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into())),
        }
    }

    fn request_deadline(&self) -> Option<Instant> {
        Some(Instant::now() + self.limits.request)
    }

    /// Whether the last request asked to close the connection after its response.
    pub fn closing(&self) -> bool {
        self.close
    }

    /// Reads the next request: `see` picks what the caller needs from its head, and
    /// the body comes whole. `None` when the client closed or fell silent between
    /// requests. A malformed or late request is answered (400, 408, 413, 431) and ends
    /// the connection.
    pub async fn read_request<R>(
        &mut self,
        see: impl FnOnce(&httparse::Request<'_, '_>) -> R,
    ) -> io::Result<Option<(R, Bytes)>> {
        // A pipelined request is under way already; otherwise the client may be idle.
        self.deadline = if self.buf.is_empty() {
            self.limits.idle.map(|d| Instant::now() + d)
        } else {
            self.request_deadline()
        };
        let (seen, framing, head_len) = loop {
            if !self.buf.is_empty() {
                // As many as hyper allows: S3 clients send a dozen, plus user metadata.
                let mut headers = [httparse::EMPTY_HEADER; 100];
                let mut req = httparse::Request::new(&mut headers);
                match req.parse(&self.buf) {
                    // Checked on a whole head too: one read can bring a head past the
                    // limit along with its end.
                    Ok(httparse::Status::Complete(n)) if n > MAX_HEAD => {
                        return self.refuse("431 Request Header Fields Too Large").await;
                    }
                    Ok(httparse::Status::Complete(n)) => {
                        let framing = framing(&req);
                        break (see(&req), framing, n);
                    }
                    Ok(httparse::Status::Partial) if self.buf.len() > MAX_HEAD => {
                        return self.refuse("431 Request Header Fields Too Large").await;
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(_) => return self.refuse("400 Bad Request").await,
                }
            }
            let idle = self.buf.is_empty();
            match self.read_more().await {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) if idle => self.deadline = self.request_deadline(),
                Ok(_) => {}
                // Silent between requests: nothing to answer.
                Err(e) if e.kind() == io::ErrorKind::TimedOut && self.buf.is_empty() => {
                    return Ok(None)
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return self.refuse("408 Request Timeout").await
                }
                Err(e) => return Err(e),
            }
        };
        let Some(framing) = framing else {
            return self.refuse("400 Bad Request").await;
        };
        self.buf.advance(head_len);
        self.close = framing.close;
        let has_body = framing.chunked || framing.length.is_some_and(|n| n > 0);
        if framing.expect_continue && has_body {
            self.stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await?;
        }
        let body = match self.read_body(&framing).await {
            Ok(Ok(body)) => body,
            Ok(Err(status)) => return self.refuse(status).await,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return self.refuse("408 Request Timeout").await
            }
            Err(e) => return Err(e),
        };
        Ok(Some((seen, body)))
    }

    /// The body the head announced; `Err(status)` when it is refused.
    async fn read_body(&mut self, framing: &Framing) -> io::Result<Result<Bytes, &'static str>> {
        if framing.chunked {
            return Ok(self.read_chunked().await?.ok_or("400 Bad Request"));
        }
        let n = framing.length.unwrap_or(0);
        if n > MAX_BODY {
            return Ok(Err("413 Payload Too Large"));
        }
        let base = self.deadline;
        while self.buf.len() < n {
            // Grown as bytes arrive, not by what the head claims; the time too, or a
            // client that claims 5 GiB and falls silent holds the connection for hours.
            self.buf.reserve((n - self.buf.len()).min(1 << 20));
            self.deadline = base.map(|d| d + body_time(self.buf.len()));
            self.fill().await?;
        }
        Ok(Ok(self.buf.split_to(n).freeze()))
    }

    /// A chunked body, trailers read and dropped; `None` when the framing is bad.
    async fn read_chunked(&mut self) -> io::Result<Option<Bytes>> {
        let mut body = BytesMut::new();
        let base = self.deadline;
        loop {
            // Time is earned by the bytes that arrived, as in `read_body`.
            self.deadline = base.map(|d| d + body_time(body.len() + self.buf.len()));
            let (skip, size) = loop {
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((skip, size))) => break (skip, size),
                    Ok(httparse::Status::Partial) if self.buf.len() <= MAX_HEAD => {
                        self.fill().await?
                    }
                    _ => return Ok(None),
                }
            };
            let Ok(size) = usize::try_from(size) else {
                return Ok(None);
            };
            if body.len().saturating_add(size) > MAX_BODY {
                return Ok(None);
            }
            self.buf.advance(skip);
            if size == 0 {
                // Trailers, if any, up to the empty line.
                loop {
                    let mut trailers = [httparse::EMPTY_HEADER; 16];
                    match httparse::parse_headers(&self.buf, &mut trailers) {
                        Ok(httparse::Status::Complete((n, _))) => {
                            self.buf.advance(n);
                            return Ok(Some(body.freeze()));
                        }
                        Ok(httparse::Status::Partial) if self.buf.len() <= MAX_HEAD => {
                            self.fill().await?
                        }
                        _ => return Ok(None),
                    }
                }
            }
            while self.buf.len() < size + 2 {
                self.deadline = base.map(|d| d + body_time(body.len() + self.buf.len()));
                self.fill().await?;
            }
            body.extend_from_slice(&self.buf[..size]);
            if &self.buf[size..size + 2] != b"\r\n" {
                return Ok(None);
            }
            self.buf.advance(size + 2);
        }
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.read_more().await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    async fn refuse<R>(&mut self, status: &str) -> io::Result<Option<R>> {
        self.close = true;
        let _ = self.respond(status, &[], b"").await;
        // Read what the client still sends before closing: closing on unread data
        // resets the connection, and the client may lose the answer.
        let _ = self.stream.shutdown().await;
        let drain = async {
            let mut sink = [0u8; 8192];
            while matches!(self.stream.read(&mut sink).await, Ok(n) if n > 0) {}
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            status.to_string(),
        ))
    }

    /// Writes one response (`status` as in "200 OK") in a single write or writev.
    pub async fn respond(
        &mut self,
        status: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
    ) -> io::Result<()> {
        self.send(status, headers, body.len(), body).await
    }

    /// A response to HEAD: the length of the body a GET would get, and no body.
    pub async fn respond_head(
        &mut self,
        status: &str,
        headers: &[(&str, &[u8])],
        length: usize,
    ) -> io::Result<()> {
        self.send(status, headers, length, b"").await
    }

    /// Writes a response, in the time a request of its size gets: a client that does
    /// not read does not hold the connection either.
    async fn send(
        &mut self,
        status: &str,
        headers: &[(&str, &[u8])],
        length: usize,
        body: &[u8],
    ) -> io::Result<()> {
        let limit = self.limits.request + body_time(body.len());
        tokio::time::timeout(limit, self.write_response(status, headers, length, body))
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    }

    async fn write_response(
        &mut self,
        status: &str,
        headers: &[(&str, &[u8])],
        length: usize,
        body: &[u8],
    ) -> io::Result<()> {
        let out = &mut self.out;
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (name, value) in headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if self.close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(itoa(length as u64, &mut [0; 20]));
        out.extend_from_slice(b"\r\n\r\n");
        if body.len() <= COPY_BODY {
            out.extend_from_slice(body);
            return self.stream.write_all(&self.out).await;
        }
        let mut bufs = [io::IoSlice::new(&self.out), io::IoSlice::new(body)];
        let mut left = &mut bufs[..];
        while !left.is_empty() {
            let n = self.stream.write_vectored(left).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            io::IoSlice::advance_slices(&mut left, n);
        }
        Ok(())
    }
}

/// Body length, chunking and connection handling from the head; `None` if they conflict.
fn framing(req: &httparse::Request<'_, '_>) -> Option<Framing> {
    let mut f = Framing {
        length: None,
        chunked: false,
        expect_continue: false,
        // HTTP/1.0 closes unless it asks to keep the connection.
        close: req.version == Some(0),
    };
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).ok()?.trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = value.parse().ok()?;
            if f.length.is_some_and(|m| m != n) {
                return None;
            }
            f.length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or("").trim();
            if !last.eq_ignore_ascii_case("chunked") {
                return None;
            }
            f.chunked = true;
        } else if h.name.eq_ignore_ascii_case("expect") {
            f.expect_continue = value.eq_ignore_ascii_case("100-continue");
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    f.close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    f.close = false;
                }
            }
        }
    }
    // Both framings at once is how requests get smuggled.
    if f.chunked && f.length.is_some() {
        return None;
    }
    Some(f)
}

pub(crate) fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::net::TcpListener;

    /// Sends `raw` in pieces of `step` bytes to a server that answers each request
    /// with its path and body, and returns everything the server wrote.
    async fn exchange(raw: &[u8], step: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut conn = Conn::new(s, Limits::default());
            while let Ok(Some((path, body))) = conn
                .read_request(|r| r.path.unwrap_or("").to_string())
                .await
            {
                let text = format!("{path}|{}", String::from_utf8_lossy(&body));
                conn.respond("200 OK", &[("X-A", b"1")], text.as_bytes())
                    .await
                    .unwrap();
                if conn.closing() {
                    break;
                }
            }
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        for piece in raw.chunks(step) {
            c.write_all(piece).await.unwrap();
            tokio::task::yield_now().await;
        }
        c.shutdown().await.unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        server.await.unwrap();
        out
    }

    fn bodies(out: &str) -> Vec<&str> {
        out.split("HTTP/1.1 ")
            .filter(|r| !r.is_empty())
            .map(|r| r.split("\r\n\r\n").nth(1).unwrap_or(""))
            .collect()
    }

    #[tokio::test]
    async fn keep_alive_pipelined_and_split_requests() {
        let raw = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /c HTTP/1.1\r\n\r\n";
        for step in [1, 7, raw.len()] {
            let out = exchange(raw, step).await;
            assert_eq!(
                bodies(&out),
                ["/a|", "/b|hello", "/c|"],
                "step {step}: {out}"
            );
            assert!(
                out.contains("X-A: 1\r\nContent-Length: 3\r\n\r\n/a|"),
                "{out}"
            );
        }
    }

    #[tokio::test]
    async fn many_headers_are_accepted() {
        let meta: String = (0..90).map(|i| format!("x-amz-meta-k{i}: v\r\n")).collect();
        let raw = format!("PUT /m HTTP/1.1\r\n{meta}Content-Length: 2\r\n\r\nok");
        let out = exchange(raw.as_bytes(), 4096).await;
        assert_eq!(bodies(&out), ["/m|ok"], "{out}");
    }

    #[tokio::test]
    async fn chunked_bodies_with_trailers() {
        let raw = b"POST /r HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nLambda-Runtime-Function-Error-Type: X\r\n\r\nGET /n HTTP/1.1\r\n\r\n";
        for step in [1, 5, raw.len()] {
            let out = exchange(raw, step).await;
            assert_eq!(
                bodies(&out),
                ["/r|hello world", "/n|"],
                "step {step}: {out}"
            );
        }
    }

    #[tokio::test]
    async fn expect_continue_is_answered_before_the_body() {
        let out = exchange(
            b"POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok",
            1000,
        )
        .await;
        assert!(
            out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"),
            "{out}"
        );
        assert!(out.ends_with("/e|ok"), "{out}");
    }

    #[tokio::test]
    async fn connection_close_and_http_1_0_end_the_connection() {
        let out = exchange(
            b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
            1000,
        )
        .await;
        assert_eq!(bodies(&out), ["/a|"], "{out}");
        assert!(out.contains("Connection: close\r\n"), "{out}");
        let out = exchange(b"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n", 1000).await;
        assert_eq!(bodies(&out), ["/a|"], "{out}");
    }

    #[tokio::test]
    async fn bad_requests_get_a_status_and_the_connection_ends() {
        for (raw, status) in [
            (&b"NOT HTTP\r\n\r\n"[..], "400 Bad Request"),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
                "400 Bad Request",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                "400 Bad Request",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "400 Bad Request",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 999999999999\r\n\r\n",
                "413 Payload Too Large",
            ),
        ] {
            let out = exchange(raw, 1000).await;
            assert!(out.starts_with(&format!("HTTP/1.1 {status}\r\n")), "{out}");
            assert_eq!(out.matches("HTTP/1.1").count(), 1, "{out}");
        }
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(70 * 1024));
        let out = exchange(long.as_bytes(), 4096).await;
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
    }

    #[tokio::test]
    async fn large_bodies_in_and_out() {
        let big = "x".repeat(300 * 1024);
        let raw = format!(
            "POST /big HTTP/1.1\r\nContent-Length: {}\r\n\r\n{big}",
            big.len()
        );
        let out = exchange(raw.as_bytes(), 65536).await;
        assert_eq!(bodies(&out), [format!("/big|{big}")]);
    }

    /// Serves one connection as `exchange` does; the client sends `pieces`, each after
    /// `pause`, then falls silent without closing. Returns what the server wrote before
    /// it closed; fails if it held the connection an hour. The clock is paused, so the
    /// minutes pass at once.
    async fn silent_exchange(pieces: &[&[u8]], pause: Duration) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut conn = Conn::new(s, Limits::default());
            while let Ok(Some((path, _))) = conn
                .read_request(|r| r.path.unwrap_or("").to_string())
                .await
            {
                conn.respond("200 OK", &[], path.as_bytes()).await.unwrap();
            }
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        for piece in pieces {
            tokio::time::sleep(pause).await;
            // The server may have given up already.
            let _ = c.write_all(piece).await;
        }
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3600), c.read_to_end(&mut out));
        assert!(
            read.await.is_ok(),
            "the server held a silent connection for an hour after {:?}",
            String::from_utf8_lossy(&pieces.concat())
        );
        server.await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn silent_and_slow_clients_are_cut_off() {
        let none = Duration::ZERO;
        // Silent between requests: closed without a word.
        assert_eq!(silent_exchange(&[], none).await, "");
        let out = silent_exchange(&[b"GET /a HTTP/1.1\r\n\r\n"], none).await;
        assert!(
            out.starts_with("HTTP/1.1 200 OK") && out.ends_with("/a"),
            "{out}"
        );
        // Silent or slow within a request: 408.
        for pieces in [
            &[&b"GET /a HTTP/1.1\r\nHost"[..]][..],
            &[b"POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\nab"],
            &[b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"],
            &[
                b"GET /a HTTP/1.1\r\n",
                b"X: 1\r\n",
                b"X: 2\r\n",
                b"X: 3\r\n",
            ],
        ] {
            let out = silent_exchange(pieces, Duration::from_secs(25)).await;
            assert!(out.starts_with("HTTP/1.1 408 "), "{pieces:?}: {out}");
        }
    }

    #[test]
    fn itoa_writes_decimal() {
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            assert_eq!(itoa(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }
}

/// Random bytes in random pieces, from a client that then closes or falls silent: the
/// connection answers each request it can parse and refuses the rest with a 4xx, and
/// always ends; it never panics or holds on.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;
    use tokio::net::TcpListener;

    /// Pieces of requests, valid and not, that random bytes rarely hit.
    const PARTS: &[&[u8]] = &[
        b"GET /a HTTP/1.1\r\n",
        b"POST /2018-06-01/runtime/invocation/x/response HTTP/1.1\r\n",
        b"PUT /b/k HTTP/1.0\r\n",
        b"Content-Length: 5\r\n",
        b"Content-Length: 99999999999999999999\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Expect: 100-continue\r\n",
        b"Connection: close\r\n",
        b"Connection: keep-alive\r\n",
        b"\r\n",
        b"hello",
        b"5\r\nhello\r\n",
        b"0\r\n\r\n",
        b"ffffffffffffffffff\r\n",
        b"\xc3\xa9",
        b"\0",
    ];

    fn input() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..512),
            proptest::collection::vec(
                prop_oneof![
                    proptest::sample::select(PARTS).prop_map(<[u8]>::to_vec),
                    proptest::collection::vec(any::<u8>(), 0..8),
                ],
                0..24,
            )
            .prop_map(|parts| parts.concat()),
        ]
    }

    /// Every status line in `out`: what the server answered.
    fn statuses(out: &[u8]) -> Vec<String> {
        let text = String::from_utf8_lossy(out);
        text.match_indices("HTTP/1.1 ")
            .map(|(i, _)| text[i + 9..].chars().take(3).collect())
            .collect()
    }

    async fn exchange(raw: Vec<u8>, steps: Vec<usize>, close: bool) -> Result<(), String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut conn = Conn::new(s, Limits::default());
            while let Ok(Some((path, body))) = conn
                .read_request(|r| r.path.unwrap_or("").to_string())
                .await
            {
                let text = format!("{path}|{}", body.len());
                if conn.respond("200 OK", &[], text.as_bytes()).await.is_err() || conn.closing() {
                    break;
                }
            }
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        let mut rest = &raw[..];
        for step in steps.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at((*step).min(rest.len()));
            rest = tail;
            if c.write_all(piece).await.is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
        if close {
            let _ = c.shutdown().await;
        }
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(3600), async {
            // A reset after the server gave up is an end too.
            let _ = c.read_to_end(&mut out).await;
        });
        if read.await.is_err() {
            return Err("the server held the connection for an hour".into());
        }
        match tokio::time::timeout(Duration::from_secs(3600), server).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("the server failed: {e}")),
            Err(_) => return Err("the server did not end".into()),
        }
        for status in statuses(&out) {
            if !(status == "100" || status == "200" || status.starts_with('4')) {
                return Err(format!(
                    "answered {status}: {}",
                    String::from_utf8_lossy(&out)
                ));
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x5_40a1),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn any_bytes_in_any_pieces_get_an_answer_or_a_close(
            raw in input(),
            steps in proptest::collection::vec(1usize..64, 1..16),
            close in any::<bool>(),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .unwrap();
            let r = rt.block_on(exchange(raw, steps, close));
            prop_assert!(r.is_ok(), "{}", r.unwrap_err());
        }
    }
}
