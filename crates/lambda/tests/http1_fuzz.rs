//! The HTTP/1.1 connection that serves the Lambda Runtime API and the S3 endpoint,
//! abused over real sockets on 127.0.0.1 through the S3 endpoint: random bytes; valid
//! requests in random pieces with random pauses; pipelined requests; huge heads; clients
//! that stall halfway or trickle. Each gets its answers, a 4xx, or a close; a stalled
//! client is cut off after the read timeout; and the endpoint serves a normal request
//! after each abuse. Time limits are short here so the test takes seconds.

use proptest::prelude::*;
use shoal_buckets::LocalBuckets;
use shoal_lambda::Limits;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The strict endpoint's time limits; the patient one's are the defaults (a minute),
/// so that valid requests sent slowly on a busy machine are never cut off.
const LIMIT: Duration = Duration::from_millis(500);
/// How long a cut-off client may wait for the close: the limit, the refusal's drain of
/// what the client still sends (a second at most), and scheduling on a busy machine.
const CUT_OFF: Duration = Duration::from_millis(500 + 1000 + 1500);

/// The tests take turns: one counts the process's descriptors.
static TURN: Mutex<()> = Mutex::new(());

struct Endpoint {
    _rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    strict: SocketAddr,
    patient: SocketAddr,
    next: AtomicUsize,
}

fn endpoint() -> &'static Endpoint {
    static E: OnceLock<Endpoint> = OnceLock::new();
    E.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("b/hello.txt"), b"hello").unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let start = |limits: Limits| {
            let listener = rt
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .unwrap();
            let addr = listener.local_addr().unwrap();
            rt.spawn(shoal_lambda::s3serve::serve_on(
                listener,
                LocalBuckets::new(dir.path()),
                limits,
            ));
            addr
        };
        let strict = start(Limits {
            idle: Some(LIMIT),
            request: LIMIT,
        });
        let patient = start(Limits::default());
        Endpoint {
            _rt: rt,
            dir,
            strict,
            patient,
            next: AtomicUsize::new(0),
        }
    })
}

/// A connection to the strict endpoint, or the patient one.
fn connect(strict: bool) -> TcpStream {
    let e = endpoint();
    let c = TcpStream::connect(if strict { e.strict } else { e.patient }).unwrap();
    c.set_nodelay(true).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

/// Everything the server sends until it closes; `None` if it holds the connection
/// `CUT_OFF` longer than it may.
fn read_all(c: &mut TcpStream, start: Instant) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if start.elapsed() > CUT_OFF {
            return None;
        }
        match c.read(&mut buf) {
            Ok(0) => return Some(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // A reset after the server gave up is a close too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(out),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return None,
            Err(e) => panic!("reading the answer: {e}"),
        }
    }
}

/// Each status code the server sent.
fn statuses(out: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(out);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

/// The responses in `out`, in order: status and body; `heads[i]` says the i-th answers a
/// HEAD (a length, no body).
fn responses(mut out: &[u8], heads: &[bool]) -> Result<Vec<(u16, Vec<u8>)>, String> {
    let mut all = Vec::new();
    for head_only in heads {
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("no complete head in {:?}", String::from_utf8_lossy(out)))?;
        let head = String::from_utf8_lossy(&out[..end]).into_owned();
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no status in {head:?}"))?;
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("no length in {head:?}"))?;
        let body_len = if *head_only { 0 } else { len };
        let body = out
            .get(end + 4..end + 4 + body_len)
            .ok_or_else(|| format!("a short body after {head:?}"))?;
        all.push((status, body.to_vec()));
        out = &out[end + 4 + body_len..];
    }
    if !out.is_empty() {
        return Err(format!(
            "more than asked for: {:?}",
            String::from_utf8_lossy(out)
        ));
    }
    Ok(all)
}

/// Both endpoints still answer a plain GET, at once.
fn still_serves() -> Result<(), String> {
    still_serves_on(true)?;
    still_serves_on(false)
}

fn still_serves_on(strict: bool) -> Result<(), String> {
    let start = Instant::now();
    let mut c = connect(strict);
    c.write_all(b"GET /b/hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let out = read_all(&mut c, start).ok_or("a plain GET got no answer")?;
    let got = responses(&out, &[false])?;
    if got != [(200, b"hello".to_vec())] || start.elapsed() > Duration::from_secs(2) {
        return Err(format!(
            "a plain GET got {:?} in {:?}",
            String::from_utf8_lossy(&out),
            start.elapsed()
        ));
    }
    Ok(())
}

#[derive(Debug, Clone)]
enum Req {
    Get,
    Missing,
    Head,
    Put(Vec<u8>),
    PutChunked(Vec<Vec<u8>>),
}

/// A request's bytes, the key and body a PUT stores, and the status it must get.
struct Made(Vec<u8>, Option<(String, Vec<u8>)>, u16);

impl Req {
    fn bytes(&self, last: bool) -> Made {
        let close = if last { "Connection: close\r\n" } else { "" };
        let key = format!("k{}", endpoint().next.fetch_add(1, Ordering::SeqCst));
        match self {
            Req::Get => Made(
                format!("GET /b/hello.txt?x-id=GetObject HTTP/1.1\r\nHost: x\r\n{close}\r\n")
                    .into_bytes(),
                None,
                200,
            ),
            Req::Missing => Made(
                format!("GET /b/none/{key} HTTP/1.1\r\n{close}\r\n").into_bytes(),
                None,
                404,
            ),
            Req::Head => Made(
                format!("HEAD /b/hello.txt HTTP/1.1\r\n{close}\r\n").into_bytes(),
                None,
                200,
            ),
            Req::Put(body) => {
                let mut raw = format!(
                    "PUT /b/{key} HTTP/1.1\r\nContent-Length: {}\r\n{close}\r\n",
                    body.len()
                )
                .into_bytes();
                raw.extend_from_slice(body);
                Made(raw, Some((key, body.clone())), 200)
            }
            Req::PutChunked(chunks) => {
                let mut raw =
                    format!("PUT /b/{key} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n{close}\r\n")
                        .into_bytes();
                for c in chunks.iter().filter(|c| !c.is_empty()) {
                    raw.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                    raw.extend_from_slice(c);
                    raw.extend_from_slice(b"\r\n");
                }
                raw.extend_from_slice(b"0\r\n\r\n");
                Made(raw, Some((key, chunks.concat())), 200)
            }
        }
    }
}

fn req() -> impl Strategy<Value = Req> {
    let body = || proptest::collection::vec(any::<u8>(), 0..48);
    prop_oneof![
        Just(Req::Get),
        Just(Req::Missing),
        Just(Req::Head),
        body().prop_map(Req::Put),
        proptest::collection::vec(body(), 0..4).prop_map(Req::PutChunked),
    ]
}

#[derive(Debug, Clone)]
enum Abuse {
    /// Random bytes, then a close or silence.
    Garbage(Vec<u8>, bool),
    /// Valid requests in pieces of these sizes, a pause (ms) before each.
    Split(Vec<Req>, Vec<usize>, Vec<u8>),
    /// Valid requests in one write.
    Pipelined(Vec<Req>),
    /// A head of this many bytes of one header, or this many headers.
    HugeHeader(usize),
    ManyHeaders(usize),
    /// The first bytes of a valid request, then silence with the connection open.
    Stall(Req, usize),
}

fn abuse() -> impl Strategy<Value = Abuse> {
    prop_oneof![
        3 => (proptest::collection::vec(any::<u8>(), 1..400), any::<bool>())
            .prop_map(|(b, close)| Abuse::Garbage(b, close)),
        4 => (
            proptest::collection::vec(req(), 1..5),
            proptest::collection::vec(1usize..40, 1..8),
            proptest::collection::vec(prop_oneof![4 => Just(0u8), 1 => 1u8..3], 1..8),
        )
            .prop_map(|(r, p, d)| Abuse::Split(r, p, d)),
        2 => proptest::collection::vec(req(), 1..8).prop_map(Abuse::Pipelined),
        1 => (64usize * 1024..150 * 1024).prop_map(Abuse::HugeHeader),
        1 => (101usize..400).prop_map(Abuse::ManyHeaders),
        1 => (req(), any::<usize>()).prop_map(|(r, cut)| Abuse::Stall(r, cut)),
    ]
}

/// Sends requests in `pieces` (with `pauses`), then reads every answer and checks each
/// request got its own, and that each PUT stored its body.
fn valid_requests(reqs: &[Req], pieces: &[usize], pauses: &[u8]) -> Result<(), String> {
    let n = reqs.len();
    let made: Vec<_> = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| r.bytes(i + 1 == n))
        .collect();
    let raw: Vec<u8> = made.iter().flat_map(|m| m.0.clone()).collect();
    let mut c = connect(false);
    let mut rest = &raw[..];
    for (step, pause) in pieces.iter().cycle().zip(pauses.iter().cycle()) {
        if rest.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(u64::from(*pause)));
        let (piece, tail) = rest.split_at((*step).min(rest.len()));
        c.write_all(piece).map_err(|e| format!("sending: {e}"))?;
        rest = tail;
    }
    let start = Instant::now();
    let out =
        read_all(&mut c, start).ok_or("the connection was not closed after Connection: close")?;
    let heads: Vec<bool> = reqs.iter().map(|r| matches!(r, Req::Head)).collect();
    let got = responses(&out, &heads)?;
    for ((req, Made(_, put, want)), (status, body)) in reqs.iter().zip(&made).zip(&got) {
        if status != want {
            return Err(format!(
                "{req:?} got {status}: {:?}",
                String::from_utf8_lossy(&out)
            ));
        }
        if matches!(req, Req::Get) && body != b"hello" {
            return Err(format!("{req:?} got {body:?}"));
        }
        if let Some((key, data)) = put {
            let stored = std::fs::read(endpoint().dir.path().join("b").join(key))
                .map_err(|e| format!("{req:?}: {e}"))?;
            if &stored != data {
                return Err(format!("{req:?} stored {stored:?}"));
            }
        }
    }
    Ok(())
}

/// The answer to a refused or cut-off connection: at most one status, a 4xx (or 501
/// for a method the endpoint does not serve, when random bytes make a request line),
/// and a close in time.
fn refused(c: &mut TcpStream, start: Instant, what: &str, want: &[u16]) -> Result<(), String> {
    let out = read_all(c, start)
        .ok_or_else(|| format!("{what}: still open after {:?}", start.elapsed()))?;
    let got = statuses(&out);
    if !got.iter().all(|s| want.contains(s)) {
        return Err(format!("{what}: got {:?}", String::from_utf8_lossy(&out)));
    }
    Ok(())
}

fn run(abuse: &Abuse) -> Result<(), String> {
    match abuse {
        Abuse::Garbage(bytes, close) => {
            // Left open, only the strict endpoint closes it in time.
            let mut c = connect(!close);
            let _ = c.write_all(bytes);
            if *close {
                let _ = c.shutdown(std::net::Shutdown::Write);
            }
            // Random bytes can make a request, even several: any answer but a 5xx
            // other than 501 Not Implemented.
            let allowed: Vec<u16> = [100, 200]
                .into_iter()
                .chain(400..500)
                .chain([501])
                .collect();
            refused(&mut c, Instant::now(), "random bytes", &allowed)
        }
        Abuse::Split(reqs, pieces, pauses) => valid_requests(reqs, pieces, pauses),
        Abuse::Pipelined(reqs) => valid_requests(reqs, &[usize::MAX], &[0]),
        Abuse::HugeHeader(size) => {
            let mut c = connect(true);
            let head = format!(
                "GET /b/hello.txt HTTP/1.1\r\nX-Big: {}\r\n\r\n",
                "a".repeat(*size)
            );
            // The server may refuse and close before it has read it all.
            let _ = c.write_all(head.as_bytes());
            refused(&mut c, Instant::now(), "a huge header", &[431])
        }
        Abuse::ManyHeaders(n) => {
            let mut c = connect(true);
            let lines: String = (0..*n).map(|i| format!("X-H{i}: v\r\n")).collect();
            let head = format!("GET /b/hello.txt HTTP/1.1\r\n{lines}\r\n");
            let _ = c.write_all(head.as_bytes());
            refused(&mut c, Instant::now(), "too many headers", &[400, 431])
        }
        Abuse::Stall(req, cut) => {
            let Made(raw, _, _) = req.bytes(false);
            let half = &raw[..1 + cut % (raw.len() - 1)];
            let mut c = connect(true);
            // Taken before the first byte goes: the server's clock starts after it.
            let start = Instant::now();
            c.write_all(half).unwrap();
            // Served while this one stalls.
            still_serves()?;
            refused(&mut c, start, "a stalled request", &[408])?;
            if start.elapsed() < LIMIT {
                return Err(format!(
                    "cut off after {:?}, before the limit",
                    start.elapsed()
                ));
            }
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x18_4771),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_abuse_gets_an_answer_or_a_close_and_the_endpoint_goes_on(abuse in abuse()) {
        let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
        let r = run(&abuse);
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
        let r = still_serves();
        prop_assert!(r.is_ok(), "after {:?}: {}", abuse, r.unwrap_err());
    }
}

/// Many clients at once that stall at every point of a request, or fall silent before
/// the first byte, or trickle a byte at a time: a normal request is served meanwhile,
/// each is cut off after the limit (408 within a request, a bare close between
/// requests), and every descriptor they took is given back.
#[test]
fn stalled_and_trickling_clients_are_cut_off_and_their_descriptors_freed() {
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let _ = endpoint();
    still_serves().unwrap();
    // Connections of the other test may still be closing: wait for a steady count.
    let mut before = fds();
    let mut steady = Instant::now();
    while steady.elapsed() < Duration::from_millis(200) {
        std::thread::sleep(Duration::from_millis(10));
        if fds() != before {
            (before, steady) = (fds(), Instant::now());
        }
    }
    let raw = b"PUT /b/stall HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789";
    let start = Instant::now();
    let mut stalled: Vec<(usize, TcpStream)> = (0..raw.len())
        .map(|cut| {
            let mut c = connect(true);
            c.write_all(&raw[..cut]).unwrap();
            (cut, c)
        })
        .collect();
    // Bodies that claim gigabytes, then stall: the claim earns no time.
    let claims: [&[u8]; 2] = [
        b"PUT /b/big HTTP/1.1\r\nContent-Length: 5000000000\r\n\r\nabc",
        b"PUT /b/big HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n100000000\r\nabc",
    ];
    let mut claimed: Vec<TcpStream> = claims
        .iter()
        .map(|raw| {
            let mut c = connect(true);
            c.write_all(raw).unwrap();
            c
        })
        .collect();
    still_serves().unwrap();
    // A byte every 50 ms: each byte is in time, the request is not.
    let mut trickle = connect(true);
    for b in raw.iter().take(15) {
        if trickle.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for (cut, c) in &mut stalled {
        let want: &[u16] = if *cut == 0 { &[] } else { &[408] };
        let out = read_all(c, start).unwrap_or_else(|| panic!("cut at {cut}: still open"));
        assert_eq!(
            statuses(&out),
            want,
            "cut at {cut}: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    assert_eq!(
        statuses(&read_all(&mut trickle, start).expect("the trickle is cut off")),
        [408]
    );
    for (c, raw) in claimed.iter_mut().zip(claims) {
        let what = String::from_utf8_lossy(raw);
        let out = read_all(c, start).unwrap_or_else(|| panic!("{what:?}: still open"));
        assert_eq!(statuses(&out), [408], "{what:?}");
    }
    drop(claimed);
    drop(stalled);
    drop(trickle);
    // The server's ends close as it sees the clients' closes.
    let deadline = Instant::now() + Duration::from_secs(5);
    while fds() > before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(fds(), before, "descriptors left open");
    still_serves().unwrap();
}

/// The soft and hard RLIMIT_NOFILE of this process.
fn nofile() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let mut n = line
        .split_whitespace()
        .skip(3)
        .map(|v| v.parse::<u64>().unwrap());
    (n.next().unwrap(), n.next().unwrap())
}

fn set_nofile(soft: u64, hard: u64) {
    let pid = std::process::id().to_string();
    let st = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={soft}:{hard}")])
        .status()
        .expect("prlimit (util-linux) is needed");
    assert!(st.success());
}

/// A soft limit under which exactly one more descriptor can be opened.
fn one_free_slot() -> u64 {
    let open: Vec<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (1..)
        .find(|&l| l - open.iter().filter(|&&fd| fd < l).count() as u64 == 1)
        .unwrap()
}

/// A failed accept (no descriptor free) used to end the accept loop: the port stayed
/// open and nobody answered again.
#[test]
fn the_endpoint_serves_on_after_running_out_of_descriptors() {
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Three connections wait in the backlog before the endpoint starts.
    let waiting: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let send = |mut c: TcpStream, method: &str| {
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let req = format!("{method} /b/hello.txt HTTP/1.1\r\nConnection: close\r\n\r\n");
        c.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        out
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = {
        let _guard = rt.enter();
        tokio::net::TcpListener::from_std(listener).unwrap()
    };
    let buckets = LocalBuckets::new(endpoint().dir.path());
    let (soft, hard) = nofile();
    set_nofile(one_free_slot(), hard);
    rt.spawn(shoal_lambda::s3serve::serve_on(
        listener,
        buckets,
        Limits::default(),
    ));
    let mut waiting = waiting.into_iter();
    // The first takes the one free descriptor; accepting the second fails.
    // A method that opens no file: the one free descriptor is the connection's.
    let first = send(waiting.next().unwrap(), "DELETE");
    set_nofile(soft, hard);
    assert!(first.starts_with("HTTP/1.1 501"), "{first}");
    let get = |c: TcpStream| send(c, "GET");
    for c in waiting {
        let out = get(c);
        assert!(out.ends_with("hello"), "after EMFILE: {out:?}");
    }
    let out = get(TcpStream::connect(addr).unwrap());
    assert!(out.ends_with("hello"), "after EMFILE: {out:?}");
}
