//! `shoal serve` from the outside: the real `aws` CLI and boto3 (in the venv that
//! scripts/test.sh makes) run `serve_client.py` against it; a server killed with
//! SIGKILL and restarted finishes what was running; malformed requests get 4xx.

mod common;

use common::{serve, Serve};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_shoal"))
        .parent()
        .unwrap()
        .join("../lambda-venv/bin/python");
    let ok = Command::new(&p)
        .args(["-c", "import boto3, awscli"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} lacks boto3/awscli: scripts/test.sh installs them",
        p.display()
    );
    p
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for b in ["buckets/in", "buckets/out"] {
        std::fs::create_dir_all(d.join(b)).unwrap();
    }
    let items: Vec<String> = (1..=60).map(|i| format!("{{\"id\":{i}}}")).collect();
    std::fs::write(d.join("buckets/in/items.jsonl"), items.join("\n")).unwrap();
    let testfn = Path::new(env!("CARGO_BIN_EXE_shoal"))
        .parent()
        .unwrap()
        .join("shoal-testfn");
    std::fs::write(
        d.join("shoal.toml"),
        format!(
            "[functions.testfn]\ncommand = [{:?}]\nconcurrency = 4\n",
            testfn.display().to_string()
        ),
    )
    .unwrap();
    dir
}

fn client(s: &Serve, dir: &Path, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve_client.py");
    let o = Command::new(python())
        .arg(script)
        .arg(s.url())
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "client {args:?} failed:\n{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

#[test]
fn the_aws_cli_and_boto3_drive_shoal_serve() {
    let dir = setup();
    let s = serve(dir.path(), &["--config", "shoal.toml"]);
    let out = client(&s, dir.path(), &["main"]);
    assert!(out.contains("all checks passed"), "{out}");
}

#[test]
fn a_killed_server_resumes_running_executions_on_restart() {
    let dir = setup();
    let s = serve(dir.path(), &["--config", "shoal.toml"]);
    client(&s, dir.path(), &["start-long", "survivor"]);
    drop(s); // SIGKILL, mid-Wait
    let s = serve(dir.path(), &["--config", "shoal.toml"]);
    let out = client(&s, dir.path(), &["wait", "survivor"]);
    assert!(out.starts_with("SUCCEEDED \"done\""), "{out}");
}

/// Raw HTTP/1.1, to send what no SDK would.
fn raw(url: &str, request: &str) -> (u16, String) {
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn malformed_requests_and_tokens_get_4xx_json() {
    let dir = setup();
    let s = serve(dir.path(), &["--config", "shoal.toml", "--token", "sesame"]);
    let post = |target: &str, auth: &str, body: &str| {
        raw(
            &s.url(),
            &format!("POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Amz-Target: {target}\r\n{auth}Content-Length: {}\r\n\r\n{body}", body.len()),
        )
    };
    let ok_auth = "Authorization: Bearer sesame\r\n";
    let (code, text) = post("AWSStepFunctions.ListStateMachines", "", "{}");
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("AccessDeniedException"));
    let (code, text) = post("AWSStepFunctions.ListStateMachines", ok_auth, "{}");
    assert_eq!(code, 200, "{text}");
    for (target, body, want) in [
        (
            "AWSStepFunctions.ListStateMachines",
            "{not json",
            "SerializationException",
        ),
        (
            "AWSStepFunctions.ListStateMachines",
            "[1]",
            "SerializationException",
        ),
        ("AWSStepFunctions.Nope", "{}", "UnknownOperationException"),
        ("Other.Thing", "{}", "UnknownOperationException"),
        (
            "AWSStepFunctions.StartExecution",
            "{\"stateMachineArn\": 5}",
            "SerializationException",
        ),
        (
            "AWSStepFunctions.DescribeExecution",
            "{}",
            "ValidationException",
        ),
    ] {
        let (code, text) = post(target, ok_auth, body);
        assert_eq!(code, 400, "{target} {body}: {text}");
        assert!(text.contains(want), "{target} {body}: {text}");
    }
    let (code, text) = raw(
        &s.url(),
        "GET /?token=sesame HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(code, 200);
    assert!(text.contains("<title>shoal</title>"));
    // Beyond loopback without a token, serve refuses to start.
    let o = Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["serve", "--listen", "0.0.0.0:0", "--state-dir"])
        .arg(dir.path().join("state"))
        .env_remove("SHOAL_TOKEN")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs --token"));
}
