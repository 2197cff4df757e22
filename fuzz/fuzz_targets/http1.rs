//! Bytes sent on one connection to the S3 endpoint (the HTTP/1.1 connection that the
//! Lambda Runtime API uses too), then a close: answers are 1xx, 2xx, 4xx or 501, and
//! the server closes in time; a panic in the server shows as a connection that is never
//! answered.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

struct Endpoint {
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    addr: SocketAddr,
}

fn endpoint() -> &'static Endpoint {
    static E: OnceLock<Endpoint> = OnceLock::new();
    E.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("b")).unwrap();
        std::fs::write(dir.path().join("b/k"), b"hello").unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = shoal_lambda::Limits {
            idle: Some(Duration::from_millis(200)),
            request: Duration::from_millis(200),
        };
        rt.spawn(shoal_lambda::s3serve::serve_on(
            listener,
            shoal_buckets::LocalBuckets::new(dir.path()),
            limits,
        ));
        Endpoint {
            _rt: rt,
            _dir: dir,
            addr,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let mut c = TcpStream::connect(endpoint().addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = c.write_all(data);
    let _ = c.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    match c.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("no close from the server: {e}"),
    }
    let text = String::from_utf8_lossy(&out);
    for (i, _) in text.match_indices("HTTP/1.1 ") {
        let status = text.get(i + 9..i + 12).unwrap_or("");
        assert!(
            status.starts_with(['1', '2', '4']) || status == "501",
            "answered {status}: {text}"
        );
    }
});
