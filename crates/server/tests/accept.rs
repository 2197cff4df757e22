//! The API server's accept loop: it serves on after an accept fails (no descriptor
//! free), and a finished connection leaves nothing behind.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::Duration;

/// The tests take turns: one lowers the process's descriptor limit, one reads its RSS.
static TURN: Mutex<()> = Mutex::new(());

async fn ok(
    _: (),
    _: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<http_body_util::Full<bytes::Bytes>> {
    hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"ok")))
}

/// Serves `ok` on `listener` on a runtime of its own.
fn serve(listener: std::net::TcpListener) -> tokio::runtime::Runtime {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    listener.set_nonblocking(true).unwrap();
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        shoal_server::serve_http(listener, (), ok).await
    });
    rt
}

/// One request on `c`; the whole answer.
fn get(mut c: TcpStream) -> String {
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
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

#[test]
fn the_server_serves_on_after_running_out_of_descriptors() {
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Three connections wait in the backlog before the server starts.
    let waiting: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let (soft, hard) = nofile();
    let rt = serve_with_one_free_descriptor(listener, hard);
    let mut waiting = waiting.into_iter();
    // The first takes the one free descriptor; accepting the second fails.
    let first = get(waiting.next().unwrap());
    set_nofile(soft, hard);
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Descriptors are free again: the others are served.
    for c in waiting {
        let out = get(c);
        assert!(out.starts_with("HTTP/1.1 200"), "after EMFILE: {out:?}");
    }
    let out = get(TcpStream::connect(addr).unwrap());
    assert!(out.starts_with("HTTP/1.1 200"), "after EMFILE: {out:?}");
    drop(rt);
}

/// Starts the server with the soft limit lowered so that one more descriptor is free.
fn serve_with_one_free_descriptor(
    listener: std::net::TcpListener,
    hard: u64,
) -> tokio::runtime::Runtime {
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
    set_nofile(one_free_slot(), hard);
    rt.spawn(shoal_server::serve_http(listener, (), ok));
    rt
}

#[test]
fn finished_connections_leave_no_memory_behind() {
    let _turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let _rt = serve(listener);
    let connect = |n: usize| {
        for _ in 0..n {
            let out = get(TcpStream::connect(addr).unwrap());
            assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        }
    };
    connect(2_000);
    let before = rss_kib();
    connect(20_000);
    let grown = rss_kib().saturating_sub(before);
    // Kept, each connection's task would hold about a KiB: 20 MiB here.
    assert!(
        grown < 4 * 1024,
        "RSS grew {grown} KiB over 20,000 finished connections"
    );
}
