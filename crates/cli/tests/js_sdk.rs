//! The AWS SDK for JavaScript v3 (`@aws-sdk/client-sfn`, which scripts/test.sh
//! installs in target/sdk-js) drives `shoal serve` through every operation it
//! serves: typed errors, Date fields and request ids (`js_sdk_client.mjs`).

mod common;

use common::serve;
use std::path::Path;
use std::process::Command;

#[test]
fn the_javascript_sdk_drives_every_operation() {
    let modules = Path::new(env!("CARGO_BIN_EXE_shoal"))
        .parent()
        .unwrap()
        .join("../sdk-js/node_modules");
    assert!(
        modules.join("@aws-sdk/client-sfn").is_dir(),
        "{} lacks @aws-sdk/client-sfn: scripts/test.sh installs it (npm install --prefix target/sdk-js @aws-sdk/client-sfn)",
        modules.display()
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("buckets")).unwrap();
    let s = serve(dir.path(), &[]);
    let o = Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js_sdk_client.mjs"))
        .arg(s.url())
        .arg(&modules)
        .output()
        .expect("node runs");
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && out.contains("checks passed"),
        "{out}\n{err}"
    );
}
